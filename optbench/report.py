"""The HTML report: tables → template context (selection, seed statistics, formatting) → jinja2 page."""
from __future__ import annotations

import datetime
import math
import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from optbench import analysis
from optbench.analysis import METRICS  # selection.metric → (split, which checkpoint)
from optbench.config import CELL_KEYS, RUN_KEYS, optimizer_label
from optbench.verdicts import ANCHORS as CLAIM_ANCHORS

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "workflow" / "report"
TEMPLATE = "report.html.j2"

METRIC_LABELS = {
    "min_val_loss": "minimum validation loss over checkpoints",
    "final_val_loss": "final validation loss",
    "min_train_loss": "minimum training loss over checkpoints",
    "final_train_loss": "final training loss",
}
PACKAGES = ["optbench", "torch", "numpy", "scipy", "pandas", "matplotlib", "jinja2", "pyyaml",
            "jsonschema", "snakemake", "mnist1d"]

# ---------------------------------------------------------------------------------------------
# Selection and seed statistics (the spine tables alone are enough for these)

def selection_scores(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per run: the selection metric (`score`), the checkpoint it picks, and that
    checkpoint's test loss and accuracy. Test numbers are reported, never used to choose.

    A run whose every checkpoint is non-finite gets score = inf; ties pick the earliest checkpoint.
    """
    split, which = METRICS[metric]
    chosen = runs[runs["split"] == split].sort_values([*RUN_KEYS, "step"], kind="stable")
    if which == "min":
        finite = chosen[np.isfinite(chosen["loss"])]
        picked = finite.loc[finite.groupby(RUN_KEYS, sort=False)["loss"].idxmin()]
    else:
        picked = chosen.loc[chosen.groupby(RUN_KEYS, sort=False)["step"].idxmax()]
    status = runs.groupby(RUN_KEYS, as_index=False)["status"].first()
    scores = status.merge(picked[[*RUN_KEYS, "step", "epoch", "loss"]], on=RUN_KEYS, how="left")
    scores = scores.rename(columns={"loss": "score"})
    scores["score"] = scores["score"].fillna(math.inf)
    test = runs[runs["split"] == "test"][[*RUN_KEYS, "step", "loss", "accuracy"]]
    test = test.rename(columns={"loss": "test_loss", "accuracy": "test_accuracy"})
    return scores.merge(test, on=[*RUN_KEYS, "step"], how="left").sort_values(RUN_KEYS, ignore_index=True)


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, low, high, n): the analysis stage's Student-t interval over the finite values."""
    return analysis.mean_ci(values, level)


def best_grid_lrs(scores: pd.DataFrame) -> pd.DataFrame:
    """Best grid learning rate per optimizer × batch size: the lowest seed-mean score among the
    learning rates where every seed finished without diverging.

    `edge` flags an optimum on the grid's edge or beside a diverged learning rate (censored: the
    grid should be extended that way). The analysis stage refines lr* below grid spacing.
    """
    rows = []
    for (optimizer, batch_size), cell in scores.groupby(CELL_KEYS, sort=True):
        per_lr = cell.groupby("lr").agg(score=("score", "mean"), ok=("status", lambda s: bool((s == "ok").all())))
        per_lr = per_lr.sort_index()
        eligible = per_lr[per_lr["ok"] & np.isfinite(per_lr["score"])]
        if eligible.empty:
            rows.append({"optimizer": optimizer, "batch_size": batch_size, "lr": math.nan, "edge": False})
            continue
        lr = float(eligible["score"].idxmin())
        position = list(per_lr.index).index(lr)
        neighbours = per_lr.iloc[max(position - 1, 0):position + 2]
        edge = position in (0, len(per_lr) - 1) or not neighbours["ok"].all()
        seeds = cell[cell["lr"] == lr]
        accuracy = mean_ci(seeds["test_accuracy"])
        score = mean_ci(seeds["score"])
        rows.append({"optimizer": optimizer, "batch_size": batch_size, "lr": lr, "edge": edge,
                     "score": score[0], "score_low": score[1], "score_high": score[2],
                     "test_accuracy": accuracy[0], "test_accuracy_low": accuracy[1],
                     "test_accuracy_high": accuracy[2], "n_seeds": accuracy[3],
                     "epoch": float(seeds["epoch"].median())})
    return pd.DataFrame(rows)


def seed_bands(runs: pd.DataFrame, split: str, cells: pd.DataFrame | None = None) -> pd.DataFrame:
    """Median, min and max across seeds per optimizer × batch size × lr × checkpoint.

    `cells` (optimizer, batch_size, lr) restricts to those runs. Non-finite losses (after
    divergence) become NaN so that curves stop where a run diverged.
    """
    frame = runs[runs["split"] == split]
    if cells is not None:
        frame = frame.merge(cells[["optimizer", "batch_size", "lr"]].dropna(), on=["optimizer", "batch_size", "lr"])
    frame = frame.assign(loss=frame["loss"].where(np.isfinite(frame["loss"])))
    grouped = frame.groupby(["optimizer", "batch_size", "lr", "step"], sort=True)
    bands = grouped.agg(epoch=("epoch", "first"), median=("loss", "median"), low=("loss", "min"),
                        high=("loss", "max"), seeds=("loss", "count"))
    return bands.reset_index()


def thin(frame: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """At most `max_points` rows, evenly spaced in row order, keeping the first and last."""
    if len(frame) <= max_points:
        return frame
    index = np.unique(np.round(np.linspace(0, len(frame) - 1, max_points)).astype(int))
    return frame.iloc[index]


# ---------------------------------------------------------------------------------------------
# Formatting: every cell has a display text and a numeric sort key

@dataclass
class Cell:
    text: str
    sort: str = ""
    css: str = ""
    badge: str = ""    # a verdict: the text is shown as a coloured badge of this class, `detail` beneath
    detail: str = ""


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]] = field(default_factory=list)
    note: str = ""
    title: str = ""


