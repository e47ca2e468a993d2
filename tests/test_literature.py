"""The literature's runs: Malladi et al.'s scaled Adam variants, configs/literature.yaml and its reduced CI version end to end."""
import copy
import math

import pandas as pd
import pytest

from optbench.config import (load_config, malladi_variants, optimizer_settings, optimizer_tag, partition,
                             prepare_config, runs, trained_optimizers)
from optbench.tables import read_table
from tests.conftest import ROOT, snakemake

LITERATURE = ROOT / "configs" / "literature.yaml"
LITERATURE_TINY = ROOT / "tests" / "config" / "literature_tiny.yaml"


@pytest.fixture(scope="module")
def default_config():
    return prepare_config(load_config(ROOT / "config.yaml"))


def test_malladi_variants_scale_batch_lr_betas_and_eps_down_from_the_base_run(default_config):
    """Malladi et al. 2022 at batch ×κ: lr ×√κ, 1−β ×κ, ε ÷√κ; here κ = 1/k from the base B = 256, lr 0.0064,
    β = (0.9, 0.999), ε = 1e-8 — the values written out by hand, not by the formula under test."""
    variants = {v["name"]: v for v in malladi_variants(default_config)}
    assert list(variants) == ["adam_malladi_k4", "adam_malladi_k16"]
    k4, k16 = variants["adam_malladi_k4"], variants["adam_malladi_k16"]
    assert (k4["batch_size"], k4["lr"], k4["k"]) == (64, 0.0032, 4)
    assert (k16["batch_size"], k16["lr"], k16["k"]) == (16, 0.0016, 16)
    assert k4["betas"] == pytest.approx([0.975, 0.99975], abs=1e-15)
    assert k16["betas"] == pytest.approx([0.99375, 0.9999375], abs=1e-15)
    assert k4["eps"] == pytest.approx(2e-8, rel=1e-15) and k16["eps"] == pytest.approx(4e-8, rel=1e-15)
    assert all(0 < b < 1 for v in variants.values() for b in v["betas"])   # scaling down keeps β in range
    assert {key for v in variants.values() for key in v} == {"name", "optimizer", "k", "base_batch_size", "base_lr",
                                                             "batch_size", "lr", "betas", "eps"}
    # the lr-only comparison runs are grid runs at exactly the variants' learning rates (the same path)
    assert all(v["lr"] in default_config["optimizers"]["adam"]["lrs"] for v in variants.values())


def test_malladi_variants_train_only_at_their_batch_size_and_learning_rate_over_the_grids_seeds(default_config):
    assert trained_optimizers(default_config)["adam_malladi_k4"] == [64]
    assert trained_optimizers(default_config)["adam_malladi_k16"] == [16]
    variant_runs = [r for r in runs(default_config) if "malladi" in r.optimizer]
    assert {(r.optimizer, r.batch_size, r.lr) for r in variant_runs} == {("adam_malladi_k4", 64, 0.0032),
                                                                       ("adam_malladi_k16", 16, 0.0016)}
    assert sorted(r.seed for r in variant_runs) == [0, 0, 1, 1, 2, 2]
    assert [name for name in partition(default_config) if "malladi" in name[0]] == [("adam_malladi_k4", "l0s0"),
                                                                                    ("adam_malladi_k16", "l0s0")]
    assert "adam_malladi_k4" not in default_config["grid"]["optimizers"]   # not part of the grid's analyses


def test_a_malladi_variants_identity_includes_its_betas_and_eps(default_config):
    settings = optimizer_settings(default_config, "adam_malladi_k4")
    assert settings == {"type": "adam", "betas": malladi_variants(default_config)[0]["betas"],
                        "eps": malladi_variants(default_config)[0]["eps"], "weight_decay": 0.0}
    tag = optimizer_tag(default_config, "adam_malladi_k4")
    assert tag != optimizer_tag(default_config, "adam")
    other = load_config(ROOT / "config.yaml")
    other["optimizers"]["adam"]["eps"] = 1e-7   # the base's ε → every variant's ε, and so its folder
    other = prepare_config(other)
    assert optimizer_tag(other, "adam_malladi_k4") != tag
    other = load_config(ROOT / "config.yaml")
    other["optimizers"]["adam"]["betas"] = [0.8, 0.999]
    assert optimizer_tag(prepare_config(other), "adam_malladi_k4") != tag


def test_preparing_a_config_twice_gives_the_same_config(default_config):
    """The variants join `optimizers` when the config is prepared; preparing it again (a job, a second
    --configfile pass) finds them and changes nothing."""
    again = prepare_config(copy.deepcopy(default_config))
    assert again == default_config


