"""Every statistic of the run tables: selection, best LR, sensitivity, scaling, trajectories, steps, stopping, cost."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import optimize

from optbench.config import CELL_KEYS, RUN_KEYS
from optbench.stats import geometric_ci, mean_ci, median_range, relative_drop_ci

SEED_KEYS = ["optimizer", "batch_size", "seed"]
# selection metric → (split, which checkpoint): the same names as config `selection.metric`
METRICS = {"min_val_loss": ("val", "min"), "final_val_loss": ("val", "final"),
           "min_train_loss": ("train", "min"), "final_train_loss": ("train", "final")}
LR_MATCH = 1e-6  # relative tolerance when looking an LR up on the grid (k·lr is computed in floating point)
MOST = 0.5       # "in most seeds": a share of seeds above this


def lr_index(grid, lr: float) -> int | None:
    """Position of `lr` on a sorted LR grid, or None when it is not on it."""
    hits = np.flatnonzero(np.isclose(np.asarray(grid, dtype=float), lr, rtol=LR_MATCH, atol=0))
    return int(hits[0]) if len(hits) else None


def same_lr(a, b) -> bool:
    return bool(np.isclose(a, b, rtol=LR_MATCH, atol=0))


# ---------------------------------------------------------------------------------------------
# Per-run numbers

def run_scores(runs: pd.DataFrame, metric: str, train_checkpoints: int, oscillation_rise: float) -> pd.DataFrame:
    """lr_scores.csv: one row per run — the selection metric, the checkpoint it picks, and the run's other numbers.

    score: the selection metric; inf for a diverged run, which is never selected. chosen_step /
    chosen_epoch: the checkpoint the metric picks (the earliest of equal minima), where test_loss and
    test_accuracy are read (reported, never used to choose). val_min and its epoch: the validation
    minimum (the early-stopping point); val_final: the validation loss at the end; val_gap = val_final
    − val_min. train_objective: eval-mode loss over the whole training set averaged over the last
    `train_checkpoints` checkpoints (damps spikes; inf if any is non-finite); train_mid: the training
    loss at the last checkpoint of the budget's first half. train_rise: the largest rise of the
    training loss above its running minimum, relative to the minimum; a run `oscillates` when it
    exceeds `oscillation_rise`.
    """
    split, which = METRICS[metric]
    rows = []
    for key, run in runs.sort_values([*RUN_KEYS, "step"], kind="stable").groupby(RUN_KEYS, sort=True):
        status = run["status"].iloc[0]
        diverged = status != "ok"
        curves = {name: part.reset_index(drop=True) for name, part in run.groupby("split")}
        chosen = curves[split]["loss"].to_numpy(float)
        pick = _pick(chosen, which)
        val, train, test = curves["val"], curves["train"], curves["test"]
        val_loss, train_loss = val["loss"].to_numpy(float), train["loss"].to_numpy(float)
        val_pick = _pick(val_loss, "min")
        epochs, steps = train["epoch"].to_numpy(float), train["step"].to_numpy(float)
        last = train_loss[-train_checkpoints:]
        half = np.flatnonzero(epochs <= epochs[-1] / 2)
        positive = steps > 0
        chosen_step = curves[split]["step"].iloc[pick] if pick is not None and not diverged else math.nan
        at_test = test[test["step"] == chosen_step]
        rows.append({
            **dict(zip(RUN_KEYS, key)), "status": status,
            "score": math.inf if diverged or pick is None else float(chosen[pick]),
            "chosen_step": chosen_step,
            "chosen_epoch": curves[split]["epoch"].iloc[pick] if pick is not None and not diverged else math.nan,
            "test_loss": float(at_test["loss"].iloc[0]) if len(at_test) else math.nan,
            "test_accuracy": float(at_test["accuracy"].iloc[0]) if len(at_test) else math.nan,
            "val_min": float(val_loss[val_pick]) if val_pick is not None else math.inf,
            "val_min_epoch": float(val["epoch"].iloc[val_pick]) if val_pick is not None else math.nan,
            "val_final": float(val_loss[-1]),
            "initial_train": float(train_loss[0]),
            "train_mid": float(train_loss[half[-1]]) if len(half) else math.nan,
            "train_objective": float(last.mean()) if np.isfinite(last).all() and not diverged else math.inf,
            "train_rise": math.inf if diverged else _max_rise(train_loss),
            "final_epoch": float(epochs[-1]),
            "steps_per_epoch": float(np.median(steps[positive] / epochs[positive])) if positive.any() else math.nan,
        })
    table = pd.DataFrame(rows)
    table["val_gap"] = np.where(table["status"] == "ok", table["val_final"] - table["val_min"], math.nan)
    table["oscillates"] = table["train_rise"] > oscillation_rise
    # relative drops of the training loss (C1): from initialisation to the end, and over the second half
    with np.errstate(invalid="ignore", divide="ignore"):
        table["train_drop"] = 1 - table["train_objective"] / table["initial_train"]
        table["train_late_drop"] = 1 - table["train_objective"] / table["train_mid"]
    return table


def mark_near_best(scores: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """scores with `near_best`: the run's selection metric is within (1 + tolerance) × the best of its
    optimizer × batch size × seed (the same threshold as the near-best width, seed_widths)."""
    best = scores.groupby(SEED_KEYS)["score"].transform("min")
    return scores.assign(near_best=np.isfinite(scores["score"]) & (scores["score"] <= best * (1 + tolerance)))


def _pick(losses: np.ndarray, which: str) -> int | None:
    """Index of the checkpoint a metric picks: the earliest finite minimum, or the last if finite."""
    finite = np.isfinite(losses)
    if which == "min":
        return int(np.nanargmin(np.where(finite, losses, np.nan))) if finite.any() else None
    return len(losses) - 1 if finite[-1] else None


def _max_rise(losses: np.ndarray) -> float:
    """max_t L_t / min_{s ≤ t} L_s − 1 over a finite loss curve (0 for a monotone decrease)."""
    losses = losses[np.isfinite(losses)]
    if len(losses) == 0:
        return math.inf
    return float(np.max(losses / np.minimum.accumulate(losses)) - 1)


def training_drops(scores: pd.DataFrame, cells: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """training_drop.csv: per optimizer × batch size, at the cell's best grid LR (best_lr_cells), the
    relative drop of the training loss from initialisation to the end (1 − L_end/L_0) and over the
    budget's second half (1 − L_end/L_mid), each with a t CI over seeds taken on the log loss ratio
    and mapped back (relative_drop_ci: never above 100 %)."""
    rows = []
    for cell in cells.itertuples():
        seeds = scores[(scores["optimizer"] == cell.optimizer) & (scores["batch_size"] == cell.batch_size)]
        row = {"optimizer": cell.optimizer, "batch_size": cell.batch_size, "confidence": confidence,
               "lr": cell.grid_lr, "grid_seeds": int(seeds["seed"].nunique())}
        mine = seeds[np.isclose(seeds["lr"], cell.grid_lr, rtol=LR_MATCH, atol=0)] if np.isfinite(cell.grid_lr) \
            else seeds.iloc[:0]
        for name, start in (("drop", "initial_train"), ("late_drop", "train_mid")):
            drop = relative_drop_ci(mine["train_objective"], mine[start], confidence)
            row.update({name: drop[0], f"{name}_low": drop[1], f"{name}_high": drop[2], f"{name}_seeds": drop[3]})
        rows.append(row)
    return pd.DataFrame(rows, columns=[*CELL_KEYS, "confidence", "lr", "grid_seeds", "drop", "drop_low", "drop_high",
                                       "drop_seeds", "late_drop", "late_drop_low", "late_drop_high",
                                       "late_drop_seeds"])


def lr_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """lr_summary.csv: per optimizer × batch size × learning rate, medians over the seeds that trained
    (not diverged) of the selection metric, the epoch of the validation minimum and how far the final
    validation loss ends above it — the lines of the sensitivity and early-stopping figures."""
    ok = scores[scores["status"] == "ok"]
    grouped = ok.groupby([*CELL_KEYS, "lr"], sort=True)
    table = grouped.agg(seeds_trained=("seed", "size"), score_median=("score", "median"),
                        val_min_epoch_median=("val_min_epoch", "median"), val_gap_median=("val_gap", "median"))
    every = scores.groupby([*CELL_KEYS, "lr"], sort=True)["seed"].size().rename("seeds")
    return table.join(every, how="right").fillna({"seeds_trained": 0}).reset_index()[
        [*CELL_KEYS, "lr", "seeds", "seeds_trained", "score_median", "val_min_epoch_median", "val_gap_median"]]


def curve_bands(runs: pd.DataFrame) -> pd.DataFrame:
    """curve_bands.csv: median, min and max across seeds per optimizer × batch size × lr × split × checkpoint.

    Non-finite losses (after divergence) count as missing, so a band stops where its runs diverged;
    `seeds` counts the finite values behind each point.
    """
    frame = runs.assign(loss=runs["loss"].where(np.isfinite(runs["loss"])))
    grouped = frame.groupby(["optimizer", "batch_size", "lr", "split", "step"], sort=True)
    bands = grouped.agg(epoch=("epoch", "first"), median=("loss", "median"), low=("loss", "min"),
                        high=("loss", "max"), seeds=("loss", "count"))
    return bands.reset_index()


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


def censoring(grid: np.ndarray, values: np.ndarray, i: int) -> tuple[list[str], list[str]]:
    """The tuning playbook's boundary check of the optimum grid[i] among `values` (NaN: missing run,
    inf: diverged): the sides (low, high) on which the true optimum may lie off the grid, and how to
    extend it. One rule for the per-seed and the per-cell best LR."""
    sides, notes = [], []
    for side, j, beyond in (("low", i - 1, "below"), ("high", i + 1, "above")):
        if j < 0 or j >= len(grid):
            sides.append(side)
            notes.append(f"best at the grid's {'lowest' if j < 0 else 'highest'} LR {grid[i]:g}: extend the grid "
                         f"{beyond}")
        elif not np.isfinite(values[j]):
            what = "is missing" if np.isnan(values[j]) else "diverged"
            sides.append(side)
            notes.append(f"the neighbour {grid[j]:g} {what}: add LRs between {min(grid[i], grid[j]):g} "
                         f"and {max(grid[i], grid[j]):g}")
    return sides, notes


def _side(sides: list[str]) -> str:
    return "both" if len(sides) == 2 else "".join(sides)


def best_lr_per_seed(scores: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per optimizer × batch size × seed: the grid LR minimising `column`, refined by a parabola in
    log lr through it and its two neighbours, and the boundary check (`censoring`).

    A censored optimum is not refined (lr_star = the grid LR); `censor_side` says which way the
    true optimum may lie (low, high, both) and `censor_note` how to extend the grid.
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
            sides, notes = censoring(grid, values, i)
            censored = bool(sides)
            lr_star = grid[i] if censored else 10 ** parabola_vertex(np.log10(grid[i - 1:i + 2]), values[i - 1:i + 2])
            rows.append({**row, "grid_lr": float(grid[i]), "value": float(values[i]), "lr_star": float(lr_star),
                         "censored": censored, "censor_side": _side(sides), "censor_note": "; ".join(notes)})
    return pd.DataFrame(rows)


def best_lr_table(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """best_lr.csv: one row per optimizer × batch size × seed, lr* by the selection metric
    (`lr_star`, ...) and by the training objective (`*_train`, what the scaling rules concern)."""
    parts = []
    for column, suffix in (("score", ""), ("train_objective", "_train")):
        best = best_lr_per_seed(scores, column).rename(columns={"value": "score"})
        parts.append(best.rename(columns={c: c + suffix for c in best.columns if c not in SEED_KEYS}))
    table = parts[0].merge(parts[1], on=SEED_KEYS)
    table.insert(3, "metric", metric)
    return table


def best_lr_cells(scores: pd.DataFrame, best: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """best_lr_cells.csv: per optimizer × batch size, the best grid LR and what it achieves.

    grid_lr: the lowest seed-mean selection metric (a diverged seed scores inf, so an LR where any
    seed diverged is never chosen), with the same boundary check as each seed's (`censoring`).
    Beside it, over that LR's seeds: the metric and the test accuracy at the checkpoint the metric
    picks (mean, t CI), the median stopping epoch; and over the per-seed refined lr* of best_lr.csv
    (both objectives): geometric mean, CI, censored count and sides.
    """
    rows = []
    for key, cell in scores.groupby(CELL_KEYS, sort=True):
        grid = np.sort(cell["lr"].unique())
        per_lr = cell.groupby("lr")["score"].mean().reindex(grid).to_numpy(float)
        row = {**dict(zip(CELL_KEYS, key)), "confidence": confidence, "grid_lrs": len(grid)}
        if np.isfinite(per_lr).any():
            i = int(np.nanargmin(np.where(np.isfinite(per_lr), per_lr, np.nan)))
            sides, notes = censoring(grid, per_lr, i)
            seeds = cell[np.isclose(cell["lr"], grid[i], rtol=LR_MATCH, atol=0)]
            score, accuracy = mean_ci(seeds["score"], confidence), mean_ci(seeds["test_accuracy"], confidence)
            row.update(grid_lr=float(grid[i]), censored=bool(sides), censor_side=_side(sides),
                       censor_note="; ".join(notes), score=score[0], score_low=score[1], score_high=score[2],
                       test_accuracy=accuracy[0], test_accuracy_low=accuracy[1], test_accuracy_high=accuracy[2],
                       n_seeds=score[3], stop_epoch=float(seeds["chosen_epoch"].median()))
        else:
            row.update(grid_lr=math.nan, censored=True, censor_side="both",
                       censor_note="every LR diverged in some seed: extend the grid below", score=math.nan,
                       score_low=math.nan, score_high=math.nan, test_accuracy=math.nan,
                       test_accuracy_low=math.nan, test_accuracy_high=math.nan, n_seeds=0, stop_epoch=math.nan)
        mine = best[(best["optimizer"] == key[0]) & (best["batch_size"] == key[1])]
        for suffix in ("", "_train"):
            lr_star = geometric_ci(mine[f"lr_star{suffix}"].dropna(), confidence)
            cut = mine[mine[f"censored{suffix}"].astype(bool)]
            row.update({f"lr_star_gmean{suffix}": lr_star[0], f"lr_star_low{suffix}": lr_star[1],
                        f"lr_star_high{suffix}": lr_star[2], f"lr_star_seeds{suffix}": lr_star[3],
                        f"n_censored{suffix}": len(cut),
                        f"censored_sides{suffix}": "/".join(sorted(set(cut[f"censor_side{suffix}"])))})
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# LR sensitivity (C2, C9)

def seed_widths(scores: pd.DataFrame, tolerance: float, column: str = "score") -> pd.DataFrame:
    """lr_widths.csv: per optimizer × batch size × seed, the LR range, in decades, around the best LR
    whose `column` stays within (1 + tolerance) × the best.

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
    return pd.DataFrame(rows, columns=["optimizer", "batch_size", "seed", "best_lr", "threshold", "lr_low", "lr_high",
                                       "width_decades", "censored_low", "censored_high"])


