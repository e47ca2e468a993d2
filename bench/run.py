"""`make bench`: overhead of training and of the pipeline, as ratios measured side by side in one run.

    python bench/run.py [--config config.yaml] [--cores 2] [--repeats 3] [--no-grid]

Throughput contenders run interleaved (A B C A B C ...) and each ratio is of medians, so the load
of a shared machine hits both sides alike. The grid row runs the whole default workflow once in a
temporary folder with --cores; pipeline efficiency = the in-process time of every train, evaluate
and grad_variance job (from its job log: time since the job's log opened, imports excluded) /
(end-to-end wall time × cores); then a comment is appended to workflow/report/report.css (restored
afterwards, even on failure) and the workflow rerun, timing the re-render and listing the rules that
reran. Ends with `TARGET <name> <measured> <goal> PASS|FAIL` lines.
"""
import argparse
import copy
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optbench.bundle import member_chunk, member_losses, stacked_parameters, train_bundle  # noqa: E402
from optbench.config import partition  # noqa: E402
from optbench.config import Run, load_config, prepare_config  # noqa: E402
from optbench.data import build_dataset  # noqa: E402
from optbench.jobs import setup_job  # noqa: E402
from optbench.model import make_mlp, make_optimizer  # noqa: E402
from optbench.train import init_model, train_run  # noqa: E402
from tests.tutorial import train_loop  # noqa: E402

OPTIMIZER = "adam"  # the costlier update of the two in the default grid


def quiet(_):
    pass


def interleaved(contenders: dict, repeats: int) -> dict:
    """name → median of (work, seconds) over `repeats` rounds, contenders alternating."""
    samples = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, function in contenders.items():
            samples[name].append(function())
    return {name: (statistics.median(w for w, _ in s), statistics.median(t for _, t in s))
            for name, s in samples.items()}


def tutorial_epoch(tensors, config, batch_size):
    x, y = tensors["x_train"], tensors["y_train"]
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    model = make_mlp(x.shape[1], config["model"]["hidden"])
    optimizer = make_optimizer(OPTIMIZER, model.parameters(), 1e-3, config["optimizers"][OPTIMIZER])
    start = time.perf_counter()
    train_loop(loader, model, nn.CrossEntropyLoss(), optimizer)
    return len(x), time.perf_counter() - start


def trainer_epochs(tensors, config, batch_size):
    result = train_run(tensors, Run(OPTIMIZER, batch_size, 1e-3, 0), config, log=quiet)
    return result.steps_done * batch_size, result.train_seconds


def default_bundle(config):
    """The first bundle the workflow forms for OPTIMIZER (train.bundle_size runs at most)."""
    return partition({**config, "grid": {**config["grid"], "optimizers": [OPTIMIZER]}})[(OPTIMIZER, 0)]


def bundle_epochs(tensors, config, batch_size):
    runs = [Run(OPTIMIZER, batch_size, float(lr), seed) for lr, seed in default_bundle(config)]
    results = train_bundle(tensors, runs, config, log=quiet)
    return sum(r.steps_done for r in results) * batch_size, sum(r.train_seconds for r in results)  # = loop time


def ensemble_forward_backward(kind, tensors, config, members, batch_size, steps):
    """`steps` forward + backward passes of `members` models on their own mini-batches, in the
    trainer's member chunks: "bmm" is the bundle's batched matmuls (optbench.bundle.member_losses),
    "vmap" is torch.func's stack_module_state + vmap(functional_call) over the same models."""
    x = tensors["x_train"][:batch_size].expand(members, -1, -1).contiguous()
    y = tensors["y_train"][:batch_size].expand(members, -1).contiguous()
    hidden = config["model"]["hidden"]
    models = [init_model(tensors["x_train"], hidden, seed) for seed in range(members)]
    chunk = min(members, member_chunk(batch_size, max(hidden + [x[0, 0].numel()])))
    parts = [slice(start, start + chunk) for start in range(0, members, chunk)]
    if kind == "bmm":
        stacked = {k: v.requires_grad_() for k, v in stacked_parameters(models).items()}
        views = [{k: v[part] for k, v in stacked.items()} for part in parts]

        def step():
            for part, chunk_params in zip(parts, views):
                member_losses(chunk_params, x[part], y[part]).sum().backward()
    else:
        params, _ = stack_module_state(models)
        skeleton = copy.deepcopy(models[0]).to("meta")

        def loss(member_params, xb, yb):
            return F.cross_entropy(functional_call(skeleton, member_params, (xb,)), yb)

        batched = vmap(loss, chunk_size=chunk)

        def step():
            batched(params, x, y).sum().backward()

    def run():
        step()  # warm-up: first-call dispatch and allocation
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return steps * members * batch_size, time.perf_counter() - start

    return run


