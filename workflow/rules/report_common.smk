# Input functions of the report stage (report.smk): which tables and figures exist in this workflow.
# The analysis and gradient-noise stages are optional: their tables (named after their files) and
# figures are asked for only when their rules are part of the workflow and the config enables them.


REPORT_FIGURES_DIR = "results/figures"
REPORT_SPINE_TABLES = {"runs": "results/tables/runs.csv", "status": "results/tables/run_status.csv",
                       "minibatch": "results/tables/minibatch.csv"}
# figure name → category in `snakemake --report`; each has a caption workflow/report/<name>.rst
REPORT_FIGURES = {
    "spine": {"curves": "Training curves", "lr_grid": "Training curves", "lr_sensitivity": "Learning rate",
              "trajectories": "Learning rate", "early_stopping": "When to stop", "cost": "Cost"},
    "analysis": {"scaling": "Scaling rules", "steps_to_target": "Steps to target"},
    "gradvar": {"gradvar": "Gradient noise", "noise_scale": "Gradient noise"},
}
# The rules whose CSV outputs feed each optional stage of the report.
REPORT_STAGE_RULES = {"analysis": "analyze", "gradvar": "aggregate_gradvar"}
# What draws the figures and the page, as inputs named "sources": editing a template or the drawing
# code re-renders what it draws on the next run (Snakemake compares their content) and nothing
# upstream; a template-only edit reruns the report rule alone. The training, evaluation and analysis
# code is deliberately not an input anywhere: a library edit must never retrain the grid unasked.
_CODE, _TEMPLATES = Path(workflow.basedir, "optbench"), Path(workflow.basedir, "workflow", "report")
# figures.py draws with report.py's run selection, so both are the figures' sources
FIGURE_SOURCES = [str(_CODE / "figures.py"), str(_CODE / "report.py")]
REPORT_SOURCES = [str(_CODE / "report.py"), *sorted(str(p) for p in _TEMPLATES.iterdir() if p.is_file())]


def report_figure_outputs(stage):
    return {name: report(f"{REPORT_FIGURES_DIR}/{name}.svg", caption=f"../report/{name}.rst", category=category)
            for name, category in REPORT_FIGURES[stage].items()}


def report_stage_enabled(stage):
    if REPORT_STAGE_RULES[stage] not in {r.name for r in workflow.rules}:
        return False
    # gradient-noise probes are opt-in: no probe runs, no tables
    return stage != "gradvar" or bool(config["grad_variance"]["probes"])


def report_stage_tables(stage):
    """The CSV outputs of the stage, keyed by file name (results/tables/scaling.csv → scaling)."""
    outputs = getattr(rules, REPORT_STAGE_RULES[stage]).output
    return {Path(path).stem: path for path in outputs if str(path).endswith(".csv")}


def report_spine_figure_tables(wildcards):
    """The run tables, plus best_lr.csv when present (refined lr* marked in the sensitivity figure)."""
    tables = dict(REPORT_SPINE_TABLES)
    if report_stage_enabled("analysis"):
        tables.update({k: v for k, v in report_stage_tables("analysis").items() if k == "best_lr"})
    return tables


def report_analysis_figure_tables(wildcards):
    """Analysis tables, plus the gradient-noise ones when present (B_simple beside steps to target)."""
    tables = {**REPORT_SPINE_TABLES, **report_stage_tables("analysis")}
    if report_stage_enabled("gradvar"):
        tables.update(report_stage_tables("gradvar"))
    return tables


def report_inputs(wildcards):
    """Tables and figures of every stage this workflow has; figure files are keyed figure_<name>."""
    tables, figures = dict(REPORT_SPINE_TABLES), dict(REPORT_FIGURES["spine"])
    for stage in ("analysis", "gradvar"):
        if report_stage_enabled(stage):
            tables.update(report_stage_tables(stage))
            figures.update(REPORT_FIGURES[stage])
    return {**tables, **{f"figure_{name}": f"{REPORT_FIGURES_DIR}/{name}.svg" for name in figures},
            "sources": REPORT_SOURCES}


def report_benchmarks(wildcards):
    """Snakemake's benchmark files of the expensive jobs, per rule.

    Read as params, not inputs: a deleted benchmark file must not retrain the grid.
    """
    files = {stage: all_bundle_logs(stage) for stage in ("train", "evaluate")}
    if report_stage_enabled("gradvar"):
        files["grad_variance"] = [PROBE_BENCHMARK.format(**wildcards) for wildcards in PROBE_WILDCARDS]
    return files
