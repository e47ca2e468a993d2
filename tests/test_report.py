"""Report: the page formats the analysis tables and recomputes nothing — one value per quantity, one CI level,
cost that adds up, deterministic self-contained SVG, escaped config strings, sections that follow the stages."""
from __future__ import annotations

import ast
import copy
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optbench import figures, format as formatting, verdicts
from optbench.analysis_stage import analysis_stage, probe_statistics
from optbench.config import load_config, n_train_samples, prepare_config, steps_per_epoch
from optbench.format import fmt
from optbench.noise import predictions
from optbench.provenance import provenance
from optbench.report import FIGURE_TITLES, TEMPLATE_DIR, build_context, caption_text, render
from optbench.tables import read_benchmarks, read_table, write_table
from optbench.train import checkpoint_schedule
from tests.conftest import ROOT, TINY, snakemake

HOSTILE_TITLE = '<script>window.__injected = true</script> & "quotes" <b>not bold</b>'
FIGURES = {"figures": ["curves", "sweep", "lr_sensitivity", "trajectories", "early_stopping", "cost"],
           "analysis_figures": ["lr_grid", "scaling", "steps_to_target", "critical_batch", "lr_forms"],
           "gradvar_figures": ["gradvar", "noise_scale"]}
ALL_FIGURES = [name for names in FIGURES.values() for name in names]
PAGE_TABLES = ["run_status", "hyperparameter_importance", "critical_batch", "lr_noise_scale", "batch_scaling_common", "malladi", "claims", "best_lr_cells", "lr_sensitivity", "scaling", "trajectory_summary",
               "steps_to_target", "batch_scaling", "stopping_cells", "cost", "gradvar", "gradvar_slopes",
               "noise_pooled"]


# ---------------------------------------------------------------------------------------------
# Synthetic tables in the aggregate stage's format, with a known optimum

