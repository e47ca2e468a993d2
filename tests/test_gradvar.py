"""Gradient noise: per-sample norms against brute force, σ² and E||e||² against closed forms, z, verdicts."""
import copy
import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from optbench import gradvar as gv
from optbench.config import ConfigError, prepare_config
from optbench.model import make_mlp
from tests.conftest import snakemake


def half_squared_error(outputs, targets):
    """Least-squares per-sample loss f_i = ½(w·x_i + b − y_i)²."""
    return 0.5 * (outputs.squeeze(1) - targets) ** 2


def brute_force(model, x, y, loss_fn):
    """Per-sample gradients one sample at a time: the oracle for norms, ∇f and σ²."""
    params = dict((k, p) for k, p in model.named_parameters() if p.requires_grad)
    per_sample = {k: [] for k in params}
    for i in range(len(x)):
        grads = torch.autograd.grad(loss_fn(model(x[i:i + 1]), y[i:i + 1]).sum(), list(params.values()))
        for k, g in zip(params, grads):
            per_sample[k].append(g.flatten())
    return {k: torch.stack(v) for k, v in per_sample.items()}  # name → n × P_k


def assert_matches_brute_force(stats_, model, x, y, loss_fn, rtol=1e-10):
    per_sample = brute_force(model, x, y, loss_fn)
    for name, grads in per_sample.items():
        torch.testing.assert_close(stats_.sq_norms[name], grads.pow(2).sum(1), rtol=rtol, atol=0)
        torch.testing.assert_close(stats_.grad[name].flatten(), grads.mean(0), rtol=rtol, atol=1e-14)
    flat = torch.cat(list(per_sample.values()), dim=1)
    sigma2 = (flat - flat.mean(0)).pow(2).sum(1).mean().item()
    assert stats_.sigma2 == pytest.approx(sigma2, rel=rtol)


def classification_data(n=23, features=12, classes=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, classes, (n,), generator=generator)


class TwiceShared(nn.Module):
    """One Linear applied twice: the per-sample product of norms no longer holds for it."""

    def __init__(self):
        super().__init__()
        self.shared, self.head = nn.Linear(12, 12), nn.Linear(12, 4)

    def forward(self, x):
        return self.head(torch.tanh(self.shared(torch.tanh(self.shared(x)))))


MODELS = {  # name → (model factory, parameters expected to take the vmap fallback)
    "mlp": (lambda: make_mlp(12, [9, 7], 4), []),
    "mlp_inplace_relu": (lambda: nn.Sequential(nn.Linear(12, 9), nn.ReLU(inplace=True), nn.Linear(9, 4)), []),
    "conv1d": (lambda: nn.Sequential(nn.Unflatten(1, (1, 12)), nn.Conv1d(1, 3, 3), nn.ReLU(inplace=True),
                                     nn.Flatten(), nn.Linear(30, 4)), ["1.weight", "1.bias"]),
    "linear_on_3d": (lambda: nn.Sequential(nn.Unflatten(1, (4, 3)), nn.Linear(3, 5), nn.ReLU(), nn.Flatten(),
                                           nn.Linear(20, 4)), ["1.weight", "1.bias"]),
    "shared_linear": (TwiceShared, ["shared.weight", "shared.bias"]),
}


@pytest.mark.parametrize("name", MODELS)
def test_norm_trick_and_vmap_fallback_equal_brute_force(name):
    factory, expected_fallback = MODELS[name]
    torch.manual_seed(0)
    model = factory().double().eval()
    x, y = classification_data()
    fast = gv.gradient_stats(model, x, y, chunk_size=10)  # chunks of 10, 10, 3 samples
    assert fast.fallback == expected_fallback
    assert_matches_brute_force(fast, model, x, y, gv.cross_entropy_per_sample)
    # Everything through vmap(grad), in sub-chunks of a few samples: same numbers.
    slow = gv.gradient_stats(model, x, y, chunk_size=10, use_linear_identity=False, fallback_elements=200)
    assert slow.fallback == [k for k, p in model.named_parameters()]
    for key in fast.sq_norms:
        torch.testing.assert_close(fast.sq_norms[key], slow.sq_norms[key], rtol=1e-10, atol=0)
    assert fast.loss == pytest.approx(gv.cross_entropy_per_sample(model(x), y).mean().item(), rel=1e-12)


