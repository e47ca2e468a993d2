"""Each claim's rule on planted tables where the claim is true, false and undecidable; every parameter moves
its text and its verdict; reasons count seeds and cells as the grid has them."""
from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest

from optbench import analysis, critical, noise, verdicts
from optbench.verdicts import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from tests.test_analysis import SETTINGS, SGD_GRID, STEPS, decay, planted_grid, run_rows

ADAM_GRID = sorted([1e-4 * 2**k for k in range(-1, 10)] + [1e-3])
KEYS = set(verdicts.COLUMNS)


@pytest.fixture
def rules(config):
    """claim → its rule's parameters, from the config's declared defaults (schema-filled)."""
    return {claim: verdicts.rule_parameters(config, claim) for claim in verdicts.CLAIMS}


def analyzed(runs: pd.DataFrame, **extra) -> dict:
    tables = {"runs": runs, **extra}
    tables.update(analysis.analyze(tables, SETTINGS, "min_val_loss", ["sgd", "adam"]))
    return tables


def check(found: dict, verdict: str, *words: str) -> None:
    assert set(found) == KEYS
    assert found["verdict"] == verdict, found
    for word in words:
        assert word in found["reason"], found["reason"]


def judge(claim: str, tables: dict, rule: dict) -> dict:
    return verdicts.RULES[claim][1](tables, rule)


# ---------------------------------------------------------------------------------------------
# Planted grids

def curve_grid(train_of, grid=SGD_GRID[:6], batch_sizes=(16, 64, 256), seeds=(0, 1, 2), optimizer="sgd"):
    """Runs whose training curve is train_of(batch_size, lr, seed) and whose validation and test curves
    follow a parabola in log lr with its optimum at 0.04, so the best grid LR is 0.04 everywhere."""
    rows = []
    for batch_size in batch_sizes:
        for lr in grid:
            for seed in seeds:
                val = decay(1 + 0.2 * (math.log2(lr) - math.log2(0.04)) ** 2)
                rows += run_rows(optimizer, batch_size, lr, seed,
                                 {"train": train_of(batch_size, lr, seed), "val": val, "test": val})
    return pd.DataFrame(rows)


def sgd_and_adam(sgd_width=1.0, adam_width=0.02, sgd_diverge=0.3, sgd_star=0.04, adam_star=0.0016,
                 batch_sizes=(16, 64, 256), seeds=(0, 1, 2)) -> pd.DataFrame:
    return pd.concat([planted_grid(lambda b, s: sgd_star, width=sgd_width, diverge_above=sgd_diverge, seeds=seeds,
                                   batch_sizes=batch_sizes),
                      planted_grid(lambda b, s: adam_star, grid=ADAM_GRID, optimizer="adam", width=adam_width,
                                   seeds=seeds, batch_sizes=batch_sizes)], ignore_index=True)


def planted_noise(z=lambda m, step: 1.0, ratio=lambda m, step: 1.0, checkpoints=20, n=3600,
                  ms=(1, 2, 4, 100, 1024), seed=0) -> dict:
    """noise_pooled.csv (and gradvar_slopes.csv) from per-checkpoint z and measured ÷ exact ratios; the
    literal ratio is the exact one times the finite-population factor, as measured data have it."""
    rng = np.random.default_rng(seed)
    rows = []
    for step in range(checkpoints):
        for m in ms:
            fpc = (n - m) / (n - 1)
            exact = ratio(m, step) * (1 + 0.003 * rng.standard_normal())
            rows.append({"optimizer": "sgd", "batch_size": 64, "lr": 0.1, "seed": 0, "step": step, "m": m,
                         "z": z(m, step) + 0.02 * rng.standard_normal(), "ratio_fpc": exact,
                         "ratio_iid": exact * fpc, "empirical_mean": 4.0 / m * fpc * exact})
    gradvar = pd.DataFrame(rows)
    slopes = gradvar.drop_duplicates("step").assign(slope=-1.0, slope_pred_fpc=-1.007)
    return {"noise_pooled": noise.noise_pooled(gradvar, 0.95), "gradvar_slopes": slopes}


