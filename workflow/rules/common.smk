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
    prepare_config,
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
RESUME_DIR = f"results/resume/{EXP}/{GROUP}"
GROUP_LOG = f"{EXP}/{{optimizer}}_bs{{batch_size}}_lr{{lr}}"
REPORT = "results/report.html"


wildcard_constraints:
    optimizer="sgd|adam|adamw",
    batch_size=r"\d+",
    lr=r"[0-9][0-9.e+-]*",


def group_files(name):
    """The per-seed files called `name` of the group in the wildcards (one train/evaluate job)."""
    return [f"{GROUP_DIR}/seed{seed}/{name}" for seed in SEEDS]


def all_group_dirs():
    return [
        GROUP_DIR.format(optimizer=o, batch_size=b, lr=lr_tag(lr)) for o, b, lr in groups(config)
    ]


def all_run_files(name):
    return [f"{d}/seed{seed}/{name}" for d in all_group_dirs() for seed in SEEDS]
