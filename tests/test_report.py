"""Report: best-LR selection against brute force, seed statistics, deterministic self-contained SVG,
escaping of config strings, sections that follow the tables present, size of a default-sized report."""
from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optbench import figures
from optbench.config import load_config, n_train_samples, prepare_config, steps_per_epoch
from optbench.report import (FIGURE_TITLES, TEMPLATE_DIR, best_grid_lrs, build_context, caption_text, fmt, mean_ci,
                             provenance, read_benchmarks, render, seed_bands, selection_scores)
from optbench.train import checkpoint_schedule
from tests.conftest import ROOT, TINY, snakemake

HOSTILE_TITLE = '<script>window.__injected = true</script> & "quotes" <b>not bold</b>'
RUN_KEYS = ["optimizer", "batch_size", "lr", "seed"]
SPINE_FIGURES = list(figures.FIGURE_NAMES["spine"])
GRADVAR_FIGURES = list(figures.FIGURE_NAMES["gradvar"])
ANALYSIS_FIGURES = list(figures.FIGURE_NAMES["analysis"])


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
                        "steps_done": total // 2 if diverged else total, "train_seconds": 0.002 * total * (1 + batch_size / 256),
                        "device": "cpu", "threads": 1, "n_train": n})
    return {"runs": pd.concat(rows, ignore_index=True), "status": pd.DataFrame(statuses),
            "minibatch": pd.concat(minibatch, ignore_index=True)}