def knee_tables(steps_of, seeds=(0, 1, 2), jitter=None) -> dict:
    """steps_to_target / batch_scaling from per-seed steps steps_of(B) × (1 + 0.01·seed) (× jitter)."""
    rows = []
    rng = np.random.default_rng(0)
    for batch_size in (16, 32, 64, 128, 256):
        for seed in seeds:
            factor = (1 + 0.01 * seed) * (math.exp(jitter * rng.standard_normal()) if jitter else 1.0)
            steps = steps_of(batch_size) * factor
            rows.append({"optimizer": "sgd", "batch_size": batch_size, "lr": 0.1, "seed": seed, "status": "ok",
                         "steps_to_target": steps, "epochs_to_target": steps * batch_size / 3600})
    per_seed = analysis.seed_steps(pd.DataFrame(rows))
    b_simple = pd.DataFrame(columns=["optimizer", "b_simple", "b_simple_probes", "b_simple_epoch"])
    return {"steps_to_target": analysis.steps_to_target(per_seed, {"sgd": 1.0}, 0.95),
            "batch_scaling": analysis.batch_scaling(per_seed, b_simple, {"sgd": 1.0}, 0.95)}


def scaling_tables(optimizer, low, high, pairs=((0.9, 1.1),) * 4, grid_seeds=3, n_seeds=3, censored=0,
                   n_batch_sizes=5, summary=None) -> dict:
    alpha = (low + high) / 2
    sizes = [16, 32, 64, 128, 256]
    common = {"optimizer": optimizer, "objective": "train", "grid_seeds": grid_seeds, "n_seeds": n_seeds,
              "confidence": 0.95, "censored_m": "256" if censored else "", "censored_sides": "high" if censored else ""}
    rows = [{**common, "kind": "fit", "m_low": 16, "m_high": 256, "n_batch_sizes": n_batch_sizes, "alpha": alpha,
             "alpha_low": low, "alpha_high": high, "censored": censored}]
    rows += [{**common, "kind": "pair", "m_low": a, "m_high": b, "n_batch_sizes": 2, "alpha": (l + h) / 2,
              "alpha_low": l, "alpha_high": h, "censored": 0} for (a, b), (l, h) in zip(zip(sizes, sizes[1:]), pairs)]
    rows.append({**rows[0], "objective": "val"})
    knees = pd.DataFrame([{"optimizer": optimizer, "knee": 150.0, "knee_low": 100.0, "knee_high": 220.0,
                           "knee_seeds": 3}])
    tables = {"scaling": pd.DataFrame(rows), "batch_scaling": knees}
    if summary is not None:
        tables["trajectory_summary"] = pd.DataFrame([{"optimizer": optimizer, "k": 4, **summary}])
    return tables


def sensitivity(below_pairs=4, below_slower=4, too_large=(True, True), n_seeds=3) -> dict:
    cells = len(too_large)
    return {"lr_sensitivity": pd.DataFrame({
        "optimizer": "sgd", "batch_size": [16 * 4**i for i in range(cells)], "n_seeds": n_seeds,
        "below_pairs": [below_pairs] + [0] * (cells - 1), "below_slower": [below_slower] + [0] * (cells - 1),
        "too_large_lr": [0.5 if flag is not None else math.nan for flag in too_large],
        "too_large_unstable": [bool(flag) for flag in too_large]})}


def stopping_tables(val, test, train=None, seeds=(0, 1, 2)) -> dict:
    train = np.linspace(2.3, 0.2, len(STEPS)) if train is None else train
    runs = pd.DataFrame([row for seed in seeds for row in run_rows(
        "sgd", 16, 0.1, seed, {"train": train, "val": np.asarray(val) + 0.01 * seed, "test": np.asarray(test)})])
    best = pd.DataFrame({"optimizer": "sgd", "batch_size": 16, "seed": list(seeds), "grid_lr": 0.1})
    stops = analysis.early_stopping(runs, best, SETTINGS["overfit_rise"])
    return {"early_stopping": stops, "stopping_cells": analysis.stopping_cells(stops, 0.95),
            "stopping_overall": analysis.stopping_overall(stops, 0.95)}


