"""One rule per tutorial claim (C1–C10): the analysis tables and the config's rule in, a verdict with its reason out."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from optbench import analysis
from optbench.analysis import mean_ci
from optbench.config import optimizer_label

CLAIMS = {
    "C1": "Training with the loop lowers training loss.",
    "C2": "SGD is highly sensitive to the learning rate and for some settings does not converge; "
          "Adam is much less sensitive.",
    "C3": "For Adam, learning rates of 1e-3 or 1e-4 often work well.",
    "C4": "The mini-batch gradient is an unbiased estimate of the full gradient.",
    "C5": "Its error variance is σ²/m: batch size 2 halves it, batch size 100 divides it by 100.",
    "C6": "The biggest gains come from increasing small batch sizes.",
    "C7": "SGD: multiply the batch size by k, multiply the learning rate by k (linear scaling rule).",
    "C8": "Adam: multiply the batch size by k, multiply the learning rate by √k.",
    "C9": "Too small a learning rate needs many iterations; too large a one oscillates or diverges.",
    "C10": "The loss curves tell when to stop (early stopping).",
}
# Where the report draws each claim's evidence (ids of the page's sections and figures).
ANCHORS = {"C1": "fig-curves", "C2": "fig-lr_sensitivity", "C3": "fig-lr_sensitivity", "C4": "gradient-noise",
           "C5": "fig-gradvar", "C6": "steps-to-target", "C7": "scaling", "C8": "scaling",
           "C9": "fig-trajectories", "C10": "fig-early_stopping"}
SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
NO_PROBES = "no gradient-variance probes (grad_variance.probes is empty)"


def fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, (float, np.floating)) and math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return f"{value:.{digits}g}"


def fmt_ci(mean, low, high, digits: int = 3, unit: str = "") -> str:
    interval = f" [{fmt(low, digits)}, {fmt(high, digits)}]" if np.isfinite(low) or np.isfinite(high) else ""
    return f"{fmt(mean, digits)}{interval}{unit}"


def percent(value) -> str:
    return "—" if not np.isfinite(value) else f"{100 * value:.0f} %"


def result(claim: str, verdict: str, reason: str, evidence: str, rule: str) -> dict:
    return {"claim_id": claim, "claim_text": CLAIMS[claim], "verdict": verdict, "reason": reason,
            "evidence": evidence, "rule": rule, "anchor": ANCHORS[claim]}


def too_few_seeds(n: int, rule: dict) -> str | None:
    if n < rule["min_seeds"]:
        return f"{n} seed(s), the rule needs at least {rule['min_seeds']}"
    return None


def seeds_clause(rule: dict) -> str:
    return f"at least {rule['min_seeds']} seeds, else inconclusive"


def cell_label(optimizer: str, batch_size) -> str:
    return f"{optimizer_label(optimizer)} B={batch_size}"


# ---------------------------------------------------------------------------------------------

def c1_training_lowers_loss(tables: dict, rule: dict) -> dict:
    scores, best = tables["lr_scores"], tables["best_lr"]
    text = (f"At each optimizer × batch size's best LR ({rule['metric']}, per seed), the relative drop of the training "
            f"loss (eval mode, whole training set, mean of the last {rule['train_checkpoints']} checkpoints) below "
            f"its value at initialisation: supported when every cell's {percent(rule['confidence'])} CI over seeds "
            f"lies above {percent(rule['min_drop'])}; not supported when some cell's CI lies below it; "
            f"{seeds_clause(rule)}.")
    chosen = best[["optimizer", "batch_size", "seed", "grid_lr"]].merge(
        scores, left_on=["optimizer", "batch_size", "seed", "grid_lr"],
        right_on=["optimizer", "batch_size", "seed", "lr"])
    chosen = chosen.assign(drop=1 - chosen["train_objective"] / chosen["initial_train"])
    cells = [(key, mean_ci(cell["drop"], rule["confidence"]))
             for key, cell in chosen.groupby(["optimizer", "batch_size"])]
    lowered = int((scores["train_objective"] < scores["initial_train"]).sum())
    evidence = f"{lowered} of {len(scores)} runs of the grid end below their initial training loss"
    if not cells:
        return result("C1", INCONCLUSIVE, "no cell has a non-diverged run", evidence, text)
    worst = min(cells, key=lambda c: c[1][0])
    evidence = (f"relative drop of the training loss at the best LR, lowest cell mean: {cell_label(*worst[0])} "
                f"{fmt_ci(*(100 * v for v in worst[1][:3]), unit=' %')} (cell means "
                f"{percent(min(c[1][0] for c in cells))}–{percent(max(c[1][0] for c in cells))}, {len(cells)} cells); "
                + evidence)
    few = too_few_seeds(min(c[1][3] for c in cells), rule)
    if few:
        return result("C1", INCONCLUSIVE, few, evidence, text)
    below = [c for c in cells if c[1][2] < rule["min_drop"]]
    if below:
        return result("C1", NOT_SUPPORTED, "the CI lies below the required drop at "
                      + ", ".join(cell_label(*c[0]) for c in below), evidence, text)
    open_cells = [c for c in cells if not c[1][1] > rule["min_drop"]]
    if open_cells:
        return result("C1", INCONCLUSIVE, "the CI contains the required drop at "
                      + ", ".join(cell_label(*c[0]) for c in open_cells), evidence, text)
    return result("C1", SUPPORTED, f"every cell's CI lies above {percent(rule['min_drop'])}", evidence, text)


def c2_sgd_sensitive(tables: dict, rule: dict) -> dict:
    sgd, adam = rule["optimizers"]
    tolerance, margin = rule["tolerance"], rule["margin_decades"]
    named = {o: optimizer_label(o) for o in (sgd, adam)}
    text = (f"Width (decades) of the LR range whose {rule['metric']} stays within {percent(tolerance)} of the best, "
            f"per seed; {named[adam]} − {named[sgd]} paired by seed, {percent(rule['confidence'])} CI per batch size. "
            f"Supported when {named[sgd]} has at least {rule['min_nonconverged_runs']} run(s) that do not converge "
            f"(diverged, or never below the initial loss) and in more than {percent(rule['min_fraction'])} of batch "
            f"sizes the CI lies above {margin} decades ({named[sgd]}'s width not censored by the grid's edge); not "
            "supported when that run count falls short while every cell's grid reaches above its near-best range, "
            f"or in more than {percent(rule['min_fraction'])} of batch sizes the CI lies below {margin} decades "
            f"({named[adam]}'s width not censored); {seeds_clause(rule)}.")
    scores, sensitivity = tables["lr_scores"], tables["lr_sensitivity"]
    widths = analysis.seed_widths(scores, tolerance)
    missing = [o for o in (sgd, adam) if o not in set(scores["optimizer"])]
    if missing:
        return result("C2", INCONCLUSIVE, f"{' and '.join(missing)} not in the grid", "", text)
    mine = sensitivity[sensitivity["optimizer"] == sgd]
    nonconverged, runs = int(mine["diverged_runs"].sum()), int(mine["runs"].sum())
    per_batch, decided, n_seeds = [], {"for": [], "against": [], "open": []}, []
    for batch_size in sorted(set(widths.loc[widths["optimizer"] == sgd, "batch_size"])
                             & set(widths.loc[widths["optimizer"] == adam, "batch_size"])):
        pair = {o: widths[(widths["optimizer"] == o) & (widths["batch_size"] == batch_size)].set_index("seed")
                for o in (sgd, adam)}
        seeds = pair[sgd].index.intersection(pair[adam].index)
        delta = mean_ci(pair[adam].loc[seeds, "width_decades"] - pair[sgd].loc[seeds, "width_decades"],
                        rule["confidence"])
        n_seeds.append(delta[3])
        censored = {o: bool((pair[o]["censored_low"] | pair[o]["censored_high"]).any()) for o in (sgd, adam)}
        if delta[1] > margin and not censored[sgd]:
            decided["for"].append(batch_size)
        elif delta[2] < margin and not censored[adam]:
            decided["against"].append(batch_size)
        else:
            decided["open"].append(batch_size)
        per_batch.append(f"B={batch_size}: {fmt_ci(*delta[:3], digits=2)}"
                         + "".join(f" ({optimizer_label(o)} censored)" for o in (sgd, adam) if censored[o]))
    width_by = sensitivity.groupby("optimizer")["width_decades"].mean()
    fraction = sensitivity.groupby("optimizer")["diverged_fraction"].mean()
    evidence = (f"mean width {optimizer_label(sgd)} {fmt(width_by.get(sgd, math.nan), 2)} decades, "
                f"{optimizer_label(adam)} {fmt(width_by.get(adam, math.nan), 2)} decades; "
                f"{optimizer_label(adam)} − {optimizer_label(sgd)} per batch size (decades): {'; '.join(per_batch)}; "
                f"runs not converging: {optimizer_label(sgd)} {nonconverged} of {runs} "
                f"({percent(fraction.get(sgd, math.nan))} of its grid), {optimizer_label(adam)} "
                f"{int(sensitivity.loc[sensitivity['optimizer'] == adam, 'diverged_runs'].sum())} of "
                f"{int(sensitivity.loc[sensitivity['optimizer'] == adam, 'runs'].sum())}")
    few = too_few_seeds(min(n_seeds, default=0), rule)
    if few:
        return result("C2", INCONCLUSIVE, few, evidence, text)
    total = len(per_batch)
    if nonconverged < rule["min_nonconverged_runs"]:
        if mine["width_censored_high"].any():
            return result("C2", INCONCLUSIVE, f"{optimizer_label(sgd)} converged at every grid point but its grid "
                          "stops inside the near-best range at B = "
                          f"{mine.loc[mine['width_censored_high'], 'batch_size'].tolist()}: extend it above",
                          evidence, text)
        return result("C2", NOT_SUPPORTED, f"{optimizer_label(sgd)} converged at every grid point "
                      f"({nonconverged} non-converging runs)", evidence, text)
    if len(decided["against"]) > rule["min_fraction"] * total:
        return result("C2", NOT_SUPPORTED, f"{optimizer_label(adam)}'s range is not {margin} decades wider at "
                      f"B = {decided['against']}", evidence, text)
    if len(decided["for"]) > rule["min_fraction"] * total:
        return result("C2", SUPPORTED, f"{optimizer_label(sgd)} fails to converge in {nonconverged} runs and "
                      f"{optimizer_label(adam)}'s range is wider by more than {margin} decades at "
                      f"B = {decided['for']}", evidence, text)
    return result("C2", INCONCLUSIVE, f"the CI decides at too few batch sizes (for: {decided['for']}, against: "
                  f"{decided['against']}, undecided or censored: {decided['open']})", evidence, text)


def c3_adam_default_lrs(tables: dict, rule: dict) -> dict:
    optimizer, lrs = rule["optimizer"], sorted(rule["lrs"])
    listed = " and ".join(fmt(lr) for lr in lrs)
    text = (f"A learning rate works well when its {rule['metric']} is within {percent(rule['tolerance'])} of the best "
            f"on the grid for that batch size and seed. Supported when at least one of {listed} works well in at "
            f"least {percent(rule['often'])} of {optimizer_label(optimizer)}'s batch size × seed cells whose "
            f"optimum is not censored; not supported when fewer than {percent(rule['often'])} of all cells have one "
            f"that works well; needs {listed} in the grid; {seeds_clause(rule)}.")
    scores = tables["lr_scores"][tables["lr_scores"]["optimizer"] == optimizer]
    grid = np.sort(scores["lr"].unique())
    absent = [lr for lr in lrs if analysis.lr_index(grid, lr) is None]
    if absent:
        return result("C3", INCONCLUSIVE, f"{optimizer_label(optimizer)}'s grid lacks "
                      f"{' and '.join(fmt(lr) for lr in absent)} (the rule needs {listed})", "", text)
    censored = tables["best_lr"].set_index(["optimizer", "batch_size", "seed"])["censored"]
    works = {lr: [] for lr in lrs}
    either, certain = [], []
    for (batch_size, seed), cell in scores.groupby(["batch_size", "seed"]):
        values = cell.set_index("lr")["score"]
        best = values.min()
        good = [bool(values.get(grid[analysis.lr_index(grid, lr)], math.inf) <= best * (1 + rule["tolerance"]))
                if np.isfinite(best) else False for lr in lrs]
        for lr, ok in zip(lrs, good):
            works[lr].append(ok)
        either.append(any(good))
        certain.append(any(good) and not censored.get((optimizer, batch_size, seed), True))
    cells = len(either)
    evidence = "; ".join(f"{fmt(lr)} works well in {sum(v)} of {cells} cells" for lr, v in works.items())
    best_lrs = tables["best_lr"].loc[tables["best_lr"]["optimizer"] == optimizer, "grid_lr"]
    evidence += (f"; either: {sum(either)} of {cells} ({sum(certain)} with an uncensored optimum); best grid LRs "
                 f"{fmt(best_lrs.min())}–{fmt(best_lrs.max())}")
    few = too_few_seeds(scores["seed"].nunique(), rule)
    if few:
        return result("C3", INCONCLUSIVE, few, evidence, text)
    if sum(either) < rule["often"] * cells:
        return result("C3", NOT_SUPPORTED, f"one of {listed} works well in only {sum(either)} of {cells} cells",
                      evidence, text)
    if sum(certain) >= rule["often"] * cells:
        return result("C3", SUPPORTED, f"one of {listed} works well in {sum(certain)} of {cells} cells", evidence, text)
    return result("C3", INCONCLUSIVE, f"censored optima: only {sum(certain)} of {cells} cells are certain "
                  "(extend the grid where best_lr.csv says)", evidence, text)


def c4_unbiased(tables: dict, rule: dict) -> dict:
    text = (f"z = ‖ḡ − ∇f‖²·mK/(σ²(n−m)/(n−1)) has expectation 1 when E g_B = ∇f; per probed m, the mean z over "
            f"probed checkpoints has a t CI at {percent(1 - rule['alpha'])}, Bonferroni-adjusted over the m's: "
            "supported when every CI contains 1, not supported otherwise; at least 2 probed checkpoints.")
    gradvar = tables.get("gradvar")
    if gradvar is None:
        return result("C4", INCONCLUSIVE, NO_PROBES, "", text)
    from optbench.gradvar import verdict_unbiased

    found = verdict_unbiased(gradvar, rule["alpha"])
    evidence = ""
    if "pooled" in found:
        pooled = found["pooled"]
        lo, hi = pooled.loc[pooled["mean"].idxmin()], pooled.loc[pooled["mean"].idxmax()]
        evidence = (f"mean z = {fmt(found['z_mean'])} (expect 1) over {found['checkpoints']} probed checkpoints; per-m "
                    f"means from {fmt_ci(lo['mean'], lo['ci_low'], lo['ci_high'])} at m = {int(lo['m'])} to "
                    f"{fmt_ci(hi['mean'], hi['ci_low'], hi['ci_high'])} at m = {int(hi['m'])}; "
                    f"{percent(found['outside_share'])} of (checkpoint, m) values of z outside their own "
                    "family-wise sampling range")
    return result("C4", found["verdict"], found["reason"], evidence, found.get("rule", text))


def c5_variance(tables: dict, rule: dict) -> dict:
    text = (f"Per probed m, the mean over checkpoints of measured ÷ σ²/m·(n−m)/(n−1) has a t CI at "
            f"{percent(1 - rule['alpha'])}, Bonferroni-adjusted over the m's: supported when every CI contains 1; "
            "the literal σ²/m is judged the same way over m ≤ n/20; at least 2 probed checkpoints.")
    gradvar = tables.get("gradvar")
    if gradvar is None:
        return result("C5", INCONCLUSIVE, NO_PROBES, "", text)
    from optbench.gradvar import verdict_variance

    slopes = tables.get("gradvar_slopes")
    found = verdict_variance(gradvar, slopes if slopes is not None else pd.DataFrame(), rule["alpha"])
    parts = []
    if "pooled_fpc" in found and len(found["pooled_fpc"]):
        exact = found["pooled_fpc"]
        parts.append(f"measured ÷ σ²/m·(n−m)/(n−1), per-m means {fmt(exact['mean'].min())}–{fmt(exact['mean'].max())} "
                     f"(expect 1); literal σ²/m: {found.get('verdict_literal', '—')}")
    halving = halving_ratio(gradvar, rule["confidence"])
    if np.isfinite(halving[0]):
        parts.append(f"E‖e‖² at m = 2 ÷ at m = 1: {fmt_ci(*halving[:3])} over {halving[3]} checkpoints "
                     "(tutorial: 0.5)")
    for m in (2, 100):
        value = found.get(f"ratio_iid_{m}_mean", math.nan)
        if np.isfinite(value):
            parts.append(f"measured ÷ σ²/m at m = {m}: {fmt(value)}")
    if np.isfinite(found.get("slope_mean", math.nan)):
        parts.append(f"log-log slope over m ≤ n/20: {fmt(found['slope_mean'])} (σ²/m: −1, exact: "
                     f"{fmt(found['slope_pred_fpc'])})")
    return result("C5", found["verdict"], found["reason"], "; ".join(parts), found.get("rule", text))


def halving_ratio(gradvar: pd.DataFrame, confidence: float) -> tuple[float, float, float, int]:
    """Per probed checkpoint, E‖e‖² at m = 2 over E‖e‖² at m = 1 (the tutorial's "halves it"): mean, CI, n."""
    keys = [c for c in (*analysis.RUN_KEYS, "step") if c in gradvar.columns]
    wide = gradvar[gradvar["m"].isin([1, 2])].pivot_table(index=keys, columns="m", values="empirical_mean")
    if 1 not in wide or 2 not in wide:
        return math.nan, math.nan, math.nan, 0
    return mean_ci(wide[2] / wide[1], confidence)


def c6_small_batches_gain_most(tables: dict, rule: dict) -> dict:
    factor = rule["knee_factor"]
    text = (f"Steps to the target validation loss at each batch size's fastest LR, per seed. Per optimizer in "
            f"{rule['optimizers']}: diminishing returns when the scaling efficiency (log steps saved ÷ log batch "
            "growth; 1 = perfect) of the first batch-size step exceeds that of the last, "
            f"{percent(rule['confidence'])} CI over seeds above 0; the knee B_crit of S = S_min(1 + B_crit/B) "
            f"agrees with B_simple (measured near the target loss) when its CI lies within a factor {fmt(factor)} of "
            f"it. Supported when both hold for every listed optimizer; not supported when for one the efficiency "
            f"difference's CI lies below 0 or the knee's CI lies outside the factor; at least "
            f"{rule['min_batch_sizes']} batch sizes; {seeds_clause(rule)}.")
    steps, per_seed = tables["steps_to_target"], analysis.seed_steps(tables["lr_scores"])
    outcomes, evidence, reasons = [], [], []
    for optimizer in rule["optimizers"]:
        name = optimizer_label(optimizer)
        rows = steps[steps["optimizer"] == optimizer].sort_values("batch_size")
        wide = per_seed[per_seed["optimizer"] == optimizer].pivot(index="seed", columns="batch_size", values="steps")
        if rows.empty:
            outcomes.append(INCONCLUSIVE)
            reasons.append(f"{name} not in the grid")
            continue
        knee = rows.iloc[0]
        evidence.append(f"{name}: steps to {fmt(knee['target_loss'])} nats "
                        + ", ".join(f"B={r.batch_size}: {fmt(r.steps)}" for r in rows.itertuples())
                        + f"; knee B_crit {fmt_ci(knee['knee'], knee['knee_low'], knee['knee_high'])} samples; "
                        f"B_simple {fmt(knee['b_simple'])} samples")
        if len(rows) < rule["min_batch_sizes"]:
            outcomes.append(INCONCLUSIVE)
            reasons.append(f"{name}: {len(rows)} batch sizes")
            continue
        if not rows["reached"].all():
            outcomes.append(INCONCLUSIVE)
            missed = rows.loc[~rows["reached"], "batch_size"].tolist()
            reasons.append(f"{name}: the target is not reached at B = {missed}")
            continue
        few = too_few_seeds(len(wide), rule)
        if few:
            outcomes.append(INCONCLUSIVE)
            reasons.append(f"{name}: {few}")
            continue
        b = np.log(np.asarray(wide.columns, dtype=float))
        logs = np.log(wide.to_numpy(float))
        efficiency = -(logs[:, 1:] - logs[:, :-1]) / (b[1:] - b[:-1])
        gap = mean_ci(efficiency[:, 0] - efficiency[:, -1], rule["confidence"])
        evidence[-1] += (f"; efficiency {fmt(efficiency[:, 0].mean(), 2)} (first step) vs "
                         f"{fmt(efficiency[:, -1].mean(), 2)} (last), difference {fmt_ci(*gap[:3], digits=2)}")
        diminishing = "yes" if gap[1] > 0 else "no" if gap[2] < 0 else "open"
        low, high, reference = knee["knee_low"], knee["knee_high"], knee["b_simple"]
        if not np.isfinite(reference):
            agreement = "open"
            reasons.append(f"{name}: " + (NO_PROBES if tables.get("gradvar") is None else "no probe of this optimizer"))
        elif low >= reference / factor and high <= reference * factor:
            agreement = "yes"
        elif high < reference / factor or low > reference * factor:
            agreement = "no"
            reasons.append(f"{name}: knee outside ×{fmt(factor)} of B_simple")
        else:
            agreement = "open"
            reasons.append(f"{name}: the knee's CI is too wide to compare with B_simple")
        if diminishing == "no":
            reasons.append(f"{name}: gains do not fall with batch size")
        elif diminishing == "open":
            reasons.append(f"{name}: the efficiency difference's CI contains 0")
        if diminishing == "no" or agreement == "no":
            outcomes.append(NOT_SUPPORTED)
        elif diminishing == "yes" and agreement == "yes":
            outcomes.append(SUPPORTED)
            reasons.append(f"{name}: diminishing returns, knee within ×{fmt(factor)} of B_simple")
        else:
            outcomes.append(INCONCLUSIVE)
    verdict = NOT_SUPPORTED if NOT_SUPPORTED in outcomes else SUPPORTED if outcomes and all(
        o == SUPPORTED for o in outcomes) else INCONCLUSIVE
    return result("C6", verdict, "; ".join(reasons), " | ".join(evidence), text)


def scaling_rule(claim: str, tables: dict, rule: dict) -> dict:
    """C7 and C8: α of log lr* = α·log m + c on the training objective, against the claimed value."""
    optimizer, claimed, other, margin = rule["optimizer"], rule["alpha"], rule["other_alpha"], rule["margin"]
    name = optimizer_label(optimizer)
    text = (f"{name}: α of log lr* = α·log m + c, lr* on the training objective (eval-mode loss over the training "
            f"set, mean of the last {rule['train_checkpoints']} checkpoints, parabola-refined), fitted per seed over "
            f"the batch sizes; {percent(rule['confidence'])} t CI across seeds. Supported when the CI lies within "
            f"{fmt(claimed)} ± {fmt(margin)}; not supported when it lies wholly outside it; inconclusive otherwise "
            f"(so a CI containing both {fmt(claimed)} and {fmt(other)} decides nothing), or when any lr* is "
            f"censored; at least "
            f"{rule['min_batch_sizes']} batch sizes; {seeds_clause(rule)}.")
    table = tables["scaling"]
    rows = table[(table["optimizer"] == optimizer)]
    fit = rows[(rows["objective"] == "train") & (rows["kind"] == "fit")]
    if fit.empty:
        return result(claim, INCONCLUSIVE, f"{name} not in the grid", "", text)
    fit = fit.iloc[0]
    val = rows[(rows["objective"] == "val") & (rows["kind"] == "fit")].iloc[0]
    pairs = rows[(rows["objective"] == "train") & (rows["kind"] == "pair")]
    holds = [f"{int(p.m_low)}–{int(p.m_high)}" for p in pairs.itertuples()
             if p.alpha_low <= claimed <= p.alpha_high and p.censored == 0]
    evidence = (f"α (training objective) = {fmt_ci(fit['alpha'], fit['alpha_low'], fit['alpha_high'], 2)} over "
                f"m = {int(fit['m_low'])}–{int(fit['m_high'])}, {int(fit['n_seeds'])} seeds, {int(fit['censored'])} "
                f"censored lr*; α (validation, "
                f"{rule['metric']}) = {fmt_ci(val['alpha'], val['alpha_low'], val['alpha_high'], 2)}; "
                f"consecutive m whose CI contains {fmt(claimed)}: {', '.join(holds) or 'none'}")
    evidence += trajectory_evidence(tables.get("trajectories"), optimizer)
    few = too_few_seeds(int(fit["n_seeds"]), rule)
    if few:
        return result(claim, INCONCLUSIVE, few + " (the CI comes from the spread across seeds)", evidence, text)
    if fit["n_batch_sizes"] < rule["min_batch_sizes"]:
        return result(claim, INCONCLUSIVE, f"{int(fit['n_batch_sizes'])} batch sizes, the rule needs "
                      f"{rule['min_batch_sizes']}", evidence, text)
    if fit["censored"] > 0:
        return result(claim, INCONCLUSIVE, f"{int(fit['censored'])} censored lr* (m = {fit['censored_m']}, optimum "
                      f"may lie {fit['censored_sides']}er): extend or refine the grid as best_lr.csv says",
                      evidence, text)
    low, high = fit["alpha_low"], fit["alpha_high"]
    band = (claimed - margin, claimed + margin)
    ci = f"the CI [{fmt(low, 2)}, {fmt(high, 2)}]"
    contains = [value for value in (other, claimed) if low <= value <= high]
    note = (f"; it contains both {fmt(other)} and {fmt(claimed)}: it decides neither rule (wide CIs are expected "
            "with few seeds)" if len(contains) == 2 else
            f"; it contains neither {fmt(other)} nor {fmt(claimed)}" if not contains else "")
    if band[0] <= low and high <= band[1]:
        note = "" if claimed in contains else f"; it excludes {fmt(claimed)} itself, by less than the margin"
        return result(claim, SUPPORTED, f"{ci} lies within {fmt(claimed)} ± {fmt(margin)}{note}", evidence, text)
    if high < band[0] or low > band[1]:
        return result(claim, NOT_SUPPORTED, f"{ci} lies outside {fmt(claimed)} ± {fmt(margin)}{note}", evidence, text)
    return result(claim, INCONCLUSIVE, f"{ci} reaches beyond {fmt(claimed)} ± {fmt(margin)}{note}", evidence, text)


def trajectory_evidence(trajectories: pd.DataFrame | None, optimizer: str) -> str:
    """The SDE view: at the best base LR, mean RMS distance (nats) of the batch ×k curves from the base."""
    if trajectories is None or trajectories.empty:
        return ""
    rows = trajectories[(trajectories["optimizer"] == optimizer) & trajectories["base_is_best"]
                        & trajectories["on_grid"]]
    parts = []
    for k, group in rows.groupby("k"):
        by_rule = group.groupby("rule")["distance"]
        if set(by_rule.groups) != {"linear", "sqrt"}:
            continue
        means = {r: float(np.mean(d)) for r, d in by_rule}
        closer = min(means, key=means.get) if np.isfinite(list(means.values())).any() else "neither"
        parts.append(f"×{k}: LR ×k {fmt(means['linear'], 2)}, LR ×√k {fmt(means['sqrt'], 2)} nats "
                     f"({'linear' if closer == 'linear' else '√k' if closer == 'sqrt' else closer} closer)")
    return "; trajectory distance from the base run, batch " + ", ".join(parts) if parts else ""


def c7_linear_rule(tables: dict, rule: dict) -> dict:
    return scaling_rule("C7", tables, rule)


def c8_sqrt_rule(tables: dict, rule: dict) -> dict:
    return scaling_rule("C8", tables, rule)


def c9_lr_extremes(tables: dict, rule: dict) -> dict:
    fraction = rule["min_fraction"]
    text = (f"Relative to each optimizer × batch size's best grid LR: (a) of adjacent LR pairs below it, the share in "
            "which the lower LR needs more steps to the target validation loss (seed median; never reaching it "
            f"counts as more); (b) of cells with LRs above it, the share where at least one of them diverges or "
            f"oscillates (training loss rising more than {percent(rule['oscillation_rise'])} above its running "
            f"minimum) in most seeds. Supported when both shares reach {percent(fraction)}; not supported when a "
            f"measured share falls below it; inconclusive when a half cannot be measured; {seeds_clause(rule)}.")
    table = tables["lr_sensitivity"]
    pairs, slower = int(table["below_pairs"].sum()), int(table["below_slower"].sum())
    above = table[table["above_lrs"] > 0]
    unstable = int((above["above_unstable"] > 0).sum())
    share_low = slower / pairs if pairs else math.nan
    share_high = unstable / len(above) if len(above) else math.nan
    evidence = (f"(a) lower LR slower in {slower} of {pairs} pairs ({percent(share_low)}); (b) unstable above the best "
                f"in {unstable} of {len(above)} cells ({percent(share_high)}), {int(table['above_diverged'].sum())} "
                f"LRs above the best diverging in most seeds; {len(table)} cells, best at the grid's top in "
                f"{int((table['above_lrs'] == 0).sum())}")
    few = too_few_seeds(int(table["n_seeds"].min()) if len(table) else 0, rule)
    if few:
        return result("C9", INCONCLUSIVE, few, evidence, text)
    failed = [what for what, share in (("small LRs are not slower", share_low), ("large LRs stay stable", share_high))
              if np.isfinite(share) and share < fraction]
    if failed:
        return result("C9", NOT_SUPPORTED, "; ".join(failed), evidence, text)
    unmeasured = []
    if not pairs:
        unmeasured.append("no LR below a best one reaches the target (or every best is at the grid's bottom)")
    if not len(above):
        unmeasured.append("every best LR is at the grid's top: extend the grid above")
    if unmeasured:
        return result("C9", INCONCLUSIVE, "; ".join(unmeasured), evidence, text)
    return result("C9", SUPPORTED, "both halves hold", evidence, text)


def c10_early_stopping(tables: dict, rule: dict) -> dict:
    text = (f"At each optimizer × batch size × seed's best grid LR, stop at the checkpoint of minimum validation loss "
            "and compare the test loss there with the test loss at the end of the budget (gain = end − stop). "
            f"A run overfits when its validation loss ends more than {percent(rule['overfit_rise'])} above its "
            f"minimum while its training loss keeps falling. Inconclusive when fewer than {rule['min_overfit_runs']} "
            f"best-LR run(s) overfit; supported when the mean gain's {percent(rule['confidence'])} CI lies above "
            f"{fmt(rule['margin'])} nats, not supported when it lies at or below it; {seeds_clause(rule)}.")
    table = tables["early_stopping"]
    chosen = table[table["at_best_lr"] & (table["status"] == "ok")]
    gain = mean_ci(chosen["test_gain"], rule["confidence"])
    overfit = int(chosen["overfits"].sum())
    evidence = (f"{overfit} of {len(chosen)} best-LR runs overfit ({int(table['overfits'].sum())} of "
                f"{int((table['status'] == 'ok').sum())} runs of the grid); stopping epoch median "
                f"{fmt(chosen['stop_epoch'].median())} of {fmt(chosen['final_epoch'].median())}; test loss saved by "
                f"stopping: {fmt_ci(*gain[:3], digits=2, unit=' nats')}")
    few = too_few_seeds(int(chosen["seed"].nunique()) if len(chosen) else 0, rule)
    if few:
        return result("C10", INCONCLUSIVE, few, evidence, text)
    if overfit < rule["min_overfit_runs"]:
        return result("C10", INCONCLUSIVE, "no best-LR run overfits within the budget: the curves had no stopping "
                      "point to show", evidence, text)
    if gain[1] > rule["margin"]:
        return result("C10", SUPPORTED, "stopping at the validation minimum beats training to the end on test",
                      evidence, text)
    if gain[2] <= rule["margin"]:
        return result("C10", NOT_SUPPORTED, "stopping at the validation minimum does not beat training to the end "
                      "on test", evidence, text)
    return result("C10", INCONCLUSIVE, f"the CI of the test gain contains {fmt(rule['margin'])} nats", evidence, text)


RULES = {"C1": c1_training_lowers_loss, "C2": c2_sgd_sensitive, "C3": c3_adam_default_lrs, "C4": c4_unbiased,
         "C5": c5_variance, "C6": c6_small_batches_gain_most, "C7": c7_linear_rule, "C8": c8_sqrt_rule,
         "C9": c9_lr_extremes, "C10": c10_early_stopping}


def rule_parameters(config: dict, claim: str) -> dict:
    """The parameters a claim's rule sees: the analysis settings, the selection metric, the shared
    minimum number of seeds and the claim's own section of `verdicts`."""
    verdicts = config["verdicts"]
    return {**config["analysis"], "metric": config["selection"]["metric"], "min_seeds": verdicts["min_seeds"],
            **verdicts[claim]}


def evaluate_claims(tables: dict[str, pd.DataFrame], config: dict) -> pd.DataFrame:
    """claims.csv: one row per claim, in order, each computed by its rule from the tables."""
    rows = [RULES[claim](tables, rule_parameters(config, claim)) for claim in CLAIMS]
    return pd.DataFrame(rows, columns=["claim_id", "claim_text", "verdict", "reason", "evidence", "rule", "anchor"])
