"""The report in real headless chromium (DevTools protocol over a pipe): no console errors, no network
requests, every figure drawn at a non-zero size, sortable tables, a config title shown as text."""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.browser

ARTIFACTS = Path(os.environ.get("OPTBENCH_ARTIFACTS", ROOT / "artifacts"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--remote-debugging-pipe"]


def chromium_path() -> str:
    """The browser, or skip; under CI (CI=true) a missing browser fails instead of skipping."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    message = "chromium not found: install the Debian package `chromium`"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


class Browser:
    """Chromium driven over --remote-debugging-pipe: NUL-terminated JSON on fds 3 (in) and 4 (out)."""

    def __init__(self, executable: str, timeout: float = 60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="optbench-chromium-")
        to_child, self._writer = os.pipe()
        self._reader, from_child = os.pipe()

        def wire_pipes():  # runs in the child: fds 3 and 4 are the protocol's fixed descriptors
            read_copy, write_copy = os.dup(to_child), os.dup(from_child)
            os.dup2(read_copy, 3)
            os.dup2(write_copy, 4)

        # the browser's own chatter goes to a file: a pipe nobody reads could fill up and stall it
        self.stderr = open(Path(self.profile) / "stderr.log", "w+b")
        self.process = subprocess.Popen([executable, *FLAGS, f"--user-data-dir={self.profile}"],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=self.stderr, preexec_fn=wire_pipes, pass_fds=(3, 4))
        os.close(to_child)
        os.close(from_child)
        self._buffer, self._next_id, self.events = b"", 0, []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._reader], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._reader, 1 << 20)
            if not chunk:
                self.stderr.seek(0)
                raise RuntimeError("chromium closed the DevTools pipe: " + self.stderr.read().decode()[-2000:])
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._writer, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._reader)
        os.close(self._writer)
        self.stderr.close()
        shutil.rmtree(self.profile, ignore_errors=True)


# Run in the page after load: each figure's rendered size, what sorting a numeric column does, what typing in a
# filter box does, the download links' contents, the figures' hover titles and whether anything is wider than
# the window.
PAGE_CHECK = """(() => {
  const figures = [...document.querySelectorAll("figure")].map((figure) => {
    const svg = figure.querySelector("svg"), box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    return {id: figure.id, width: box.width, height: box.height, right: box.right,
            titles: svg ? svg.querySelectorAll("title").length : 0};
  });
  const sorts = [];
  for (const table of document.querySelectorAll("table.sortable")) {
    const body = table.tBodies[0];
    if (!body || body.rows.length < 2) continue;
    const headers = [...table.querySelectorAll("thead th")];
    const column = [...body.rows[0].cells].findIndex((cell) => cell.classList.contains("num") && cell.dataset.sort);
    if (column < 0) continue;
    const values = () => [...body.rows].map((row) => Number(row.cells[column].dataset.sort || Infinity));
    headers[column].click();
    const ascending = values();
    headers[column].click();
    sorts.push({table: table.id, column: headers[column].textContent, ascending, descending: values()});
  }
  const filters = [...document.querySelectorAll("input.filter")].map((input) => {
    const table = document.getElementById(input.dataset.table), rows = [...table.tBodies[0].rows];
    const word = rows[0].cells[0].textContent.trim();
    input.value = word;
    input.dispatchEvent(new Event("input"));
    const shown = rows.filter((row) => !row.hidden);
    const result = {table: table.id, word, total: rows.length, shown: shown.length,
                    all_match: shown.every((row) => row.textContent.includes(word)),
                    expected: rows.filter((row) => row.textContent.toLowerCase().includes(word.toLowerCase())).length};
    input.value = "";
    input.dispatchEvent(new Event("input"));
    result.restored = rows.filter((row) => !row.hidden).length;
    return result;
  });
  const downloads = [...document.querySelectorAll("a.csv")].map((a) => ({name: a.getAttribute("download"),
                                                                          href: a.getAttribute("href")}));
  const wide = [...document.querySelectorAll("body *")].filter((e) => {
    const box = e.getBoundingClientRect();
    return box.right > window.innerWidth + 1 && !e.closest(".table-wrap");
  }).map((e) => e.tagName + "#" + e.id + "." + e.className);
  return {figures, sorts, filters, downloads, wide, title: document.title,
          h1: document.querySelector("h1").textContent, injected: window.__injected === true,
          height: document.documentElement.scrollHeight, page_width: document.documentElement.scrollWidth,
          window_width: window.innerWidth,
          links: [...document.querySelectorAll('a[href^="#"]')].map((a) => a.getAttribute("href")),
          ids: [...document.querySelectorAll("[id]")].map((e) => e.id)};
})()"""


@pytest.fixture
def chromium() -> str:
    return chromium_path()


def open_report(path: Path, screenshot: Path, executable: str, width: int = 1280, full_page: bool = True) -> dict:
    """Load `path` in headless chromium at `width` CSS px; return the page check, console errors and requests
    made, and save a screenshot (the full page, or the first screen)."""
    browser = Browser(executable)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
        browser.send("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        browser.wait_for("Page.loadEventFired")
        shot = browser.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": full_page,
            "clip": {"x": 0, "y": 0, "width": width, "height": 900, "scale": 1}}, session=session) \
            if not full_page else None
        check = browser.send("Runtime.evaluate", {"expression": PAGE_CHECK, "returnByValue": True},
                             session=session)
        if "exceptionDetails" in check:
            raise AssertionError(f"page check failed: {check['exceptionDetails']}")
        result = check["result"]["value"]
        if full_page:
            height = min(int(result["height"]), 16000)
            shot = browser.send("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}}, session=session)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        print(f"screenshot of {path}: {screenshot}")
        events = browser.events
    finally:
        browser.close()
    errors = [e["params"] for e in events if e.get("method") == "Runtime.exceptionThrown"]
    errors += [e["params"] for e in events
               if e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert")]
    errors += [e["params"]["entry"] for e in events
               if e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"]
    requests = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    return {**result, "errors": errors, "requests": requests}


def assert_page_is_sound(page: dict, report: Path) -> None:
    assert page["errors"] == [], page["errors"]
    # offline: the page loads itself and inline data (colour bars), no fonts, scripts or images from anywhere
    fetched = [url for url in page["requests"] if not url.startswith("data:")]
    assert fetched == [report.resolve().as_uri()], fetched
    assert page["figures"], "no figures in the report"
    for figure in page["figures"]:
        assert figure["width"] > 50 and figure["height"] > 50, figure
    assert len(page["ids"]) == len(set(page["ids"])), "duplicate element ids"
    for href in page["links"]:  # the contents, findings → claims → figures, and section cross-references
        assert href[1:] in page["ids"], href
    assert page["sorts"], "no sortable numeric column found"
    for sort in page["sorts"]:
        assert sort["ascending"] == sorted(sort["ascending"]), sort
        assert sort["descending"] == sorted(sort["descending"], reverse=True), sort
    # a filter box keeps exactly the rows containing its text, and clearing it brings them all back
    assert page["filters"], "no filter box"
    for found in page["filters"]:
        assert found["shown"] == found["expected"] and found["all_match"] and found["restored"] == found["total"]
    assert any(found["shown"] < found["total"] for found in page["filters"]), "no filter narrowed its table"
    # figure points carry hover titles (the exact values), in the figures that plot points
    titled = {figure["id"] for figure in page["figures"] if figure["titles"]}
    assert {"fig-lr_sensitivity", "fig-scaling", "fig-steps_to_target"} <= titled, titled
    # nothing is wider than the window (wide tables scroll inside their own box)
    assert page["wide"] == [] and page["page_width"] <= page["window_width"], page["wide"][:5]


def assert_downloads_are_the_tables(page: dict, tables: Path) -> None:
    """Each download link decodes to the table file it names, byte for byte."""
    assert page["downloads"], "no CSV download link"
    for link in page["downloads"]:
        prefix = "data:text/csv;charset=utf-8;base64,"
        assert link["href"].startswith(prefix), link["href"][:60]
        decoded = base64.b64decode(link["href"][len(prefix):]).decode()
        assert decoded == (tables / link["name"]).read_text(), link["name"]


def test_synthetic_report_renders_in_chromium(chromium, tmp_path):
    from tests.test_report import HOSTILE_TITLE, page_config, synthetic_report

    report = synthetic_report(tmp_path, title=HOSTILE_TITLE, config=page_config())
    page = open_report(report, ARTIFACTS / "report-synthetic.png", chromium)
    assert_page_is_sound(page, report)
    # the config's title is text: shown verbatim, never run as a script
    assert page["h1"] == HOSTILE_TITLE and page["title"] == HOSTILE_TITLE
    assert page["injected"] is False


@pytest.mark.workflow
@pytest.mark.parametrize("width", [1280, 800])
def test_tiny_workflow_report_renders_in_chromium(chromium, tiny_workdir, width):
    report = tiny_workdir / "results" / "report.html"
    page = open_report(report, ARTIFACTS / f"report-tiny-{width}.png", chromium, width=width)
    assert_page_is_sound(page, report)
    assert_downloads_are_the_tables(page, tiny_workdir / "results" / "tables")
    first = open_report(report, ARTIFACTS / f"report-first-screen-{width}.png", chromium, width=width,
                        full_page=False)
    assert first["errors"] == []


@pytest.mark.workflow
def test_replication_page_renders_in_chromium_at_800_px(chromium, compare_page):
    """compare.html from `python -m optbench.replicate` on two small workloads (conftest.compare_page)."""
    import re

    page = open_report(compare_page, ARTIFACTS / "compare-800.png", chromium, width=800)
    assert page["errors"] == [], page["errors"]
    fetched = [url for url in page["requests"] if not url.startswith("data:")]
    assert fetched == [compare_page.resolve().as_uri()], fetched  # offline: nothing but the page itself
    # every key figure drawn for both workloads, none wider than the window, nothing else either
    assert len(page["figures"]) >= 2 * 3, page["figures"]
    for figure in page["figures"]:
        assert 50 < figure["width"] <= page["window_width"] and figure["height"] > 50, figure
    assert page["wide"] == [] and page["page_width"] <= page["window_width"], page["wide"][:5]
    assert len(page["ids"]) == len(set(page["ids"])), "duplicate element ids"
    # one column per workload in the verdict table, a row per claim with a cell in each
    table = re.search(r'<table[^>]*id="compare-table".*?</table>', compare_page.read_text(), re.S)[0]
    header = re.findall(r"<th[^>]*>(.*?)</th>", table.split("</thead>")[0], re.S)
    assert [re.sub(r"<[^>]+>", "", h).strip() for h in header] == ["claim", "MNIST-1D", "MNIST subset", "agreement"]
    rows = table.split("<tbody>")[1].split("</tr>")[:-1]
    assert len(rows) == 15 and all(row.count("<td") == 4 for row in rows)
