# Inputs, outputs and parameters of the analysis stage (analysis.smk): which tables exist with this config.
import json

ANALYSIS_INPUTS = {
    "runs": "results/tables/runs.csv",
    "status": "results/tables/run_status.csv",
}
# Probes are opt-in: without them C4/C5 are inconclusive and the noise tables are not written.
PROBES_ON = bool(config["grad_variance"]["probes"])
# The probes' statistics are analyze_probes' job, from the raw probe tables, which analyze then never reads
PROBE_ANALYSIS_INPUTS = (
    {
        "probe_moments": "results/tables/probe_moments.csv",
        "probe_draws": "results/tables/probe_draws.csv",
    }
    if PROBES_ON
    else {}
)
# ... and the Hessian probes' (grad_variance.hessian.checkpoints 0: L1 lacks the Hessian B_noise)
PROBE_ANALYSIS_INPUTS.update(
    {f"probe_{name}": path for name, path in HESSIAN_TABLES.items()}
)
PROBE_ANALYSIS_TABLES = [
    *(["gradvar", "gradvar_slopes", "noise_pooled"] if PROBES_ON else []),
    *(["noise_scale_hessian"] if HESSIAN else []),
]
ANALYSIS_INPUTS.update(
    {name: f"results/tables/{name}.csv" for name in PROBE_ANALYSIS_TABLES}
)
ANALYSIS_TABLES = [
    "lr_scores",
    "best_lr",
    "best_lr_cells",
    "training_drop",
    "curve_bands",
    "lr_summary",
    "lr_widths",
    "lr_width_contrasts",
    "lr_sensitivity",
    "lr_picks",
    "hyperparameter_importance",
    "scaling",
    "trajectories",
    "trajectory_summary",
    "steps_per_seed",
    "steps_to_target",
    "batch_scaling",
    "batch_scaling_common",
    "early_stopping",
    "stopping_cells",
    "stopping_overall",
    "cost",
    "cost_cells",
    "lr_noise_scale",
    "lr_form_curves",
    "critical_batch",
    "malladi",
    "claims",
]


# everything in the config the analysis reads, as one canonical string
ANALYSIS_IDENTITY = json.dumps(
    {
        **{k: config[k] for k in ("analysis", "verdicts", "selection", "optimizers")},
        "probes": {k: config["grad_variance"][k] for k in ("probes", "draws", "seed")},
        "grid": config["grid"],
        "literature": config.get("literature"),
    },
    sort_keys=True,
)
# what in the config the probes' statistics read (their inputs carry the rest)
PROBE_ANALYSIS_IDENTITY = json.dumps(
    {
        "analysis": {
            k: config["analysis"][k] for k in ("confidence", "bootstrap_resamples")
        },
        "seed": config["grad_variance"]["seed"],
    },
    sort_keys=True,
)


# tables also shown by `snakemake --report` (captions: workflow/report/tables/<name>.rst)
REPORT_TABLE_CATEGORIES = {
    "claims": "Claims",
    "best_lr_cells": "Learning rate",
    "lr_sensitivity": "Learning rate",
    "scaling": "Scaling rules",
    "steps_to_target": "Steps to target",
    "batch_scaling": "Steps to target",
    "stopping_cells": "When to stop",
    "noise_pooled": "Gradient noise",
}


def analysis_output(name):
    path = f"results/tables/{name}.csv"
    if name not in REPORT_TABLE_CATEGORIES:
        return path
    return report(
        path,
        caption=f"../report/tables/{name}.rst",
        category=REPORT_TABLE_CATEGORIES[name],
    )


def analysis_benchmarks(wildcards):
    """Snakemake's benchmark files of the expensive jobs, per rule (the Cost section's source).

    Read as params, not inputs: a deleted benchmark file must not retrain the grid.
    """
    files = {stage: all_bundle_logs(stage) for stage in ("train", "evaluate")}
    if PROBES_ON:
        files["grad_variance"] = [
            PROBE_BENCHMARK.format(**wildcards) for wildcards in PROBE_WILDCARDS
        ]
    return files
