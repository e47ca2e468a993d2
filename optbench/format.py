"""The one number formatter of the report and of the verdict texts: significant digits, intervals, percents."""
from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field

import numpy as np


def is_missing(value) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


def fmt(value, digits: int = 3) -> str:
    """Significant digits, plain where readable: 0.0123, 1.23e-05, 12.3, 1234, 1.23e+05 → "1.23e5"; inf, NaN spelled out."""
    if is_missing(value):
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    value = float(value)
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:.0f}"
    return f"{value:.{digits}g}" if value != 0 else "0"


def fmt_ci(estimate, low, high, digits: int = 3, scale: float = 1.0, unit: str = "") -> str:
    """"estimate [low, high]unit"; "(no CI)" where the interval is undefined (one seed, no spread)."""
    if is_missing(estimate) or not np.isfinite(estimate):
        return fmt(estimate) + unit
    if is_missing(low) or is_missing(high):
        return f"{fmt(estimate * scale, digits)}{unit} (no CI)"
    return f"{fmt(estimate * scale, digits)} [{fmt(low * scale, digits)}, {fmt(high * scale, digits)}]{unit}"


def percent(value, digits: int = 3) -> str:
    """A fraction as a percentage: 0.95 → "95 %", 0.975 → "97.5 %"."""
    if is_missing(value) or not np.isfinite(value):
        return "—"
    return f"{fmt(100 * value, digits)} %"


def ci_label(confidence: float) -> str:
    """The label of an interval at `confidence`: "95 % CI"."""
    return f"{percent(confidence)} CI"


def listing(values, digits: int = 3) -> str:
    """Numbers as "a, b and c"."""
    texts = [fmt(v, digits) if not isinstance(v, str) else v for v in values]
    if len(texts) <= 1:
        return "".join(texts)
    return ", ".join(texts[:-1]) + " and " + texts[-1]


# ---------------------------------------------------------------------------------------------
# Table cells: every cell has a display text and a numeric sort key

@dataclass
class Cell:
    text: str
    sort: str = ""
    css: str = ""
    badge: str = ""    # a verdict: the text is shown as a coloured badge of this class, `detail` beneath
    detail: str = ""
    title: str = ""    # hover text (the exact value behind a rounded number)


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    note: str = ""
    title: str = ""
    name: str = ""     # the CSV behind it (results/tables/<name>.csv), for the page's download link
    csv: str = ""      # that file as a data: URI, so the self-contained page can hand it out
    row_ids: list[str] = field(default_factory=list)  # an id per row (claims: claim-C1, ...), for links


def csv_uri(text: str) -> str:
    """A CSV file's text as a data: URI (base64), the href of a download link in a self-contained page."""
    return "data:text/csv;charset=utf-8;base64," + base64.b64encode(text.encode()).decode()


def sort_key(value) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(value):
        return ""
    return repr(value) if math.isfinite(value) else ("Infinity" if value > 0 else "-Infinity")


def num(value, digits: int = 3) -> Cell:
    return Cell(fmt(value, digits), sort_key(value), "num")


def text(value) -> Cell:
    return Cell("" if is_missing(value) else str(value))


def ci_cell(row, column: str, digits: int = 3, scale: float = 1.0, unit: str = "") -> Cell:
    """`column` with `column`_low/_high as "estimate [low, high]"."""
    return Cell(fmt_ci(row[column], row[f"{column}_low"], row[f"{column}_high"], digits, scale, unit),
                sort_key(row[column]), "num")


def yes_no(value) -> Cell:
    return Cell("yes" if value else "no", "1" if value else "0")


def frame_table(frame, columns: dict[str, str], digits: int = 3, note: str = "", title: str = "",
                name: str = "") -> Table:
    """A table of `frame` with `columns` {source column: header}: numbers formatted, strings as they are."""
    table = Table(columns=list(columns.values()), note=note, title=title, name=name)
    for _, row in frame.iterrows():
        cells = []
        for column in columns:
            value = row.get(column)
            if isinstance(value, (bool, np.bool_)):
                cells.append(yes_no(value))
            elif isinstance(value, (int, float, np.integer, np.floating)):
                cells.append(num(value, digits))
            else:
                cells.append(text(value))
        table.rows.append(cells)
    return table