def width_contrasts(widths: pd.DataFrame, optimizers: list[str], confidence: float) -> pd.DataFrame:
    """lr_width_contrasts.csv: for each ordered pair (first, second) of optimizers in config order
    and each batch size both have, second − first near-best width, paired by seed (t CI), and
    whether either width is censored by the grid's edge (then only a bound)."""
    rows = []
    for i, first in enumerate(optimizers):
        for second in optimizers[i + 1:]:
            a, b = (widths[widths["optimizer"] == o] for o in (first, second))
            for batch_size in sorted(set(a["batch_size"]) & set(b["batch_size"])):
                pair = {o: f[f["batch_size"] == batch_size].set_index("seed") for o, f in ((first, a), (second, b))}
                seeds = pair[first].index.intersection(pair[second].index)
                delta = mean_ci(pair[second].loc[seeds, "width_decades"] - pair[first].loc[seeds, "width_decades"],
                                confidence)
                censored = {o: bool((pair[o]["censored_low"] | pair[o]["censored_high"]).any()) for o in pair}
                rows.append({"first": first, "second": second, "batch_size": batch_size, "confidence": confidence,
                             "difference": delta[0], "difference_low": delta[1], "difference_high": delta[2],
                             "n_seeds": delta[3], "first_censored": censored[first],
                             "second_censored": censored[second]})
    return pd.DataFrame(rows, columns=["first", "second", "batch_size", "confidence", "difference", "difference_low",
                                       "difference_high", "n_seeds", "first_censored", "second_censored"])


