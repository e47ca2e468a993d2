"""The HTML report's sections, built from the analysis tables (formatted, never recomputed), and the jinja2 rendering."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import yaml

from optbench.config import TUTORIAL_RUN, model_description, optimizer_label
from optbench.format import Cell, Table, ci_cell, ci_label, csv_uri, fmt, fmt_ci, frame_table, num, percent, sort_key, \
    text, yes_no
from optbench.verdicts import ANCHORS as CLAIM_ANCHORS

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "workflow" / "report"
TEMPLATE = "report.html.j2"
CHANGES = TEMPLATE_DIR / "verdict_changes.yaml"

METRIC_LABELS = {
    "min_val_loss": "minimum validation loss over checkpoints",
    "final_val_loss": "final validation loss",
    "min_train_loss": "minimum training loss over checkpoints",
    "final_train_loss": "final training loss",
}
def label(optimizer) -> Cell:
    return text(optimizer_label(optimizer))


# ---------------------------------------------------------------------------------------------
# Sections

def claims_table(claims: pd.DataFrame) -> Table:
    """claims.csv → id, claim, verdict badge with its reason, domain of validity, evidence, rule, figure link."""
    table = Table(columns=["id", "claim", "verdict", "domain of validity", "evidence", "rule (declared in advance)",
                           "figure"], name="claims", row_ids=[f"claim-{c}" for c in claims["claim_id"]])
    for row in claims.itertuples():
        anchor = row.anchor or CLAIM_ANCHORS.get(row.claim_id, "")
        table.rows.append([
            text(row.claim_id), text(row.claim_text),
            Cell(row.verdict, row.verdict, "verdict", badge=verdict_class(row.verdict), detail=row.reason),
            text(row.domain), text(row.evidence), text(row.rule),
            Cell(anchor.replace("fig-", "figure: ").replace("_", " ").replace("-", " "), anchor, "link"),
        ])
    return table


def findings(claims: pd.DataFrame) -> list[dict]:
    """The first screen: one plain sentence per claim (claims.csv `finding`, made from the verdict, its
    domain and headline number), its badge, and links to the claim's row and to its evidence."""
    return [{"id": row.claim_id, "verdict": row.verdict, "badge": verdict_class(row.verdict),
             "sentence": row.finding, "anchor": row.anchor or CLAIM_ANCHORS.get(row.claim_id, "")}
            for row in claims.itertuples()]


def verdict_class(verdict: str) -> str:
    return {"supported": "yes", "not supported": "no"}.get(verdict, "maybe")


def verdict_changes(claims: pd.DataFrame, path: Path = CHANGES) -> list[dict]:
    """The declared list of default verdicts a rule change moved (verdict_changes.yaml), with the verdict
    this page shows beside each, so a reader sees old → new and why under the claims table."""
    if not path.exists():
        return []
    entries = yaml.safe_load(path.read_text()) or {}
    shown = dict(zip(claims["claim_id"], claims["verdict"]))
    return [{**entry, "now": shown.get(entry["claim"], "—")} for entry in entries.get("changes", [])]


def tutorial_test_line(test_loop: pd.DataFrame | None) -> str | None:
    """test_loop.csv's rows at the tutorial's own setting (SGD, lr 1e-3, batch 64), one per seed, printed as the
    tutorial's test_loop prints them; None when the grid does not hold that setting."""
    if test_loop is None:
        return None
    rows = test_loop[(test_loop["optimizer"] == TUTORIAL_RUN["optimizer"])
                     & (test_loop["batch_size"] == TUTORIAL_RUN["batch_size"]) & (test_loop["lr"] == TUTORIAL_RUN["lr"])]
    if rows.empty:
        return None
    lines = [f"seed {row.seed}: " + (f"Test Error: Accuracy: {100 * row.accuracy:>0.1f}%, Avg loss: "
                                     f"{row.tutorial_avg_loss:>8f}" if math.isfinite(row.tutorial_avg_loss)
                                     else "diverged (no weights to test)")
             for row in rows.sort_values("seed").itertuples()]
    return (f"{optimizer_label(TUTORIAL_RUN['optimizer'])}, lr {fmt(TUTORIAL_RUN['lr'])}, batch "
            f"{TUTORIAL_RUN['batch_size']}, after epoch {fmt(rows['epoch'].max())}: " + "; ".join(lines)
            + " (Avg loss as the tutorial computes it: the mean over batches of 64 of each batch's mean loss)")


