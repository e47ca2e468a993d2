"""Statistics of the probes' raw draws: bootstrap CIs against the analytic case, z, slopes, pooled means, CSV round trip."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from optbench import gradvar as gv
from optbench import noise
from optbench.tables import read_table, write_table
from tests.test_gradvar import half_squared_error, least_squares

IDENTITY = {"dataset": "planted", "model": "ls", "optimizer": "sgd", "batch_size": 8, "lr": 0.1, "seed": 0}


def raw_checkpoint(model, x, y, ms, draws, entropy):
    """probe_checkpoint's raw tables with a run identity and step, as the probe job writes them."""
    raw = gv.probe_checkpoint(model, x, y, ms, draws=draws, entropy=entropy, loss_fn=half_squared_error)
    where = {**IDENTITY, "step": entropy[-1], "epoch": float(entropy[-1])}
    return (raw["moments"].assign(**where),
            raw["draws"].assign(**{k: where[k] for k in ("optimizer", "batch_size", "lr", "seed", "step")}))


def statistics(moments, draws, confidence=0.95, resamples=999):
    sq = {m: f.sort_values("draw")["sq_error"].to_numpy(float) for m, f in draws.groupby("m")}
    return noise.checkpoint_statistics(moments, sq, confidence, resamples, np.random.default_rng(0))


def test_single_sample_ci_covers_sigma2_and_both_predictions_agree_at_m_1():
    model, x, y, sigma2, _ = least_squares(n=40)
    full = gv.gradient_stats(model, x, y, half_squared_error).flat_grad()
    single = gv.minibatch_errors(model, x, y, full, 1, 2000, torch.Generator().manual_seed(1), half_squared_error)
    table = noise.error_table({1: single.pow(2).sum(1).numpy()}, 40, sigma2, 0.95, 1999, np.random.default_rng(0))
    assert table.loc[0, "ci_low"] <= sigma2 <= table.loc[0, "ci_high"]
    assert table.loc[0, "pred_iid"] == table.loc[0, "pred_fpc"] == pytest.approx(sigma2)


def test_empirical_means_lie_in_their_ci_of_the_corrected_prediction():
    """Over 30 seeded repetitions × 5 m, the 95 % CIs cover σ²/m·(n−m)/(n−1) at about the nominal rate."""
    model, x, y, sigma2, _ = least_squares(n=40)
    covered, covered_fw, iid_covered = [], [], []
    for repeat in range(30):
        table, slope = statistics(*raw_checkpoint(model, x, y, [1, 4, 10, 20, 30], 200, [repeat]))
        moments = table.set_index("m")
        covered += moments["fpc_in_ci"].tolist()
        covered_fw.append(moments["fpc_in_ci_fw"].all())
        iid_covered.append(moments.loc[30, "iid_in_ci_fw"])
    assert np.mean(covered) >= 0.88 and np.mean(covered_fw) >= 0.85  # nominal 0.95 (binomial sd 0.02, 0.04)
    # At m = 30 of n = 40 the tutorial's σ²/m is 3.9× too large: never inside even the family-wise CI.
    assert not any(iid_covered)
    assert (moments["ci_low_fw"] <= moments["ci_low"]).all() and (moments["ci_high"] <= moments["ci_high_fw"]).all()
    assert moments["sigma2"].iloc[0] == pytest.approx(sigma2, rel=1e-12)
    assert moments["b_simple"].iloc[0] == pytest.approx(sigma2 / moments["grad_norm2"].iloc[0])
    assert slope["fpc_passes"] == int(moments["fpc_in_ci_fw"].sum()) and slope["m_count"] == 5
    ratio = moments.loc[30]
    assert ratio["ratio_iid_low"] == pytest.approx(ratio["ci_low"] / ratio["pred_iid"])


def test_a_lower_confidence_narrows_every_interval():
    model, x, y, _, _ = least_squares(n=40)
    raw = raw_checkpoint(model, x, y, [1, 4, 10], 200, [3])
    wide, wide_slope = statistics(*raw, confidence=0.95)
    narrow, narrow_slope = statistics(*raw, confidence=0.8)
    assert ((narrow["ci_high"] - narrow["ci_low"]) < (wide["ci_high"] - wide["ci_low"])).all()
    assert ((narrow["z_high"] - narrow["z_low"]) < (wide["z_high"] - wide["z_low"])).all()
    assert (narrow["confidence"] == 0.8).all() and narrow["confidence_fw"].iloc[0] == pytest.approx(1 - 0.2 / 3)


