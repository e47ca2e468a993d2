"""Replication: run the workflow on several workloads (one config each, one folder each) and render compare.html.

    python -m optbench.replicate configs/replication.yaml [--cores N] [--output results/compare.html]

Each workload is an ordinary run of the Snakefile with its own config in its own folder
(`results/replication/<name>/` unless the entry names a `directory:`), so a finished workload reruns nothing
and its report stands on its own; then the comparison page reads their tables. A workload marked
`optional: true` whose data are not on disk (a torchvision dataset without download) is skipped and named.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from optbench.compare import Workload, render_comparison
from optbench.config import SCHEMA_PATH, TORCHVISION_FOLDERS, ConfigError, load_config, prepare_config
from optbench.io import atomic_write_text

ROOT = Path(__file__).resolve().parent.parent


def load_replication(path: Path) -> dict:
    """The replication config: title, workloads [{name, configfile, description?, directory?, optional?}]."""
    spec = yaml.safe_load(path.read_text()) or {}
    workloads = spec.get("workloads")
    if not isinstance(workloads, list) or not workloads:
        raise ConfigError(f"{path}: 'workloads' must list at least one {{name, configfile}} entry")
    names = set()
    for i, entry in enumerate(workloads):
        if not isinstance(entry, dict) or not {"name", "configfile"} <= set(entry):
            raise ConfigError(f"{path}: workloads[{i}] needs 'name' and 'configfile'")
        if entry["name"] in names:
            raise ConfigError(f"{path}: workloads[{i}]: the name '{entry['name']}' is used twice")
        names.add(entry["name"])
    return spec


def resolve(path: str, base: Path) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else (base / candidate).resolve()


def default_dataset_root() -> str:
    """dataset.root's default, as the schema declares it."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    return schema["properties"]["dataset"]["properties"]["root"]["default"]


def pin_dataset_root(config: dict, extra: list[str]) -> list[str]:
    """`extra` with a --config value that pins a relative dataset.root to the folder replicate runs in (and
    `config` changed alike): snakemake runs each workload in its own folder, where a relative root would
    point elsewhere than it did when the workload was validated (and found its files, or was skipped) here.
    After the other arguments, or beside their own --config values, so that no target is read as one."""
    dataset = config.get("dataset") or {}
    root = dataset.get("root")
    if root is None and dataset.get("name") in TORCHVISION_FOLDERS:
        root = default_dataset_root()  # the schema's default is relative too, and not filled in yet here
    if root is None or Path(root).is_absolute():
        return extra
    config["dataset"]["root"] = str(Path.cwd() / root)
    value = f"dataset={json.dumps({'root': config['dataset']['root']})}"
    if "--config" in extra:
        at = extra.index("--config") + 1
        return [*extra[:at], value, *extra[at:]]
    return [*extra, "--config", value]


def run_workload(configfile: Path, directory: Path, cores: str, extra: list[str]) -> None:
    """The workflow on one workload, as `snakemake --cores N --configfile X --directory D` would run it."""
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--configfile", str(configfile),
               "--directory", str(directory), "--cores", cores, *extra]
    print(f"replicate: {' '.join(command)}", flush=True)
    subprocess.run(command, check=True, env={**os.environ})


def replicate(path: Path, cores: str = "all", output: Path | None = None, extra: list[str] | None = None,
              run: bool = True) -> Path:
    spec = load_replication(path)
    workloads, notes = [], []
    for entry in spec["workloads"]:
        configfile = resolve(entry["configfile"], ROOT)
        directory = resolve(entry["directory"], Path.cwd()) if "directory" in entry else \
            Path.cwd() / "results" / "replication" / entry["name"]
        config = load_config(configfile)
        arguments = pin_dataset_root(config, extra or [])
        try:
            prepare_config(config)
        except ConfigError as error:
            if entry.get("optional"):
                notes.append(f"{entry['name']} skipped: {error}")
                print(f"replicate: {notes[-1]}", flush=True)
                continue
            raise
        if run:
            directory.mkdir(parents=True, exist_ok=True)
            run_workload(configfile, directory, cores, arguments)
        workloads.append(Workload(entry["name"], directory / "results", entry.get("description", "")))
    output = output or Path.cwd() / "results" / "compare.html"
    atomic_write_text(render_comparison(spec.get("title", "optbench: replication across workloads"), workloads,
                                        notes), output)
    print(f"replicate: {output} ({len(workloads)} workloads)", flush=True)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="the replication config (e.g. configs/replication.yaml)")
    parser.add_argument("--cores", default="all", help="snakemake --cores for each workload (default: all)")
    parser.add_argument("--output", type=Path, default=None, help="the page to write (default results/compare.html)")
    parser.add_argument("--no-run", action="store_true", help="only render the page from finished workloads")
    args, extra = parser.parse_known_args(argv)
    try:
        replicate(args.config, args.cores, args.output, extra, run=not args.no_run)
    except ConfigError as error:
        print(f"replicate: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(f"replicate: a workload failed ({error.returncode}); its log names the rule", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