def setup_table(config: dict, status: pd.DataFrame, test_loop: pd.DataFrame | None = None) -> Table:
    grid = config["grid"]
    n_runs = len(status)
    diverged = int((status["status"] != "ok").sum())
    rows = [
        ("dataset", f"{config['dataset']['name']}, validation fraction {config['dataset']['val_fraction']}"),
        ("training samples n", ", ".join(str(v) for v in sorted(status["n_train"].unique()))),
        ("model", model_description(config)),
        ("optimizers", ", ".join(optimizer_label(o) for o in grid["optimizers"])),
        *[(f"{optimizer_label(o)} learning rates", ", ".join(fmt(lr) for lr in config["optimizers"][o]["lrs"]))
          for o in grid["optimizers"]],
        ("batch sizes", ", ".join(str(b) for b in grid["batch_sizes"])),
        ("seeds", ", ".join(str(s) for s in grid["seeds"])),
        ("budget", f"{config['train']['epochs']} epochs, drop_last = {config['train']['drop_last']}, "
                   f"≤ {config['train']['checkpoints']} log-spaced checkpoints per run"),
        ("selection metric", f"{config['selection']['metric']}: {METRIC_LABELS[config['selection']['metric']]} "
                             "(validation/training only; test is reported, never used to choose)"),
        ("confidence intervals", f"{percent(config['analysis']['confidence'])} (analysis.confidence) everywhere"),
        ("grid size", f"{n_runs} runs ({n_runs // max(len(grid['seeds']), 1)} groups × {len(grid['seeds'])} seeds); "
                      f"{diverged} diverged"),
        ("device", ", ".join(f"{d} ({t} thread{'s' if t != 1 else ''})"
                             for d, t in status[["device", "threads"]].drop_duplicates().itertuples(index=False))),
    ]
    if (line := tutorial_test_line(test_loop)) is not None:
        rows.append(("the tutorial's test loop", line))
    return Table(columns=["setting", "value"], rows=[[text(k), text(v)] for k, v in rows])


def best_lr_table(cells: pd.DataFrame, metric: str, confidence: float, order: dict) -> Table:
    """best_lr_cells.csv: the best grid LR per cell, the refined lr* on both objectives, the metric and the
    test accuracy there, seeds, stopping epoch and the boundary check."""
    ci = ci_label(confidence)
    table = Table(columns=["optimizer", "batch size", "best grid lr", f"refined lr*, geometric mean [{ci}] over seeds",
                           f"refined lr* on the training objective [{ci}]", f"{metric} (nats), mean [{ci}]",
                           f"test accuracy (%), mean [{ci}]", "seeds", "stopping epoch (median)", "censored"],
                  name="best_lr_cells")
    for _, row in sort_cells(cells, order).iterrows():
        censored = bool(row["censored"]) or int(row["n_censored"]) > 0
        detail = []
        if row["censored"]:
            detail.append(f"best grid lr: {row['censor_note']}")
        if row["n_censored"]:
            detail.append(f"{int(row['n_censored'])} of {int(row['lr_star_seeds'] or row['n_seeds'])} seeds' lr* "
                          f"censored, optimum may lie {row['censored_sides']}er: extend the grid")
        table.rows.append([
            label(row["optimizer"]), num(row["batch_size"]), num(row["grid_lr"]),
            Cell(fmt_ci(row["lr_star_gmean"], row["lr_star_low"], row["lr_star_high"]), sort_key(row["lr_star_gmean"]),
                 "num"),
            Cell(fmt_ci(row["lr_star_gmean_train"], row["lr_star_low_train"], row["lr_star_high_train"]),
                 sort_key(row["lr_star_gmean_train"]), "num"),
            ci_cell(row, "score"), ci_cell(row, "test_accuracy", scale=100), num(row["n_seeds"]),
            num(row["stop_epoch"]),
            Cell("; ".join(detail) if censored else "no", "1" if censored else "0", "warn" if censored else ""),
        ])
    return table


def sort_cells(frame: pd.DataFrame, order: dict) -> pd.DataFrame:
    """Rows in the config's optimizer order, then by batch size."""
    return frame.sort_values(["optimizer", "batch_size"], key=lambda c: c.map(order) if c.name == "optimizer" else c,
                             kind="stable")


