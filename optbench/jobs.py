"""What every Snakemake job script shares: its log file, thread count and device."""
from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import time
from pathlib import Path

from optbench.io import RESULTS, CorruptFileError


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
        except CorruptFileError as error:
            remove_damaged(error, log)
            import traceback

            traceback.print_exc(file=handle)
            raise
        except BaseException:
            import traceback

            traceback.print_exc(file=handle)
            raise


def remove_damaged(error: CorruptFileError, log) -> None:
    """A damaged file under results/ holds nothing worth keeping: remove it, so that the next plain
    `snakemake` rebuilds it and everything downstream of it (and say so in the error)."""
    path = error.path
    if path is None or not path.exists():
        return
    try:
        Path(os.path.abspath(path)).relative_to(Path.cwd().resolve() / RESULTS)
    except ValueError:
        return
    path.unlink()
    log(f"removed the damaged file {path}")
    error.args = (f"{error.args[0]} (It has been removed: a plain rerun of snakemake rebuilds it.)",)


def planned_device(requested: str) -> str:
    """cpu | cuda | auto → the device the runs will train on, decided when the workflow is planned and
    without importing torch: auto is cuda when the CUDA driver reports a GPU (what torch asks it too).
    The jobs are then told this device, so that the experiment tag names what the runs really use."""
    if requested != "auto":
        return requested
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        count = ctypes.c_int(0)
        ok = cuda.cuInit(0) == 0 and cuda.cuDeviceGetCount(ctypes.byref(count)) == 0
        return "cuda" if ok and count.value > 0 else "cpu"
    except OSError:
        return "cpu"


def resolve_device(requested: str) -> str:
    """cpu | cuda | auto → the device to use; cuda without a GPU is a clear error."""
    import torch  # here, not at the top: light jobs use job_log and never load torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config key 'device' is 'cuda' but torch sees no GPU; use 'cpu' or 'auto'")
    return requested


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h> parameter numbers
ALLOCATOR_THRESHOLD = 32 * 2 ** 20  # the largest mmap threshold glibc accepts on 64-bit systems


def retain_freed_memory() -> bool:
    """Let glibc's malloc reuse freed blocks of up to 32 MiB instead of unmapping them.

    Torch's CPU allocator is plain malloc. A training step allocates and frees megabyte-sized
    activations and gradients; above glibc's mmap threshold (dynamic, starting at 128 KiB) many of
    them become fresh mmaps, i.e. ~256 page faults per MiB, again every step. Measured once, with an
    ad-hoc script around bench/run.py's FLOP rounds (default bundle, batch 256, three processes each
    way): 56k–89k page faults without this, ~15k (the first steps only) with it, 3–5 % more FLOP/s;
    tests/test_train.py checks the fault counts on a simpler pattern. The jobs are short-lived, so
    keeping their peak heap costs nothing. A no-op (False) where the C library is not glibc.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, ALLOCATOR_THRESHOLD)
                and libc.mallopt(M_TRIM_THRESHOLD, 2 * ALLOCATOR_THRESHOLD))


def setup_job(threads: int, device_request: str) -> str:
    """Flush denormals, fix the thread count (part of the determinism contract), tune malloc, and pick the device.

    Denormals (float32 below 1.2e-38) are taken as zero on the CPU: Adam's first moment of a parameter
    whose gradient stays zero (a dead ReLU unit's weights) decays by β1 a step until it is a few
    multiples of the smallest denormal, where β1·m rounds back to m, and every update then reads it
    through x86's slow path for denormals. In the default grid's Adam bundle at batch 16 a quarter of
    the second layer's moments sat there from the fourth epoch on, and a step took 1.7× as long
    (BENCHMARKS.md). What the flush can change is below 1.2e-38: through an update, lr·m̂/(√v̂ + eps) with
    the bias correction at most 10×, at most 6e-31 at lr 0.05, below the last bit of any weight above
    1e-23 (tests/test_bundle.py: the same bits on such a bundle; the default grid's tables are too).
    Set first, before any thread pool starts: the setting is per thread, and new threads inherit it.
    """
    import torch

    torch.set_flush_denormal(True)  # returns False on a CPU that cannot (neither SSE3 nor AArch64): a no-op
    torch.set_num_threads(threads)
    retain_freed_memory()
    return resolve_device(device_request)
