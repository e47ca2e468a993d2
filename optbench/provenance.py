"""Where a report came from: the configuration, package versions, git commit, machine and date."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import yaml

PACKAGES = ["optbench", "torch", "numpy", "scipy", "pandas", "matplotlib", "jinja2", "pyyaml",
            "jsonschema", "snakemake", "mnist1d"]


def provenance(config: dict, repo: Path) -> dict:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "config_yaml": config_yaml(config),
        "versions": versions,
        "git": git_commit(repo),
        "machine": f"{platform.node()} — {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
                   f"Python {platform.python_version()}",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


class _FlowListDumper(yaml.SafeDumper):
    """Block-style mappings with one-line lists: the config as a person would write it."""


_FlowListDumper.add_representer(
    list, lambda dumper, value: dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True))


def config_yaml(config: dict) -> str:
    return yaml.dump(config, Dumper=_FlowListDumper, sort_keys=False, allow_unicode=True, width=100)


def git_commit(repo: Path) -> str:
    """HEAD of the workflow's repository (+ "with uncommitted changes"), or why it is unknown.

    --no-optional-locks: a report job must never take the index lock from someone committing.
    """
    def git(*args):
        return subprocess.run(["git", "--no-optional-locks", "-C", str(repo), *args], capture_output=True,
                              text=True, timeout=20)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "unavailable (not a git checkout)"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable (git not found)"
    return head.stdout.strip() + (" with uncommitted changes" if dirty else "")