def lr_sensitivity(scores: pd.DataFrame, cells: pd.DataFrame, widths: pd.DataFrame, tolerance: float,
                   confidence: float, reasons: pd.DataFrame | None = None) -> pd.DataFrame:
    """lr_sensitivity.csv: per optimizer × batch size, the near-best width (mean, CI over seeds), how
    many runs did not converge, and what happens on either side of the best grid LR (best_lr_cells).

    Per LR: `bad` = most seeds did not converge (diverged or never below the initial loss);
    `unstable` = most seeds did not converge or oscillate; near-best = seed-mean metric within
    (1 + tolerance) × the best. Above the best: `nonconverging_lr` the smallest LR that is bad
    (C2) and its factor over the best; `too_large_lr` the smallest LR that is not near-best and
    whether it is unstable (C9b); `above_unstable` the count of unstable LRs. Below the best:
    `below_slower` counts the adjacent LR pairs in which the lower LR needs more steps to the target
    validation loss (seed median; never reaching it counts as more), of `below_pairs` pairs where at
    least one reaches it (C9a). `grid_factor_above`: the grid's top LR ÷ the best.
    """
    if reasons is not None and "reason" in reasons:
        scores = scores.merge(reasons[[*RUN_KEYS, "reason"]], on=RUN_KEYS, how="left")
    best_of = cells.set_index(CELL_KEYS)
    rows = []
    for key, cell in scores.groupby(CELL_KEYS, sort=True):
        grid = np.sort(cell["lr"].unique())
        seeds = widths[(widths["optimizer"] == key[0]) & (widths["batch_size"] == key[1])]
        width = mean_ci(seeds["width_decades"], confidence)
        per_lr = cell.groupby("lr").agg(score=("score", "mean"), oscillating=("oscillates", "mean"),
                                        bad=("status", lambda s: (s != "ok").mean()))
        per_lr["unstable"] = np.maximum(per_lr["oscillating"], per_lr["bad"]) > MOST
        per_lr["bad"] = per_lr["bad"] > MOST
        if "steps_to_target" in cell:
            per_lr["steps"] = cell.groupby("lr")["steps_to_target"].median()
        best = best_of.loc[key, "grid_lr"] if key in best_of.index else math.nan
        row = {**dict(zip(CELL_KEYS, key)), "tolerance": tolerance, "confidence": confidence,
               "n_seeds": int(cell["seed"].nunique()), "width_seeds": width[3], "n_lrs": len(grid),
               "grid_decades": float(np.log10(grid[-1] / grid[0])),
               "width": width[0], "width_low": width[1], "width_high": width[2],
               "width_censored_low": bool(seeds["censored_low"].any()),
               "width_censored_high": bool(seeds["censored_high"].any()),
               "runs": len(cell), "diverged_runs": int((cell["status"] != "ok").sum()),
               "diverged_fraction": float((cell["status"] != "ok").mean()),
               "oscillating_runs": int((cell["oscillates"] & (cell["status"] == "ok")).sum()),
               "best_lr": best}
        if "reason" in cell:
            for reason in ("nonfinite", "no_progress"):
                row[f"{reason}_runs"] = int((cell["reason"] == reason).sum())
        if np.isfinite(best):
            below, above = per_lr[per_lr.index < best * (1 - LR_MATCH)], per_lr[per_lr.index > best * (1 + LR_MATCH)]
            best_score = per_lr["score"][np.isclose(per_lr.index, best, rtol=LR_MATCH)].iloc[0]
        else:
            below = above = per_lr.iloc[:0]
            best_score = math.nan
        slower = pairs = 0
        if "steps" in per_lr and np.isfinite(best):
            steps = per_lr.loc[per_lr.index <= best * (1 + LR_MATCH), "steps"].fillna(math.inf).to_numpy(float)
            for low, high in zip(steps[:-1], steps[1:]):
                if np.isfinite(low) or np.isfinite(high):
                    pairs += 1
                    slower += bool(low > high)
        bad_above = above[above["bad"]]
        too_large = above[~(above["score"] <= best_score * (1 + tolerance))]
        row.update({
            "below_lrs": len(below), "below_pairs": pairs, "below_slower": slower,
            "above_lrs": len(above), "above_unstable": int(above["unstable"].sum()),
            "above_diverged": int(above["bad"].sum()),
            "nonconverging_lr": float(bad_above.index[0]) if len(bad_above) else math.nan,
            "nonconverging_factor": float(bad_above.index[0] / best) if len(bad_above) else math.nan,
            "grid_factor_above": float(grid[-1] / best) if np.isfinite(best) else math.nan,
            "too_large_lr": float(too_large.index[0]) if len(too_large) else math.nan,
            "too_large_unstable": bool(too_large["unstable"].iloc[0]) if len(too_large) else False,
        })
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
                censored = part[part["censored" + suffix].astype(bool)]
                rows.append({
                    "optimizer": optimizer, "objective": objective, "kind": kind, "m_low": min(span),
                    "m_high": max(span), "n_batch_sizes": len(span), "n_seeds": alpha[3],
                    "grid_seeds": int(part["seed"].nunique()), "confidence": confidence,
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


TRAJECTORY_COLUMNS = ["optimizer", "batch_size", "lr", "seed", "k", "rule", "scaled_batch_size", "scaled_lr",
                      "on_grid", "base_is_best", "scaled_status", "distance"]


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
        is_best = same_lr(best_lr.get((optimizer, batch_size, seed), math.nan), lr)
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
    return pd.DataFrame(rows, columns=TRAJECTORY_COLUMNS)


def trajectory_summary(trajectories: pd.DataFrame) -> pd.DataFrame:
    """trajectory_summary.csv: per optimizer × k, over the base runs at their seed's best grid LR
    whose two scaled runs (LR ×k and LR ×√k) are both on the grid — the pairs — how often each rule's
    curve is the closer one, the median distance of each over those same pairs, and the median of the
    paired difference (linear − √k; < 0: linear closer). `closer` is the rule closer in more than
    half of the pairs (the sign of that median), else "neither". `base_runs` counts every best-LR
    base run, with or without a pair."""
    columns = ["optimizer", "k", "base_runs", "pairs", "linear_closer", "sqrt_closer", "ties", "median_linear",
               "median_sqrt", "min_linear", "max_linear", "min_sqrt", "max_sqrt", "median_difference", "closer"]
    base = trajectories[trajectories["base_is_best"].astype(bool)]
    rows = []
    for (optimizer, k), group in base.groupby(["optimizer", "k"], sort=True):
        wide = group.set_index(["batch_size", "lr", "seed", "rule"])["distance"].unstack("rule")
        wide = wide.reindex(columns=["linear", "sqrt"])
        paired = wide.dropna()
        linear, sqrt = paired["linear"].to_numpy(float), paired["sqrt"].to_numpy(float)
        with np.errstate(invalid="ignore"):
            difference = np.where(linear == sqrt, 0.0, linear - sqrt)  # inf − inf: a tie, not NaN
        lin_closer, sqrt_closer = int((linear < sqrt).sum()), int((sqrt < linear).sum())
        spread = {rule: median_range(values) if len(values) else (math.nan,) * 4
                  for rule, values in (("linear", linear), ("sqrt", sqrt))}
        rows.append({"optimizer": optimizer, "k": k, "base_runs": len(wide), "pairs": len(paired),
                     "linear_closer": lin_closer, "sqrt_closer": sqrt_closer,
                     "ties": len(paired) - lin_closer - sqrt_closer,
                     "median_linear": _median(linear), "median_sqrt": _median(sqrt),
                     "min_linear": spread["linear"][1], "max_linear": _max(linear),
                     "min_sqrt": spread["sqrt"][1], "max_sqrt": _max(sqrt),
                     "median_difference": _median(difference),
                     "closer": "linear" if 2 * lin_closer > len(paired) else
                     "sqrt" if 2 * sqrt_closer > len(paired) else "neither"})
    return pd.DataFrame(rows, columns=columns)


def _median(values: np.ndarray) -> float:
    """Median that keeps inf (a diverged scaled run is infinitely far), NaN when empty."""
    return float(np.median(values)) if len(values) else math.nan


def _max(values: np.ndarray) -> float:
    return float(np.max(values)) if len(values) else math.nan


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
    """steps_per_seed.csv: per optimizer × batch size × seed, steps to target at the cell's fastest
    LR, the LR whose seed-geometric-mean steps is smallest among those that every seed reaches
    without diverging later (Shallue et al. 2018)."""
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


def b_simple_near_target(slopes: pd.DataFrame | None, runs: pd.DataFrame, targets: dict[str, float]) -> pd.DataFrame:
    """Per optimizer: B_simple = σ²/||∇f||² (gradvar_slopes.csv) at each probe run's checkpoint whose
    validation loss is closest to the target (geometric mean over the optimizer's probe runs)."""
    columns = ["optimizer", "b_simple", "b_simple_probes", "b_simple_epoch", "b_simple_val_loss"]
    if slopes is None or slopes.empty:
        return pd.DataFrame(columns=columns)
    val = runs[runs["split"] == "val"][[*RUN_KEYS, "step", "loss"]].rename(columns={"loss": "val_loss"})
    probes = slopes.merge(val, on=[*RUN_KEYS, "step"], how="left")
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


def steps_to_target(per_seed: pd.DataFrame, targets: dict[str, float], confidence: float) -> pd.DataFrame:
    """steps_to_target.csv: per optimizer × batch size, steps and epochs to the target validation
    loss at the fastest LR (geometric mean and CI over seeds), the perfect-scaling reference (steps
    ∝ 1/B from the smallest batch size) and the scaling efficiency from the previous batch size
    (log steps saved ÷ log batch growth: 1 = perfect, 0 = no gain)."""
    rows = []
    for optimizer, frame in per_seed.groupby("optimizer", sort=True):
        previous = reference = None
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
                "efficiency": efficiency})
    return pd.DataFrame(rows)


