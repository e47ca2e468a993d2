"""One rule per tutorial claim (C1–C10): its declared parameters give its text; the analysis tables give its verdict.

Each claim has two functions. `<claim>_rule(p)` writes the rule from its parameters `p` alone (the
config's `verdicts.<claim>` section, the analysis settings, the selection metric and min_seeds), so
the text printed beside a verdict is the rule that was declared, whatever the results. `<claim>(tables,
p)` applies it to the analysis tables and returns the verdict with its reason, evidence, domain of
validity, headline number and a one-sentence finding. Every number here comes from a table of the
analysis stage; a rule only compares those numbers with its parameters and counts.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from optbench.config import optimizer_label
from optbench.format import fmt, fmt_ci, listing, percent

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
# Beyond the tutorial: the literature its rules of thumb come from (the rule texts cite paper and equation).
CLAIMS.update({
    "L1": "The gradient noise scale predicts the critical batch size (McCandlish et al. 2018).",
    "L2": "The linear scaling rule is the small-batch limit of a saturating law ε_max/(1 + B_noise/B) "
          "(McCandlish et al. 2018; Shallue et al. 2018).",
    "L3": "Momentum extends perfect scaling and Adam's critical batch size is larger still "
          "(Shallue et al. 2018; Zhang et al. 2019).",
    "L4": "Scaling β1, β2 and ε with the batch size as well as lr ×√k keeps Adam's trajectory closer to the base "
          "run than lr ×√k alone (Malladi et al. 2022).",
    "L5": "Adam's best learning rate stops growing near B_noise and falls beyond it (Li et al. 2024, the surge).",
})
# Where the report draws each claim's evidence (ids of the page's sections and figures).
ANCHORS = {"C1": "fig-curves", "C2": "fig-lr_sensitivity", "C3": "fig-lr_sensitivity", "C4": "gradient-noise",
           "C5": "fig-gradvar", "C6": "steps-to-target", "C7": "scaling", "C8": "scaling",
           "C9": "fig-trajectories", "C10": "fig-early_stopping", "L1": "fig-critical_batch",
           "L2": "fig-lr_forms", "L3": "critical-batch", "L4": "critical-batch", "L5": "fig-lr_forms"}
SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE)
NO_PROBES = "no gradient-variance probes (grad_variance.probes is empty): add probe runs to measure it"
COLUMNS = ["claim_id", "claim_text", "verdict", "domain", "headline", "finding", "reason", "evidence", "rule",
           "anchor"]


def result(claim: str, verdict: str, reason: str, evidence: str, rule: str, domain: str = "",
           headline: str = "", finding: str = "") -> dict:
    assert verdict in VERDICTS, verdict
    if not finding:  # an undecided claim's sentence says why, in the rule's own words
        finding = f"Not decided by this grid — {reason}" + (f" ({headline})." if headline else ".")
    return {"claim_id": claim, "claim_text": CLAIMS[claim], "verdict": verdict, "domain": domain,
            "headline": headline, "finding": finding, "reason": reason,
            "evidence": evidence, "rule": rule, "anchor": ANCHORS[claim]}


def name(optimizer: str) -> str:
    return optimizer_label(optimizer)


def cell(optimizer: str, batch_size) -> str:
    return f"{name(optimizer)} B={int(batch_size)}"


def ci(p: dict) -> str:
    return f"{percent(p['confidence'])} CI"


def seeds_needed(p: dict) -> str:
    return f"at least {p['min_seeds']} seeds (the CI comes from the spread across seeds), else inconclusive"


def few_seeds(grid_seeds: int, p: dict, what: str = "the grid") -> str | None:
    """The honest reason when the grid has fewer seeds than the rule needs (counted as the grid has them)."""
    if grid_seeds < p["min_seeds"]:
        return f"{what} has {grid_seeds} seed(s); the rule needs at least {p['min_seeds']}"
    return None


def cells_of(table: pd.DataFrame, optimizer: str) -> pd.DataFrame:
    return table[table["optimizer"] == optimizer]


# ---------------------------------------------------------------------------------------------
# C1

def c1_rule(p: dict) -> str:
    return (f"At each optimizer × batch size's best grid LR ({p['metric']}, seed mean), per seed: the relative drop "
            f"1 − L_end/L_0 of the training loss (eval mode, whole training set; L_end the mean of the last "
            f"{p['train_checkpoints']} checkpoints, L_0 at initialisation) and the drop over the budget's second half "
            f"1 − L_end/L_mid (L_mid at the last checkpoint of the first half); {ci(p)} over seeds, a t interval on "
            "the log loss ratio mapped back (so it never passes 100 %). Supported when in every cell the first CI "
            f"lies above {percent(p['min_drop'])} and the second does not lie below −{percent(p['max_rise'])}; not "
            f"supported when in some cell the first CI lies below {percent(p['min_drop'])}, or the second lies below "
            f"−{percent(p['max_rise'])} (the loop raised the loss by more than that over the second half); otherwise "
            "inconclusive, as for a cell where every LR diverged (named). "
            "Smallest effect it can reject: a drop whose CI lies "
            f"wholly below {percent(p['min_drop'])}. Domain: the LRs at which every seed's drop reaches "
            f"{percent(p['min_drop'])} at every batch size; {seeds_needed(p)}.")


def c1(tables: dict, p: dict) -> dict:
    rule = c1_rule(p)
    drops, scores = tables["training_drop"], tables["lr_scores"]
    evidence_cells, below, open_cells, untrained = [], [], [], []
    for row in drops.itertuples():
        label = cell(row.optimizer, row.batch_size)
        if not np.isfinite(row.lr):
            untrained.append(label)
            continue
        evidence_cells.append((row.drop, label, row))
        if row.drop_high < p["min_drop"] or row.late_drop_high < -p["max_rise"]:
            below.append(label)
        elif not row.drop_low > p["min_drop"]:
            open_cells.append(label)
    domain = c1_domain(scores, p["min_drop"])
    lowered = int((scores["train_drop"] > 0).sum())
    evidence = f"{lowered} of {len(scores)} runs of the grid end below their initial training loss"
    if untrained:
        evidence = f"no LR trained without diverging at {', '.join(untrained)}; " + evidence
    if not evidence_cells:
        return result("C1", INCONCLUSIVE, "no cell has a learning rate that trained in every seed: "
                      f"{', '.join(untrained)}", evidence, rule, domain)
    worst = min(evidence_cells, key=lambda c: c[0])[2]
    headline = (f"lowest drop {fmt_ci(worst.drop, worst.drop_low, worst.drop_high, scale=100, unit=' %')} "
                f"({cell(worst.optimizer, worst.batch_size)})")
    latest = min(evidence_cells, key=lambda c: c[2].late_drop)[2]
    evidence = (f"drop at the best LR: lowest cell {cell(worst.optimizer, worst.batch_size)} "
                f"{fmt_ci(worst.drop, worst.drop_low, worst.drop_high, scale=100, unit=' %')}, cell estimates "
                f"{percent(min(c[0] for c in evidence_cells))}–{percent(max(c[0] for c in evidence_cells))} over "
                f"{len(evidence_cells)} cells; second-half drop lowest at {cell(latest.optimizer, latest.batch_size)} "
                f"{fmt_ci(latest.late_drop, latest.late_drop_low, latest.late_drop_high, scale=100, unit=' %')}; "
                + evidence)
    few = few_seeds(int(drops["grid_seeds"].min()), p)
    if few:
        return result("C1", INCONCLUSIVE, few, evidence, rule, domain, headline)
    if below:
        return result("C1", NOT_SUPPORTED, "a CI lies below its bar at " + ", ".join(below), evidence, rule, domain,
                      headline, f"Training did not lower the training loss enough at {', '.join(below)} ({headline}).")
    reasons = []
    if open_cells:
        reasons.append("a CI contains its bar at " + ", ".join(open_cells))
    if untrained:
        reasons.append("no LR trained in every seed at " + ", ".join(untrained))
    if reasons:
        return result("C1", INCONCLUSIVE, "; ".join(reasons), evidence, rule, domain, headline)
    return result("C1", SUPPORTED, f"every cell's drop CI lies above {percent(p['min_drop'])} and no second-half "
                  f"drop CI lies below −{percent(p['max_rise'])}", evidence, rule, domain, headline,
                  f"Training with the loop lowered the training loss in every cell ({headline}).")


def c1_domain(scores: pd.DataFrame, min_drop: float) -> str:
    parts = []
    for optimizer, frame in scores.groupby("optimizer", sort=False):
        holds = frame.groupby(["lr", "batch_size"])["train_drop"].min().ge(min_drop).groupby(level="lr").all()
        lrs = holds[holds].index
        span = fmt(lrs.min()) if len(lrs) == 1 else f"{fmt(lrs.min())}–{fmt(lrs.max())}" if len(lrs) else ""
        parts.append(f"{name(optimizer)}: " + (f"lr {span} ({len(lrs)} of {len(holds)} grid LRs)" if len(lrs)
                                              else "no LR"))
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# C2

def c2_rule(p: dict) -> str:
    sensitive, robust = (name(o) for o in p["optimizers"])
    return (f"Per batch size: (a) {robust} − {sensitive} width (decades) of the LR range whose {p['metric']} stays "
            f"within {percent(p['tolerance'])} of the best, paired by seed, {ci(p)}; (b) the smallest LR above "
            f"{sensitive}'s best grid LR at which most seeds fail to converge (diverge, or never go below the "
            f"initial loss). A batch size counts for the claim when (a)'s CI lies above {fmt(p['margin_decades'])} "
            f"decades ({sensitive}'s width not cut by the grid's edge) and (b) lies within ×{fmt(p['nonconverging_factor'])} "
            f"of the best; against it when (a)'s CI lies below {fmt(p['margin_decades'])} decades ({robust}'s "
            f"width not cut by the grid's edge), or {sensitive} converges at every grid LR up to "
            f"×{fmt(p['nonconverging_factor'])} above its best. Supported when more than "
            f"{percent(p['min_fraction'])} of batch sizes count for it, not supported when more than "
            f"{percent(p['min_fraction'])} count against it, else inconclusive. Smallest effect it resolves: a "
            f"width difference of {fmt(p['margin_decades'])} decades; {seeds_needed(p)}.")


def c2(tables: dict, p: dict) -> dict:
    rule = c2_rule(p)
    sensitive, robust = p["optimizers"]
    sensitivity, contrasts = tables["lr_sensitivity"], tables["lr_width_contrasts"]
    missing = [o for o in (sensitive, robust) if o not in set(sensitivity["optimizer"])]
    if missing:
        return result("C2", INCONCLUSIVE, f"{' and '.join(name(o) for o in missing)} not in the grid", "", rule)
    pair = contrasts[(contrasts["first"] == sensitive) & (contrasts["second"] == robust)]
    sign = 1.0
    if pair.empty:  # the config lists the robust optimizer first: the same contrast, mirrored
        pair = contrasts[(contrasts["first"] == robust) & (contrasts["second"] == sensitive)]
        sign = -1.0
    mine = cells_of(sensitivity, sensitive).set_index("batch_size")
    factor, margin = p["nonconverging_factor"], p["margin_decades"]
    decided, parts = {"for": [], "against": [], "open": []}, []
    for row in pair.itertuples():
        b = int(row.batch_size)
        low, high = sorted((sign * row.difference_low, sign * row.difference_high))
        sensitive_cut, robust_cut = (row.first_censored, row.second_censored)[::int(sign)]
        width = ("for" if low > margin and not sensitive_cut else
                 "against" if high < margin and not robust_cut else "open")
        here = mine.loc[b] if b in mine.index else None
        if here is None or not np.isfinite(here["best_lr"]):
            failure, failure_text = "open", "no best LR"
        elif np.isfinite(here["nonconverging_factor"]):
            failure = "for" if here["nonconverging_factor"] <= factor * (1 + 1e-9) else "against"
            failure_text = f"fails ×{fmt(here['nonconverging_factor'], 2)} above its best"
        elif here["grid_factor_above"] >= factor * (1 - 1e-9):
            failure, failure_text = "against", f"converges up to ×{fmt(here['grid_factor_above'], 2)} above its best"
        else:
            failure, failure_text = "open", f"grid ends ×{fmt(here['grid_factor_above'], 2)} above its best"
        verdict = ("for" if width == "for" and failure == "for" else
                   "against" if "against" in (width, failure) else "open")
        decided[verdict].append(b)
        parts.append(f"B={b}: {fmt_ci(sign * row.difference, low, high, 2)} decades"
                     + (f" ({name(sensitive)} cut)" if sensitive_cut else "")
                     + (f" ({name(robust)} cut)" if robust_cut else "") + f", {name(sensitive)} {failure_text}")
    widths = sensitivity.groupby("optimizer")["width"].mean()
    runs = {o: (int(cells_of(sensitivity, o)["diverged_runs"].sum()), int(cells_of(sensitivity, o)["runs"].sum()))
            for o in (sensitive, robust)}
    evidence = (f"mean width {name(sensitive)} {fmt(widths.get(sensitive), 2)} decades, {name(robust)} "
                f"{fmt(widths.get(robust), 2)}; {name(robust)} − {name(sensitive)} per batch size: {'; '.join(parts)}; "
                f"runs not converging: {name(sensitive)} {runs[sensitive][0]} of {runs[sensitive][1]}, "
                f"{name(robust)} {runs[robust][0]} of {runs[robust][1]}")
    domain = (f"counts for the claim at B = {decided['for'] or 'none'}; against at B = {decided['against'] or 'none'}; "
              f"undecided at B = {decided['open'] or 'none'}")
    failing = int((mine["nonconverging_factor"] <= factor * (1 + 1e-9)).sum())
    headline = (f"{name(robust)} − {name(sensitive)} width {fmt(sign * pair['difference'].mean(), 2)} decades on "
                f"average; {name(sensitive)} fails within ×{fmt(factor)} of its best at {failing} of {len(mine)} "
                "batch sizes") if len(pair) else ""
    few = few_seeds(int(sensitivity["n_seeds"].min()), p)
    if few:
        return result("C2", INCONCLUSIVE, few, evidence, rule, domain, headline)
    total = len(parts)
    if not total:
        return result("C2", INCONCLUSIVE, f"no batch size has both {name(sensitive)} and {name(robust)}", evidence,
                      rule, domain)
    if len(decided["against"]) > p["min_fraction"] * total:
        return result("C2", NOT_SUPPORTED, f"against the claim at B = {decided['against']} (of {total} batch sizes)",
                      evidence, rule, domain, headline,
                      f"{name(sensitive)} was not clearly more sensitive to the learning rate than {name(robust)} "
                      f"(against at B = {decided['against']}).")
    if len(decided["for"]) > p["min_fraction"] * total:
        return result("C2", SUPPORTED, f"for the claim at B = {decided['for']} (of {total} batch sizes)", evidence,
                      rule, domain, headline,
                      f"{name(sensitive)}'s good learning-rate range was narrower than {name(robust)}'s and it failed "
                      f"to converge just above its best learning rate (at B = {decided['for']}).")
    return result("C2", INCONCLUSIVE, f"too few batch sizes decide (for: {decided['for']}, against: "
                  f"{decided['against']}, undecided: {decided['open']})", evidence, rule, domain, headline)


# ---------------------------------------------------------------------------------------------
# C3

def c3_rule(p: dict) -> str:
    lrs = listing(sorted(p["lrs"]))
    return (f"A learning rate works well in a batch size × seed cell when its {p['metric']} is within "
            f"{percent(p['tolerance'])} of the best on the grid there. Supported when at least one of {lrs} works "
            f"well in at least {percent(p['often'])} of {name(p['optimizer'])}'s cells whose optimum is not censored "
            f"by the grid's edge; not supported when fewer than {percent(p['often'])} of all cells have one that "
            "works well; otherwise inconclusive. The domain names which of the learning rates carries the verdict "
            f"and in how many cells each works; needs {lrs} in the grid; {seeds_needed(p)}.")


def c3(tables: dict, p: dict) -> dict:
    rule = c3_rule(p)
    optimizer, lrs = p["optimizer"], sorted(p["lrs"])
    scores = cells_of(tables["lr_scores"], optimizer)
    grid = np.sort(scores["lr"].unique())
    absent = [lr for lr in lrs if not np.isclose(grid, lr, rtol=1e-6, atol=0).any()]
    if absent:
        return result("C3", INCONCLUSIVE, f"{name(optimizer)}'s grid lacks {listing(absent)} (the rule needs "
                      f"{listing(lrs)})", "", rule)
    censored = tables["best_lr"].set_index(["optimizer", "batch_size", "seed"])["censored"]
    works = {lr: 0 for lr in lrs}
    either = certain = cells = 0
    for (batch_size, seed), group in scores.groupby(["batch_size", "seed"]):
        good = [bool(group.loc[np.isclose(group["lr"], lr, rtol=1e-6, atol=0), "near_best"].any()) for lr in lrs]
        for lr, ok in zip(lrs, good):
            works[lr] += ok
        cells += 1
        either += any(good)
        certain += any(good) and not bool(censored.get((optimizer, batch_size, seed), True))
    carried = [lr for lr in lrs if works[lr] >= p["often"] * cells]
    domain = "; ".join(f"{fmt(lr)} works well in {works[lr]} of {cells} cells" for lr in lrs)
    domain += f"; carried by {listing(carried)}" if carried else "; carried by neither alone"
    best_lrs = cells_of(tables["best_lr"], optimizer)["grid_lr"]
    evidence = (f"either works well in {either} of {cells} cells ({certain} with an uncensored optimum); best grid "
                f"LRs {fmt(best_lrs.min())}–{fmt(best_lrs.max())}")
    headline = "; ".join(f"{fmt(lr)}: {works[lr]} of {cells}" for lr in lrs)
    few = few_seeds(int(scores["seed"].nunique()), p)
    if few:
        return result("C3", INCONCLUSIVE, few, evidence, rule, domain, headline)
    if either < p["often"] * cells:
        return result("C3", NOT_SUPPORTED, f"one of {listing(lrs)} works well in only {either} of {cells} cells",
                      evidence, rule, domain, headline,
                      f"Neither {listing(lrs)} often worked well for {name(optimizer)} ({headline} cells).")
    if certain >= p["often"] * cells:
        idle = [lr for lr in lrs if lr not in carried]
        note = f"; {listing(idle)} alone would not" if idle else ""
        return result("C3", SUPPORTED, f"one of {listing(lrs)} works well in {certain} of {cells} cells{note}",
                      evidence, rule, domain, headline,
                      f"For {name(optimizer)}, {listing(carried) or listing(lrs)} often worked well"
                      + (f"; {listing(idle)} did not" if idle else "") + f" ({headline} cells).")
    return result("C3", INCONCLUSIVE, f"censored optima: only {certain} of {cells} cells are certain (extend the "
                  "grid where best_lr.csv says)", evidence, rule, domain, headline)


# ---------------------------------------------------------------------------------------------
# C4 and C5: from the gradient probes (their CI comes from draws and checkpoints, not seeds)

def probe_source(p: dict) -> str:
    runs = [f"{name(r['optimizer'])} B={r['batch_size']} lr {fmt(r['lr'])} seed {r['seed']}" for r in p["probes"]]
    return (f"The CI comes from the mini-batch draws (K = {p['draws']} per m) and the probed checkpoints of the probe "
            f"runs ({'; '.join(runs) or 'none'}): it speaks for those runs' trajectories, not for other seeds, so "
            "min_seeds does not apply.")


def c4_rule(p: dict) -> str:
    h = p["max_halfwidth"]
    return ("z = ‖ḡ − ∇f‖²·mK/(σ²(n−m)/(n−1)) has expectation 1 when E g_B = ∇f; a bias b raises it by "
            "K·‖b‖²/E‖g_B − ∇f‖². Per probed m, the mean z over the probed checkpoints has a t CI at the family-wise "
            f"level 1 − (1 − {percent(p['confidence'])})/M (Bonferroni over the M values of m). Supported when every "
            f"CI contains 1 and reaches at most ±{fmt(h)} from its mean (precision floor: it detects a bias whose "
            f"norm is {percent(math.sqrt(h / p['draws']))} of one mini-batch's RMS error at K = {p['draws']}); not "
            "supported when some CI excludes 1; otherwise inconclusive (too imprecise), as with fewer than "
            f"{p['min_checkpoints']} probed checkpoints (a t interval's spread from fewer is too unreliable to "
            f"reject by). {probe_source(p)}")


def pooled(tables: dict, quantity: str) -> pd.DataFrame:
    table = tables.get("noise_pooled")
    if table is None:
        return pd.DataFrame()
    return table[table["quantity"] == quantity].sort_values("m")


def probed_checkpoints(tables: dict) -> int:
    slopes = tables.get("gradvar_slopes")
    return 0 if slopes is None else len(slopes)


def c4(tables: dict, p: dict) -> dict:
    rule = c4_rule(p)
    if "noise_pooled" not in tables:
        return result("C4", INCONCLUSIVE, NO_PROBES, "", rule)
    z = pooled(tables, "z")
    checkpoints = probed_checkpoints(tables)
    if checkpoints < p["min_checkpoints"] or z.empty:
        return result("C4", INCONCLUSIVE, f"{checkpoints} probed checkpoint(s), the rule needs at least "
                      f"{p['min_checkpoints']} (grad_variance.probes, grad_variance.checkpoints)", "", rule)
    half = np.maximum(z["mean"] - z["ci_low"], z["ci_high"] - z["mean"])
    missed = z.loc[(z["ci_low"] > 1) | (z["ci_high"] < 1), "m"].astype(int).tolist()
    loose = z.loc[~(half <= p["max_halfwidth"]), "m"].astype(int).tolist()
    low, high = z.loc[z["mean"].idxmin()], z.loc[z["mean"].idxmax()]
    evidence = (f"mean z per m over {checkpoints} probed checkpoints (expect 1), family-wise "
                f"{percent(z['confidence'].iloc[0])} CIs: from {fmt_ci(low['mean'], low['ci_low'], low['ci_high'])} "
                f"at m = {int(low['m'])} to {fmt_ci(high['mean'], high['ci_low'], high['ci_high'])} at m = "
                f"{int(high['m'])}; widest half-width {fmt(half.max())} at m = {int(z.loc[half.idxmax(), 'm'])}")
    domain = f"m = {int(z['m'].min())}–{int(z['m'].max())} ({len(z)} sizes), the probe runs' checkpoints"
    headline = f"mean z {fmt(low['mean'])}–{fmt(high['mean'])} over {len(z)} m (expect 1)"
    if missed:
        return result("C4", NOT_SUPPORTED, f"the CI excludes 1 at m = {missed}", evidence, rule, domain, headline,
                      f"The mini-batch gradient looked biased at m = {missed} ({headline}).")
    if loose:
        return result("C4", INCONCLUSIVE, f"every CI contains 1, but at m = {loose} it is wider than "
                      f"±{fmt(p['max_halfwidth'])}: too imprecise to rule out a bias (probe more checkpoints or "
                      "draws)", evidence, rule, domain, headline)
    return result("C4", SUPPORTED, f"every CI contains 1 and lies within ±{fmt(p['max_halfwidth'])} of its mean at "
                  f"all {len(z)} m", evidence, rule, domain, headline,
                  f"The mini-batch gradient was unbiased at every batch size probed ({headline}).")


def c5_rule(p: dict) -> str:
    tol = percent(p["tolerance"])
    return ("The tutorial's literal σ²/m: per probed m, the mean over the probed checkpoints of measured "
            f"E‖g_B − ∇f‖² ÷ σ²/m, with a t CI at the family-wise level 1 − (1 − {percent(p['confidence'])})/M "
            f"(Bonferroni over the M values of m). σ²/m holds at m when its CI lies within 1 ± {tol}, breaks when "
            f"it lies wholly outside, and is undecided otherwise. Supported when it holds at every probed m ≤ "
            f"{p['claim_m']} (the tutorial's examples reach m = {p['claim_m']}); not supported when it breaks at one "
            f"of them; otherwise inconclusive, as with fewer than {p['min_checkpoints']} probed checkpoints. "
            "Smallest deviation it resolves: "
            f"{tol}. Domain: the largest m up to which it holds at every probed m, and where it breaks; beside it the "
            f"exact without-replacement form σ²/m·(n−m)/(n−1), judged the same way over every probed m. "
            f"{probe_source(p)}")


def band_status(table: pd.DataFrame, tolerance: float) -> pd.Series:
    """holds / breaks / open per m: the pooled CI inside 1 ± tolerance, wholly outside it, or neither."""
    inside = (table["ci_low"] >= 1 - tolerance) & (table["ci_high"] <= 1 + tolerance)
    outside = (table["ci_low"] > 1 + tolerance) | (table["ci_high"] < 1 - tolerance)
    return pd.Series(np.where(inside, "holds", np.where(outside, "breaks", "open")), index=table["m"].astype(int))


def holds_up_to(status: pd.Series) -> int | None:
    """The largest m up to which every probed m holds (None if the smallest does not)."""
    largest = None
    for m, state in status.items():
        if state != "holds":
            break
        largest = m
    return largest


def c5(tables: dict, p: dict) -> dict:
    rule = c5_rule(p)
    if "noise_pooled" not in tables:
        return result("C5", INCONCLUSIVE, NO_PROBES, "", rule)
    literal, exact = pooled(tables, "ratio_iid"), pooled(tables, "ratio_fpc")
    checkpoints = probed_checkpoints(tables)
    if checkpoints < p["min_checkpoints"] or literal.empty:
        return result("C5", INCONCLUSIVE, f"{checkpoints} probed checkpoint(s), the rule needs at least "
                      f"{p['min_checkpoints']} (grad_variance.probes, grad_variance.checkpoints)", "", rule)
    tol = p["tolerance"]
    literal_status, exact_status = band_status(literal, tol), band_status(exact, tol)
    claimed = literal_status[literal_status.index <= p["claim_m"]]
    upto = holds_up_to(literal_status)
    breaks = literal_status[literal_status == "breaks"]
    exact_bad = exact_status[exact_status != "holds"]
    domain = (f"σ²/m within ±{percent(tol)} for m ≤ {upto}" if upto is not None else
              f"σ²/m not within ±{percent(tol)} even at m = {int(literal_status.index[0])}")
    if len(breaks):
        at = literal.set_index("m").loc[breaks.index[0]]
        domain += f"; breaks from m = {breaks.index[0]} (ratio {fmt_ci(at['mean'], at['ci_low'], at['ci_high'])})"
    domain += ("; exact σ²/m·(n−m)/(n−1) within ±" + percent(tol) + (
        f" at all {len(exact_status)} probed m" if exact_bad.empty else
        f" except at m = {list(exact_bad.index)} ({', '.join(sorted(set(exact_bad)))})"))
    parts = []
    for m in (2, 100):
        if m in literal_status.index:
            row = literal.set_index("m").loc[m]
            parts.append(f"measured ÷ σ²/m at m = {m}: {fmt_ci(row['mean'], row['ci_low'], row['ci_high'])}")
    halving = pooled(tables, "halving")
    if len(halving) and np.isfinite(halving["mean"].iloc[0]):
        h = halving.iloc[0]
        parts.append(f"E‖e‖² at m = 2 ÷ at m = 1: {fmt_ci(h['mean'], h['ci_low'], h['ci_high'])} over "
                     f"{int(h['checkpoints'])} checkpoints (tutorial: 0.5)")
    slopes = tables.get("gradvar_slopes")
    if slopes is not None and len(slopes) and np.isfinite(slopes["slope"]).any():
        parts.append(f"log-log slope over m ≤ n/20: mean {fmt(slopes['slope'].mean())} (σ²/m: −1, exact: "
                     f"{fmt(slopes['slope_pred_fpc'].median())})")
    evidence = "; ".join(parts) + f"; {checkpoints} probed checkpoints"
    headline = domain.split("; ")[0]
    if len(claimed) and (claimed == "breaks").any():
        at = list(claimed[claimed == "breaks"].index)
        return result("C5", NOT_SUPPORTED, f"σ²/m breaks at m = {at} (≤ {p['claim_m']})", evidence, rule, domain,
                      headline, f"The error variance was not σ²/m at m = {at} ({domain.split(';')[0]}).")
    if len(claimed) and (claimed == "holds").all():
        return result("C5", SUPPORTED, f"σ²/m holds within ±{percent(tol)} at every probed m ≤ {p['claim_m']}",
                      evidence, rule, domain, headline,
                      f"The error variance followed σ²/m within ±{percent(tol)} up to m = {upto}"
                      + (f" and broke from m = {breaks.index[0]}" if len(breaks) else "") + ".")
    return result("C5", INCONCLUSIVE, "at m = " + str(list(claimed[claimed != "holds"].index) if len(claimed) else
                  "none") + f" ≤ {p['claim_m']} the CI straddles 1 ± {percent(tol)} (or no m ≤ {p['claim_m']} was "
                  "probed)", evidence, rule, domain, headline)


# ---------------------------------------------------------------------------------------------
# C6

def c6_rule(p: dict) -> str:
    return ("Steps to the target validation loss at each batch size's fastest LR, per seed. The scaling efficiency "
            "of a batch-size step is log(steps saved) ÷ log(batch growth): 1 = perfect, 0 = no gain. Per optimizer "
            f"in [{', '.join(name(o) for o in p['optimizers'])}]: supported when the first step's efficiency exceeds "
            f"the last step's by more than {fmt(p['min_gap'])} ({ci(p)} over seeds of the per-seed difference lies "
            f"above {fmt(p['min_gap'])}); not supported when that CI lies below {fmt(p['min_gap'])}; otherwise "
            "inconclusive; every batch size must reach the target; "
            f"at least {p['min_batch_sizes']} batch sizes; {seeds_needed(p)}. The claim holds overall when it holds "
            "for every listed optimizer and fails when it fails for one. Smallest effect it resolves: an efficiency "
            f"drop of {fmt(p['min_gap'])}. Domain: where gains fall off, with the knee B_crit of "
            "S = S_min(1 + B_crit/B) and B_simple near the target.")


def c6(tables: dict, p: dict) -> dict:
    rule = c6_rule(p)
    scaling = tables["batch_scaling"].set_index("optimizer")
    steps = tables["steps_to_target"]
    outcomes, reasons, evidence, domains, headlines = [], [], [], [], []
    for optimizer in p["optimizers"]:
        label = name(optimizer)
        if optimizer not in scaling.index:
            outcomes.append(INCONCLUSIVE)
            reasons.append(f"{label} not in the grid")
            continue
        row, mine = scaling.loc[optimizer], cells_of(steps, optimizer)
        evidence.append(f"{label}: steps to {fmt(row['target_loss'])} nats " + ", ".join(
            f"B={r.batch_size}: {fmt(r.steps)}" for r in mine.itertuples())
            + f"; efficiency {fmt(row['efficiency_first'], 2)} (first step) vs {fmt(row['efficiency_last'], 2)} "
            f"(last), difference {fmt_ci(row['efficiency_gap'], row['efficiency_gap_low'], row['efficiency_gap_high'], 2)}")
        knee = (f"knee B_crit {fmt_ci(row['knee'], row['knee_low'], row['knee_high'])} samples"
                if row["knee_seeds"] else "knee not fitted (it needs 3 batch sizes reached)")
        domains.append(f"{label}: {knee}" + (f", B_simple {fmt(row['b_simple'])}" if np.isfinite(row["b_simple"])
                                               else ""))
        headlines.append(f"{label} efficiency {fmt(row['efficiency_first'], 2)} → {fmt(row['efficiency_last'], 2)}")
        if row["batch_sizes"] < p["min_batch_sizes"]:
            outcomes.append(INCONCLUSIVE)
            reasons.append(f"{label}: {int(row['batch_sizes'])} batch sizes, the rule needs {p['min_batch_sizes']}")
            continue
        if row["batch_sizes_reached"] < row["batch_sizes"]:
            missed = mine.loc[~mine["reached"].astype(bool), "batch_size"].tolist()
            outcomes.append(INCONCLUSIVE)
            reasons.append(f"{label}: the target is not reached at B = {missed}")
            continue
        few = few_seeds(int(row["n_seeds"]), p, f"{label}'s grid")
        if few:
            outcomes.append(INCONCLUSIVE)
            reasons.append(few)
            continue
        if row["efficiency_gap_low"] > p["min_gap"]:
            outcomes.append(SUPPORTED)
            reasons.append(f"{label}: the efficiency falls by more than {fmt(p['min_gap'])}")
        elif row["efficiency_gap_high"] < p["min_gap"]:
            outcomes.append(NOT_SUPPORTED)
            reasons.append(f"{label}: the efficiency falls by less than {fmt(p['min_gap'])} (CI below it)")
        else:
            outcomes.append(INCONCLUSIVE)
            reasons.append(f"{label}: the efficiency difference's CI contains {fmt(p['min_gap'])}")
    verdict = (NOT_SUPPORTED if NOT_SUPPORTED in outcomes else
               SUPPORTED if outcomes and all(o == SUPPORTED for o in outcomes) else INCONCLUSIVE)
    finding = {SUPPORTED: "The biggest gains in steps came from growing small batch sizes",
               NOT_SUPPORTED: "Growing small batch sizes did not gain clearly more than growing large ones"}.get(verdict)
    return result("C6", verdict, "; ".join(reasons), " | ".join(evidence), rule, "; ".join(domains),
                  "; ".join(headlines), f"{finding} ({'; '.join(headlines)})." if finding else "")


# ---------------------------------------------------------------------------------------------
# C7 and C8: the scaling rules

def scaling_rule_text(p: dict) -> str:
    label, alpha, other, margin = name(p["optimizer"]), fmt(p["alpha"]), fmt(p["other_alpha"]), fmt(p["margin"])
    return (f"{label}: α of log lr* = α·log m + c, lr* on the training objective (eval-mode loss over the training "
            f"set, mean of the last {p['train_checkpoints']} checkpoints, parabola-refined), fitted per seed over the "
            f"batch sizes; {ci(p)} across seeds. Supported when the CI contains {alpha} and lies within {alpha} ± "
            f"{margin} (precision floor: it tells {alpha} from {alpha} ± {margin}); not supported when the CI excludes "
            f"{alpha} (the reason says whether it still lies within ± {margin}, a ballpark); inconclusive when it "
            f"contains {alpha} but reaches beyond ± {margin} (a CI containing both {alpha} and {other} decides "
            f"neither), or when an lr* is censored by the grid; at least {p['min_batch_sizes']} batch sizes; "
            f"{seeds_needed(p)}. The exponent decides; the trajectory comparison (training-loss curves at batch ×k "
            "under LR ×k and LR ×√k, trajectory_summary.csv) is weighed beside it, and where it favours the other "
            "rule the reason says so with both numbers. Domain: the consecutive batch-size pairs whose α CI contains "
            f"{alpha}, from the smallest batch size to the first pair that excludes it (the breakpoint, with its CI), "
            "beside the critical batch size B_crit measured from steps to target.")


def scaling_domain(pairs: pd.DataFrame, alpha: float, knee_text: str) -> tuple[str, int | None]:
    """Where the rule holds (pairs whose CI contains alpha, from the smallest batch size on) and where it breaks."""
    holds_to, stop = None, None
    for row in pairs.sort_values("m_low").itertuples():
        if row.censored == 0 and row.alpha_low <= alpha <= row.alpha_high:
            holds_to = int(row.m_high)
            continue
        stop = row
        break
    first = int(pairs["m_low"].min()) if len(pairs) else None
    text = (f"holds from m = {first} to {holds_to}" if holds_to is not None else
            f"not shown even from m = {first}" if first is not None else "no batch-size pair")
    if stop is not None:
        span = f"m = {int(stop.m_low)}→{int(stop.m_high)}"
        text += (f"; undecided at {span} (censored lr* at m = {stop.censored_m})" if stop.censored else
                 f"; breaks at {span} (α = {fmt_ci(stop.alpha, stop.alpha_low, stop.alpha_high, 2)})")
    elif holds_to is not None:
        text += " (every pair)"
    return text + knee_text, holds_to


def trajectory_weight(summary: pd.DataFrame | None, optimizer: str) -> tuple[list[str], str | None]:
    """(one text per k, the rule the trajectories favour at every k or None) from trajectory_summary.csv."""
    if summary is None or summary.empty:
        return [], None
    parts, favoured = [], []
    for row in cells_of(summary, optimizer).itertuples():
        if not row.pairs:
            continue
        parts.append(f"batch ×{row.k}: LR ×k closer in {row.linear_closer} of {row.pairs} pairs, LR ×√k in "
                     f"{row.sqrt_closer} (median distance {fmt(row.median_linear, 2)} vs {fmt(row.median_sqrt, 2)} "
                     "nats)")
        favoured.append(row.closer)
    return parts, favoured[0] if favoured and len(set(favoured)) == 1 and favoured[0] != "neither" else None


def scaling_claim(claim: str, tables: dict, p: dict) -> dict:
    rule = scaling_rule_text(p)
    optimizer, alpha, margin = p["optimizer"], p["alpha"], p["margin"]
    label = name(optimizer)
    claimed_rule = "linear" if alpha == 1 else "sqrt" if alpha == 0.5 else None
    rows = cells_of(tables["scaling"], optimizer)
    fit = rows[(rows["objective"] == "train") & (rows["kind"] == "fit")]
    if fit.empty:
        return result(claim, INCONCLUSIVE, f"{label} not in the grid", "", rule)
    fit = fit.iloc[0]
    val = rows[(rows["objective"] == "val") & (rows["kind"] == "fit")].iloc[0]
    pairs = rows[(rows["objective"] == "train") & (rows["kind"] == "pair")]
    knee = tables["batch_scaling"].set_index("optimizer")
    knee_text = (f"; measured B_crit (steps to target) {fmt_ci(*knee.loc[optimizer, ['knee', 'knee_low', 'knee_high']])}"
                 if optimizer in knee.index and knee.loc[optimizer, "knee_seeds"] else "")
    domain, _ = scaling_domain(pairs, alpha, knee_text)
    traj_parts, favoured = trajectory_weight(tables.get("trajectory_summary"), optimizer)
    traj_text = "; trajectories: " + "; ".join(traj_parts) if traj_parts else ""
    alpha_text = fmt_ci(fit["alpha"], fit["alpha_low"], fit["alpha_high"], 2)
    span = f"{int(fit['m_low'])} and {int(fit['m_high'])}"
    headline = f"α = {alpha_text} over B = {int(fit['m_low'])}–{int(fit['m_high'])}"
    evidence = (f"α (training objective) = {alpha_text} over m = {int(fit['m_low'])}–{int(fit['m_high'])}, "
                f"{int(fit['n_seeds'])} of {int(fit['grid_seeds'])} seeds fitted, {int(fit['censored'])} censored lr*; "
                f"α (selection metric, {p['metric']}) = {fmt_ci(val['alpha'], val['alpha_low'], val['alpha_high'], 2)}"
                + traj_text)
    few = few_seeds(int(fit["grid_seeds"]), p)
    if few:
        return result(claim, INCONCLUSIVE, few, evidence, rule, domain, headline)
    if fit["n_seeds"] < p["min_seeds"]:
        return result(claim, INCONCLUSIVE, f"only {int(fit['n_seeds'])} of the grid's {int(fit['grid_seeds'])} seeds "
                      f"have an lr* at two or more batch sizes ({label} diverged at every LR elsewhere)", evidence,
                      rule, domain, headline)
    if fit["n_batch_sizes"] < p["min_batch_sizes"]:
        return result(claim, INCONCLUSIVE, f"{int(fit['n_batch_sizes'])} batch sizes, the rule needs "
                      f"{p['min_batch_sizes']}", evidence, rule, domain, headline)
    if fit["censored"] > 0:
        return result(claim, INCONCLUSIVE, f"{int(fit['censored'])} censored lr* (m = {fit['censored_m']}, optimum "
                      f"may lie {fit['censored_sides']}er): extend or refine the grid as best_lr.csv says",
                      evidence, rule, domain, headline)
    low, high = fit["alpha_low"], fit["alpha_high"]
    within = alpha - margin <= low and high <= alpha + margin
    interval = f"the CI [{fmt(low, 2)}, {fmt(high, 2)}]"
    disagree = ""
    if favoured and claimed_rule and favoured != claimed_rule:
        disagree = (f"; the trajectories disagree, favouring LR ×{'k' if favoured == 'linear' else '√k'} "
                    f"({'; '.join(traj_parts)}) — the exponent decides, as declared")
    rule_words = {"C7": "linearly", "C8": "like √batch"}[claim]
    if not low <= alpha <= high:
        ballpark = (f", though within {fmt(alpha)} ± {fmt(margin)}: approximately right, as a ballpark" if within
                    else f" and lies beyond {fmt(alpha)} ± {fmt(margin)}")
        return result(claim, NOT_SUPPORTED, f"{interval} excludes {fmt(alpha)}{ballpark}{disagree}", evidence, rule,
                      domain, headline, f"{label}'s best learning rate did not grow {rule_words} between batch "
                      f"sizes {span} (α = {alpha_text}; the rule predicts {fmt(alpha)}"
                      + (", a ballpark within ±" + fmt(margin) if within else "") + ").")
    if within:
        return result(claim, SUPPORTED, f"{interval} contains {fmt(alpha)} and lies within ± {fmt(margin)}{disagree}",
                      evidence, rule, domain, headline,
                      f"{label}'s best learning rate grew {rule_words} between batch sizes {span} (α = {alpha_text}).")
    both = p["other_alpha"] if low <= p["other_alpha"] <= high else None
    note = (f"; it contains both {fmt(alpha)} and {fmt(both)}: it decides neither rule" if both is not None else "")
    return result(claim, INCONCLUSIVE, f"{interval} contains {fmt(alpha)} but reaches beyond ± {fmt(margin)}{note}"
                  f"{disagree}", evidence, rule, domain, headline)


def c7_rule(p: dict) -> str:
    return scaling_rule_text(p)


def c8_rule(p: dict) -> str:
    return scaling_rule_text(p)


def c7(tables: dict, p: dict) -> dict:
    return scaling_claim("C7", tables, p)


def c8(tables: dict, p: dict) -> dict:
    return scaling_claim("C8", tables, p)


# ---------------------------------------------------------------------------------------------
# C9

def c9_rule(p: dict) -> str:
    return ("Relative to each optimizer × batch size's best grid LR: (a) of the adjacent LR pairs below it, the share "
            "in which the lower LR needs more steps to the target validation loss (seed median; never reaching it "
            "counts as more); (b) of the cells with a too-large LR — the smallest LR above the best whose "
            f"{p['metric']} is not within {percent(p['tolerance'])} of the best (or where a seed diverged) — the "
            "share in which that LR diverges or oscillates (training loss rising more than "
            f"{percent(p['oscillation_rise'])} above its running minimum) in most seeds, rather than merely "
            f"converging worse. Supported when both shares reach {percent(p['min_fraction'])}; not supported when a "
            f"measured share falls below it; inconclusive when a half cannot be measured; {seeds_needed(p)}.")


def c9(tables: dict, p: dict) -> dict:
    rule = c9_rule(p)
    table, fraction = tables["lr_sensitivity"], p["min_fraction"]
    pairs, slower = int(table["below_pairs"].sum()), int(table["below_slower"].sum())
    measured = table[np.isfinite(table["too_large_lr"])]
    unstable = int(measured["too_large_unstable"].astype(bool).sum())
    share_low = slower / pairs if pairs else math.nan
    share_high = unstable / len(measured) if len(measured) else math.nan
    merely_worse = [cell(r.optimizer, r.batch_size) for r in measured.itertuples() if not r.too_large_unstable]
    evidence = (f"(a) lower LR slower in {slower} of {pairs} pairs ({percent(share_low)}); (b) the first too-large LR "
                f"diverges or oscillates in {unstable} of {len(measured)} cells ({percent(share_high)})"
                + (f"; merely worse at {', '.join(merely_worse)}" if merely_worse else "")
                + f"; {len(table)} cells, no too-large LR on the grid in {len(table) - len(measured)}")
    domain = (f"(a) {slower} of {pairs} pairs below the best; (b) {unstable} of {len(measured)} cells"
              + (f"; not at {', '.join(merely_worse)}" if merely_worse else ""))
    headline = f"(a) {percent(share_low)}, (b) {percent(share_high)}"
    few = few_seeds(int(table["n_seeds"].min()) if len(table) else 0, p)
    if few:
        return result("C9", INCONCLUSIVE, few, evidence, rule, domain, headline)
    failed = [what for what, share in (("small LRs are not slower", share_low),
                                       ("too-large LRs are merely worse, not unstable", share_high))
              if np.isfinite(share) and share < fraction]
    if failed:
        return result("C9", NOT_SUPPORTED, "; ".join(failed), evidence, rule, domain, headline,
                      f"Not both ends of the learning-rate range behaved as claimed ({'; '.join(failed)}: {headline}).")
    unmeasured = []
    if not pairs:
        unmeasured.append("no LR below a best one reaches the target (or every best is at the grid's bottom)")
    if not len(measured):
        unmeasured.append("no cell has a too-large LR on the grid: extend the grid above")
    if unmeasured:
        return result("C9", INCONCLUSIVE, "; ".join(unmeasured), evidence, rule, domain, headline)
    return result("C9", SUPPORTED, "both halves hold", evidence, rule, domain, headline,
                  f"Too small learning rates needed more steps and too large ones oscillated or diverged ({headline}).")


# ---------------------------------------------------------------------------------------------
# C10

def c10_rule(p: dict) -> str:
    return ("At each optimizer × batch size × seed's best grid LR, stop at the checkpoint of minimum validation loss "
            "and compare the test loss there with the test loss at the end of the budget (gain = end − stop). A run "
            f"overfits when its validation loss ends more than {percent(p['overfit_rise'])} above its minimum while "
            f"its training loss keeps falling. Inconclusive when fewer than {p['min_overfit_runs']} best-LR run(s) "
            f"overfit (no stopping point to show); supported when the mean gain's {ci(p)} over those runs lies above "
            f"{fmt(p['margin'])} nats; not supported when it lies below; otherwise inconclusive. Smallest effect it "
            f"resolves: a gain whose CI clears {fmt(p['margin'])} nats. Domain: the cells whose own gain CI lies "
            f"above {fmt(p['margin'])} nats; {seeds_needed(p)}.")


def c10(tables: dict, p: dict) -> dict:
    rule = c10_rule(p)
    stops, cells = tables["early_stopping"], tables["stopping_cells"]
    chosen = stops[stops["at_best_lr"].astype(bool) & (stops["status"] == "ok")]
    overall = tables["stopping_overall"].iloc[0]
    overfit = int(chosen["overfits"].astype(bool).sum())
    gain_text = fmt_ci(overall["test_gain"], overall["test_gain_low"], overall["test_gain_high"], 2, unit=" nats")
    evidence = (f"{overfit} of {len(chosen)} best-LR runs overfit ({int(stops['overfits'].astype(bool).sum())} of "
                f"{int((stops['status'] == 'ok').sum())} runs of the grid); stopping epoch median "
                f"{fmt(overall['stop_epoch'])} of {fmt(overall['final_epoch'])}; test loss saved by stopping: {gain_text}")
    gaining = [cell(r.optimizer, r.batch_size) for r in cells.itertuples() if r.test_gain_low > p["margin"]]
    domain = (f"stopping gains at {', '.join(gaining)} ({len(gaining)} of {len(cells)} cells)" if gaining else
              f"no cell's gain CI clears {fmt(p['margin'])} nats")
    headline = f"test loss saved by stopping {gain_text}"
    few = few_seeds(int(stops["seed"].nunique()) if len(stops) else 0, p)
    if few:
        return result("C10", INCONCLUSIVE, few, evidence, rule, domain, headline)
    if overfit < p["min_overfit_runs"]:
        return result("C10", INCONCLUSIVE, "no best-LR run overfits within the budget: the curves had no stopping "
                      "point to show", evidence, rule, domain, headline)
    if overall["test_gain_low"] > p["margin"]:
        return result("C10", SUPPORTED, "stopping at the validation minimum beats training to the end on test",
                      evidence, rule, domain, headline,
                      f"Stopping where the validation loss bottomed out beat training to the end ({headline}).")
    if overall["test_gain_high"] < p["margin"]:
        return result("C10", NOT_SUPPORTED, "stopping at the validation minimum does not beat training to the end "
                      "on test", evidence, rule, domain, headline,
                      f"Stopping at the validation minimum did not beat training to the end ({headline}).")
    return result("C10", INCONCLUSIVE, f"the CI of the test gain contains {fmt(p['margin'])} nats", evidence, rule,
                  domain, headline)


# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# L1–L5: the literature's claims

MCCANDLISH = "McCandlish et al. 2018 (arXiv:1812.06162)"
LI = "Li et al. 2024 (NeurIPS, arXiv:2405.14578)"


def not_in_grid(what: str, add: str) -> str:
    return f"not in this grid: {what} — add {add} (configs/literature.yaml does)"


def l1_rule(p: dict) -> str:
    names = ", ".join(name(o) for o in p["optimizers"])
    return (f"{MCCANDLISH}: B_noise = tr(HΣ)/GᵀHG (eq. 2.8) predicts the critical batch size B_crit = E_min/S_min "
            f"(eq. 2.12); B_simple = tr(Σ)/GᵀG (eq. 2.9) stands in for it; their Table 1 finds B_simple within "
            f"about an order of magnitude of B_crit (MNIST: B_crit 200, B_simple 900). Per optimizer in [{names}], "
            "four estimates: B_simple and the Hessian B_noise at the probe checkpoint nearest the target loss, "
            "B_noise fitted to lr*(B) with ε_max/(1 + B_noise/B) (eq. 2.6), and the knee B_crit of steps to "
            f"target, each with its {ci(p)} where it has one. Two estimates agree when their intervals come within "
            f"a factor {fmt(p['factor'])} of each other and disagree when they lie more than that apart. "
            f"Supported when at least {p['min_estimates']} estimates are defined, every pair agrees and every "
            f"interval spans less than ×{fmt(p['factor'])} (precision floor); not supported when a pair "
            "disagrees; otherwise inconclusive (the reason names the missing or imprecise estimate). The Hessian "
            "estimate is undefined where GᵀHG ≤ 0 or tr(HΣ) ≤ 0 (the model is not convex there).")


def ratio_relation(a: dict, b: dict, factor: float) -> str:
    """agree / disagree / open for two estimates {value, low, high} (an interval missing: its value)."""
    a_low, a_high = (a["low"], a["high"]) if np.isfinite(a["low"]) and np.isfinite(a["high"]) else (a["value"],) * 2
    b_low, b_high = (b["low"], b["high"]) if np.isfinite(b["low"]) and np.isfinite(b["high"]) else (b["value"],) * 2
    if a_low > factor * b_high or b_low > factor * a_high:
        return "disagree"
    if a_high <= factor * b_low and b_high <= factor * a_low:
        return "agree"
    return "open"


def l1(tables: dict, p: dict) -> dict:
    rule = l1_rule(p)
    estimates = tables.get("critical_batch")
    if estimates is None or estimates.empty:
        return result("L1", INCONCLUSIVE, "no critical-batch estimates were computed", "", rule)
    outcomes, reasons, parts, domains = [], [], [], []
    for optimizer in p["optimizers"]:
        mine = cells_of(estimates, optimizer)
        defined = [r._asdict() for r in mine.itertuples() if np.isfinite(r.value) and 0 < r.value < math.inf]
        missing = [r.estimate for r in mine.itertuples() if not (np.isfinite(r.value) and 0 < r.value < math.inf)]
        parts.append(f"{name(optimizer)}: " + "; ".join(
            f"{r['estimate']} {fmt_ci(r['value'], r['low'], r['high'])}" for r in defined)
            + (f"; undefined: {', '.join(missing)}" if missing else ""))
        if len(defined) < p["min_estimates"]:
            outcomes.append(INCONCLUSIVE)
            reasons.append(f"{name(optimizer)}: {len(defined)} estimates defined, the rule needs {p['min_estimates']}"
                           + (f" ({', '.join(missing)} undefined or not measured)" if missing else "")
                           + ("" if len(mine) else f" — {NO_PROBES}"))
            continue
        relations = {(a["kind"], b["kind"]): ratio_relation(a, b, p["factor"])
                     for i, a in enumerate(defined) for b in defined[i + 1:]}
        values = [r["value"] for r in defined]
        domains.append(f"{name(optimizer)}: estimates span ×{fmt(max(values) / min(values), 2)} "
                       f"({fmt(min(values))}–{fmt(max(values))} samples)")
        wide = [r["estimate"] for r in defined if np.isfinite(r["low"]) and r["high"] / r["low"] >= p["factor"]]
        apart = [f"{a} vs {b}" for (a, b), v in relations.items() if v == "disagree"]
        if apart:
            outcomes.append(NOT_SUPPORTED)
            reasons.append(f"{name(optimizer)}: more than ×{fmt(p['factor'])} apart: {', '.join(apart)}")
        elif all(v == "agree" for v in relations.values()) and not wide:
            outcomes.append(SUPPORTED)
            reasons.append(f"{name(optimizer)}: all {len(defined)} estimates within ×{fmt(p['factor'])}")
        else:
            outcomes.append(INCONCLUSIVE)
            reasons.append(f"{name(optimizer)}: " + (f"too imprecise: {', '.join(wide)}" if wide else
                                                       "intervals neither within nor beyond the factor"))
    verdict = (NOT_SUPPORTED if NOT_SUPPORTED in outcomes else
               SUPPORTED if outcomes and all(o == SUPPORTED for o in outcomes) else INCONCLUSIVE)
    headline = "; ".join(domains)
    finding = {SUPPORTED: f"The noise scale and the critical batch size agreed within ×{fmt(p['factor'])} "
                          f"({headline}).",
               NOT_SUPPORTED: f"The noise scale did not predict the critical batch size ({'; '.join(reasons)})."
               }.get(verdict, "")
    return result("L1", verdict, "; ".join(reasons), " | ".join(parts), rule, "; ".join(domains), headline, finding)


def fit_row(tables: dict, optimizer: str) -> pd.Series | None:
    fits = tables.get("lr_noise_scale")
    if fits is None:
        return None
    mine = fits[fits["optimizer"] == optimizer]
    return mine.iloc[0] if len(mine) else None


def l2_rule(p: dict) -> str:
    return (f"{MCCANDLISH}, eq. 2.6: SGD's best step ε_opt(B) = ε_max/(1 + B_noise/B), whose local exponent "
            "B_noise/(B + B_noise) falls from 1 (the linear rule) to 0 through B_noise; Shallue et al. 2018 (JMLR) "
            f"find the best learning rate follows neither the linear nor the √ rule across all batch sizes. For "
            f"{name(p['optimizer'])}: per seed, that form and the single power law log lr* = α·log B + c (both two "
            "parameters) are fitted to the refined lr* on the training objective, each batch size left out in turn "
            "and predicted from the others; the gain is the power law's held-out squared error in log lr* minus "
            f"the form's, {ci(p)} across seeds. Supported when the gain's CI lies above 0 and the fitted B_noise "
            "lies inside the grid's batch sizes (the bend is seen); not supported when it lies below 0; "
            f"inconclusive otherwise, or when B_noise lies beyond the grid (only one regime seen: the reason says "
            f"which batch sizes to add); at least {p['min_batch_sizes']} batch sizes; {seeds_needed(p)}.")


def lr_form_claim(claim: str, tables: dict, p: dict, form: str, rule: str) -> tuple[dict | None, pd.Series | None]:
    """The shared checks of L2 and L5: the fit exists, has the seeds and batch sizes it needs, its lr* are
    not censored; returns (a finished inconclusive result, or None) and the fit row."""
    optimizer = p["optimizer"]
    fit = fit_row(tables, optimizer)
    if fit is None:
        return result(claim, INCONCLUSIVE, not_in_grid(f"{name(optimizer)} with its lr*(B) fit",
                                                      f"{optimizer} to grid.optimizers"), "", rule), None
    evidence = done_evidence(fit, form) + f"; {int(fit['lr_censored'])} censored lr*"
    few = few_seeds(int(fit["seeds"]), p, f"{name(optimizer)}'s fit")
    sizes = tables["batch_scaling"].set_index("optimizer")["batch_sizes"].get(optimizer, 0)
    if few:
        return result(claim, INCONCLUSIVE, few, evidence, rule), fit
    if sizes < p["min_batch_sizes"]:
        return result(claim, INCONCLUSIVE, f"{int(sizes)} batch sizes, the rule needs {p['min_batch_sizes']}",
                      evidence, rule), fit
    if fit["lr_censored"] > 0:
        return result(claim, INCONCLUSIVE, f"{int(fit['lr_censored'])} censored lr*: extend the learning-rate grid "
                      "as best_lr.csv says", evidence, rule), fit
    return None, fit


FORMS_TEXT = {"mccandlish": "ε_max/(1 + B_noise/B)", "surge": "Li et al.'s surge peak"}


def training_samples(tables: dict) -> int | None:
    status = tables.get("status")
    return int(status["n_train"].max()) if status is not None and len(status) else None


def batch_sizes_to_add(needed: float, n_train: int | None) -> str:
    """What to add to the grid to see a batch size of `needed` — or that this training set cannot show it."""
    if not np.isfinite(needed):
        return "the fit puts it beyond any batch size"
    if n_train and needed > n_train / 2:
        return (f"that needs batch sizes up to ≈ {fmt(needed)}, beyond half the {n_train} training samples: this "
                "workload cannot show it (a larger training set can)")
    return f"add batch sizes up to ≈ {fmt(needed)} (configs/literature.yaml)"


def l2(tables: dict, p: dict) -> dict:
    rule = l2_rule(p)
    done, fit = lr_form_claim("L2", tables, p, "mccandlish", rule)
    if done is not None:
        return done
    evidence = done_evidence(fit, "mccandlish")
    beyond = fit["b_noise_censored"] > 0 or not (fit["batch_size_min"] <= fit["b_noise"] <= fit["batch_size_max"])
    domain = (f"B_noise {fmt_ci(fit['b_noise'], fit['b_noise_low'], fit['b_noise_high'])}: local exponent "
              f"{fmt(fit['b_noise'] / (fit['batch_size_min'] + fit['b_noise']), 2)} at B = {int(fit['batch_size_min'])}, "
              f"{fmt(fit['b_noise'] / (fit['batch_size_max'] + fit['b_noise']), 2)} at B = {int(fit['batch_size_max'])}"
              if np.isfinite(fit["b_noise"]) else "B_noise not found on the grid")
    headline = f"B_noise ≈ {fmt(fit['b_noise'])} samples" if np.isfinite(fit["b_noise"]) else ""
    if fit["cv_gain_high"] < 0:
        return result("L2", NOT_SUPPORTED, "the single power law predicts held-out batch sizes better", evidence,
                      rule, domain, headline, f"SGD's best learning rate followed a single power law better than "
                      f"the saturating form ({headline}).")
    if beyond:
        return result("L2", INCONCLUSIVE, f"B_noise lies beyond the grid's batch sizes "
                      f"{int(fit['batch_size_min'])}–{int(fit['batch_size_max'])}: only one regime is seen — "
                      + batch_sizes_to_add(2 * fit["b_noise"], training_samples(tables)), evidence, rule, domain,
                      headline)
    if fit["cv_gain_low"] > 0:
        return result("L2", SUPPORTED, "the saturating form predicts held-out batch sizes better than the power law",
                      evidence, rule, domain, headline, f"SGD's best learning rate grew linearly at small batches and "
                      f"saturated through B_noise ≈ {fmt(fit['b_noise'])} ({domain}).")
    return result("L2", INCONCLUSIVE, "the held-out gain's CI contains 0", evidence, rule, domain, headline)


def done_evidence(fit: pd.Series, form: str) -> str:
    return (f"B_noise ({FORMS_TEXT[form]}) = {fmt_ci(fit['b_noise'], fit['b_noise_low'], fit['b_noise_high'])} over "
            f"B = {int(fit['batch_size_min'])}–{int(fit['batch_size_max'])} ({int(fit['seeds'])} seeds, "
            f"{int(fit['b_noise_censored'])} beyond the grid); held-out gain over the power law "
            f"{fmt_ci(fit['cv_gain'], fit['cv_gain_low'], fit['cv_gain_high'])} (log lr*)²")


def l3_rule(p: dict) -> str:
    order = " < ".join(name(o) for o in p["order"])
    return ("Shallue et al. 2018 (JMLR 2019): momentum extends the perfect-scaling regime to larger batch sizes; "
            "Zhang et al. 2019 (NeurIPS): preconditioning (Adam) gives much larger critical batch sizes than "
            f"momentum SGD. Claim: B_crit {order}, the knee of steps to one target validation loss common to all "
            f"(the highest of the optimizers' own targets, so each reaches it), {ci(p)} across seeds. Supported when "
            "each consecutive pair's CIs are ordered as claimed (the upper one's low end above the lower one's high "
            "end); not supported when a pair's CIs are ordered the other way; otherwise inconclusive, as when an "
            f"optimizer is not in the grid; {seeds_needed(p)}.")


def l3(tables: dict, p: dict) -> dict:
    rule = l3_rule(p)
    knees = tables["batch_scaling_common"].set_index("optimizer")
    absent = [o for o in p["order"] if o not in knees.index]
    if absent:
        return result("L3", INCONCLUSIVE, not_in_grid(", ".join(name(o) for o in absent),
                                                     " and ".join(absent) + " to grid.optimizers"), "", rule)
    rows = [knees.loc[o] for o in p["order"]]
    evidence = "; ".join(f"{name(o)} B_crit {fmt_ci(r['knee'], r['knee_low'], r['knee_high'])}" for o, r in
                         zip(p["order"], rows)) + f" at the common target {fmt(rows[0]['target_loss'])} nats"
    few = few_seeds(int(min(r["n_seeds"] for r in rows)), p)
    if few:
        return result("L3", INCONCLUSIVE, few, evidence, rule)
    pairs = []
    for (a, lower), (b, upper) in zip(zip(p["order"], rows), zip(p["order"][1:], rows[1:])):
        pairs.append(("ordered" if upper["knee_low"] > lower["knee_high"] else
                      "reversed" if upper["knee_high"] < lower["knee_low"] else "open", a, b))
    domain = "; ".join(f"{name(a)} vs {name(b)}: {state}" for state, a, b in pairs)
    if any(state == "reversed" for state, _, _ in pairs):
        return result("L3", NOT_SUPPORTED, "reversed: " + ", ".join(f"{name(b)} below {name(a)}" for state, a, b in
                                                                   pairs if state == "reversed"), evidence, rule,
                      domain, evidence)
    if all(state == "ordered" for state, _, _ in pairs):
        return result("L3", SUPPORTED, "every pair ordered as claimed", evidence, rule, domain, evidence,
                      f"The critical batch size grew from SGD to momentum SGD to Adam ({evidence}).")
    return result("L3", INCONCLUSIVE, "overlapping CIs: " + ", ".join(f"{name(a)} vs {name(b)}" for state, a, b in
                                                                   pairs if state == "open"), evidence, rule, domain,
                  evidence)


def l4_rule(p: dict) -> str:
    return ("Malladi et al. 2022 (NeurIPS, arXiv:2205.10287): for Adam at batch ×κ scale lr ×√κ, 1−β1 ×κ, 1−β2 ×κ "
            "and ε ÷√κ; ×κ breaks for κ ≥ 1/(1−β1) = 10 at β1 = 0.9, so the runs scale down from a base run at "
            "batch B to B/k (lr ÷√k, 1−β1 and 1−β2 ÷k, ε ×√k). Per k, the RMS distance (nats) of the training-loss "
            "curve against epochs from the base run (same seed) under the full rule and under lr ÷√k alone; the "
            f"gain is lr-only − full, paired by seed, {ci(p)}; the noise floor is the mean distance between base "
            "runs of different seeds. Supported when for every k the gain's CI lies above the noise floor; not "
            "supported when for some k it lies below it (the full rule is no closer than seed-to-seed noise); "
            f"otherwise inconclusive; {seeds_needed(p)}.")


def l4(tables: dict, p: dict) -> dict:
    rule = l4_rule(p)
    table = tables.get("malladi")
    summary = table[table["kind"] == "summary"] if table is not None else pd.DataFrame()
    if summary.empty:
        return result("L4", INCONCLUSIVE, not_in_grid("Malladi's scaled Adam runs", "literature.malladi"), "", rule)
    parts, outcomes = [], []
    for row in summary.sort_values("k").itertuples():
        parts.append(f"k = {row.k} (B = {row.batch_size}): gain {fmt_ci(row.gain, row.gain_low, row.gain_high, 2)} "
                     f"nats vs noise floor {fmt(row.floor, 2)} nats")
        outcomes.append("for" if row.gain_low > row.floor else "against" if row.gain_high < row.floor else "open")
    evidence = "; ".join(parts)
    few = few_seeds(int(summary["seeds"].min()), p, "the scaled runs")
    if few:
        return result("L4", INCONCLUSIVE, few, evidence, rule, evidence)
    ks = summary.sort_values("k")["k"].tolist()
    domain = "; ".join(f"k = {k}: {o}" for k, o in zip(ks, outcomes))
    if "against" in outcomes:
        return result("L4", NOT_SUPPORTED, "the full rule is not closer than the noise floor at k = "
                      f"{[k for k, o in zip(ks, outcomes) if o == 'against']}", evidence, rule, domain, evidence,
                      f"Scaling β and ε as well did not bring Adam's curves closer than seed noise ({evidence}).")
    if all(o == "for" for o in outcomes):
        return result("L4", SUPPORTED, "the full rule stays closer than lr ÷√k alone, beyond the noise floor, at "
                      "every k", evidence, rule, domain, evidence,
                      f"Scaling β1, β2 and ε with the batch size kept Adam's curve closer to the base run ({evidence}).")
    return result("L4", INCONCLUSIVE, "a gain's CI contains the noise floor", evidence, rule, domain, evidence)


def l5_rule(p: dict) -> str:
    return (f"{LI}, eq. 13 (Theorem 3): Adam's ε_opt(B) = ε_max/(½(√(B_noise/B) + √(B/B_noise))), rising like √B "
            "below its peak at B = B_noise (eqs. 15–16) and falling beyond; this B_noise is a sign-gradient "
            "model's (eq. 14), not tr(HΣ)/GᵀHG. For "
            f"{name(p['optimizer'])}: per seed that form and the single power law are fitted to the refined lr* on "
            f"the training objective and compared on held-out batch sizes (as for L2, {ci(p)} across seeds). "
            "Supported when the form's "
            f"held-out gain CI lies above 0, the grid reaches past the fitted peak (largest B ≥ ×{fmt(p['beyond'])} "
            "the peak) and the exponent of the last batch-size pair lies below 0, CI-wise (lr* falls); not "
            "supported when, with the grid past the peak, the gain's CI lies below 0 or the last pair's exponent "
            "lies above 0; inconclusive otherwise — as when the batch sizes do not reach past the peak (the reason "
            f"says which to add); at least {p['min_batch_sizes']} batch sizes; {seeds_needed(p)}.")


def l5(tables: dict, p: dict) -> dict:
    rule = l5_rule(p)
    done, fit = lr_form_claim("L5", tables, p, "surge", rule)
    if done is not None:
        return done
    evidence = done_evidence(fit, "surge")
    pairs = tables["scaling"]
    last = pairs[(pairs["optimizer"] == p["optimizer"]) & (pairs["objective"] == "train") & (pairs["kind"] == "pair")]
    last = last.sort_values("m_high").iloc[-1] if len(last) else None
    peak = fit["b_noise"]
    if last is not None:
        evidence += (f"; last pair m = {int(last['m_low'])}→{int(last['m_high'])}: α = "
                     f"{fmt_ci(last['alpha'], last['alpha_low'], last['alpha_high'], 2)}")
    past = np.isfinite(peak) and fit["batch_size_max"] >= p["beyond"] * peak and not fit["b_noise_beyond"]
    n_train = training_samples(tables)
    domain = (f"peak B_noise {fmt_ci(peak, fit['b_noise_low'], fit['b_noise_high'])}; grid to B = "
              f"{int(fit['batch_size_max'])}" if np.isfinite(peak) else "no peak found")
    headline = f"peak ≈ {fmt(peak)} samples" if np.isfinite(peak) else ""
    if not past:
        return result("L5", INCONCLUSIVE, f"the grid's batch sizes (up to {int(fit['batch_size_max'])}) do not reach "
                      f"×{fmt(p['beyond'])} past the fitted peak: " + batch_sizes_to_add(p["beyond"] * peak, n_train),
                      evidence, rule, domain, headline)
    falling = last is not None and last["alpha_high"] < 0
    rising = last is not None and last["alpha_low"] > 0
    if fit["cv_gain_high"] < 0 or rising:
        return result("L5", NOT_SUPPORTED, "past the peak, " + ("the power law predicts better" if
                      fit["cv_gain_high"] < 0 else "lr* still rises"), evidence, rule, domain, headline,
                      f"Adam's best learning rate did not surge and fall as Li et al. predict ({headline}).")
    if fit["cv_gain_low"] > 0 and falling:
        return result("L5", SUPPORTED, "the surge form predicts better and lr* falls past the peak", evidence, rule,
                      domain, headline, f"Adam's best learning rate peaked near B ≈ {fmt(peak)} and fell beyond it.")
    return result("L5", INCONCLUSIVE, "the held-out gain or the last exponent is undecided", evidence, rule, domain,
                  headline)


RULES = {"C1": (c1_rule, c1), "C2": (c2_rule, c2), "C3": (c3_rule, c3), "C4": (c4_rule, c4), "C5": (c5_rule, c5),
         "C6": (c6_rule, c6), "C7": (c7_rule, c7), "C8": (c8_rule, c8), "C9": (c9_rule, c9), "C10": (c10_rule, c10),
         "L1": (l1_rule, l1), "L2": (l2_rule, l2), "L3": (l3_rule, l3), "L4": (l4_rule, l4), "L5": (l5_rule, l5)}


def rule_parameters(config: dict, claim: str) -> dict:
    """The parameters a claim's rule sees: the analysis settings, the selection metric, the shared
    minimum number of seeds, the probes (for C4/C5's text) and the claim's own section of `verdicts`."""
    verdicts = config["verdicts"]
    probes = config["grad_variance"]
    return {**config["analysis"], "metric": config["selection"]["metric"], "min_seeds": verdicts["min_seeds"],
            "probes": probes["probes"], "draws": probes["draws"], **verdicts[claim]}


def rule_text(config: dict, claim: str) -> str:
    """The printed rule of `claim`, from the config alone."""
    return RULES[claim][0](rule_parameters(config, claim))


def evaluate_claims(tables: dict[str, pd.DataFrame], config: dict) -> pd.DataFrame:
    """claims.csv: one row per claim, in order, each computed by its rule from the tables."""
    rows = [RULES[claim][1](tables, rule_parameters(config, claim)) for claim in CLAIMS]
    return pd.DataFrame(rows, columns=COLUMNS)
