"""`make bench`: overhead of training and of the pipeline, as ratios measured side by side in one run.

    python bench/run.py [--config config.yaml] [--cores 2] [--repeats 3] [--no-grid] [--grid-targets T ...]

Throughput contenders run interleaved (A B C A B C ...) and each ratio is of medians, so the load
of a shared machine hits both sides alike. The grid row runs the whole default workflow once in a
temporary folder with --cores; pipeline efficiency = the in-process time of every train, evaluate
and grad_variance job (from its job log: time since the job's log opened, imports excluded) /
(end-to-end wall time × cores); then a comment is appended to workflow/report/report.css (restored
afterwards, even on failure) and the workflow rerun, timing the re-render and listing the rules that
reran. The floor (bench/floor.py): the matmul FLOPs each stage of the grid needed (from its
outputs), at the bare rate of those products at the stage's shapes measured in this run; wall ÷
floor per stage (in-job core-seconds) and overall (wall × cores). Ends with
`TARGET <name> <measured> <goal> PASS|FAIL` lines, one per target of issue 14, then `BOUND <name>
<value> ...` lines where this run also measured how far the target can go on this machine: the bare
matmul ceiling (tutorial shapes), the probe's floor, and for the grid what cutting start-up and idle
cores alone would reach (its in-job time packed on the cores).
"""
import argparse
import copy
import math
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
from PIL import Image
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torchvision.transforms import ToTensor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optbench.bundle import member_chunk, member_losses, stacked_parameters, train_bundle  # noqa: E402
from optbench.config import first_bundle  # noqa: E402
from optbench.config import Run, load_config, prepare_config  # noqa: E402
from optbench.data import build_dataset  # noqa: E402
from optbench.jobs import setup_job  # noqa: E402
from optbench.model import make_mlp, make_optimizer  # noqa: E402
from optbench.gradvar import FACTOR_ELEMENTS, probe_checkpoint, resolve_batch_sizes  # noqa: E402
from optbench.train import init_model, train_run  # noqa: E402
from tests.tutorial import train_loop  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import floor  # noqa: E402

OPTIMIZER = "adam"  # the costlier update of the two in the default grid
TUTORIAL_HIDDEN = [512, 512]  # the tutorial's NeuralNetwork: 784-512-512-10, SGD, lr 1e-3, batch 64
TUTORIAL_BATCH, TUTORIAL_LR = 64, 1e-3


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


def bundle_epochs(tensors, config, batch_size):
    runs = [Run(OPTIMIZER, batch_size, float(lr), seed) for lr, seed in first_bundle(config, OPTIMIZER)]
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
    """Forward + backward matmul FLOPs of one step of one member (bench/floor.py's train_step_flops)."""
    layers = floor.layer_shapes(input_width, config["model"]["hidden"])
    return floor.train_step_flops(layers, batch_size), layers


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


class TorchvisionStyleImages(Dataset):
    """torchvision.datasets.FashionMNIST as the tutorial loads it, held in memory (nothing can be
    downloaded here): uint8 28×28 images; __getitem__ does what torchvision's does, a PIL image per
    sample through the transform (ToTensor), and an int label."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels, self.transform = images, labels, ToTensor()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.transform(Image.fromarray(self.images[index].numpy(), mode="L")), int(self.labels[index])


def tutorial_shapes(config, repeats: int, steps: int = 12):
    """Member-samples/s of the default SGD bundle on the tutorial's model and batch, against the
    tutorial's own loop over a torchvision-style dataset and over preloaded tensors."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (100 * TUTORIAL_BATCH, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (len(images),), generator=generator)
    pixels = images.unsqueeze(1).float() / 255  # what ToTensor makes of them, preloaded
    runs = [Run("sgd", TUTORIAL_BATCH, float(lr), seed) for lr, seed in first_bundle(config, "sgd")]
    short = copy.deepcopy(config)
    short["model"]["hidden"] = TUTORIAL_HIDDEN
    short["train"].update(epochs=1, checkpoints=2, drop_last=True)
    bundle_data = {"x_train": pixels[:steps * TUTORIAL_BATCH], "y_train": labels[:steps * TUTORIAL_BATCH]}

    def tutorial(dataset):
        def run():
            model = make_mlp(784, TUTORIAL_HIDDEN)
            loader = DataLoader(dataset, batch_size=TUTORIAL_BATCH)
            start = time.perf_counter()
            train_loop(loader, model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=TUTORIAL_LR))
            return len(dataset), time.perf_counter() - start
        return run

    def bundle():
        results = train_bundle(bundle_data, runs, short, log=quiet)
        return sum(r.steps_done for r in results) * TUTORIAL_BATCH, sum(r.train_seconds for r in results)

    layers = floor.layer_shapes(784, TUTORIAL_HIDDEN)
    products = floor.train_products(layers, len(runs), TUTORIAL_BATCH)

    def bare():  # the bundle step's matmuls alone: the most any trainer of these shapes can do per core
        start = time.perf_counter()
        for a, b in products:
            torch.bmm(a, b)
        return len(runs) * TUTORIAL_BATCH, time.perf_counter() - start

    rates = interleaved({"torchvision": tutorial(TorchvisionStyleImages(images, labels)),
                         "tensors": tutorial(TensorDataset(pixels, labels)), "bundle": bundle, "bare": bare}, repeats)
    return {name: work / seconds for name, (work, seconds) in rates.items()}, len(runs)


