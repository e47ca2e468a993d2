"""The replication page: several experiments' claims side by side, read from their tables (nothing recomputed)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from optbench.format import Cell, Table, text
from optbench.report import TEMPLATE_DIR, inline_svg, verdict_class
from optbench.tables import read_table

COMPARE_TEMPLATE = "compare.html.j2"
# the figures a reader compares across workloads, in this order (each experiment's results/figures/<name>.svg)
KEY_FIGURES = {"scaling": "best learning rate against batch size", "steps_to_target": "steps to the target loss",
               "gradvar": "mini-batch gradient error against m", "critical_batch": "the critical batch size"}


@dataclass
class Workload:
    """One experiment of the comparison: its name, where its results are, and what it ran."""

    name: str
    results: Path       # the experiment's results/ folder (tables/, figures/, report.html)
    description: str = ""


def read_workload(workload: Workload) -> dict:
    """A workload's claims (its claims.csv, through the declared table) and its key figures' SVG text."""
    claims = read_table(workload.results / "tables" / "claims.csv", "claims")
    figures = {name: (workload.results / "figures" / f"{name}.svg").read_text()
               for name in KEY_FIGURES if (workload.results / "figures" / f"{name}.svg").exists()}
    return {"workload": workload, "claims": claims, "figures": figures}


def comparison_table(read: list[dict]) -> Table:
    """One row per claim (C1–C10, L1–L5, in the first workload's order), one column per workload: its verdict
    as a coloured badge, with the domain of validity and the headline number beneath."""
    order = list(dict.fromkeys(claim for entry in read for claim in entry["claims"]["claim_id"]))
    texts = {}
    for entry in read:
        texts.update(dict(zip(entry["claims"]["claim_id"], entry["claims"]["claim_text"])))
    table = Table(columns=["claim", *[entry["workload"].name for entry in read], "agreement"], name="compare")
    for claim in order:
        cells, verdicts = [Cell(f"{claim} {texts[claim]}", claim)], []
        for entry in read:
            row = entry["claims"][entry["claims"]["claim_id"] == claim]
            if row.empty:
                cells.append(text("not judged"))
                continue
            row = row.iloc[0]
            verdicts.append(row["verdict"])
            detail = "; ".join(part for part in (row["headline"], row["domain"]) if part)
            cells.append(Cell(row["verdict"], row["verdict"], "verdict", badge=verdict_class(row["verdict"]),
                              detail=detail))
        decided = [v for v in verdicts if v != "inconclusive"]
        agreement = ("replicates" if decided and len(set(decided)) == 1 and len(decided) == len(verdicts) else
                     "conflicts" if len(set(decided)) > 1 else
                     f"{len(decided)} of {len(verdicts)} decided" + (f" ({decided[0]})" if decided else ""))
        cells.append(Cell(agreement, agreement, "agree-" + agreement.split()[0]))
        table.rows.append(cells)
    return table


def figure_rows(read: list[dict]) -> list[dict]:
    """Per key figure, each workload's SVG (ids prefixed by the workload, so that they stay unique on the page)."""
    from markupsafe import Markup

    rows = []
    for name, title in KEY_FIGURES.items():
        panels = []
        for entry in read:
            svg = entry["figures"].get(name)
            if svg is None:
                panels.append({"workload": entry["workload"].name, "svg": None})
                continue
            prefix = re.sub(r"\W", "_", entry["workload"].name)
            svg = re.sub(r'(\sid="|href="#|url\(#)', rf"\1{prefix}-", inline_svg(svg))
            # Markup: each SVG is a workload's own matplotlib output, whose text matplotlib has escaped.
            panels.append({"workload": entry["workload"].name, "svg": Markup(svg)})
        if any(panel["svg"] is not None for panel in panels):
            rows.append({"name": name, "title": title, "panels": panels})
    return rows


def render_comparison(title: str, workloads: list[Workload], notes: list[str] | None = None) -> str:
    """results/compare.html: self-contained like the report (inline CSS and SVG, no network)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    read = [read_workload(w) for w in workloads]
    env = Environment(loader=FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template(COMPARE_TEMPLATE).render(
        title=title, table=comparison_table(read), figures=figure_rows(read), notes=notes or [],
        workloads=[{"name": e["workload"].name, "description": e["workload"].description,
                    "claims": len(e["claims"])} for e in read])


def summary_frame(workloads: list[Workload]) -> pd.DataFrame:
    """The comparison as a tidy table (claim, workload, verdict, domain, headline): what the page shows."""
    rows = []
    for workload in workloads:
        claims = read_workload(workload)["claims"]
        rows += [{"claim_id": r.claim_id, "workload": workload.name, "verdict": r.verdict, "domain": r.domain,
                  "headline": r.headline} for r in claims.itertuples()]
    return pd.DataFrame(rows, columns=["claim_id", "workload", "verdict", "domain", "headline"])
