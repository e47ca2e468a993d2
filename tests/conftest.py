"""Shared fixtures: configs, the prepared MNIST-1D tensors, and a runner for snakemake in a temp dir."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optbench.config import load_config, prepare_config

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "config" / "tiny.yaml"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    return prepare_config(load_config(TINY))


@pytest.fixture
def config(tiny_config) -> dict:
    """A private copy of the tiny config that a test may edit."""
    return copy.deepcopy(tiny_config)


@pytest.fixture(scope="session")
def mnist1d_tensors():
    from optbench.data import build_dataset

    return build_dataset({"name": "mnist1d", "val_fraction": 0.1, "split_seed": 0,
                          "root": "unused", "download": False})


def snakemake(workdir: Path, *args: str, configfile: Path = TINY, timeout: int = 600,
              check: bool = True) -> subprocess.CompletedProcess:
    """Run this project's Snakefile with `configfile` in `workdir` (outputs land there)."""
    command = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--configfile", str(configfile),
               "--directory", str(workdir), *args]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="session")
def tiny_workdir(tmp_path_factory) -> Path:
    """The tiny config run end to end once per session; tests read its outputs, never write them."""
    workdir = tmp_path_factory.mktemp("tiny")
    snakemake(workdir, "--cores", "2")
    return workdir