def synthetic_gradvar(config: dict, sigma2: float = 10.0, draws: int = 64) -> dict[str, pd.DataFrame]:
    """gradvar.csv and gradvar_slopes.csv for the config's probes: measurements equal to the exact
    prediction σ²/m·(n−m)/(n−1), with ±20 % intervals, at the first and last checkpoint."""
    n = n_train_samples(config)
    ms = [1, 2, 4, 8, 100, n // 2]
    moments, slopes = [], []
    for probe in config["grad_variance"]["probes"]:
        per_epoch = steps_per_epoch(n, probe["batch_size"], config["train"]["drop_last"])
        last = config["train"]["epochs"] * per_epoch
        for step, grad_norm2 in ((0, 0.06), (last, 0.01)):
            epoch = step / per_epoch
            where = {"dataset": "mnist1d", "model": "mlp16", **probe, "step": step, "epoch": epoch}
            exact = np.array([sigma2 / m * (n - m) / (n - 1) for m in ms])
            iid = sigma2 / np.array(ms, dtype=float)
            moments.append(pd.DataFrame({
                **where, "n": n, "m": ms, "K": draws, "sigma2": sigma2, "grad_norm2": grad_norm2,
                "empirical_mean": exact, "empirical_se": exact / 10, "ci_low": exact * 0.8, "ci_high": exact * 1.2,
                "pred_iid": iid, "pred_fpc": exact, "b_simple": sigma2 / grad_norm2, "ratio_iid": exact / iid,
                "ratio_fpc": 1.0, "iid_in_ci": iid <= exact * 1.2, "fpc_in_ci": True, "ci_low_fw": exact * 0.7,
                "ci_high_fw": exact * 1.3, "iid_in_ci_fw": iid <= exact * 1.3, "fpc_in_ci_fw": True,
                "confidence": 0.95, "confidence_fw": 1 - 0.05 / len(ms), "z": 1.0, "z_dof": 50.0, "z_low": 0.7,
                "z_high": 1.4, "z_low_fw": 0.6, "z_high_fw": 1.6, "train_loss": 2.3 - epoch / 2}))
            slopes.append({**where, "m_max_fit": n / 20, "fit_points": 5, "slope": -1.0, "slope_low": -1.03,
                           "slope_high": -0.97, "slope_pred_iid": -1.0, "slope_pred_fpc": -1.007,
                           "confidence": 0.95, "train_loss": 2.3 - epoch / 2, "sigma2": sigma2,
                           "grad_norm2": grad_norm2, "b_simple": sigma2 / grad_norm2})
    return {"gradvar": pd.concat(moments, ignore_index=True), "gradvar_slopes": pd.DataFrame(slopes)}


# A claims.csv whose rows exercise every badge and a string that must stay text.
CLAIMS = pd.DataFrame([
    {"claim_id": "C1", "claim_text": "Training with the loop lowers training loss.", "verdict": "supported",
     "reason": "", "evidence": "36 of 36 runs", "rule": "final < initial training loss in ≥ 90 % of runs",
     "anchor": ""},
    {"claim_id": "C7", "claim_text": "SGD: batch × k → lr × k.", "verdict": "supported", "reason": "",
     "evidence": "α = 1.00 [0.98, 1.02]", "rule": "95 % CI of α contains 1 and not 0.5", "anchor": "scaling"},
    {"claim_id": "C8", "claim_text": "Adam: batch × k → lr × √k.", "verdict": "inconclusive",
     "reason": "CI contains both 0.5 and 1", "evidence": "α = 0.5 [0.2, 1.1]", "rule": "95 % CI of α contains 0.5",
     "anchor": "scaling"},
    {"claim_id": "C9", "claim_text": "<i>Too small</i> a learning rate needs many iterations.",
     "verdict": "not supported", "reason": "", "evidence": "", "rule": "declared rule", "anchor": ""},
])


def synthetic_analysis(config: dict, tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The analysis stage's tables and verdicts (optbench.analysis, optbench.verdicts) for synthetic runs."""
    from optbench.analysis import analyze
    from optbench.verdicts import evaluate_claims

    out = analyze(tables, config["analysis"], config["selection"]["metric"])
    return {**out, "claims": evaluate_claims({**tables, **out}, config)}


def synthetic_report(tmp_path: Path, title: str = "synthetic", config: dict | None = None,
                     gradvar: bool = False, analysis: bool = False, claims: pd.DataFrame | None = None,
                     draw: bool = True) -> Path:
    """Figures, context and page for synthetic tables, the way the figures and report rules make them;
    `gradvar` and `analysis` add those stages' tables, sections and figures (none when not `draw`)."""
    config = copy.deepcopy(config or prepare_config(load_config(TINY)))
    config["title"] = title
    largest_sgd = max(config["optimizers"]["sgd"]["lrs"])
    tables = synthetic_tables(config, diverging=("sgd", largest_sgd))
    names = list(SPINE_FIGURES)
    if gradvar:
        tables.update(synthetic_gradvar(config))
        names += GRADVAR_FIGURES
    if analysis:
        tables.update(synthetic_analysis(config, tables))
        names += ANALYSIS_FIGURES
    if claims is not None:
        tables["claims"] = claims
    svgs = {name: figures.make(name, tables, config) for name in names} if draw else {}
    captions = {name: (TEMPLATE_DIR / f"{name}.rst").read_text() for name in svgs}
    bench = tmp_path / "bench.tsv"
    bench.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                     "2.5\t0:00:02\t700.5\t3000\t400\t500\t0\t0\t50\t2.1\n")
    benchmarks = read_benchmarks({"train": [str(bench)], "evaluate": [str(tmp_path / "missing.tsv")]})
    context = build_context(config, tables, svgs, captions, benchmarks, provenance(config))
    path = tmp_path / "report.html"
    path.write_text(render(context))
    return path


@pytest.fixture(scope="module")
def tables(tiny_config) -> dict[str, pd.DataFrame]:
    return synthetic_tables(tiny_config, diverging=("sgd", max(tiny_config["optimizers"]["sgd"]["lrs"])))


# ---------------------------------------------------------------------------------------------
# Selection

@pytest.mark.parametrize("metric", ["min_val_loss", "final_val_loss", "min_train_loss", "final_train_loss"])
def test_selection_scores_match_a_brute_force_loop(tables, metric):
    split = metric.split("_")[1]
    scores = selection_scores(tables["runs"], metric).set_index(RUN_KEYS)
    runs = tables["runs"]
    for key, run in runs.groupby(RUN_KEYS):
        rows = run[run["split"] == split].sort_values("step").to_dict("records")
        finite = [r for r in rows if math.isfinite(r["loss"])]
        chosen = (min(finite, key=lambda r: r["loss"]) if metric.startswith("min") else rows[-1]) if finite else None
        got = scores.loc[key]
        if chosen is None or not math.isfinite(chosen["loss"]):
            assert got["score"] == math.inf
            continue
        assert got["score"] == chosen["loss"] and got["step"] == chosen["step"]
        test = run[(run["split"] == "test") & (run["step"] == chosen["step"])]["accuracy"].item()
        assert got["test_accuracy"] == test


def test_best_lr_follows_validation_never_test(tables):
    scores = selection_scores(tables["runs"], "min_val_loss")
    best = best_grid_lrs(scores).set_index(["optimizer", "batch_size"])
    for (optimizer, batch_size), cell in scores.groupby(["optimizer", "batch_size"]):
        by_lr = {}
        for lr, seeds in cell.groupby("lr"):
            if (seeds["status"] == "ok").all():
                by_lr[lr] = sum(seeds["score"]) / len(seeds)
        expected = min(by_lr, key=by_lr.get)
        assert best.loc[(optimizer, batch_size), "lr"] == expected
        # the synthetic test split would have chosen the largest eligible learning rate instead
        test_choice = cell.groupby("lr")["test_accuracy"].mean().idxmax()
        assert test_choice != expected
        accuracies = cell[cell["lr"] == expected]["test_accuracy"].to_numpy()
        assert best.loc[(optimizer, batch_size), "test_accuracy"] == pytest.approx(accuracies.mean())


def test_a_diverged_neighbour_or_the_grid_edge_flags_the_optimum_as_censored(tiny_config):
    scores = pd.DataFrame({
        "optimizer": "sgd", "batch_size": 32, "seed": 0, "test_accuracy": 0.5, "step": 1, "epoch": 1.0,
        "lr": [0.1, 0.2, 0.4, 0.8], "score": [1.0, 0.5, 0.7, 0.1], "status": ["ok", "ok", "ok", "diverged"]})
    best = best_grid_lrs(scores).iloc[0]
    assert best["lr"] == 0.2 and not best["edge"]          # the diverged 0.8 is not eligible
    scores.loc[scores["lr"] == 0.4, "status"] = "diverged"
    best = best_grid_lrs(scores).iloc[0]
    assert best["lr"] == 0.2 and best["edge"]               # its neighbour diverged
    scores["status"] = "ok"
    best = best_grid_lrs(scores).iloc[0]
    assert best["lr"] == 0.8 and best["edge"]               # on the grid's edge
    scores["status"] = "diverged"
    assert math.isnan(best_grid_lrs(scores).iloc[0]["lr"])  # nothing eligible: no optimum


def test_mean_ci_is_the_student_t_interval():
    mean, low, high, n = mean_ci([1.0, 2.0, 3.0, math.inf])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) · sd / √n
    assert (mean, n) == (2.0, 3) and low == pytest.approx(2 - half) and high == pytest.approx(2 + half)
    assert math.isnan(mean_ci([5.0])[1]) and mean_ci([5.0])[0] == 5.0