def fmt(value, digits: int = 3) -> str:
    """Significant digits, thin and readable: 0.0123, 1.23e-05, 12.3, 1234; inf and NaN spelled out."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
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


def fmt_ci(mean, low, high, digits: int = 3, scale: float = 1.0) -> str:
    if not np.isfinite(mean):
        return fmt(mean)
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{fmt(mean * scale, digits)} (no CI: one seed)"
    return f"{fmt(mean * scale, digits)} [{fmt(low * scale, digits)}, {fmt(high * scale, digits)}]"


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
    return Cell("" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value))


def frame_table(frame: pd.DataFrame, columns: dict[str, str], digits: int = 3, note: str = "") -> Table:
    """A table of `frame` with `columns` {source column: header}: numbers formatted, strings as is."""
    table = Table(columns=list(columns.values()), note=note)
    for _, row in frame.iterrows():
        cells = []
        for name in columns:
            value = row.get(name)
            if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
                cells.append(num(value, digits))
            else:
                cells.append(text(value))
        table.rows.append(cells)
    return table


# ---------------------------------------------------------------------------------------------
# Sections

def setup_table(config: dict, status: pd.DataFrame) -> Table:
    grid = config["grid"]
    n_runs = len(status)
    diverged = int((status["status"] != "ok").sum())
    rows = [
        ("dataset", f"{config['dataset']['name']}, validation fraction {config['dataset']['val_fraction']}"),
        ("training samples n", ", ".join(str(v) for v in sorted(status["n_train"].unique()))),
        ("model", "MLP, hidden widths " + " → ".join(str(w) for w in config["model"]["hidden"])),
        ("optimizers", ", ".join(optimizer_label(o) for o in grid["optimizers"])),
        *[(f"{optimizer_label(o)} learning rates", ", ".join(fmt(lr) for lr in config["optimizers"][o]["lrs"]))
          for o in grid["optimizers"]],
        ("batch sizes", ", ".join(str(b) for b in grid["batch_sizes"])),
        ("seeds", ", ".join(str(s) for s in grid["seeds"])),
        ("budget", f"{config['train']['epochs']} epochs, drop_last = {config['train']['drop_last']}, "
                   f"≤ {config['train']['checkpoints']} log-spaced checkpoints per run"),
        ("selection metric", f"{config['selection']['metric']}: {METRIC_LABELS[config['selection']['metric']]} "
                             "(validation/training only; test is reported, never used to choose)"),
        ("grid size", f"{n_runs} runs ({n_runs // max(len(grid['seeds']), 1)} groups × {len(grid['seeds'])} seeds); "
                      f"{diverged} diverged"),
        ("device", ", ".join(f"{d} ({t} thread{'s' if t != 1 else ''})"
                             for d, t in status[["device", "threads"]].drop_duplicates().itertuples(index=False))),
    ]
    return Table(columns=["setting", "value"], rows=[[text(k), text(v)] for k, v in rows])


def best_lr_table(best: pd.DataFrame, analysis_best: pd.DataFrame | None, metric: str) -> Table:
    """The best grid LR per cell with its selection metric and test accuracy; with the analysis
    stage's best_lr.csv, also the refined lr* (geometric mean over seeds, 95 % CI) and its censoring."""
    refined = None
    if analysis_best is not None and {"lr_star_gmean", "lr_star_low", "lr_star_high"} <= set(analysis_best.columns):
        refined = analysis_best.drop_duplicates(CELL_KEYS).set_index(CELL_KEYS)
        # which way each cell's censored optima may lie, over its seeds (low, high or both)
        sides = analysis_best[analysis_best["censored"].astype(str).str.lower().isin(["true", "1"])]
        sides = sides.groupby(CELL_KEYS)["censor_side"].agg(lambda s: "/".join(sorted(set(map(str, s)))))
    columns = ["optimizer", "batch size", "best grid lr", f"{metric} (nats), mean [95% CI]",
               "test accuracy (%), mean [95% CI]", "seeds", "stopping epoch (median)", "censored"]
    if refined is not None:
        columns[3:3] = ["refined lr*, geometric mean [95% CI] over seeds",
                        "refined lr* on the training objective [95% CI]"]
    table = Table(columns=columns)
    for _, row in best.iterrows():
        key = (row["optimizer"], row["batch_size"])
        cells = [text(optimizer_label(row["optimizer"])), num(row["batch_size"]),
                 num(row["lr"])]
        edge = bool(row["edge"])
        if refined is not None:
            cell = refined.loc[key] if key in refined.index else None
            for suffix in ("", "_train"):
                if cell is None:
                    cells.append(Cell("—", "", "num"))
                    continue
                cells.append(Cell(fmt_ci(cell[f"lr_star_gmean{suffix}"], cell[f"lr_star_low{suffix}"],
                                         cell[f"lr_star_high{suffix}"]), sort_key(cell[f"lr_star_gmean{suffix}"]), "num"))
            if cell is not None:
                edge = int(cell.get("n_censored", 0)) > 0
                censored_text = (f"{int(cell['n_censored'])} of {int(cell['n_seeds'])} seeds, "
                                 f"optimum may lie {sides.get(key, '?')}er: extend the grid" if edge else "no")
        cells += [
            Cell(fmt_ci(row.get("score", math.nan), row.get("score_low", math.nan), row.get("score_high", math.nan)),
                 sort_key(row.get("score", math.nan)), "num"),
            Cell(fmt_ci(row.get("test_accuracy", math.nan), row.get("test_accuracy_low", math.nan),
                        row.get("test_accuracy_high", math.nan), scale=100), sort_key(row.get("test_accuracy")), "num"),
            num(row.get("n_seeds", math.nan)),
            num(row.get("epoch", math.nan)),
        ]
        if refined is not None and key in refined.index:
            cells.append(Cell(censored_text, "1" if edge else "0", "warn" if edge else ""))
        else:
            cells.append(Cell("yes: extend the grid" if edge else "no", "1" if edge else "0", "warn" if edge else ""))
        table.rows.append(cells)
    return table


