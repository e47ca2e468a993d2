"""Mini-batch gradient noise at checkpoints, measured raw: σ², ||∇f||², the K draws of ||g_B − ∇f||² per m, GᵀHG and eᵀHe."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from optbench.config import RUN_KEYS
from optbench.seeds import draw_seed, run_entropy
from optbench.tables import PROBE_TABLES, TABLES, combine

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
TUTORIAL_M = 100              # "with a mini-batch size of 100, effect of noise is divided by 100"
FALLBACK_ELEMENTS = 2**24     # per-sample gradient entries one vmap chunk may hold (64 MiB in float32)
FACTOR_ELEMENTS = 2**19       # gathered [a_i, 1, δ_i] entries one layer's product may hold (2 MiB in float32: in cache)
# Seed stream of the Hessian probe's mini-batches: the σ² draws use streams m < n (≤ 60 000 here), the
# analysis stage's bootstrap of eᵀHe 10**6 + 1 (optbench.critical.HESSIAN_STREAM)
HESSIAN_STREAM = 10**6 + 2
HESSIAN_TABLES = ("hessian", "hessian_draws")


def cross_entropy_per_sample(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """f_i of every sample in a chunk: the tutorial's nn.CrossEntropyLoss without its mean."""
    return F.cross_entropy(outputs, targets, reduction="none")


@dataclass
class GradientStats:
    """∇f and the per-sample squared norms ||∇_p f_i||² of every trainable parameter p (float64).

    `fallback` names the parameters whose norms came from torch.func.vmap(grad(...)) instead of
    the nn.Linear identity.
    """

    n: int
    loss: float
    grad: dict[str, torch.Tensor]
    sq_norms: dict[str, torch.Tensor]
    fallback: list[str]
    # parameter name → (a, δ) over all n samples, for the nn.Linear parameters the identity covers
    # (gradient_stats(keep_factors=True)): ∇_W f_i = δ_i a_iᵀ, ∇_b f_i = δ_i (a is None for a bias)
    factors: dict[str, tuple[torch.Tensor | None, torch.Tensor]] | None = None

    def flat_grad(self) -> torch.Tensor:
        return torch.cat([g.flatten() for g in self.grad.values()])

    def per_sample_sq_norms(self) -> torch.Tensor:
        """||∇f_i||² over all parameters, one value per sample."""
        return torch.stack(list(self.sq_norms.values())).sum(0)

    def param_sigma2(self) -> dict[str, float]:
        """σ² restricted to each parameter: mean_i ||∇_p f_i||² − ||∇_p f||²."""
        return {name: float(self.sq_norms[name].mean() - self.grad[name].pow(2).sum()) for name in self.grad}

    @property
    def grad_norm2(self) -> float:
        return float(sum(g.pow(2).sum() for g in self.grad.values()))

    @property
    def sigma2(self) -> float:
        """σ² = mean_i ||∇f_i||² − ||∇f||² (DESIGN.md), summed in float64 to contain the cancellation."""
        return float(self.per_sample_sq_norms().mean()) - self.grad_norm2