def test_seed_bands_are_median_min_max_across_seeds(tables):
    bands = seed_bands(tables["runs"], "val")
    runs = tables["runs"]
    for _, band in bands.sample(20, random_state=0).iterrows():
        values = runs[(runs["split"] == "val") & (runs["optimizer"] == band["optimizer"])
                      & (runs["batch_size"] == band["batch_size"]) & (runs["lr"] == band["lr"])
                      & (runs["step"] == band["step"])]["loss"].to_numpy()
        finite = values[np.isfinite(values)]
        assert band["median"] == pytest.approx(np.median(finite))
        assert (band["low"], band["high"]) == (finite.min(), finite.max())


@pytest.mark.parametrize("value, text", [(0.0123456, "0.0123"), (1.23e-5, "1.23e-5"), (12.345, "12.3"),
                                         (1234.5, "1234"), (math.inf, "∞"), (math.nan, "—"), (0, "0")])
def test_numbers_are_formatted_for_reading(value, text):
    assert fmt(value) == text


# ---------------------------------------------------------------------------------------------
# Figures and page

def test_figures_are_deterministic_and_self_contained(tables, tiny_config):
    first = {name: figures.make(name, tables, tiny_config) for name in SPINE_FIGURES}
    second = {name: figures.make(name, tables, tiny_config) for name in SPINE_FIGURES}
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
    for name in SPINE_FIGURES + GRADVAR_FIGURES + ANALYSIS_FIGURES:
        assert name in FIGURE_TITLES, name
        caption = caption_text((TEMPLATE_DIR / f"{name}.rst").read_text())
        assert "Look" in caption and len(caption) < 700, name
    # the workflow's figure rules draw exactly these, each marked for `snakemake --report`
    rules = (ROOT / "workflow" / "rules" / "report_common.smk").read_text()
    for stage, names in figures.FIGURE_NAMES.items():
        for name in names:
            assert re.search(rf'"{name}": "[^"]+"', rules), name