OVERFIT = np.array([2.3, 2.0, 1.6, 1.3, 1.1, 1.0, 1.05, 1.1, 1.2, 1.3, 1.4, 1.5])
MONOTONE = np.linspace(2.3, 1.0, len(STEPS))
RISING_LATE = lambda b, lr, s: decay(1.0) + (STEPS / STEPS[-1]) ** 2  # falls, then climbs back by ~15 %
SEED_SPREAD = {0: 0.85, 1: 0.90, 2: 0.95}  # end ÷ start per seed: drops of 15, 10 and 5 %

# claim → case → (tables builder, expected verdict, words in the reason)
PLANTED = {
    "C1": {"true": (lambda: analyzed(planted_grid(lambda b, s: 0.04)), SUPPORTED, "above 10 %"),
           "false": (lambda: analyzed(curve_grid(lambda b, lr, s: decay(2.25))), NOT_SUPPORTED, "below its bar"),
           "rising": (lambda: analyzed(curve_grid(RISING_LATE)), NOT_SUPPORTED, "below its bar"),
           "undecided": (lambda: analyzed(curve_grid(lambda b, lr, s: decay(2.3 * SEED_SPREAD[s]))), INCONCLUSIVE,
                         "contains its bar")},
    "C2": {"true": (lambda: analyzed(sgd_and_adam()), SUPPORTED, "for the claim at B = [16, 64, 256]"),
           "false": (lambda: analyzed(sgd_and_adam(adam_width=1.0)), NOT_SUPPORTED, "against the claim"),
           "converges": (lambda: analyzed(sgd_and_adam(sgd_diverge=math.inf)), NOT_SUPPORTED, "against the claim"),
           "undecided": (lambda: analyzed(sgd_and_adam(sgd_diverge=math.inf, sgd_star=2.56)), INCONCLUSIVE,
                         "too few batch sizes decide")},
    "C3": {"true": (lambda: analyzed(planted_grid(lambda b, s: 0.0012, grid=ADAM_GRID, optimizer="adam",
                                                  width=0.02)), SUPPORTED, "works well in 9 of 9"),
           "false": (lambda: analyzed(planted_grid(lambda b, s: 0.03, grid=ADAM_GRID, optimizer="adam", width=0.5)),
                     NOT_SUPPORTED, "in only 0 of 9 cells"),
           "undecided": (lambda: analyzed(planted_grid(lambda b, s: 1.0, grid=ADAM_GRID, optimizer="adam",
                                                       width=0.001)), INCONCLUSIVE, "censored optima")},
    "C4": {"true": (lambda: planted_noise(), SUPPORTED, "contains 1"),
           "false": (lambda: planted_noise(z=lambda m, step: 1.5 if m == 2 else 1.0), NOT_SUPPORTED,
                     "excludes 1 at m = [2]"),
           "undecided": (lambda: planted_noise(z=lambda m, step: 1 + 1.5 * (-1) ** step), INCONCLUSIVE,
                         "too imprecise")},
    "C5": {"true": (lambda: planted_noise(), SUPPORTED, "at every probed m ≤ 100"),
           "false": (lambda: planted_noise(ratio=lambda m, step: 1.3 if m == 2 else 1.0), NOT_SUPPORTED,
                     "breaks at m = [2]"),
           "undecided": (lambda: planted_noise(ratio=lambda m, step: 1 + 0.2 * (-1) ** step), INCONCLUSIVE,
                         "straddles")},
    "C6": {"true": (lambda: knee_tables(lambda b: 1000 * (1 + 64 / b)), SUPPORTED, "falls by more than 0.2"),
           "false": (lambda: knee_tables(lambda b: 1e5 / b), NOT_SUPPORTED, "falls by less than 0.2"),
           "undecided": (lambda: knee_tables(lambda b: 1000 * (1 + 64 / b), jitter=0.4), INCONCLUSIVE,
                         "contains 0.2")},
    "C7": {"true": (lambda: scaling_tables("sgd", 0.9, 1.1), SUPPORTED, "contains 1"),
           "false": (lambda: scaling_tables("sgd", 0.3, 0.6), NOT_SUPPORTED, "excludes 1"),
           "undecided": (lambda: scaling_tables("sgd", 0.4, 1.2), INCONCLUSIVE, "decides neither")},
    "C8": {"true": (lambda: scaling_tables("adam", 0.3, 0.6), SUPPORTED, "contains 0.5"),
           "false": (lambda: scaling_tables("adam", 0.9, 1.1), NOT_SUPPORTED, "excludes 0.5"),
           "undecided": (lambda: scaling_tables("adam", 0.4, 1.2), INCONCLUSIVE, "decides neither")},
    "C9": {"true": (lambda: sensitivity(), SUPPORTED, "both halves hold"),
           "false": (lambda: sensitivity(too_large=(False, False)), NOT_SUPPORTED, "merely worse"),
           "slow": (lambda: sensitivity(below_slower=1), NOT_SUPPORTED, "small LRs are not slower"),
           "undecided": (lambda: sensitivity(too_large=(None, None)), INCONCLUSIVE, "extend the grid above")},
    "C10": {"true": (lambda: stopping_tables(OVERFIT, OVERFIT + 0.05), SUPPORTED, "beats training to the end"),
            "false": (lambda: stopping_tables(OVERFIT, np.r_[OVERFIT[:-1], 0.5]), NOT_SUPPORTED, "does not beat"),
            "undecided": (lambda: stopping_tables(MONOTONE, MONOTONE), INCONCLUSIVE, "no best-LR run overfits")},
}
def estimates(*rows, optimizer="sgd") -> dict:
    """critical_batch.csv rows: (kind, value, low, high)."""
    return {"critical_batch": pd.DataFrame([{"optimizer": optimizer, "estimate": kind, "kind": kind, "value": value,
                                             "low": low, "high": high, "note": ""} for kind, value, low, high in rows])}