def gradient_stats(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   loss_fn: LossFn = cross_entropy_per_sample, chunk_size: int = 4096,
                   use_linear_identity: bool = True, fallback_elements: int = FALLBACK_ELEMENTS,
                   keep_factors: bool = False) -> GradientStats:
    """∇f, f and per-sample squared gradient norms from one sum-reduced backward per chunk.

    For an nn.Linear called once per forward on 2-D inputs, ||∇_W f_i||² = ||δ_i||²·||a_i||² and
    ||∇_b f_i||² = ||δ_i||² (a_i: layer input, δ_i: gradient of f_i at the layer output). The chunk
    loss is a sum, not a mean, so δ_i carries no 1/B factor. Every other parameter (convolutions,
    a Linear on 3-D inputs or called twice, or all of them with use_linear_identity=False) takes
    the torch.func.vmap(grad(...)) fallback in sub-chunks of at most `fallback_elements` gradient
    entries; no n × P per-sample matrix is ever built. `loss_fn` returns per-sample losses. The
    caller picks the mode (eval mode for σ²): samples must not interact (no train-mode BatchNorm).
    keep_factors keeps every covered layer's a_i and δ_i (n × (in + out) floats per layer), from
    which minibatch_errors forms any mini-batch gradient without another backward.
    """
    named = {name: p for name, p in model.named_parameters() if p.requires_grad}
    factor_pieces: dict[str, list[tuple]] = {}
    module_names = {module: name for name, module in model.named_modules()}
    grad_sum = {name: torch.zeros(p.shape, dtype=torch.float64, device=p.device) for name, p in named.items()}
    pieces: dict[str, list[torch.Tensor]] = {name: [] for name in named}
    fallback: set[str] = set()
    loss_sum = 0.0
    for start in range(0, len(x), chunk_size):
        xc, yc = x[start:start + chunk_size], y[start:start + chunk_size]
        captured: dict[nn.Module, list[dict]] = {}
        handles = [module.register_forward_hook(_capture_hook(captured)) for module in model.modules()
                   if use_linear_identity and isinstance(module, nn.Linear)
                   and any(p.requires_grad for p in module.parameters(recurse=False))]
        try:
            losses = loss_fn(model(xc), yc)
            grads = torch.autograd.grad(losses.sum(), list(named.values()), allow_unused=True)
        finally:
            for handle in handles:
                handle.remove()
        loss_sum += float(losses.detach().double().sum())
        for (name, p), g in zip(named.items(), grads):
            if g is not None:
                grad_sum[name] += g.double()
        chunk_norms = _linear_sq_norms(captured, module_names, named)
        if keep_factors:
            for name, pair in _linear_factors(captured, module_names, named).items():
                factor_pieces.setdefault(name, []).append(pair)
        missing = [name for name in named if name not in chunk_norms]
        if missing:
            fallback.update(missing)
            chunk_norms.update(_vmap_sq_norms(model, xc, yc, loss_fn, missing, fallback_elements))
        for name in named:
            pieces[name].append(chunk_norms[name])
    n = len(x)
    return GradientStats(n=n, loss=loss_sum / n, grad={k: v / n for k, v in grad_sum.items()},
                         sq_norms={k: torch.cat(v) for k, v in pieces.items()},
                         fallback=[name for name in named if name in fallback],
                         factors={name: (None if pairs[0][0] is None else torch.cat([a for a, _ in pairs]),
                                         torch.cat([d for _, d in pairs]))
                                  for name, pairs in factor_pieces.items()
                                  if len(pairs) == len(pieces[name])} if keep_factors else None)


def _capture_hook(captured: dict):
    """Forward hook keeping a Linear's input and, via a tensor hook, the gradient at its output."""
    def hook(module, inputs, output):
        entry = {"a": inputs[0].detach()}
        captured.setdefault(module, []).append(entry)
        if output.requires_grad:
            output.register_hook(lambda g: entry.__setitem__("delta", g.detach()))
    return hook


def _linear_factors(captured: dict, module_names: dict, named: dict) -> dict[str, tuple]:
    """parameter name → (a, δ) of the chunk (a None for a bias), for the Linear layers the identity covers.

    A second call (shared weights) sums two outer products per sample; >2-D inputs sum over
    positions: neither is one outer product per sample, so both are left out.
    """
    factors = {}
    for module, entries in captured.items():
        if len(entries) != 1 or entries[0]["a"].dim() != 2 or "delta" not in entries[0]:
            continue
        prefix = module_names[module] + "." if module_names[module] else ""
        if prefix + "weight" in named:
            factors[prefix + "weight"] = (entries[0]["a"], entries[0]["delta"])
        if module.bias is not None and prefix + "bias" in named:
            factors[prefix + "bias"] = (None, entries[0]["delta"])
    return factors