def test_config_strings_are_escaped(tmp_path):
    html = synthetic_report(tmp_path, title=HOSTILE_TITLE).read_text()
    assert "<script>window.__injected" not in html and "<b>not bold</b>" not in html
    assert "&lt;script&gt;window.__injected = true&lt;/script&gt; &amp; &#34;quotes&#34;" in html
    assert html.count("<script>") == 1  # the page's own sorting script, nothing else


def test_page_without_analysis_tables_says_what_is_missing(tmp_path):
    html = synthetic_report(tmp_path).read_text()
    for anchor in ("claims", "setup", "curves", "lr-sensitivity", "scaling", "steps-to-target", "gradient-noise",
                   "when-to-stop", "cost", "provenance"):
        assert f'id="{anchor}"' in html and f'href="#{anchor}"' in html, anchor
    assert "claims.csv was not produced" in html
    assert html.count("<svg") == len(SPINE_FIGURES)
    assert re.search(r"https?://(?!www\.w3\.org)", html) is None  # no external resource of any kind


def test_default_sized_report_stays_under_5_mb(tmp_path):
    config = prepare_config(load_config(ROOT / "config.yaml"))
    html = synthetic_report(tmp_path, config=config, gradvar=True, analysis=True).read_text()
    assert len(html.encode()) < 5 * 2**20, f"{len(html.encode()) / 2**20:.1f} MB"
    assert html.count("<svg") == len(SPINE_FIGURES) + len(GRADVAR_FIGURES) + len(ANALYSIS_FIGURES)


@pytest.mark.workflow
def test_snakemake_report_collects_the_figures(tiny_workdir, tmp_path):
    figures_dir = tiny_workdir / "results" / "figures"
    for name in SPINE_FIGURES:
        assert (figures_dir / f"{name}.svg").read_text().lstrip().startswith("<?xml"), name
    target = tmp_path / "snakemake-report.html"
    snakemake(tiny_workdir, "--report", str(target))
    text = target.read_text(errors="replace")
    assert "curves.svg" in text and "lr_sensitivity.svg" in text


def report_job_inputs(workdir: Path, *args: str) -> list[str]:
    """The input files of the report job in a dry run."""
    lines = snakemake(workdir, "-n", "results/report.html", *args).stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"(local)?rule report:", line.strip()))
    line = next(line for line in lines[start:] if line.strip().startswith("input:"))
    return line.split("input:", 1)[1].replace(" ", "").split(",")