def lr_fit(optimizer, form, b_noise, low, high, gain=(0.02, 0.01, 0.03), censored=0, batch_max=1024,
           pairs=None) -> dict:
    """lr_noise_scale.csv's row of `optimizer`, with batch_scaling (6 batch sizes), run_status (n) and scaling."""
    fit = pd.DataFrame([{"optimizer": optimizer, "form": form, "confidence": 0.95, "seeds": 3, "batch_size_min": 32,
                         "batch_size_max": batch_max, "b_noise": b_noise, "b_noise_low": low, "b_noise_high": high,
                         "b_noise_censored": censored, "b_noise_beyond": censored, "lr_max": 0.1, "lr_censored": 0,
                         "cv_gain": gain[0], "cv_gain_low": gain[1], "cv_gain_high": gain[2]}])
    tables = {"lr_noise_scale": fit, "batch_scaling": pd.DataFrame([{"optimizer": optimizer, "batch_sizes": 6}]),
              "status": pd.DataFrame({"n_train": [3600]})}
    last = pairs or (-0.5, -0.7, -0.3)
    tables["scaling"] = pd.DataFrame([{"optimizer": optimizer, "objective": "train", "kind": "pair", "m_low": 512,
                                       "m_high": 1024, "alpha": last[0], "alpha_low": last[1], "alpha_high": last[2]}])
    return tables


def knees(*rows) -> dict:
    return {"batch_scaling_common": pd.DataFrame([{"optimizer": o, "knee": v, "knee_low": lo, "knee_high": hi,
                                                   "n_seeds": 3, "target_loss": 1.2} for o, v, lo, hi in rows])}


def malladi(*rows) -> dict:
    return {"malladi": pd.DataFrame([{"k": k, "batch_size": 256 // k, "lr": 0.001, "seed": -1, "kind": "summary",
                                      "gain": (lo + hi) / 2, "gain_low": lo, "gain_high": hi, "seeds": 3,
                                      "floor": floor} for k, lo, hi, floor in rows])}