def _linear_sq_norms(captured: dict, module_names: dict, named: dict) -> dict[str, torch.Tensor]:
    """||∇_W f_i||² = ||δ_i||²·||a_i||², ||∇_b f_i||² = ||δ_i||² for the covered Linear layers."""
    return {name: _row_sq_norms(delta) * (1 if a is None else _row_sq_norms(a))
            for name, (a, delta) in _linear_factors(captured, module_names, named).items()}


def _row_sq_norms(rows: torch.Tensor) -> torch.Tensor:
    """Squared norm of each row, as float64 (summed in the input's dtype: a float64 copy first costs
    more than the backward itself)."""
    return rows.square().sum(1).double()


def _vmap_sq_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, names: list[str],
                   max_elements: int) -> dict[str, torch.Tensor]:
    """Per-sample squared norms of `names` by vmap(grad(...)), in sub-chunks bounded by max_elements."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    trainable = {k: params[k] for k in names}
    frozen = {**{k: v for k, v in params.items() if k not in trainable}, **dict(model.named_buffers())}

    def sample_loss(weights, xi, yi):
        outputs = functional_call(model, {**frozen, **weights}, (xi.unsqueeze(0),))
        return loss_fn(outputs, yi.unsqueeze(0)).sum()

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    step = max(1, max_elements // max(1, sum(p.numel() for p in trainable.values())))
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in names}
    for start in range(0, len(x), step):
        grads = per_sample(trainable, x[start:start + step], y[start:start + step])
        for k in names:
            parts[k].append(_row_sq_norms(grads[k].flatten(1)))
    return {k: torch.cat(v) for k, v in parts.items()}


def fresh_permutations(n: int, draws: int, generator: torch.Generator) -> torch.Tensor:
    """`draws` independent permutations of range(n) (draws × n), one randperm each from `generator`: a
    draw's batch is the first m entries of its row (or the rest, where m > n/2: minibatch_errors)."""
    return torch.stack([torch.randperm(n, generator=generator) for _ in range(draws)])


