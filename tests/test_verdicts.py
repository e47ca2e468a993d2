"""Each claim's rule on planted tables: supported, not supported and inconclusive where the rule says."""
from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest

from optbench import analysis, verdicts
from optbench.verdicts import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from tests.test_analysis import SETTINGS, STEPS, planted_grid, run_rows

ADAM_GRID = sorted([1e-4 * 2**k for k in range(-1, 10)] + [1e-3])
KEYS = {"claim_id", "claim_text", "verdict", "reason", "evidence", "rule", "anchor"}


@pytest.fixture
def rules(config):
    """claim → its rule's parameters, from the config's declared defaults (schema-filled)."""
    return {claim: verdicts.rule_parameters(config, claim) for claim in verdicts.CLAIMS}


def analyzed(runs: pd.DataFrame, **extra) -> dict:
    tables = {"runs": runs, **extra}
    tables.update(analysis.analyze(tables, SETTINGS, "min_val_loss"))
    return tables


def check(found: dict, verdict: str, *words: str) -> None:
    assert set(found) == KEYS
    assert found["verdict"] == verdict, found
    for word in words:
        assert word in found["reason"], found["reason"]


# ---------------------------------------------------------------------------------------------

def test_c1_supported_when_training_lowers_the_loss(rules):
    found = verdicts.c1_training_lowers_loss(analyzed(planted_grid(lambda b, s: 0.04)), rules["C1"])
    check(found, SUPPORTED)
    assert "56.5 [56.5, 56.5] %" in found["evidence"]  # 1 − 1.0/2.3


def test_c1_not_supported_when_the_drop_is_below_the_margin(rules):
    tables = analyzed(planted_grid(lambda b, s: 0.04, width=0.0))
    ends = {0: 2.2, 1: 2.21, 2: 2.19}
    for seed, end in ends.items():  # the training objective barely moves below 2.3
        mask = tables["lr_scores"]["seed"] == seed
        tables["lr_scores"].loc[mask, ["initial_train", "train_objective"]] = [2.3, end]
    check(verdicts.c1_training_lowers_loss(tables, rules["C1"]), NOT_SUPPORTED, "below the required drop")


def test_c1_inconclusive_with_too_few_seeds(rules):
    found = verdicts.c1_training_lowers_loss(analyzed(planted_grid(lambda b, s: 0.04, seeds=(0, 1))), rules["C1"])
    check(found, INCONCLUSIVE, "2 seed(s)", "at least 3")


def sgd_and_adam(sgd_width=1.0, adam_width=0.02, sgd_diverge=2.0, sgd_star=0.04, adam_star=0.0016,
                 adam_grid=ADAM_GRID, seeds=(0, 1, 2)) -> pd.DataFrame:
    return pd.concat([planted_grid(lambda b, s: sgd_star, width=sgd_width, diverge_above=sgd_diverge, seeds=seeds),
                      planted_grid(lambda b, s: adam_star, grid=adam_grid, optimizer="adam", width=adam_width,
                                   seeds=seeds)], ignore_index=True)


def test_c2_supported_when_sgd_is_narrow_and_diverges(rules):
    found = verdicts.c2_sgd_sensitive(analyzed(sgd_and_adam()), rules["C2"])
    check(found, SUPPORTED, "fails to converge in 27 runs")
    # ends interpolated linearly between grid points one octave apart: SGD (w = 1) crosses 1.1 at
    # ±0.1 octave, Adam (w = 0.02) at ±2.2 octaves: 0.2 and 4.4 octaves = 0.060 and 1.32 decades
    assert "SGD 0.06 decades, Adam 1.3 decades" in found["evidence"]


def test_c2_not_supported_when_adam_is_as_narrow(rules):
    found = verdicts.c2_sgd_sensitive(analyzed(sgd_and_adam(adam_width=1.0)), rules["C2"])
    check(found, NOT_SUPPORTED, "not 0.5 decades wider")


def test_c2_without_divergence_depends_on_whether_the_grid_reaches_past_the_best(rules):
    found = verdicts.c2_sgd_sensitive(analyzed(sgd_and_adam(sgd_diverge=math.inf)), rules["C2"])
    check(found, NOT_SUPPORTED, "converged at every grid point")
    found = verdicts.c2_sgd_sensitive(analyzed(sgd_and_adam(sgd_diverge=math.inf, sgd_star=10.24)), rules["C2"])
    check(found, INCONCLUSIVE, "extend it above")


