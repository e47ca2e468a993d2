"""Gradient-noise measurement: per-sample norms against brute force, σ² and E||e||² against closed forms, raw tables."""
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
from optbench.noise import predictions
from optbench.config import ConfigError, prepare_config
from optbench.model import make_cnn, make_mlp
from optbench.tables import TABLES, read_table


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


def small_cnn():
    """make_cnn's two conv blocks on 8×8 images (8 → 4 → 2), its Linear head, in float64, and 23 images."""
    torch.manual_seed(0)
    model = make_cnn((8, 8), [2, 3], n_classes=4).double().eval()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(23, 8, 8, generator=generator, dtype=torch.float64)
    return model, x, torch.randint(0, 4, (23,), generator=generator)


CNN_CONV = ["2.weight", "2.bias", "5.weight", "5.bias"]  # the conv layers; 9 is the Linear head


def test_cnn_conv_layers_take_the_vmap_fallback_and_equal_the_brute_force_loop():
    model, x, y = small_cnn()
    fast = gv.gradient_stats(model, x, y, chunk_size=10, keep_factors=True)  # chunks of 10, 10, 3
    assert fast.fallback == CNN_CONV and sorted(fast.factors) == ["9.bias", "9.weight"]
    assert_matches_brute_force(fast, model, x, y, gv.cross_entropy_per_sample)
    every = gv.gradient_stats(model, x, y, chunk_size=23, use_linear_identity=False, fallback_elements=500)
    for key in fast.sq_norms:
        torch.testing.assert_close(fast.sq_norms[key], every.sq_norms[key], rtol=1e-10, atol=0)
    layers = gv.layer_table(fast, model)
    assert list(layers["kind"]) == ["Conv2d(2x1x3x3)", "Conv2d(3x2x3x3)", "Linear(12→4)"]


@pytest.mark.parametrize("m", [1, 5, 20])
def test_cnn_mini_batch_gradients_equal_brute_force_with_conv_layers_by_backward_per_draw(m):
    """The probes' factor path covers the Linear head only; the conv weights' g_B come from a backward per
    draw. Both against g_B summed one sample at a time from the brute-force per-sample gradients, on the
    draws the same generator makes (m = 20 > n/2: the head's complement sum)."""
    model, x, y = small_cnn()
    gradient = gv.gradient_stats(model, x, y, keep_factors=True)
    full = gradient.flat_grad()
    per_sample = torch.cat(list(brute_force(model, x, y, gv.cross_entropy_per_sample).values()), dim=1)
    generator = torch.Generator().manual_seed(4)
    draws = torch.stack([torch.randperm(len(x), generator=generator) for _ in range(12)])[:, :m]
    expected = per_sample[draws].mean(1) - per_sample.mean(0)
    for factors in (gradient.factors, None):
        errors = gv.minibatch_errors(model, x, y, full, m, 12, torch.Generator().manual_seed(4),
                                     factors=factors)
        torch.testing.assert_close(errors, expected, rtol=1e-9, atol=1e-12)


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
    iid, fpc = predictions(sigma2, 7, 3)
    assert np.mean(errors) == pytest.approx(fpc, rel=1e-12)
    assert iid == pytest.approx(fpc * 6 / 4)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("m", [1, 5, 23])
def test_factor_path_equals_a_backward_per_draw_on_the_same_draws(name, m):
    """g_B from the layer factors a_i, δ_i of one backward (covered Linear layers) equals the ordinary
    backward per draw, in float64, on the same draws; the uncovered parameters (convolutions, a
    Linear on 3-D inputs or called twice) are backward per draw in both."""
    factory, fallback = MODELS[name]
    torch.manual_seed(0)
    model = factory().double().eval()
    x, y = classification_data()
    loss_fn = lambda out, target: nn.functional.cross_entropy(out, target, reduction="none")  # noqa: E731
    gradient = gv.gradient_stats(model, x, y, loss_fn, chunk_size=10, keep_factors=True)  # chunks 10, 10, 3
    trainable = [k for k, p in model.named_parameters() if p.requires_grad]
    assert sorted(gradient.factors) == sorted(set(trainable) - set(fallback))
    full = gradient.flat_grad()
    old = gv.minibatch_errors(model, x, y, full, m, 30, torch.Generator().manual_seed(3), loss_fn)
    new = gv.minibatch_errors(model, x, y, full, m, 30, torch.Generator().manual_seed(3), loss_fn, gradient.factors)
    assert old.shape == new.shape == (30, full.numel())
    batch_grads_old, batch_grads_new = old + full, new + full  # the g_B themselves (at m = n, e ≈ 0)
    scale = float(batch_grads_old.abs().max())
    torch.testing.assert_close(batch_grads_new, batch_grads_old, rtol=1e-6, atol=1e-12 * scale)
    assert m == len(x) or not torch.equal(new[0], new[1])  # fresh draws, not one batch repeated