def test_the_literature_config_extends_the_default_workload_past_b_noise(default_config):
    config = prepare_config(load_config(LITERATURE))
    # the default workload: same data and model, so the same training set (n = 3600)
    assert config["dataset"] == default_config["dataset"] and config["model"] == default_config["model"]
    assert config["grid"]["optimizers"] == config["verdicts"]["L3"]["order"] == ["sgd", "sgd_momentum", "adam"]
    assert max(config["grid"]["batch_sizes"]) == 1024 and min(config["grid"]["batch_sizes"]) == 16
    assert config["optimizers"]["sgd_momentum"]["type"] == "sgd" and config["optimizers"]["sgd_momentum"]["momentum"] == 0.9
    # the budget gives the largest batch as many steps as the default grid's largest one gets, about
    steps = {b: config["train"]["epochs"] * (3600 // b) for b in config["grid"]["batch_sizes"]}
    default_steps = default_config["train"]["epochs"] * (3600 // max(default_config["grid"]["batch_sizes"]))
    assert steps[1024] >= 0.8 * default_steps
    assert config["grad_variance"]["hessian"]["checkpoints"] > 0
    assert {p["optimizer"] for p in config["grad_variance"]["probes"]} == set(config["grid"]["optimizers"])
    assert len(malladi_variants(config)) == 2
    # analysis and verdicts are the defaults: the rules are the ones declared in config.yaml
    assert config["verdicts"] == default_config["verdicts"] and config["analysis"] == default_config["analysis"]


def test_the_tiny_literature_config_has_every_measurement_the_l_claims_read():
    config = prepare_config(load_config(LITERATURE_TINY))
    assert config["grid"]["optimizers"] == config["verdicts"]["L3"]["order"]
    assert len(config["grid"]["batch_sizes"]) >= 3   # a steps-to-target knee needs 3 batch sizes
    assert config["grad_variance"]["hessian"]["checkpoints"] > 0 and malladi_variants(config)


@pytest.mark.workflow
def test_the_tiny_literature_config_runs_end_to_end_with_every_l_claim_measured(tmp_path):
    snakemake(tmp_path, "--cores", "2", configfile=LITERATURE_TINY)
    tables = tmp_path / "results" / "tables"
    claims = read_table(tables / "claims.csv", "claims")
    assert claims["claim_id"].tolist()[-5:] == ["L1", "L2", "L3", "L4", "L5"]
    # the measured inputs: the Hessian B_noise, Malladi's comparison, momentum SGD's knee at the common target
    hessian = read_table(tables / "noise_scale_hessian.csv", "noise_scale_hessian")
    config = prepare_config(load_config(LITERATURE_TINY))
    assert len(hessian) == len(config["grad_variance"]["probes"]) * config["grad_variance"]["hessian"]["checkpoints"]
    assert (hessian["m"] == config["grad_variance"]["hessian"]["batch_size"]).all()
    assert (hessian["trace_h_sigma"] > 0).all() and hessian["g_h_g"].notna().all()
    assert len(read_table(tables / "probe_hessian_draws.csv", "probe_hessian_draws")) == \
        len(hessian) * config["grad_variance"]["hessian"]["draws"]
    malladi = read_table(tables / "malladi.csv", "malladi")
    summary = malladi[malladi["kind"] == "summary"]
    assert summary["k"].tolist() == [4] and summary["seeds"].tolist() == [3.0]
    assert math.isfinite(summary["gain"].iloc[0]) and math.isfinite(summary["floor"].iloc[0])
    knees = read_table(tables / "batch_scaling_common.csv", "batch_scaling_common").set_index("optimizer")
    assert math.isfinite(knees.loc["sgd_momentum", "knee"]) and knees.loc["sgd_momentum", "knee"] > 0
    assert set(knees.index) == set(config["grid"]["optimizers"])
    estimates = read_table(tables / "critical_batch.csv", "critical_batch")
    assert {"knee", "simple", "hessian", "lr_mccandlish"} <= set(estimates[estimates["optimizer"] == "sgd"]["kind"])
    # the variant runs are aggregated with the others, but the grid's analyses see the grid's optimizers only
    status = read_table(tables / "run_status.csv", "run_status")
    assert len(status) == len(runs(config)) and (status["optimizer"] == "adam_malladi_k4").sum() == 3
    assert "adam_malladi_k4" not in set(read_table(tables / "best_lr.csv", "best_lr")["optimizer"])
    assert "momentum SGD" in (tmp_path / "results" / "report.html").read_text()
    assert not pd.isna(claims.set_index("claim_id").loc["L4", "verdict"])