def test_c3_verdicts(rules):
    def c3(**kwargs):
        runs = planted_grid(lambda b, s: kwargs.get("star", 0.0012), grid=kwargs.get("grid", ADAM_GRID),
                            optimizer="adam", width=kwargs.get("width", 0.02))
        return verdicts.c3_adam_default_lrs(analyzed(runs), rules["C3"])

    check(c3(), SUPPORTED)
    check(c3(star=0.03, width=0.5), NOT_SUPPORTED, "in only 0 of 9 cells")
    check(c3(grid=[lr for lr in ADAM_GRID if lr != 1e-4]), INCONCLUSIVE, "lacks 0.0001")
    check(c3(star=1.0, width=0.001), INCONCLUSIVE, "censored optima")  # best at the top edge: uncertain


# ---------------------------------------------------------------------------------------------
# C4, C5 from the gradient-variance table

def planted_gradvar(z_shift=0.0, ratio_scale=1.0, n=3600) -> pd.DataFrame:
    rows = []
    for probe in range(2):
        for checkpoint in range(5):
            wobble = 0.1 * (checkpoint - 2) / 2 * (1 if probe else -1)  # symmetric about 0
            for m in (1, 2, 4, 100):
                fpc = (n - m) / (n - 1)
                ratio = ratio_scale * (1 + wobble)
                rows.append({"optimizer": "sgd", "batch_size": 64, "lr": 0.1, "seed": probe, "step": checkpoint,
                             "epoch": checkpoint, "n": n, "m": m, "K": 200, "sigma2": 2.0,
                             "empirical_mean": 2.0 / m * fpc * ratio, "ratio_fpc": ratio, "ratio_iid": ratio * fpc,
                             "z": 1 + wobble + z_shift, "z_low_fw": 0.5, "z_high_fw": 1.6})
    return pd.DataFrame(rows)


def test_c4_c5_without_probes_are_inconclusive(rules):
    for rule in (verdicts.c4_unbiased, verdicts.c5_variance):
        check(rule({}, rules["C4"]), INCONCLUSIVE, "no gradient-variance probes")


def test_c4_follows_z_against_its_expectation(rules):
    check(verdicts.c4_unbiased({"gradvar": planted_gradvar()}, rules["C4"]), SUPPORTED)
    found = verdicts.c4_unbiased({"gradvar": planted_gradvar(z_shift=0.5)}, rules["C4"])
    check(found, NOT_SUPPORTED, "excludes 1")
    assert "mean z = 1.5" in found["evidence"]


def test_c5_follows_the_measured_variance_and_reports_the_halving(rules):
    found = verdicts.c5_variance({"gradvar": planted_gradvar()}, rules["C5"])
    check(found, SUPPORTED)
    assert "m = 2 ÷ at m = 1: 0.5" in found["evidence"]
    check(verdicts.c5_variance({"gradvar": planted_gradvar(ratio_scale=1.5)}, rules["C5"]), NOT_SUPPORTED, "excludes 1")


# ---------------------------------------------------------------------------------------------

def knee_tables(steps_of, b_simple=64.0) -> dict:
    rows = []
    for batch_size in (16, 32, 64, 128, 256):
        for seed in (0, 1, 2):
            steps = steps_of(batch_size) * (1 + 0.01 * seed)
            rows.append({"optimizer": "sgd", "batch_size": batch_size, "lr": 0.1, "seed": seed, "target_loss": 1.0,
                         "steps_to_target": steps, "epochs_to_target": steps * batch_size / 3600})
    scores = pd.DataFrame(rows)
    steps = analysis.steps_to_target(scores, None, pd.DataFrame(), 0.95).assign(b_simple=b_simple)
    return {"lr_scores": scores, "steps_to_target": steps, "gradvar": pd.DataFrame()}


