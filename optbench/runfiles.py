"""A run's files (checkpoints.pt, log.csv, run.json, eval.csv), the checks of what they must hold, and the
bundle receipts that tell Snakemake and the next run which files a train or evaluate job wrote."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from optbench.io import (CorruptFileError, atomic_torch_save, atomic_write_json, atomic_write_text, csv_text,
                         damaged, file_stamp, load_tensors, read_json, stamp_problem)

if TYPE_CHECKING:  # torch only where a run is saved or its checkpoints are loaded
    from optbench.train import RunResult

RUN_FILES = ("checkpoints.pt", "log.csv", "run.json")
EVAL_FILE = "eval.csv"
# beside eval.csv: what it was made from (evaluation_record) and its checksum, so that an evaluate job can
# tell an eval.csv its bundle's train job wrote from the checkpoints in memory from one it must remake
EVAL_RECORD = "eval.json"
SPLITS = ("train", "val", "test")
METADATA_KEYS = {"optimizer", "batch_size", "lr", "seed", "status", "diverged_step", "steps_per_epoch",
                 "total_steps", "steps_done", "train_seconds", "device", "threads", "n_train", "torch", "bundle",
                 "bundle_size", "checkpoint_steps", "log_every", "identity", "git_commit", "git_dirty", "files",
                 "seal"}


def run_metadata(result: RunResult, device: str, threads: int, n_train: int, log_every: int) -> dict:
    import torch

    run = result.run
    return {
        "optimizer": run.optimizer, "batch_size": run.batch_size, "lr": run.lr, "seed": run.seed,
        "status": result.status, "diverged_step": result.diverged_step,
        "steps_per_epoch": result.steps_per_epoch, "total_steps": result.total_steps,
        "steps_done": result.steps_done, "train_seconds": result.train_seconds,
        "checkpoint_steps": list(result.checkpoint_steps), "log_every": log_every,
        "device": device, "threads": threads, "n_train": n_train, "torch": torch.__version__,
    }


def seal(meta: dict) -> str:
    """sha256 of run.json's other fields: an edit or a flipped bit anywhere in them breaks it."""
    payload = {k: v for k, v in meta.items() if k != "seal"}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def checkpoint_bundle(result: RunResult) -> dict:
    """What checkpoints.pt holds (load_checkpoints reads it back): the steps, the states (None after a
    divergence), steps per epoch and the run's status."""
    import torch

    return {"steps": torch.tensor(result.checkpoint_steps, dtype=torch.int64), "states": result.checkpoint_states,
            "steps_per_epoch": result.steps_per_epoch, "status": result.status}


def save_run(result: RunResult, run_dir: str | Path, metadata: dict) -> dict:
    """Write the run's files (run.json last, with the checksums of the others and its seal); returns
    their stamps for the bundle receipt. The same results give the same bytes, timing aside."""
    run_dir = Path(run_dir)
    atomic_torch_save(checkpoint_bundle(result), run_dir / "checkpoints.pt")
    # csv_text: pandas' bytes without importing pandas in a train job
    rows = ((step, step / result.steps_per_epoch, loss) for step, loss in zip(result.log_steps, result.log_losses))
    atomic_write_text(csv_text(("step", "epoch", "loss"), rows), run_dir / "log.csv")
    stamps = {name: file_stamp(run_dir / name) for name in ("checkpoints.pt", "log.csv")}
    meta = {**metadata, "files": {name: stamp["sha256"] for name, stamp in stamps.items()}}
    meta["seal"] = seal(meta)
    atomic_write_json(meta, run_dir / "run.json")
    return {**stamps, "run.json": file_stamp(run_dir / "run.json")}


def load_metadata(path: str | Path) -> dict:
    """run.json, refused (CorruptFileError naming it) when keys are missing or its seal is broken."""
    meta = read_json(path, what="run metadata")
    if not isinstance(meta, dict) or not METADATA_KEYS <= set(meta):
        found = set(meta) if isinstance(meta, dict) else set()
        raise damaged(path, "run metadata", f"lacks the keys {sorted(METADATA_KEYS - found)}")
    if meta["seal"] != seal(meta):
        raise damaged(path, "run metadata", "does not match its seal (a value was changed after training)")
    return meta