def importance_table(importance: pd.DataFrame) -> Table:
    """hyperparameter_importance.csv: the share of the selection metric's variance each hyperparameter explains."""
    labels = {"optimizer": "optimizer", "batch_size": "batch size", "lr": "learning rate", "seed": "seed",
              "rest": "interactions and noise"}
    table = Table(columns=["runs", "factor", "share of the variance (log metric)", "runs used", "diverged (left out)"],
                  title="Which hyperparameter moves the selection metric?", name="hyperparameter_importance")
    for row in importance.itertuples():
        table.rows.append([text("all" if row.scope == "all" else optimizer_label(row.scope)),
                           text(labels.get(row.factor, row.factor) + (" (within each optimizer)" if row.scope == "all" and row.factor == "lr" else "")),
                           Cell(percent(row.share), sort_key(row.share), "num"), num(row.runs), num(row.diverged_runs)])
    return table


def lr_sensitivity_table(sensitivity: pd.DataFrame, order: dict) -> Table:
    """lr_sensitivity.csv per cell: the width of the near-best LR range and what happens either side."""
    first = sensitivity.iloc[0]
    ci = ci_label(first["confidence"])
    table = Table(columns=["optimizer", "batch size", f"near-best lr range (decades), mean [{ci}]",
                           "grid span (decades)", "runs not converging", "oscillating runs",
                           "first lr above the best that fails to converge (× best)",
                           "below the best: lower lr slower", "first too-large lr: unstable?"],
                  title="How wide is the good learning-rate range?", name="lr_sensitivity")
    table.note = (f"Near-best: the selection metric within {percent(first['tolerance'])} of its minimum, per seed "
                  "(ends interpolated in log lr; ≥ marks a range cut by the grid's edge). Not converging: diverged or "
                  "never below the initial loss (claim C2). Below the best: pairs of neighbouring lrs where the lower "
                  "one needs more steps to the target; the first too-large lr is the smallest above the best that is "
                  "not near-best, and it is unstable when most seeds diverge or oscillate (claim C9).")
    for _, row in sort_cells(sensitivity, order).iterrows():
        width = ci_cell(row, "width")
        if row["width_censored_low"] or row["width_censored_high"]:
            width.text = "≥ " + width.text
        failure = (f"{fmt(row['nonconverging_lr'])} (×{fmt(row['nonconverging_factor'], 2)})"
                   if pd.notna(row["nonconverging_lr"]) else f"none up to ×{fmt(row['grid_factor_above'], 2)}")
        too_large = (f"{fmt(row['too_large_lr'])}: {'yes' if row['too_large_unstable'] else 'no, merely worse'}"
                     if pd.notna(row["too_large_lr"]) else "none on the grid")
        table.rows.append([
            label(row["optimizer"]), num(row["batch_size"]), width, num(row["grid_decades"]),
            Cell(f"{int(row['diverged_runs'])} of {int(row['runs'])}", sort_key(row["diverged_fraction"]), "num"),
            num(row["oscillating_runs"]), Cell(failure, sort_key(row["nonconverging_factor"]), "num"),
            Cell(f"{int(row['below_slower'])} of {int(row['below_pairs'])} pairs", sort_key(row["below_slower"]), "num"),
            Cell(too_large, sort_key(row["too_large_lr"])),
        ])
    return table