PLANTED.update({
    "L1": {"true": (lambda: estimates(("knee", 100, 80, 125), ("simple", 150, math.nan, math.nan),
                                      ("lr_mccandlish", 200, 150, 260)), SUPPORTED, "all 3 estimates within ×10"),
           "false": (lambda: estimates(("knee", 100, 80, 125), ("simple", 3000, math.nan, math.nan),
                                       ("lr_mccandlish", 150, 120, 190)), NOT_SUPPORTED, "more than ×10 apart"),
           "undecided": (lambda: estimates(("knee", 100, 80, 125), ("simple", 150, math.nan, math.nan),
                                           ("lr_mccandlish", math.inf, math.nan, math.nan)), INCONCLUSIVE,
                         "2 estimates defined")},
    "L2": {"true": (lambda: lr_fit("sgd", "mccandlish", 100, 80, 130), SUPPORTED, "predicts held-out batch sizes"),
           "false": (lambda: lr_fit("sgd", "mccandlish", 100, 80, 130, gain=(-0.03, -0.05, -0.01)), NOT_SUPPORTED,
                     "power law predicts held-out batch sizes better"),
           "undecided": (lambda: lr_fit("sgd", "mccandlish", 5000, 3000, 9000), INCONCLUSIVE,
                         "beyond the grid's batch sizes")},
    "L3": {"true": (lambda: knees(("sgd", 100, 80, 120), ("sgd_momentum", 400, 300, 500),
                                  ("adam", 1000, 800, 1300)), SUPPORTED, "every pair ordered"),
           "false": (lambda: knees(("sgd", 100, 80, 120), ("sgd_momentum", 400, 300, 500), ("adam", 50, 40, 60)),
                     NOT_SUPPORTED, "Adam below momentum SGD"),
           "undecided": (lambda: knees(("sgd", 100, 80, 120), ("adam", 1000, 800, 1300)), INCONCLUSIVE,
                         "not in this grid")},
    "L4": {"true": (lambda: malladi((4, 0.05, 0.09, 0.02), (16, 0.1, 0.2, 0.02)), SUPPORTED, "at every k"),
           "false": (lambda: malladi((4, -0.02, 0.01, 0.03), (16, 0.1, 0.2, 0.02)), NOT_SUPPORTED, "k = [4]"),
           "undecided": (lambda: malladi((4, 0.01, 0.06, 0.03)), INCONCLUSIVE, "contains the noise floor")},
    "L5": {"true": (lambda: lr_fit("adam", "surge", 200, 150, 260), SUPPORTED, "lr* falls past the peak"),
           "false": (lambda: lr_fit("adam", "surge", 200, 150, 260, pairs=(0.35, 0.2, 0.5)), NOT_SUPPORTED,
                     "lr* still rises"),
           "undecided": (lambda: lr_fit("adam", "surge", 5000, 3000, 9000), INCONCLUSIVE, "cannot show it")},
})
CASES = [(claim, case) for claim, cases in PLANTED.items() for case in cases]


@pytest.mark.parametrize("claim, case", CASES)
def test_every_claim_on_planted_tables(rules, claim, case):
    build, verdict, words = PLANTED[claim][case]
    found = judge(claim, build(), rules[claim])
    check(found, verdict, words)
    assert found["rule"] == verdicts.RULES[claim][0](rules[claim])  # the printed rule is the declared one
    assert found["finding"] and found["claim_id"] == claim


def test_a_planted_false_claim_is_not_supported_for_every_claim(rules):
    assert {claim for claim, case in CASES if case == "false"} == set(verdicts.CLAIMS)


# ---------------------------------------------------------------------------------------------
# Each parameter moves the printed rule and the verdict

def with_parameter(rules: dict, claim: str, key: str, value) -> dict:
    return {**rules[claim], key: value}