def test_factor_path_cuts_many_large_draws_into_bounded_products(monkeypatch):
    """FACTOR_ELEMENTS bounds the gathered factors of one product: tiny here, so every draw is its own product."""
    monkeypatch.setattr(gv, "FACTOR_ELEMENTS", 50)
    model = make_mlp(12, [9], 4).double().eval()
    x, y = classification_data()
    loss_fn = lambda out, target: nn.functional.cross_entropy(out, target, reduction="none")  # noqa: E731
    gradient = gv.gradient_stats(model, x, y, loss_fn, keep_factors=True)
    old = gv.minibatch_errors(model, x, y, gradient.flat_grad(), 7, 9, torch.Generator().manual_seed(0), loss_fn)
    new = gv.minibatch_errors(model, x, y, gradient.flat_grad(), 7, 9, torch.Generator().manual_seed(0), loss_fn,
                              gradient.factors)
    torch.testing.assert_close(new, old, rtol=1e-6, atol=1e-12)


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
    single = gv.minibatch_errors(model, x, y, full, 1, 4000, torch.Generator().manual_seed(1), half_squared_error)
    sq = single.pow(2).sum(1)
    assert sq.mean().item() == pytest.approx(sigma2, rel=4 * sq.std().item() / sigma2 / math.sqrt(4000))


def test_probe_run_tables_on_mnist1d_checkpoints(mnist1d_tensors):
    x, y = mnist1d_tensors["x_train"][:600], mnist1d_tensors["y_train"][:600]
    model = make_mlp(40, [16])
    states = [copy.deepcopy(model.state_dict()), None]
    bundle = {"steps": torch.tensor([0, 10]), "states": states, "steps_per_epoch": 5}
    settings = {"batch_sizes": [1, 2, 4, 8], "checkpoints": "all", "draws": 16, "seed": 0, "chunk_size": 256}
    identity = {"dataset": "mnist1d", "model": "mlp16", "optimizer": "sgd", "batch_size": 64, "lr": 0.1, "seed": 0}
    tables = gv.probe_run(model, bundle, x, y, settings, identity, log=lambda message: None)
    moments, draws, layers = tables["moments"], tables["draws"], tables["layers"]
    assert list(moments.columns) == list(TABLES["probe_moments"].columns)
    assert list(draws.columns) == list(TABLES["probe_draws"].columns)
    assert len(moments) == 4 and moments["step"].eq(0).all()  # the checkpoint without weights is skipped
    assert len(draws) == 4 * 16 and list(draws.groupby("m").size()) == [16] * 4
    # the moments are those of the recorded draws: K, and ||ē||² at most the mean of ||e_k||²
    assert (moments["K"] == 16).all()
    mean_sq = draws.groupby("m")["sq_error"].mean().to_numpy()
    assert (moments["mean_error_sq"].to_numpy() <= mean_sq).all()
    assert (moments["pair_count"] == 15).all() and (moments["pair_sum"] > 0).all()
    assert list(layers["kind"]) == ["Linear(40→16)", "Linear(16→10)"]
    assert layers["sigma2_share"].sum() == pytest.approx(1.0)
    assert layers["sigma2"].sum() == pytest.approx(moments.loc[0, "sigma2"])
    again = gv.probe_run(model, bundle, x, y, settings, identity, log=lambda message: None)
    pd.testing.assert_frame_equal(draws, again["draws"])
    # a row does not depend on which other m are probed (draws seeded per m)
    fewer = gv.probe_run(model, bundle, x, y, {**settings, "batch_sizes": [2, 8]}, identity, log=lambda _: None)
    pd.testing.assert_frame_equal(fewer["draws"].reset_index(drop=True),
                                  draws[draws["m"].isin([2, 8])].reset_index(drop=True))