def probe_seconds(tensors, config, repeats: int) -> float:
    """One checkpoint's probe (optbench.gradvar.probe_checkpoint: σ², ||∇f||², K draws per m) at the
    default K and m list on the training set, one thread; the statistics (bootstrap) are the analysis
    stage's and not included. Median CPU-independent wall seconds of `repeats`."""
    settings = config["grad_variance"]
    x, y = tensors["x_train"], tensors["y_train"]
    model = init_model(x, config["model"]["hidden"], 0)
    ms = resolve_batch_sizes(settings["batch_sizes"], len(x))
    times, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        probe_checkpoint(model, x, y, ms, settings["draws"], [0], settings["chunk_size"])
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(times), statistics.median(cpu)


def command_seconds(command: list[str], repeats: int = 3, cwd=ROOT) -> float:
    """Median wall seconds of a command (process start included)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, cwd=cwd, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gradvar_cost_ratio():
    script = ROOT / "bench" / "gradvar_cost.py"
    if not script.exists():
        return None, "bench/gradvar_cost.py not found (written by the gradient-variance work): row skipped"
    out = subprocess.run([sys.executable, str(script), "--repeats", "10"], capture_output=True, text=True,
                         cwd=ROOT).stdout
    match = re.search(r"Linear norm trick.*?([0-9.]+)×", out)
    return (float(match.group(1)), "") if match else (None, f"could not parse gradvar_cost.py output:\n{out}")


STAGES = ("train", "evaluate", "grad_variance")


def job_seconds(workdir: Path) -> tuple[dict[str, list[float]], float]:
    """In-process time of every train/evaluate/grad_variance job, per stage: the last timestamp of its job
    log; and the seconds the train jobs spent evaluating their runs for the evaluate stage (their logs say)."""
    seconds, evaluated = {stage: [] for stage in STAGES}, 0.0
    for stage in STAGES:
        for log in (workdir / "logs" / stage).rglob("*.log"):
            text = log.read_text()
            stamps = re.findall(r"^\[\s*([0-9.]+)s\]", text, flags=re.M)
            seconds[stage].append(float(stamps[-1]) if stamps else 0.0)
            evaluated += sum(map(float, re.findall(r"for the evaluate stage in ([0-9.]+)s$", text, flags=re.M)))
    return seconds, evaluated


def job_benchmarks(workdir: Path) -> dict[str, list[tuple[float, float]]]:
    """(wall s, CPU s) of every train/evaluate/grad_variance job as Snakemake's benchmark files record
    them (process start, imports and all); CPU time is what a loaded machine changes least."""
    jobs = {stage: [] for stage in STAGES}
    for stage in STAGES:
        for tsv in (workdir / "benchmarks" / stage).rglob("*.tsv"):
            header, values = (line.split("\t") for line in tsv.read_text().splitlines()[:2])
            row = dict(zip(header, values))
            jobs[stage].append((float(row["s"]), float(row["cpu_time"])))
    return jobs


def snakemake(workdir, configfile, cores, *args):
    command = [str(Path(sys.executable).parent / "snakemake"), "-s", str(ROOT / "Snakefile"),
               "--configfile", str(configfile), "--directory", str(workdir), "--cores", str(cores), *args]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"snakemake failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start, result.stdout + result.stderr


def grid(configfile, cores, targets):
    workdir = Path(tempfile.mkdtemp(prefix="optbench-bench-"))
    wall, _ = snakemake(workdir, configfile, cores, *targets)
    dry_run, _ = snakemake(workdir, configfile, cores, "-n", *targets)  # a finished run: nothing to do
    # A template-only change: templates are inputs of the report rule (by content), nothing else's.
    template = ROOT / "workflow" / "report" / "report.css"
    original = template.read_bytes()
    try:
        template.write_bytes(original + b"\n/* optbench bench: a template-only change */\n")
        rerender, output = snakemake(workdir, configfile, cores, *targets)
    finally:
        template.write_bytes(original)
    jobs = re.findall(r"^(\w+)\s+(\d+)$", output, flags=re.M)
    reran = sorted({name for name, count in jobs if name not in ("total", "all", "count")})
    return wall, dry_run, rerender, reran, workdir


def floor_rows(workdir, config, tensors, members, cores, wall, in_job, cpu):
    """Floor per stage: FLOPs from the grid's outputs ÷ the bare rate at the stage's shapes (measured now)."""
    settings = config["grad_variance"]
    n = len(tensors["x_train"])
    ms = resolve_batch_sizes(settings["batch_sizes"], n)
    n_eval = sum(len(tensors[f"x_{name}"]) for name in ("train", "val", "test"))
    layers = floor.layer_shapes(tensors["x_train"][0].numel(), config["model"]["hidden"])
    flops = floor.grid_flops(workdir, layers, n_eval, ms, settings["draws"])
    rates = floor.bare_rates(layers, members, sorted(flops["train"]), min(config["evaluate"]["batch_size"], n_eval),
                             n, ms, settings["draws"], FACTOR_ELEMENTS)
    seconds = {"train": sum(f / rates["train"][b] for b, f in flops["train"].items()),
               "evaluate": flops["evaluate"] / rates["evaluate"], "grad_variance": flops["grad_variance"] / rates["grad_variance"]}
    total = {"train": sum(flops["train"].values()), "evaluate": flops["evaluate"], "grad_variance": flops["grad_variance"]}
    print("\nthe floor: matmul FLOPs the grid's algorithm needed (from its outputs) at the bare rate of the same "
          "products at the same shapes, measured now (bench/floor.py)")
    print("| stage | TFLOP | bare GFLOP/s at its shapes | floor core-s | in-job core-s | in-job ÷ floor | job CPU ÷ floor |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for stage in STAGES:
        rate = (" / ".join(f"{rates['train'][b] / 1e9:.0f}" for b in sorted(rates["train"])) + f" (bs {', '.join(map(str, sorted(rates['train'])))})"
                if stage == "train" else f"{rates[stage] / 1e9:.1f}")
        spent, floor_s = sum(in_job[stage]), seconds[stage] or math.nan
        print(f"| {stage} | {total[stage] / 1e12:.2f} | {rate} | {seconds[stage]:.1f} | {spent:.1f} | "
              f"{spent / floor_s:.2f} | {sum(cpu[stage]) / floor_s:.2f} |")
    floor_wall = sum(seconds.values()) / cores
    print(f"| all, on {cores} cores | {sum(total.values()) / 1e12:.2f} | | {floor_wall:.1f} (wall) | {wall:.1f} (wall) | "
          f"{wall / floor_wall:.2f} | |")
    return wall / floor_wall, floor_wall


def meets(value: float, goal: float, sense: str) -> bool:
    """Whether `value` meets `goal` in its sense: '>=' (at least) or '<=' (at most)."""
    return value >= goal if sense == ">=" else value <= goal


def target_lines(targets: list[tuple]) -> list[str]:
    """`TARGET name measured goal PASS|FAIL` for each (name, measured, goal, '>=' | '<=', [(bound, meaning)]),
    then `BOUND name bound (goal within|beyond it): meaning` for those that carry a bound measured in
    this run: how far the target can go on this machine. Beyond a hardware bound (bare matmuls, the
    floor) a goal needs other hardware or another goal; beyond the grid's packing bound, faster jobs,
    not a better schedule."""
    lines = [f"TARGET {name} {measured:.3g} {goal:g} {'PASS' if meets(measured, goal, sense) else 'FAIL'}"
             for name, measured, goal, sense, *_ in targets]
    for name, _, goal, sense, *bound in targets:
        if bound:
            value, meaning = bound[0]
            lines.append(f"BOUND {name} {value:.3g} (goal {'within' if meets(value, goal, sense) else 'beyond'} it): "
                         f"{meaning}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--cores", type=int, default=2, help="cores for the grid run (the target is for 2)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds per throughput ratio")
    parser.add_argument("--no-grid", action="store_true", help="skip the end-to-end grid run (minutes)")
    parser.add_argument("--grid-targets", nargs="*", default=[],
                        help="snakemake targets of the grid run (default: the whole workflow, report included)")
    args = parser.parse_args()
    config = prepare_config(load_config(args.config))
    threads = config["train"]["threads"]
    setup_job(threads, "cpu")  # the process set-up of a training job (threads, malloc)
    tensors = build_dataset(config["dataset"])
    n = len(tensors["x_train"])
    members = len(first_bundle(config, OPTIMIZER))
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
            targets.append(("bs16_bundle_vs_tutorial", rate["bundle"] / rate["tutorial"], 10.0, ">="))

    rate, tutorial_members = tutorial_shapes(config, args.repeats)
    print(f"\nthe tutorial's shapes: MLP 784-{'-'.join(map(str, TUTORIAL_HIDDEN))}-10, SGD, batch {TUTORIAL_BATCH}; "
          f"the tutorial's train_loop over a DataLoader of uint8 28×28 images through ToTensor per sample "
          f"(torchvision-style, in memory), over preloaded tensors, and the default SGD bundle ({tutorial_members} runs)")
    print("| tutorial loop, torchvision-style samples/s | over preloaded tensors | bundle member-samples/s | ×torchvision-style | ×tensors | bare matmuls samples/s (×torchvision-style) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {rate['torchvision']:,.0f} | {rate['tensors']:,.0f} | {rate['bundle']:,.0f} | "
          f"{rate['bundle'] / rate['torchvision']:.2f} | {rate['bundle'] / rate['tensors']:.2f} | "
          f"{rate['bare']:,.0f} ({rate['bare'] / rate['torchvision']:.2f}) |")
    targets.append(("tutorial_shapes_bundle_vs_tutorial", rate["bundle"] / rate["torchvision"], 3.0, ">=",
                    (rate["bare"] / rate["torchvision"], "the bundle step's matmuls alone, measured in this run: "
                     "what no trainer of these shapes does more of on this machine")))

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
    targets.append(("bs256_flops_vs_bare", flops["bundle"] / bare_bundle, 0.85, ">="))

    ratio, note = gradvar_cost_ratio()
    print(f"\nper-sample σ² cost / one plain backward over the same samples: "
          + (f"{ratio:.2f}×" if ratio is not None else note))
    probe, probe_cpu = probe_seconds(tensors, config, args.repeats)
    print(f"one checkpoint's probe (K = {config['grad_variance']['draws']}, default m list, {threads} thread, "
          f"statistics excluded: they are the analysis stage's): {probe:.2f} s ({probe_cpu:.2f} s CPU)")
    settings = config["grad_variance"]
    probe_layers = floor.layer_shapes(tensors["x_train"][0].numel(), config["model"]["hidden"])
    ms = resolve_batch_sizes(settings["batch_sizes"], n)
    probe_flops = floor.probe_flops(probe_layers, n, ms, settings["draws"])
    probe_rate = floor.probe_rate(probe_layers, n, ms, settings["draws"], FACTOR_ELEMENTS)
    print(f"its floor: {probe_flops / 1e9:.1f} GFLOP of matmuls (bench/floor.py) at the bare rate of its factor "
          f"products, {probe_rate / 1e9:.1f} GFLOP/s measured now: {probe_flops / probe_rate:.2f} s")
    targets.append(("probe_seconds_per_checkpoint", probe, 0.5, "<=",
                    (probe_flops / probe_rate, "its matmuls at their bare rate, measured in this run")))

    python = sys.executable
    snakemake_bin = str(Path(python).parent / "snakemake")
    print("\nstart-up, each a fresh process (median of 3):")
    print("| command | seconds |")
    print("| --- | ---: |")
    for label, command in (("python -c pass", [python, "-c", "pass"]),
                           ("python -c 'import torch'", [python, "-c", "import torch"]),
                           ("python -c 'import optbench.bundle'", [python, "-c", "import optbench.bundle"]),
                           ("snakemake --version", [snakemake_bin, "--version"])):
        print(f"| `{label}` | {command_seconds(command):.2f} |")

    if not args.no_grid:
        wall, dry_run, rerender, reran, workdir = grid(Path(args.config).resolve(), args.cores, args.grid_targets)
        (in_job, evaluated_in_train), jobs = job_seconds(workdir), job_benchmarks(workdir)
        efficiency = sum(map(sum, in_job.values())) / (wall * args.cores)
        print(f"\ngrid {args.config}{' targets ' + ' '.join(args.grid_targets) if args.grid_targets else ''} on "
              f"--cores {args.cores} (load average after: {' '.join(f'{v:.1f}' for v in os.getloadavg())}): wall "
              f"{wall:.1f} s, pipeline efficiency {efficiency:.2f} (in-process job time / (wall × cores)); "
              f"outputs in {workdir}")
        print("| stage | jobs | in-job s | job wall s (Snakemake benchmark) | overhead per job s (wall − in-job) | job CPU s |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for stage in STAGES:
            count, walls, cpus = len(jobs[stage]), sum(w for w, _ in jobs[stage]), sum(c for _, c in jobs[stage])
            overhead = (walls - sum(in_job[stage])) / count if count else math.nan
            print(f"| {stage} | {count} | {sum(in_job[stage]):.1f} | {walls:.1f} | {overhead:.2f} | {cpus:.1f} |")
        print(f"of the train jobs' in-job time, {evaluated_in_train:.1f} s evaluated their runs for the evaluate "
              "stage (from the checkpoints in memory); the floor counts it as evaluate's")
        cpu = {stage: [c for _, c in jobs[stage]] for stage in STAGES}
        # the train jobs' evaluation moved to evaluate's account (its CPU time taken as its wall time)
        moved = {"train": [-evaluated_in_train], "evaluate": [evaluated_in_train]}
        ratio, floor_wall = floor_rows(workdir, config, tensors, members, args.cores, wall,
                                       {stage: in_job[stage] + moved.get(stage, []) for stage in STAGES},
                                       {stage: cpu[stage] + moved.get(stage, []) for stage in STAGES})
        print(f"`snakemake -n` on the finished run: {dry_run:.1f} s")
        print(f"report re-render after a template-only edit (a comment appended to report.css, then restored): "
              f"{rerender:.1f} s, rules rerun: {', '.join(reran) or 'none'}")
        # what the jobs' own work allows: this run's in-job seconds on every core at once, with no start-up,
        # per-job imports or idle core (the stages' in-job ÷ floor above say how far each is from its matmuls)
        packed = sum(map(sum, in_job.values())) / args.cores
        targets.append(("grid_wall_seconds", wall, 90.0, "<=",
                        (packed, f"what cutting start-up, per-job imports and idle cores alone reaches: this run's in-job time "
                                 f"packed on {args.cores} cores (the floor, every stage at its bare rate: "
                                 f"{floor_wall:.1f} s)")))
        targets.append(("grid_wall_vs_floor", ratio, 2.0, "<=",
                        (packed / floor_wall, "the same packing ÷ the floor")))
        targets.append(("pipeline_efficiency", efficiency, 0.80, ">="))
        targets.append(("dry_run_seconds", dry_run, 3.0, "<="))
        targets.append(("template_rerender_seconds", rerender, 5.0, "<="))
    print()
    print("\n".join(target_lines(targets)))


if __name__ == "__main__":
    main()