def batch_scaling(per_seed: pd.DataFrame, b_simple: pd.DataFrame, targets: dict[str, float],
                  confidence: float) -> pd.DataFrame:
    """batch_scaling.csv: per optimizer, how steps to target scale with the batch size.

    knee: B_crit of S = S_min(1 + B_crit/B) fitted per seed (needs 3 batch sizes reached), geometric
    mean and CI over seeds, with the count of seeds scaling perfectly over the grid (B_crit = inf).
    efficiency_first / efficiency_last: per seed, log steps saved ÷ log batch growth over the first
    and the last batch-size step (mean over seeds), and their difference's t CI (C6: diminishing
    returns when it is positive). B_simple near the target from the probes, when there are any.
    """
    rows = []
    b_simple = b_simple.set_index("optimizer")
    for optimizer, frame in per_seed.groupby("optimizer", sort=True):
        wide = frame.pivot(index="seed", columns="batch_size", values="steps").sort_index(axis=1)
        reached = wide.columns[np.isfinite(wide.to_numpy(float)).all(axis=0)]
        knees = np.asarray([fit_knee(wide.columns, row)[0] for _, row in wide.iterrows()
                            if len(wide.columns) >= 3 and np.isfinite(row.to_numpy(float)).all()], dtype=float)
        knee = geometric_ci(knees[np.isfinite(knees)], confidence)
        infinite = int(np.isinf(knees).sum())
        gap, first, last = (math.nan, math.nan, math.nan, 0), math.nan, math.nan
        if len(wide.columns) >= 3 and len(reached) == len(wide.columns):
            b = np.log(np.asarray(wide.columns, dtype=float))
            logs = np.log(wide.to_numpy(float))
            efficiency = -(logs[:, 1:] - logs[:, :-1]) / (b[1:] - b[:-1])
            first, last = float(efficiency[:, 0].mean()), float(efficiency[:, -1].mean())
            gap = mean_ci(efficiency[:, 0] - efficiency[:, -1], confidence)
        rows.append({
            "optimizer": optimizer, "target_loss": targets[optimizer], "confidence": confidence,
            "batch_sizes": len(wide.columns), "batch_sizes_reached": len(reached), "n_seeds": len(wide),
            "knee": math.inf if infinite and not knee[3] else knee[0],
            "knee_low": math.inf if infinite and not knee[3] else knee[1],
            "knee_high": math.inf if infinite else knee[2],
            "knee_seeds": len(knees), "knee_infinite": infinite,
            "efficiency_first": first, "efficiency_last": last, "efficiency_gap": gap[0],
            "efficiency_gap_low": gap[1], "efficiency_gap_high": gap[2], "efficiency_seeds": gap[3],
            "b_simple": b_simple["b_simple"].get(optimizer, math.nan),
            "b_simple_probes": int(b_simple["b_simple_probes"].get(optimizer, 0)),
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
            "at_best_lr": same_lr(best_lr.get(key[:2] + key[3:], math.nan), key[2]),
            "stop_step": int(stop["step"]), "stop_epoch": float(stop["epoch"]), "final_epoch": float(end["epoch"]),
            "val_stop": stop["val"], "val_final": end["val"], "train_stop": stop["train"],
            "train_final": end["train"], "test_stop": stop["test"], "test_final": end["test"],
            "test_gain": end["test"] - stop["test"] if ok else math.nan,
            "overfits": bool(ok and end["val"] > stop["val"] * (1 + overfit_rise) and end["train"] < stop["train"]),
        })
    return pd.DataFrame(rows)