def test_default_batch_sizes_and_checkpoint_selection():
    assert gv.default_batch_sizes(3600) == [1, 2, 4, 8, 16, 32, 64, 100, 128, 256, 512, 1024, 2048]
    assert gv.default_batch_sizes(100) == [1, 2, 4, 8, 16, 32, 64]
    states = ["w"] * 6 + [None] * 2
    assert gv.selected_checkpoints(list(range(8)), states, "all") == [0, 1, 2, 3, 4, 5]
    assert gv.selected_checkpoints(list(range(8)), states, 2) == [0, 5]
    assert gv.selected_checkpoints(list(range(8)), states, 3) == [0, 2, 5]


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
def test_tiny_workflow_writes_the_gradvar_tables(tiny_workdir, tiny_config):
    tables = tiny_workdir / "results/tables"
    draws = read_table(tables / "probe_draws.csv", "probe_draws")
    settings = tiny_config["grad_variance"]
    assert len(draws) == len(settings["probes"]) * settings["checkpoints"] * len(settings["batch_sizes"]) \
        * settings["draws"]
    table = read_table(tables / "gradvar.csv", "gradvar")
    assert len(table) == len(settings["probes"]) * settings["checkpoints"] * len(settings["batch_sizes"])
    assert {"n", "m", "K", "sigma2", "grad_norm2", "empirical_mean", "empirical_se", "ci_low", "ci_high",
            "pred_iid", "pred_fpc", "b_simple"} <= set(table.columns)
    assert (table["n"] == 3600).all() and (table["K"] == settings["draws"]).all()
    slopes = read_table(tables / "gradvar_slopes.csv", "gradvar_slopes")
    assert len(slopes) == len(settings["probes"]) * settings["checkpoints"]
    assert len(read_table(tables / "gradvar_layers.csv", "gradvar_layers")) == 2 * len(slopes)


# ---- Hessian probes: GᵀHG and eᵀHe by Hessian-vector products (McCandlish et al.'s B_noise) ----

def flat_parameters(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def dense_hessian(model, x, y, loss_fn):
    """The oracle: torch.func.hessian of f = mean_i f_i over the flattened parameters (small models only)."""
    shapes = [(name, p.shape, p.numel()) for name, p in model.named_parameters()]

    def loss(flat):
        params, offset = {}, 0
        for name, shape, count in shapes:
            params[name] = flat[offset:offset + count].view(shape)
            offset += count
        return loss_fn(torch.func.functional_call(model, params, (x,)), y).mean()

    return torch.func.hessian(loss)(flat_parameters(model))


@pytest.mark.parametrize("factory", [lambda: make_mlp(12, [9, 7], 4),
                                     lambda: nn.Sequential(nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 4))],
                         ids=["relu_mlp", "tanh_mlp"])
def test_hessian_vector_products_equal_the_dense_hessian_times_the_vectors(factory):
    torch.manual_seed(0)
    model = factory().double().eval()
    x, y = classification_data()
    vectors = torch.randn(5, flat_parameters(model).numel(), dtype=torch.float64)
    expected = vectors @ dense_hessian(model, x, y, gv.cross_entropy_per_sample)  # H symmetric: (H v)ᵀ = vᵀH
    for chunk_size in (4096, 10):   # one chunk, and chunks of 10, 10, 3 samples: the same products
        products = gv.hessian_vector_products(model, x, y, vectors, chunk_size=chunk_size)
        torch.testing.assert_close(products, expected, rtol=1e-10, atol=1e-12)


