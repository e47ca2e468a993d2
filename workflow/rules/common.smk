# The config and its validation, the run grid with its bundles and identities, every path the rules
# share, and the check of what earlier runs left on disk, all before any job runs.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config

# The library lives beside the Snakefile; make it importable even without `pip install -e .`.
sys.path.insert(0, str(Path(workflow.basedir)))

from optbench.config import (  # noqa: E402
    ConfigError,
    data_tag,
    digest,
    experiment_tag,
    load_config,
    lr_tag,
    optimizer_tag,
    partition,
    prepare_config,
    total_steps,
    trained_optimizers,
)
from optbench.identity import code_digest  # noqa: E402
from optbench.io import receipt_problem  # noqa: E402
from optbench.jobs import planned_device  # noqa: E402
from optbench.runfiles import receipt_problems  # noqa: E402

# The config is config.yaml beside this Snakefile when no --configfile is given, and exactly the
# --configfile files otherwise (several are merged in order, later keys winning); --config values go
# on top of either. Nothing is merged underneath a --configfile, so a config file describes the whole
# experiment and gives the same experiment tag wherever it is run.
try:
    if not workflow.overwrite_configfiles:
        _base = load_config(Path(workflow.basedir) / "config.yaml")
        update_config(_base, config)
        config.clear()
        config.update(_base)
    prepare_config(config)
except ConfigError as error:
    raise WorkflowError(f"invalid configuration: {error}") from None


ENV = "../../environment.yml"
REPORT = "results/report.html"
# `device: auto` resolved here, so that the experiment tag names the device the runs use
DEVICE = planned_device(config["device"])
EXP = experiment_tag(config, DEVICE)
DATA = f"results/data/{data_tag(config)}.pt"
RUNS = f"results/runs/{EXP}"
PROBES = bool(config["grad_variance"]["probes"])
# the Hessian probes (B_noise = tr(HΣ)/GᵀHG) at some of the probed checkpoints, unless turned off
HESSIAN = PROBES and config["grad_variance"]["hessian"]["checkpoints"] > 0
# Every optimizer entry trained → its batch sizes: the grid's, and the auxiliary runs the literature's
# claims ask for (literature.malladi's variants, each at its one batch size and learning rate)
TRAINED = trained_optimizers(config)
# <optimizer>-<digest of its settings, type included>: the folder of each optimizer's runs
OPTIMIZER_DIRS = {name: optimizer_tag(config, name) for name in TRAINED}
# Code identity: the digests of the library code that makes the data, the runs, their evaluations and
# the analysis (comments and docstrings excluded), each computed once per Snakemake start (the analysis
# digest parses nine modules: 0.17 s). They are params of the data, train, evaluate and analysis jobs, so
# Snakemake reruns them when that code changes; a train job then retrains exactly the runs made by other
# code, an evaluate job re-evaluates the runs whose eval.json names other evaluation code (see README).
CODE = {stage: code_digest(stage) for stage in ("data", "train", "evaluate", "analysis")}


# What a run's numbers depend on besides its own optimizer, batch size, lr and seed; recorded in its
# run.json, and a run is reused only when it matches.
def run_identity(optimizer):
    return {
        "experiment": EXP,
        "optimizer": OPTIMIZER_DIRS[optimizer],
        "train_code": CODE["train"],
        "data": DATA,
        "data_code": CODE["data"],
    }


wildcard_constraints:
    # exactly the trained entries' names (free identifiers: lower-case letters, digits, underscores)
    optimizer="|".join(OPTIMIZER_DIRS),
    settings="[0-9a-f]{8}",
    batch_size=r"\d+",
    lr=r"[0-9][0-9.e+-]*",
    bundle=r"l\d+s\d+",
    probe="[0-9a-f]{8}",
    seed=r"\d+",


