"""Checkpoint evaluation: per-sample mean loss, accuracy and the tutorial's test-loop loss, in eval mode under no_grad."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from optbench.data import SPLITS, split
from optbench.io import csv_text

if TYPE_CHECKING:
    import pandas as pd

# The tutorial's test DataLoader: batch_size=64, the last partial batch kept (drop_last=False).
TUTORIAL_TEST_BATCH = 64
# ATen's float32 vector lanes per CPU capability (torch.backends.cpu.get_cpu_capability()), where known
VECTOR_LANES = {"AVX512": 16, "AVX2": 8}
SAMPLE_PAD = 64  # samples padded to a multiple of this: whole vectors at every x86 width, unrolled or not
# eval.csv's columns (optbench.tables declares the same: TABLES["eval"]; that module imports pandas)
EVAL_COLUMNS = ("step", "epoch", "split", "loss", "accuracy", "has_weights", "tutorial_avg_loss")


def class_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """F.log_softmax(logits, 1) of (samples, classes) logits, the same bits, computed over the classes as
    the first dimension where that is faster.

    Written by hand because of how ATen's CPU kernels are laid out: with fewer classes than the vector's
    lanes, the last-dimension log_softmax takes one row at a time and sums its exponentials lane by lane
    (~170 µs per 1000 × 10 chunk on AVX-512, a sixth of evaluating a checkpoint); over dim 0 of the
    transposed logits it runs vectorised across samples, with the same vector exp and log and the same
    in-order sum over the classes (~20 µs with the copy): the same bits, provided every sample sits in a
    whole vector (the kernel's scalar tail calls the C library's exp), hence the zero padding. With as
    many classes as lanes or more, another capability, dtype or device, the sums run in another order,
    so the plain kernel runs. tests/test_evaluate.py checks both paths against it bit for bit.
    """
    samples, classes = logits.shape
    lanes = VECTOR_LANES.get(torch.backends.cpu.get_cpu_capability(), 0)
    if logits.device.type != "cpu" or logits.dtype != torch.float32 or classes >= lanes:
        return F.log_softmax(logits, 1)
    padded = logits.new_zeros(classes, -(-samples // SAMPLE_PAD) * SAMPLE_PAD)
    padded[:, :samples] = logits.t()
    return F.log_softmax(padded, 0)[:, :samples].t()


@torch.no_grad()
def split_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict[str, float]:
    """loss: the mean over samples (summed per chunk, divided by n: not a mean of batch means); accuracy: correct
    argmax predictions / n; tutorial_avg_loss: the tutorial's test_loop "Avg loss", the mean over batches of
    TUTORIAL_TEST_BATCH samples, in the split's stored order (its DataLoader without shuffle), of each batch's
    mean loss, so that a smaller last batch weighs as much as a full one. `batch_size` is only the chunk of
    the forward passes: it changes none of the three beyond float rounding.

    A non-finite loss (weights blown up but not yet NaN in training) is reported as inf.
    """
    model.eval()
    total_loss, correct, per_sample = 0.0, 0, []
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        target = y[start:start + batch_size]
        # cross_entropy is nll_loss of log_softmax (ATen's own composition, so the same bits): one
        # log_softmax for both reductions; computed twice it was ~30 % of an evaluate job (issue 14)
        log_probs = class_log_probs(logits)
        total_loss += F.nll_loss(log_probs, target, reduction="sum").item()
        per_sample.append(F.nll_loss(log_probs, target, reduction="none"))
        correct += int((logits.argmax(1) == target).sum().item())
    losses = torch.cat(per_sample)
    full = len(losses) // TUTORIAL_TEST_BATCH * TUTORIAL_TEST_BATCH
    # each batch's mean in float32, as loss_fn(pred, y).item() gives it; their sum in float64, as Python's
    batch_means = [losses[:full].view(-1, TUTORIAL_TEST_BATCH).mean(1).double()]
    if full < len(losses):
        batch_means.append(losses[full:].mean().double().view(1))
    tutorial = float(torch.cat(batch_means).sum()) / -(-len(losses) // TUTORIAL_TEST_BATCH)
    loss = total_loss / len(x)
    return {"loss": loss if math.isfinite(loss) else math.inf, "accuracy": correct / len(x),
            "tutorial_avg_loss": tutorial if math.isfinite(tutorial) else math.inf}


def evaluate_split(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """(mean loss over samples, accuracy) of split_metrics."""
    metrics = split_metrics(model, x, y, batch_size)
    return metrics["loss"], metrics["accuracy"]


def checkpoint_rows(model: nn.Module, bundle: dict, tensors: dict, batch_size: int,
                    device: str = "cpu") -> list[dict]:
    """One row (EVAL_COLUMNS) per checkpoint × split. A checkpoint without weights (after divergence) is loss=inf."""
    splits = {name: tuple(t.to(device) for t in split(tensors, name)) for name in SPLITS}
    missing = {"loss": math.inf, "accuracy": math.nan, "tutorial_avg_loss": math.inf}
    rows = []
    for step, state in zip(bundle["steps"].tolist(), bundle["states"]):
        if state is not None:
            model.load_state_dict(state)
        for name, (x, y) in splits.items():
            metrics = split_metrics(model, x, y, batch_size) if state is not None else missing
            rows.append({"step": step, "epoch": step / bundle["steps_per_epoch"], "split": name,
                         "loss": metrics["loss"], "accuracy": metrics["accuracy"], "has_weights": state is not None,
                         "tutorial_avg_loss": metrics["tutorial_avg_loss"]})
    return rows


def evaluate_checkpoints(model: nn.Module, bundle: dict, tensors: dict, batch_size: int,
                         device: str = "cpu") -> pd.DataFrame:
    """checkpoint_rows as a table."""
    import pandas as pd

    return pd.DataFrame(checkpoint_rows(model, bundle, tensors, batch_size, device), columns=list(EVAL_COLUMNS))


def eval_csv(model: nn.Module, checkpoints: dict, tensors: dict, batch_size: int, device: str = "cpu") -> str:
    """A run's eval.csv text: the same bytes from the checkpoints a train job holds in memory as from
    its checkpoints.pt read back (the same tensors, evaluated by the same code at the same threads).
    Formatted by optbench.io.csv_text (the bytes of pandas' to_csv), so that a train job imports no pandas."""
    rows = checkpoint_rows(model, checkpoints, tensors, batch_size, device)
    return csv_text(EVAL_COLUMNS, ([row[column] for column in EVAL_COLUMNS] for row in rows))
