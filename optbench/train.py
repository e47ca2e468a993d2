"""The tutorial's train loop, seeded and checkpointed at log-spaced steps; divergence is a result."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from optbench.config import Run, steps_per_epoch
from optbench.model import make_model, make_optimizer


def checkpoint_schedule(total_steps: int, count: int) -> list[int]:
    """Step 0 (the initialisation), the last step, and log-spaced steps between: at most `count`."""
    if total_steps <= 0:
        return [0]
    spaced = np.round(np.geomspace(1, total_steps, max(count - 1, 1))).astype(int)
    return sorted({0, total_steps, *spaced.tolist()})


def derived_seed(seed: int, stream: str) -> int:
    """Independent, reproducible seeds for the init and data-order streams of one run seed."""
    return int(np.random.SeedSequence([seed, sum(map(ord, stream))]).generate_state(1)[0])


def init_model(x_train: torch.Tensor, model: dict | list[int], seed: int) -> nn.Module:
    """The config's model (its `model` section, or an MLP's hidden widths) for x_train's samples.
    Same seed → same initial weights, whatever the optimizer, batch size or LR (common random numbers)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, "init"))
        return make_model(tuple(x_train.shape[1:]), model)


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
    epochs_done: int = 0
    train_seconds: float = 0.0

    def restore_progress(self, state: dict) -> None:
        """Take status, checkpoints, log and counters from a training_state() (the rest of that
        state — weights, optimizer, data order — belongs to whoever trains the run on)."""
        self.status, self.diverged_step = state["status"], state["diverged_step"]
        self.checkpoint_steps = list(state["checkpoint_steps"])
        self.checkpoint_states = list(state["checkpoint_states"])
        self.log_steps, self.log_losses = state["log_steps"].tolist(), state["log_losses"].tolist()
        self.steps_done, self.epochs_done = state["steps_done"], state["epochs_done"]
        self.train_seconds = state["train_seconds"]

    def diverge(self, at: int, pending: list[int]) -> None:
        """Update `at` met a non-finite mini-batch loss: no update from it and no weights after it.
        Mark, never fill: the scheduled checkpoints still `pending` are recorded without weights."""
        self.status, self.diverged_step, self.steps_done = "diverged", at, at - 1
        self.checkpoint_steps += pending
        self.checkpoint_states += [None] * len(pending)
        pending.clear()

    @property
    def finished(self) -> bool:
        return self.status == "diverged" or self.steps_done == self.total_steps


def cpu_copy(state: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _to_cpu(value):
    """Deep copy of an optimizer state_dict with every tensor on the CPU (resume files are device-free)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def training_state(result: RunResult, model_state: dict, optimizer_state: dict, order: torch.Generator) -> dict:
    """Everything needed to continue bit-identically from an epoch boundary; tensors and plain
    Python values only (CPU copies), so torch.load(weights_only=True) reads it back."""
    return {
        "model": cpu_copy(model_state), "optimizer": _to_cpu(optimizer_state),
        "order_rng": order.get_state(), "status": result.status, "diverged_step": result.diverged_step,
        "checkpoint_steps": list(result.checkpoint_steps), "checkpoint_states": list(result.checkpoint_states),
        "log_steps": torch.tensor(result.log_steps, dtype=torch.int64),
        "log_losses": torch.tensor(result.log_losses, dtype=torch.float64),
        "steps_done": result.steps_done, "epochs_done": result.epochs_done,
        "train_seconds": result.train_seconds,
    }


def train_run(tensors: dict, run: Run, config: dict, device: str = "cpu", log=print,
              resume: dict | None = None, on_epoch_end=None) -> RunResult:
    """Train one run: model.train(); per batch forward, loss, backward(), step(), zero_grad().

    Batches come from a seeded permutation per epoch. With train.drop_last the last partial batch
    is dropped, so every update sees exactly batch_size samples (what the batch-size analyses
    assume); the dropped samples change every epoch. A non-finite loss stops the run: no update is
    made from it, and the checkpoints scheduled after it hold no weights.

    `resume` is a training_state() to continue from; `on_epoch_end(state_fn)` is called after every
    epoch with a function that builds the current training_state (built only if the caller saves).
    """
    train_cfg = config["train"]
    x = tensors["x_train"].to(device)
    y = tensors["y_train"].to(device)
    n = len(x)
    per_epoch = steps_per_epoch(n, run.batch_size, train_cfg["drop_last"])
    total = train_cfg["epochs"] * per_epoch
    result = RunResult(run=run, steps_per_epoch=per_epoch, total_steps=total)

    model = init_model(tensors["x_train"], config["model"], run.seed).to(device)
    optimizer = make_optimizer(run.optimizer, model.parameters(), run.lr, config["optimizers"][run.optimizer])
    loss_fn = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(derived_seed(run.seed, "order"))
    log_every = train_cfg["log_every"]
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        order.set_state(resume["order_rng"])
        result.restore_progress(resume)
        log(f"{run}: resuming at epoch {result.epochs_done}, step {result.steps_done}")
    pending = [s for s in checkpoint_schedule(total, train_cfg["checkpoints"]) if s not in result.checkpoint_steps]

    def checkpoint(step: int) -> None:
        pending.pop(0)
        result.checkpoint_steps.append(step)
        result.checkpoint_states.append(cpu_copy(model.state_dict()))

    started = time.perf_counter() - result.train_seconds
    step = result.steps_done
    if pending and pending[0] == step == 0:
        checkpoint(0)
    model.train()
    while not result.finished:
        permutation = torch.randperm(n, generator=order).to(device)
        for batch in range(per_epoch):
            index = permutation[batch * run.batch_size:(batch + 1) * run.batch_size]
            loss = loss_fn(model(x[index]), y[index])
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                result.diverge(step + 1, pending)
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
        result.steps_done = step
        if result.status == "diverged":
            log(f"{run}: diverged at step {result.diverged_step} (non-finite mini-batch loss)")
        else:
            result.epochs_done += 1
            log(f"{run}: epoch {result.epochs_done}/{train_cfg['epochs']} step {step} loss {loss_value:.4f}")
        result.train_seconds = time.perf_counter() - started
        if on_epoch_end is not None:
            on_epoch_end(lambda: training_state(result, model.state_dict(), optimizer.state_dict(), order))
    return result
