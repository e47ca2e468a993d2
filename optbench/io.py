"""Atomic file writes (temporary file + rename) and loads that name the file when it is damaged."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


class CorruptFileError(RuntimeError):
    """A file exists but cannot be read; the message names it and says to delete it and rerun."""


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`.

    A kill at any moment leaves either the old file or the new one, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj, path: str | Path) -> None:
    import torch  # here, not at the top: light jobs (aggregate, analyze, figures, report) never load torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(obj, path: str | Path) -> None:
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


def atomic_write_csv(frame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def load_tensors(path: str | Path, what: str = "file"):
    """torch.load with weights_only=True; a damaged file raises CorruptFileError naming it."""
    import torch

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} '{path}' does not exist; rerun snakemake to produce it")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CorruptFileError(
            f"{what} '{path}' is truncated or corrupted ({type(error).__name__}: {error}). "
            "Delete it and rerun snakemake to recompute it."
        ) from None


def read_json(path: str | Path, what: str = "file"):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CorruptFileError(f"{what} '{path}' is not valid JSON ({error}); delete it and rerun snakemake") from None