def minibatch_errors(model: nn.Module, x: torch.Tensor, y: torch.Tensor, full_grad: torch.Tensor, m: int,
                     draws: int, generator: torch.Generator,
                     loss_fn: LossFn = cross_entropy_per_sample,
                     factors: dict[str, tuple] | None = None) -> torch.Tensor:
    """e_k = g_{B_k} − ∇f (float64, draws × P) for `draws` independent uniform batches of size m.

    Each batch is a fresh draw without replacement (not a slice of one shared permutation). Without
    `factors`, g_B comes from an ordinary mean-reduced backward per draw, independently of
    gradient_stats' algebra. With `factors` (GradientStats.factors: the a_i, δ_i of one backward over
    all n samples), each covered nn.Linear layer's g_B is (1/m)·Σ_{i∈B} δ_i [a_i, 1]ᵀ (weight and
    bias at once), one batched matmul over the draws per layer: 2·m·(in + 1)·out FLOPs per draw
    instead of a forward and a backward. Where m > n/2 the sum runs over the n − m samples left out
    (Σ_B = n·∇f − Σ_rest: fewer products, the same value). The other parameters still take a
    backward per draw. The same generator gives the same draws either way. Memory: draws × P.
    """
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    factors = factors or {}
    rest = [(name, p) for name, p in named if name not in factors]
    columns, offset = {}, 0
    for name, p in named:
        columns[name] = slice(offset, offset + p.numel())
        offset += p.numel()
    n = len(x)
    full = full_grad.detach().double().cpu()
    errors = torch.empty(draws, full.numel(), dtype=torch.float64)
    permutations = fresh_permutations(n, draws, generator).to(x.device)
    for k in range(draws) if rest else ():
        index = permutations[k, :m]
        grads = torch.autograd.grad(loss_fn(model(x[index]), y[index]).mean(), [p for _, p in rest],
                                    allow_unused=True)
        for (name, p), g in zip(rest, grads):
            errors[k, columns[name]] = (g if g is not None else torch.zeros_like(p)).flatten().double().cpu()
    # errors = g·scale + offset per column, in one pass at the end: g_B − ∇f for the backward's g_B;
    # Σ_B/m − ∇f, or (n·∇f − Σ_rest)/m − ∇f where the left-out samples are summed
    complement = m > n / 2
    scale, offset = torch.ones_like(full), -full
    layers = _factor_tables(factors) if factors else []
    for _, _, *names in layers:
        for name in filter(None, names):
            scale[columns[name]] = -1 / m if complement else 1 / m
            offset[columns[name]] += n / m * full[columns[name]] if complement else 0.0
    summed = permutations[:, m:] if complement else permutations[:, :m]
    with torch.no_grad():
        # layer by layer, each from its own [a, 1, δ] table: a chunk's gathered rows stay in cache for
        # its product (one gather of every layer's columns at once was ~20 % slower at m ≥ 1024)
        for table, a_width, weight, bias in layers:
            step = max(1, FACTOR_ELEMENTS // (max(summed.shape[1], 1) * table.shape[1]))  # draws per product
            for start in range(0, draws, step):
                index = summed[start:start + step]  # one gather: (draws, samples, in + 1 + out)
                rows = table.index_select(0, index.flatten()).view(*index.shape, table.shape[1])
                g = torch.bmm(rows[:, :, a_width:].transpose(1, 2), rows[:, :, :a_width])  # Σ δ [a, 1]ᵀ
                out = errors[start:start + step]
                if weight is not None:
                    out[:, columns[weight]].view_as(g[:, :, :-1]).copy_(g[:, :, :-1])
                if bias is not None:
                    out[:, columns[bias]] = g[:, :, -1]
    return torch.addcmul(offset, errors, scale, out=errors)


def _factor_tables(factors: dict[str, tuple]) -> list[tuple]:
    """Per covered layer ([a_i, 1, δ_i] side by side, one row per sample; the width of [a, 1]; the
    weight's name; the bias's name): one gather per chunk of draws serves both its parameters."""
    by_module: dict[str, dict] = {}
    for name, (a, delta) in factors.items():
        layer = by_module.setdefault(name.rpartition(".")[0], {"delta": delta, "a": None, "weight": None,
                                                                "bias": None})
        layer["bias" if a is None else "weight"] = name
        if a is not None:
            layer["a"] = a
    layers = []
    for layer in by_module.values():
        delta = layer["delta"]
        a = layer["a"] if layer["a"] is not None else delta.new_zeros(len(delta), 0)
        layers.append((torch.cat([a, delta.new_ones(len(delta), 1), delta], dim=1), a.shape[1] + 1,
                       layer["weight"], layer["bias"]))
    return layers


def pair_products(errors: torch.Tensor, n: int, m: int) -> tuple[float, int]:
    """(sum, count) of ⟨ẽ_k, ẽ_{k+1}⟩² over consecutive independent draws, with ẽ = e·√(m(n−1)/(n−m))
    standardised to covariance Σ (the per-sample one) at every m: each term is an unbiased sample of
    tr(Σ²), which the analysis stage pools over m (optbench.noise.z_dof)."""
    if len(errors) < 2 or m >= n:
        return 0.0, 0
    scale = m * (n - 1) / (n - m)
    products = ((errors[:-1] * errors[1:]).sum(1) * scale).pow(2)
    return float(products.sum()), len(products)


def error_moments(errors: torch.Tensor, n: int, m: int) -> tuple[dict, np.ndarray]:
    """What the probe records of one m's K draws (errors: minibatch_errors): ({'mean_error_sq': ||ē||²,
    'pair_sum', 'pair_count': pair_products}, the K values of ||e_k||²)."""
    pair_sum, pair_count = pair_products(errors, n, m)
    return ({"mean_error_sq": float(errors.mean(0).pow(2).sum()), "pair_sum": pair_sum, "pair_count": pair_count},
            errors.pow(2).sum(1).numpy())


def hessian_vector_products(model: nn.Module, x: torch.Tensor, y: torch.Tensor, vectors: torch.Tensor,
                            loss_fn: LossFn = cross_entropy_per_sample, chunk_size: int = 4096) -> torch.Tensor:
    """H·v (float64, k × P) for each row v of `vectors` (k × P, the trainable parameters flattened in
    named_parameters order), H the Hessian of f = (1/n) Σ f_i over all n samples; never a dense Hessian.

    Double backward: per chunk of samples, one backward with create_graph gives the chunk's summed
    gradient as a graph, and one backward of ⟨∇f_chunk, v⟩ per vector gives H_chunk·v (H is symmetric,
    so that vector-Jacobian product is the Hessian-vector product); the chunk's graph is built once for
    all k vectors and freed before the next chunk (memory: one chunk's double-backward graph). The
    products run in the model's dtype; the sums over chunks and the result are float64.
    """
    named = [p for p in model.parameters() if p.requires_grad]
    products = torch.zeros(vectors.shape, dtype=torch.float64)
    for start in range(0, len(x), chunk_size):
        xc, yc = x[start:start + chunk_size], y[start:start + chunk_size]
        grads = torch.autograd.grad(loss_fn(model(xc), yc).sum(), named, create_graph=True)
        flat = torch.cat([g.reshape(-1) for g in grads])
        for i, vector in enumerate(vectors):
            parts = torch.autograd.grad(flat, named, grad_outputs=vector.to(flat), retain_graph=i + 1 < len(vectors),
                                        allow_unused=True)
            products[i] += torch.cat([(h if h is not None else torch.zeros_like(p)).reshape(-1)
                                      for h, p in zip(parts, named)]).double().cpu()
    return products / len(x)


def hessian_probe(model: nn.Module, x: torch.Tensor, y: torch.Tensor, gradient: GradientStats, m: int, draws: int,
                  generator: torch.Generator, loss_fn: LossFn = cross_entropy_per_sample,
                  chunk_size: int = 4096) -> tuple[float, torch.Tensor]:
    """(GᵀHG, eᵀHe of each draw) at the model's weights, for McCandlish et al.'s B_noise = tr(HΣ)/GᵀHG.

    G = gradient.flat_grad() is the exact full-batch gradient, so GᵀHG takes one full-batch HVP; each of
    the `draws` fresh mini-batches of size m (uniform, without replacement: minibatch_errors) gives
    e = g_B − G and eᵀHe by one more, with E[eᵀHe] = tr(HΣ)·(n−m)/(m(n−1)) (the analysis stage
    divides by that factor: optbench.critical). The model is not convex: either may be ≤ 0.
    """
    full = gradient.flat_grad()
    errors = minibatch_errors(model, x, y, full, m, draws, generator, loss_fn, gradient.factors)
    products = hessian_vector_products(model, x, y, torch.cat([full[None].cpu(), errors]), loss_fn, chunk_size)
    return float(full.cpu() @ products[0]), (errors * products[1:]).sum(1)


def hessian_checkpoints(steps: list[int], picked: list[int], count: int) -> list[int]:
    """Which of the probed checkpoints (indices `picked`) also get the Hessian probe: `count` of them
    spread evenly in steps, the one nearest each of last·j/count for j = 1..count, so the start (where
    no batch size has reached a target loss yet) is left out and the budget goes where the
    critical-batch comparison reads it (the checkpoint nearest the target loss)."""
    if count <= 0 or not picked:
        return []
    if count >= len(picked):
        return list(picked)
    last, chosen = steps[picked[-1]], []
    for j in range(1, count + 1):
        left = [i for i in picked if i not in chosen]
        chosen.append(min(left, key=lambda i: (abs(steps[i] - last * j / count), i)))
    return sorted(chosen)


def layer_table(gradient: GradientStats, model: nn.Module) -> pd.DataFrame:
    """σ² and ||∇f||² per layer (parameters grouped by module): which layers carry the noise."""
    rows: dict[str, dict] = {}
    for name, sigma2 in gradient.param_sigma2().items():
        layer = name.rsplit(".", 1)[0] if "." in name else ""
        module = model.get_submodule(layer)
        shape = (f"{module.in_features}→{module.out_features}" if isinstance(module, nn.Linear)
                 else "x".join(map(str, getattr(module, "weight", gradient.grad[name]).shape)))
        row = rows.setdefault(layer, {"layer": layer, "kind": f"{type(module).__name__}({shape})",
                                      "params": 0, "sigma2": 0.0, "grad_norm2": 0.0})
        row["params"] += gradient.grad[name].numel()
        row["sigma2"] += sigma2
        row["grad_norm2"] += float(gradient.grad[name].pow(2).sum())
    table = pd.DataFrame(list(rows.values()))
    table["sigma2_share"] = table["sigma2"] / gradient.sigma2
    table["b_simple"] = table["sigma2"] / table["grad_norm2"]
    return table


def probe_checkpoint(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_sizes: list[int], draws: int,
                     entropy: list[int], chunk_size: int = 4096,
                     loss_fn: LossFn = cross_entropy_per_sample, hessian: dict | None = None) -> dict[str, pd.DataFrame]:
    """The raw measurements at one checkpoint, in eval mode: {'moments': one row per m, 'draws': the K
    values of ||g_B − ∇f||² per m, 'layers': per-layer σ²}. The draws for m are seeded by
    (entropy, m): probe_run passes (config seed, run, step), so no two checkpoints share draws and a
    row does not depend on which other m values are probed.

    With `hessian` ({'batch_size': m, 'draws': K}: grad_variance.hessian) also {'hessian': GᵀHG beside
    σ² and ||∇f||², 'hessian_draws': the K values of eᵀHe}, from batches seeded by (entropy,
    HESSIAN_STREAM), a stream no σ² draw (m < n) and no bootstrap uses: they are not the σ² draws.
    """
    model.eval()
    gradient = gradient_stats(model, x, y, loss_fn, chunk_size, keep_factors=True)
    sigma2, grad_norm2, full = gradient.sigma2, gradient.grad_norm2, gradient.flat_grad()
    n = len(x)
    moments, samples = [], []
    for m in sorted(set(batch_sizes)):
        generator = torch.Generator().manual_seed(draw_seed(entropy, m))
        errors = minibatch_errors(model, x, y, full, m, draws, generator, loss_fn, gradient.factors)
        row, sq_errors = error_moments(errors, n, m)
        moments.append({"n": n, "m": m, "K": draws, "sigma2": sigma2, "grad_norm2": grad_norm2,
                        "train_loss": gradient.loss, **row})
        samples.append(pd.DataFrame({"m": m, "draw": np.arange(draws), "sq_error": sq_errors}))
    tables = {"moments": pd.DataFrame(moments), "draws": pd.concat(samples, ignore_index=True),
              "layers": layer_table(gradient, model)}
    if hessian:
        m, count = hessian["batch_size"], hessian["draws"]
        generator = torch.Generator().manual_seed(draw_seed(entropy, HESSIAN_STREAM))
        g_h_g, e_h_e = hessian_probe(model, x, y, gradient, m, count, generator, loss_fn, chunk_size)
        tables["hessian"] = pd.DataFrame([{"n": n, "m": m, "draws": count, "g_h_g": g_h_g, "sigma2": sigma2,
                                           "grad_norm2": grad_norm2}])
        tables["hessian_draws"] = pd.DataFrame({"draw": np.arange(count), "e_h_e": e_h_e.numpy()})
    return tables


def selected_checkpoints(steps: list[int], states: list, spec: str | int) -> list[int]:
    """Indices of the checkpoints to probe: those with weights; spec 'all', or k of them spread evenly
    by index (first and last included)."""
    usable = [i for i, state in enumerate(states) if state is not None]
    if spec == "all" or len(usable) <= int(spec):
        return usable
    picks = np.unique(np.round(np.linspace(0, len(usable) - 1, int(spec))).astype(int))
    return [usable[i] for i in picks]


def probe_run(model: nn.Module, bundle: dict, x: torch.Tensor, y: torch.Tensor, settings: dict,
              identity: dict, log=print) -> dict[str, pd.DataFrame]:
    """Probe the selected checkpoints of one run (settings: the config's grad_variance section).

    A checkpoint without weights (after divergence) or with a non-finite training loss is skipped
    and logged: σ² is not defined there.
    """
    steps = bundle["steps"].tolist()
    batch_sizes = resolve_batch_sizes(settings["batch_sizes"], len(x))
    hessian = settings.get("hessian") or {"checkpoints": 0}
    # The job records only what a statistic is computed from; the statistics — bootstrap CIs, z and
    # its range, slopes, B_noise — are the analysis stage's (optbench.noise, optbench.critical).
    frames: dict[str, list] = {name: [] for name in PROBE_TABLES
                               if hessian["checkpoints"] or name not in HESSIAN_TABLES}
    picked = selected_checkpoints(steps, bundle["states"], settings["checkpoints"])
    with_hessian = set(hessian_checkpoints(steps, picked, hessian["checkpoints"]))
    for count, index in enumerate(picked, 1):
        model.load_state_dict(bundle["states"][index])
        step = steps[index]
        where = {**identity, "step": step, "epoch": step / bundle["steps_per_epoch"]}
        with torch.no_grad():
            loss = float(cross_entropy_per_sample(model.eval()(x), y).double().mean())
        if not math.isfinite(loss):
            log(f"checkpoint {count}/{len(picked)} (step {step}): training loss {loss}, skipped (σ² undefined)")
            continue
        result = probe_checkpoint(model, x, y, batch_sizes, settings["draws"],
                                  [settings["seed"], run_entropy(identity), step], settings["chunk_size"],
                                  hessian=hessian if index in with_hessian else None)
        for name, table in result.items():
            columns = TABLES[PROBE_TABLES[name]].columns
            frames[name].append(table.assign(**{k: v for k, v in where.items() if k in columns}))
        first = result["moments"].iloc[0]
        log(f"checkpoint {count}/{len(picked)} (step {step}): sigma2 {first['sigma2']:.4g} "
            f"B_simple {first['sigma2'] / first['grad_norm2']:.4g}, {len(batch_sizes)} m × {settings['draws']} draws"
            + (hessian_summary(result, len(x)) if "hessian" in result else ""))
    return {name: combine(parts, PROBE_TABLES[name]) for name, parts in frames.items()}


def hessian_summary(result: dict[str, pd.DataFrame], n: int) -> str:
    """The log's glance at a checkpoint's Hessian probe (the analysis stage computes the real estimate)."""
    row = result["hessian"].iloc[0]
    m = int(row["m"])
    trace = float(result["hessian_draws"]["e_h_e"].mean()) * m * (n - 1) / (n - m)
    return f"; GᵀHG {row['g_h_g']:.4g}, tr(HΣ) ≈ {trace:.4g} ({int(row['draws'])} HVP draws at m = {m})"


def default_batch_sizes(n: int) -> list[int]:
    """Powers of two from 1 to the first one ≥ n/2 (kept below n), plus the tutorial's m = 100."""
    sizes, m = [], 1
    while m < n:
        sizes.append(m)
        if m >= n / 2:
            break
        m *= 2
    return sorted(set(sizes + ([TUTORIAL_M] if TUTORIAL_M < n else [])))


def resolve_batch_sizes(spec, n: int) -> list[int]:
    return default_batch_sizes(n) if spec == "auto" else sorted(set(int(m) for m in spec))
