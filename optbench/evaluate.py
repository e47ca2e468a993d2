"""Checkpoint evaluation: per-sample mean loss and accuracy in eval mode, under no_grad."""
from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from optbench.data import SPLITS, split


@torch.no_grad()
def evaluate_split(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Mean loss over samples (summed per chunk, divided by n: not a mean of batch means) and accuracy.

    A non-finite loss (weights blown up but not yet NaN in training) is reported as inf.
    """
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        target = y[start:start + batch_size]
        total_loss += F.cross_entropy(logits, target, reduction="sum").item()
        correct += int((logits.argmax(1) == target).sum().item())
    loss = total_loss / len(x)
    return (loss if math.isfinite(loss) else math.inf), correct / len(x)


def evaluate_checkpoints(model: nn.Module, bundle: dict, tensors: dict, batch_size: int,
                         device: str = "cpu") -> pd.DataFrame:
    """One row per checkpoint × split. A checkpoint without weights (after divergence) is loss=inf."""
    splits = {name: tuple(t.to(device) for t in split(tensors, name)) for name in SPLITS}
    rows = []
    for step, state in zip(bundle["steps"].tolist(), bundle["states"]):
        if state is not None:
            model.load_state_dict(state)
        for name, (x, y) in splits.items():
            loss, accuracy = evaluate_split(model, x, y, batch_size) if state is not None else (math.inf, math.nan)
            rows.append({"step": step, "epoch": step / bundle["steps_per_epoch"], "split": name,
                         "loss": loss, "accuracy": accuracy, "has_weights": state is not None})
    return pd.DataFrame(rows)
