"""Analyses of the run tables: best LR, LR sensitivity, scaling rules, trajectories, steps to target, stopping."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import optimize, stats

from optbench.config import CELL_KEYS, RUN_KEYS

SEED_KEYS = ["optimizer", "batch_size", "seed"]
# selection metric → (split, which checkpoint): the same names as config `selection.metric`
METRICS = {"min_val_loss": ("val", "min"), "final_val_loss": ("val", "final"),
           "min_train_loss": ("train", "min"), "final_train_loss": ("train", "final")}
LR_MATCH = 1e-6  # relative tolerance when looking an LR up on the grid (k·lr is computed in floating point)


# ---------------------------------------------------------------------------------------------
# Small statistics shared by the analyses

def mean_ci(values, confidence: float) -> tuple[float, float, float, int]:
    """(mean, low, high, n) with a Student-t interval over the finite values; no interval below n = 2."""
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    n = len(values)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(values.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, n


def geometric_ci(values, confidence: float) -> tuple[float, float, float, int]:
    """mean_ci in log space, mapped back: geometric mean and its interval (positive values)."""
    values = np.asarray(values, dtype=float)
    mean, low, high, n = mean_ci(np.log(values[values > 0]), confidence)
    return tuple(math.exp(v) if np.isfinite(v) else math.nan for v in (mean, low, high)) + (n,)


def lr_index(grid, lr: float) -> int | None:
    """Position of `lr` on a sorted LR grid, or None when it is not on it."""
    hits = np.flatnonzero(np.isclose(np.asarray(grid, dtype=float), lr, rtol=LR_MATCH, atol=0))
    return int(hits[0]) if len(hits) else None


# ---------------------------------------------------------------------------------------------
# Per-run numbers

def run_scores(runs: pd.DataFrame, metric: str, train_checkpoints: int, oscillation_rise: float) -> pd.DataFrame:
    """One row per run: the selection metric (`score`), the training objective, and instability.

    score: the selection metric (inf for a diverged run, which is never selected). val_min: the
    minimum validation loss over checkpoints. train_objective: eval-mode loss over the whole
    training set averaged over the last `train_checkpoints` checkpoints (damps spikes; inf if any
    is non-finite). train_rise: the largest rise of that loss above its running minimum, relative
    to the minimum; a run `oscillates` when it exceeds `oscillation_rise`.
    """
    split, which = METRICS[metric]
    rows = []
    for key, run in runs.sort_values([*RUN_KEYS, "step"], kind="stable").groupby(RUN_KEYS, sort=True):
        status = run["status"].iloc[0]
        diverged = status != "ok"
        curves = {name: part for name, part in run.groupby("split")}
        chosen = curves[split]["loss"].to_numpy(float)
        finite = chosen[np.isfinite(chosen)]
        if which == "min":
            score = float(finite.min()) if len(finite) else math.inf
        else:
            score = float(chosen[-1]) if np.isfinite(chosen[-1]) else math.inf
        val = curves["val"]["loss"].to_numpy(float)
        train = curves["train"]["loss"].to_numpy(float)
        steps = curves["train"]["step"].to_numpy(float)
        epochs = curves["train"]["epoch"].to_numpy(float)
        last = train[-train_checkpoints:]
        positive = steps > 0
        rows.append({
            **dict(zip(RUN_KEYS, key)), "status": status,
            "score": math.inf if diverged else score,
            "val_min": float(val[np.isfinite(val)].min()) if np.isfinite(val).any() else math.inf,
            "initial_train": float(train[0]),
            "train_objective": float(last.mean()) if np.isfinite(last).all() and not diverged else math.inf,
            "train_rise": math.inf if diverged else _max_rise(train),
            "steps_per_epoch": float(np.median(steps[positive] / epochs[positive])) if positive.any() else math.nan,
        })
    table = pd.DataFrame(rows)
    table["oscillates"] = table["train_rise"] > oscillation_rise
    return table


def _max_rise(losses: np.ndarray) -> float:
    """max_t L_t / min_{s ≤ t} L_s − 1 over a finite loss curve (0 for a monotone decrease)."""
    losses = losses[np.isfinite(losses)]
    if len(losses) == 0:
        return math.inf
    return float(np.max(losses / np.minimum.accumulate(losses)) - 1)


# ---------------------------------------------------------------------------------------------
# Best learning rate, refined below grid spacing, with the search-space boundary check

def parabola_vertex(x, y) -> float:
    """x of the vertex of the parabola through three points (unequal spacing allowed), kept
    within [x0, x2]; the middle point's x when the parabola is not convex."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    a, b, _ = np.polyfit(x, y, 2)
    if a <= 0:
        return float(x[1])
    return float(np.clip(-b / (2 * a), x[0], x[2]))


