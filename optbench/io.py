"""Atomic file writes (temporary file + rename) with receipts, and loads that name the file when it is damaged."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import secrets
from contextlib import contextmanager
from pathlib import Path

RESULTS = "results"
# A receipt (size, mtime, sha256 of a file as its job wrote it) is kept for every file written under
# results/ but runs/ and resume/, whose files are checked through run.json and the bundle receipts.
RECEIPTS = ".receipts"
UNRECEIPTED = ("runs", "resume", RECEIPTS)


class CorruptFileError(RuntimeError):
    """A file exists but cannot be read or is not what its producer wrote; the message names it and
    says what to do. `path` is the damaged file, when known."""

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`.

    A kill at any moment leaves either the old file or the new one, never a truncated one. The
    temporary file is created with mode 0666 less the umask, like any new file (tempfile.mkstemp's
    0600 would survive the rename and hide outputs from colleagues and web servers).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    write_receipt(path)


def atomic_torch_save(obj, path: str | Path) -> None:
    """torch.save through a file handle: the archive then records no file name, so the same tensors
    give the same bytes wherever they are written."""
    import torch  # here, not at the top: light jobs (aggregate, analyze, figures, report) never load torch

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)


def atomic_write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(obj, path: str | Path) -> None:
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def csv_text(columns, rows) -> str:
    """CSV text of `rows` (sequences of values in `columns` order), a header first: the bytes pandas'
    DataFrame.to_csv(index=False) writes for int, float, bool and str columns (a float as its repr, the
    shortest digits that read back exactly, as numpy's astype(str) writes it; NaN as an empty field;
    the csv module's minimal quoting, as pandas uses it).

    Written by hand so that a train job, which writes every run's log.csv and eval.csv, need not import
    pandas: 0.4 s of each job's start (issue 14). tests/test_reliability.py checks it against to_csv."""
    def field(value) -> str:
        if isinstance(value, float):  # float(): numpy 2's repr of its float64 is "np.float64(...)"
            return "" if math.isnan(value) else repr(float(value))
        return str(value)

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([field(value) for value in row] for row in rows)
    return out.getvalue()


def atomic_write_csv(frame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_stamp(path: str | Path, with_hash: bool = True) -> dict:
    """What a file was when written: size, modification time (ns) and, optionally, sha256."""
    stat = os.stat(path)
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if with_hash:
        stamp["sha256"] = sha256_file(path)
    return stamp


def stamp_problem(path: str | Path, stamp: dict) -> str | None:
    """None when the file is still what `stamp` recorded, else what is wrong. A changed mtime alone
    (`touch`, a copy) is fine when the content hash still matches."""
    path = Path(path)
    if not path.exists():
        return "is missing"
    stat = os.stat(path)
    if stat.st_size != stamp["size"]:
        return f"has {stat.st_size} bytes where {stamp['size']} were written"
    if stat.st_mtime_ns != stamp["mtime_ns"] and sha256_file(path) != stamp["sha256"]:
        return "was changed after it was written"
    return None


def receipt_path(path: str | Path, workdir: Path | None = None) -> Path | None:
    """results/.receipts/<path under results>.json, or None for files that get no receipt."""
    root = (workdir or Path.cwd()).resolve() / RESULTS
    try:
        relative = Path(os.path.abspath(path)).relative_to(root)
    except ValueError:
        return None
    if relative.parts[0] in UNRECEIPTED:
        return None
    return root / RECEIPTS / f"{relative}.json"


def write_receipt(path: Path) -> None:
    receipt = receipt_path(path)
    if receipt is None:
        return
    receipt.parent.mkdir(parents=True, exist_ok=True)
    tmp = receipt.with_name(f".{receipt.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(file_stamp(path)))
    os.replace(tmp, receipt)


def receipt_problem(path: str | Path, workdir: Path | None = None) -> str | None:
    """What is wrong with an existing file that has a receipt (None: fine, or no receipt to compare)."""
    receipt = receipt_path(path, workdir)
    if receipt is None or not receipt.exists() or not Path(path).exists():
        return None
    try:
        stamp = json.loads(receipt.read_text())
        return stamp_problem(path, stamp)
    except (ValueError, KeyError, TypeError):
        return "has a damaged receipt"


def load_tensors(path: str | Path, what: str = "file"):
    """torch.load with weights_only=True; a damaged file raises CorruptFileError naming it."""
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} '{path}' does not exist; rerun snakemake to produce it")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise damaged(path, what, f"is truncated or corrupted ({type(error).__name__}: {error})") from None


def read_json(path: str | Path, what: str = "file"):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise damaged(path, what, f"is not valid JSON ({error})") from None


def damaged(path: str | Path, what: str, problem: str) -> CorruptFileError:
    """The error for a damaged file: its name, what is wrong, and what to do."""
    return CorruptFileError(f"{what} '{path}' {problem}. Delete it and rerun snakemake to recompute it.", path)
