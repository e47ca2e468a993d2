"""Per-run files → tidy tables: runs.csv (checkpoint × split), run_status.csv, minibatch.csv, test_loop.csv."""
from __future__ import annotations

import numpy as np
import pandas as pd

from optbench.config import RUN_KEYS
from optbench.tables import TABLES

MINIBATCH_POINTS = 200


def final_status(meta: dict, evals: pd.DataFrame) -> tuple[str, str]:
    """(status, reason): diverged when training hit a non-finite loss, or when the full training loss
    never went below its value at initialisation (judged on the evaluated checkpoints, at the end)."""
    if meta["status"] == "diverged":
        return "diverged", "nonfinite"
    train = evals[evals["split"] == "train"].sort_values("step")
    initial = train["loss"].iloc[0]
    if not (train["loss"].iloc[1:] < initial).any():
        return "diverged", "no_progress"
    return "ok", ""


def downsample_log(log: pd.DataFrame, points: int = MINIBATCH_POINTS) -> pd.DataFrame:
    """Mean mini-batch loss over at most `points` equal windows of steps (keeps spikes in loss_max)."""
    if len(log) <= points:
        return log.assign(loss_max=log["loss"])
    # an Index, not a bare array: pandas first tries a bare array as a column label, and its KeyError
    # formats the whole array (a quarter of the time of this function, issue 14)
    window = pd.Index(np.arange(len(log)) * points // len(log))
    grouped = log.groupby(window)
    return pd.DataFrame({"step": grouped["step"].last(), "epoch": grouped["epoch"].last(),
                         "loss": grouped["loss"].mean(), "loss_max": grouped["loss"].max()})


def final_test(runs: pd.DataFrame) -> pd.DataFrame:
    """Each run's test-split row at its last checkpoint (the end of its budget, without weights after a
    divergence): its accuracy and tutorial_avg_loss are the tutorial's test_loop after the last epoch."""
    test = runs[runs["split"] == "test"]
    return test.loc[test.groupby(RUN_KEYS, sort=False)["step"].idxmax(), list(TABLES["test_loop"].columns)]


def build_tables(metas: list[dict], evals: list[pd.DataFrame], logs: list[pd.DataFrame],
                 dataset: str, model: str) -> dict[str, pd.DataFrame]:
    runs, statuses, minibatch = [], [], []
    for meta, evaluation, log in zip(metas, evals, logs, strict=True):
        status, reason = final_status(meta, evaluation)
        identity = {"dataset": dataset, "model": model, **{k: meta[k] for k in RUN_KEYS}}
        runs.append(evaluation.assign(**identity, status=status))
        statuses.append({**identity, "status": status, "reason": reason,
                         **{k: meta[k] for k in ("diverged_step", "steps_per_epoch", "total_steps", "steps_done",
                                                 "train_seconds", "device", "threads", "n_train", "bundle")}})
        minibatch.append(downsample_log(log).assign(**identity))
    order = [*RUN_KEYS]
    every = pd.concat(runs, ignore_index=True).sort_values([*order, "split", "step"], kind="stable")
    return {  # columns as declared in optbench.tables (write_table conforms them)
        "runs": every,
        "test_loop": final_test(every),
        "run_status": pd.DataFrame(statuses).sort_values(order, kind="stable"),
        "minibatch": pd.concat(minibatch, ignore_index=True).sort_values([*order, "step"], kind="stable"),
    }