def matmul_flops(config, input_width, batch_size) -> tuple[float, list]:
    """Forward + backward matmul FLOPs of one step of one member: 2·B·in·out for the forward and for
    the weight gradient of every layer, and for the input gradient of every layer but the first
    (autograd needs no gradient of the data)."""
    widths = [input_width, *config["model"]["hidden"], 10]
    layers = list(zip(widths[:-1], widths[1:]))
    flops = sum(2 * batch_size * i * o * (2 if k == 0 else 3) for k, (i, o) in enumerate(layers))
    return flops, layers


def bare_matmuls(layers, members, batch_size, steps, orientation):
    """The same products at the same shapes (batched over a chunk of members, as the trainer cuts
    them: optbench.bundle.member_chunk), nothing else. orientation "features-first" is the trainer's
    (activations (features, batch): W·h); "batch-first" computes the transposed products (h·Wᵀ), as
    nn.Linear does; the FLOP fraction is taken against the faster of the two."""
    chunk = min(members, member_chunk(batch_size, max(w for layer in layers for w in layer)))
    operands = []
    for start in range(0, members, chunk):
        size = min(chunk, members - start)
        for k, (i, o) in enumerate(layers):
            w = torch.randn(size, o, i)
            if orientation == "features-first":
                a, d = torch.randn(size, i, batch_size), torch.randn(size, o, batch_size)
                products = [(w, a), (d, a.transpose(1, 2))] + ([(w.transpose(1, 2), d)] if k else [])
            else:
                a, d = torch.randn(size, batch_size, i), torch.randn(size, batch_size, o)
                products = [(a, w.transpose(1, 2)), (d.transpose(1, 2), a)] + ([(d, w)] if k else [])
            operands += products  # forward, weight gradient, input gradient (not for the data)

    def run():
        start = time.perf_counter()
        for _ in range(steps):
            for left, right in operands:
                torch.bmm(left, right)
        return steps, time.perf_counter() - start

    return run


def gradvar_cost_ratio():
    script = ROOT / "bench" / "gradvar_cost.py"
    if not script.exists():
        return None, "bench/gradvar_cost.py not found (written by the gradient-variance work): row skipped"
    out = subprocess.run([sys.executable, str(script), "--repeats", "10"], capture_output=True, text=True,
                         cwd=ROOT).stdout
    match = re.search(r"Linear norm trick.*?([0-9.]+)×", out)
    return (float(match.group(1)), "") if match else (None, f"could not parse gradvar_cost.py output:\n{out}")


def job_seconds(workdir: Path) -> float:
    """In-process time of every train/evaluate/grad_variance job: the last timestamp of its job log."""
    total = 0.0
    for stage in ("train", "evaluate", "grad_variance"):
        for log in (workdir / "logs" / stage).rglob("*.log"):
            stamps = re.findall(r"^\[\s*([0-9.]+)s\]", log.read_text(), flags=re.M)
            total += float(stamps[-1]) if stamps else 0.0
    return total


def snakemake(workdir, configfile, cores, *args):
    command = [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"),
               "--configfile", str(configfile), "--directory", str(workdir), "--cores", str(cores), *args]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"snakemake failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start, result.stdout + result.stderr


