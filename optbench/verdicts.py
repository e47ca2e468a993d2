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
# Where the report draws each claim's evidence (ids of the page's sections and figures).
ANCHORS = {"C1": "fig-curves", "C2": "fig-lr_sensitivity", "C3": "fig-lr_sensitivity", "C4": "gradient-noise",
           "C5": "fig-gradvar", "C6": "steps-to-target", "C7": "scaling", "C8": "scaling",
           "C9": "fig-trajectories", "C10": "fig-early_stopping"}
SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE)
NO_PROBES = "no gradient-variance probes (grad_variance.probes is empty): add probe runs to measure it"
COLUMNS = ["claim_id", "claim_text", "verdict", "domain", "headline", "finding", "reason", "evidence", "rule",
           "anchor"]


def result(claim: str, verdict: str, reason: str, evidence: str, rule: str, domain: str = "",
           headline: str = "", finding: str = "") -> dict:
    assert verdict in VERDICTS, verdict
    return {"claim_id": claim, "claim_text": CLAIMS[claim], "verdict": verdict, "domain": domain,
            "headline": headline, "finding": finding or f"{CLAIMS[claim]} — {verdict}", "reason": reason,
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
                      domain, headline, f"{label}'s best learning rate did not grow {rule_words} with batch size "
                      f"({headline}; the rule predicts {fmt(alpha)}).")
    if within:
        return result(claim, SUPPORTED, f"{interval} contains {fmt(alpha)} and lies within ± {fmt(margin)}{disagree}",
                      evidence, rule, domain, headline,
                      f"{label}'s best learning rate grew {rule_words} with batch size ({headline}; {domain}).")
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

RULES = {"C1": (c1_rule, c1), "C2": (c2_rule, c2), "C3": (c3_rule, c3), "C4": (c4_rule, c4), "C5": (c5_rule, c5),
         "C6": (c6_rule, c6), "C7": (c7_rule, c7), "C8": (c8_rule, c8), "C9": (c9_rule, c9), "C10": (c10_rule, c10)}


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