def test_hessian_vector_products_agree_with_finite_differences_of_the_gradient():
    """An oracle outside autograd's second-order rules: (∇f(w + hv) − ∇f(w − hv))/2h on a smooth model."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 4)).double().eval()
    x, y = classification_data()
    v = torch.randn(flat_parameters(model).numel(), dtype=torch.float64)
    product = gv.hessian_vector_products(model, x, y, v[None])[0]

    def gradient_at(shift):
        moved = copy.deepcopy(model)
        torch.nn.utils.vector_to_parameters(flat_parameters(model) + shift, moved.parameters())
        return gv.gradient_stats(moved, x, y).flat_grad()

    h = 1e-5
    torch.testing.assert_close(product, (gradient_at(h * v) - gradient_at(-h * v)) / (2 * h), rtol=1e-6, atol=1e-9)


def least_squares_hessian(x):
    """H of f = mean ½(w·x_i + b − y_i)² over (w, b): (1/n) X̃ᵀX̃ with X̃ = [x, 1], whatever the weights."""
    design = np.hstack([x, np.ones((len(x), 1))])
    return design.T @ design / len(x)


def test_hessian_probe_on_least_squares_equals_its_closed_forms():
    """GᵀHG = Gᵀ(X̃ᵀX̃/n)G, and eᵀHe for each drawn batch, e = g_B − G from that batch's own samples."""
    model, x, y, _, per_sample = least_squares(n=40)
    hessian, full = least_squares_hessian(x.numpy()), per_sample.mean(0)
    stats_ = gv.gradient_stats(model, x, y, half_squared_error, keep_factors=True)
    g_h_g, e_h_e = gv.hessian_probe(model, x, y, stats_, 7, 12, torch.Generator().manual_seed(3), half_squared_error)
    assert g_h_g == pytest.approx(full @ hessian @ full, rel=1e-12)
    replay = torch.Generator().manual_seed(3)  # the same batches: minibatch_errors' fresh permutations
    batches = [torch.randperm(40, generator=replay)[:7].numpy() for _ in range(12)]
    expected = [(per_sample[b].mean(0) - full) @ hessian @ (per_sample[b].mean(0) - full) for b in batches]
    np.testing.assert_allclose(e_h_e.numpy(), expected, rtol=1e-10)


def test_expected_e_h_e_is_the_trace_of_h_sigma_times_the_without_replacement_factor():
    """Exhaustive over every batch of m = 3 from n = 7: E[eᵀHe] = tr(HΣ)·(n−m)/(m(n−1)) exactly (Σ the
    per-sample covariance, 1/n), the factor the analysis stage divides by (critical.without_replacement_factor)."""
    from optbench.critical import without_replacement_factor

    _, x, _, _, per_sample = least_squares(n=7)
    hessian, full = least_squares_hessian(x.numpy()), per_sample.mean(0)
    sigma = (per_sample - full).T @ (per_sample - full) / 7
    errors = [per_sample[list(batch)].mean(0) - full for batch in itertools.combinations(range(7), 3)]
    mean = np.mean([e @ hessian @ e for e in errors])
    assert mean == pytest.approx(np.trace(hessian @ sigma) * (7 - 3) / (3 * 6), rel=1e-12)
    assert without_replacement_factor(7, 3) == pytest.approx((7 - 3) / (3 * 6))


def hessian_probe_tables(tensors, hessian, batch_sizes=(1, 64), draws=8, states=2):
    x, y = tensors["x_train"][:600], tensors["y_train"][:600]
    torch.manual_seed(0)
    model = make_mlp(40, [16])
    bundle = {"steps": torch.arange(states) * 10, "states": [copy.deepcopy(model.state_dict())] * states,
              "steps_per_epoch": 5}
    settings = {"batch_sizes": list(batch_sizes), "checkpoints": "all", "draws": draws, "seed": 0, "chunk_size": 256,
                **({"hessian": hessian} if hessian is not None else {})}
    identity = {"dataset": "mnist1d", "model": "mlp16", "optimizer": "sgd", "batch_size": 64, "lr": 0.1, "seed": 0}
    return gv.probe_run(model, bundle, x, y, settings, identity, log=lambda _: None)


def test_probe_run_writes_the_declared_hessian_tables_at_the_chosen_checkpoints(mnist1d_tensors):
    tables = hessian_probe_tables(mnist1d_tensors, {"checkpoints": 2, "draws": 6, "batch_size": 64}, states=5)
    hessian, draws = tables["hessian"], tables["hessian_draws"]
    assert list(hessian.columns) == list(TABLES["probe_hessian"].columns)
    assert list(draws.columns) == list(TABLES["probe_hessian_draws"].columns)
    # 5 probed checkpoints at steps 0..40: the Hessian at those nearest 20 and 40 (the start left out)
    assert hessian["step"].tolist() == [20, 40] and (hessian["m"] == 64).all() and (hessian["draws"] == 6).all()
    assert draws.groupby("step").size().tolist() == [6, 6] and draws["draw"].tolist() == list(range(6)) * 2
    moments = tables["moments"].set_index("step")
    assert hessian.set_index("step")["sigma2"].equals(moments[moments["m"] == 1].loc[[20, 40], "sigma2"])
    assert (draws["e_h_e"] != 0).all() and np.isfinite(hessian["g_h_g"]).all()
    off = hessian_probe_tables(mnist1d_tensors, {"checkpoints": 0, "draws": 6, "batch_size": 64}, states=5)
    assert set(off) == {"moments", "draws", "layers"}  # checkpoints 0: no Hessian tables at all
    assert set(hessian_probe_tables(mnist1d_tensors, None)) == {"moments", "draws", "layers"}