def scaling_section(tables: dict[str, pd.DataFrame], confidence: float) -> dict:
    scaling = tables["scaling"]
    ci = ci_label(confidence)
    intro = ("lr* is refined per seed (parabola in log lr through the best grid point and its neighbours). "
             "The rules concern optimisation, so they are judged on lr* of the training objective (eval-mode "
             "loss over the whole training set at the end of the budget); lr* of the selection metric is shown "
             "beside it. Per seed, log lr* = α·log m + c is fitted over the batch sizes; the CI of α comes from "
             "the spread across seeds. Linear rule: α = 1 (C7, SGD); square-root rule: α = ½ (C8, Adam). A CI "
             "that contains both values, or neither, decides nothing by itself.")
    fits = Table(columns=["optimizer", "lr* on", "batch sizes", f"α, mean [{ci}]", "seeds fitted", "censored lr*",
                          "CI contains 1", "CI contains ½"], title="Fitted exponents α", name="scaling")
    order = {"fit": 0, "pair": 1}
    rows = scaling.assign(_o=scaling["kind"].map(order)).sort_values(["optimizer", "objective", "_o", "m_low"],
                                                                      kind="stable")
    for _, row in rows.iterrows():
        span = f"{int(row['m_low'])}–{int(row['m_high'])}" + (" (all)" if row["kind"] == "fit" else "")
        censored = f"{int(row['censored'])}" + (f" (m = {row['censored_m']})" if row["censored"] else "")
        fits.rows.append([
            label(row["optimizer"]), text("training objective" if row["objective"] == "train" else "selection metric"),
            Cell(span, sort_key(row["m_low"])), ci_cell(row, "alpha", 2),
            Cell(f"{int(row['n_seeds'])} of {int(row['grid_seeds'])}", sort_key(row["n_seeds"]), "num"),
            Cell(censored, sort_key(row["censored"]), "num"), yes_no(row["contains_linear"]),
            yes_no(row["contains_sqrt"])])
    return {"intro": intro, "tables": [fits, trajectory_table(tables["trajectory_summary"])]}


def trajectory_table(summary: pd.DataFrame) -> Table:
    """trajectory_summary.csv: from each seed's best-LR run, how far the training-loss curve at batch ×k
    moves under lr ×k against lr ×√k, over the pairs where both scaled runs are on the grid."""
    table = Table(columns=["optimizer", "k", "best-lr base runs", "pairs (both scaled runs on the grid)",
                           "lr × k closer", "lr × √k closer", "median distance, lr × k [min, max] (nats)",
                           "median distance, lr × √k [min, max] (nats)", "median of (lr × k − lr × √k)", "closer"],
                  title="Same curve at batch ×k? lr ×k (linear) against lr ×√k", name="trajectory_summary")
    table.note = ("Distance: root mean square difference of the eval-mode training-loss curves against epochs, from "
                  "each seed's best-lr run at batch size B to the run at k·B with the scaled lr; a diverged scaled run "
                  "is infinitely far. Counts and medians are over the same pairs; the closer rule is the one closer "
                  "in more than half of them (the sign of the median difference). The SDE view (Malladi et al. 2022) "
                  "predicts matching curves under the square-root rule for Adam and the linear rule for SGD.")
    for row in summary.itertuples():
        table.rows.append([
            label(row.optimizer), num(row.k), num(row.base_runs), num(row.pairs),
            Cell(f"{row.linear_closer} of {row.pairs}", sort_key(row.linear_closer), "num"),
            Cell(f"{row.sqrt_closer} of {row.pairs}", sort_key(row.sqrt_closer), "num"),
            Cell(fmt_ci(row.median_linear, row.min_linear, row.max_linear), sort_key(row.median_linear), "num"),
            Cell(fmt_ci(row.median_sqrt, row.min_sqrt, row.max_sqrt), sort_key(row.median_sqrt), "num"),
            num(row.median_difference),
            text({"linear": "lr × k", "sqrt": "lr × √k"}.get(row.closer, row.closer))])
    return table


def steps_section(tables: dict[str, pd.DataFrame], confidence: float) -> dict:
    steps, knees = tables["steps_to_target"], tables["batch_scaling"]
    ci = ci_label(confidence)
    intro = ("The target is a validation loss every batch size's best learning rate reaches (per optimizer). For each "
             "batch size the fastest learning rate is used (Shallue et al. 2018); steps are the first checkpoint "
             "reaching the target, interpolated. Efficiency from the previous batch size: 1 = doubling the batch "
             "halves the steps (perfect scaling), 0 = no gain (claim C6: the biggest gains come from growing small "
             "batches). The knee B_crit fits S(B) = S_min·(1 + B_crit/B) per seed (McCandlish et al. 2018); "
             "B_simple = σ²/‖∇f‖² is measured at the probe checkpoint nearest the target.")
    table = Table(columns=["optimizer", "batch size", "target (nats)", "fastest lr", f"steps, geometric mean [{ci}]",
                           f"epochs [{ci}]", "perfect-scaling steps", "efficiency vs previous B"],
                  title="Steps to the target validation loss", name="steps_to_target")
    for _, row in steps.iterrows():
        table.rows.append([
            label(row["optimizer"]), num(row["batch_size"]), num(row["target_loss"]), num(row["lr"]),
            ci_cell(row, "steps") if row["reached"] else Cell("not reached", "Infinity", "num warn"),
            ci_cell(row, "epochs") if row["reached"] else Cell("—", "Infinity", "num"),
            num(row["perfect_scaling_steps"]), num(row["efficiency"], 2)])
    scaling = Table(columns=["optimizer", "target (nats)", f"knee B_crit (samples) [{ci}]", "seeds without a knee",
                             "efficiency, first step", "efficiency, last step", f"first − last [{ci}]",
                             "B_simple near target (samples)"], title="How steps scale with the batch size",
                    name="batch_scaling")
    for _, row in knees.iterrows():
        scaling.rows.append([
            label(row["optimizer"]), num(row["target_loss"]), ci_cell(row, "knee"),
            Cell(f"{int(row['knee_infinite'])} of {int(row['knee_seeds'])}", sort_key(row["knee_infinite"]), "num"),
            num(row["efficiency_first"], 2), num(row["efficiency_last"], 2), ci_cell(row, "efficiency_gap", 2),
            num(row["b_simple"])])
    return {"intro": intro, "tables": [table, scaling]}