def test_c6_knee_against_b_simple(rules):
    critical = lambda b: 1000 * (1 + 64 / b)
    check(verdicts.c6_small_batches_gain_most(knee_tables(critical), rules["C6"]), SUPPORTED)
    check(verdicts.c6_small_batches_gain_most(knee_tables(critical, b_simple=4096.0), rules["C6"]), NOT_SUPPORTED,
          "knee outside ×4 of B_simple")
    tables = knee_tables(critical, b_simple=math.nan)
    del tables["gradvar"]
    check(verdicts.c6_small_batches_gain_most(tables, rules["C6"]), INCONCLUSIVE, "no gradient-variance probes")


def test_c6_perfect_scaling_is_not_diminishing_returns(rules):
    found = verdicts.c6_small_batches_gain_most(knee_tables(lambda b: 1e5 / b), rules["C6"])
    check(found, NOT_SUPPORTED, "knee outside", "contains 0")


# ---------------------------------------------------------------------------------------------
# C7, C8: α and its CI

def scaling_table(optimizer, alpha, low, high, n_seeds=3, censored=0, n_batch_sizes=5) -> dict:
    rows = [{"optimizer": optimizer, "objective": objective, "kind": "fit", "m_low": 16, "m_high": 256,
             "n_batch_sizes": n_batch_sizes, "n_seeds": n_seeds, "alpha": alpha, "alpha_low": low, "alpha_high": high,
             "censored": censored, "censored_m": "256" if censored else "",
             "censored_sides": "high" if censored else ""}
            for objective in ("train", "val")]
    return {"scaling": pd.DataFrame(rows)}


@pytest.mark.parametrize("low, high, c7, c8, words", [
    (0.9, 1.1, SUPPORTED, NOT_SUPPORTED, ""),
    (0.4, 1.2, INCONCLUSIVE, INCONCLUSIVE, "contains both 0.5 and 1: it decides neither"),
    (0.3, 0.6, NOT_SUPPORTED, SUPPORTED, ""),
    (0.53, 0.58, NOT_SUPPORTED, SUPPORTED, "excludes 0.5 itself, by less than the margin"),
    (0.1, 0.3, NOT_SUPPORTED, INCONCLUSIVE, "reaches beyond 0.5 ± 0.25"),
    (0.7, 1.4, INCONCLUSIVE, INCONCLUSIVE, "reaches beyond 1 ± 0.25"),
])
def test_c7_c8_decide_by_the_ci_of_alpha(rules, low, high, c7, c8, words):
    found7 = verdicts.c7_linear_rule(scaling_table("sgd", (low + high) / 2, low, high), rules["C7"])
    found8 = verdicts.c8_sqrt_rule(scaling_table("adam", (low + high) / 2, low, high), rules["C8"])
    check(found7, c7)
    check(found8, c8)
    assert words in found7["reason"] + found8["reason"]


def test_c7_inconclusive_with_few_seeds_or_censored_optima(rules):
    check(verdicts.c7_linear_rule(scaling_table("sgd", 1, 0.9, 1.1, n_seeds=2), rules["C7"]), INCONCLUSIVE, "2 seed")
    check(verdicts.c7_linear_rule(scaling_table("sgd", 1, 0.9, 1.1, censored=3), rules["C7"]), INCONCLUSIVE,
          "3 censored lr*", "m = 256")


def test_planted_linear_rule_end_to_end(rules):
    alphas = {0: 0.95, 1: 1.0, 2: 1.05}
    tables = analyzed(planted_grid(lambda b, s: 0.02 * (b / 16) ** alphas[s], batch_sizes=(16, 32, 64, 128, 256)))
    found = verdicts.c7_linear_rule(tables, rules["C7"])
    check(found, SUPPORTED)
    assert "α (training objective) = 1 [0.88, 1.1]" in found["evidence"]


# ---------------------------------------------------------------------------------------------

def sensitivity_table(below_slower=3, above_lrs=2, above_unstable=1, n_seeds=3) -> dict:
    return {"lr_sensitivity": pd.DataFrame({
        "optimizer": ["sgd", "adam"], "batch_size": 64, "n_seeds": n_seeds, "below_pairs": 3,
        "below_slower": below_slower, "above_lrs": above_lrs, "above_unstable": above_unstable, "above_diverged": 1})}