@pytest.mark.workflow
def test_report_asks_for_the_tables_and_figures_of_the_stages_present(tmp_path):
    with_probes = report_job_inputs(tmp_path)
    assert {"results/tables/gradvar.csv", "results/tables/gradvar_slopes.csv",
            "results/figures/gradvar.svg", "results/figures/noise_scale.svg"} <= set(with_probes)
    without = report_job_inputs(tmp_path, "--config", 'grad_variance={"probes": []}')
    outputs = [path for path in without if path.startswith("results/")]  # the rest: templates, code
    assert not [path for path in outputs if "gradvar" in path or "noise_scale" in path]
    assert {f"results/figures/{name}.svg" for name in SPINE_FIGURES} <= set(without)
    assert {"results/tables/runs.csv", "results/tables/run_status.csv"} <= set(without)


def test_claims_table_shows_badges_reasons_and_links(tmp_path):
    html = synthetic_report(tmp_path, claims=CLAIMS, draw=False).read_text()
    claims = html[html.index('<section id="claims">'):html.index('<section id="setup">')]
    assert claims.count('class="badge yes"') == 2 + 1  # two rows, and the legend above the table
    assert '<span class="badge maybe">inconclusive</span><div class="detail">CI contains both 0.5 and 1</div>' in claims
    assert 'class="badge no"' in claims and "&lt;i&gt;Too small&lt;/i&gt;" in claims
    assert 'href="#scaling"' in claims and 'href="#fig-curves"' in claims  # named, else the claim's default


@pytest.fixture(scope="module")
def full_report(tmp_path_factory) -> str:
    """A page with every stage: synthetic runs and probes, the real analysis tables and verdicts."""
    return synthetic_report(tmp_path_factory.mktemp("full"), gradvar=True, analysis=True).read_text()


def test_analysis_tables_fill_the_scaling_steps_and_stopping_sections(full_report):
    html = full_report
    for figure in ANALYSIS_FIGURES + GRADVAR_FIGURES + SPINE_FIGURES:
        assert f'id="fig-{figure}"' in html
    scaling = html[html.index('<section id="scaling">'):html.index('<section id="steps-to-target">')]
    assert "Fitted exponents" in scaling and "lr × √k" in scaling
    steps = html[html.index('<section id="steps-to-target">'):html.index('<section id="gradient-noise">')]
    assert "Steps to the target validation loss" in steps and "lacks the column" not in html
    best = html[html.index('id="best-lr"'):html.index('<section id="scaling">')]
    assert "refined lr*" in best and "How wide is the good learning-rate range?" in best
    stop = html[html.index('<section id="when-to-stop">'):html.index('<section id="cost">')]
    assert "Early stopping at each seed" in stop


def test_every_claim_of_the_analysis_stage_gets_a_row_and_a_badge(full_report):
    claims = full_report[full_report.index('<section id="claims">'):full_report.index('<section id="setup">')]
    for claim in [f"C{i}" for i in range(1, 11)]:
        assert f"<td>{claim}</td>" in claims
    assert claims.count('<td class="verdict"') == 10


def test_gradient_noise_section_shows_each_probed_checkpoint(full_report, tiny_config):
    html = full_report
    section = html[html.index('<section id="gradient-noise">'):html.index('<section id="when-to-stop">')]
    assert 'id="fig-gradvar"' in section and 'id="fig-noise_scale"' in section
    assert section.count("<tr>") == 1 + len(tiny_config["grad_variance"]["probes"]) * 2  # header + probe × checkpoint
    assert "-1 [-1.03, -0.97]" in section                                       # slope with its CI
    # measured ÷ σ²/m at m = 100 is the finite-population factor (n − m)/(n − 1) here
    n = n_train_samples(tiny_config)
    assert fmt((n - 100) / (n - 1)) in section