def seed_lr_stars(best_lr: pd.DataFrame | None, objective: str = "val") -> pd.DataFrame | None:
    """Per-seed refined lr* from best_lr.csv as optimizer, batch_size, seed, lr, censored: on the
    selection metric ("val") or on the training objective ("train", what the scaling rules concern)."""
    suffix = "_train" if objective == "train" else ""
    if best_lr is None or f"lr_star{suffix}" not in best_lr or f"censored{suffix}" not in best_lr:
        return None
    frame = pd.DataFrame({"optimizer": best_lr["optimizer"], "batch_size": best_lr["batch_size"],
                          "seed": best_lr["seed"], "lr": pd.to_numeric(best_lr[f"lr_star{suffix}"], errors="coerce"),
                          "censored": best_lr[f"censored{suffix}"].astype(str).str.lower().isin(["true", "1"])})
    return frame[np.isfinite(frame["lr"]) & (frame["lr"] > 0)].reset_index(drop=True)


def scaling_fits(scaling: pd.DataFrame | None, objective: str = "train") -> dict:
    """optimizer → (α, low, high) of the fit over all batch sizes (scaling.csv, kind = fit)."""
    if scaling is None or not {"alpha", "alpha_low", "alpha_high", "objective", "kind"} <= set(scaling.columns):
        return {}
    rows = scaling[(scaling["objective"] == objective) & (scaling["kind"] == "fit")]
    return {row["optimizer"]: (row["alpha"], row["alpha_low"], row["alpha_high"]) for _, row in rows.iterrows()}


def benchmark_table(benchmarks: pd.DataFrame) -> Table:
    """Per-rule cost from Snakemake's benchmark files: wall time, CPU time and peak memory."""
    if benchmarks.empty:
        return Table(columns=[], note="no benchmark files were found")
    summary = benchmarks.groupby("rule", sort=False).agg(
        jobs=("s", "size"), total_s=("s", "sum"), median_s=("s", "median"), max_s=("s", "max"),
        cpu_s=("cpu_time", "sum"), peak_rss=("max_rss", "max")).reset_index()
    return frame_table(summary, {"rule": "rule", "jobs": "jobs", "total_s": "wall time, total (s)",
                                 "median_s": "wall time per job, median (s)", "max_s": "slowest job (s)",
                                 "cpu_s": "CPU time, total (s)", "peak_rss": "peak memory of a job (MB)"})


