"""The compute floor of a grid: the matmul FLOPs each stage's algorithm needs, and bare matmul rates at its shapes.

Counts are of the matrix products only (what torch's FlopCounterMode counts; tests/test_bench.py checks
each count against it on one step of each stage): elementwise work, data movement and Python are the
overhead that wall ÷ floor measures.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import torch

from optbench.bundle import member_chunk
from optbench.config import N_CLASSES


def layer_shapes(input_width: int, hidden: list[int]) -> list[tuple[int, int]]:
    """(in, out) of every nn.Linear of make_mlp(input_width, hidden)."""
    widths = [input_width, *hidden, N_CLASSES]
    return list(zip(widths[:-1], widths[1:]))


def forward_flops(layers, batch: int) -> int:
    """One forward of `batch` samples: 2·B·in·out per layer."""
    return sum(2 * batch * i * o for i, o in layers)


def train_step_flops(layers, batch: int) -> int:
    """Forward + backward of one mini-batch of one run: 2·B·in·out per layer for the forward and for the
    weight gradient, and for the input gradient of every layer but the first (no gradient of the data)."""
    return sum(2 * batch * i * o * (2 if k == 0 else 3) for k, (i, o) in enumerate(layers))


def probe_flops(layers, n: int, ms: list[int], draws: int) -> int:
    """One checkpoint's probe (optbench.gradvar.probe_checkpoint with layer factors): the training-loss
    forward and the σ² forward + backward over the n samples, then per m one batched matmul per layer
    over min(m, n − m) samples per draw with the bias as a column ((in + 1)·out)."""
    params = sum((i + 1) * o for i, o in layers)
    total = forward_flops(layers, n) + train_step_flops(layers, n)
    for m in ms:
        total += 2 * draws * (n - m if m > n / 2 else m) * params
    return total


def grid_flops(workdir: Path, layers, n_eval: int, ms: list[int], draws: int) -> dict:
    """FLOPs per stage of the grid run in `workdir`, from its outputs: each run's steps_done × its
    step (train: per batch size), each checkpoint with weights × a forward over the n_eval samples of
    the three splits, each probed checkpoint × probe_flops (n: the probe's training-set size)."""
    flops = {"train": {}, "evaluate": 0.0, "grad_variance": 0.0}
    for meta_path in (workdir / "results" / "runs").rglob("run.json"):
        meta = json.loads(meta_path.read_text())
        batch = meta["batch_size"]
        flops["train"][batch] = flops["train"].get(batch, 0.0) + meta["steps_done"] * train_step_flops(layers, batch)
        evals = pd.read_csv(meta_path.parent / "eval.csv")
        flops["evaluate"] += evals.loc[evals["has_weights"], "step"].nunique() * forward_flops(layers, n_eval)
    for moments in (workdir / "results" / "gradvar").rglob("moments.csv"):
        table = pd.read_csv(moments)
        n = int(table["n"].iloc[0]) if len(table) else 0
        flops["grad_variance"] += table["step"].nunique() * probe_flops(layers, n, ms, draws)
    return flops


def _rate(products: list[tuple[torch.Tensor, torch.Tensor]], repeats: int) -> float:
    """FLOP/s of running `products` (bmm or mm operand pairs) back to back, best of `repeats`."""
    flops = sum(2 * a.shape[-2] * a.shape[-1] * b.shape[-1] * (a.shape[0] if a.dim() == 3 else 1) for a, b in products)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for a, b in products:
            torch.bmm(a, b) if a.dim() == 3 else torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return flops / best


def train_products(layers, members: int, batch: int):
    """A bundle step's products at its shapes, members cut in the trainer's chunks (features-first)."""
    chunk = min(members, member_chunk(batch, max(w for layer in layers for w in layer)))
    products = []
    for start in range(0, members, chunk):
        size = min(chunk, members - start)
        for k, (i, o) in enumerate(layers):
            w, a, d = torch.randn(size, o, i), torch.randn(size, i, batch), torch.randn(size, o, batch)
            products += [(w, a), (d, a.transpose(1, 2))] + ([(w.transpose(1, 2), d)] if k else [])
    return products


def evaluate_products(layers, batch: int):
    """An evaluation chunk's forward products: (B, in)·(in, out) per layer, as nn.Linear computes them."""
    return [(torch.randn(batch, i), torch.randn(o, i).T) for i, o in layers]


def probe_products(layers, n: int, m: int, draws: int, factor_elements: int):
    """One m of a probe: per layer (draws, out, s)·(draws, s, in + 1) for s = min(m, n − m) samples, in
    the draw chunks optbench.gradvar.minibatch_errors cuts for that layer; each with how many times
    it runs: [((a, b), calls), ...]."""
    summed = n - m if m > n / 2 else m
    products = []
    for i, o in layers:
        step = min(draws, max(1, factor_elements // (max(summed, 1) * (i + 1 + o))))
        products.append(((torch.randn(step, o, summed), torch.randn(step, summed, i + 1)), draws / step))
    return products


def probe_rate(layers, n: int, ms: list[int], draws: int, factor_elements: int, repeats: int = 3) -> float:
    """Bare FLOP/s of a probe's factor products over the m list, FLOP-weighted (total FLOPs ÷ total time)."""
    flops = seconds = 0.0
    for m in ms:
        for (a, b), calls in probe_products(layers, n, m, draws, factor_elements):
            chunk = calls * 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
            flops, seconds = flops + chunk, seconds + chunk / _rate([(a, b)], repeats)
    return flops / seconds


def bare_rates(layers, members: int, batch_sizes: list[int], eval_batch: int, n: int, ms: list[int],
               draws: int, factor_elements: int, repeats: int = 3) -> dict:
    """Bare FLOP/s at each stage's shapes, measured now: train per batch size, evaluate, probes (probe_rate)."""
    return {"train": {b: _rate(train_products(layers, members, b), repeats) for b in batch_sizes},
            "evaluate": _rate(evaluate_products(layers, eval_batch), repeats),
            "grad_variance": probe_rate(layers, n, ms, draws, factor_elements, repeats)}
