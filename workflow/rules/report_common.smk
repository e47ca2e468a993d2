# What the figure and report rules read: every table comes from the analysis stage (rule analyze) or
# the aggregate rules, and the figures and the page only format it. The gradient-noise tables and
# figures exist only when the config has probe runs.


REPORT_FIGURES_DIR = "results/figures"
# for each figure-drawing job, {figure name: category in `snakemake --report`}; captions: workflow/report/<name>.rst.
# The two jobs after the analysis split the drawing time about evenly (lr_grid, the slowest figure, beside
# the four fast ones of the analysis), as they run side by side in the serial end of every run (issue 14);
# gradvar_figures runs earlier, beside analyze (seen in the alternating grids of BENCHMARKS.md).
REPORT_FIGURES = {
    "figures": {
        "curves": "Training curves",
        "sweep": "Learning rate",
        "lr_sensitivity": "Learning rate",
        "trajectories": "Learning rate",
        "early_stopping": "When to stop",
        "cost": "Cost",
    },
    "analysis_figures": {
        "lr_grid": "Training curves",
        "scaling": "Scaling rules",
        "steps_to_target": "Steps to target",
        "critical_batch": "Critical batch size",
        "lr_forms": "Critical batch size",
    },
    "gradvar_figures": {"gradvar": "Gradient noise", "noise_scale": "Gradient noise"},
}
# figure → the tables it is drawn from (results/tables/<name>.csv)
FIGURE_TABLES = {
    "curves": ["curve_bands", "best_lr_cells"],
    "lr_grid": ["curve_bands"],
    "sweep": ["lr_scores", "hyperparameter_importance"],
    "lr_sensitivity": ["lr_scores", "lr_summary", "best_lr_cells", "best_lr"],
    "trajectories": ["minibatch", "lr_picks"],
    "early_stopping": ["lr_scores", "lr_summary"],
    "cost": ["run_status", "cost_cells"],
    "scaling": ["best_lr", "best_lr_cells", "scaling"],
    "steps_to_target": ["steps_to_target", "batch_scaling"],
    "critical_batch": ["critical_batch"],
    "lr_forms": ["best_lr", "lr_form_curves"],
    "gradvar": ["gradvar", "gradvar_slopes"],
    "noise_scale": ["gradvar_slopes"],
}
# the tables the page's sections show
REPORT_TABLES = [
    "run_status",
    "test_loop",
    "critical_batch",
    "lr_noise_scale",
    "batch_scaling_common",
    "malladi",
    "hyperparameter_importance",
    "claims",
    "best_lr_cells",
    "lr_sensitivity",
    "scaling",
    "trajectory_summary",
    "steps_to_target",
    "batch_scaling",
    "stopping_cells",
    "cost",
]
NOISE_TABLES = ["gradvar", "gradvar_slopes", "noise_pooled"]
# What draws the figures and the page, as inputs named "sources": editing a template or the drawing
# code re-renders what it draws on the next run (Snakemake compares their content) and nothing
# upstream; a template-only edit reruns the report rule alone. (The code that makes numbers is tracked by
# digests of its syntax trees instead: training code in the train rule's params, analysis code in analyze's.)
_CODE, _TEMPLATES = Path(workflow.basedir, "optbench"), Path(
    workflow.basedir, "workflow", "report"
)
FIGURE_SOURCES = [str(_CODE / "figures.py")]
REPORT_SOURCES = [str(_CODE / name) for name in ("report.py", "format.py")] + sorted(
    str(p) for p in _TEMPLATES.iterdir() if p.is_file()
)


def table_path(name):
    return f"results/tables/{name}.csv"


def figure_rule_names(rule):
    """The figures a figure rule draws (none of the gradient-noise ones without probes)."""
    return (
        []
        if rule == "gradvar_figures" and not PROBES_ON
        else list(REPORT_FIGURES[rule])
    )


def figure_rule_outputs(rule):
    return {
        name: report(
            f"{REPORT_FIGURES_DIR}/{name}.svg",
            caption=f"../report/{name}.rst",
            category=REPORT_FIGURES[rule][name],
        )
        for name in figure_rule_names(rule)
    }


def figure_rule_inputs(rule):
    names = {
        table for figure in figure_rule_names(rule) for table in FIGURE_TABLES[figure]
    }
    return {name: table_path(name) for name in sorted(names)}


def report_inputs(wildcards):
    """The page's tables and every figure (keyed figure_<name>), plus the code and templates that render them."""
    tables = REPORT_TABLES + (NOISE_TABLES if PROBES_ON else [])
    figures = [name for rule in REPORT_FIGURES for name in figure_rule_names(rule)]
    return {
        **{name: table_path(name) for name in tables},
        **{f"figure_{name}": f"{REPORT_FIGURES_DIR}/{name}.svg" for name in figures},
        "sources": REPORT_SOURCES,
    }