def grid(configfile, cores):
    workdir = Path(tempfile.mkdtemp(prefix="optbench-bench-"))
    wall, _ = snakemake(workdir, configfile, cores)
    efficiency = job_seconds(workdir) / (wall * cores)
    # A template-only change: templates are inputs of the report rule (by content), nothing else's.
    template = ROOT / "workflow" / "report" / "report.css"
    original = template.read_bytes()
    try:
        template.write_bytes(original + b"\n/* optbench bench: a template-only change */\n")
        rerender, output = snakemake(workdir, configfile, cores)
    finally:
        template.write_bytes(original)
    jobs = re.findall(r"^(\w+)\s+(\d+)$", output, flags=re.M)
    reran = sorted({name for name, count in jobs if name not in ("total", "all", "count")})
    return wall, efficiency, rerender, reran, workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--cores", type=int, default=2, help="cores for the grid run (the target is for 2)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per throughput ratio")
    parser.add_argument("--no-grid", action="store_true", help="skip the end-to-end grid run (minutes)")
    args = parser.parse_args()
    config = prepare_config(load_config(args.config))
    threads = config["train"]["threads"]
    setup_job(threads, "cpu")  # the process set-up of a training job (threads, malloc)
    tensors = build_dataset(config["dataset"])
    n = len(tensors["x_train"])
    members = len(default_bundle(config))
    print(f"# optbench bench — {platform.node()}: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, {threads} thread(s), load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"# model MLP {tensors['x_train'].shape[1]}-{'-'.join(map(str, config['model']['hidden']))}-10, "
          f"n = {n}, optimizer {OPTIMIZER}; default bundle = {members} runs (train.bundle_size "
          f"{config['train']['bundle_size']}); medians of {args.repeats} interleaved rounds\n")
    targets = []

    print("| batch | tutorial loop samples/s | trainer (1 run) | ×tutorial | bundle member-samples/s | ×tutorial |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for batch_size, epochs in ((16, 1), (64, 2), (256, 4)):
        short = copy.deepcopy(config)
        short["train"].update(epochs=epochs, checkpoints=2)
        rates = interleaved({
            "tutorial": lambda: tutorial_epoch(tensors, short, batch_size),
            "trainer": lambda: trainer_epochs(tensors, short, batch_size),
            "bundle": lambda: bundle_epochs(tensors, short, batch_size),
        }, args.repeats)
        rate = {name: work / seconds for name, (work, seconds) in rates.items()}
        print(f"| {batch_size} | {rate['tutorial']:,.0f} | {rate['trainer']:,.0f} | "
              f"{rate['trainer'] / rate['tutorial']:.2f} | {rate['bundle']:,.0f} | {rate['bundle'] / rate['tutorial']:.2f} |")
        if batch_size == 16:
            targets.append(("bs16_bundle_vs_tutorial", rate["bundle"] / rate["tutorial"], 3.0, ">="))

    print(f"\nbundle forward + backward only ({members} members, trainer's chunks): batched matmuls vs torch.func")
    print("| batch | batched matmuls member-samples/s | vmap(functional_call) | ×vmap |")
    print("| ---: | ---: | ---: | ---: |")
    for batch_size, steps in ((16, 200), (64, 60), (256, 15)):
        rates = interleaved({kind: ensemble_forward_backward(kind, tensors, config, members, batch_size, steps)
                             for kind in ("bmm", "vmap")}, args.repeats)
        rate = {name: work / seconds for name, (work, seconds) in rates.items()}
        print(f"| {batch_size} | {rate['bmm']:,.0f} | {rate['vmap']:,.0f} | {rate['bmm'] / rate['vmap']:.2f} |")

    batch_size, steps_per_run = 256, (n // 256) * 4
    short = copy.deepcopy(config)
    short["train"].update(epochs=4, checkpoints=2)
    step_flops, layers = matmul_flops(config, tensors["x_train"].shape[1], batch_size)
    rates = interleaved({
        "bundle": lambda: bundle_epochs(tensors, short, batch_size),
        "bare_bundle": bare_matmuls(layers, members, batch_size, steps_per_run, "features-first"),
        "bare_bundle_t": bare_matmuls(layers, members, batch_size, steps_per_run, "batch-first"),
        "trainer": lambda: trainer_epochs(tensors, short, batch_size),
        "bare_solo": bare_matmuls(layers, 1, batch_size, steps_per_run, "batch-first"),
    }, args.repeats)
    flops = {name: work / batch_size * step_flops / seconds if "bare" not in name
             else work * step_flops * (1 if name == "bare_solo" else members) / seconds
             for name, (work, seconds) in rates.items()}
    bare_bundle = max(flops["bare_bundle"], flops["bare_bundle_t"])
    print(f"\nbatch 256: forward + backward matmul FLOPs per member-step = {step_flops:,} "
          f"(2·B·in·out forward and weight-gradient per layer, input-gradient for layers ≥ 2)")
    print("| at batch 256 | GFLOP/s | bare same-shape matmuls GFLOP/s | fraction |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| bundle of {members} | {flops['bundle'] / 1e9:.2f} | {bare_bundle / 1e9:.2f} (features-first "
          f"{flops['bare_bundle'] / 1e9:.2f}, batch-first {flops['bare_bundle_t'] / 1e9:.2f}) | "
          f"{flops['bundle'] / bare_bundle:.2f} |")
    print(f"| trainer, 1 run | {flops['trainer'] / 1e9:.2f} | {flops['bare_solo'] / 1e9:.2f} | "
          f"{flops['trainer'] / flops['bare_solo']:.2f} |")
    targets.append(("bs256_flops_vs_bare", flops["bundle"] / bare_bundle, 0.70, ">="))

    ratio, note = gradvar_cost_ratio()
    print(f"\nper-sample σ² cost / one plain backward over the same samples: "
          + (f"{ratio:.2f}×" if ratio is not None else note))

    if not args.no_grid:
        wall, efficiency, rerender, reran, workdir = grid(Path(args.config).resolve(), args.cores)
        print(f"\ngrid {args.config} on --cores {args.cores} (load average after: "
              f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}): wall {wall:.1f} s, pipeline efficiency "
              f"{efficiency:.2f} (in-process job time / (wall × cores)); outputs in {workdir}")
        print(f"report re-render after a template-only edit (a comment appended to report.css, then restored): "
              f"{rerender:.1f} s, rules rerun: {', '.join(reran)}")
        targets.append(("grid_wall_seconds", wall, 240.0, "<="))
        targets.append(("pipeline_efficiency", efficiency, 0.60, ">="))
    print()
    for name, measured, goal, sense in targets:
        ok = measured >= goal if sense == ">=" else measured <= goal
        print(f"TARGET {name} {measured:.3g} {goal:g} {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
