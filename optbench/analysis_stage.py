"""The analysis stage end to end: run and probe tables in; every analysis table, the noise statistics and the claims out."""
from __future__ import annotations

import pandas as pd

from optbench.analysis import analyze
from optbench.config import malladi_variants
from optbench.critical import (critical_batch_sizes, hessian_noise_scale, lr_form_curves, lr_noise_scale,
                               malladi_distances)
from optbench.noise import analyze_noise, noise_pooled
from optbench.verdicts import evaluate_claims

# lr*(B) law by optimizer type: McCandlish et al.'s for SGD (with or without momentum), Li et al.'s for Adam
LR_FORMS = {"sgd": "mccandlish", "adam": "surge", "adamw": "surge"}


def optimizer_type(config: dict, name: str) -> str:
    """The torch.optim family an entry of `optimizers` uses (its `type:`, else its name)."""
    return (config["optimizers"].get(name) or {}).get("type", name)


# what probe_statistics makes of the probe tables (rule analyze_probes), which the rest of the stage reads
PROBE_STATISTICS = ("gradvar", "gradvar_slopes", "noise_pooled", "noise_scale_hessian")


def probe_statistics(tables: dict[str, pd.DataFrame], config: dict, workers: int = 1) -> dict[str, pd.DataFrame]:
    """The probes' statistics from their raw tables: gradvar, gradvar_slopes and noise_pooled from
    probe_moments and probe_draws; noise_scale_hessian from probe_hessian and probe_hessian_draws (each
    only where its tables are given). `workers` threads share the bootstrap (same numbers).

    Its own rule (analyze_probes, issue 14): a verdict's threshold reruns analyze, not this bootstrap,
    and the bootstrap can run on a core that the last training jobs or aggregate leave free."""
    settings, seed = config["analysis"], config["grad_variance"]["seed"]
    out: dict[str, pd.DataFrame] = {}
    if "probe_moments" in tables:
        out.update(analyze_noise(tables["probe_moments"], tables["probe_draws"], settings["confidence"],
                                 settings["bootstrap_resamples"], seed, workers))
        out["noise_pooled"] = noise_pooled(out["gradvar"], settings["confidence"])
    if "probe_hessian" in tables:
        out["noise_scale_hessian"] = hessian_noise_scale(tables["probe_hessian"], tables["probe_hessian_draws"],
                                                         settings["confidence"], settings["bootstrap_resamples"],
                                                         seed)
    return out


def analysis_stage(tables: dict[str, pd.DataFrame], config: dict, workers: int = 1) -> dict[str, pd.DataFrame]:
    """`tables`: runs, status, benchmarks, and with gradient probes either their statistics
    (PROBE_STATISTICS, as rule analyze_probes wrote them) or their raw tables (probe_moments and
    probe_draws, and probe_hessian, probe_hessian_draws), from which probe_statistics computes them
    first. Returns the tables rule analyze writes, claims included, and the probes' statistics.

    The grid's analyses see the grid's optimizers only; runs of other entries (Malladi's scaled variants)
    feed the claims that ask for them. `workers` threads share the probes' bootstrap (same numbers)."""
    settings = config["analysis"]
    grid = config["grid"]["optimizers"]
    runs = tables["runs"]
    main = {**tables, "runs": runs[runs["optimizer"].isin(grid)]}
    if "status" in tables:
        main["status"] = tables["status"][tables["status"]["optimizer"].isin(grid)]
    out = {name: tables[name] for name in PROBE_STATISTICS if name in tables}
    out.update(probe_statistics(tables, config, workers))
    out.update(analyze({**main, **out}, settings, config["selection"]["metric"], grid))
    forms = {name: LR_FORMS[optimizer_type(config, name)] for name in grid if optimizer_type(config, name) in LR_FORMS}
    out["lr_noise_scale"] = lr_noise_scale(out["best_lr"], forms, settings["confidence"])
    out["lr_form_curves"] = lr_form_curves(out["lr_noise_scale"])
    out["critical_batch"] = critical_batch_sizes(out["batch_scaling"], out.get("noise_scale_hessian"),
                                                 out["lr_noise_scale"], main["runs"])
    out["malladi"] = malladi_distances(runs, malladi_variants(config), settings["trajectory_points"],
                                       settings["confidence"])
    out["claims"] = evaluate_claims({**main, **out}, config)
    return out