def best_lr_per_seed(scores: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per optimizer × batch size × seed: the grid LR minimising `column`, refined by a parabola in
    log lr through it and its two neighbours, and the tuning playbook's boundary check.

    The optimum is censored when it sits on the grid's edge, or beside a diverged (non-finite) or
    missing neighbour: the refinement is then skipped (lr_star = the grid LR), `censor_side` says
    which way the true optimum may lie (low, high, both) and `censor_note` how to extend the grid.
    """
    rows = []
    for (optimizer, batch_size), cell in scores.groupby(CELL_KEYS, sort=True):
        grid = np.sort(cell["lr"].unique())
        for seed, runs in cell.groupby("seed", sort=True):
            values = runs.set_index("lr")[column].reindex(grid).to_numpy(float)  # NaN: missing run
            row = {"optimizer": optimizer, "batch_size": batch_size, "seed": seed}
            usable = np.isfinite(values)
            if not usable.any():
                rows.append({**row, "grid_lr": math.nan, "value": math.nan, "lr_star": math.nan, "censored": True,
                             "censor_side": "both", "censor_note": "every LR diverged: extend the grid below"})
                continue
            i = int(np.nanargmin(np.where(usable, values, np.nan)))
            sides, notes = [], []
            for side, j, beyond in (("low", i - 1, "below"), ("high", i + 1, "above")):
                if j < 0 or j >= len(grid):
                    sides.append(side)
                    notes.append(f"best at the grid's {'lowest' if j < 0 else 'highest'} LR {grid[i]:g}: "
                                 f"extend the grid {beyond}")
                elif not usable[j]:
                    what = "is missing" if np.isnan(values[j]) else "diverged"
                    sides.append(side)
                    notes.append(f"the neighbour {grid[j]:g} {what}: add LRs between {min(grid[i], grid[j]):g} "
                                 f"and {max(grid[i], grid[j]):g}")
            censored = bool(sides)
            lr_star = grid[i] if censored else 10 ** parabola_vertex(np.log10(grid[i - 1:i + 2]), values[i - 1:i + 2])
            rows.append({**row, "grid_lr": float(grid[i]), "value": float(values[i]), "lr_star": float(lr_star),
                         "censored": censored, "censor_side": "both" if len(sides) == 2 else "".join(sides),
                         "censor_note": "; ".join(notes)})
    return pd.DataFrame(rows)


def best_lr_table(scores: pd.DataFrame, metric: str, confidence: float) -> pd.DataFrame:
    """best_lr.csv: one row per optimizer × batch size × seed, lr* by the selection metric
    (`lr_star`, ...) and by the training objective (`*_train`, used by the scaling rules), each
    with its cell's geometric mean and CI across seeds."""
    parts = []
    for column, suffix in (("score", ""), ("train_objective", "_train")):
        best = best_lr_per_seed(scores, column).rename(columns={"value": "score"})
        cells = []
        for key, cell in best.groupby(CELL_KEYS, sort=True):
            mean, low, high, n = geometric_ci(cell["lr_star"].dropna(), confidence)
            cells.append({**dict(zip(CELL_KEYS, key)), "lr_star_gmean": mean, "lr_star_low": low,
                          "lr_star_high": high, "n_seeds": n, "n_censored": int(cell["censored"].sum())})
        best = best.merge(pd.DataFrame(cells), on=CELL_KEYS)
        parts.append(best.rename(columns={c: c + suffix for c in best.columns if c not in SEED_KEYS}))
    table = parts[0].merge(parts[1].drop(columns=["n_seeds_train"]), on=SEED_KEYS)
    table.insert(3, "metric", metric)
    table.insert(4, "confidence", confidence)
    return table


# ---------------------------------------------------------------------------------------------
# LR sensitivity (C2, C9)

def seed_widths(scores: pd.DataFrame, tolerance: float, column: str = "score") -> pd.DataFrame:
    """Per optimizer × batch size × seed: the LR range, in decades, around the best LR whose
    `column` stays within (1 + tolerance) × the best.

    Its ends are interpolated linearly in log10 lr between the last grid point inside and the first
    outside; beside a diverged LR the end is put half-way (all that is known is that it lies
    between). An end that reaches the grid's edge is censored: the width is then a lower bound.
    """
    rows = []
    for (optimizer, batch_size), cell in scores.groupby(CELL_KEYS, sort=True):
        grid = np.sort(cell["lr"].unique())
        x = np.log10(grid)
        for seed, runs in cell.groupby("seed", sort=True):
            y = runs.set_index("lr")[column].reindex(grid).to_numpy(float)
            y = np.where(np.isnan(y), math.inf, y)
            row = {"optimizer": optimizer, "batch_size": batch_size, "seed": seed}
            if not np.isfinite(y).any():
                rows.append({**row, "best_lr": math.nan, "threshold": math.nan, "lr_low": math.nan,
                             "lr_high": math.nan, "width_decades": math.nan, "censored_low": False,
                             "censored_high": False})
                continue
            i = int(np.argmin(y))
            threshold = y[i] * (1 + tolerance)
            ends = {}
            for side, step in (("low", -1), ("high", 1)):
                j = i
                while 0 <= j + step < len(grid) and y[j + step] <= threshold:
                    j += step
                k = j + step
                if not 0 <= k < len(grid):
                    ends[side] = (x[j], True)
                elif np.isfinite(y[k]):
                    ends[side] = (x[j] + (threshold - y[j]) / (y[k] - y[j]) * (x[k] - x[j]), False)
                else:
                    ends[side] = ((x[j] + x[k]) / 2, False)
            rows.append({**row, "best_lr": float(grid[i]), "threshold": float(threshold),
                         "lr_low": 10 ** ends["low"][0], "lr_high": 10 ** ends["high"][0],
                         "width_decades": float(ends["high"][0] - ends["low"][0]),
                         "censored_low": ends["low"][1], "censored_high": ends["high"][1]})
    return pd.DataFrame(rows)


def lr_sensitivity(scores: pd.DataFrame, tolerance: float, confidence: float,
                   reasons: pd.DataFrame | None = None) -> pd.DataFrame:
    """lr_sensitivity.csv: per optimizer × batch size, the width (decades) of the near-best LR
    range (mean and CI over seeds), the share of the grid's runs that diverged, and C9's two halves.

    Below the best grid LR (lowest seed-mean score), `below_slower` counts the adjacent LR pairs in
    which the lower LR needs more steps to the target validation loss (seed median; never reaching
    it counts as more), of `below_pairs` pairs where at least one of the two reaches it. Above the
    best, `above_unstable` counts the LRs at which most seeds diverged or oscillated. `reasons`
    (run_status.csv) splits the diverged runs into non-finite and no-progress ones.
    """
    widths = seed_widths(scores, tolerance)
    if reasons is not None and "reason" in reasons:
        scores = scores.merge(reasons[[*RUN_KEYS, "reason"]], on=RUN_KEYS, how="left")
    rows = []
    for key, cell in scores.groupby(CELL_KEYS, sort=True):
        grid = np.sort(cell["lr"].unique())
        seeds = widths[(widths["optimizer"] == key[0]) & (widths["batch_size"] == key[1])]
        width = mean_ci(seeds["width_decades"], confidence)
        per_lr = cell.groupby("lr").agg(score=("score", "mean"), unstable=("oscillates", "mean"),
                                        diverged=("status", lambda s: (s != "ok").mean()))
        per_lr["unstable"] = np.maximum(per_lr["unstable"], per_lr["diverged"])
        if "steps_to_target" in cell:
            per_lr["steps"] = cell.groupby("lr")["steps_to_target"].median()
        best = per_lr["score"].idxmin() if np.isfinite(per_lr["score"]).any() else math.nan
        row = {**dict(zip(CELL_KEYS, key)), "tolerance": tolerance, "confidence": confidence,
               "n_seeds": width[3], "n_lrs": len(grid), "grid_decades": float(np.log10(grid[-1] / grid[0])),
               "width_decades": width[0], "width_low": width[1], "width_high": width[2],
               "width_censored_low": bool(seeds["censored_low"].any()),
               "width_censored_high": bool(seeds["censored_high"].any()),
               "runs": len(cell), "diverged_runs": int((cell["status"] != "ok").sum()),
               "diverged_fraction": float((cell["status"] != "ok").mean()),
               "oscillating_runs": int((cell["oscillates"] & (cell["status"] == "ok")).sum()),
               "best_lr": best}
        if "reason" in cell:
            for reason in ("nonfinite", "no_progress"):
                row[f"{reason}_runs"] = int((cell["reason"] == reason).sum())
        below = per_lr[per_lr.index <= best] if np.isfinite(best) else per_lr.iloc[:0]
        slower = pairs = 0
        if "steps" in per_lr:
            steps = below["steps"].fillna(math.inf).to_numpy(float)
            for low, high in zip(steps[:-1], steps[1:]):
                if np.isfinite(low) or np.isfinite(high):
                    pairs += 1
                    slower += bool(low > high)
        above = per_lr[per_lr.index > best] if np.isfinite(best) else per_lr.iloc[:0]
        row.update({"below_lrs": max(len(below) - 1, 0), "below_pairs": pairs, "below_slower": slower,
                    "above_lrs": len(above), "above_unstable": int((above["unstable"] > 0.5).sum()),
                    "above_diverged": int((above["diverged"] > 0.5).sum())})
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Scaling rules (C7, C8): log lr* = α·log m + c

def scaling(best: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """scaling.csv: α per optimizer and objective (train: lr* on the training objective, which the
    rules are about; val: on the selection metric), fitted per seed over all batch sizes
    (kind = fit) and between consecutive batch sizes (kind = pair: where the rule holds), with a
    t CI from the spread across seeds. Censored estimates are counted, not dropped."""
    rows = []
    for objective, suffix in (("train", "_train"), ("val", "")):
        for optimizer, frame in best.groupby("optimizer", sort=True):
            sizes = sorted(frame["batch_size"].unique())
            spans = [("fit", sizes)] + [("pair", list(pair)) for pair in zip(sizes[:-1], sizes[1:])]
            for kind, span in spans:
                part = frame[frame["batch_size"].isin(span)]
                alphas, intercepts = [], []
                for _, runs in part.groupby("seed"):
                    runs = runs[np.isfinite(runs["lr_star" + suffix])]
                    if runs["batch_size"].nunique() >= 2:
                        alpha, intercept = np.polyfit(np.log(runs["batch_size"].to_numpy(float)),
                                                      np.log(runs["lr_star" + suffix].to_numpy(float)), 1)
                        alphas.append(round(float(alpha), 12))  # equal lr* at every m: exactly 0, not 1e-17
                        intercepts.append(intercept)
                alpha = mean_ci(alphas, confidence)
                censored = part[part["censored" + suffix]]
                rows.append({
                    "optimizer": optimizer, "objective": objective, "kind": kind, "m_low": min(span),
                    "m_high": max(span), "n_batch_sizes": len(span), "n_seeds": alpha[3], "confidence": confidence,
                    "alpha": alpha[0], "alpha_low": alpha[1], "alpha_high": alpha[2],
                    "intercept": float(np.mean(intercepts)) if intercepts else math.nan,
                    "censored": len(censored),
                    "censored_m": " ".join(str(m) for m in sorted(censored["batch_size"].unique())),
                    "censored_sides": " ".join(sorted(set(censored["censor_side" + suffix]))),
                    "contains_linear": bool(alpha[1] <= 1 <= alpha[2]),
                    "contains_sqrt": bool(alpha[1] <= 0.5 <= alpha[2]),
                })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Trajectories (the SDE view): batch ×k with LR ×k against LR ×√k

def curve_distance(base: pd.DataFrame, other: pd.DataFrame, points: int) -> float:
    """RMS difference (nats) of two loss-vs-epoch curves on `points` epochs evenly spread over the
    range both cover (from the later first non-zero checkpoint), interpolated linearly in epoch.
    A curve with a non-finite loss (a diverged run) is infinitely far."""
    if not (np.isfinite(base["loss"]).all() and np.isfinite(other["loss"]).all()):
        return math.inf
    low = max(base.loc[base["epoch"] > 0, "epoch"].min(), other.loc[other["epoch"] > 0, "epoch"].min())
    high = min(base["epoch"].max(), other["epoch"].max())
    if not high > low:
        return math.nan
    epochs = np.linspace(low, high, points)
    gap = np.interp(epochs, base["epoch"], base["loss"]) - np.interp(epochs, other["epoch"], other["loss"])
    return float(np.sqrt(np.mean(gap ** 2)))


def trajectories(runs: pd.DataFrame, best: pd.DataFrame, k_values, points: int) -> pd.DataFrame:
    """trajectories.csv: for each non-diverged base run and each k with batch ×k on the grid, the
    distance of its training-loss curve (eval mode, whole training set) from the runs at batch ×k
    with LR ×k (linear rule) and LR ×√k (square-root rule). `base_is_best` marks the base run at its
    seed's best grid LR; a rule whose LR is off the grid gets no distance."""
    train = runs[runs["split"] == "train"].sort_values([*RUN_KEYS, "step"])
    curves = {key: frame for key, frame in train.groupby(RUN_KEYS, sort=False)}
    status = train.groupby(RUN_KEYS)["status"].first()
    best_lr = best.set_index(SEED_KEYS)["grid_lr"]
    grids = {o: np.sort(f["lr"].unique()) for o, f in train.groupby("optimizer")}
    sizes = set(train["batch_size"].unique())
    rows = []
    for (optimizer, batch_size, lr, seed), base in curves.items():
        if status[(optimizer, batch_size, lr, seed)] != "ok":
            continue
        is_best = bool(np.isclose(best_lr.get((optimizer, batch_size, seed), math.nan), lr, rtol=LR_MATCH))
        for k in k_values:
            if batch_size * k not in sizes:
                continue
            for rule, factor in (("linear", k), ("sqrt", math.sqrt(k))):
                j = lr_index(grids[optimizer], lr * factor)
                scaled = None if j is None else curves.get((optimizer, batch_size * k, grids[optimizer][j], seed))
                rows.append({"optimizer": optimizer, "batch_size": batch_size, "lr": lr, "seed": seed, "k": k,
                             "rule": rule, "scaled_batch_size": batch_size * k, "scaled_lr": lr * factor,
                             "on_grid": scaled is not None, "base_is_best": is_best,
                             "scaled_status": scaled["status"].iloc[0] if scaled is not None else "",
                             "distance": curve_distance(base, scaled, points) if scaled is not None else math.nan})
    columns = ["optimizer", "batch_size", "lr", "seed", "k", "rule", "scaled_batch_size", "scaled_lr", "on_grid",
               "base_is_best", "scaled_status", "distance"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------------------
# Steps to a target validation loss (C6, C9), the knee and B_simple

def steps_to_reach(steps, losses, target: float) -> float:
    """First (interpolated) step at which the loss reaches `target`: between the checkpoint before
    and the first at or below it, linearly in log step (the checkpoints are log-spaced; linearly
    in step from step 0). inf when a non-finite loss comes first or the target is never reached."""
    steps, losses = np.asarray(steps, dtype=float), np.asarray(losses, dtype=float)
    for i, loss in enumerate(losses):
        if not np.isfinite(loss):
            return math.inf
        if loss <= target:
            if i == 0:
                return float(steps[0])
            s0, s1, l0 = steps[i - 1], steps[i], losses[i - 1]
            fraction = (l0 - target) / (l0 - loss)
            if s0 <= 0:
                return float(s0 + fraction * (s1 - s0))
            return float(math.exp(math.log(s0) + fraction * (math.log(s1) - math.log(s0))))
    return math.inf


def target_losses(scores: pd.DataFrame, target, margin: float) -> dict[str, float]:
    """The target validation loss per optimizer: a number (nats) for all, or auto: per batch size the
    LR whose worst seed's minimum validation loss is lowest, the worst batch size of those, × (1 +
    margin): every seed of every batch size reaches it at some LR. Diverged runs do not count."""
    targets = {}
    if "status" in scores:
        scores = scores.assign(val_min=scores["val_min"].where(scores["status"] == "ok", math.inf))
    for optimizer, frame in scores.groupby("optimizer"):
        if target != "auto":
            targets[optimizer] = float(target)
            continue
        per_lr = frame.groupby([*CELL_KEYS, "lr"])["val_min"].max()
        worst = per_lr.groupby(level="batch_size").min().max()
        targets[optimizer] = float(worst * (1 + margin)) if np.isfinite(worst) else math.nan
    return targets


def add_steps_to_target(scores: pd.DataFrame, runs: pd.DataFrame, targets: dict[str, float]) -> pd.DataFrame:
    """scores with target_loss, steps_to_target and epochs_to_target per run (validation loss)."""
    val = runs[runs["split"] == "val"].sort_values([*RUN_KEYS, "step"])
    steps = {key: steps_to_reach(f["step"], f["loss"], targets[key[0]]) for key, f in val.groupby(RUN_KEYS)}
    keys = list(scores[RUN_KEYS].itertuples(index=False, name=None))
    out = scores.assign(target_loss=[targets[k[0]] for k in keys], steps_to_target=[steps[k] for k in keys])
    out["epochs_to_target"] = out["steps_to_target"] / out["steps_per_epoch"]
    return out


def seed_steps(scores: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer × batch size × seed: steps to target at the cell's fastest LR, the LR whose
    seed-geometric-mean steps is smallest among those that every seed reaches without diverging
    later (Shallue et al. 2018)."""
    rows = []
    if "status" in scores:
        scores = scores.assign(steps_to_target=scores["steps_to_target"].where(scores["status"] == "ok", math.inf))
    for key, cell in scores.groupby(CELL_KEYS, sort=True):
        per_lr = cell.groupby("lr")["steps_to_target"].agg(
            lambda s: math.exp(np.log(s).mean()) if np.isfinite(s).all() and len(s) else math.inf)
        lr = per_lr.idxmin() if np.isfinite(per_lr).any() else math.nan
        chosen = cell[cell["lr"] == lr] if np.isfinite(lr) else cell.drop_duplicates("seed").assign(
            steps_to_target=math.inf, epochs_to_target=math.inf)
        for _, run in chosen.iterrows():
            rows.append({**dict(zip(CELL_KEYS, key)), "seed": run["seed"], "lr": lr,
                         "steps": run["steps_to_target"], "epochs": run["epochs_to_target"]})
    return pd.DataFrame(rows, columns=[*SEED_KEYS, "lr", "steps", "epochs"])


def fit_knee(batch_sizes, steps) -> tuple[float, float]:
    """(B_crit, S_min) of S(B) = S_min·(1 + B_crit/B) (McCandlish et al. 2018), least squares in
    log S. B_crit = inf where the data scale perfectly over the grid (S ∝ 1/B), 0 where batch size
    does not help at all; B_crit is searched from b_min/1000 to 1000·b_max."""
    b = np.asarray(batch_sizes, dtype=float)
    y = np.log(np.asarray(steps, dtype=float))
    if len(b) < 2 or not np.isfinite(y).all():
        return math.nan, math.nan

    def sse(log_knee):
        residual = y - np.log1p(np.exp(log_knee) / b)
        return float(((residual - residual.mean()) ** 2).sum())

    grid = np.linspace(math.log(b.min() / 1e3), math.log(b.max() * 1e3), 400)
    errors = np.array([sse(v) for v in grid])
    i = int(errors.argmin())
    if i == 0 and float(((y - y.mean()) ** 2).sum()) <= errors[0]:
        return 0.0, float(math.exp(y.mean()))
    if i == len(grid) - 1:
        return math.inf, math.nan
    found = optimize.minimize_scalar(sse, bounds=(grid[max(i - 1, 0)], grid[i + 1]), method="bounded")
    knee = math.exp(found.x)
    return knee, float(math.exp((y - np.log1p(knee / b)).mean()))


def b_simple_near_target(noise: pd.DataFrame | None, runs: pd.DataFrame, targets: dict[str, float]) -> pd.DataFrame:
    """Per optimizer: B_simple = σ²/||∇f||² at each probe run's checkpoint whose validation loss is
    closest to the target (geometric mean over the optimizer's probe runs)."""
    columns = ["optimizer", "b_simple", "b_simple_probes", "b_simple_epoch", "b_simple_val_loss"]
    if noise is None or noise.empty:
        return pd.DataFrame(columns=columns)
    val = runs[runs["split"] == "val"][[*RUN_KEYS, "step", "loss"]].rename(columns={"loss": "val_loss"})
    probes = noise.merge(val, on=[*RUN_KEYS, "step"], how="left")
    rows = []
    for optimizer, frame in probes.groupby("optimizer"):
        target = targets.get(optimizer, math.nan)
        frame = frame[np.isfinite(frame["val_loss"]) & (frame["b_simple"] > 0)]
        if frame.empty or not np.isfinite(target):
            continue
        picks = frame.loc[(frame["val_loss"] - target).abs().groupby([frame[k] for k in RUN_KEYS]).idxmin()]
        rows.append({"optimizer": optimizer, "b_simple": float(np.exp(np.log(picks["b_simple"]).mean())),
                     "b_simple_probes": len(picks), "b_simple_epoch": float(picks["epoch"].mean()),
                     "b_simple_val_loss": float(picks["val_loss"].mean())})
    return pd.DataFrame(rows, columns=columns)


def steps_to_target(scores: pd.DataFrame, noise: pd.DataFrame | None, runs: pd.DataFrame,
                    confidence: float) -> pd.DataFrame:
    """steps_to_target.csv: per optimizer × batch size, steps and epochs to the target validation
    loss at the fastest LR (geometric mean and CI over seeds), the perfect-scaling reference
    (steps ∝ 1/B from the smallest batch size), the scaling efficiency from the previous batch size
    (1 = perfect, 0 = no gain), and per optimizer the knee B_crit (per-seed fits; geometric mean,
    CI, count of seeds scaling perfectly: B_crit = inf) beside B_simple near the target."""
    per_seed = seed_steps(scores)
    targets = scores.groupby("optimizer")["target_loss"].first().to_dict()
    b_simple = b_simple_near_target(noise, runs, targets).set_index("optimizer")
    rows = []
    for optimizer, frame in per_seed.groupby("optimizer", sort=True):
        knees = []
        for _, seed in frame.groupby("seed"):
            if len(seed) >= 3 and np.isfinite(seed["steps"]).all():
                knees.append(fit_knee(seed["batch_size"], seed["steps"])[0])
        knees = np.asarray(knees, dtype=float)
        knee = geometric_ci(knees[np.isfinite(knees)], confidence)
        infinite = int(np.isinf(knees).sum())
        previous = None
        reference = None
        for batch_size, cell in frame.groupby("batch_size", sort=True):
            steps, epochs = (geometric_ci(cell[c], confidence) if np.isfinite(cell[c]).all() else (math.inf,) * 3
                             + (len(cell),) for c in ("steps", "epochs"))
            if reference is None and np.isfinite(steps[0]):
                reference = (batch_size, steps[0])
            efficiency = math.nan
            if previous is not None and np.isfinite(previous[1]) and np.isfinite(steps[0]):
                efficiency = math.log(previous[1] / steps[0]) / math.log(batch_size / previous[0])
            previous = (batch_size, steps[0])
            rows.append({
                "optimizer": optimizer, "batch_size": batch_size, "target_loss": targets[optimizer],
                "lr": cell["lr"].iloc[0], "reached": bool(np.isfinite(steps[0])), "n_seeds": len(cell),
                "confidence": confidence, "steps": steps[0], "steps_low": steps[1], "steps_high": steps[2],
                "epochs": epochs[0], "epochs_low": epochs[1], "epochs_high": epochs[2],
                "perfect_scaling_steps": reference[1] * reference[0] / batch_size if reference else math.nan,
                "efficiency": efficiency,
                "knee": math.inf if infinite and not knee[3] else knee[0],
                "knee_low": math.inf if infinite and not knee[3] else knee[1],
                "knee_high": math.inf if infinite else knee[2],
                "knee_seeds": len(knees), "knee_infinite": infinite,
                "b_simple": b_simple["b_simple"].get(optimizer, math.nan),
                "b_simple_probes": b_simple["b_simple_probes"].get(optimizer, 0),
                "b_simple_epoch": b_simple["b_simple_epoch"].get(optimizer, math.nan),
            })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# When to stop (C10)

def early_stopping(runs: pd.DataFrame, best: pd.DataFrame, overfit_rise: float) -> pd.DataFrame:
    """early_stopping.csv: per run, the stopping checkpoint chosen on validation loss (earliest
    minimum), the losses there and at the end, and `test_gain` = test loss at the end − test loss
    at the stopping checkpoint (> 0: stopping there beats training to the end). A run `overfits`
    when its validation loss ends more than `overfit_rise` (relative) above its minimum while its
    training loss ends below its value at that checkpoint."""
    best_lr = best.set_index(SEED_KEYS)["grid_lr"]
    wide = runs.set_index([*RUN_KEYS, "step", "epoch", "split"])["loss"].unstack("split").reset_index()
    wide = wide.sort_values([*RUN_KEYS, "step"])
    status = runs.groupby(RUN_KEYS)["status"].first()
    rows = []
    for key, run in wide.groupby(RUN_KEYS, sort=True):
        val = run["val"].to_numpy(float)
        if not np.isfinite(val).any():
            continue
        i = int(np.nanargmin(np.where(np.isfinite(val), val, np.nan)))
        stop, end = run.iloc[i], run.iloc[-1]
        ok = status[key] == "ok"
        rows.append({
            **dict(zip(RUN_KEYS, key)), "status": status[key],
            "at_best_lr": bool(np.isclose(best_lr.get(key[:2] + key[3:], math.nan), key[2], rtol=LR_MATCH)),
            "stop_step": int(stop["step"]), "stop_epoch": float(stop["epoch"]), "final_epoch": float(end["epoch"]),
            "val_stop": stop["val"], "val_final": end["val"], "train_stop": stop["train"],
            "train_final": end["train"], "test_stop": stop["test"], "test_final": end["test"],
            "test_gain": end["test"] - stop["test"] if ok else math.nan,
            "overfits": bool(ok and end["val"] > stop["val"] * (1 + overfit_rise) and end["train"] < stop["train"]),
        })
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------

def analyze(tables: dict[str, pd.DataFrame], settings: dict, metric: str) -> dict[str, pd.DataFrame]:
    """Every analysis table from the run tables (runs, status, optional gradvar noise) and the
    config's `analysis` section; `metric` is the selection metric."""
    runs = tables["runs"]
    scores = run_scores(runs, metric, settings["train_checkpoints"], settings["oscillation_rise"])
    confidence = settings["confidence"]
    best = best_lr_table(scores, metric, confidence)
    targets = target_losses(scores, settings["target_loss"], settings["target_margin"])
    scores = add_steps_to_target(scores, runs, targets)
    noise = tables.get("gradvar")
    if noise is not None and len(noise):
        noise = noise.drop_duplicates([*RUN_KEYS, "step"])
    return {
        "lr_scores": scores,
        "best_lr": best,
        "lr_sensitivity": lr_sensitivity(scores, settings["tolerance"], confidence, tables.get("status")),
        "scaling": scaling(best, confidence),
        "trajectories": trajectories(runs, best, settings["trajectory_k"], settings["trajectory_points"]),
        "steps_to_target": steps_to_target(scores, noise, runs, confidence),
        "early_stopping": early_stopping(runs, best, settings["overfit_rise"]),
    }
