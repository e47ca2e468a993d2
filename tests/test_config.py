"""Config validation: every bad value fails before any job runs, naming the key and what is expected."""
import copy

import pytest

from optbench.config import (ConfigError, experiment_tag, groups, load_config, lr_tag, prepare_config,
                             runs)
from tests.conftest import ROOT, snakemake


def edit(config, dotted, value):
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return config


DELETE = object()

BAD = [  # (key to set, bad value, key the message must name, words it must contain)
    ("train.epochs", "ten", "train.epochs", "not of type 'integer'"),
    ("train.epochs", 0, "train.epochs", "minimum"),
    ("optimizers.sgd.lrs", [-0.1], "optimizers.sgd.lrs.0", "less than or equal to the minimum"),
    ("optimizers.adam.lrs", [0], "optimizers.adam.lrs.0", "less than or equal to the minimum"),
    ("optimizers.adam.lrs", [], "optimizers.adam.lrs", "should be non-empty"),
    ("grid.batch_sizes", [0], "grid.batch_sizes.0", "less than the minimum of 1"),
    ("grid.batch_sizes", [-16], "grid.batch_sizes.0", "less than the minimum of 1"),
    ("grid.batch_sizes", [64.5], "grid.batch_sizes.0", "not of type 'integer'"),
    ("grid.batch_sizes", [5000], "grid.batch_sizes", "exceeds the 3600 training samples"),
    ("grid.batch_sizes", [], "grid.batch_sizes", "should be non-empty"),
    ("grid.batch_sizes", [64, 64], "grid.batch_sizes", "duplicate"),
    ("grid.seeds", [], "grid.seeds", "should be non-empty"),
    ("grid.optimizers", ["rmsprop"], "grid.optimizers.0", "is not one of"),
    ("grid.optimizers", ["sgd", "adamw"], "optimizers.adamw.lrs", "has no learning-rate list"),
    ("optimizers.sgd.lrs", [0.1, 0.1], "optimizers.sgd.lrs", "duplicate"),
    ("optimizers.sgd.momentum", 1.5, "optimizers.sgd.momentum", "maximum"),
    ("dataset.name", "cifar10", "dataset.name", "is not one of"),
    ("dataset.val_fraction", 0.9, "dataset.val_fraction", "maximum"),
    ("model.hidden", [], "model.hidden", "should be non-empty"),
    ("device", "tpu", "device", "is not one of"),
    ("train.checkpoints", 100000, "train.checkpoints", "more checkpoints than training steps"),
    ("train.learning_rate", 0.1, "train", "'learning_rate' was unexpected"),
    ("epochs", 10, "<top level>", "'epochs' was unexpected"),
    ("grid", DELETE, "<top level>", "'grid' is a required property"),
    ("grad_variance.probes", [{"optimizer": "sgd", "batch_size": 64, "lr": 0.3, "seed": 0}],
     "grad_variance.probes[0]", "lr 0.3 is not in the grid"),
    ("grad_variance.probes", [{"optimizer": "adamw", "batch_size": 64, "lr": 0.001, "seed": 0}],
     "grad_variance.probes[0]", "optimizer 'adamw' is not in the grid"),
    ("grad_variance.probes", [{"optimizer": "sgd", "batch_size": 64, "lr": 0.2, "seed": 7}],
     "grad_variance.probes[0]", "seed 7 is not in the grid"),
    ("grad_variance.checkpoints", 50, "grad_variance.checkpoints", "training saves at most"),
    ("grad_variance.batch_sizes", [1, 3600], "grad_variance.batch_sizes", "not below the 3600"),
    ("grad_variance.draws", 1, "grad_variance.draws", "less than the minimum of 2"),
]


@pytest.mark.parametrize("key, value, named, words", BAD, ids=[f"{b[0]}={b[1]!r}"[:40] for b in BAD])
def test_bad_value_is_rejected_naming_the_key(tiny_config, key, value, named, words):
    config = edit(copy.deepcopy(load_config(ROOT / "tests" / "config" / "tiny.yaml")), key, value)
    with pytest.raises(ConfigError) as error:
        prepare_config(config)
    assert f"config key '{named}'" in str(error.value)
    assert words in str(error.value)


def test_shipped_configs_are_valid_and_defaults_are_filled():
    config = prepare_config(load_config(ROOT / "config.yaml"))
    assert config["train"]["drop_last"] is True and config["selection"]["metric"] == "min_val_loss"
    tiny = prepare_config(load_config(ROOT / "tests" / "config" / "tiny.yaml"))
    assert tiny["evaluate"] == {"batch_size": 1000, "threads": 1} and tiny["optimizers"]["adam"]["betas"] == [0.9, 0.999]


def test_default_grid_meets_the_issue():
    config = prepare_config(load_config(ROOT / "config.yaml"))
    assert config["grid"]["optimizers"] == ["sgd", "adam"] and len(config["grid"]["seeds"]) >= 3
    assert max(config["grid"]["batch_sizes"]) <= 3600 / 8
    adam = config["optimizers"]["adam"]["lrs"]
    assert 1e-4 in adam and 1e-3 in adam
    for name in ("sgd", "adam"):
        lrs = sorted(config["optimizers"][name]["lrs"])
        assert lrs[-1] / lrs[0] >= 1000, f"{name} grid spans < 3 decades"
        assert all(2 * a in lrs and 4 * a in lrs for a in lrs[:5]), f"{name}: ×2 and ×4 pairs missing"
    assert len(runs(config)) == 2 * 5 * 12 * 3 and len(groups(config)) == 120


def test_lr_tag_round_trips_and_experiment_tag_separates_configs(tiny_config):
    for lr in (0.0016, 1e-05, 10.24, 0.0009765625):
        assert float(lr_tag(lr)) == lr
    other = copy.deepcopy(tiny_config)
    other["train"]["epochs"] += 1
    assert experiment_tag(other) != experiment_tag(tiny_config)
    other = copy.deepcopy(tiny_config)
    other["train"]["resume_every_seconds"] = 0  # when progress is saved never changes results
    assert experiment_tag(other) == experiment_tag(tiny_config)


@pytest.mark.workflow
def test_snakemake_rejects_a_bad_config_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "tests" / "config" / "tiny.yaml").read_text().replace("batch_sizes: [64, 256]",
                                                                                 "batch_sizes: [64, -1]"))
    result = snakemake(tmp_path, "--cores", "1", configfile=bad, check=False)
    assert result.returncode != 0
    assert "config key 'grid.batch_sizes.1'" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()