# (optimizer, bundle name) → its runs as (lr, seed); one train and one evaluate job per bundle and batch size
BUNDLES = partition(config)
BUNDLE_JOBS = [(o, name, b) for o, name in BUNDLES for b in TRAINED[o]]
RUN_BUNDLE = {
    (o, lr, seed): name
    for (o, name), members in BUNDLES.items()
    for lr, seed in members
}
CELL = "{optimizer}-{settings}/bs{batch_size}"
# the output of the train and evaluate jobs: the bundle's receipt, beside its runs' folders
RECEIPT = {
    stage: f"{RUNS}/{CELL}/bundle-{{bundle}}.{stage}.json"
    for stage in ("train", "evaluate")
}
BUNDLE_LOG = f"{EXP}/{{optimizer}}-{{settings}}_bs{{batch_size}}_{{bundle}}"


def run_dir(optimizer, batch_size, lr, seed, root=RUNS):
    return (
        f"{root}/{OPTIMIZER_DIRS[optimizer]}/bs{batch_size}/lr{lr_tag(lr)}/seed{seed}"
    )


def bundle_receipt(stage, optimizer, bundle, batch_size):
    optimizer, settings = OPTIMIZER_DIRS[optimizer].split("-")
    return RECEIPT[stage].format(
        optimizer=optimizer, settings=settings, batch_size=batch_size, bundle=bundle
    )


def bundle_members(wildcards):
    return BUNDLES[(wildcards.optimizer, wildcards.bundle)]


def bundle_run_dirs(wildcards, root=RUNS):
    b = int(wildcards.batch_size)
    return [
        run_dir(wildcards.optimizer, b, lr, seed, root)
        for lr, seed in bundle_members(wildcards)
    ]


def bundle_resume_dirs(wildcards):
    return bundle_run_dirs(wildcards, root=f"results/resume/{EXP}")


def bundle_identity(wildcards):
    return run_identity(wildcards.optimizer)


def bundle_priority(wildcards):
    """Longest bundles first (cost ∝ steps × members), and bundles holding a gradient-noise probe
    before all, so that the long probe jobs start early and the pipeline does not end on one core.
    """
    members = bundle_members(wildcards)
    b = int(wildcards.batch_size)
    steps = total_steps(config, b) * len(members)
    probe = any(
        (wildcards.optimizer, b, lr, seed) in PROBE_RUNS for lr, seed in members
    )
    return steps // 1000 + (10**6 if probe else 0)


def trained_bundle(wildcards):
    """The train receipt of the bundle: its evaluate job reruns whenever its train job does (and
    rewrites only the eval.csv files whose bytes change)."""
    return bundle_receipt(
        "train", wildcards.optimizer, wildcards.bundle, wildcards.batch_size
    )


def all_bundle_receipts(stage):
    return [bundle_receipt(stage, o, name, b) for o, name, b in BUNDLE_JOBS]


def all_bundle_logs(stage, kind="benchmarks", suffix="tsv"):
    """Every bundle job's benchmark (or log) file of `stage` (train or evaluate), for the report."""
    return [
        f"{kind}/{stage}/{BUNDLE_LOG}.{suffix}".format(
            optimizer=o,
            settings=OPTIMIZER_DIRS[o].split("-")[1],
            batch_size=b,
            bundle=name,
        )
        for o, name, b in BUNDLE_JOBS
    ]


# ---- the gradient-noise probes (gradvar.smk) ----
PROBE_RUNS = {
    (p["optimizer"], p["batch_size"], float(p["lr"]), p["seed"])
    for p in config["grad_variance"]["probes"]
}
# A probe's outputs live below the digest of what they depend on besides the run's path: the training
# and data code and the probe settings. The probe then needs no rerun trigger from its bundle's train
# job, which also reruns when the bundle only gains runs: its input is the train receipt as ancient()
# (order, no trigger), and a change of what it depends on is a new path, built because `rule all` asks
# for it. (Snakemake skips the params and mtime checks of a job whose ancient input's producer reruns,
# so nothing a probe depends on may be a mere param.)
PROBE_ID = digest(
    {
        "train_code": CODE["train"],
        "data_code": CODE["data"],
        "settings": {k: v for k, v in config["grad_variance"].items() if k != "probes"},
    }
)
GROUP = f"{{probe}}/{CELL}/lr{{lr}}"
GROUP_LOG = f"{EXP}/{{probe}}/{{optimizer}}-{{settings}}_bs{{batch_size}}_lr{{lr}}"