def stopping_section(tables: dict[str, pd.DataFrame], confidence: float) -> dict:
    ci = ci_label(confidence)
    table = Table(columns=["optimizer", "batch size", "runs", "stopping epoch, median (of budget)",
                           "validation loss at stop → at end (nats, mean)",
                           f"test loss gained by stopping (nats), mean [{ci}]", "runs overfitting"],
                  title="Early stopping at each seed's best lr", name="stopping_cells")
    table.note = ("Stopping checkpoint: the earliest minimum of the validation loss. Test gain = test loss at the end − "
                  "test loss at the stopping checkpoint (> 0: stopping there was better; measured, never used to "
                  "choose). Overfitting: validation loss ends clearly above its minimum while training loss keeps "
                  "falling (claim C10).")
    for _, row in tables["stopping_cells"].iterrows():
        table.rows.append([
            label(row["optimizer"]), num(row["batch_size"]), num(row["runs"]),
            Cell(f"{fmt(row['stop_epoch'])} of {fmt(row['final_epoch'])}", sort_key(row["stop_epoch"]), "num"),
            Cell(f"{fmt(row['val_stop'])} → {fmt(row['val_final'])}", sort_key(row["val_final"]), "num"),
            ci_cell(row, "test_gain"), Cell(f"{int(row['overfit_runs'])} of {int(row['runs'])}",
                                            sort_key(row["overfit_runs"]), "num")])
    return {"tables": [table]}


def critical_section(tables: dict[str, pd.DataFrame], confidence: float) -> dict:
    """Claims L1–L5: the four critical-batch estimates, the lr*(B) fits, the knees at one common target and
    Malladi's scaled runs — each table as the analysis stage wrote it."""
    ci = ci_label(confidence)
    intro = ("McCandlish et al. 2018 predict the critical batch size from the gradient noise scale; Shallue et al. "
             "2018 and Zhang et al. 2019 find momentum and Adam raise it; Malladi et al. 2022 scale Adam's β and ε "
             "with the batch size; Li et al. 2024 predict that Adam's best learning rate peaks and falls (claims "
             "L1–L5). Each estimate below is computed by the analysis stage; the B_noise of the surge form is a "
             "sign-gradient model's peak, not tr(HΣ)/GᵀHG.")
    estimates = Table(columns=["optimizer", "estimate", f"value (samples) [{ci}]", "note"],
                      title="Four estimates of the critical batch size", name="critical_batch")
    for row in tables["critical_batch"].itertuples():
        estimates.rows.append([label(row.optimizer), text(row.estimate),
                               Cell(fmt_ci(row.value, row.low, row.high), sort_key(row.value), "num"), text(row.note)])
    fits = Table(columns=["optimizer", "law", f"B_noise (samples) [{ci}]", "seeds beyond the grid", "ε_max",
                          f"held-out gain over the power law [{ci}]", "censored lr*"],
                 title="lr*(B) fitted with the literature's laws", name="lr_noise_scale")
    for row in tables["lr_noise_scale"].itertuples():
        fits.rows.append([label(row.optimizer), text({"mccandlish": "McCandlish ε_max/(1 + B_noise/B)",
                                                      "surge": "Li et al. surge"}[row.form]),
                          Cell(fmt_ci(row.b_noise, row.b_noise_low, row.b_noise_high), sort_key(row.b_noise), "num"),
                          Cell(f"{row.b_noise_censored} of {row.seeds}", sort_key(row.b_noise_censored), "num"),
                          num(row.lr_max), Cell(fmt_ci(row.cv_gain, row.cv_gain_low, row.cv_gain_high),
                                                sort_key(row.cv_gain), "num"), num(row.lr_censored)])
    common = Table(columns=["optimizer", "common target (nats)", f"knee B_crit [{ci}]"],
                   title="Knees at one common target (claim L3)", name="batch_scaling_common")
    for _, row in tables["batch_scaling_common"].iterrows():
        common.rows.append([label(row["optimizer"]), num(row["target_loss"]), ci_cell(row, "knee")])
    out = [estimates, fits, common]
    malladi = tables["malladi"]
    summary = malladi[malladi["kind"] == "summary"]
    if len(summary):
        scaled = Table(columns=["k", "batch size", "lr", f"gain: lr-only − full distance (nats) [{ci}]",
                                "noise floor (nats)", "seeds"], title="Malladi's full rule against lr ÷ √k alone",
                       name="malladi")
        for _, row in summary.iterrows():
            scaled.rows.append([num(row["k"]), num(row["batch_size"]), num(row["lr"]), ci_cell(row, "gain"),
                                num(row["floor"]), num(row["seeds"])])
        out.append(scaled)
    return {"intro": intro, "tables": out}


