"""Config: defaults, the run grid and its bundles, and the identity a run's folder and run.json carry
(the bad values that validation refuses are in test_bad_inputs.py)."""
import copy
import re

import pytest

from optbench.config import (OPTIMIZER_TYPES, experiment_tag, groups, load_config, lr_tag, optimizer_label,
                             optimizer_settings, optimizer_tag, partition, prepare_config, runs, trained_optimizers)
from optbench.identity import STAGE_CODE, code_digest
from optbench.jobs import planned_device
from tests.conftest import ROOT, TINY, snakemake


def test_shipped_configs_are_valid_and_defaults_are_filled():
    config = prepare_config(load_config(ROOT / "config.yaml"))
    assert config["train"]["drop_last"] is True and config["selection"]["metric"] == "min_val_loss"
    tiny = prepare_config(load_config(TINY))
    assert tiny["evaluate"] == {"batch_size": 1000, "threads": 1}
    assert tiny["optimizers"]["adam"]["betas"] == [0.9, 0.999]


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
    # the grid's 360 runs, then literature.malladi's two variants × 3 seeds at their one batch size and lr
    grid = [r for r in runs(config) if r.optimizer in config["grid"]["optimizers"]]
    assert len(grid) == 2 * 5 * 12 * 3 and len(runs(config)) == 360 + 2 * 3 and len(groups(config)) == 120 + 2
    # one bundle of 12 learning rates × 3 seeds per optimizer and batch size (and one of 3 seeds per variant)
    bundles = partition(config)
    assert {len(bundles[(o, "l0s0")]) for o in ("sgd", "adam")} == {36} and len(bundles) == 4
    assert bundles[("adam_malladi_k4", "l0s0")] == [(0.0032, 0), (0.0032, 1), (0.0032, 2)]


def test_lr_tag_round_trips():
    for lr in (0.0016, 1e-05, 10.24, 0.0009765625):
        assert float(lr_tag(lr)) == lr


def tags(config):
    return experiment_tag(config, planned_device(config["device"])), {
        name: optimizer_tag(config, name) for name in config["grid"]["optimizers"]}


@pytest.mark.parametrize("key, value", [
    ("train.epochs", 3), ("train.threads", 2), ("train.bundle_size", 4), ("model.hidden", [8]),
    ("dataset.split_seed", 1), ("dataset.val_fraction", 0.2), ("device", "cuda"),
])
def test_every_setting_that_changes_the_numbers_changes_the_experiment_tag(tiny_config, key, value):
    other = copy.deepcopy(tiny_config)
    section, _, name = key.rpartition(".")
    (other[section] if section else other)[name] = value
    assert tags(other)[0] != tags(tiny_config)[0]


@pytest.mark.parametrize("key, value", [
    ("train.resume_every_seconds", 0),   # when progress is saved never changes results
    ("dataset.root", "/elsewhere"),      # MNIST-1D is generated, not read from root
    ("dataset.download", True),          # a permission to fetch, not content
    ("device", "auto"),                  # resolved first: no GPU here, so the same runs as cpu
    ("title", "another title"),
    ("evaluate.batch_size", 500),
])
def test_settings_that_do_not_change_a_runs_numbers_leave_its_folder_alone(tiny_config, key, value):
    assert planned_device("auto") == "cpu"
    other = copy.deepcopy(tiny_config)
    section, _, name = key.rpartition(".")
    (other[section] if section else other)[name] = value
    assert tags(other) == tags(tiny_config)