def reusable(run_dir: str | Path, identity: dict) -> str | None:
    """None when the run's files are complete, intact and were made by `identity` (the same config
    values, training code, data and device); else why the run must be trained again."""
    run_dir = Path(run_dir)
    if not (run_dir / "run.json").exists():
        return "not trained yet"
    try:
        meta = load_metadata(run_dir / "run.json")
    except CorruptFileError as error:
        return str(error).split(". Delete")[0]
    if meta["identity"] != identity:
        changed = sorted(k for k in set(identity) | set(meta["identity"])
                         if identity.get(k) != meta["identity"].get(k))
        return f"trained with other {', '.join(changed)} than now"
    for name, sha in meta["files"].items():
        if not (run_dir / name).exists():
            return f"{name} is missing"
        if file_stamp(run_dir / name)["sha256"] != sha:
            return f"{name} differs from what was written when the run finished (damaged)"
    return None


def load_checkpoints(path: str | Path, expected_steps: list[int] | None = None) -> dict:
    """checkpoints.pt as saved by save_run; refused when its lists disagree, or when its steps are not
    the schedule the run was trained to (`expected_steps`)."""
    bundle = load_tensors(path, what="checkpoint file")
    if not isinstance(bundle, dict) or not {"steps", "states", "steps_per_epoch"} <= set(bundle):
        raise damaged(path, "checkpoint file", "lacks steps/states")
    if len(bundle["states"]) != len(bundle["steps"]):
        raise damaged(path, "checkpoint file", f"has {len(bundle['steps'])} steps but {len(bundle['states'])} states")
    if expected_steps is not None and bundle["steps"].tolist() != list(expected_steps):
        raise damaged(path, "checkpoint file", f"holds steps {bundle['steps'].tolist()} where the schedule is "
                                               f"{list(expected_steps)}")
    return bundle


def load_log(path: str | Path, meta: dict):
    """log.csv: one row per logged step, exactly the steps training logged (every log_every-th up to
    steps_done), with finite losses."""
    return load_logs([path], [meta])[0]


def load_logs(paths: list, metas: list[dict]) -> list:
    """load_log of each path with its run.json: the same tables and errors, the files parsed together
    (optbench.tables.read_tables: aggregate reads every run's)."""
    import numpy as np

    from optbench.tables import read_tables

    logs = read_tables(paths, "log")
    for path, log, meta in zip(paths, logs, metas, strict=True):
        expected = list(range(meta["log_every"], meta["steps_done"] + 1, meta["log_every"]))
        if log["step"].tolist() != expected:
            raise damaged(path, "training log", f"has {len(log)} rows (steps {_span(log['step'])}) where training "
                                                f"logged {len(expected)} (steps {_span(expected)})")
        if not np.isfinite(log["loss"].to_numpy()).all():
            raise damaged(path, "training log", "has non-finite losses")
    return logs


def load_eval(path: str | Path, meta: dict):
    """eval.csv: a row per checkpoint in run.json's schedule × split, each split's steps in order;
    losses are numbers (inf only for a checkpoint without weights)."""
    return load_evals([path], [meta])[0]


def load_evals(paths: list, metas: list[dict]) -> list:
    """load_eval of each path with its run.json: the same tables and errors, the files parsed together
    (optbench.tables.read_tables: aggregate reads every run's)."""
    import numpy as np

    from optbench.tables import read_tables

    tables = read_tables(paths, EVAL_FILE.split(".")[0])
    for path, table, meta in zip(paths, tables, metas, strict=True):
        steps = list(meta["checkpoint_steps"])
        if len(table) != len(steps) * len(SPLITS):
            raise damaged(path, "evaluation table", f"has {len(table)} rows where the run's {len(steps)} checkpoints "
                                                    f"× {len(SPLITS)} splits make {len(steps) * len(SPLITS)}")
        # numpy, not pandas masks: ~20 µs a split instead of ~250, times 366 runs in aggregate
        split, step, loss = (table[column].to_numpy() for column in ("split", "step", "loss"))
        for name in SPLITS:
            if step[split == name].tolist() != steps:
                raise damaged(path, "evaluation table", f"does not hold split '{name}' at the run's checkpoint steps")
        if (table["has_weights"].to_numpy() & ~np.isfinite(loss) & (loss != math.inf)).any():
            raise damaged(path, "evaluation table", "has checkpoints with weights but no loss")
    return tables


def evaluation_basis(settings: dict, device: str, threads: int) -> dict:
    """What, beside a run's checkpoints, decides the bytes of its eval.csv: the evaluate settings, the
    device and thread count (the determinism contract) and the evaluation code (its digest)."""
    from optbench.identity import code_digest

    return {"settings": dict(sorted(settings.items())), "device": device, "threads": threads,
            "code": code_digest("evaluate")}