def test_norm_trick_in_float32_agrees_to_1e_5():
    torch.manual_seed(1)
    model = make_mlp(12, [9, 7], 4).eval()
    x, y = classification_data()
    fast = gv.gradient_stats(model, x.float(), y)
    per_sample = brute_force(model.double(), x, y, gv.cross_entropy_per_sample)
    for name, grads in per_sample.items():
        torch.testing.assert_close(fast.sq_norms[name], grads.pow(2).sum(1), rtol=1e-5, atol=1e-12)


def least_squares(n=40, d=3, seed=0):
    """Fixed data and weights for f_i = ½(w·x_i + b − y_i)²; σ² then has a closed form."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, d)), rng.normal(size=n)
    model = nn.Linear(d, 1).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor(rng.normal(size=(1, d))))
        model.bias.fill_(0.3)
    w, b = model.weight.detach().numpy()[0], 0.3
    residual = x @ w + b - y
    per_sample = residual[:, None] * np.hstack([x, np.ones((n, 1))])  # ∇f_i = r_i·(x_i, 1)
    sigma2 = np.mean(residual**2 * (np.sum(x**2, 1) + 1)) - np.sum(per_sample.mean(0) ** 2)
    return model, torch.tensor(x), torch.tensor(y), sigma2, per_sample


def test_sigma2_of_least_squares_equals_its_closed_form():
    model, x, y, sigma2, per_sample = least_squares()
    result = gv.gradient_stats(model, x, y, half_squared_error, chunk_size=16)
    assert result.sigma2 == pytest.approx(sigma2, rel=1e-12)
    assert result.grad_norm2 == pytest.approx(np.sum(per_sample.mean(0) ** 2), rel=1e-12)


def test_expected_error_is_the_corrected_prediction_over_all_batches():
    """Exhaustive over every batch of m = 3 from n = 7: E||e||² = σ²/m·(n−m)/(n−1) exactly, not σ²/m."""
    _, _, _, sigma2, per_sample = least_squares(n=7)
    full = per_sample.mean(0)
    errors = [np.sum((per_sample[list(batch)].mean(0) - full) ** 2)
              for batch in itertools.combinations(range(7), 3)]
    iid, fpc = gv.predictions(sigma2, 7, 3)
    assert np.mean(errors) == pytest.approx(fpc, rel=1e-12)
    assert iid == pytest.approx(fpc * 6 / 4)


def test_batches_are_fresh_uniform_draws_without_replacement():
    """One-hot inputs make m·g_B the indicator of the batch: no repeats inside a batch, and
    consecutive batches overlap by m²/n on average (slices of one permutation would not overlap)."""
    n, m, draws = 20, 10, 400
    model = nn.Linear(n, 1, bias=False).double()
    nn.init.zeros_(model.weight)
    x, y = torch.eye(n, dtype=torch.float64), -torch.ones(n, dtype=torch.float64)  # ∇f_i = e_i
    full = torch.full((n,), 1.0 / n, dtype=torch.float64)
    errors = gv.minibatch_errors(model, x, y, full, m, draws, torch.Generator().manual_seed(0), half_squared_error)
    membership = (errors + full) * m
    assert torch.allclose(membership, membership.round()) and set(membership.round().unique().tolist()) == {0, 1}
    overlap = (membership[1:] * membership[:-1]).sum(1)
    assert overlap.mean().item() == pytest.approx(m * m / n, abs=0.3)
    counts = membership.sum(0).numpy()
    assert stats.chisquare(counts).pvalue > 1e-3
    again = gv.minibatch_errors(model, x, y, full, m, draws, torch.Generator().manual_seed(0), half_squared_error)
    assert torch.equal(errors, again)


def test_full_batch_has_no_error_and_single_samples_average_sigma2():
    model, x, y, sigma2, _ = least_squares(n=40)
    full = gv.gradient_stats(model, x, y, half_squared_error).flat_grad()
    whole = gv.minibatch_errors(model, x, y, full, 40, 5, torch.Generator().manual_seed(0), half_squared_error)
    assert whole.pow(2).sum(1).max().item() < 1e-25 * sigma2
    single = gv.minibatch_errors(model, x, y, full, 1, 2000, torch.Generator().manual_seed(1), half_squared_error)
    table = gv.error_table({1: single.pow(2).sum(1).numpy()}, 40, sigma2, 0.95, 1999, np.random.default_rng(0))
    assert table.loc[0, "ci_low"] <= sigma2 <= table.loc[0, "ci_high"]
    assert table.loc[0, "pred_iid"] == table.loc[0, "pred_fpc"] == pytest.approx(sigma2)


def test_empirical_means_lie_in_their_ci_of_the_corrected_prediction():
    """Over 30 seeded repetitions × 5 m, the 95 % CIs cover σ²/m·(n−m)/(n−1) at about the nominal rate."""
    model, x, y, sigma2, _ = least_squares(n=40)
    covered, covered_fw, iid_covered = [], [], []
    for repeat in range(30):
        moments = gv.probe_checkpoint(model, x, y, [1, 4, 10, 20, 30], draws=200, entropy=[repeat], resamples=999,
                                      loss_fn=half_squared_error)["moments"].set_index("m")
        covered += moments["fpc_in_ci"].tolist()
        covered_fw.append(moments["fpc_in_ci_fw"].all())
        iid_covered.append(moments.loc[30, "iid_in_ci_fw"])
    assert np.mean(covered) >= 0.88 and np.mean(covered_fw) >= 0.85  # nominal 0.95 (binomial sd 0.02, 0.04)
    # At m = 30 of n = 40 the tutorial's σ²/m is 3.9× too large: never inside even the family-wise CI.
    assert not any(iid_covered)
    assert (moments["ci_low_fw"] <= moments["ci_low"]).all() and (moments["ci_high"] <= moments["ci_high_fw"]).all()
    assert moments["sigma2"].iloc[0] == pytest.approx(sigma2, rel=1e-12)
    assert moments["b_simple"].iloc[0] == pytest.approx(sigma2 / moments["grad_norm2"].iloc[0])


def test_z_averages_one_and_its_range_covers_it_in_the_analytic_case():
    model, x, y, sigma2, _ = least_squares(n=40)
    full = gv.gradient_stats(model, x, y, half_squared_error).flat_grad()
    zs, inside = [], []
    for repeat in range(60):
        errors = gv.minibatch_errors(model, x, y, full, 5, 40, torch.Generator().manual_seed(repeat),
                                     half_squared_error)
        dof = gv.z_dof(sigma2, [gv.pair_products(errors, 40, 5)])
        row = gv.unbiasedness(errors.mean(0), errors.pow(2).sum(1).numpy(), 40, 5, sigma2, dof, (0.95,))
        zs.append(row["z"])
        inside.append(row["z_low"] <= row["z"] <= row["z_high"])
    assert abs(np.mean(zs) - 1) < 3 * np.std(zs) / math.sqrt(len(zs))
    assert np.mean(inside) >= 0.85


def test_slope_fit_recovers_minus_one_and_the_corrected_bend():
    n, rng = 3600, np.random.default_rng(0)
    ms = [1, 2, 4, 8, 16, 32, 64, 128, 256]  # 256 > n/20 is left out of the fit
    exact = {m: gv.predictions(2.0, n, m)[1] * rng.exponential(size=4000) for m in ms}
    row = gv.slope_fit(exact, n, 0.95, 1999, rng)
    assert row["fit_points"] == 8
    assert row["slope_low"] <= row["slope_pred_fpc"] <= row["slope_high"]
    assert -1.01 < row["slope_pred_fpc"] < -1.0
    flatter = {m: draws * m**0.2 for m, draws in exact.items()}
    row = gv.slope_fit(flatter, n, 0.95, 1999, rng)
    assert row["slope_high"] < -0.7 and row["slope_low"] > -0.9


def test_probe_run_tables_on_mnist1d_checkpoints(mnist1d_tensors):
    x, y = mnist1d_tensors["x_train"][:600], mnist1d_tensors["y_train"][:600]
    model = make_mlp(40, [16])
    states = [copy.deepcopy(model.state_dict()), None]
    bundle = {"steps": torch.tensor([0, 10]), "states": states, "steps_per_epoch": 5}
    settings = {"batch_sizes": [1, 2, 4, 8], "checkpoints": "all", "draws": 16, "seed": 0, "confidence": 0.95,
                "bootstrap_resamples": 199, "chunk_size": 256}
    identity = {"dataset": "mnist1d", "model": "mlp16", "optimizer": "sgd", "batch_size": 64, "lr": 0.1, "seed": 0}
    tables = gv.probe_run(model, bundle, x, y, settings, identity, log=lambda message: None)
    moments, layers, slopes = tables["moments"], tables["layers"], tables["slopes"]
    assert list(moments.columns) == [*identity, "step", "epoch", *gv.COLUMNS["moments"]]
    assert len(moments) == 4 and moments["step"].eq(0).all()  # the checkpoint without weights is skipped
    assert list(layers["kind"]) == ["Linear(40→16)", "Linear(16→10)"]
    assert layers["sigma2_share"].sum() == pytest.approx(1.0)
    assert layers["sigma2"].sum() == pytest.approx(slopes.loc[0, "sigma2"])
    again = gv.probe_run(model, bundle, x, y, settings, identity, log=lambda message: None)
    pd.testing.assert_frame_equal(moments, again["moments"])
    combined = gv.combine_tables([moments, moments.assign(seed=1), moments.iloc[:0]], "moments")
    assert len(combined) == 8 and combined["seed"].is_monotonic_increasing


def test_default_batch_sizes_and_checkpoint_selection():
    assert gv.default_batch_sizes(3600) == [1, 2, 4, 8, 16, 32, 64, 100, 128, 256, 512, 1024, 2048]
    assert gv.default_batch_sizes(100) == [1, 2, 4, 8, 16, 32, 64]
    states = ["w"] * 6 + [None] * 2
    assert gv.selected_checkpoints(list(range(8)), states, "all") == [0, 1, 2, 3, 4, 5]
    assert gv.selected_checkpoints(list(range(8)), states, 2) == [0, 5]
    assert gv.selected_checkpoints(list(range(8)), states, 3) == [0, 2, 5]


def verdict_tables(checkpoints=20, shift=None, noise=0.005, seed=0):
    """Synthetic gradvar rows whose ratios follow the exact law (plus `shift` {m: added} to ratio_fpc and z)."""
    rng, n, rows = np.random.default_rng(seed), 3600, []
    for step in range(checkpoints):
        for m in (1, 2, 100, 1024):
            ratio_fpc = 1 + noise * rng.standard_normal() + (shift or {}).get(m, 0.0)
            rows.append({"optimizer": "sgd", "batch_size": 64, "lr": 0.1, "seed": 0, "step": step, "n": n, "m": m,
                         "ratio_fpc": ratio_fpc, "ratio_iid": ratio_fpc * (n - m) / (n - 1),
                         "z": 1 + 0.2 * rng.standard_normal() + (shift or {}).get(m, 0.0),
                         "z_low_fw": 0.4, "z_high_fw": 1.6})
    slopes = pd.DataFrame({"step": range(checkpoints), "slope": -1.007, "slope_pred_fpc": -1.0067})
    return pd.DataFrame(rows), slopes


def test_pooled_means_are_bonferroni_t_intervals():
    table, _ = verdict_tables(checkpoints=12, noise=0.05)
    pooled = gv.pooled_means(table, "ratio_fpc", alpha=0.05)
    values = table.loc[table["m"] == 100, "ratio_fpc"].to_numpy()
    half = stats.t.ppf(1 - 0.05 / 4 / 2, 11) * values.std(ddof=1) / math.sqrt(12)
    row = pooled.set_index("m").loc[100]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((values.mean() - half, values.mean() + half))
    assert row["confidence"] == pytest.approx(1 - 0.05 / 4) and row["checkpoints"] == 12


def test_verdicts_follow_their_declared_rules():
    table, slopes = verdict_tables()
    c4, c5 = gv.verdict_unbiased(table), gv.verdict_variance(table, slopes)
    assert c4["verdict"] == "supported" and c5["verdict"] == "supported"
    # 2.8 % below σ²/m at m = 100 (the finite-population factor), resolved with 20 checkpoints.
    assert c5["verdict_literal"] == "not supported" and c5["iid_first_miss"] == 100
    assert c5["ratio_iid_2_mean"] == pytest.approx(1, abs=0.01)
    shifted, _ = verdict_tables(shift={2: 0.3})
    c4 = gv.verdict_unbiased(shifted)
    assert c4["verdict"] == "not supported" and "m = [2]" in c4["reason"]
    assert gv.verdict_variance(shifted, slopes)["verdict"] == "not supported"
    one, _ = verdict_tables(checkpoints=1)
    assert gv.verdict_unbiased(one)["verdict"] == "inconclusive"
    assert gv.verdict_variance(one, slopes)["verdict_literal"] == "inconclusive"
    assert "Bonferroni" in c4["rule"] and "Bonferroni" in c5["rule"]


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["probes"].append({"optimizer": "sgd", "batch_size": 32, "lr": 0.2, "seed": 0}),
     r"grad_variance.probes\[2\]': batch_size 32 is not in the grid"),
    (lambda s: s["probes"].append({"optimizer": "adam", "batch_size": 64, "lr": 0.003, "seed": 0}),
     r"grad_variance.probes\[2\]': lr 0.003 is not in the grid"),
    (lambda s: s["probes"].append({"optimizer": "sgd", "batch_size": 64, "lr": 0.2, "seed": 7}),
     "seed 7 is not in the grid"),
    (lambda s: s["probes"].append(dict(s["probes"][0])), "duplicate probe"),
    (lambda s: s.update(batch_sizes=[1, 3600]), "m = 3600 is not below the 3600 training samples"),
])
def test_config_rejects_probes_outside_the_grid_and_m_not_below_n(config, edit, message):
    edit(config["grad_variance"])
    with pytest.raises(ConfigError, match=message):
        prepare_config(config)


def test_config_fills_defaults_for_a_partial_section(config):
    config["grad_variance"] = {"probes": []}
    settings = prepare_config(config)["grad_variance"]
    assert settings["batch_sizes"] == "auto" and settings["draws"] >= 200 and settings["checkpoints"] == "all"


@pytest.mark.workflow
def test_tiny_workflow_writes_the_gradvar_tables(tmp_path, tiny_config):
    snakemake(tmp_path, "--cores", "2", "results/tables/gradvar.csv")
    table = pd.read_csv(tmp_path / "results/tables/gradvar.csv")
    settings = tiny_config["grad_variance"]
    assert len(table) == len(settings["probes"]) * settings["checkpoints"] * len(settings["batch_sizes"])
    assert {"n", "m", "K", "sigma2", "grad_norm2", "empirical_mean", "empirical_se", "ci_low", "ci_high",
            "pred_iid", "pred_fpc", "b_simple"} <= set(table.columns)
    assert (table["n"] == 3600).all() and (table["K"] == settings["draws"]).all()
    slopes = pd.read_csv(tmp_path / "results/tables/gradvar_slopes.csv")
    assert len(slopes) == len(settings["probes"]) * settings["checkpoints"]
    assert len(pd.read_csv(tmp_path / "results/tables/gradvar_layers.csv")) == 2 * len(slopes)