# (claim, parameter, new value, planted case, verdict with the new value, text the new rule prints)
PARAMETERS = [
    ("C1", "min_drop", 0.7, "true", NOT_SUPPORTED, "70 %"),
    ("C1", "max_rise", 0.5, "rising", SUPPORTED, "−50 %"),
    ("C2", "margin_decades", 2.0, "true", NOT_SUPPORTED, "2 decades"),
    ("C2", "nonconverging_factor", 4, "true", NOT_SUPPORTED, "×4"),
    ("C2", "optimizers", ["adam", "sgd"], "true", NOT_SUPPORTED, "(a) SGD − Adam"),
    ("C2", "min_fraction", 0.7, "two_of_three", INCONCLUSIVE, "more than 70 %"),
    ("C3", "often", 0.3, "one_seed_in_three", SUPPORTED, "at least 30 %"),
    ("C3", "lrs", [0.0256], "true", NOT_SUPPORTED, "0.0256"),
    ("C3", "optimizer", "sgd", "true", INCONCLUSIVE, "SGD's cells"),
    ("C4", "max_halfwidth", 0.001, "true", INCONCLUSIVE, "±0.001"),
    ("C4", "min_checkpoints", 50, "true", INCONCLUSIVE, "fewer than 50"),
    ("C5", "tolerance", 0.001, "true", NOT_SUPPORTED, "1 ± 0.1 %"),
    ("C5", "claim_m", 2048, "true", NOT_SUPPORTED, "m ≤ 2048"),
    ("C5", "min_checkpoints", 50, "true", INCONCLUSIVE, "fewer than 50"),
    ("C6", "min_gap", 0.8, "true", NOT_SUPPORTED, "more than 0.8"),
    ("C6", "optimizers", ["adam"], "true", INCONCLUSIVE, "[Adam]"),
    ("C6", "min_batch_sizes", 6, "true", INCONCLUSIVE, "at least 6 batch sizes"),
    ("C7", "alpha", 0.5, "true", NOT_SUPPORTED, "contains 0.5"),
    ("C7", "margin", 0.05, "true", INCONCLUSIVE, "1 ± 0.05"),
    ("C7", "min_batch_sizes", 6, "true", INCONCLUSIVE, "at least 6 batch sizes"),
    ("C8", "other_alpha", 2.0, "undecided", INCONCLUSIVE, "both 0.5 and 2"),
    ("C9", "min_fraction", 0.9, "slow_three_of_four", NOT_SUPPORTED, "reach 90 %"),
    ("C10", "min_overfit_runs", 4, "true", INCONCLUSIVE, "fewer than 4"),
    ("C10", "margin", 1.0, "true", NOT_SUPPORTED, "above 1 nats"),
    ("L1", "factor", 1.2, "true", INCONCLUSIVE, "factor 1.2"),
    ("L1", "min_estimates", 4, "true", INCONCLUSIVE, "at least 4 estimates"),
    ("L1", "optimizers", ["adam"], "true", INCONCLUSIVE, "[Adam]"),
    ("L2", "optimizer", "adam", "true", INCONCLUSIVE, "For Adam"),
    ("L2", "min_batch_sizes", 8, "true", INCONCLUSIVE, "at least 8 batch sizes"),
    ("L3", "order", ["adam", "sgd_momentum", "sgd"], "true", NOT_SUPPORTED, "Adam < momentum SGD < SGD"),
    ("L5", "beyond", 8, "true", INCONCLUSIVE, "×8 the peak"),
    ("L5", "optimizer", "sgd", "true", INCONCLUSIVE, "For SGD"),
    ("L5", "min_batch_sizes", 8, "true", INCONCLUSIVE, "at least 8 batch sizes"),
]
PLANTED["C9"]["slow_three_of_four"] = (lambda: sensitivity(below_slower=3), SUPPORTED, "both halves hold")
PLANTED["C2"]["two_of_three"] = (lambda: analyzed(pd.concat([sgd_and_adam(batch_sizes=(16, 64)), sgd_and_adam(
    adam_width=1.0, batch_sizes=(256,))], ignore_index=True)), SUPPORTED, "for the claim at B = [16, 64]")
