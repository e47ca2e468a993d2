"""Where a bundle's training step spends its time: torch.profiler's top operators for one short run.

    python bench/profile_bundle.py [--batch-size 16] [--epochs 1] [--rows 15] [--optimizer adam]

Trains the default bundle (config.yaml's first bundle of the optimizer) for --epochs on the
default data, once to warm up and once under torch.profiler (CPU activity, 1 thread), and prints
the operators sorted by self CPU time: the rows BENCHMARKS.md quotes.
"""
import argparse
import copy
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optbench.bundle import train_bundle  # noqa: E402
from optbench.config import Run, first_bundle, load_config, prepare_config  # noqa: E402
from optbench.data import build_dataset  # noqa: E402
from optbench.jobs import setup_job  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    config = prepare_config(load_config(args.config))
    setup_job(config["train"]["threads"], "cpu")
    tensors = build_dataset(config["dataset"])
    short = copy.deepcopy(config)
    short["train"].update(epochs=args.epochs, checkpoints=2)
    runs = [Run(args.optimizer, args.batch_size, float(lr), seed) for lr, seed in first_bundle(config, args.optimizer)]
    train_bundle(tensors, runs, short, log=lambda _: None)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        results = train_bundle(tensors, runs, short, log=lambda _: None)
    steps = results[0].steps_done
    seconds = sum(r.train_seconds for r in results)
    print(f"bundle of {len(runs)} ({args.optimizer}), batch {args.batch_size}: {steps} steps in {seconds:.2f} s "
          f"under the profiler ({1e3 * seconds / steps:.3f} ms per step)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
