"""The critical-batch estimators on analytic cases: a quadratic with known H and Σ, planted lr*(B) curves, planted
trajectories."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from optbench import critical
from tests.test_analysis import STEPS, run_rows


def quadratic(n=9, d=4, seed=0):
    """Per-sample gradients g_i of a quadratic model and its Hessian H (symmetric positive definite): then
    Σ = (1/n) Σ (g_i − G)(g_i − G)ᵀ, and tr(HΣ), GᵀHG have closed forms."""
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n, d)) + np.array([0.5, -0.2, 0.1, 0.3])[:d]
    a = rng.normal(size=(d, d))
    h = a @ a.T + d * np.eye(d)
    mean = g.mean(0)
    sigma = (g - mean).T @ (g - mean) / n
    return g, h, mean, sigma


def test_the_without_replacement_factor_is_exact_over_every_batch():
    g, h, mean, sigma = quadratic()
    n, m = len(g), 3
    values = [float((g[list(b)].mean(0) - mean) @ h @ (g[list(b)].mean(0) - mean))
              for b in itertools.combinations(range(n), m)]
    assert np.mean(values) == pytest.approx(np.trace(h @ sigma) * critical.without_replacement_factor(n, m),
                                            rel=1e-12)


def hessian_tables(g, h, m, draws, seed=0, scale_h=1.0):
    """probe_hessian / probe_hessian_draws as the probe job writes them, from fresh draws without replacement."""
    rng = np.random.default_rng(seed)
    n, mean = len(g), g.mean(0)
    h = h * scale_h
    e_h_e = []
    for _ in range(draws):
        e = g[rng.choice(n, m, replace=False)].mean(0) - mean
        e_h_e.append(float(e @ h @ e))
    sigma2 = float(((g - mean) ** 2).sum(1).mean())
    identity = {"dataset": "q", "model": "q", "optimizer": "sgd", "batch_size": 8, "lr": 0.1, "seed": 0}
    checkpoints = pd.DataFrame([{**identity, "step": 5, "epoch": 1.0, "n": n, "m": m, "draws": draws,
                                 "g_h_g": float(mean @ h @ mean), "sigma2": sigma2,
                                 "grad_norm2": float(mean @ mean)}])
    draws_table = pd.DataFrame({"optimizer": "sgd", "batch_size": 8, "lr": 0.1, "seed": 0, "step": 5,
                                "draw": np.arange(draws), "e_h_e": e_h_e})
    return checkpoints, draws_table


def test_hessian_noise_scale_recovers_the_closed_form_within_its_ci():
    g, h, mean, sigma = quadratic(n=60, d=4, seed=1)
    checkpoints, draws = hessian_tables(g, h, m=8, draws=4000)
    row = critical.hessian_noise_scale(checkpoints, draws, 0.95, 999, seed=0).iloc[0]
    trace = np.trace(h @ sigma)
    assert row["trace_h_sigma_low"] <= trace <= row["trace_h_sigma_high"]
    assert row["trace_h_sigma"] == pytest.approx(trace, rel=0.05)
    assert row["b_noise"] == pytest.approx(trace / (mean @ h @ mean), rel=0.05)
    assert row["b_noise_low"] <= trace / (mean @ h @ mean) <= row["b_noise_high"]
    assert row["b_simple"] == pytest.approx(np.trace(sigma) / (mean @ mean), rel=1e-12)
    assert row["curvature"] == "positive"
    # H ∝ I: B_noise = B_simple exactly (McCandlish et al. 2018, eq. 2.9's premise)
    checkpoints, draws = hessian_tables(g, np.eye(4), m=8, draws=4000)
    row = critical.hessian_noise_scale(checkpoints, draws, 0.95, 999, seed=0).iloc[0]
    assert row["b_noise_low"] <= row["b_simple"] <= row["b_noise_high"]


def test_negative_curvature_leaves_b_noise_undefined():
    g, h, mean, sigma = quadratic(n=30, seed=2)
    checkpoints, draws = hessian_tables(g, h, m=4, draws=200, scale_h=-1.0)
    row = critical.hessian_noise_scale(checkpoints, draws, 0.95, 499, seed=0).iloc[0]
    assert math.isnan(row["b_noise"]) and row["curvature"] == "nonpositive GᵀHG"
    assert row["trace_h_sigma"] < 0  # reported, not hidden


@pytest.mark.parametrize("form, noise", [("mccandlish", 120.0), ("surge", 300.0)])
def test_lr_fits_recover_a_planted_b_noise_and_beat_the_power_law(form, noise):
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(3):
        for b in (16, 32, 64, 128, 256, 512, 1024):
            lr = critical.predict_lr(form, noise, 0.4, [b])[0] * math.exp(0.02 * rng.standard_normal())
            rows.append({"optimizer": "x", "batch_size": b, "seed": seed, "lr_star_train": lr,
                         "censored_train": False})
    fit = critical.lr_noise_scale(pd.DataFrame(rows), {"x": form}, 0.95).iloc[0]
    assert fit["b_noise_low"] <= noise <= fit["b_noise_high"] and fit["b_noise"] == pytest.approx(noise, rel=0.15)
    assert fit["cv_gain_low"] > 0 and fit["b_noise_censored"] == 0


def test_a_pure_power_law_is_not_mistaken_for_a_saturating_one():
    rows = [{"optimizer": "x", "batch_size": b, "seed": seed, "lr_star_train": 0.01 * b * (1 + 0.01 * seed),
             "censored_train": False} for seed in range(3) for b in (16, 32, 64, 128, 256)]
    fit = critical.lr_noise_scale(pd.DataFrame(rows), {"x": "mccandlish"}, 0.95).iloc[0]
    assert fit["b_noise_censored"] == 3 and math.isnan(fit["b_noise"])  # B_noise beyond the grid: the linear regime


def test_malladi_gain_and_noise_floor_from_planted_curves():
    def losses(offset, per_epoch):  # a loss linear in the epoch: the same curve whatever the batch size
        curve = 2.3 - 0.01 * STEPS / per_epoch + offset
        return {s: curve for s in ("train", "val", "test")}

    rows = []
    for seed, wobble in enumerate((0.0, 0.01, 0.02)):
        rows += run_rows("adam", 256, 0.004, seed, losses(wobble, 14), steps_per_epoch=14)
        rows += run_rows("adam_malladi_k4", 64, 0.002, seed, losses(wobble + 0.005, 56), steps_per_epoch=56)
        rows += run_rows("adam", 64, 0.002, seed, losses(wobble + 0.2, 56), steps_per_epoch=56)
    variants = [{"name": "adam_malladi_k4", "optimizer": "adam", "k": 4, "base_batch_size": 256, "base_lr": 0.004,
                 "batch_size": 64, "lr": 0.002}]
    table = critical.malladi_distances(pd.DataFrame(rows), variants, 50, 0.95)
    seeds = table[table["kind"] == "seed"]
    assert seeds["full"].to_numpy() == pytest.approx([0.005] * 3) and seeds["lr_only"].to_numpy() == pytest.approx(
        [0.2] * 3)
    summary = table[table["kind"] == "summary"].iloc[0]
    assert summary["gain"] == pytest.approx(0.195) and summary["floor"] == pytest.approx(np.mean([0.01, 0.02, 0.01]))