def test_the_hessian_draws_are_a_stream_of_their_own(mnist1d_tensors):
    """The Hessian probe's batches come from a seed no σ² draw (m < n) and no bootstrap uses, so turning it on
    changes no σ² draw, and changing the σ² m list (or K) changes no eᵀHe — even at the same m."""
    from optbench.critical import HESSIAN_STREAM as BOOTSTRAP_STREAM
    from optbench.seeds import draw_seed

    entropy = [0, 12345, 40]
    sigma_seeds = {draw_seed(entropy, m) for m in range(1, 60001)} | {draw_seed(entropy, BOOTSTRAP_STREAM)}
    assert draw_seed(entropy, gv.HESSIAN_STREAM) not in sigma_seeds
    assert gv.HESSIAN_STREAM > 60000 and gv.HESSIAN_STREAM != BOOTSTRAP_STREAM
    hessian = {"checkpoints": 1, "draws": 6, "batch_size": 64}
    on, off = hessian_probe_tables(mnist1d_tensors, hessian), hessian_probe_tables(mnist1d_tensors, None)
    pd.testing.assert_frame_equal(on["draws"], off["draws"])
    other = hessian_probe_tables(mnist1d_tensors, hessian, batch_sizes=(2, 64, 100), draws=12)
    pd.testing.assert_frame_equal(on["hessian_draws"], other["hessian_draws"])
    # the σ² draws at m = 64 and the Hessian's at m = 64 are different batches
    x, y = mnist1d_tensors["x_train"][:600], mnist1d_tensors["y_train"][:600]
    sigma = torch.randperm(600, generator=torch.Generator().manual_seed(draw_seed(entropy, 64)))[:64]
    mine = torch.randperm(600, generator=torch.Generator().manual_seed(draw_seed(entropy, gv.HESSIAN_STREAM)))[:64]
    assert not torch.equal(torch.sort(sigma).values, torch.sort(mine).values)


def test_hessian_checkpoints_spread_evenly_in_steps_leaving_out_the_start():
    steps = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256]   # log-spaced, as training saves them
    assert gv.hessian_checkpoints(steps, list(range(10)), 4) == [6, 7, 8, 9]     # steps 32–256: targets 64, 128, 192, 256, a taken nearest yields to the next free one
    assert gv.hessian_checkpoints(steps, list(range(10)), 2) == [8, 9]
    assert gv.hessian_checkpoints(steps, [0, 3, 9], 5) == [0, 3, 9]              # fewer probed: all of them
    assert gv.hessian_checkpoints(steps, list(range(10)), 0) == []


def test_the_default_hessian_budget_per_probe_run():
    """The default config: ≤ 4 checkpoints × ≤ 32 draws per probe run, each draw and GᵀHG one full-batch HVP of
    ≈ 0.53 GFLOP on the default model (40-100-100-10, n = 3600; counted here on n = 360, FLOPs ∝ n), so
    ≤ 4 × 33 × 0.53 ≈ 70 GFLOP per probe run (≈ 3 s at this machine's rate: BENCHMARKS.md)."""
    from torch.utils.flop_counter import FlopCounterMode

    from optbench.config import load_config
    from tests.conftest import ROOT

    settings = prepare_config(load_config(ROOT / "config.yaml"))["grad_variance"]["hessian"]
    assert settings["checkpoints"] <= 4 and settings["draws"] <= 32
    model = make_mlp(40, [100, 100]).eval()
    x, y = torch.randn(360, 40), torch.randint(0, 10, (360,))
    counts = []
    for k in (1, 3):
        with FlopCounterMode(display=False) as counter:
            gv.hessian_vector_products(model, x, y, torch.randn(k, 15210, dtype=torch.float64))
        counts.append(counter.get_total_flops())
    per_hvp = (counts[1] - counts[0]) / 2 * 3600 / 360
    assert 0.45e9 < per_hvp < 0.65e9
    assert settings["checkpoints"] * (settings["draws"] + 1) * per_hvp < 90e9
