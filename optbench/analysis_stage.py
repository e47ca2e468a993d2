"""The analysis stage end to end: run and probe tables in; every analysis table, the noise statistics and the claims out."""
from __future__ import annotations

import pandas as pd

from optbench.analysis import analyze
from optbench.critical import (critical_batch_sizes, hessian_noise_scale, lr_form_curves, lr_noise_scale,
                               malladi_distances)
from optbench.noise import analyze_noise, noise_pooled
from optbench.verdicts import evaluate_claims

# lr*(B) law by optimizer type: McCandlish et al.'s for SGD (with or without momentum), Li et al.'s for Adam
LR_FORMS = {"sgd": "mccandlish", "adam": "surge", "adamw": "surge"}


def optimizer_type(config: dict, name: str) -> str:
    """The torch.optim family an entry of `optimizers` uses (its `type:`, else its name)."""
    return (config["optimizers"].get(name) or {}).get("type", name)


def malladi_variants(config: dict) -> list[dict]:
    """The runs literature.malladi asks for: per k, the base optimizer at batch base ÷ k with lr ÷ √k and its
    β's and ε scaled too (Malladi et al. 2022), named <optimizer>_malladi_k<k>."""
    settings = (config.get("literature") or {}).get("malladi")
    if not settings:
        return []
    base = config["optimizers"][settings["optimizer"]]
    beta1, beta2 = base.get("betas", (0.9, 0.999))
    return [{"name": f"{settings['optimizer']}_malladi_k{k}", "optimizer": settings["optimizer"], "k": k,
             "base_batch_size": settings["base_batch_size"], "base_lr": float(settings["base_lr"]),
             "batch_size": settings["base_batch_size"] // k, "lr": float(settings["base_lr"]) / k ** 0.5,
             "betas": [1 - (1 - beta1) / k, 1 - (1 - beta2) / k], "eps": base.get("eps", 1e-8) * k ** 0.5}
            for k in settings["k"]]


def analysis_stage(tables: dict[str, pd.DataFrame], config: dict, workers: int = 1) -> dict[str, pd.DataFrame]:
    """`tables`: runs, status, benchmarks, and with gradient probes probe_moments and probe_draws (and
    probe_hessian, probe_hessian_draws). Returns the tables rule analyze writes, claims included.

    The grid's analyses see the grid's optimizers only; runs of other entries (Malladi's scaled variants)
    feed the claims that ask for them. `workers` threads share the probes' bootstrap (same numbers)."""
    settings = config["analysis"]
    grid = config["grid"]["optimizers"]
    runs = tables["runs"]
    main = {**tables, "runs": runs[runs["optimizer"].isin(grid)]}
    if "status" in tables:
        main["status"] = tables["status"][tables["status"]["optimizer"].isin(grid)]
    out: dict[str, pd.DataFrame] = {}
    if "probe_moments" in tables:
        out.update(analyze_noise(tables["probe_moments"], tables["probe_draws"], settings["confidence"],
                                 settings["bootstrap_resamples"], config["grad_variance"]["seed"], workers))
        out["noise_pooled"] = noise_pooled(out["gradvar"], settings["confidence"])
    if "probe_hessian" in tables:
        out["noise_scale_hessian"] = hessian_noise_scale(tables["probe_hessian"], tables["probe_hessian_draws"],
                                                         settings["confidence"], settings["bootstrap_resamples"],
                                                         config["grad_variance"]["seed"])
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
