"""The analyses on planted tables whose answer is known (optimum, α, boundary, knee, overfitting curve) and
every derived table against a brute-force loop over the runs."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from optbench import analysis
from optbench.config import RUN_KEYS
from optbench.stats import mean_ci

STEPS = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024])
SGD_GRID = [0.005 * 2**k for k in range(12)]
SETTINGS = {"confidence": 0.95, "train_checkpoints": 3, "tolerance": 0.1, "oscillation_rise": 0.1,
            "overfit_rise": 0.02, "target_loss": "auto", "target_margin": 0.05, "trajectory_k": [4, 16],
            "trajectory_points": 50, "bootstrap_resamples": 999}


# ---------------------------------------------------------------------------------------------
# Planted tables (also used by test_verdicts.py)

def run_rows(optimizer, batch_size, lr, seed, curves: dict, status="ok", steps=STEPS, steps_per_epoch=32):
    """runs.csv rows of one run: `curves` maps split → loss per checkpoint (inf after divergence)."""
    return [{"dataset": "planted", "model": "none", "optimizer": optimizer, "batch_size": batch_size, "lr": lr,
             "seed": seed, "step": int(step), "epoch": step / steps_per_epoch, "split": split, "loss": float(loss),
             "accuracy": math.nan, "status": status, "has_weights": True}
            for split, losses in curves.items() for step, loss in zip(steps, losses)]


def decay(final: float, initial: float = 2.3, tau: float = 10.0) -> np.ndarray:
    """A loss falling from `initial` to `final` with time constant tau steps (flat well before the end)."""
    return final + (initial - final) * np.exp(-STEPS / tau)


def planted_grid(lr_star, grid=SGD_GRID, batch_sizes=(16, 64, 256), seeds=(0, 1, 2), optimizer="sgd",
                 width=0.2, diverge_above=math.inf) -> pd.DataFrame:
    """Runs ending at loss 1 + width·(log2 lr − log2 lr*)² with lr* = lr_star(batch_size, seed): a
    parabola in log lr, so the refined optimum is exactly lr*. LRs above `diverge_above` diverge."""
    rows = []
    for batch_size in batch_sizes:
        for seed in seeds:
            for lr in grid:
                if lr > diverge_above:
                    losses, status = np.r_[2.3, np.full(len(STEPS) - 1, math.inf)], "diverged"
                else:
                    losses = decay(1 + width * (math.log2(lr) - math.log2(lr_star(batch_size, seed))) ** 2)
                    status = "ok"
                rows += run_rows(optimizer, batch_size, lr, seed, {s: losses for s in ("train", "val", "test")},
                                 status, steps_per_epoch=max(1, 4096 // batch_size))
    return pd.DataFrame(rows)


def scores_of(runs: pd.DataFrame, metric="min_val_loss") -> pd.DataFrame:
    scores = analysis.run_scores(runs, metric, SETTINGS["train_checkpoints"], SETTINGS["oscillation_rise"])
    return analysis.mark_near_best(scores, SETTINGS["tolerance"])


# ---------------------------------------------------------------------------------------------
# Best LR and the boundary check

def test_parabola_vertex_with_unequal_spacing_is_the_analytic_vertex():
    x = np.array([0.0, 0.3, 1.0])
    assert analysis.parabola_vertex(x, 3 * (x - 0.37) ** 2 + 1) == pytest.approx(0.37, abs=1e-12)
    # a concave triple keeps the middle point
    assert analysis.parabola_vertex(x, -(x - 0.5) ** 2) == 0.3


def test_planted_optimum_is_recovered_below_grid_spacing():
    grid = sorted(SGD_GRID + [0.03])  # unequal spacing around the optimum
    best = analysis.best_lr_per_seed(scores_of(planted_grid(lambda b, s: 0.0437, grid=grid)), "score")
    assert (~best["censored"]).all()
    assert np.allclose(best["lr_star"], 0.0437, rtol=1e-9)
    assert (best["grid_lr"] == 0.04).all()


@pytest.mark.parametrize("lr_star, side, words", [
    (40.0, "high", "extend the grid above"),
    (0.001, "low", "extend the grid below"),
])
def test_optimum_on_the_grid_edge_is_censored_with_the_way_to_extend(lr_star, side, words):
    best = analysis.best_lr_per_seed(scores_of(planted_grid(lambda b, s: lr_star)), "score")
    assert best["censored"].all() and (best["censor_side"] == side).all()
    assert best["censor_note"].str.contains(words).all()
    assert set(best["lr_star"]) == {max(SGD_GRID) if side == "high" else min(SGD_GRID)}


def test_optimum_beside_a_diverged_or_missing_neighbour_is_censored():
    runs = planted_grid(lambda b, s: 0.3, diverge_above=0.33)
    best = analysis.best_lr_per_seed(scores_of(runs), "score")
    assert (best["grid_lr"] == 0.32).all() and (best["censor_side"] == "high").all()
    assert best["censor_note"].str.contains("0.64 diverged: add LRs between 0.32 and 0.64").all()
    missing = runs[~((runs["lr"] == 0.16) & (runs["seed"] == 1))]  # seed 1 lacks the lower neighbour
    best = analysis.best_lr_per_seed(scores_of(missing), "score").set_index("seed")
    assert best.loc[1, "censor_side"].iloc[0] == "both"
    assert "0.16 is missing" in best.loc[1, "censor_note"].iloc[0]


def test_best_lr_table_has_the_training_objective_and_a_geometric_ci():
    jitter = {0: 0.9, 1: 1.0, 2: 1.1}
    scores = scores_of(planted_grid(lambda b, s: 0.05 * jitter[s]))
    best = analysis.best_lr_table(scores, "min_val_loss")
    table = analysis.best_lr_cells(scores, best, 0.95)
    row = table[table["batch_size"] == 16].iloc[0]
    logs = np.log([0.045, 0.05, 0.055])
    low, high = stats.t.interval(0.95, 2, loc=logs.mean(), scale=logs.std(ddof=1) / math.sqrt(3))
    assert row["lr_star_gmean"] == pytest.approx(math.exp(logs.mean()), rel=1e-9)
    assert (row["lr_star_low"], row["lr_star_high"]) == pytest.approx((math.exp(low), math.exp(high)), rel=1e-9)
    assert np.allclose(best["lr_star_train"], best["lr_star"])  # all splits share the curve here
    assert row["grid_lr"] == 0.04 and not row["censored"] and row["n_seeds"] == 3


# ---------------------------------------------------------------------------------------------
# Per-run scores

def test_run_scores_metric_training_objective_and_oscillation():
    val = np.linspace(2.3, 1.0, len(STEPS))
    val[-1] = 1.2  # ends above its minimum
    train = np.linspace(2.3, 1.0, len(STEPS))
    train[-3:] = [1.0, 2.0, 3.0]
    calm = np.linspace(2.3, 1.0, len(STEPS))
    runs = pd.DataFrame(run_rows("sgd", 16, 0.1, 0, {"train": train, "val": val, "test": val})
                        + run_rows("sgd", 16, 0.2, 0, {"train": calm, "val": calm, "test": calm})
                        + run_rows("sgd", 16, 0.4, 0, {"train": calm, "val": calm, "test": calm}, status="diverged"))
    minimum = scores_of(runs).set_index("lr")
    final = scores_of(runs, "final_val_loss").set_index("lr")
    assert minimum.loc[0.1, "score"] == pytest.approx(val[:-1].min())
    assert final.loc[0.1, "score"] == pytest.approx(1.2)
    assert minimum.loc[0.1, "train_objective"] == pytest.approx(2.0)  # mean of the last 3 checkpoints
    assert minimum.loc[0.1, "train_rise"] == pytest.approx(2.0) and minimum.loc[0.1, "oscillates"]
    assert minimum.loc[0.2, "train_rise"] == 0 and not minimum.loc[0.2, "oscillates"]
    assert math.isinf(minimum.loc[0.4, "score"]) and math.isinf(minimum.loc[0.4, "train_objective"])


# ---------------------------------------------------------------------------------------------
# LR sensitivity

def v_shape_scores(x0: float, grid_x: np.ndarray, diverged_from: float = math.inf) -> pd.DataFrame:
    """Scores 1 + |log10 lr − x0| (x0 on the grid): within 7 % of the best exactly for |log10 lr − x0| ≤ 0.07."""
    rows = [{"optimizer": "sgd", "batch_size": 16, "lr": 10 ** x, "seed": seed,
             "status": "ok" if x < diverged_from else "diverged",
             "score": 1 + abs(x - x0) if x < diverged_from else math.inf, "oscillates": False}
            for x in grid_x for seed in (0, 1, 2)]
    return pd.DataFrame(rows)


def test_width_in_decades_of_the_near_best_range():
    grid_x = np.round(np.arange(-2.0, 0.0001, 0.05), 10)
    widths = analysis.seed_widths(v_shape_scores(-1.0, grid_x), tolerance=0.07)
    assert np.allclose(widths["width_decades"], 0.14, atol=1e-9)  # ends interpolated between grid points
    assert np.allclose(np.log10(widths["lr_low"]), -1.07) and not widths["censored_low"].any()
    # a diverged LR beyond the range: its end is put half-way to it
    widths = analysis.seed_widths(v_shape_scores(-1.0, grid_x, diverged_from=-0.92), tolerance=0.07)
    assert np.allclose(np.log10(widths["lr_high"]), -0.925)
    # the grid's edge inside the range: censored, a lower bound
    widths = analysis.seed_widths(v_shape_scores(-1.95, grid_x), tolerance=0.07)
    assert widths["censored_low"].all() and np.allclose(widths["width_decades"], 0.05 + 0.07)


def test_lr_sensitivity_diverged_share_and_both_halves_of_c9():
    grid = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32]
    rows = []
    for lr in grid:
        for seed in (0, 1, 2):
            diverged = lr == 0.32
            rows.append({"optimizer": "sgd", "batch_size": 16, "lr": lr, "seed": seed,
                         "status": "diverged" if diverged else "ok",
                         "score": math.inf if diverged else 1 + (math.log2(lr / 0.08)) ** 2,
                         "oscillates": lr == 0.16 and seed < 2,
                         "steps_to_target": 100 / lr if lr <= 0.04 else 100 / lr if lr == 0.08 else math.inf})
    scores = pd.DataFrame(rows).assign(test_accuracy=0.5, chosen_epoch=1.0)

    def sensitivity(frame):
        cells = analysis.best_lr_cells(frame, analysis.best_lr_table(frame.assign(train_objective=frame["score"]),
                                                                     "min_val_loss"), 0.95)
        widths = analysis.seed_widths(frame, 0.1)
        return analysis.lr_sensitivity(frame, cells, widths, tolerance=0.1, confidence=0.95).iloc[0]

    table = sensitivity(scores)
    assert table["best_lr"] == 0.08
    assert table["diverged_runs"] == 3 and table["diverged_fraction"] == pytest.approx(3 / 18)
    assert (table["below_pairs"], table["below_slower"]) == (3, 3)
    assert (table["above_lrs"], table["above_unstable"], table["above_diverged"]) == (2, 2, 1)
    # C2: the first LR above the best where most seeds fail, and how far above the best it is
    assert table["nonconverging_lr"] == 0.32 and table["nonconverging_factor"] == pytest.approx(4)
    assert table["grid_factor_above"] == pytest.approx(4)
    # C9b: 0.16 is the first LR above the best outside the tolerance, and 2 of its 3 seeds oscillate
    assert table["too_large_lr"] == 0.16 and table["too_large_unstable"]
    calm = sensitivity(scores.assign(oscillates=False))
    assert calm["too_large_lr"] == 0.16 and not calm["too_large_unstable"]
    # smaller LRs reaching the target faster break half (a)
    faster = scores.assign(steps_to_target=lambda f: np.where(f["lr"] <= 0.08, f["lr"] * 100, np.inf))
    table = sensitivity(faster)
    assert (table["below_pairs"], table["below_slower"]) == (3, 0)


# ---------------------------------------------------------------------------------------------
# Scaling rules

def test_planted_alpha_is_recovered_with_a_ci_from_the_seeds():
    alphas = {0: 0.9, 1: 1.0, 2: 1.1}
    runs = planted_grid(lambda b, s: 0.02 * (b / 16) ** alphas[s])
    best = analysis.best_lr_table(scores_of(runs), "min_val_loss")
    table = analysis.scaling(best, 0.95)
    fit = table[(table["objective"] == "train") & (table["kind"] == "fit")].iloc[0]
    low, high = stats.t.interval(0.95, 2, loc=1.0, scale=0.1 / math.sqrt(3))
    assert fit["alpha"] == pytest.approx(1.0, abs=1e-9)
    assert (fit["alpha_low"], fit["alpha_high"]) == pytest.approx((low, high), abs=1e-9)
    assert fit["contains_linear"] and not fit["contains_sqrt"] and fit["censored"] == 0
    pairs = table[(table["objective"] == "train") & (table["kind"] == "pair")]
    assert list(zip(pairs["m_low"], pairs["m_high"])) == [(16, 64), (64, 256)]
    assert np.allclose(pairs["alpha"], 1.0)


def test_censored_optima_are_counted_in_the_scaling_fit():
    runs = planted_grid(lambda b, s: 0.02 * (b / 16) ** 1.0, diverge_above=0.33)  # lr*(256) = 0.32 beside 0.64
    table = analysis.scaling(analysis.best_lr_table(scores_of(runs), "min_val_loss"), 0.95)
    fit = table[(table["objective"] == "train") & (table["kind"] == "fit")].iloc[0]
    assert fit["censored"] == 3 and fit["censored_m"] == "256" and fit["censored_sides"] == "high"


# ---------------------------------------------------------------------------------------------
# Trajectories

def test_trajectory_distance_favours_the_rule_whose_curve_matches():
    line = lambda epochs, offset=0.0: 2.0 - 0.01 * epochs + offset  # linear in epoch: interpolation is exact
    rows = []
    for batch_size, lr, offset, spe in ((16, 0.1, 0.0, 64), (64, 0.4, 0.0, 16), (64, 0.2, 0.1, 16)):
        losses = line(STEPS / spe, offset)
        rows += run_rows("sgd", batch_size, lr, 0, {s: losses for s in ("train", "val", "test")}, steps_per_epoch=spe)
    runs = pd.DataFrame(rows)
    best = pd.DataFrame({"optimizer": ["sgd"], "batch_size": [16], "seed": [0], "grid_lr": [0.1]})
    table = analysis.trajectories(runs, best, k_values=[4, 16], points=50).set_index(["batch_size", "rule"])
    assert table.loc[(16, "linear"), "distance"] == pytest.approx(0.0, abs=1e-12)
    assert table.loc[(16, "sqrt"), "distance"] == pytest.approx(0.1, abs=1e-12)
    assert table.loc[(16, "linear"), "base_is_best"] and 16 not in set(table["k"])  # no batch 256
    # off the grid: no distance; diverged: infinitely far
    runs = runs[runs["lr"] != 0.2]
    table = analysis.trajectories(runs, best, [4], 50).set_index("rule")
    assert not table.loc["sqrt", "on_grid"] and math.isnan(table.loc["sqrt", "distance"])
    runs.loc[(runs["lr"] == 0.4) & (runs["step"] > 8), "loss"] = math.inf
    assert math.isinf(analysis.trajectories(runs, best, [4], 50).set_index("rule").loc["linear", "distance"])


# ---------------------------------------------------------------------------------------------
# Steps to target and the knee

def test_steps_to_reach_interpolates_in_log_step():
    steps, losses = [0, 10, 100], [3.0, 2.0, 1.0]
    assert analysis.steps_to_reach(steps, losses, 1.5) == pytest.approx(math.sqrt(10 * 100))
    assert analysis.steps_to_reach(steps, losses, 2.5) == pytest.approx(5.0)  # from step 0: linear
    assert analysis.steps_to_reach(steps, losses, 3.0) == 0
    assert math.isinf(analysis.steps_to_reach(steps, losses, 0.5))
    assert math.isinf(analysis.steps_to_reach(steps, [3.0, math.inf, 1.0], 1.5))


def test_knee_of_a_planted_critical_batch_size():
    batch_sizes = np.array([16, 32, 64, 128, 256, 512, 1024])
    assert analysis.fit_knee(batch_sizes, 1000 * (1 + 64 / batch_sizes)) == pytest.approx((64, 1000), rel=1e-4)
    assert math.isinf(analysis.fit_knee(batch_sizes, 1e5 / batch_sizes)[0])  # perfect scaling over the grid
    assert analysis.fit_knee(batch_sizes, np.full(7, 500.0))[0] == 0  # batch size does not help


def test_target_is_reached_by_every_seed_of_every_batch_size():
    # per batch size, the LR whose worst seed is best: 1.05 (B=16, lr 0.2) and 1.3 (B=64, lr 0.1)
    scores = pd.DataFrame({"optimizer": "sgd", "batch_size": [16] * 4 + [64] * 4, "lr": [0.1, 0.1, 0.2, 0.2] * 2,
                           "seed": [0, 1] * 4, "val_min": [1.0, 1.1, 0.8, 1.05, 1.3, 1.25, 1.2, 1.4]})
    assert analysis.target_losses(scores, "auto", 0.05) == {"sgd": pytest.approx(1.3 * 1.05)}
    assert analysis.target_losses(scores, 0.7, 0.05) == {"sgd": 0.7}


def test_steps_to_target_table_fastest_lr_perfect_scaling_and_b_simple():
    rows = []
    for batch_size in (16, 32, 64, 128, 256):
        for lr, slow in ((0.1, 3.0), (0.2, 1.0)):
            for seed in (0, 1, 2):
                steps = slow * 1000 * (1 + 64 / batch_size) * (1 + 0.01 * seed)
                rows.append({"optimizer": "sgd", "batch_size": batch_size, "lr": lr, "seed": seed,
                             "target_loss": 1.45, "steps_to_target": steps, "epochs_to_target": steps / 10})
    scores = pd.DataFrame(rows)
    probe_steps = [0, 64, 128]
    runs = pd.DataFrame(run_rows("sgd", 16, 0.2, 0, {"val": [2.3, 1.5, 1.0]}, steps=probe_steps))
    slopes = pd.DataFrame({"optimizer": "sgd", "batch_size": 16, "lr": 0.2, "seed": 0, "step": probe_steps,
                           "epoch": [0, 2, 4], "b_simple": [10.0, 50.0, 200.0]})
    per_seed = analysis.seed_steps(scores)
    table = analysis.steps_to_target(per_seed, {"sgd": 1.45}, 0.95).set_index("batch_size")
    assert (table["lr"] == 0.2).all()  # the fastest LR
    expected = 1000 * (1 + 64 / 16) * math.exp(np.log([1, 1.01, 1.02]).mean())
    assert table.loc[16, "steps"] == pytest.approx(expected)
    assert table.loc[256, "perfect_scaling_steps"] == pytest.approx(expected / 16)
    assert table.loc[32, "efficiency"] == pytest.approx(math.log(5 / 3) / math.log(2))
    b_simple = analysis.b_simple_near_target(slopes, runs, {"sgd": 1.45})
    knee = analysis.batch_scaling(per_seed, b_simple, {"sgd": 1.45}, 0.95).iloc[0]
    assert knee["knee"] == pytest.approx(64, rel=1e-4) and knee["knee_seeds"] == 3
    assert knee["b_simple"] == pytest.approx(50.0)  # the checkpoint whose validation loss is nearest 1.45
    # efficiency of the first step (16 → 32) and the last (128 → 256), per seed, as in a brute-force loop
    s = lambda b: 1 + 64 / b
    first, last = math.log(s(16) / s(32)) / math.log(2), math.log(s(128) / s(256)) / math.log(2)
    assert knee["efficiency_first"] == pytest.approx(first) and knee["efficiency_last"] == pytest.approx(last)
    assert knee["efficiency_gap"] == pytest.approx(first - last)


# ---------------------------------------------------------------------------------------------
# When to stop

def test_planted_overfitting_curve_is_flagged_with_its_test_gain():
    val = np.array([2.3, 2.0, 1.6, 1.3, 1.1, 1.0, 1.05, 1.1, 1.2, 1.3, 1.4, 1.5])
    train = np.linspace(2.3, 0.2, len(STEPS))
    flat = np.linspace(2.3, 1.0, len(STEPS))
    runs = pd.DataFrame(run_rows("sgd", 16, 0.1, 0, {"train": train, "val": val, "test": val + 0.05})
                        + run_rows("sgd", 16, 0.2, 0, {"train": flat, "val": flat, "test": flat})
                        + run_rows("sgd", 16, 0.4, 0, {"train": val, "val": val, "test": val}))
    best = pd.DataFrame({"optimizer": ["sgd"], "batch_size": [16], "seed": [0], "grid_lr": [0.1]})
    table = analysis.early_stopping(runs, best, overfit_rise=0.02).set_index("lr")
    assert table.loc[0.1, "stop_step"] == STEPS[5] and table.loc[0.1, "overfits"]
    assert table.loc[0.1, "test_gain"] == pytest.approx(1.5 - 1.0)
    assert table.loc[0.1, "at_best_lr"] and not table.loc[0.2, "at_best_lr"]
    assert table.loc[0.2, "stop_step"] == STEPS[-1] and table.loc[0.2, "test_gain"] == 0
    assert not table.loc[0.2, "overfits"]
    assert not table.loc[0.4, "overfits"]  # validation rises, but so does the training loss


def test_analyze_returns_every_table_on_a_planted_grid():
    runs = planted_grid(lambda b, s: 0.02 * (b / 16), diverge_above=2.0)
    tables = analysis.analyze({"runs": runs}, SETTINGS, "min_val_loss")
    assert {"lr_scores", "best_lr", "best_lr_cells", "lr_sensitivity", "scaling", "trajectories",
            "trajectory_summary", "steps_to_target", "batch_scaling", "early_stopping", "stopping_cells",
            "curve_bands", "lr_summary", "lr_picks", "training_drop"} <= set(tables)
    assert all(len(table) for name, table in tables.items() if name != "lr_width_contrasts")  # one optimizer
    sensitivity = tables["lr_sensitivity"]
    assert (sensitivity["diverged_runs"] == 3 * 3).all()  # 2.56, 5.12, 10.24 in each seed


def test_fastest_lr_ignores_runs_that_diverge_after_reaching_the_target():
    scores = pd.DataFrame({"optimizer": "sgd", "batch_size": 16, "lr": [0.1, 0.1, 0.4, 0.4], "seed": [0, 1, 0, 1],
                           "status": ["ok", "ok", "diverged", "ok"], "steps_to_target": [100.0, 120.0, 10.0, 12.0],
                           "epochs_to_target": [1.0, 1.2, 0.1, 0.12], "val_min": [1.0, 1.0, 0.5, 0.9]})
    assert set(analysis.seed_steps(scores)["lr"]) == {0.1}
    assert analysis.target_losses(scores, "auto", 0.0) == {"sgd": pytest.approx(1.0)}  # not the diverged 0.5


# ---------------------------------------------------------------------------------------------
# Derived tables against brute-force loops over the runs

@pytest.fixture(scope="module")
def grid_runs() -> pd.DataFrame:
    """A grid with noise across seeds, one diverged seed and an overfitting validation curve."""
    rng = np.random.default_rng(3)
    rows = []
    for batch_size in (16, 64):
        for lr in SGD_GRID[:6]:
            for seed in (0, 1, 2):
                floor = 1 + 0.2 * (math.log2(lr) - math.log2(0.04)) ** 2 + 0.05 * rng.standard_normal()
                train = decay(floor * 0.8)
                val = decay(floor) + 0.002 * STEPS ** 0.5
                test = val + 0.01 * rng.standard_normal(len(STEPS))
                status = "ok"
                if lr == SGD_GRID[5] and seed == 1:
                    train, val, test = (np.r_[c[:4], np.full(len(STEPS) - 4, math.inf)] for c in (train, val, test))
                    status = "diverged"
                rows += run_rows("sgd", batch_size, lr, seed, {"train": train, "val": val, "test": test}, status)
    frame = pd.DataFrame(rows)
    frame["accuracy"] = np.where(np.isfinite(frame["loss"]), 1 / (1 + frame["loss"]), math.nan)
    return frame


@pytest.mark.parametrize("metric", ["min_val_loss", "final_val_loss", "min_train_loss", "final_train_loss"])
def test_selection_metric_and_its_checkpoint_match_a_brute_force_loop(grid_runs, metric):
    split = metric.split("_")[1]
    scores = scores_of(grid_runs, metric).set_index(RUN_KEYS)
    for key, run in grid_runs.groupby(RUN_KEYS):
        rows = run[run["split"] == split].sort_values("step").to_dict("records")
        got = scores.loc[key]
        if run["status"].iloc[0] != "ok":
            assert got["score"] == math.inf and math.isnan(got["chosen_step"])
            continue
        chosen = min(rows, key=lambda r: (r["loss"], r["step"])) if metric.startswith("min") else rows[-1]
        assert got["score"] == chosen["loss"] and got["chosen_step"] == chosen["step"]
        test = run[(run["split"] == "test") & (run["step"] == chosen["step"])]
        assert got["test_accuracy"] == test["accuracy"].item() and got["test_loss"] == test["loss"].item()


def test_best_cell_lr_is_the_lowest_seed_mean_among_lrs_where_no_seed_diverged(grid_runs):
    scores = scores_of(grid_runs)
    cells = analysis.best_lr_cells(scores, analysis.best_lr_table(scores, "min_val_loss"), 0.95)
    for row in cells.itertuples():
        cell = scores[(scores["batch_size"] == row.batch_size)]
        means = {lr: seeds["score"].mean() for lr, seeds in cell.groupby("lr") if (seeds["status"] == "ok").all()}
        expected = min(means, key=means.get)
        assert row.grid_lr == expected
        chosen = cell[cell["lr"] == expected]
        assert row.test_accuracy == pytest.approx(chosen["test_accuracy"].mean())
        assert row.stop_epoch == pytest.approx(chosen["chosen_epoch"].median())


def test_a_diverged_neighbour_or_the_grid_edge_censors_the_cell_optimum_as_it_does_a_seeds():
    base = {"optimizer": "sgd", "batch_size": 32, "seed": 0, "test_accuracy": 0.5, "chosen_epoch": 1.0,
            "lr": [0.1, 0.2, 0.4, 0.8]}
    scores = pd.DataFrame({**base, "score": [1.0, 0.5, 0.7, math.inf], "status": ["ok", "ok", "ok", "diverged"]})
    cells = lambda frame: analysis.best_lr_cells(frame, analysis.best_lr_table(
        frame.assign(train_objective=frame["score"]), "min_val_loss"), 0.95).iloc[0]
    best = cells(scores)
    assert best["grid_lr"] == 0.2 and not best["censored"]          # the diverged 0.8 is never chosen
    scores.loc[scores["lr"] == 0.4, ["score", "status"]] = [math.inf, "diverged"]
    best = cells(scores)
    assert best["grid_lr"] == 0.2 and best["censored"] and best["censor_side"] == "high"  # its neighbour diverged
    per_seed = analysis.best_lr_per_seed(scores, "score").iloc[0]
    assert per_seed["censored"] and per_seed["censor_side"] == best["censor_side"]        # the same rule
    scores = pd.DataFrame({**base, "score": [1.0, 0.9, 0.8, 0.1], "status": "ok"})
    assert cells(scores)["censor_side"] == "high"                  # on the grid's edge
    assert math.isnan(cells(scores.assign(score=math.inf, status="diverged"))["grid_lr"])


def test_curve_bands_are_median_min_max_across_seeds(grid_runs):
    bands = analysis.curve_bands(grid_runs)
    for _, band in bands.sample(30, random_state=0).iterrows():
        values = grid_runs[(grid_runs["split"] == band["split"]) & (grid_runs["batch_size"] == band["batch_size"])
                           & (grid_runs["lr"] == band["lr"]) & (grid_runs["step"] == band["step"])]["loss"]
        finite = values[np.isfinite(values)].to_numpy()
        assert band["seeds"] == len(finite)
        if len(finite):
            assert band["median"] == pytest.approx(np.median(finite))
            assert (band["low"], band["high"]) == (finite.min(), finite.max())


def test_training_drop_ci_is_bounded_by_100_percent():
    """Three seeds with very different drops: a t interval on the drop itself would pass 100 %."""
    rows = []
    for seed, end in ((0, 0.02), (1, 0.6), (2, 1.5)):
        losses = np.r_[2.3, np.linspace(2.0, end, len(STEPS) - 1)]
        rows += run_rows("sgd", 16, 0.1, seed, {"train": losses, "val": losses, "test": losses})
    scores = scores_of(pd.DataFrame(rows))
    cells = analysis.best_lr_cells(scores, analysis.best_lr_table(scores, "min_val_loss"), 0.95)
    drop = analysis.training_drops(scores, cells, 0.95).iloc[0]
    naive = mean_ci(scores["train_drop"], 0.95)
    assert naive[2] > 1  # the unbounded interval
    assert drop["drop_high"] < 1 and drop["drop_low"] < drop["drop"] < drop["drop_high"]
    logs = np.log(scores["train_objective"] / scores["initial_train"])
    low, high = stats.t.interval(0.95, 2, loc=logs.mean(), scale=logs.std(ddof=1) / math.sqrt(3))
    assert (drop["drop_low"], drop["drop_high"]) == pytest.approx((1 - math.exp(high), 1 - math.exp(low)))


def test_trajectory_summary_counts_and_medians_over_the_same_pairs():
    trajectories = pd.DataFrame([
        {"optimizer": "sgd", "batch_size": 16, "lr": 0.1, "seed": seed, "k": 4, "rule": rule, "on_grid": True,
         "base_is_best": True, "distance": distance}
        for seed, (linear, sqrt) in enumerate([(0.1, 0.3), (0.2, 0.1), (0.4, 0.5), (math.inf, 0.2)])
        for rule, distance in (("linear", linear), ("sqrt", sqrt))]
        + [{"optimizer": "sgd", "batch_size": 64, "lr": 0.1, "seed": 0, "k": 4, "rule": "linear", "on_grid": True,
            "base_is_best": True, "distance": 0.0},  # no √k partner on the grid: not a pair
           {"optimizer": "sgd", "batch_size": 64, "lr": 0.1, "seed": 0, "k": 4, "rule": "sqrt", "on_grid": False,
            "base_is_best": True, "distance": math.nan}])
    row = analysis.trajectory_summary(trajectories).iloc[0]
    assert (row["base_runs"], row["pairs"], row["linear_closer"], row["sqrt_closer"]) == (5, 4, 2, 2)
    assert row["median_linear"] == pytest.approx(0.3) and row["median_sqrt"] == pytest.approx(0.25)
    assert row["closer"] == "neither"  # 2 of 4 is not more than half
    assert row["median_difference"] == pytest.approx(np.median([-0.2, 0.1, -0.1, math.inf]))


def test_stopping_cells_and_overall_summarise_the_best_lr_runs(grid_runs):
    scores = scores_of(grid_runs)
    best = analysis.best_lr_table(scores, "min_val_loss")
    stops = analysis.early_stopping(grid_runs, best, 0.02)
    cells = analysis.stopping_cells(stops, 0.95).set_index("batch_size")
    for batch_size, cell in cells.iterrows():
        chosen = stops[(stops["batch_size"] == batch_size) & stops["at_best_lr"] & (stops["status"] == "ok")]
        assert cell["runs"] == len(chosen)
        assert cell["test_gain"] == pytest.approx(chosen["test_gain"].mean())
    overall = analysis.stopping_overall(stops, 0.95).iloc[0]
    assert overall["runs"] == cells["runs"].sum()


def test_lr_picks_name_each_lr_once_in_order(grid_runs):
    scores = scores_of(grid_runs)
    cells = analysis.best_lr_cells(scores, analysis.best_lr_table(scores, "min_val_loss"), 0.95)
    picks = analysis.lr_picks(scores, cells)
    mine = picks[picks["batch_size"] == 16]
    assert list(mine["label"]) == ["smallest lr", "best lr", "largest lr that trained", "smallest lr that diverged"]
    assert list(mine["lr"]) == [SGD_GRID[0], 0.04, SGD_GRID[4], SGD_GRID[5]]
    assert list(mine["diverged"]) == [False, False, False, True]


def test_cost_totals_equal_the_benchmark_files_sums():
    benchmarks = pd.DataFrame({"rule": ["train", "train", "evaluate", "grad_variance"], "job": list("abcd"),
                               "s": [10.5, 20.25, 4.0, 30.0], "cpu_time": [10.0, 19.0, 3.5, 29.0],
                               "max_rss": [500.0, 800.0, 300.0, 900.0]})
    status = pd.DataFrame({"train_seconds": [3.0, 4.5, 7.25], "steps_done": [10, 10, 5],
                           "optimizer": "sgd", "batch_size": [16, 16, 64]})
    cost = analysis.cost_by_rule(benchmarks, status).set_index("rule")
    assert cost.loc["train", "total_s"] == 30.75 and cost.loc["train", "jobs"] == 2
    assert cost.loc["all", "total_s"] == benchmarks["s"].sum() and cost.loc["all", "jobs"] == 4
    assert cost.loc["train", "loop_s"] == 14.75 and math.isnan(cost.loc["evaluate", "loop_s"])
    cells = analysis.cost_cells(status).set_index("batch_size")
    assert cells.loc[16, "loop_seconds"] == 7.5 and cells.loc[64, "ms_per_step_median"] == 1450


def test_lr_summary_is_the_median_over_the_seeds_that_trained(grid_runs):
    scores = scores_of(grid_runs)
    summary = analysis.lr_summary(scores).set_index(["batch_size", "lr"])
    row = summary.loc[(16, SGD_GRID[5])]
    trained = scores[(scores["batch_size"] == 16) & (scores["lr"] == SGD_GRID[5]) & (scores["status"] == "ok")]
    assert (row["seeds"], row["seeds_trained"]) == (3, 2)
    assert row["score_median"] == pytest.approx(trained["score"].median())
    assert row["val_gap_median"] == pytest.approx((trained["val_final"] - trained["val_min"]).median())


def test_hyperparameter_importance_finds_the_factor_that_moves_the_metric():
    """Planted: log score = 0.5·(log2 lr − log2 0.04)² (lr matters), a small batch-size effect, no seed effect."""
    rows = []
    for batch_size, shift in ((16, 0.0), (64, 0.1)):
        for lr in SGD_GRID[:6]:
            for seed in (0, 1, 2):
                rows.append({"optimizer": "sgd", "batch_size": batch_size, "lr": lr, "seed": seed, "status": "ok",
                             "score": math.exp(0.5 * (math.log2(lr) - math.log2(0.04)) ** 2 + shift)})
    rows.append({"optimizer": "sgd", "batch_size": 16, "lr": 10.0, "seed": 0, "status": "diverged",
                 "score": math.inf})
    table = analysis.hyperparameter_importance(pd.DataFrame(rows))
    mine = table[table["scope"] == "sgd"].set_index("factor")
    values = np.log([r["score"] for r in rows[:-1]])
    lr_means = pd.Series(values).groupby([r["lr"] for r in rows[:-1]]).transform("mean")
    assert mine.loc["lr", "share"] == pytest.approx(((lr_means - values.mean()) ** 2).mean() / values.var())
    assert mine.loc["lr", "share"] > 0.9 and mine.loc["seed", "share"] == pytest.approx(0, abs=1e-12)
    assert mine.loc["rest", "share"] == pytest.approx(1 - mine.drop("rest")["share"].sum())
    assert (mine["diverged_runs"] == 1).all() and (mine["runs"] == 36).all()
