"""Resume store kept outside Snakemake's declared outputs: a run's training state and final files.

Snakemake deletes a failed job's outputs, so a run's progress lives here instead: the training
state at the last saved epoch boundary, then the run's finished files, which are hard-linked into
the declared outputs (no extra disk). A per-run lock keeps two writers (an orphaned job left by a
killed snakemake, and its rerun) from mixing their states: the second waits for the first.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from optbench.io import atomic_torch_save, load_tensors
from optbench.runfiles import RUN_FILES

STATE = "state.pt"
FINAL = "final"


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.final_dir = self.root / FINAL

    @contextmanager
    def locked(self, log=print):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log(f"{self.root}: another process holds this run; waiting for it to finish")
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield self
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def has_final(self) -> bool:
        return all((self.final_dir / name).exists() for name in RUN_FILES)

    def load_state(self) -> dict | None:
        path = self.root / STATE
        return load_tensors(path, what="resume state") if path.exists() else None

    def saver(self, every_seconds: float):
        """on_epoch_end callback of a solo run: save its training state at most once per `every_seconds`
        (bundle_saver for a bundle of one)."""
        save_bundle = bundle_saver([self], every_seconds)
        return lambda build_state: save_bundle(lambda: [build_state()])

    def save_state(self, state: dict) -> None:
        atomic_torch_save(state, self.root / STATE)

    def finish(self) -> None:
        """The final files are complete: the training state is no longer needed."""
        (self.root / STATE).unlink(missing_ok=True)

    def publish(self, run_dir: str | Path) -> None:
        """Hard-link (copy where links fail) the final files into the declared output folder."""
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            target = run_dir / name
            target.unlink(missing_ok=True)
            try:
                os.link(self.final_dir / name, target)
            except OSError:
                shutil.copy2(self.final_dir / name, target)


def bundle_saver(stores: list[RunStore], every_seconds: float):
    """on_epoch_end callback of a bundle: save every member's state at the same epoch boundary, at
    most once per `every_seconds` (one clock, so members resume together unless a kill splits a save)."""
    last = time.monotonic()

    def save(build_states) -> None:
        nonlocal last
        if time.monotonic() - last >= every_seconds:
            for store, state in zip(stores, build_states()):
                store.save_state(state)
            last = time.monotonic()

    return save