def evaluation_record(basis: dict, checkpoints_sha256: str) -> dict:
    """evaluation_basis and the checksum of the checkpoints.pt evaluated: equal records, equal eval.csv bytes."""
    return {**basis, "checkpoints.pt": checkpoints_sha256}


def publish_eval(run_dir: str | Path, text: str, record: dict) -> dict:
    """Write eval.csv (left untouched when its bytes would not change) and then its record; returns the
    eval.csv stamp for the evaluate receipt."""
    target = Path(run_dir) / EVAL_FILE
    if not target.exists() or target.read_text() != text:
        atomic_write_text(text, target)
    stamp = file_stamp(target)
    atomic_write_json({**record, "sha256": stamp["sha256"]}, Path(run_dir) / EVAL_RECORD)
    return stamp


def reusable_eval(run_dir: str | Path, record: dict) -> str | None:
    """None when the run's eval.csv is intact and was made under `record` (so evaluating again would
    give the same bytes); else why the run must be evaluated."""
    run_dir = Path(run_dir)
    if not (run_dir / EVAL_RECORD).exists():
        return "not evaluated yet"
    try:
        made = read_json(run_dir / EVAL_RECORD, what="evaluation record")
    except CorruptFileError as error:
        return str(error).split(". Delete")[0]
    if not isinstance(made, dict) or "sha256" not in made:
        return f"{EVAL_RECORD} is not as written"
    sha = made.pop("sha256")
    if made != record:
        changed = sorted(k for k in set(made) | set(record) if made.get(k) != record.get(k))
        return f"evaluated with other {', '.join(changed)} than now"
    if not (run_dir / EVAL_FILE).exists():
        return f"{EVAL_FILE} is missing"
    if file_stamp(run_dir / EVAL_FILE)["sha256"] != sha:
        return f"{EVAL_FILE} differs from what its evaluation wrote"
    return None


def _span(steps) -> str:
    steps = list(steps)
    return f"{steps[0]}..{steps[-1]}" if steps else "none"


# ---- bundle receipts: a train or evaluate job's declared output ----

def write_bundle_receipt(path: str | Path, members: list[dict], files: list[dict], **about) -> None:
    """The job's receipt: each member run's directory with the stamps of the files the job wrote or kept."""
    runs = [{**member, "files": stamps} for member, stamps in zip(members, files, strict=True)]
    atomic_write_json({**about, "runs": runs}, path)


def read_bundle_receipt(path: str | Path) -> dict:
    receipt = read_json(path, what="bundle receipt")
    if not isinstance(receipt, dict) or not isinstance(receipt.get("runs"), list):
        raise damaged(path, "bundle receipt", "lacks its list of runs")
    return receipt


def receipt_problems(path: str | Path) -> list[str]:
    """What no longer matches a bundle receipt: its run files that are missing or were changed after
    the job wrote them (cheap: a stat per file, a hash only when a size matches but the time does not)."""
    try:
        receipt = read_bundle_receipt(path)
        return [f"{member['dir']}/{name} {problem}" for member in receipt["runs"]
                for name, stamp in member["files"].items()
                if (problem := stamp_problem(Path(member["dir"]) / name, stamp))]
    except CorruptFileError as error:
        return [str(error).split(". Delete")[0]]
    except (KeyError, TypeError):
        return [f"bundle receipt '{path}' is not as written"]


def verified_run_files(trained: list[str], evaluated: list[str], names=("run.json", "log.csv", EVAL_FILE)):
    """The run folders that the train and evaluate receipts list, in their order, after checking that
    each of the named files still has the checksum its job recorded (CorruptFileError names one that
    does not)."""
    stamps: dict[str, dict] = {}
    for path in [*trained, *evaluated]:
        for member in read_bundle_receipt(path)["runs"]:
            stamps.setdefault(member["dir"], {}).update(member["files"])
    for run_dir, files in stamps.items():
        for name in names:
            path = Path(run_dir) / name
            if name not in files:
                raise damaged(path, "run file", "is in no job's receipt")
            if not path.exists():
                raise damaged(path, "run file", "is missing")
            if file_stamp(path)["sha256"] != files[name]["sha256"]:
                raise damaged(path, "run file", "differs from what its job wrote")
    return [Path(run_dir) for run_dir in stamps]