def read_benchmarks(paths: dict[str, list[str]]) -> pd.DataFrame:
    """Snakemake benchmark TSVs per rule (rule → files; a file that does not exist is skipped)."""
    frames = [pd.read_csv(path, sep="\t").assign(rule=rule, job=Path(path).stem)
              for rule, files in paths.items() for path in files if Path(path).exists()]
    if not frames:
        return pd.DataFrame(columns=["rule", "job", "s", "max_rss", "cpu_time"])
    frame = pd.concat(frames, ignore_index=True)
    for column in ("s", "max_rss", "cpu_time"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def claims_table(claims: pd.DataFrame | None) -> Table:
    """claims.csv → claim, evidence, verdict badge, the declared rule, link to the figure."""
    if claims is None or claims.empty:
        return Table(columns=[], note="claims.csv was not produced: the analysis stage (rule analyze) is not part "
                                      "of this workflow, so no verdicts are computed.")
    pick = lambda row, *names: next((row[n] for n in names if n in row and isinstance(row[n], str) and row[n]), "")
    table = Table(columns=["id", "claim", "evidence", "verdict", "rule (declared in advance)", "figure"])
    for _, row in claims.iterrows():
        claim_id = str(pick(row, "claim_id", "id", "claim"))
        verdict = str(pick(row, "verdict")).strip()
        reason = str(pick(row, "reason", "verdict_reason"))
        anchor = claim_anchor(str(pick(row, "anchor", "figure")), claim_id)
        table.rows.append([
            text(claim_id), text(pick(row, "text", "claim_text", "statement")),
            text(pick(row, "evidence", "summary")),
            Cell(verdict, verdict, "verdict", badge=verdict_class(verdict), detail=reason),
            text(pick(row, "rule", "rule_text", "criterion")),
            Cell(anchor.replace("fig-", "figure: ").replace("_", " ").replace("-", " "), anchor, "link"),
        ])
    return table


def claim_anchor(named: str, claim_id: str) -> str:
    """The page id of a claim's evidence: the one claims.csv names, else the claim's default."""
    return named or CLAIM_ANCHORS.get(claim_id, "")


def verdict_class(verdict: str) -> str:
    verdict = verdict.lower()
    if verdict.startswith("not"):
        return "no"
    if verdict.startswith("support"):
        return "yes"
    return "maybe"


# ---------------------------------------------------------------------------------------------
# Provenance

def provenance(config: dict, repo: Path | None = None) -> dict:
    repo = repo or TEMPLATE_DIR.parent.parent
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "config_yaml": config_yaml(config),
        "versions": versions,
        "git": git_commit(repo),
        "machine": f"{platform.node()} — {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
                   f"Python {platform.python_version()}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


class _FlowListDumper(yaml.SafeDumper):
    """Block-style mappings with one-line lists: the config as a person would write it."""


_FlowListDumper.add_representer(
    list, lambda dumper, value: dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True))


def config_yaml(config: dict) -> str:
    return yaml.dump(config, Dumper=_FlowListDumper, sort_keys=False, allow_unicode=True, width=100)


def git_commit(repo: Path) -> str:
    """HEAD of the workflow's repository (+ "with uncommitted changes"), or why it is unknown.

    --no-optional-locks: a report job must never take the index lock from someone committing.
    """
    def git(*args):
        return subprocess.run(["git", "--no-optional-locks", "-C", str(repo), *args], capture_output=True,
                              text=True, timeout=20)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "unavailable (not a git checkout)"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable (git not found)"
    return head.stdout.strip() + (" with uncommitted changes" if dirty else "")


# ---------------------------------------------------------------------------------------------
# Figures and rendering

def inline_svg(svg: str) -> str:
    """The <svg> element of an SVG file for embedding in HTML: no XML prologue, DOCTYPE or RDF metadata."""
    return re.sub(r"<metadata>.*?</metadata>\s*", "", svg[svg.index("<svg"):], count=1, flags=re.S)


def caption_text(rst: str) -> str:
    """A caption .rst file as plain text: the captions use no markup beyond ``literals``."""
    return re.sub(r"``([^`]*)``", r"\1", " ".join(rst.split()))


