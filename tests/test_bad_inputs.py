"""Bad input: every case is refused before any job runs, naming the key (or file) and what is expected, and
writes nothing. Most cases go through the validation function; a few through the snakemake command line."""
import copy
import os

import pytest

from optbench.config import ConfigError, load_config, prepare_config
from tests.conftest import ROOT, TINY, snakemake

DELETE = object()


def edit(config, dotted, value):
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = copy.deepcopy(value)  # validation fills defaults in: never into the parameter itself
    return config


def probe(**changes):
    return [{"optimizer": "sgd", "batch_size": 64, "lr": 0.2, "seed": 0, **changes}]


def malladi(**changes):
    """A literature.malladi block the tiny grid accepts (the adam grid gains 0.002: MALLADI_GRID), changed."""
    return {"optimizer": "adam", "base_batch_size": 256, "base_lr": 0.004, "k": [4], **changes}


# the tiny config with 0.002 on Adam's grid, so that malladi()'s block (256 → 64, 0.004 → 0.002) is valid
MALLADI_GRID = {"optimizers.adam.lrs": [0.001, 0.002, 0.004, 0.016]}


BAD = [  # (key to set, bad value, key the message must name, words it must contain)
    ("train.epochs", "ten", "train.epochs", "not of type 'integer'"),
    ("train.epochs", 0, "train.epochs", "minimum"),
    ("train.epochs", 2.0, "train.epochs", "write 2"),
    ("train.epochs", "3.5", "train.epochs", "not of type 'integer'"),
    ("train.epochs", True, "train.epochs", "not of type 'integer'"),
    ("train.drop_last", "maybe", "train.drop_last", "not of type 'boolean'"),
    ("train.checkpoints", 100000, "train.checkpoints", "more checkpoints than training steps"),
    ("train.checkpoints", 1, "train.checkpoints", "minimum of 2"),
    ("train.log_every", 0, "train.log_every", "minimum"),
    ("train.threads", 0, "train.threads", "minimum"),
    ("train.bundle_size", 0, "train.bundle_size", "minimum"),
    ("train.bundle_seeds", 0, "train.bundle_seeds", "minimum"),
    ("train.resume_every_seconds", -1, "train.resume_every_seconds", "minimum"),
    ("train.learning_rate", 0.1, "train", "'learning_rate' was unexpected"),
    ("optimizers.sgd.lrs", [-0.1], "optimizers.sgd.lrs.0", "less than or equal to the minimum"),
    ("optimizers.adam.lrs", [0], "optimizers.adam.lrs.0", "less than or equal to the minimum"),
    ("optimizers.adam.lrs", [], "optimizers.adam.lrs", "should be non-empty"),
    ("optimizers.sgd.lrs", ["fast"], "optimizers.sgd.lrs.0", "write a number"),
    ("optimizers.sgd.lrs", ["1e-3x"], "optimizers.sgd.lrs.0", "write a number"),
    ("optimizers.sgd.lrs", [float("inf")], "optimizers.sgd.lrs.0", "not of type 'number'"),
    ("optimizers.sgd.lrs", [float("nan")], "optimizers.sgd.lrs.0", "not of type 'number'"),
    ("optimizers.sgd.lrs", [0.1, 0.1], "optimizers.sgd.lrs", "duplicate"),
    ("optimizers.sgd.lrs", [0.1, "0.1"], "optimizers.sgd.lrs", "duplicate"),
    ("optimizers.sgd.momentum", 1.5, "optimizers.sgd.momentum", "maximum"),
    ("optimizers.adam.betas", [0.9], "optimizers.adam.betas", "too short"),
    ("optimizers.adam.betas", [0.9, 1.0], "optimizers.adam.betas.1", "maximum"),
    ("optimizers.adam.eps", 0, "optimizers.adam.eps", "less than or equal to the minimum"),
    ("optimizers.lion", {"lrs": [0.1]}, "optimizers.lion.type", "'lion' is not an optimizer type"),
    ("optimizers.fast", {"type": "lion", "lrs": [0.1]}, "optimizers.fast.type", "is not one of ['sgd', 'adam'"),
    ("optimizers.Fast", {"type": "sgd", "lrs": [0.1]}, "optimizers", "lower-case letters, digits and underscores"),
    ("optimizers.sgd-2", {"type": "sgd", "lrs": [0.1]}, "optimizers", "does not match"),
    ("optimizers.sgd.betas", [0.9, 0.99], "optimizers.sgd.betas", "not a setting of type sgd"),
    ("optimizers.sgd_momentum", {"type": "sgd", "momentum": 0.9, "eps": 1e-8, "lrs": [0.1]},
     "optimizers.sgd_momentum.eps", "not a setting of type sgd (it takes momentum, weight_decay)"),
    ("optimizers.fast", {"type": "adam", "momentum": 0.9, "lrs": [0.1]}, "optimizers.fast.momentum",
     "not a setting of type adam"),
    ("optimizers.fast", {"type": "sgd", "lrs": [0.1], "nesterov": True}, "optimizers.fast", "'nesterov' was unexpected"),
    ("optimizers.fast", {"type": "sgd", "lrs": [0.1], "label": ""}, "optimizers.fast.label", "should be non-empty"),
    ("optimizers.fast", {"type": "sgd", "momentum": 1.0, "lrs": [0.1]}, "optimizers.fast.momentum", "maximum"),
    ("grid.batch_sizes", [0], "grid.batch_sizes.0", "less than the minimum of 1"),
    ("grid.batch_sizes", [-16], "grid.batch_sizes.0", "less than the minimum of 1"),
    ("grid.batch_sizes", [64.5], "grid.batch_sizes.0", "not of type 'integer'"),
    ("grid.batch_sizes", [64, 256.0], "grid.batch_sizes.1", "write 256"),
    ("grid.batch_sizes", [64, "256.0"], "grid.batch_sizes.1", "not of type 'integer'"),
    ("grid.batch_sizes", [5000], "grid.batch_sizes", "exceeds the 3600 training samples"),
    ("grid.batch_sizes", [], "grid.batch_sizes", "should be non-empty"),
    ("grid.batch_sizes", [64, 64], "grid.batch_sizes", "duplicate"),
    ("grid.seeds", [], "grid.seeds", "should be non-empty"),
    ("grid.seeds", [0, 1.5], "grid.seeds.1", "not of type 'integer'"),
    ("grid.seeds", [0, -1], "grid.seeds.1", "minimum"),
    ("grid.optimizers", ["rmsprop"], "grid.optimizers", "optimizer 'rmsprop' has no entry in optimizers"),
    ("grid.optimizers", ["Adam"], "grid.optimizers.0", "does not match"),
    ("grid.optimizers", [], "grid.optimizers", "should be non-empty"),
    ("grid.optimizers", ["sgd", "sgd"], "grid.optimizers", "duplicate"),
    ("grid.optimizers", ["sgd", "adamw"], "grid.optimizers", "optimizer 'adamw' has no entry in optimizers"),
    ("optimizers.adam.lrs", DELETE, "optimizers.adam.lrs", "has no learning-rate list"),
    ("dataset.name", "cifar10", "dataset.name", "is not one of"),
    ("dataset.val_fraction", 0.9, "dataset.val_fraction", "maximum"),
    ("dataset.val_fraction", 0, "dataset.val_fraction", "less than or equal to the minimum"),
    ("dataset.val_fraction", 0.0001, "dataset.val_fraction", "leaves 0 validation samples"),
    ("dataset.val_fraction", 0.001, "dataset.val_fraction", "leaves 4 validation samples"),
    ("dataset.split_seed", -1, "dataset.split_seed", "minimum"),
    ("dataset.download", "yes", "dataset.download", "not of type 'boolean'"),
    ("model.hidden", [], "model.hidden", "should be non-empty"),
    ("model.hidden", [16, 0], "model.hidden.1", "minimum"),
    ("model.hidden", [16.0], "model.hidden.0", "write 16"),
    ("evaluate.batch_size", 0, "evaluate.batch_size", "minimum"),
    ("selection.metric", "best", "selection.metric", "is not one of"),
    ("device", "tpu", "device", "is not one of"),
    ("epochs", 10, "<top level>", "'epochs' was unexpected"),
    ("grid", DELETE, "<top level>", "'grid' is a required property"),
    ("grad_variance.probes", probe(lr=0.3), "grad_variance.probes[0]", "lr 0.3 is not in the grid"),
    ("grad_variance.probes", probe(optimizer="adamw", lr=0.001), "grad_variance.probes[0]",
     "optimizer 'adamw' is not in the grid"),
    ("grad_variance.probes", probe(seed=7), "grad_variance.probes[0]", "seed 7 is not in the grid"),
    ("grad_variance.probes", probe(batch_size=64.0), "grad_variance.probes.0.batch_size", "write 64"),
    ("grad_variance.probes", probe() + probe(), "grad_variance.probes[1]", "duplicate probe"),
    ("grad_variance.checkpoints", 50, "grad_variance.checkpoints", "training saves at most"),
    ("grad_variance.batch_sizes", [1, 3600], "grad_variance.batch_sizes", "not below the 3600"),
    ("grad_variance.batch_sizes", [1, 1], "grad_variance.batch_sizes", "duplicate"),
    ("grad_variance.draws", 1, "grad_variance.draws", "less than the minimum of 2"),
    ("grad_variance.probes", probe(optimizer="SGD"), "grad_variance.probes.0.optimizer", "does not match"),
    ("grad_variance.hessian.batch_size", 3600, "grad_variance.hessian.batch_size", "not below the 3600"),
    ("grad_variance.hessian.batch_size", 0, "grad_variance.hessian.batch_size", "minimum of 1"),
    ("grad_variance.hessian.draws", 2, "grad_variance.hessian.draws", "minimum of 3"),   # no CI from 2 draws
    ("grad_variance.hessian.checkpoints", -1, "grad_variance.hessian.checkpoints", "minimum of 0"),
    ("grad_variance.hessian.checkpoints", 2.0, "grad_variance.hessian.checkpoints", "write 2"),
    ("grad_variance.hessian.every", 2, "grad_variance.hessian", "'every' was unexpected"),
    ("literature.shallue", {}, "literature", "'shallue' was unexpected"),
    ("literature.malladi", {"optimizer": "adam", "base_batch_size": 256, "base_lr": 0.004},
     "literature.malladi", "'k' is a required property"),
    ("literature.malladi", malladi(k=[1]), "literature.malladi.k.0", "minimum of 2"),
    ("literature.malladi", malladi(k=[4, 4]), "literature.malladi.k", "duplicate"),
    ("literature.malladi", malladi(optimizer="adamw"), "literature.malladi.optimizer", "not in grid.optimizers"),
    ("literature.malladi", malladi(optimizer="sgd", base_lr=0.8), "literature.malladi.optimizer", "of type sgd"),
    ("literature.malladi", malladi(base_batch_size=128), "literature.malladi.base_batch_size",
     "128 is not in grid.batch_sizes"),
    ("literature.malladi", malladi(k=[2]), "literature.malladi.k", "base batch size 256 ÷ k = 128 is not in"),
    ("literature.malladi", malladi(k=[3]), "literature.malladi.k", "÷ k = 85.3333 is not in grid.batch_sizes"),
    ("literature.malladi", malladi(base_lr=0.003), "literature.malladi.base_lr", "0.003 is not on optimizers.adam.lrs"),
    ("literature.malladi", malladi(base_lr=0.016), "literature.malladi.k", "base lr 0.016 ÷ √4 = 0.008 is not on"),
    ("literature.malladi", malladi(base_batch_size=256.0), "literature.malladi.base_batch_size", "write 256"),
    ("grid.optimizers", ["sgd", "adam", "adam_malladi_k4"], "grid.optimizers",
     "'adam_malladi_k4' is literature.malladi's variant"),
    ("optimizers.adam_malladi_k4", {"type": "adam", "lrs": [0.002]}, "optimizers.adam_malladi_k4",
     "the name is literature.malladi's variant"),
    ("grad_variance.confidence", 0.9, "grad_variance.confidence", "it is now 'analysis.confidence'"),
    ("grad_variance.bootstrap_resamples", 999, "grad_variance.bootstrap_resamples",
     "it is now 'analysis.bootstrap_resamples'"),
    ("verdicts.C4.alpha", 0.05, "verdicts.C4.alpha", "it was removed"),
    ("verdicts.C5.alpha", 0.05, "verdicts.C5.alpha", "it was removed"),
]


