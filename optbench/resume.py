"""A bundle's training plan: which runs to keep, resume or train, and their resume states (saved outside
Snakemake's outputs, under a per-run lock).

Snakemake deletes a failed job's outputs, so a run's progress lives in results/resume instead: its
training state at the last saved epoch boundary, tagged with the run's identity (config values,
training code, data, device) so that a state written by other code is never continued. A finished
run's files live only in its run folder (results/runs/...), which no rule declares as an output:
a rerun of the job (forced, retried, or after a deleted file) keeps every run whose files are intact
and were made by the same identity, without touching them, and trains the rest. A per-run lock keeps
two writers (an orphaned job left by a killed snakemake, and its rerun) apart: the second waits.
"""
from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path

from optbench.io import CorruptFileError, atomic_torch_save, load_tensors

STATE = "state.pt"


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

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

    def load_state(self, identity: dict, log=print) -> dict | None:
        """The saved training state, if it was written for this identity; a damaged one or one from
        other code or settings is discarded (the run starts over) and the log says why."""
        path = self.root / STATE
        if not path.exists():
            return None
        try:
            state = load_tensors(path, what="resume state")
        except CorruptFileError as error:
            log(f"{error.args[0].split('. Delete')[0]}; starting the run over")
            return None
        if not isinstance(state, dict) or state.get("identity") != identity:
            log(f"{path}: resume state of other code or settings; starting the run over")
            return None
        return state

    def saver(self, every_seconds: float, identity: dict):
        """on_epoch_end callback of a solo run (bundle_saver for a bundle of one)."""
        save_bundle = bundle_saver([self], every_seconds, identity)
        return lambda build_state: save_bundle(lambda: [build_state()])

    def save_state(self, state: dict, identity: dict) -> None:
        atomic_torch_save({**state, "identity": identity}, self.root / STATE)

    def finish(self) -> None:
        """The run's files are complete: the training state is no longer needed."""
        (self.root / STATE).unlink(missing_ok=True)


def bundle_saver(stores: list[RunStore | None], every_seconds: float, identity: dict):
    """on_epoch_end callback of a bundle: save every member's state at the same epoch boundary, at
    most once per `every_seconds` (one clock, so members resume together unless a kill splits a save).
    A member without a store (a companion, see lockstep_groups) is not saved."""
    last = time.monotonic()

    def save(build_states) -> None:
        nonlocal last
        if time.monotonic() - last >= every_seconds:
            for store, state in zip(stores, build_states()):
                if store is not None:
                    store.save_state(state, identity)
            last = time.monotonic()

    return save


def lockstep_groups(todo: list[int], steps: dict[int, int], bundle_size: int) -> list[tuple[list[int], bool]]:
    """The members to train, grouped by the step they resume from (a bundle trains in lockstep), each
    with whether it needs a companion.

    A run's bits must not depend on which of its bundle's runs it trains with: it may be resumed in a
    part of its bundle after a kill split the bundle's saves, or retrained alone after damage. Any part
    of two or more members gives each member the bits of the whole bundle (tested), but a member trained
    on its own does not (a one-member ensemble goes through other kernels). So a group of one, in a
    bundle of several, trains beside a copy of itself whose results are discarded.
    """
    groups: dict[int, list[int]] = {}
    for i in todo:
        groups.setdefault(steps[i], []).append(i)
    return [(members, len(members) == 1 and bundle_size > 1) for members in groups.values()]
