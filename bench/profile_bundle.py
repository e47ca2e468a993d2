"""Where a bundle's training step spends its time: torch.profiler's top operators for one short run.

    python bench/profile_bundle.py [--batch-size 16] [--epochs 1] [--rows 15] [--optimizer adam] [--parts]

Trains the default bundle (config.yaml's first bundle of the optimizer) for --epochs on the
default data, once to warm up and once under torch.profiler (CPU activity, 1 thread), and prints
the operators sorted by self CPU time: the rows BENCHMARKS.md quotes. With --parts, no profiler
(it inflates some operators: at batch 256 it shows the sample gather at 27 % of a step, where all
that is not forward, backward or update, the gather included, is 5-6 % timed directly): three runs,
each step's time split into forward (member_losses), backward (torch.autograd.grad), update
(VectorisedOptimizer.step) and the rest, by timing those calls.
"""
import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optbench import bundle  # noqa: E402
from optbench.bundle import train_bundle  # noqa: E402
from optbench.config import Run, first_bundle, load_config, prepare_config  # noqa: E402
from optbench.data import build_dataset  # noqa: E402
from optbench.jobs import setup_job  # noqa: E402


def time_parts(tensors, runs, config, rounds: int = 3) -> None:
    """Per step: the time in member_losses, torch.autograd.grad and VectorisedOptimizer.step, and the rest."""
    spent = {}

    def timed(owner, name, label):
        call = getattr(owner, name)

        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.perf_counter() - started

        setattr(owner, name, wrapper)
        return call

    originals = [(owner, name, timed(owner, name, label)) for owner, name, label in (
        (bundle, "member_losses", "forward"), (torch.autograd, "grad", "backward"),
        (bundle.VectorisedOptimizer, "step", "update"))]
    try:
        print("| round | ms per step | forward | backward | update | rest |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for round_ in range(1, rounds + 1):
            spent.clear()
            started = time.perf_counter()
            steps = train_bundle(tensors, runs, config, log=lambda _: None)[0].steps_done
            total = time.perf_counter() - started
            parts = [spent.get(label, 0.0) for label in ("forward", "backward", "update")]
            print(f"| {round_} | {1e3 * total / steps:.2f} | "
                  + " | ".join(f"{1e3 * part / steps:.2f}" for part in parts)
                  + f" | {1e3 * (total - sum(parts)) / steps:.2f} |")
    finally:
        for owner, name, call in originals:
            setattr(owner, name, call)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--parts", action="store_true", help="time forward, backward, update and the rest per step")
    args = parser.parse_args()
    config = prepare_config(load_config(args.config))
    setup_job(config["train"]["threads"], "cpu")
    tensors = build_dataset(config["dataset"])
    short = copy.deepcopy(config)
    short["train"].update(epochs=args.epochs, checkpoints=2)
    runs = [Run(args.optimizer, args.batch_size, float(lr), seed) for lr, seed in first_bundle(config, args.optimizer)]
    train_bundle(tensors, runs, short, log=lambda _: None)  # warm-up
    if args.parts:
        return time_parts(tensors, runs, short)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        results = train_bundle(tensors, runs, short, log=lambda _: None)
    steps = results[0].steps_done
    seconds = sum(r.train_seconds for r in results)
    print(f"bundle of {len(runs)} ({args.optimizer}), batch {args.batch_size}: {steps} steps in {seconds:.2f} s "
          f"under the profiler ({1e3 * seconds / steps:.3f} ms per step)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
