"""A run's files: checkpoints.pt (one dict, weights_only-loadable), log.csv and run.json."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from optbench.io import CorruptFileError, atomic_torch_save, atomic_write_csv, atomic_write_json, load_tensors, read_json
from optbench.train import RunResult

RUN_FILES = ("checkpoints.pt", "log.csv", "run.json")


def run_metadata(result: RunResult, device: str, threads: int, n_train: int) -> dict:
    run = result.run
    return {
        "optimizer": run.optimizer, "batch_size": run.batch_size, "lr": run.lr, "seed": run.seed,
        "status": result.status, "diverged_step": result.diverged_step,
        "steps_per_epoch": result.steps_per_epoch, "total_steps": result.total_steps,
        "steps_done": result.steps_done, "train_seconds": result.train_seconds,
        "device": device, "threads": threads, "n_train": n_train, "torch": torch.__version__,
    }


def save_run(result: RunResult, run_dir: str | Path, metadata: dict) -> None:
    run_dir = Path(run_dir)
    atomic_torch_save(
        {"steps": torch.tensor(result.checkpoint_steps, dtype=torch.int64),
         "states": result.checkpoint_states,
         "steps_per_epoch": result.steps_per_epoch,
         "status": result.status},
        run_dir / "checkpoints.pt",
    )
    log = pd.DataFrame({"step": result.log_steps, "loss": result.log_losses})
    log["epoch"] = log["step"] / result.steps_per_epoch
    atomic_write_csv(log[["step", "epoch", "loss"]], run_dir / "log.csv")
    atomic_write_json(metadata, run_dir / "run.json")


def load_checkpoints(path: str | Path) -> dict:
    bundle = load_tensors(path, what="checkpoint file")
    if not isinstance(bundle, dict) or not {"steps", "states", "steps_per_epoch"} <= set(bundle):
        raise CorruptFileError(f"checkpoint file '{path}' lacks steps/states; delete it and rerun snakemake")
    if len(bundle["states"]) != len(bundle["steps"]):
        raise CorruptFileError(f"checkpoint file '{path}' has {len(bundle['steps'])} steps but "
                               f"{len(bundle['states'])} states; delete it and rerun snakemake")
    return bundle


def load_metadata(path: str | Path) -> dict:
    return read_json(path, what="run metadata")