def gradient_noise_section(tables: dict[str, pd.DataFrame], confidence: float) -> dict:
    moments, slopes, pooled = tables["gradvar"], tables["gradvar_slopes"], tables["noise_pooled"]
    if moments.empty:
        return {"intro": "The probe runs had no checkpoint with weights and a finite loss: nothing was measured."}
    first = moments.iloc[0]
    ci = ci_label(confidence)
    intro = (f"At each probed checkpoint, K = {int(first['K'])} independent mini-batches of each size m are "
             f"drawn uniformly without replacement from the n = {int(first['n'])} training samples; "
             f"E‖g_B − ∇f‖² is their mean, with a {percent(first['confidence'])} BCa bootstrap interval. "
             f"Over the {moments['m'].nunique()} sizes m of a checkpoint, a prediction passes when it lies inside every "
             f"family-wise interval (Bonferroni: {percent(first['confidence_fw'], 4)} each). The log-log slope "
             "is fitted over m ≤ n/20, where σ²/m and the exact σ²/m·(n−m)/(n−1) agree; the tutorial predicts −1.")
    table = Table(columns=["probe run", "epoch", "training loss (nats)", "σ²", "‖∇f‖²", "B_simple (samples)",
                           "σ²/m passes (m's)", "exact passes (m's)", f"slope, m ≤ n/20 [{ci}]",
                           f"measured ÷ σ²/m, m = 2 [{ci}]", f"measured ÷ σ²/m, m = 100 [{ci}]",
                           "z, mean over m (expect 1)"], title="Per probed checkpoint", name="gradvar_slopes")
    at = moments.set_index(["optimizer", "batch_size", "lr", "seed", "step", "m"])
    for _, row in slopes.iterrows():
        key = (row["optimizer"], row["batch_size"], row["lr"], row["seed"], row["step"])
        run = f"{optimizer_label(row['optimizer'])}, B = {row['batch_size']}, lr {fmt(row['lr'])}, seed {row['seed']}"

        def ratio(m):  # the tutorial's "batch size 2 halves it, 100 divides it by 100": ratio 1 if right
            if key + (m,) not in at.index:
                return Cell("not probed", "", "num")
            return ci_cell(at.loc[key + (m,)], "ratio_iid")
        table.rows.append([
            Cell(run, run, "nowrap"), num(row["epoch"]), num(row["train_loss"]), num(row["sigma2"]),
            num(row["grad_norm2"]), num(row["b_simple"]),
            Cell(f"{int(row['iid_passes'])} of {int(row['m_count'])}", sort_key(row["iid_passes"]), "num"),
            Cell(f"{int(row['fpc_passes'])} of {int(row['m_count'])}", sort_key(row["fpc_passes"]), "num"),
            ci_cell(row, "slope"), ratio(2), ratio(100), num(row["z_mean"])])
    table.note = ("σ² = mean_i ‖∇f_i‖² − ‖∇f‖² and ‖∇f‖² are squared gradient norms (nats² per squared weight "
                  "unit); B_simple = σ²/‖∇f‖² is in samples.")
    names = {"z": "z (expect 1)", "ratio_fpc": "measured ÷ σ²/m·(n−m)/(n−1)", "ratio_iid": "measured ÷ σ²/m",
             "halving": "E‖e‖² at m = 2 ÷ at m = 1 (tutorial: ½)"}
    level = pooled["confidence"].max() if len(pooled) else confidence
    pooled_table = Table(columns=["quantity", "m", "checkpoints", "mean over checkpoints [CI]", "CI level"],
                         title="Pooled over the probed checkpoints (claims C4, C5)", name="noise_pooled")
    pooled_table.note = (f"Per m, a t interval over the checkpoints at the family-wise level "
                         f"{percent(level, 4)} (Bonferroni over the m's, overall {percent(confidence)}); the halving "
                         f"ratio at {percent(confidence)}.")
    for _, row in pooled.iterrows():
        pooled_table.rows.append([text(names.get(row["quantity"], row["quantity"])), num(row["m"]),
                                  num(row["checkpoints"]), Cell(fmt_ci(row["mean"], row["ci_low"], row["ci_high"]),
                                                                sort_key(row["mean"]), "num"),
                                  text(percent(row["confidence"], 4))])
    return {"intro": intro, "tables": [table, pooled_table]}


