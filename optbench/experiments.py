"""Experiment folders on disk: which configs use them, and removing those no config uses.

    python -m optbench.experiments [CONFIG ...]            list (removes nothing)
    python -m optbench.experiments --remove [CONFIG ...]   remove the folders none of the configs uses

A change of a setting that changes the runs' numbers gives a new experiment tag (or optimizer folder),
and the old folders stay on disk. Listed per tag: the run folders (results/runs/<tag>, and its
<optimizer>-<digest> folders), resume states, probe outputs, logs and benchmarks of that tag, and the
prepared data files. CONFIG defaults to config.yaml; an experiment counts as in use when any CONFIG
would write to it.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from optbench.config import (ConfigError, data_tag, experiment_tag, load_config, optimizer_tag, prepare_config,
                             trained_optimizers)
from optbench.io import RECEIPTS
from optbench.jobs import planned_device

PER_TAG = ("results/runs", "results/resume", "results/gradvar", "logs/train", "logs/evaluate",
           "logs/grad_variance", "benchmarks/train", "benchmarks/evaluate", "benchmarks/grad_variance")


def in_use(configs: list[Path]) -> tuple[set[str], set[str], set[str]]:
    """(experiment tags, <tag>/<optimizer folder>s, data file names) the configs write to."""
    tags, optimizers, data = set(), set(), set()
    for path in configs:
        config = prepare_config(load_config(path))
        tag = experiment_tag(config, planned_device(config["device"]))
        tags.add(tag)
        optimizers |= {f"{tag}/{optimizer_tag(config, name)}" for name in trained_optimizers(config)}
        data.add(f"{data_tag(config)}.pt")
    return tags, optimizers, data


def size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def unused_paths(workdir: Path, configs: list[Path]) -> tuple[list[Path], list[Path]]:
    """(in use, unused) folders and data files under workdir."""
    tags, optimizers, data = in_use(configs)
    used, unused = [], []
    for root in PER_TAG:
        for folder in sorted((workdir / root).glob("*")):
            (used if folder.name in tags else unused).append(folder)
    for experiment in sorted((workdir / "results" / "runs").glob("*")):
        if experiment.name in tags:
            for folder in sorted(p for p in experiment.iterdir() if p.is_dir()):
                (used if f"{experiment.name}/{folder.name}" in optimizers else unused).append(folder)
    for path in sorted((workdir / "results" / "data").glob("*.pt")):
        (used if path.name in data else unused).append(path)
    return used, unused


def remove(path: Path, workdir: Path) -> None:
    """Remove a folder or file, and the receipts of what it held (results/.receipts mirrors results/)."""
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    results = workdir / "results"
    if results in path.parents:
        receipt = results / RECEIPTS / path.relative_to(results)
        shutil.rmtree(receipt, ignore_errors=True)
        receipt.with_name(receipt.name + ".json").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="*", type=Path, default=[Path("config.yaml")])
    parser.add_argument("--remove", action="store_true", help="remove the folders none of the configs uses")
    parser.add_argument("--directory", type=Path, default=Path("."), help="the workflow's working directory")
    args = parser.parse_args(argv)
    try:
        used, unused = unused_paths(args.directory, args.configs)
    except (ConfigError, OSError) as error:
        print(f"optbench.experiments: {error}", file=sys.stderr)
        return 2
    names = ", ".join(str(c) for c in args.configs)
    for label, paths in ((f"in use by {names}", used), ("used by none of them", unused)):
        print(f"{label}: {len(paths)}")
        for path in paths:
            print(f"  {size(path) / 1e6:9.1f} MB  {path.relative_to(args.directory)}")
    if unused and args.remove:
        freed = sum(map(size, unused))
        for path in unused:
            remove(path, args.directory)
        print(f"removed the {len(unused)} unused ({freed / 1e6:.1f} MB)")
    elif unused:
        print("nothing removed; to remove these: make clean-experiments CONFIRM=yes "
              "(python -m optbench.experiments --remove CONFIG ...)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