@pytest.mark.parametrize("key, value, named, words", BAD, ids=[f"{b[0]}={b[1]!r}"[:48] for b in BAD])
def test_bad_value_is_refused_naming_the_key_and_writing_nothing(tmp_path, monkeypatch, key, value, named, words):
    monkeypatch.chdir(tmp_path)
    config = copy.deepcopy(load_config(TINY))
    if "malladi" in f"{key}{value}":
        for grid_key, grid_value in MALLADI_GRID.items():
            edit(config, grid_key, grid_value)
        if not key.startswith("literature"):
            edit(config, "literature.malladi", malladi())
    config = edit(config, key, value)
    with pytest.raises(ConfigError) as error:
        prepare_config(config)
    assert f"config key '{named}'" in str(error.value)
    assert words in str(error.value)
    assert os.listdir(tmp_path) == []


def test_missing_torchvision_files_are_refused_naming_the_folder_and_the_switch(tmp_path):
    config = edit(load_config(TINY), "dataset.name", "fashion_mnist")
    config["dataset"].update(root=str(tmp_path), download=False)
    with pytest.raises(ConfigError, match=r"config key 'dataset.root'.*FashionMNIST.*dataset.download: true"):
        prepare_config(config)


@pytest.mark.parametrize("text, where", [
    ("grid:\n  seeds: [0, 1\n  batch_sizes: [2]\n", "line 3"),
    ("grid:\n\tseeds: [0]\n", "line 2"),
    ("a: b: c\n", "line 1"),
])
def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path, text, where):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"broken\.yaml, {where}, column \d+: not valid YAML"):
        load_config(path)


