"""Faults after a finished run: a damaged and a deleted file at every stage (data, checkpoint, log, run.json,
eval, every table), each followed by a plain rerun that ends with tables identical to the uninterrupted run
and leaves nothing to do; a grid that grows and shrinks back; a run trained by other code.

Every case starts from a copy of the session's one uninterrupted tiny run (conftest.tiny_workdir) and
damages several files of different bundles and stages at once, so that one rerun (seconds) covers many
faults.
"""
import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from optbench.config import load_config
from optbench.runfiles import seal
from tests.conftest import ROOT, TINY, snakemake

pytestmark = pytest.mark.workflow

# wall-clock numbers differ between any two runs: the cost tables and run_status' train_seconds
TIMING_TABLES = {"cost.csv", "cost_cells.csv"}
TIMING_COLUMNS = {"run_status.csv": ["train_seconds"]}
# A damage per run file kind, each in another of the tiny grid's four bundles (so that each is repaired by its
# own job), plus the data and a run trained by other code: (file, run, how it is damaged)
RUN_FAULTS = [("checkpoints.pt", "sgd-*/bs64/lr0.05/seed1", "truncated"),
              ("log.csv", "sgd-*/bs256/lr0.8/seed2", "one byte changed"),
              ("run.json", "adam-*/bs64/lr0.016/seed1", "truncated"),
              ("eval.csv", "adam-*/bs256/lr0.004/seed2", "truncated"),
              ("eval.csv", "sgd-*/bs64/lr0.8/seed0", "one byte changed"),
              ("run.json", "sgd-*/bs256/lr0.05/seed0", "trained by other code")]


def tables(workdir: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for path in sorted((workdir / "results" / "tables").iterdir()):
        if path.name in TIMING_TABLES:
            continue
        if path.suffix == ".json":
            out[path.name] = json.loads(path.read_text())
        else:
            out[path.name] = pd.read_csv(path, dtype=str).drop(columns=TIMING_COLUMNS.get(path.name, []))
    return out


def assert_same_tables(workdir: Path, reference: Path) -> None:
    got, expected = tables(workdir), tables(reference)
    assert sorted(got) == sorted(expected)
    for name, table in expected.items():
        if isinstance(table, pd.DataFrame):
            pd.testing.assert_frame_equal(got[name], table, check_exact=True, obj=name)
        else:
            assert got[name] == table, name


def copy_of(reference: Path, tmp_path: Path) -> Path:
    workdir = tmp_path / "work"
    shutil.copytree(reference, workdir, symlinks=True)  # copy2 keeps the times the receipts recorded
    return workdir


def run_file(workdir: Path, name: str, run: str) -> Path:
    return next((workdir / "results" / "runs").glob(f"*/{run}/{name}"))


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif how == "one byte changed":  # same size: only the content hash can tell
        i = len(data) // 2
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x20]) + data[i + 1:])
    elif how == "deleted":
        path.unlink()
    elif how == "trained by other code":  # intact and sealed, as an older checkout would have written it
        meta = json.loads(data)
        meta["identity"]["train_code"] = "0" * 16
        meta["seal"] = seal(meta)
        path.write_text(json.dumps(meta))


def faults(workdir: Path, kind: str, deleted: bool) -> list[tuple[Path, str]]:
    """(file, how): every run file kind and the data, or every table and probe output."""
    if kind == "run files":
        targets = [(run_file(workdir, name, run), how) for name, run, how in RUN_FAULTS]
        targets.append((next((workdir / "results" / "data").glob("*.pt")), "one byte changed"))
    else:
        files = [*sorted((workdir / "results" / "tables").iterdir()),
                 *sorted((workdir / "results" / "gradvar").rglob("*.csv"))]
        targets = [(path, ("truncated", "one byte changed")[i % 2]) for i, path in enumerate(files)]
    return [(path, "deleted" if deleted else how) for path, how in targets]


def rerun(workdir: Path, check: bool = True):
    return snakemake(workdir, "--cores", "2", check=check)


def assert_settled(workdir: Path) -> None:
    """Nothing left to do: the repair does not loop."""
    assert "Nothing to be done" in snakemake(workdir, "-n").stdout


