"""Data: MNIST-1D determinism and splits; the torchvision path on IDX files written here."""
import random
import struct

import numpy as np
import pytest
import torch

from optbench.data import DataError, build_dataset, load_dataset, save_dataset
from optbench.io import CorruptFileError

MNIST1D = {"name": "mnist1d", "val_fraction": 0.1, "split_seed": 0, "root": "unused", "download": False}


def test_mnist1d_shapes_and_canonical_sizes(mnist1d_tensors):
    t = mnist1d_tensors
    assert t["x_train"].shape == (3600, 40) and t["x_val"].shape == (400, 40) and t["x_test"].shape == (1000, 40)
    assert t["x_train"].dtype == torch.float32 and t["y_train"].dtype == torch.int64
    assert set(t["y_train"].unique().tolist()) == set(range(10))


def test_mnist1d_is_deterministic_and_leaves_global_rngs_alone(mnist1d_tensors):
    np.random.seed(123)
    random.seed(123)
    expected_np, expected_py = np.random.get_state()[1].copy(), random.getstate()
    again = build_dataset(MNIST1D)
    assert np.array_equal(np.random.get_state()[1], expected_np) and random.getstate() == expected_py
    for key, value in mnist1d_tensors.items():
        assert torch.equal(value, again[key]), key


def test_validation_split_is_disjoint_seeded_and_complete(mnist1d_tensors):
    train, val = mnist1d_tensors["train_index"], mnist1d_tensors["val_index"]
    assert len(set(train.tolist()) & set(val.tolist())) == 0
    assert sorted(train.tolist() + val.tolist()) == list(range(4000))
    other = build_dataset({**MNIST1D, "split_seed": 1})
    assert not torch.equal(other["val_index"], val)


def test_save_load_roundtrip_and_truncated_file_is_named(tmp_path, mnist1d_tensors):
    path = tmp_path / "data.pt"
    save_dataset(mnist1d_tensors, path)
    loaded = load_dataset(path)
    assert torch.equal(loaded["x_train"], mnist1d_tensors["x_train"])
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptFileError, match="data.pt.*Delete it and rerun"):
        load_dataset(path)


def write_idx(folder, prefix, images, labels):
    folder.mkdir(parents=True, exist_ok=True)
    n, rows, cols = images.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, rows, cols) + images.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())


@pytest.mark.parametrize("name, folder", [("fashion_mnist", "FashionMNIST"), ("mnist", "MNIST")])
def test_torchvision_loader_reads_idx_files(tmp_path, name, folder):
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    train_labels = rng.integers(0, 10, 50, dtype=np.uint8)
    test_images = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    test_labels = rng.integers(0, 10, 20, dtype=np.uint8)
    raw = tmp_path / folder / "raw"
    write_idx(raw, "train", train_images, train_labels)
    write_idx(raw, "t10k", test_images, test_labels)
    tensors = build_dataset({"name": name, "root": str(tmp_path), "download": False,
                             "val_fraction": 0.2, "split_seed": 0})
    assert tensors["x_train"].shape == (40, 28, 28) and tensors["x_val"].shape == (10, 28, 28)
    assert tensors["x_test"].shape == (20, 28, 28)
    # values are the IDX bytes scaled to [0, 1], rows picked by the split index
    expected = torch.from_numpy(train_images[tensors["train_index"].numpy()]).float() / 255
    assert torch.equal(tensors["x_train"], expected)
    assert torch.equal(tensors["y_test"], torch.from_numpy(test_labels).long())


def test_missing_torchvision_root_names_the_path_and_the_key(tmp_path):
    with pytest.raises(DataError, match=r"nowhere.*dataset\.root.*dataset\.download: true"):
        build_dataset({"name": "fashion_mnist", "root": str(tmp_path / "nowhere"), "download": False,
                       "val_fraction": 0.1, "split_seed": 0})
