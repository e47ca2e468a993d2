"""The tutorial's train loop, seeded and checkpointed at log-spaced steps; divergence is a result."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from optbench.config import Run, steps_per_epoch
from optbench.model import input_size, make_mlp, make_optimizer


def checkpoint_schedule(total_steps: int, count: int) -> list[int]:
    """Step 0 (the initialisation), the last step, and log-spaced steps between: at most `count`."""
    if total_steps <= 0:
        return [0]
    spaced = np.round(np.geomspace(1, total_steps, max(count - 1, 1))).astype(int)
    return sorted({0, total_steps, *spaced.tolist()})


def derived_seed(seed: int, stream: str) -> int:
    """Independent, reproducible seeds for the init and data-order streams of one run seed."""
    return int(np.random.SeedSequence([seed, sum(map(ord, stream))]).generate_state(1)[0])


def init_model(x_train: torch.Tensor, hidden: list[int], seed: int) -> nn.Module:
    """Same seed → same initial weights, whatever the optimizer, batch size or LR (common random numbers)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, "init"))
        return make_mlp(input_size(x_train), hidden)


@dataclass
class RunResult:
    run: Run
    status: str = "ok"                     # ok | diverged
    diverged_step: int | None = None       # the update whose mini-batch loss was non-finite
    checkpoint_steps: list[int] = field(default_factory=list)
    checkpoint_states: list = field(default_factory=list)   # state_dict, or None once diverged
    log_steps: list[int] = field(default_factory=list)
    log_losses: list[float] = field(default_factory=list)
    steps_per_epoch: int = 0
    total_steps: int = 0
    steps_done: int = 0
    train_seconds: float = 0.0


def train_run(tensors: dict, run: Run, config: dict, device: str = "cpu", log=print) -> RunResult:
    """Train one run: model.train(); per batch forward, loss, backward(), step(), zero_grad().

    Batches come from a seeded permutation per epoch. With train.drop_last the last partial batch
    is dropped, so every update sees exactly batch_size samples (what the batch-size analyses
    assume); the dropped samples change every epoch. A non-finite loss stops the run: no update is
    made from it, and the checkpoints scheduled after it hold no weights.
    """
    train_cfg = config["train"]
    x = tensors["x_train"].to(device)
    y = tensors["y_train"].to(device)
    n = len(x)
    per_epoch = steps_per_epoch(n, run.batch_size, train_cfg["drop_last"])
    total = train_cfg["epochs"] * per_epoch
    schedule = checkpoint_schedule(total, train_cfg["checkpoints"])
    pending = list(schedule)
    result = RunResult(run=run, steps_per_epoch=per_epoch, total_steps=total)

    model = init_model(tensors["x_train"], config["model"]["hidden"], run.seed).to(device)
    optimizer = make_optimizer(run.optimizer, model.parameters(), run.lr, config["optimizers"][run.optimizer])
    loss_fn = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(derived_seed(run.seed, "order"))
    log_every = train_cfg["log_every"]

    def checkpoint(step: int) -> None:
        pending.pop(0)
        result.checkpoint_steps.append(step)
        result.checkpoint_states.append({k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})

    started = time.perf_counter()
    step = 0
    checkpoint(0)
    model.train()
    for epoch in range(train_cfg["epochs"]):
        permutation = torch.randperm(n, generator=order).to(device)
        for batch in range(per_epoch):
            index = permutation[batch * run.batch_size:(batch + 1) * run.batch_size]
            loss = loss_fn(model(x[index]), y[index])
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                result.status, result.diverged_step = "diverged", step + 1
                break
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            if step % log_every == 0:
                result.log_steps.append(step)
                result.log_losses.append(loss_value)
            if pending and pending[0] == step:
                checkpoint(step)
        if result.status == "diverged":
            break
        log(f"{run}: epoch {epoch + 1}/{train_cfg['epochs']} step {step} loss {loss_value:.4f}")
    if result.status == "diverged":
        log(f"{run}: diverged at step {result.diverged_step} (non-finite mini-batch loss)")
        # Mark, never fill: the scheduled checkpoints after divergence get no weights.
        result.checkpoint_steps += pending
        result.checkpoint_states += [None] * len(pending)
    result.steps_done = step
    result.train_seconds = time.perf_counter() - started
    return result