PLANTED["C3"]["one_seed_in_three"] = (lambda: analyzed(planted_grid(lambda b, s: 0.0012 if s == 0 else 0.02,
                                                                    grid=ADAM_GRID, optimizer="adam")),
                                      NOT_SUPPORTED, "in only 3 of 9 cells")


@pytest.mark.parametrize("claim, key, value, case, verdict, words", PARAMETERS)
def test_each_parameter_moves_the_printed_rule_and_the_verdict(rules, claim, key, value, case, verdict, words):
    build, before, _ = PLANTED[claim][case]
    tables = build()
    assert judge(claim, tables, rules[claim])["verdict"] == before
    changed = with_parameter(rules, claim, key, value)
    found = judge(claim, tables, changed)
    assert found["verdict"] == verdict, found
    assert words in found["rule"], found["rule"]
    assert found["rule"] != verdicts.RULES[claim][0](rules[claim])


def test_every_declared_parameter_is_exercised(config):
    """Each key of every claim's section in config.yaml appears in PARAMETERS (or is min_seeds/confidence)."""
    exercised = {(claim, key) for claim, key, *_ in PARAMETERS}
    for claim in verdicts.CLAIMS:
        for key in config["verdicts"][claim]:
            assert (claim, key) in exercised or (claim == "C8" and key in ("optimizer", "alpha", "margin",
                                                                           "min_batch_sizes")) \
                or (claim == "C7" and key in ("optimizer", "other_alpha")), (claim, key)


@pytest.mark.parametrize("claim, case", [("C1", "true"), ("C2", "true"), ("C3", "true"), ("C6", "true"),
                                         ("C9", "true"), ("C10", "true")])
def test_min_seeds_makes_seed_based_rules_inconclusive_and_says_so(rules, claim, case):
    build, _, _ = PLANTED[claim][case]
    found = judge(claim, build(), {**rules[claim], "min_seeds": 4})
    check(found, INCONCLUSIVE, "3 seed(s); the rule needs at least 4")
    assert "at least 4 seeds" in found["rule"]


def test_c4_c5_ignore_min_seeds_and_say_where_their_ci_comes_from(rules):
    tables = planted_noise()
    for claim in ("C4", "C5"):
        found = judge(claim, tables, {**rules[claim], "min_seeds": 10})
        check(found, SUPPORTED)
        assert "mini-batch draws" in found["rule"] and "not for other seeds" in found["rule"]


def test_c4_c5_without_probes_are_inconclusive(rules):
    for claim in ("C4", "C5"):
        check(judge(claim, {}, rules[claim]), INCONCLUSIVE, "no gradient-variance probes")


def test_confidence_moves_every_rule_text(config):
    texts = {claim: verdicts.rule_text(config, claim) for claim in verdicts.CLAIMS}
    lower = copy.deepcopy(config)
    lower["analysis"]["confidence"] = 0.9
    for claim in verdicts.CLAIMS:
        if claim in ("C3", "C9"):  # counts, not intervals
            continue
        text = verdicts.rule_text(lower, claim)
        assert "90 %" in text and "95 %" not in text, (claim, text)
        assert text != texts[claim]


# ---------------------------------------------------------------------------------------------
# Domains of validity and competing evidence

def test_c5_judges_the_literal_form_and_reports_where_it_breaks(rules):
    found = judge("C5", planted_noise(), rules["C5"])
    assert "σ²/m within ±5 % for m ≤ 100" in found["domain"]
    assert "breaks from m = 1024" in found["domain"]  # the finite-population factor is 0.716 there
    assert "exact σ²/m·(n−m)/(n−1) within ±5 % at all 5 probed m" in found["domain"]


