"""The analysis stage end to end: run and probe tables in; every analysis table, the noise statistics and the claims out."""
from __future__ import annotations

import pandas as pd

from optbench.analysis import analyze
from optbench.noise import analyze_noise, noise_pooled
from optbench.verdicts import evaluate_claims


def analysis_stage(tables: dict[str, pd.DataFrame], config: dict) -> dict[str, pd.DataFrame]:
    """`tables`: runs, status, benchmarks, and with gradient probes probe_moments and probe_draws.
    Returns the tables rule analyze writes (results/tables/<name>.csv), claims included."""
    settings = config["analysis"]
    out: dict[str, pd.DataFrame] = {}
    if "probe_moments" in tables:
        out.update(analyze_noise(tables["probe_moments"], tables["probe_draws"], settings["confidence"],
                                 settings["bootstrap_resamples"], config["grad_variance"]["seed"]))
        out["noise_pooled"] = noise_pooled(out["gradvar"], settings["confidence"])
    out.update(analyze({**tables, **out}, settings, config["selection"]["metric"], config["grid"]["optimizers"]))
    out["claims"] = evaluate_claims({**tables, **out}, config)
    return out
