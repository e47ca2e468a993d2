// Click a header to sort its table by that column (numbers by data-sort, text otherwise).
document.querySelectorAll("table.sortable").forEach((table) => {
  table.querySelectorAll("thead th").forEach((th, column) => th.addEventListener("click", () => {
    const ascending = th.dataset.order !== "asc";
    table.querySelectorAll("thead th").forEach((other) => delete other.dataset.order);
    th.dataset.order = ascending ? "asc" : "desc";
    const key = (row) => {
      const cell = row.cells[column], raw = cell.dataset.sort ?? cell.textContent.trim(), n = Number(raw);
      return raw === "" ? Infinity : (Number.isNaN(n) ? raw : n);
    };
    const order = (a, b) => (typeof a === typeof b ? (a < b ? -1 : a > b ? 1 : 0) : typeof a === "number" ? -1 : 1);
    const body = table.tBodies[0];
    [...body.rows].sort((a, b) => order(key(a), key(b)) * (ascending ? 1 : -1)).forEach((row) => body.appendChild(row));
  }));
});
// Type in a table's filter box to keep only the rows whose text contains it (case-insensitive).
document.querySelectorAll("input.filter").forEach((input) => input.addEventListener("input", () => {
  const table = document.getElementById(input.dataset.table), query = input.value.trim().toLowerCase();
  [...table.tBodies[0].rows].forEach((row) => {
    row.hidden = query !== "" && !row.textContent.toLowerCase().includes(query);
  });
}));