# the Hessian probes' tables (none when grad_variance.hessian is off), and their files in a probe's folder
HESSIAN_TABLES = (
    {
        "hessian": "results/tables/probe_hessian.csv",
        "hessian_draws": "results/tables/probe_hessian_draws.csv",
    }
    if HESSIAN
    else {}
)


def hessian_outputs(folder):
    return {name: f"{folder}/{name}.csv" for name in HESSIAN_TABLES}


def probe_wildcards(probe):
    return dict(
        probe=PROBE_ID,
        optimizer=probe["optimizer"],
        settings=OPTIMIZER_DIRS[probe["optimizer"]].split("-")[1],
        batch_size=probe["batch_size"],
        lr=lr_tag(probe["lr"]),
        seed=probe["seed"],
    )


def probe_inputs(wildcards):
    """The data and the train receipt of the probed run's bundle (ancient: see PROBE_ID)."""
    bundle = RUN_BUNDLE[(wildcards.optimizer, float(wildcards.lr), int(wildcards.seed))]
    receipt = bundle_receipt("train", wildcards.optimizer, bundle, wildcards.batch_size)
    return {"data": DATA, "bundle": ancient(receipt)}


def probe_checkpoints(wildcards):
    run = run_dir(
        wildcards.optimizer, wildcards.batch_size, float(wildcards.lr), wildcards.seed
    )
    return f"{run}/checkpoints.pt"


# ---- every file of every stage, and the check of what is on disk ----
def every_output(wildcards=None):
    """Every file the stages write. `rule all` asks for all of them because Snakemake rebuilds only a
    missing target: a deleted intermediate (a table, a receipt, the data) that the final report does
    not need directly would otherwise stay missing, and the report stale."""
    files = [*all_bundle_receipts("train"), *all_bundle_receipts("evaluate")]
    if PROBES:
        files += [
            str(f).format(**probe_wildcards(p))
            for p in config["grad_variance"]["probes"]
            for f in rules.grad_variance.output
        ]
    for producer in workflow.rules:
        if (
            producer.name != "all"
            and not producer.has_wildcards()
            and (PROBES or producer.name != "aggregate_gradvar")
        ):
            files += [str(f) for f in producer.output]
    return files


def remove_stale_outputs():
    """Before any job: remove what no longer matches what its job wrote, so this run rebuilds it.

    A file under results/ whose size or content changed since its job wrote it (its receipt in
    results/.receipts says what was written) is damaged and holds nothing worth keeping. A bundle's
    run files are not Snakemake outputs (no rule can declare a bundle's varying runs); its train or
    evaluate receipt lists them with their size, time and checksum, and one missing or changed file
    voids the receipt, so that the bundle's job reruns, keeps its intact runs and redoes the others.
    Done in the main snakemake process only (a cluster job parses this file too).
    """
    if not workflow.is_main_process:
        return
    for path in every_output():
        if (problem := receipt_problem(path)) is not None:
            Path(path).unlink()
            print(
                f"optbench: {path} {problem}; removed, so this run rebuilds it",
                file=sys.stderr,
            )
    for receipt in all_bundle_receipts("train") + all_bundle_receipts("evaluate"):
        if Path(receipt).exists() and (problems := receipt_problems(receipt)):
            Path(receipt).unlink()
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            print(
                f"optbench: {problems[0]}{more}; rebuilding {receipt}", file=sys.stderr
            )
