"""Does torch.compile of a bundle's step pay for its compile time within one job? Eager vs compiled, measured.

    python bench/compile_step.py [--batch-size 16] [--steps 300] [--mode default]

Builds the default bundle (config.yaml's first bundle of adam) at --batch-size, and times --steps
training steps (forward, masked loss sum, backward, the bundle's optimizer) eagerly and with the
forward + loss under torch.compile (inductor compiles the joint forward and backward graph), in
fresh state each, interleaved; prints the first compiled call (the compile time, inductor's disk
cache as it is), the per-step times, and the number of steps a job must run for the compile to pay
off, beside the steps one training job of that batch size runs.
"""
import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optbench.bundle import VectorisedOptimizer, member_losses, stacked_parameters  # noqa: E402
from optbench.config import first_bundle, load_config, prepare_config, total_steps  # noqa: E402
from optbench.data import build_dataset  # noqa: E402
from optbench.jobs import setup_job  # noqa: E402
from optbench.train import init_model  # noqa: E402


def bundle_state(tensors, config, members):
    models = [init_model(tensors["x_train"], config["model"]["hidden"], seed) for _, seed in members]
    params = {k: v.requires_grad_() for k, v in stacked_parameters(models).items()}
    optimizer = VectorisedOptimizer("adam", list(params.values()), [lr for lr, _ in members], config["optimizers"]["adam"])
    return params, optimizer


def timed_steps(step, params, optimizer, batches):
    """Seconds of the first step and the median of the rest."""
    times = []
    for x, y in batches:
        start = time.perf_counter()
        step(params, x, y).backward()
        optimizer.step()
        for p in params.values():
            p.grad = None
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:])


def masked_loss(params, x, y):
    losses = member_losses(params, x, y)
    return torch.where(torch.isfinite(losses), losses, 0.0).sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--mode", default="default", help="torch.compile mode (default, reduce-overhead, max-autotune-no-cudagraphs)")
    args = parser.parse_args()
    config = prepare_config(load_config(ROOT / "config.yaml"))
    setup_job(config["train"]["threads"], "cpu")
    tensors = build_dataset(config["dataset"])
    members = first_bundle(config, "adam")
    generator = torch.Generator().manual_seed(0)
    n = len(tensors["x_train"])
    batches = []
    for _ in range(args.steps):
        index = torch.randint(0, n, (len(members), args.batch_size), generator=generator)
        batches.append((tensors["x_train"][index], tensors["y_train"][index]))
    compiled = torch.compile(masked_loss, mode=args.mode, dynamic=False)
    eager_first, eager = timed_steps(masked_loss, *bundle_state(tensors, config, members), batches)
    compile_first, fast = timed_steps(compiled, *bundle_state(tensors, config, members), batches)
    eager_first, eager = timed_steps(masked_loss, *bundle_state(tensors, config, members), batches)  # after, too
    job_steps = total_steps(copy.deepcopy(config), args.batch_size)
    print(f"bundle of {len(members)} (adam), batch {args.batch_size}, {args.steps} steps, torch.compile mode {args.mode}")
    print(f"eager:    {eager * 1e3:.3f} ms per step")
    print(f"compiled: {fast * 1e3:.3f} ms per step, first call (compile) {compile_first:.1f} s")
    saved = eager - fast
    if saved > 0:
        print(f"pays off after {compile_first / saved:,.0f} steps; one training job at this batch size runs {job_steps:,}")
    else:
        print(f"never pays off: the compiled step is not faster (one job runs {job_steps:,} steps)")


if __name__ == "__main__":
    main()