@pytest.mark.parametrize("text", ["- a list\n- not a mapping\n", "just text\n"])
def test_a_config_file_that_is_not_a_mapping_is_refused_by_name(tmp_path, text):
    path = tmp_path / "list.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a YAML mapping"):
        load_config(path)


@pytest.mark.parametrize("key, text, expected", [
    ("optimizers.sgd.lrs", ["1e-3", "0.2"], [0.001, 0.2]),  # PyYAML reads 1e-3 as a string (YAML 1.1)
    ("train.epochs", "3", 3),                               # --config passes nested values as strings
    ("grid.batch_sizes", ["64", "256"], [64, 256]),
    ("train.drop_last", "false", False),
    ("grad_variance.checkpoints", "2", 2),
    ("grad_variance.probes", probe(lr="0.2", batch_size="64"), probe()),
    ("title", 2026, "2026"),                                # --config title=2026 arrives as an int
])
def test_strings_that_spell_what_the_schema_wants_are_converted(key, text, expected):
    config = prepare_config(edit(load_config(TINY), key, text))
    node = config
    for part in key.split("."):
        node = node[part]
    assert node == expected and type(node) is type(expected)


# ---- through the snakemake command line (seconds per call) ----

CLI_BAD = [
    ([], "batch_sizes: [64, 256]", "batch_sizes: [64, -1]", "config key 'grid.batch_sizes.1'"),
    (["--config", "dataset={val_fraction: 0.0001}"], None, None, "config key 'dataset.val_fraction'"),
    (["--config", "grid={batch_sizes: [64, 256.0]}"], None, None, "config key 'grid.batch_sizes.1'"),
    (["--config", "train={epochs: ten}"], None, None, "config key 'train.epochs'"),
    ([], "  draws: 32", "  draws: 32\n  confidence: 0.9", "it is now 'analysis.confidence'"),
]


@pytest.mark.workflow
@pytest.mark.parametrize("args, old, new, words", CLI_BAD, ids=[c[3][:40] + str(i) for i, c in enumerate(CLI_BAD)])
def test_snakemake_refuses_a_bad_config_before_any_job_and_writes_nothing(tmp_path, args, old, new, words):
    config = tmp_path / "config.yaml"
    text = TINY.read_text()
    config.write_text(text.replace(old, new, 1) if old else text)
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = snakemake(workdir, "--cores", "1", *args, configfile=config, check=False)
    assert result.returncode != 0
    assert words in result.stdout + result.stderr
    assert not (workdir / "results").exists() and not (workdir / "logs").exists()


@pytest.mark.workflow
def test_numeric_keys_can_be_given_with_config_on_the_command_line(tmp_path):
    """--config hands nested values over as strings: they are converted, and change what is planned."""
    result = snakemake(tmp_path, "-n", "--config", "train={epochs: 1, checkpoints: 3}", "grid={batch_sizes: [64]}")
    assert "bs256" not in result.stdout and "/bs64/" in result.stdout
    assert (ROOT / "config.yaml").exists()