def cost_section(cost: pd.DataFrame) -> dict:
    """cost.csv per rule, and the sentence that adds it up (its "all" row and the train row's loop time)."""
    if cost.empty:
        return {"intro": "No benchmark files were found.", "tables": []}
    table = frame_table(cost[cost["rule"] != "all"], {
        "rule": "rule", "jobs": "jobs", "total_s": "wall time, total (s)", "median_s": "wall time per job, median (s)",
        "max_s": "slowest job (s)", "cpu_s": "CPU time, total (s)", "peak_rss_mb": "peak memory of a job (MB)",
        "loop_s": "training loops (s)"}, name="cost")
    everything = cost[cost["rule"] == "all"].iloc[0]
    train = cost[cost["rule"] == "train"]
    sentence = (f"Per-rule wall time, CPU time and peak memory from Snakemake's benchmark files "
                f"({int(everything['jobs'])} jobs, {fmt(everything['total_s'])} s of job wall time in all).")
    if len(train) and pd.notna(train["loop_s"].iloc[0]):
        sentence += (f" Training loops took {fmt(train['loop_s'].iloc[0])} s of the training jobs' "
                     f"{fmt(train['total_s'].iloc[0])} s (a bundled run's loop time is its share of its bundle's: "
                     "each epoch's time split equally among the members training in it).")
    if len(train):
        sentence += (" A training job at the evaluate stage's thread count also evaluates the checkpoints of the runs "
                     "it trained, while they are in memory, so its time includes that evaluation and the evaluate "
                     "jobs' time is mostly their check of it.")
    return {"intro": sentence, "tables": [table]}


# ---------------------------------------------------------------------------------------------
# Figures and rendering

# Figure name → title; the caption is the figure's .rst file (shared with `snakemake --report`).
FIGURE_TITLES = {
    "curves": "training and validation loss at the best learning rate",
    "lr_grid": "validation loss for every learning rate",
    "sweep": "the grid as a sweep: every run, and what moves the metric",
    "critical_batch": "the critical batch size, four ways",
    "lr_forms": "the best learning rate against batch size, with the laws fitted to it",
    "lr_sensitivity": "learning-rate sensitivity",
    "cost": "training time",
    "trajectories": "too small and too large learning rates",
    "early_stopping": "when the validation loss bottoms out",
    "scaling": "best learning rate against batch size",
    "steps_to_target": "steps to the target loss against batch size",
    "gradvar": "mini-batch gradient error against σ²/m",
    "noise_scale": "gradient noise scale across training",
}


def inline_svg(svg: str) -> str:
    """The <svg> element of an SVG file for embedding in HTML: no XML prologue, DOCTYPE or RDF metadata."""
    return re.sub(r"<metadata>.*?</metadata>\s*", "", svg[svg.index("<svg"):], count=1, flags=re.S)


def caption_text(rst: str) -> str:
    """A caption .rst file as plain text: the captions use no markup beyond ``literals``."""
    return re.sub(r"``([^`]*)``", r"\1", " ".join(rst.split()))