def synthetic_tables(config: dict, diverging: tuple[str, float] | None = None) -> dict[str, pd.DataFrame]:
    """runs.csv, run_status.csv and minibatch.csv for the config's grid. Loss falls towards a floor that
    is lowest at the middle learning rate of each optimizer's grid; validation loss turns up late
    (overfitting); `diverging` (optimizer, lr) makes seed 0 of that learning rate blow up half-way."""
    n = n_train_samples(config)
    rows, statuses, minibatch = [], [], []
    for optimizer in config["grid"]["optimizers"]:
        lrs = config["optimizers"][optimizer]["lrs"]
        centre = math.sqrt(min(lrs) * max(lrs))
        for batch_size in config["grid"]["batch_sizes"]:
            per_epoch = steps_per_epoch(n, batch_size, config["train"]["drop_last"])
            total = config["train"]["epochs"] * per_epoch
            steps = np.array(checkpoint_schedule(total, config["train"]["checkpoints"]))
            t = steps / total
            for lr in lrs:
                distance = math.log10(lr / centre)
                for seed in config["grid"]["seeds"]:
                    floor = 0.4 + distance**2 + 0.01 * seed
                    rate = 6 * math.sqrt(lr / centre)
                    train = floor + (2.3 - floor) * np.exp(-rate * t)
                    val = train + 0.05 + 0.3 * t**2
                    test = val + 0.02
                    diverged = diverging == (optimizer, lr) and seed == 0
                    weights = ~((t > 0.5) & diverged)
                    for split, loss in (("train", train), ("val", val), ("test", test)):
                        loss = np.where(weights, loss, np.inf)
                        accuracy = np.where(weights, 0.5 * np.exp(-loss), np.nan)
                        if split == "test":  # a trap: the test split would prefer the largest lr
                            accuracy = accuracy + 0.4 * math.log(lr / min(lrs)) / math.log(max(lrs) / min(lrs))
                        rows.append(pd.DataFrame({
                            "dataset": "mnist1d", "model": "mlp16", "optimizer": optimizer, "batch_size": batch_size,
                            "lr": lr, "seed": seed, "step": steps, "epoch": steps / per_epoch, "split": split,
                            "loss": loss, "accuracy": accuracy, "status": "diverged" if diverged else "ok",
                            "has_weights": weights}))
                    windows = np.unique(np.linspace(1, total if not diverged else total // 2, 50).astype(int))
                    batch_loss = floor + (2.3 - floor) * np.exp(-rate * windows / total)
                    minibatch.append(pd.DataFrame({
                        "dataset": "mnist1d", "model": "mlp16", "optimizer": optimizer, "batch_size": batch_size,
                        "lr": lr, "seed": seed, "step": windows, "epoch": windows / per_epoch, "loss": batch_loss,
                        "loss_max": batch_loss * 1.1}))
                    statuses.append({
                        "dataset": "mnist1d", "model": "mlp16", "optimizer": optimizer, "batch_size": batch_size,
                        "lr": lr, "seed": seed, "status": "diverged" if diverged else "ok",
                        "reason": "nonfinite" if diverged else "", "diverged_step": total // 2 if diverged else None,
                        "steps_per_epoch": per_epoch, "total_steps": total,
                        "steps_done": total // 2 if diverged else total,
                        "train_seconds": 0.002 * total * (1 + batch_size / 256), "device": "cpu", "threads": 1,
                        "n_train": n, "bundle": "l0s0"})
    return {"runs": pd.concat(rows, ignore_index=True), "status": pd.DataFrame(statuses),
            "minibatch": pd.concat(minibatch, ignore_index=True)}


def synthetic_probes(config: dict, sigma2: float = 10.0, draws: int = 64, checkpoints: int = 12) -> dict:
    """probe_moments.csv and probe_draws.csv for the config's probes: ||g_B − ∇f||² drawn from an
    exponential law whose mean is the exact prediction σ²/m·(n−m)/(n−1), at `checkpoints` steps."""
    n = n_train_samples(config)
    rng = np.random.default_rng(0)
    moments, samples = [], []
    for probe in config["grad_variance"]["probes"]:
        per_epoch = steps_per_epoch(n, probe["batch_size"], config["train"]["drop_last"])
        last = config["train"]["epochs"] * per_epoch
        for step in np.unique(np.linspace(0, last, checkpoints).astype(int)):
            where = {"dataset": "mnist1d", "model": "mlp16", **probe, "step": int(step), "epoch": step / per_epoch}
            for m in (1, 2, 4, 8, 100, n // 2):
                sq = predictions(sigma2, n, m)[1] * rng.exponential(size=draws)
                moments.append({**where, "n": n, "m": m, "K": draws, "sigma2": sigma2, "grad_norm2": 0.05,
                                "train_loss": 2.3 - where["epoch"] / 10, "mean_error_sq": sq.mean() / draws,
                                "pair_sum": float(np.sum(sq[:-1] * sq[1:])) * m / (n - m) * (n - 1) / sigma2,
                                "pair_count": draws - 1})
                samples.append(pd.DataFrame({**{k: probe[k] for k in ("optimizer", "batch_size", "lr", "seed")},
                                             "step": int(step), "m": m, "draw": np.arange(draws), "sq_error": sq}))
    return {"probe_moments": pd.DataFrame(moments), "probe_draws": pd.concat(samples, ignore_index=True)}


BENCHMARK_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def benchmark_files(tmp_path: Path) -> dict[str, list[str]]:
    """Two train jobs, one evaluate job (and a file that does not exist)."""
    files = {}
    for rule, rows in (("train", [(2.5, 700.5, 2.1), (4.25, 650.0, 4.0)]), ("evaluate", [(1.5, 300.0, 1.25)])):
        files[rule] = []
        for i, (seconds, rss, cpu) in enumerate(rows):
            path = tmp_path / f"{rule}{i}.tsv"
            path.write_text(BENCHMARK_HEADER + f"{seconds}\t0:00:02\t{rss}\t3000\t400\t500\t0\t0\t50\t{cpu}\n")
            files[rule].append(str(path))
    files["evaluate"].append(str(tmp_path / "missing.tsv"))
    return files


def synthetic_stage(tmp_path: Path, config: dict, probes: bool = True) -> dict[str, pd.DataFrame]:
    """The tables the report and figure rules read: synthetic runs and probes through the real analysis stage,
    each written and read back through its declared table (so the page sees what the rules see)."""
    if not probes:
        config["grad_variance"]["probes"] = []
    largest_sgd = max(config["optimizers"]["sgd"]["lrs"])
    spine = synthetic_tables(config, diverging=("sgd", largest_sgd))
    inputs = {**spine, **(synthetic_probes(config) if probes else {}),
              "benchmarks": read_benchmarks(benchmark_files(tmp_path))}
    out = {"run_status": spine["status"], "minibatch": spine["minibatch"], **analysis_stage(inputs, config)}
    tables = {}
    for name, frame in out.items():
        write_table(frame, tmp_path / f"{name}.csv", name)
        tables[name] = read_table(tmp_path / f"{name}.csv", name)
    return tables


def synthetic_report(tmp_path: Path, title: str = "synthetic", config: dict | None = None, probes: bool = True,
                     claims: pd.DataFrame | None = None, draw: bool = True) -> Path:
    """Figures, context and page the way the figure and report rules make them, from synthetic_stage."""
    config = copy.deepcopy(config or prepare_config(load_config(TINY)))
    config["title"] = title
    tables = synthetic_stage(tmp_path, config, probes)
    if claims is not None:
        tables["claims"] = claims
    names = [n for n in ALL_FIGURES if probes or n not in FIGURES["gradvar_figures"]]
    svgs = {name: figures.make(name, tables, config) for name in names} if draw else {}
    captions = {name: (TEMPLATE_DIR / f"{name}.rst").read_text() for name in svgs}
    page = {name: tables[name] for name in PAGE_TABLES if name in tables}
    csv_texts = {name: (tmp_path / f"{name}.csv").read_text() for name in page}
    html = render(build_context(config, page, svgs, captions, provenance(config, ROOT), csv_texts))
    path = tmp_path / "report.html"
    path.write_text(html)
    return path


def page_config() -> dict:
    """The tiny config on factor-2 learning-rate grids, so that batch ×4 pairs LR ×4 and LR ×2 on the grid."""
    config = prepare_config(load_config(TINY))
    config["optimizers"]["sgd"]["lrs"] = [0.05, 0.1, 0.2, 0.4, 0.8]
    config["optimizers"]["adam"]["lrs"] = [0.001, 0.002, 0.004, 0.008, 0.016]
    return config


@pytest.fixture(scope="module")
def stage(tmp_path_factory) -> dict[str, pd.DataFrame]:
    return synthetic_stage(tmp_path_factory.mktemp("stage"), page_config())


def test_the_analysis_from_the_probe_rules_tables_writes_the_bytes_of_the_analysis_in_one_process(tmp_path):
    """Rule analyze_probes writes the probes' statistics and rule analyze reads them back: every table
    must be the one the whole stage computes in one process from the raw probe tables."""
    config = page_config()
    spine = synthetic_tables(config, diverging=("sgd", max(config["optimizers"]["sgd"]["lrs"])))
    probes = synthetic_probes(config)
    benchmarks = read_benchmarks(benchmark_files(tmp_path))
    whole = analysis_stage({**spine, **probes, "benchmarks": benchmarks}, config)
    statistics = probe_statistics(probes, config, workers=2)
    assert sorted(statistics) == ["gradvar", "gradvar_slopes", "noise_pooled"]
    read_back = {}
    for name, frame in statistics.items():
        write_table(frame, tmp_path / f"{name}.csv", name)
        read_back[name] = read_table(tmp_path / f"{name}.csv", name)
    split = analysis_stage({**spine, **read_back, "benchmarks": benchmarks}, config)
    assert sorted(split) == sorted(whole)
    for name in whole:
        for folder, frames in (("whole", whole), ("split", split)):
            (tmp_path / folder).mkdir(exist_ok=True)
            write_table(frames[name], tmp_path / folder / f"{name}.csv", name)
        assert (tmp_path / "whole" / f"{name}.csv").read_bytes() == (tmp_path / "split" / f"{name}.csv").read_bytes(), name


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> str:
    """A page with every stage: synthetic runs and probes, the real analysis tables and verdicts."""
    return synthetic_report(tmp_path_factory.mktemp("full"), config=page_config()).read_text()


def section(html: str, start: str, end: str) -> str:
    return html[html.index(f'<section id="{start}">'):html.index(f'<section id="{end}">')]


# ---------------------------------------------------------------------------------------------
# The page formats the analysis tables: one value per quantity

def test_best_lr_follows_validation_never_test(stage):
    cells = stage["best_lr_cells"]
    scores = stage["lr_scores"]
    for row in cells.itertuples():
        cell = scores[(scores["optimizer"] == row.optimizer) & (scores["batch_size"] == row.batch_size)]
        means = {lr: seeds["score"].mean() for lr, seeds in cell.groupby("lr") if (seeds["status"] == "ok").all()}
        assert row.grid_lr == min(means, key=means.get)
        # the synthetic test split would have chosen the largest eligible learning rate instead
        assert cell.groupby("lr")["test_accuracy"].mean().idxmax() != row.grid_lr


def test_the_c7_evidence_and_the_trajectory_table_print_one_value(full_report, stage):
    """The same counts and medians, from trajectory_summary.csv, in the claim's evidence and in the table."""
    summary = stage["trajectory_summary"]
    row = summary[summary["optimizer"] == "sgd"].iloc[0]
    assert row["pairs"] > 0
    evidence = stage["claims"].set_index("claim_id").loc["C7", "evidence"]
    counts = f"LR ×k closer in {row['linear_closer']} of {row['pairs']} pairs, LR ×√k in {row['sqrt_closer']}"
    assert counts in evidence
    assert f"median distance {fmt(row['median_linear'], 2)} vs {fmt(row['median_sqrt'], 2)}" in evidence
    scaling = section(full_report, "scaling", "steps-to-target")
    table = scaling[scaling.index("Same curve at batch"):]
    assert f"{row['linear_closer']} of {row['pairs']}" in table and f"{row['sqrt_closer']} of {row['pairs']}" in table


def test_a_lower_confidence_changes_every_interval_and_label(tmp_path, tiny_config):
    config = copy.deepcopy(tiny_config)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    html95 = synthetic_report(tmp_path / "a", config=config).read_text()
    config["analysis"]["confidence"] = 0.9
    html90 = synthetic_report(tmp_path / "b", config=config).read_text()
    text90 = re.sub(r"<[^>]+>", " ", html90[html90.index("<body"):])
    assert "95 %" not in text90 and "95%" not in text90
    assert "90 % CI" in text90
    intervals = lambda html: re.findall(r"\[(-?[0-9.e−-]+), (-?[0-9.e−-]+)\]", html)
    assert intervals(html95) != intervals(html90)
    # the bootstrap intervals of the probes follow too
    assert "98.33 %" in text90 and "99.17 %" not in text90  # family-wise 1 − 0.1/6 over the 6 probed m


def test_cost_totals_equal_the_benchmark_files_sums(full_report):
    cost = full_report[full_report.index('<section id="cost">'):full_report.index('<section id="provenance">')]
    assert "3 jobs, 8.25 s of job wall time in all" in cost  # 2.5 + 4.25 + 1.5; the missing file is skipped
    train = re.search(r"Training loops took ([0-9.]+) s of the training jobs&#39; ([0-9.]+) s", cost)
    assert train and float(train.group(2)) == 6.75


def test_training_loop_time_is_the_sum_of_the_runs_shares(stage):
    cost = stage["cost"].set_index("rule")
    assert cost.loc["train", "loop_s"] == pytest.approx(stage["run_status"]["train_seconds"].sum())
    assert cost.loc["all", "total_s"] == pytest.approx(cost.drop("all")["total_s"].sum())


@pytest.mark.parametrize("value, text", [(0.0123456, "0.0123"), (1.23e-5, "1.23e-5"), (12.345, "12.3"),
                                         (1234.5, "1234"), (123456.0, "1.23e5"), (math.inf, "∞"), (math.nan, "—"),
                                         (0, "0")])
def test_numbers_are_formatted_for_reading(value, text):
    assert fmt(value) == text


def test_one_number_formatter_serves_the_page_and_the_verdicts():
    assert verdicts.fmt is formatting.fmt and verdicts.fmt_ci is formatting.fmt_ci
    for module in ("report", "figures", "verdicts"):
        source = (ROOT / "optbench" / f"{module}.py").read_text()
        assert not re.search(r"^def (fmt|fmt_ci|percent)\(", source, flags=re.M), module


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_presentation_imports_nothing_that_computes_statistics_and_no_torch():
    forbidden = ("scipy", "torch", "optbench.analysis", "optbench.stats", "optbench.noise", "statistics")
    for module in ("report", "figures", "format", "provenance"):
        names = imported_modules(ROOT / "optbench" / f"{module}.py")
        assert not [n for n in names if n.startswith(forbidden)], (module, names)
    code = ("import sys; import optbench.report, optbench.figures; "
            "print(sorted(m for m in ('torch', 'scipy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("script", ["analyze_probes.py", "analyze.py", "figures.py", "report.py",
                                    "aggregate_gradvar.py"])
def test_light_jobs_import_no_torch(script):
    modules = sorted({line.split()[1] for line in (ROOT / "scripts" / script).read_text().splitlines()
                      if line.startswith("from optbench")})
    code = f"import sys; import {', '.join(modules)}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "False", f"{script}: {modules} pull in torch"


# ---------------------------------------------------------------------------------------------
# Figures and page

def test_figures_are_deterministic_and_self_contained(stage, tiny_config):
    first = {name: figures.make(name, stage, tiny_config) for name in ALL_FIGURES}
    second = {name: figures.make(name, stage, tiny_config) for name in ALL_FIGURES}
    assert first == second
    ids = []
    for name, svg in first.items():
        assert "http" not in re.sub(r'xmlns(:\w+)?="http[^"]*"|"http://www.w3.org[^"]*"|'
                                    r'<metadata>.*?</metadata>|<!DOCTYPE[^>]*>', "", svg, flags=re.S), name
        assert re.findall(r'<image[^>]*href="(?!data:)', svg) == [], name
        found = re.findall(r'\sid="([^"]+)"', svg)
        assert all(i.startswith(f"{name}-") for i in found), name
        ids += found
    assert len(ids) == len(set(ids)), "element ids repeat across figures"


def test_every_figure_has_a_title_and_a_caption_saying_what_to_look_at():
    rules = (ROOT / "workflow" / "rules" / "report_common.smk").read_text()
    for name in ALL_FIGURES:
        assert name in FIGURE_TITLES, name
        caption = caption_text((TEMPLATE_DIR / f"{name}.rst").read_text())
        assert "Look" in caption and len(caption) < 700, name
        assert re.search(rf'"{name}": "[^"]+"', rules), name  # drawn by a figure rule, marked for --report


def test_config_strings_are_escaped(tmp_path):
    html = synthetic_report(tmp_path, title=HOSTILE_TITLE, draw=False).read_text()
    assert "<script>window.__injected" not in html and "<b>not bold</b>" not in html
    assert "&lt;script&gt;window.__injected = true&lt;/script&gt; &amp; &#34;quotes&#34;" in html
    assert html.count("<script>") == 1  # the page's own script, nothing else


def test_page_without_probes_says_what_is_missing(tmp_path):
    html = synthetic_report(tmp_path, probes=False).read_text()
    for anchor in ("claims", "setup", "curves", "lr-sensitivity", "scaling", "steps-to-target", "gradient-noise",
                   "when-to-stop", "cost", "provenance"):
        assert f'id="{anchor}"' in html and f'href="#{anchor}"' in html, anchor
    assert "no gradient-variance probes in this workflow" in html
    assert html.count("<svg") == len(ALL_FIGURES) - len(FIGURES["gradvar_figures"])
    assert re.search(r"https?://(?!www\.w3\.org)", html) is None  # no external resource of any kind


def test_default_sized_report_stays_under_5_mb(tmp_path):
    config = prepare_config(load_config(ROOT / "config.yaml"))
    html = synthetic_report(tmp_path, config=config).read_text()
    assert len(html.encode()) < 5 * 2**20, f"{len(html.encode()) / 2**20:.1f} MB"
    assert html.count("<svg") == len(ALL_FIGURES)


def test_claims_table_shows_badges_reasons_domains_and_links(full_report):
    claims = section(full_report, "claims", "setup")
    for claim in verdicts.CLAIMS:
        assert f"<td>{claim}</td>" in claims
    assert claims.count('<td class="verdict"') == len(verdicts.CLAIMS) == 15
    assert "domain of validity" in claims
    assert 'href="#scaling"' in claims and 'href="#fig-curves"' in claims


def test_claim_strings_stay_text(tmp_path):
    claims = pd.DataFrame([{"claim_id": "C9", "claim_text": "<i>Too small</i> a learning rate", "verdict":
                            "not supported", "domain": "", "headline": "", "finding": "", "reason": "because",
                            "evidence": "", "rule": "declared rule", "anchor": ""}])
    html = synthetic_report(tmp_path, claims=claims, draw=False).read_text()
    claims_html = section(html, "claims", "setup")
    assert 'class="badge no"' in claims_html and "&lt;i&gt;Too small&lt;/i&gt;" in claims_html
    assert '<div class="detail">because</div>' in claims_html and 'href="#fig-trajectories"' in claims_html


def test_changed_default_verdicts_are_disclosed_under_the_claims_table(full_report):
    claims = section(full_report, "claims", "setup")
    import yaml

    changes = yaml.safe_load((TEMPLATE_DIR / "verdict_changes.yaml").read_text())["changes"]
    if changes:
        assert 'id="verdict-changes"' in claims
        for change in changes:
            assert f"<strong>{change['claim']}</strong>: {change['old']} → {change['new']}" in claims


def test_analysis_tables_fill_the_scaling_steps_and_stopping_sections(full_report):
    html = full_report
    for figure in ALL_FIGURES:
        assert f'id="fig-{figure}"' in html
    scaling = section(html, "scaling", "steps-to-target")
    assert "Fitted exponents" in scaling and "lr × √k" in scaling
    steps = section(html, "steps-to-target", "gradient-noise")
    assert "Steps to the target validation loss" in steps and "How steps scale with the batch size" in steps
    best = html[html.index('id="best-lr"'):html.index('<section id="scaling">')]
    assert "refined lr*" in best and "How wide is the good learning-rate range?" in best
    stop = section(html, "when-to-stop", "cost")
    assert "Early stopping at each seed" in stop


def test_gradient_noise_section_shows_each_probed_checkpoint(full_report, stage):
    html = section(full_report, "gradient-noise", "when-to-stop")
    assert 'id="fig-gradvar"' in html and 'id="fig-noise_scale"' in html
    table = html[html.index("Per probed checkpoint"):html.index("Pooled over the probed checkpoints")]
    assert table.count("<tr>") == 1 + len(stage["gradvar_slopes"])  # header + probe × checkpoint
    slope = stage["gradvar_slopes"].iloc[0]
    assert formatting.fmt_ci(slope["slope"], slope["slope_low"], slope["slope_high"]) in table
    pooled = html[html.index("Pooled over the probed checkpoints"):]
    z = stage["noise_pooled"].iloc[0]
    assert formatting.fmt_ci(z["mean"], z["ci_low"], z["ci_high"]) in pooled


# ---------------------------------------------------------------------------------------------
# The workflow

@pytest.mark.workflow
def test_snakemake_report_collects_the_figures(tiny_workdir, tmp_path):
    figures_dir = tiny_workdir / "results" / "figures"
    for name in ALL_FIGURES:
        assert (figures_dir / f"{name}.svg").read_text().lstrip().startswith("<?xml"), name
    target = tmp_path / "snakemake-report.html"
    snakemake(tiny_workdir, "--report", str(target))
    text = target.read_text(errors="replace")
    assert "curves.svg" in text and "lr_sensitivity.svg" in text
    for table in ("claims", "best_lr_cells", "scaling", "steps_to_target", "noise_pooled"):  # tables, not only figures
        assert f"filename={table}.csv;base64," in text, table


def report_job_inputs(workdir: Path, *args: str) -> list[str]:
    """The input files of the report job in a dry run."""
    lines = snakemake(workdir, "-n", "results/report.html", *args).stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"(local)?rule report:", line.strip()))
    line = next(line for line in lines[start:] if line.strip().startswith("input:"))
    return line.split("input:", 1)[1].replace(" ", "").split(",")


@pytest.mark.workflow
def test_report_asks_for_the_tables_and_figures_of_the_stages_present(tmp_path):
    with_probes = report_job_inputs(tmp_path)
    assert {"results/tables/gradvar.csv", "results/tables/gradvar_slopes.csv", "results/tables/noise_pooled.csv",
            "results/figures/gradvar.svg", "results/figures/noise_scale.svg"} <= set(with_probes)
    without = report_job_inputs(tmp_path, "--config", 'grad_variance={"probes": []}')
    outputs = [path for path in without if path.startswith("results/")]  # the rest: templates, code
    assert not [path for path in outputs if "gradvar" in path or "noise_pooled" in path or "noise_scale.svg" in path]
    assert {f"results/figures/{name}.svg" for name in FIGURES["figures"]} <= set(without)
    assert {"results/tables/claims.csv", "results/tables/run_status.csv"} <= set(without)