def test_c7_domain_names_the_breakpoint_and_the_critical_batch_size(rules):
    pairs = [(0.9, 1.1), (0.8, 1.05), (0.3, 0.7), (0.1, 0.4)]
    found = judge("C7", scaling_tables("sgd", 0.9, 1.1, pairs=pairs), rules["C7"])
    assert "holds from m = 16 to 64" in found["domain"]
    assert "breaks at m = 64→128 (α = 0.5 [0.3, 0.7])" in found["domain"]
    assert "B_crit (steps to target) 150 [100, 220]" in found["domain"]


def test_c7_says_when_the_trajectories_disagree_with_both_numbers(rules):
    summary = {"pairs": 9, "linear_closer": 2, "sqrt_closer": 7, "median_linear": 0.5, "median_sqrt": 0.3,
               "closer": "sqrt"}
    found = judge("C7", scaling_tables("sgd", 0.9, 1.1, summary=summary), rules["C7"])
    check(found, SUPPORTED, "the trajectories disagree", "LR ×k closer in 2 of 9 pairs, LR ×√k in 7",
          "the exponent decides")
    agreeing = judge("C7", scaling_tables("sgd", 0.9, 1.1, summary={**summary, "closer": "linear"}), rules["C7"])
    assert "disagree" not in agreeing["reason"]


def test_c7_excluding_alpha_within_the_margin_is_a_ballpark_not_support(rules):
    found = judge("C7", scaling_tables("sgd", 0.81, 0.94), rules["C7"])
    check(found, NOT_SUPPORTED, "excludes 1", "approximately right, as a ballpark")


def test_c3_names_the_learning_rate_that_carries_it(rules):
    found = judge("C3", PLANTED["C3"]["true"][0](), rules["C3"])
    assert "0.001 works well in 9 of 9 cells" in found["domain"] and "carried by 0.001" in found["domain"]
    assert "1e-4 works well in 0 of 9 cells" in found["domain"] and "1e-4 alone would not" in found["reason"]


# ---------------------------------------------------------------------------------------------
# Honest reasons

def test_every_sgd_lr_diverging_is_named_with_the_grids_seed_count(rules):
    runs = sgd_and_adam(sgd_diverge=0.001)  # every SGD LR diverges
    tables = analyzed(runs)
    found = judge("C7", tables, rules["C7"])
    check(found, INCONCLUSIVE, "0 of the grid's 3 seeds")
    assert "0 seed(s)" not in found["reason"]
    c1 = judge("C1", tables, rules["C1"])
    assert "SGD B=16" in c1["reason"] and c1["verdict"] == INCONCLUSIVE
    c9 = judge("C9", tables, rules["C9"])
    assert "seed(s)" not in c9["reason"]


def test_evaluate_claims_gives_every_claim_one_allowed_verdict(config):
    tables = analyzed(sgd_and_adam())
    tables.update(lr_noise_scale=critical.lr_noise_scale(tables["best_lr"], {"sgd": "mccandlish", "adam": "surge"},
                                                         0.95), malladi=critical.malladi_distances(
        tables["runs"], [], 50, 0.95))
    tables["critical_batch"] = critical.critical_batch_sizes(tables["batch_scaling"], None, tables["lr_noise_scale"],
                                                             tables["runs"])
    claims = verdicts.evaluate_claims(tables, config)
    assert list(claims["claim_id"]) == [*[f"C{i}" for i in range(1, 11)], *[f"L{i}" for i in range(1, 6)]]
    assert list(claims.columns) == verdicts.COLUMNS
    assert set(claims["verdict"]) <= {SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE}
    assert (claims["rule"].str.len() > 40).all() and (claims["reason"].str.len() > 0).all()
    assert claims.set_index("claim_id").loc["C4", "reason"].startswith("no gradient-variance probes")


@pytest.mark.workflow
def test_tiny_workflow_writes_claims(tiny_workdir):
    from optbench.tables import read_table

    claims = read_table(tiny_workdir / "results" / "tables" / "claims.csv", "claims")
    assert list(claims["claim_id"]) == list(verdicts.CLAIMS)
    assert set(claims["verdict"]) <= {SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE}
    assert (claims["reason"] != "").all()