def figure_entries(svgs: dict[str, str], captions: dict[str, str]) -> dict[str, dict]:
    from markupsafe import Markup

    # Markup: the SVG is this workflow's own matplotlib output, whose text matplotlib has escaped.
    return {name: {"svg": Markup(inline_svg(svg)), "title": FIGURE_TITLES.get(name, name.replace("_", " ")),
                   "caption": caption_text(captions.get(name, ""))} for name, svg in svgs.items()}


def render(context: dict, template_dir: Path = TEMPLATE_DIR) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(str(template_dir)), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(**context)


def attach_csv(value, csv_texts: dict[str, str]):
    """Give every Table in `value` (a Table, a section dict or a list of them) its CSV download link."""
    if isinstance(value, Table):
        if value.name in csv_texts:
            value.csv = csv_uri(csv_texts[value.name])
    elif isinstance(value, dict):
        for item in value.values():
            attach_csv(item, csv_texts)
    elif isinstance(value, list):
        for item in value:
            attach_csv(item, csv_texts)
    return value


def build_context(config: dict, tables: dict[str, pd.DataFrame], svgs: dict[str, str], captions: dict[str, str],
                  prov: dict, csv_texts: dict[str, str] | None = None) -> dict:
    """Everything the template shows, from the tables (the report rule's inputs; the gradient-noise ones with
    probes). `csv_texts` (table name → its file's text) become the tables' download links."""
    status = tables["run_status"]
    metric = config["selection"]["metric"]
    confidence = config["analysis"]["confidence"]
    order = {name: i for i, name in enumerate(config["grid"]["optimizers"])}
    probes = "gradvar" in tables  # the report rule asks for the noise tables only when there are probes
    analysis = [
        ("scaling", "Scaling rules (batch size × k → learning rate × ?)", ["scaling"], scaling_section(tables, confidence)),
        ("steps-to-target", "Steps to target", ["steps_to_target"], steps_section(tables, confidence)),
        ("critical-batch", "Beyond the tutorial: the critical batch size", ["critical_batch", "lr_forms"],
         critical_section(tables, confidence)),
        ("gradient-noise", "Gradient noise", ["gradvar", "noise_scale"],
         gradient_noise_section(tables, confidence) if probes else None),
        ("when-to-stop", "When to stop", ["early_stopping"], stopping_section(tables, confidence)),
    ]
    sections = [{"id": anchor, "title": title, "kind": "analysis", "available": body is not None,
                 "missing": "Not computed: no gradient-variance probes in this workflow (add runs to "
                            "grad_variance.probes in the config).",
                 "figures": [name for name in figures if name in svgs], "intro": "", "tables": [], **(body or {})}
                for anchor, title, figures, body in analysis]
    context = {
        "title": config.get("title", "optbench"),
        "n_runs": len(status),
        "ci_label": ci_label(confidence),
        "sections": [
            {"id": "findings", "kind": "fixed", "title": "Findings", "available": True},
            {"id": "claims", "kind": "fixed", "title": "Claims and verdicts", "available": True},
            {"id": "setup", "kind": "fixed", "title": "Setup", "available": True},
            {"id": "curves", "kind": "fixed", "title": "Training curves", "available": True},
            {"id": "lr-sensitivity", "kind": "fixed", "title": "Learning-rate sensitivity and best learning rates",
             "available": True},
            *sections,
            {"id": "cost", "kind": "fixed", "title": "Cost", "available": True},
            {"id": "provenance", "kind": "fixed", "title": "Provenance", "available": True},
        ],
        "claims": claims_table(tables["claims"]),
        "findings": findings(tables["claims"]),
        "changes": verdict_changes(tables["claims"]),
        "setup": setup_table(config, status, tables.get("test_loop")),
        "figures": figure_entries(svgs, captions),
        "metric": metric,
        "metric_label": METRIC_LABELS[metric],
        "best_lr": best_lr_table(tables["best_lr_cells"], metric, confidence, order),
        "lr_sensitivity": lr_sensitivity_table(tables["lr_sensitivity"], order),
        "importance": importance_table(tables["hyperparameter_importance"]),
        "cost": cost_section(tables["cost"]),
        "provenance": prov,
    }
    return attach_csv(context, csv_texts or {})