def render(context: dict, template_dir: Path = TEMPLATE_DIR) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(str(template_dir)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(**context)


# ---------------------------------------------------------------------------------------------
# The page

# Figure name → title; the caption is the figure's .rst file (shared with `snakemake --report`).
FIGURE_TITLES = {
    "curves": "training and validation loss at the best learning rate",
    "lr_grid": "validation loss for every learning rate",
    "lr_sensitivity": "learning-rate sensitivity",
    "cost": "training time",
    "trajectories": "too small and too large learning rates",
    "early_stopping": "when the validation loss bottoms out",
    "scaling": "best learning rate against batch size",
    "steps_to_target": "steps to the target loss against batch size",
    "gradvar": "mini-batch gradient error against σ²/m",
    "noise_scale": "gradient noise scale across training",
}


def figure_entries(svgs: dict[str, str], captions: dict[str, str]) -> dict[str, dict]:
    from markupsafe import Markup

    # Markup: the SVG is this workflow's own matplotlib output, whose text matplotlib has escaped.
    return {name: {"svg": Markup(inline_svg(svg)), "title": FIGURE_TITLES.get(name, name.replace("_", " ")),
                   "caption": caption_text(captions.get(name, ""))} for name, svg in svgs.items()}


def build_context(config: dict, tables: dict[str, pd.DataFrame], svgs: dict[str, str], captions: dict[str, str],
                  benchmarks: pd.DataFrame, prov: dict) -> dict:
    """Everything the template shows. `tables` holds runs, status and whichever analysis or gradient-
    variance tables this workflow produced; a section whose tables are absent says so."""
    runs, status = tables["runs"], tables["status"]
    metric = config["selection"]["metric"]
    scores = selection_scores(runs, metric)
    order = {name: i for i, name in enumerate(config["grid"]["optimizers"])}
    best = best_grid_lrs(scores).sort_values(["optimizer", "batch_size"], key=lambda c: c.map(order)
                                             if c.name == "optimizer" else c, kind="stable")
    analysis_best = tables.get("best_lr")
    sections = [
        {"id": "claims", "kind": "fixed", "title": "Claims and verdicts", "available": "claims" in tables},
        {"id": "setup", "kind": "fixed", "title": "Setup", "available": True},
        {"id": "curves", "kind": "fixed", "title": "Training curves", "available": True},
        {"id": "lr-sensitivity", "kind": "fixed", "title": "Learning-rate sensitivity and best learning rates", "available": True},
        *analysis_sections(tables, svgs),
        {"id": "cost", "kind": "fixed", "title": "Cost", "available": True},
        {"id": "provenance", "kind": "fixed", "title": "Provenance", "available": True},
    ]
    return {
        "title": config.get("title", "optbench"),
        "n_runs": len(status),
        "sections": sections,
        "claims": claims_table(tables.get("claims")),
        "setup": setup_table(config, status),
        "figures": figure_entries(svgs, captions),
        "metric": metric,
        "metric_label": METRIC_LABELS[metric],
        "refined": analysis_best is not None,
        "best_lr": best_lr_table(best, analysis_best, metric),
        "lr_sensitivity": lr_sensitivity_table(tables.get("lr_sensitivity")),
        "cost": benchmark_table(benchmarks),
        "benchmark_jobs": len(benchmarks),
        "train_seconds": fmt(status["train_seconds"].sum()),
        "provenance": prov,
    }


def analysis_sections(tables: dict[str, pd.DataFrame], svgs: dict[str, str]) -> list[dict]:
    """Scaling rules, steps to target, gradient noise and when to stop: from the analysis and
    gradient-variance tables when this workflow produced them ("when to stop" is drawn from the
    run tables in any case)."""
    missing_analysis = "Not computed: this workflow has no analysis stage (rule analyze), so {} was not produced."
    specs = [
        ("scaling", "Scaling rules (batch size × k → learning rate × ?)", "scaling", ["scaling"],
         missing_analysis.format("scaling.csv"), scaling_section),
        ("steps-to-target", "Steps to target", "steps_to_target", ["steps_to_target"],
         missing_analysis.format("steps_to_target.csv"), steps_section),
        ("gradient-noise", "Gradient noise", "gradvar", ["gradvar", "noise_scale"],
         "Not computed: no gradient-variance probes in this workflow (add runs to grad_variance.probes in "
         "the config).", gradient_noise_section),
        ("when-to-stop", "When to stop", "early_stopping", ["early_stopping"], "", stopping_section),
    ]
    sections = []
    for anchor, title, needed, figure_names, missing, build in specs:
        section = {"id": anchor, "title": title, "kind": "analysis", "available": needed in tables or not missing,
                   "missing": missing, "intro": "", "figures": [name for name in figure_names if name in svgs],
                   "tables": []}
        if needed in tables:
            try:
                section.update(build(tables))
            except KeyError as error:  # a table without an expected column is still shown, as it is
                section.update({"intro": f"({needed}.csv lacks the column {error}; shown as it is.)",
                                "tables": [generic_table(tables[needed], needed)]})
        sections.append(section)
    return sections


def ci_cell(row, column: str, digits: int = 3, scale: float = 1.0) -> Cell:
    """`column` with `column`_low/_high as "mean [low, high]"."""
    return Cell(fmt_ci(row[column], row[f"{column}_low"], row[f"{column}_high"], digits, scale),
                sort_key(row[column]), "num")


def yes_no(value) -> Cell:
    value = str(value).lower() in ("true", "1")
    return Cell("yes" if value else "no", "1" if value else "0")


def lr_sensitivity_table(sensitivity: pd.DataFrame | None) -> Table | None:
    """lr_sensitivity.csv per cell: the width of the near-best LR range and what happens either side."""
    if sensitivity is None or sensitivity.empty:
        return None
    first = sensitivity.iloc[0]
    table = Table(columns=["optimizer", "batch size", "near-best lr range (decades), mean [95% CI]",
                           "grid span (decades)", "diverged runs", "oscillating runs",
                           "below the best: lower lr slower", "above the best: unstable lrs"],
                  title="How wide is the good learning-rate range?")
    table.note = (f"Near-best: the selection metric within {fmt(100 * first['tolerance'])} % of its minimum, "
                  "per seed (ends interpolated in log lr; ≥ marks a range cut by the grid's edge). Below the best, "
                  "pairs of neighbouring lrs where the lower one needs more steps to the target; above it, lrs "
                  "where most seeds diverged or oscillated (claim C9).")
    for _, row in sensitivity.iterrows():
        cut = row["width_censored_low"] or row["width_censored_high"]
        width = Cell(fmt_ci(row["width_decades"], row["width_low"], row["width_high"]), sort_key(row["width_decades"]),
                     "num")
        if cut:
            width.text = "≥ " + width.text
        table.rows.append([
            text(optimizer_label(row["optimizer"])), num(row["batch_size"]), width, num(row["grid_decades"]),
            Cell(f"{int(row['diverged_runs'])} of {int(row['runs'])}", sort_key(row["diverged_fraction"]), "num"),
            Cell(f"{int(row['oscillating_runs'])}", sort_key(row["oscillating_runs"]), "num"),
            Cell(f"{int(row['below_slower'])} of {int(row['below_pairs'])} pairs", sort_key(row["below_slower"]), "num"),
            Cell(f"{int(row['above_unstable'])} of {int(row['above_lrs'])}", sort_key(row["above_unstable"]), "num"),
        ])
    return table


def scaling_section(tables: dict[str, pd.DataFrame]) -> dict:
    scaling = tables["scaling"]
    intro = ("lr* is refined per seed (parabola in log lr through the best grid point and its neighbours). "
             "The rules concern optimisation, so they are judged on lr* of the training objective (eval-mode "
             "loss over the whole training set at the end of the budget); lr* of the selection metric is shown "
             "beside it. Per seed, log lr* = α·log m + c is fitted over the batch sizes; the CI of α comes from "
             "the spread across seeds. Linear rule: α = 1 (C7, SGD); square-root rule: α = ½ (C8, Adam). A CI "
             "that contains both values, or neither, decides nothing by itself.")
    fits = Table(columns=["optimizer", "lr* on", "batch sizes", "α, mean [95% CI]", "seeds", "censored lr*",
                          "CI contains 1", "CI contains ½"], title="Fitted exponents α")
    order = {"fit": 0, "pair": 1}
    rows = scaling.assign(_o=scaling["kind"].map(order)).sort_values(["optimizer", "objective", "_o", "m_low"],
                                                                      kind="stable")
    rows = rows[(rows["kind"] == "fit") | (rows["n_batch_sizes"] < rows["optimizer"].map(
        rows[rows["kind"] == "fit"].groupby("optimizer")["n_batch_sizes"].max()))]  # a pair that is the fit: once
    for _, row in rows.iterrows():
        span = f"{int(row['m_low'])}–{int(row['m_high'])}" + (" (all)" if row["kind"] == "fit" else "")
        censored = f"{int(row['censored'])}" + (f" (m = {row['censored_m']})" if row["censored"] else "")
        fits.rows.append([
            text(optimizer_label(row["optimizer"])),
            text("training objective" if row["objective"] == "train" else "selection metric"),
            Cell(span, sort_key(row["m_low"])), ci_cell(row, "alpha"), num(row["n_seeds"]),
            Cell(censored, sort_key(row["censored"]), "num"), yes_no(row["contains_linear"]),
            yes_no(row["contains_sqrt"])])
    result = {"intro": intro, "tables": [fits]}
    if "trajectories" in tables and not tables["trajectories"].empty:
        result["tables"].append(trajectory_table(tables["trajectories"]))
    return result


def trajectory_table(trajectories: pd.DataFrame) -> Table:
    """trajectories.csv summarised: from each seed's best-LR run, how far the training-loss curve at
    batch ×k moves under lr ×k against lr ×√k."""
    base = trajectories[trajectories["base_is_best"].astype(str).str.lower().isin(["true", "1"])]
    table = Table(columns=["optimizer", "k", "rule", "base runs", "scaled run on the grid",
                           "curve distance (nats, RMS), median [min, max]", "closer than the other rule"],
                  title="Same curve at batch ×k? lr ×k (linear) against lr ×√k")
    table.note = ("Distance: root mean square difference of the eval-mode training-loss curves against epochs, from "
                  "each seed's best-lr run at batch size B to the run at k·B with the scaled lr (when that lr is on the "
                  "grid); a diverged scaled run is infinitely far. The SDE view (Malladi et al. 2022) predicts "
                  "matching curves under the square-root rule for Adam and the linear rule for SGD.")
    for (optimizer, k), group in base.groupby(["optimizer", "k"], sort=True):
        pivot = group.pivot_table(index=["batch_size", "lr", "seed"], columns="rule", values="distance",
                                  aggfunc="first")
        for rule in ("linear", "sqrt"):
            rows = group[group["rule"] == rule]
            distances = rows.loc[rows["on_grid"].astype(str).str.lower().isin(["true", "1"]), "distance"]
            distances = pd.to_numeric(distances, errors="coerce").dropna()
            other = "sqrt" if rule == "linear" else "linear"
            closer = (pivot[rule] < pivot[other]).sum() if {rule, other} <= set(pivot.columns) else 0
            both = pivot[[rule, other]].notna().all(axis=1).sum() if {rule, other} <= set(pivot.columns) else 0
            median = Cell(fmt_ci(distances.median(), distances.min(), distances.max()) if len(distances) else "—",
                          sort_key(distances.median() if len(distances) else math.nan), "num")
            table.rows.append([text(optimizer_label(optimizer)), num(k), text("lr × k" if rule == "linear" else "lr × √k"),
                               num(len(rows)), num(len(distances)), median,
                               Cell(f"{int(closer)} of {int(both)}", sort_key(closer), "num")])
    return table


def steps_section(tables: dict[str, pd.DataFrame]) -> dict:
    steps = tables["steps_to_target"]
    intro = ("The target is a validation loss every batch size's best learning rate reaches (per optimizer). For each "
             "batch size the fastest learning rate is used (Shallue et al. 2019); steps are the first checkpoint "
             "reaching the target, interpolated. Efficiency from the previous batch size: 1 = doubling the batch "
             "halves the steps (perfect scaling), 0 = no gain (claim C6: the biggest gains come from growing small "
             "batches). The knee B_crit fits S(B) = S_min·(1 + B_crit/B) per seed (McCandlish et al. 2018); "
             "B_simple = σ²/‖∇f‖² is measured at the probe checkpoint nearest the target.")
    table = Table(columns=["optimizer", "batch size", "target (nats)", "fastest lr", "steps, geometric mean [95% CI]",
                           "epochs [95% CI]", "perfect-scaling steps", "efficiency vs previous B",
                           "knee B_crit (samples) [95% CI]", "B_simple near target (samples)"],
                  title="Steps to the target validation loss")
    for _, row in steps.iterrows():
        knee = Cell(fmt_ci(row["knee"], row["knee_low"], row["knee_high"]), sort_key(row["knee"]), "num")
        if row["knee_infinite"]:
            knee.text += f" ({int(row['knee_infinite'])} of {int(row['knee_seeds'])} seeds: no knee)"
        table.rows.append([
            text(optimizer_label(row["optimizer"])), num(row["batch_size"]), num(row["target_loss"]), num(row["lr"]),
            ci_cell(row, "steps") if row["reached"] else Cell("not reached", "Infinity", "num warn"),
            ci_cell(row, "epochs") if row["reached"] else Cell("—", "Infinity", "num"),
            num(row["perfect_scaling_steps"]), num(row["efficiency"], 2), knee, num(row["b_simple"])])
    return {"intro": intro, "tables": [table]}


def stopping_section(tables: dict[str, pd.DataFrame]) -> dict:
    stops = tables["early_stopping"]
    at_best = stops[stops["at_best_lr"].astype(str).str.lower().isin(["true", "1"]) & (stops["status"] == "ok")]
    table = Table(columns=["optimizer", "batch size", "runs", "stopping epoch, median (of budget)",
                           "validation loss at stop → at end (nats, mean)", "test loss gained by stopping (nats), "
                           "mean [95% CI]", "runs overfitting"], title="Early stopping at each seed's best lr")
    table.note = ("Stopping checkpoint: the earliest minimum of the validation loss. Test gain = test loss at the end − "
                  "test loss at the stopping checkpoint (> 0: stopping there was better; measured, never used to "
                  "choose). Overfitting: validation loss ends clearly above its minimum while training loss keeps "
                  "falling (claim C10).")
    for (optimizer, batch_size), group in at_best.groupby(["optimizer", "batch_size"], sort=True):
        gain = mean_ci(group["test_gain"])
        table.rows.append([
            text(optimizer_label(optimizer)), num(batch_size), num(len(group)),
            Cell(f"{fmt(group['stop_epoch'].median())} of {fmt(group['final_epoch'].max())}",
                 sort_key(group["stop_epoch"].median()), "num"),
            Cell(f"{fmt(group['val_stop'].mean())} → {fmt(group['val_final'].mean())}",
                 sort_key(group["val_final"].mean() - group["val_stop"].mean()), "num"),
            Cell(fmt_ci(*gain[:3]), sort_key(gain[0]), "num"),
            Cell(f"{int(group['overfits'].astype(str).str.lower().isin(['true', '1']).sum())} of {len(group)}",
                 "", "num")])
    return {"tables": [table]}


def gradient_noise_section(tables: dict[str, pd.DataFrame]) -> dict:
    moments, slopes = tables["gradvar"], tables.get("gradvar_slopes")
    if moments.empty:
        return {"intro": "The probe runs had no checkpoint with weights and a finite loss: nothing was measured."}
    first = moments.iloc[0]
    intro = (f"At each probed checkpoint, K = {int(first['K'])} independent mini-batches of each size m are "
             f"drawn uniformly without replacement from the n = {int(first['n'])} training samples; "
             f"E‖g_B − ∇f‖² is their mean, with a {fmt(100 * first['confidence'])} % BCa bootstrap interval. "
             f"Over the {moments['m'].nunique()} sizes m of a checkpoint, a prediction passes when it lies inside every "
             f"family-wise interval (Bonferroni: {fmt(100 * first['confidence_fw'], 4)} % each). The log-log slope "
             "is fitted over m ≤ n/20, where σ²/m and the exact σ²/m·(n−m)/(n−1) agree; the tutorial predicts −1.")
    keys = [*RUN_KEYS, "step"]
    table = Table(columns=["probe run", "epoch", "training loss (nats)", "σ²", "‖∇f‖²", "B_simple (samples)",
                           "σ²/m passes (m's)", "exact passes (m's)", "slope, m ≤ n/20 [95% CI]",
                           "measured ÷ σ²/m, m = 2 [95% CI]", "measured ÷ σ²/m, m = 100 [95% CI]",
                           "z, mean over m (expect 1)"])
    for key, rows in moments.groupby(keys, sort=False):
        row = rows.iloc[0]
        fit = slopes
        if slopes is not None and len(slopes):
            mask = np.ones(len(slopes), dtype=bool)
            for name, value in zip(keys, key):
                mask &= (slopes[name] == value).to_numpy()
            fit = slopes[mask]
        fit = fit.iloc[0] if fit is not None and len(fit) else {}
        label = f"{optimizer_label(row['optimizer'])}, B = {row['batch_size']}, " \
                f"lr {fmt(row['lr'])}, seed {row['seed']}"
        passes = lambda column: f"{int(rows[column].astype(bool).sum())} of {len(rows)}"

        def ratio(m):  # the tutorial's "batch size 2 halves it, 100 divides it by 100": ratio 1 if right
            at = rows[rows["m"] == m]
            if at.empty:
                return Cell("not probed", "", "num")
            at = at.iloc[0]
            values = [at[c] / at["pred_iid"] for c in ("empirical_mean", "ci_low", "ci_high")]
            return Cell(fmt_ci(*values), sort_key(values[0]), "num")
        table.rows.append([
            Cell(label, label, "nowrap"), num(row["epoch"]), num(row.get("train_loss", math.nan)), num(row["sigma2"]),
            num(row["grad_norm2"]), num(row["b_simple"]),
            Cell(passes("iid_in_ci_fw"), sort_key(rows["iid_in_ci_fw"].astype(bool).mean()), "num"),
            Cell(passes("fpc_in_ci_fw"), sort_key(rows["fpc_in_ci_fw"].astype(bool).mean()), "num"),
            Cell(fmt_ci(fit.get("slope", math.nan), fit.get("slope_low", math.nan), fit.get("slope_high", math.nan)),
                 sort_key(fit.get("slope")), "num"),
            ratio(2), ratio(100),
            num(rows["z"].mean() if "z" in rows else math.nan),
        ])
    table.title = "Per probed checkpoint"
    table.note = ("σ² = mean_i ‖∇f_i‖² − ‖∇f‖² and ‖∇f‖² are squared gradient norms (nats² per squared weight "
                  "unit); B_simple = σ²/‖∇f‖² is in samples.")
    return {"intro": intro, "tables": [table]}


def generic_table(frame: pd.DataFrame, name: str, max_rows: int = 200) -> Table:
    """A CSV shown as it is (numbers formatted), for tables without a dedicated layout."""
    shown = frame.head(max_rows)
    table = frame_table(shown, {c: c.replace("_", " ") for c in shown.columns})
    table.title = f"{name}.csv"
    if len(frame) > max_rows:
        table.note = f"first {max_rows} of {len(frame)} rows"
    return table