def test_z_averages_one_and_its_range_covers_it_in_the_analytic_case():
    model, x, y, sigma2, _ = least_squares(n=40)
    full = gv.gradient_stats(model, x, y, half_squared_error).flat_grad()
    zs, inside = [], []
    for repeat in range(60):
        errors = gv.minibatch_errors(model, x, y, full, 5, 40, torch.Generator().manual_seed(repeat),
                                     half_squared_error)
        recorded, sq_errors = gv.error_moments(errors, 40, 5)  # what the probe job writes of these draws
        dof = noise.z_dof(sigma2, recorded["pair_sum"], recorded["pair_count"])
        row = noise.unbiasedness(recorded["mean_error_sq"], sq_errors, 40, 5, sigma2, dof, (0.95,))
        zs.append(row["z"])
        inside.append(row["z_low"] <= row["z"] <= row["z_high"])
    assert abs(np.mean(zs) - 1) < 3 * np.std(zs) / math.sqrt(len(zs))
    assert np.mean(inside) >= 0.85


def test_slope_fit_recovers_minus_one_and_the_corrected_bend():
    n, rng = 3600, np.random.default_rng(0)
    ms = [1, 2, 4, 8, 16, 32, 64, 128, 256]  # 256 > n/20 is left out of the fit
    exact = {m: noise.predictions(2.0, n, m)[1] * rng.exponential(size=4000) for m in ms}
    row = noise.slope_fit(exact, n, 0.95, 1999, rng)
    assert row["fit_points"] == 8
    assert row["slope_low"] <= row["slope_pred_fpc"] <= row["slope_high"]
    assert -1.01 < row["slope_pred_fpc"] < -1.0
    flatter = {m: draws * m**0.2 for m, draws in exact.items()}
    row = noise.slope_fit(flatter, n, 0.95, 1999, rng)
    assert row["slope_high"] < -0.7 and row["slope_low"] > -0.9


def test_analyze_noise_reads_back_its_csv_tables_to_the_same_numbers(tmp_path):
    """The statistics of the probe tables after a CSV round trip equal those of the job's own frames:
    floats round-trip exactly, and the bootstrap is seeded by (seed, run, step), not by row order."""
    model, x, y, _, _ = least_squares(n=40)
    parts = [raw_checkpoint(model, x, y, [1, 2, 8], 64, [0, step]) for step in (3, 9)]
    moments = pd.concat([p[0] for p in parts], ignore_index=True)
    draws = pd.concat([p[1] for p in parts], ignore_index=True)
    direct = noise.analyze_noise(moments, draws, 0.95, 499, seed=7)
    write_table(moments, tmp_path / "m.csv", "probe_moments")
    write_table(draws.sample(frac=1, random_state=0), tmp_path / "d.csv", "probe_draws")  # shuffled rows
    again = noise.analyze_noise(read_table(tmp_path / "m.csv", "probe_moments"),
                                read_table(tmp_path / "d.csv", "probe_draws"), 0.95, 499, seed=7)
    for name in ("gradvar", "gradvar_slopes"):
        pd.testing.assert_frame_equal(direct[name].reset_index(drop=True), again[name].reset_index(drop=True),
                                      check_dtype=False)
    other_seed = noise.analyze_noise(moments, draws, 0.95, 499, seed=8)["gradvar"]
    assert not np.allclose(other_seed["ci_low"], direct["gradvar"]["ci_low"])
    np.testing.assert_array_equal(other_seed["empirical_mean"], direct["gradvar"]["empirical_mean"])


def pooled_input(checkpoints=12, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame([{"optimizer": "sgd", "batch_size": 64, "lr": 0.1, "seed": 0, "step": step, "m": m,
                          "z": 1 + spread * rng.standard_normal(), "ratio_fpc": 1 + spread * rng.standard_normal(),
                          "ratio_iid": 1 + spread * rng.standard_normal(), "empirical_mean": 4.0 / m}
                         for step in range(checkpoints) for m in (1, 2, 100, 1024)])


def test_pooled_means_are_bonferroni_t_intervals():
    table = pooled_input()
    pooled = noise.pooled_means(table, "ratio_fpc", confidence=0.95)
    values = table.loc[table["m"] == 100, "ratio_fpc"].to_numpy()
    half = stats.t.ppf(1 - 0.05 / 4 / 2, 11) * values.std(ddof=1) / math.sqrt(12)
    row = pooled.set_index("m").loc[100]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((values.mean() - half, values.mean() + half))
    assert row["confidence"] == pytest.approx(1 - 0.05 / 4) and row["checkpoints"] == 12
    assert noise.pooled_means(table, "z", confidence=0.9).set_index("m").loc[2, "confidence"] == pytest.approx(0.975)


def test_noise_pooled_has_every_quantity_and_the_halving_ratio():
    table = noise.noise_pooled(pooled_input(), 0.95)
    assert set(table["quantity"]) == {"z", "ratio_fpc", "ratio_iid", "halving"}
    halving = table[table["quantity"] == "halving"].iloc[0]
    assert halving["mean"] == pytest.approx(0.5) and halving["checkpoints"] == 12