def test_adding_an_optimizer_or_changing_ones_settings_leaves_the_others_runs_alone(tiny_config):
    before = tags(tiny_config)
    grown = copy.deepcopy(tiny_config)
    grown["grid"]["optimizers"].append("adamw")
    grown["optimizers"]["adamw"] = {"lrs": [0.001], "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01}
    after = tags(prepare_config(grown))
    assert after[0] == before[0] and {k: after[1][k] for k in before[1]} == before[1]
    momentum = copy.deepcopy(tiny_config)
    momentum["optimizers"]["sgd"]["momentum"] = 0.9
    changed = tags(momentum)
    assert changed[0] == before[0] and changed[1]["adam"] == before[1]["adam"] and changed[1]["sgd"] != before[1]["sgd"]


def test_entries_named_after_their_type_keep_the_folders_they_had_before_types(tiny_config):
    """Digests of today's entries, as they were before `type:` existed: their runs stay where they are."""
    config = prepare_config(load_config(ROOT / "config.yaml"))
    assert {name: optimizer_tag(config, name) for name in ("sgd", "adam", "adamw")} == {
        "sgd": "sgd-83ba9bb9", "adam": "adam-b56cd74f", "adamw": "adamw-e955119e"}
    assert optimizer_tag(tiny_config, "sgd") == "sgd-83ba9bb9" and tiny_config["optimizers"]["sgd"]["type"] == "sgd"


def test_a_named_variant_gets_its_type_its_types_defaults_and_a_folder_of_its_own(tiny_config):
    config = copy.deepcopy(tiny_config)
    config["optimizers"]["sgd_momentum"] = {"type": "sgd", "momentum": 0.9, "lrs": [0.01, 0.04]}
    config["grid"]["optimizers"].append("sgd_momentum")
    config = prepare_config(config)
    assert config["optimizers"]["sgd_momentum"] == {"type": "sgd", "momentum": 0.9, "weight_decay": 0.0,
                                                    "lrs": [0.01, 0.04]}
    assert optimizer_settings(config, "sgd_momentum") == {"type": "sgd", "momentum": 0.9, "weight_decay": 0.0}
    assert optimizer_tag(config, "sgd_momentum").startswith("sgd_momentum-")
    assert trained_optimizers(config)["sgd_momentum"] == [64, 256]
    assert {lr for (o, _), members in partition(config).items() if o == "sgd_momentum" for lr, _ in members} == {0.01, 0.04}
    assert optimizer_label("sgd_momentum") == "momentum SGD"


def test_the_type_is_part_of_a_variants_identity_and_its_label_is_not(tiny_config):
    config = copy.deepcopy(tiny_config)
    config["optimizers"]["fast"] = {"type": "adam", "lrs": [0.001], "weight_decay": 0.01}
    as_adam = optimizer_tag(prepare_config(copy.deepcopy(config)), "fast")
    config["optimizers"]["fast"]["type"] = "adamw"   # the same settings, another update rule
    as_adamw = optimizer_tag(prepare_config(copy.deepcopy(config)), "fast")
    config["optimizers"]["fast"]["label"] = "fast AdamW"
    labelled = prepare_config(copy.deepcopy(config))
    assert as_adam != as_adamw == optimizer_tag(labelled, "fast")
    assert optimizer_label("fast", labelled) == "fast AdamW" and optimizer_label("fast") == "fast"
    assert optimizer_label("adam_malladi_k16") == "Adam, Malladi-scaled to B/16"
    assert optimizer_label("my_adam_2") == "my Adam 2"


def test_the_optimizer_types_are_declared_once_for_schema_config_and_factory():
    import yaml

    from optbench.model import OPTIMIZERS

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    assert schema["$defs"]["optimizer"]["properties"]["type"]["enum"] == list(OPTIMIZER_TYPES) == list(OPTIMIZERS)
    settings = {key for defaults in OPTIMIZER_TYPES.values() for key in defaults}
    assert set(schema["$defs"]["optimizer"]["properties"]) == {"type", "label", "lrs", *settings}


def test_torchvision_roots_are_part_of_the_data_identity(tiny_config, tmp_path):
    from optbench.config import data_tag

    mnist = copy.deepcopy(tiny_config)
    mnist["dataset"].update(name="mnist", download=True)
    elsewhere = copy.deepcopy(mnist)
    elsewhere["dataset"]["root"] = str(tmp_path)
    assert data_tag(mnist) != data_tag(elsewhere)
    assert data_tag(tiny_config) == data_tag({**tiny_config, "dataset": {**tiny_config["dataset"], "root": "x"}})


def test_bundles_are_fixed_blocks_so_a_growing_grid_never_moves_a_trained_run(tiny_config):
    config = copy.deepcopy(tiny_config)
    config["train"].update(bundle_size=4, bundle_seeds=2)  # blocks of 2 learning rates × 2 seeds
    before = partition(config)
    assert before[("sgd", "l0s0")] == [(0.05, 0), (0.05, 1), (0.2, 0), (0.2, 1)]
    assert before[("sgd", "l1s1")] == [(0.8, 2)]
    config["optimizers"]["sgd"]["lrs"].append(3.2)   # append a learning rate and a seed
    config["grid"]["seeds"].append(3)
    after = partition(config)
    for key, members in before.items():
        assert set(members) <= set(after[key])   # every bundle keeps its runs; new ones only fill free slots
    assert after[("sgd", "l1s1")] == [(0.8, 2), (0.8, 3), (3.2, 2), (3.2, 3)]
    assert sorted(m for ms in after.values() for m in ms) == sorted(
        (o_lr, s) for o_lr in [0.05, 0.2, 0.8, 3.2, 0.001, 0.004, 0.016] for s in range(4))


@pytest.mark.parametrize("size, seeds, expected", [(1, 3, [1] * 9), (3, 3, [3, 3, 3]), (4, 3, [3, 3, 3]),
                                                   (9, 3, [9]), (36, 3, [9]), (4, 2, [4, 2, 2, 1]), (2, 5, [2, 1] * 3)])
def test_partition_covers_every_run_once_in_blocks_of_the_configured_shape(tiny_config, size, seeds, expected):
    config = copy.deepcopy(tiny_config)
    config["train"].update(bundle_size=size, bundle_seeds=seeds)
    bundles = partition(config)
    assert sorted(len(m) for (o, _), m in bundles.items() if o == "sgd") == sorted(expected)
    every_run = [(o, float(lr), s) for o in config["grid"]["optimizers"]
                 for lr in config["optimizers"][o]["lrs"] for s in config["grid"]["seeds"]]
    assert sorted((o, lr, s) for (o, _), members in bundles.items() for lr, s in members) == sorted(every_run)


def test_code_digest_ignores_comments_and_docstrings_but_not_code(tmp_path):
    library = tmp_path / "optbench"
    library.mkdir()
    for name in {module for modules in STAGE_CODE.values() for module in modules}:
        (library / name).write_text((ROOT / "optbench" / name).read_text())
    before = {stage: code_digest(stage, library) for stage in STAGE_CODE}
    train = library / "train.py"
    source = train.read_text()
    train.write_text(source.replace('"""', '"""Reworded. ', 1) + "\n# a comment\n\n\n")
    assert {stage: code_digest(stage, library) for stage in STAGE_CODE} == before
    config = library / "config.py"
    config.write_text(config.read_text() + "\ndef validation_helper():\n    return 1\n")
    assert code_digest("train", library) == before["train"]          # config's validation is not training code
    train.write_text(source.replace("def checkpoint_schedule", "UNUSED = 1\n\n\ndef checkpoint_schedule"))
    assert code_digest("train", library) != before["train"] and code_digest("data", library) == before["data"]


@pytest.mark.workflow
def test_the_same_config_file_gives_the_same_tag_in_the_project_folder_and_elsewhere(tmp_path):
    """The Snakefile merged config.yaml of the working directory underneath --configfile; now a
    --configfile is the whole config, wherever snakemake runs."""
    inside, outside = tmp_path / "project", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    (inside / "config.yaml").write_text((ROOT / "config.yaml").read_text())
    tag = {re.search(r"results/runs/([^/]+)/", snakemake(d, "-n").stdout).group(1) for d in (inside, outside)}
    assert len(tag) == 1 and tag == {experiment_tag(prepare_config(load_config(TINY)), "cpu")}

