"""What every Snakemake job script shares: its log file, thread count and device."""
from __future__ import annotations

import contextlib
import sys
import time

import torch


@contextlib.contextmanager
def job_log(path: str):
    """Send the job's output and any traceback to its Snakemake log; yield a line logger."""
    with open(path, "w", buffering=1) as handle, contextlib.redirect_stdout(handle), \
            contextlib.redirect_stderr(handle):
        started = time.perf_counter()

        def log(message: str) -> None:
            print(f"[{time.perf_counter() - started:8.2f}s] {message}", file=handle, flush=True)

        try:
            yield log
        except BaseException:
            import traceback

            traceback.print_exc(file=handle)
            raise


def resolve_device(requested: str) -> str:
    """cpu | cuda | auto → the device to use; cuda without a GPU is a clear error."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config key 'device' is 'cuda' but torch sees no GPU; use 'cpu' or 'auto'")
    return requested


def setup_job(threads: int, device_request: str) -> str:
    """Fix the thread count (part of the determinism contract) and pick the device."""
    torch.set_num_threads(threads)
    return resolve_device(device_request)