def test_c9_needs_both_halves(rules):
    check(verdicts.c9_lr_extremes(sensitivity_table(), rules["C9"]), SUPPORTED)
    check(verdicts.c9_lr_extremes(sensitivity_table(below_slower=1), rules["C9"]), NOT_SUPPORTED,
          "small LRs are not slower")
    check(verdicts.c9_lr_extremes(sensitivity_table(above_unstable=0), rules["C9"]), NOT_SUPPORTED,
          "large LRs stay stable")
    check(verdicts.c9_lr_extremes(sensitivity_table(above_lrs=0, above_unstable=0), rules["C9"]), INCONCLUSIVE,
          "extend the grid above")
    check(verdicts.c9_lr_extremes(sensitivity_table(n_seeds=1), rules["C9"]), INCONCLUSIVE, "1 seed")


def early_stopping_tables(val, test, train=None, seeds=(0, 1, 2)) -> dict:
    train = np.linspace(2.3, 0.2, len(STEPS)) if train is None else train
    runs = pd.DataFrame([row for seed in seeds for row in run_rows(
        "sgd", 16, 0.1, seed, {"train": train, "val": np.asarray(val) + 0.01 * seed, "test": np.asarray(test)})])
    best = pd.DataFrame({"optimizer": "sgd", "batch_size": 16, "seed": list(seeds), "grid_lr": 0.1})
    return {"early_stopping": analysis.early_stopping(runs, best, SETTINGS["overfit_rise"])}


def test_c10_on_a_planted_overfitting_curve(rules):
    overfit = np.array([2.3, 2.0, 1.6, 1.3, 1.1, 1.0, 1.05, 1.1, 1.2, 1.3, 1.4, 1.5])
    monotone = np.linspace(2.3, 1.0, len(STEPS))
    found = verdicts.c10_early_stopping(early_stopping_tables(overfit, overfit + 0.05), rules["C10"])
    check(found, SUPPORTED)
    assert "3 of 3 best-LR runs overfit" in found["evidence"]
    better_late = np.r_[overfit[:-1], 0.5]  # test loss is lower at the end than at the validation minimum
    check(verdicts.c10_early_stopping(early_stopping_tables(overfit, better_late), rules["C10"]), NOT_SUPPORTED)
    check(verdicts.c10_early_stopping(early_stopping_tables(monotone, monotone), rules["C10"]), INCONCLUSIVE,
          "no best-LR run overfits")


# ---------------------------------------------------------------------------------------------

def test_rule_text_is_rendered_from_the_declared_parameters(config):
    config = copy.deepcopy(config)
    config["verdicts"]["C1"]["min_drop"] = 0.37
    config["verdicts"]["C7"]["margin"] = 0.3
    config["verdicts"]["min_seeds"] = 4
    tables = analyzed(planted_grid(lambda b, s: 0.04))
    rule = verdicts.rule_parameters(config, "C1")
    assert "37 %" in verdicts.c1_training_lowers_loss(tables, rule)["rule"]
    found = verdicts.c7_linear_rule(tables, verdicts.rule_parameters(config, "C7"))
    assert "1 ± 0.3" in found["rule"] and "at least 4 seeds" in found["rule"]
    check(found, INCONCLUSIVE, "3 seed(s), the rule needs at least 4")


def test_evaluate_claims_gives_every_claim_one_allowed_verdict(config):
    claims = verdicts.evaluate_claims(analyzed(sgd_and_adam()), config)
    assert list(claims["claim_id"]) == [f"C{i}" for i in range(1, 11)]
    assert set(claims["verdict"]) <= {SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE}
    assert (claims["rule"].str.len() > 40).all() and (claims["reason"].str.len() > 0).all()
    assert claims.set_index("claim_id").loc["C4", "reason"].startswith("no gradient-variance probes")


@pytest.mark.workflow
def test_tiny_workflow_writes_claims(tiny_workdir):
    claims = pd.read_csv(tiny_workdir / "results" / "tables" / "claims.csv")
    assert list(claims["claim_id"]) == [f"C{i}" for i in range(1, 11)]
    assert set(claims["verdict"]) <= {SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE}
    assert claims["reason"].notna().all()
    for name in ("best_lr", "lr_sensitivity", "scaling", "trajectories", "steps_to_target", "early_stopping"):
        assert len(pd.read_csv(tiny_workdir / "results" / "tables" / f"{name}.csv"))