@pytest.mark.parametrize("kind", ["run files", "tables"])
@pytest.mark.parametrize("deleted", [False, True], ids=["damaged", "deleted"])
def test_damaged_or_deleted_files_are_rebuilt_by_a_plain_rerun(tiny_workdir, tmp_path, kind, deleted):
    workdir = copy_of(tiny_workdir, tmp_path)
    targets = faults(workdir, kind, deleted)
    assert len(targets) >= (7 if kind == "run files" else 30)
    for path, how in targets:
        damage(path, how)
    rerun(workdir)
    assert_same_tables(workdir, tiny_workdir)
    for path, how in targets:  # every damaged file is back, byte for byte where its content has no timing
        original = tiny_workdir / path.relative_to(workdir)
        if path.name != "run.json" and path.name not in TIMING_TABLES | set(TIMING_COLUMNS):
            assert path.read_bytes() == original.read_bytes(), path
        if how == "trained by other code":
            assert json.loads(path.read_text())["identity"] == json.loads(original.read_text())["identity"]
    if kind == "run files" and not deleted:
        logs = "".join(p.read_text() for p in (workdir / "logs" / "train").rglob("*.log"))
        assert "to train (trained with other train_code than now)" in logs
    assert_settled(workdir)


def test_evaluate_jobs_keep_what_train_jobs_evaluated_and_evaluate_the_rest_to_the_same_bytes(tiny_workdir, tmp_path):
    """The train jobs evaluate their runs from the checkpoints in memory and record from what (eval.json);
    the evaluate jobs then only check. Without the records (a train job at other threads than evaluate's,
    an earlier checkout), the evaluate jobs evaluate every run from checkpoints.pt: the same bytes."""
    logs = [p.read_text() for p in (tiny_workdir / "logs" / "evaluate").rglob("*.log")]
    assert len(logs) == 4 and all(re.search(r"\] (\d+) of \1 runs kept", log) for log in logs)
    workdir = copy_of(tiny_workdir, tmp_path)
    records = sorted((workdir / "results" / "runs").rglob("eval.json"))
    assert len(records) == len(list((workdir / "results" / "runs").rglob("eval.csv"))) == 36
    for path in records:
        path.unlink()
    output = snakemake(workdir, "--cores", "2", "--forcerun", "evaluate")
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", output.stdout + output.stderr, flags=re.M))
    assert jobs.get("evaluate") == "4" and "train" not in jobs  # evaluated again, never trained
    for path in records:
        made = path.with_name("eval.csv")
        assert path.exists() and made.read_bytes() == (tiny_workdir / made.relative_to(workdir)).read_bytes(), made
    logs = [p.read_text() for p in (workdir / "logs" / "evaluate").rglob("*.log")]
    assert all("] 0 of 9 runs kept" in log and log.count("eval.csv: to evaluate (not evaluated yet)") == 9
               and "evaluated 9 of 9" in log for log in logs)
    assert_same_tables(workdir, tiny_workdir)
    assert_settled(workdir)


def test_damage_that_keeps_size_and_time_is_caught_when_the_file_is_read(tiny_workdir, tmp_path):
    """The check before the run compares sizes and times; a change that keeps both (a restore with
    `cp -p`, a bit flip in place) is caught by the checksum when the aggregate job reads the file: the
    run stops naming it and removes it (Snakemake removes the failed job's tables too), and the next
    plain rerun rebuilds everything."""
    workdir = copy_of(tiny_workdir, tmp_path)
    path = run_file(workdir, "eval.csv", RUN_FAULTS[3][1])
    stat = path.stat()
    damage(path, "one byte changed")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (workdir / "results" / "tables" / "runs.csv").unlink()  # so that aggregate runs and reads it
    failed = rerun(workdir, check=False)
    assert failed.returncode != 0
    log = (workdir / "logs" / "aggregate.log").read_text()
    assert f"{path.relative_to(workdir)}' differs from what its job wrote" in log and "has been removed" in log
    assert not path.exists() and not (workdir / "results" / "tables" / "runs.csv").exists()
    rerun(workdir)
    assert_same_tables(workdir, tiny_workdir)
    assert_settled(workdir)


def grid_config(tmp_path: Path, grow: bool) -> Path:
    config = load_config(TINY)
    if grow:  # append one learning rate per optimizer and one seed
        config["optimizers"]["sgd"]["lrs"].append(3.2)
        config["optimizers"]["adam"]["lrs"].append(0.064)
        config["grid"]["seeds"].append(3)
    path = tmp_path / ("grown.yaml" if grow else "tiny.yaml")
    path.write_text(yaml.safe_dump(config, sort_keys=False))  # key order is part of the params Snakemake compares
    return path


def file_times(workdir: Path) -> dict[str, int]:
    return {str(p.relative_to(workdir)): p.stat().st_mtime_ns
            for root in ("results/runs", "results/gradvar") for p in (workdir / root).rglob("*") if p.is_file()}


