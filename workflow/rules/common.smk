# Config validation, the run grid and every path the rules share.
import sys
from snakemake.exceptions import WorkflowError
from pathlib import Path

# The library lives beside the Snakefile; make it importable even without `pip install -e .`.
sys.path.insert(0, str(Path(workflow.basedir)))

from optbench.config import (  # noqa: E402
    ConfigError,
    data_tag,
    experiment_tag,
    groups,
    lr_tag,
    partition,
    prepare_config,
    total_steps,
)

try:
    prepare_config(config)
except ConfigError as error:
    raise WorkflowError(f"invalid configuration: {error}") from None


ENV = "../../environment.yml"
EXP = experiment_tag(config)
SEEDS = config["grid"]["seeds"]
DATA = f"results/data/{data_tag(config)}.pt"
GROUP = "{optimizer}/bs{batch_size}/lr{lr}"
GROUP_DIR = f"results/runs/{EXP}/{GROUP}"
GROUP_LOG = f"{EXP}/{{optimizer}}_bs{{batch_size}}_lr{{lr}}"
REPORT = "results/report.html"


wildcard_constraints:
    optimizer="sgd|adam|adamw",
    batch_size=r"\d+",
    lr=r"[0-9][0-9.e+-]*",


# (optimizer, index) → its runs as (lr, seed); one train and one evaluate job per bundle and batch size
BUNDLES = partition(config)
BUNDLE_JOBS = [(o, i, b) for o, i in BUNDLES for b in config["grid"]["batch_sizes"]]
PROBES = {(p["optimizer"], p["batch_size"], float(p["lr"]), p["seed"])
          for p in config["grad_variance"]["probes"]}


def bundle_run_dirs(optimizer, batch_size, members, root=f"results/runs/{EXP}"):
    return [f"{root}/{optimizer}/bs{batch_size}/lr{lr_tag(lr)}/seed{seed}" for lr, seed in members]


def bundle_files(optimizer, batch_size, members, name):
    return [f"{d}/{name}" for d in bundle_run_dirs(optimizer, batch_size, members)]


def bundle_log(stage, optimizer, index, batch_size, kind="logs", suffix="log"):
    return f"{kind}/{stage}/{EXP}/{optimizer}_bs{batch_size}_bundle{index}.{suffix}"


def bundle_priority(optimizer, batch_size, members):
    """Longest bundles first (cost ∝ steps × members), and bundles holding a gradient-noise probe
    before all, so that the long probe jobs start early and the pipeline does not end on one core."""
    steps = total_steps(config, batch_size) * len(members)
    probe = any((optimizer, batch_size, lr, seed) in PROBES for lr, seed in members)
    return steps // 1000 + (10**6 if probe else 0)


def all_bundle_logs(stage, kind="benchmarks", suffix="tsv"):
    """Every bundle job's benchmark (or log) file of `stage` (train or evaluate), for the report."""
    return [bundle_log(stage, o, i, b, kind, suffix) for o, i, b in BUNDLE_JOBS]


def all_group_dirs():
    return [
        GROUP_DIR.format(optimizer=o, batch_size=b, lr=lr_tag(lr)) for o, b, lr in groups(config)
    ]


def all_run_files(name):
    return [f"{d}/seed{seed}/{name}" for d in all_group_dirs() for seed in SEEDS]