def stopping_cells(stops: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """stopping_cells.csv: per optimizer × batch size, over the non-diverged runs at each seed's best
    grid LR: the median stopping epoch of the budget, mean validation loss at the stop and at the
    end, the test loss gained by stopping (mean, t CI) and how many runs overfit."""
    chosen = stops[stops["at_best_lr"].astype(bool) & (stops["status"] == "ok")]
    rows = []
    for key, group in chosen.groupby(CELL_KEYS, sort=True):
        gain = mean_ci(group["test_gain"], confidence)
        rows.append({**dict(zip(CELL_KEYS, key)), "confidence": confidence, "runs": len(group),
                     "stop_epoch": float(group["stop_epoch"].median()), "final_epoch": float(group["final_epoch"].max()),
                     "val_stop": float(group["val_stop"].mean()), "val_final": float(group["val_final"].mean()),
                     "test_gain": gain[0], "test_gain_low": gain[1], "test_gain_high": gain[2],
                     "overfit_runs": int(group["overfits"].astype(bool).sum())})
    return pd.DataFrame(rows, columns=[*CELL_KEYS, "confidence", "runs", "stop_epoch", "final_epoch", "val_stop",
                                       "val_final", "test_gain", "test_gain_low", "test_gain_high", "overfit_runs"])


def stopping_overall(stops: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """stopping_overall.csv: stopping_cells' numbers over every non-diverged best-LR run of the grid (one row)."""
    chosen = stops[stops["at_best_lr"].astype(bool) & (stops["status"] == "ok")]
    gain = mean_ci(chosen["test_gain"], confidence)
    return pd.DataFrame([{"confidence": confidence, "runs": len(chosen),
                          "stop_epoch": float(chosen["stop_epoch"].median()) if len(chosen) else math.nan,
                          "final_epoch": float(chosen["final_epoch"].median()) if len(chosen) else math.nan,
                          "test_gain": gain[0], "test_gain_low": gain[1], "test_gain_high": gain[2],
                          "overfit_runs": int(chosen["overfits"].astype(bool).sum())}])


def lr_picks(scores: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """lr_picks.csv: per optimizer × batch size, the learning rates that show claim C9 — the smallest,
    the best (best_lr_cells), the largest whose seeds all finished, and the smallest that diverged in
    some seed — one row each, an LR listed once under its first label."""
    best_of = cells.set_index(CELL_KEYS)["grid_lr"]
    rows = []
    for key, cell in scores.groupby(CELL_KEYS, sort=True):
        ok = cell.groupby("lr")["status"].agg(lambda s: bool((s == "ok").all()))
        picks = [("smallest lr", ok.index.min()), ("best lr", best_of.get(key, math.nan)),
                 ("largest lr that trained", ok[ok].index.max() if ok.any() else math.nan),
                 ("smallest lr that diverged", ok[~ok].index.min() if (~ok).any() else math.nan)]
        seen: list[float] = []
        for label, lr in picks:
            if np.isfinite(lr) and not any(same_lr(lr, other) for other in seen):
                seen.append(lr)
                rows.append({**dict(zip(CELL_KEYS, key)), "label": label, "lr": float(lr),
                             "diverged": not bool(ok.get(lr, True))})
    return pd.DataFrame(rows, columns=[*CELL_KEYS, "label", "lr", "diverged"])


# ---------------------------------------------------------------------------------------------
# Which hyperparameter matters (the sweep view)

FACTORS = ["optimizer", "batch_size", "lr", "seed"]


def hyperparameter_importance(scores: pd.DataFrame) -> pd.DataFrame:
    """hyperparameter_importance.csv: the share of the variance of the selection metric (log, over the runs
    that did not diverge) that each hyperparameter explains on its own — Var(E[log score | h]) / Var(log
    score), the main effects of a functional ANOVA on the grid — within each optimizer (batch size, lr,
    seed) and over all runs, where the learning rates differ per optimizer and so count within it:
    lr's share there is Var(E[· | optimizer, lr]) − Var(E[· | optimizer]). `rest` = 1 − Σ shares:
    interactions (the lr optimum moving with the batch size, say) and noise. Diverged runs are counted
    and left out: their metric is infinite."""
    rows = []
    ok = scores[(scores["status"] == "ok") & np.isfinite(scores["score"]) & (scores["score"] > 0)]
    scopes = [("all", ok)] + [(optimizer, frame) for optimizer, frame in ok.groupby("optimizer", sort=False)]
    for scope, frame in scopes:
        values = pd.Series(np.log(frame["score"].to_numpy(float)), index=frame.index)
        total = float(values.var(ddof=0)) if len(values) > 1 else math.nan

        def explained(*keys):
            means = values.groupby([frame[k] for k in keys]).transform("mean")
            return float(((means - values.mean()) ** 2).mean() / total) if total > 0 else math.nan

        shares = {"batch_size": explained("batch_size"), "seed": explained("seed")}
        if scope == "all":
            shares["optimizer"] = explained("optimizer")
            shares["lr"] = explained("optimizer", "lr") - shares["optimizer"]
        else:
            shares["lr"] = explained("lr")
        runs = int((scores["optimizer"] == scope).sum()) if scope != "all" else len(scores)
        for factor in [f for f in FACTORS if f in shares] + ["rest"]:
            share = shares[factor] if factor != "rest" else (1 - sum(shares.values()) if total > 0 else math.nan)
            rows.append({"scope": scope, "factor": factor, "share": share, "runs": len(frame),
                         "diverged_runs": runs - len(frame)})
    return pd.DataFrame(rows, columns=["scope", "factor", "share", "runs", "diverged_runs"])


# ---------------------------------------------------------------------------------------------
# Cost

def cost_by_rule(benchmarks: pd.DataFrame, status: pd.DataFrame | None = None) -> pd.DataFrame:
    """cost.csv: per rule, from Snakemake's benchmark files: jobs, total and per-job wall time, CPU time
    and the largest peak memory of a job; `total_s` is the plain sum of the files' `s` column. The
    train row's `loop_s` is the training-loop time of its runs (Σ train_seconds of run_status.csv: a
    bundled run holds its share of its bundle's loop); the last row, rule "all", sums every rule."""
    columns = ["rule", "jobs", "total_s", "median_s", "max_s", "cpu_s", "peak_rss_mb", "loop_s"]
    if benchmarks.empty:
        return pd.DataFrame(columns=columns)
    summary = benchmarks.groupby("rule", sort=False).agg(
        jobs=("s", "size"), total_s=("s", "sum"), median_s=("s", "median"), max_s=("s", "max"),
        cpu_s=("cpu_time", "sum"), peak_rss_mb=("max_rss", "max")).reset_index()
    summary["loop_s"] = math.nan
    if status is not None:
        summary.loc[summary["rule"] == "train", "loop_s"] = float(status["train_seconds"].sum())
    total = {"rule": "all", "jobs": int(summary["jobs"].sum()), "total_s": float(benchmarks["s"].sum()),
             "median_s": float(benchmarks["s"].median()), "max_s": float(benchmarks["s"].max()),
             "cpu_s": float(benchmarks["cpu_time"].sum()), "peak_rss_mb": float(benchmarks["max_rss"].max()),
             "loop_s": summary["loop_s"].sum(min_count=1)}
    return pd.concat([summary, pd.DataFrame([total])], ignore_index=True)[columns]


def cost_cells(status: pd.DataFrame) -> pd.DataFrame:
    """cost_cells.csv: per optimizer × batch size, the training-loop time of its runs (run_status.csv).

    A bundled run's train_seconds is its share of the bundle's loop time (each epoch's time split
    equally among the members training in it), so a cell's `loop_seconds` — the sum over its runs —
    is the time its bundles spent in the training loop; `run_seconds_median` and `ms_per_step_median`
    describe one run.
    """
    frame = status.assign(ms_per_step=1000 * status["train_seconds"] / status["steps_done"].where(
        status["steps_done"] > 0))
    rows = []
    for key, cell in frame.groupby(CELL_KEYS, sort=True):
        rows.append({**dict(zip(CELL_KEYS, key)), "runs": len(cell), "loop_seconds": float(cell["train_seconds"].sum()),
                     "run_seconds_median": float(cell["train_seconds"].median()),
                     "ms_per_step_median": float(cell["ms_per_step"].median())})
    return pd.DataFrame(rows, columns=[*CELL_KEYS, "runs", "loop_seconds", "run_seconds_median",
                                       "ms_per_step_median"])


# ---------------------------------------------------------------------------------------------

def analyze(tables: dict[str, pd.DataFrame], settings: dict, metric: str,
            optimizers: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Every analysis table from the run tables (runs, optional status, optional gradvar_slopes and
    benchmarks) and the config's `analysis` section; `metric` is the selection metric, `optimizers`
    the grid's optimizers in config order (for the pairwise width contrasts)."""
    runs = tables["runs"]
    confidence = settings["confidence"]
    scores = run_scores(runs, metric, settings["train_checkpoints"], settings["oscillation_rise"])
    scores = mark_near_best(scores, settings["tolerance"])
    best = best_lr_table(scores, metric)
    cells = best_lr_cells(scores, best, confidence)
    targets = target_losses(scores, settings["target_loss"], settings["target_margin"])
    scores = add_steps_to_target(scores, runs, targets)
    widths = seed_widths(scores, settings["tolerance"])
    per_seed = seed_steps(scores)
    trajectory = trajectories(runs, best, settings["trajectory_k"], settings["trajectory_points"])
    # One target for every optimizer (the highest of their own, so all reach it): what compares knees across them.
    common = {o: max(targets.values()) for o in targets} if targets else {}
    per_seed_common = seed_steps(add_steps_to_target(scores.drop(columns=["target_loss", "steps_to_target",
                                                                          "epochs_to_target"]), runs, common))
    stops = early_stopping(runs, best, settings["overfit_rise"])
    order = optimizers or list(dict.fromkeys(scores["optimizer"]))
    out = {
        "lr_scores": scores,
        "best_lr": best,
        "best_lr_cells": cells,
        "training_drop": training_drops(scores, cells, confidence),
        "curve_bands": curve_bands(runs),
        "lr_summary": lr_summary(scores),
        "lr_widths": widths,
        "lr_width_contrasts": width_contrasts(widths, [o for o in order if o in set(scores["optimizer"])],
                                              confidence),
        "lr_sensitivity": lr_sensitivity(scores, cells, widths, settings["tolerance"], confidence,
                                         tables.get("status")),
        "lr_picks": lr_picks(scores, cells),
        "hyperparameter_importance": hyperparameter_importance(scores),
        "scaling": scaling(best, confidence),
        "trajectories": trajectory,
        "trajectory_summary": trajectory_summary(trajectory),
        "steps_per_seed": per_seed,
        "steps_to_target": steps_to_target(per_seed, targets, confidence),
        "batch_scaling": batch_scaling(per_seed, b_simple_near_target(tables.get("gradvar_slopes"), runs, targets),
                                       targets, confidence),
        "batch_scaling_common": batch_scaling(per_seed_common, b_simple_near_target(tables.get("gradvar_slopes"),
                                                                                    runs, common), common, confidence),
        "early_stopping": stops,
        "stopping_cells": stopping_cells(stops, confidence),
        "stopping_overall": stopping_overall(stops, confidence),
    }
    if "status" in tables:
        out["cost_cells"] = cost_cells(tables["status"])
    if "benchmarks" in tables:
        out["cost"] = cost_by_rule(tables["benchmarks"], tables.get("status"))
    return out