def test_a_growing_grid_trains_only_new_runs_and_touches_no_old_file(tiny_workdir, tmp_path):
    workdir = copy_of(tiny_workdir, tmp_path)
    before = {k: v for k, v in file_times(workdir).items() if "bundle-" not in k}
    result = snakemake(workdir, "--cores", "2", configfile=grid_config(tmp_path, grow=True))
    jobs = re.findall(r"^(?:local)?rule (\w+):", result.stdout + result.stderr, flags=re.M)
    # 4 bundles gain a learning rate (l0s0), 4 new bundles hold seed 3 (l0s1); no probe's run changed
    assert jobs.count("train") == 8 and jobs.count("evaluate") == 8 and "grad_variance" not in jobs
    logs = "".join(p.read_text() for p in (workdir / "logs" / "train").rglob("*.log"))
    assert logs.count("to train (not trained yet)") == 4 * (4 * 4 - 3 * 3) and logs.count("kept: already") == 36
    after = file_times(workdir)
    assert {k: after[k] for k in before} == before  # restoring an unchanged run does not touch its files
    # shrinking back to the original grid gives the original tables, training nothing
    result = snakemake(workdir, "--cores", "2", configfile=grid_config(tmp_path, grow=False))
    assert "to train" not in "".join(p.read_text() for p in (workdir / "logs" / "train").rglob("*_l0s0.log"))
    assert_same_tables(workdir, tiny_workdir)
    assert "Nothing to be done" in snakemake(workdir, "-n", configfile=grid_config(tmp_path, grow=False)).stdout


def rules_planned_after_editing(workdir, module: str, docstring_start: str, edit: str) -> set[str]:
    """The rules `snakemake -n` plans after rewording the docstring of optbench/<module> and appending
    `edit` to it (restored afterwards)."""
    path = ROOT / "optbench" / module
    original = path.read_text()
    assert original.count(f'"""{docstring_start}') == 1, f"{module}'s docstring does not start with {docstring_start!r}"
    try:
        path.write_text(original.replace(f'"""{docstring_start}', f'"""Reworded: {docstring_start}', 1) + edit)
        result = snakemake(workdir, "-n", "--quiet", "rules")
    finally:
        path.write_text(original)
    return set(re.findall(r"^(\w+)\s+\d+$", result.stdout, flags=re.M)) - {"all", "total"}


CODE_EDITS = [("\n# a comment, and a reworded docstring\n", False), ("\nUNUSED_CONSTANT = 1\n", True)]


@pytest.mark.parametrize("edit, retrains", CODE_EDITS)
def test_editing_training_code_retrains_only_when_what_the_code_does_changes(tiny_workdir, edit, retrains):
    """The training code's digest (comments and docstrings excluded) is a param of the train jobs."""
    planned = rules_planned_after_editing(tiny_workdir, "model.py", "The models", edit)
    assert ({"train", "evaluate", "grad_variance"} <= planned) if retrains else not planned


@pytest.mark.parametrize("edit, reevaluates", CODE_EDITS)
def test_editing_evaluation_code_reevaluates_without_retraining(tiny_workdir, edit, reevaluates):
    """The evaluation code's digest is a param of the evaluate jobs: eval.json records it, but without
    the param an edit of optbench/evaluate.py left every existing eval.csv as it was (stale)."""
    planned = rules_planned_after_editing(tiny_workdir, "evaluate.py", "Checkpoint evaluation", edit)
    assert ("evaluate" in planned and not {"train", "grad_variance"} & planned) if reevaluates else not planned


def test_old_experiment_folders_are_listed_and_removed_only_when_asked(tiny_workdir, tmp_path):
    import subprocess
    import sys

    workdir = copy_of(tiny_workdir, tmp_path)
    other = load_config(TINY)
    other["train"]["epochs"] = 3  # another experiment tag, the same data
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other, sort_keys=False))

    def experiments(*args):
        return subprocess.run([sys.executable, "-m", "optbench.experiments", "--directory", str(workdir), *args],
                              capture_output=True, text=True, check=True, cwd=ROOT).stdout

    listing = experiments(str(TINY))
    assert "used by none of them: 0" in listing
    runs = next((workdir / "results" / "runs").iterdir())
    listing = experiments(str(tmp_path / "other.yaml"))
    assert f"results/runs/{runs.name}" in listing.split("used by none of them")[1] and "nothing removed" in listing
    assert runs.exists()
    experiments("--remove", str(tmp_path / "other.yaml"))
    assert not runs.exists() and not list((workdir / "logs" / "train").iterdir())
    assert list((workdir / "results" / "data").glob("*.pt"))  # the other config still uses the data
    assert not (workdir / "results" / ".receipts" / "gradvar").exists() or \
        not list((workdir / "results" / ".receipts" / "gradvar").iterdir())
