# optbench: SGD vs Adam, batch size and learning rate — from a grid of runs to one HTML report.
#   snakemake --cores all                      (laptop; config.yaml)
#   snakemake --profile profiles/slurm         (cluster)
from snakemake.utils import min_version

min_version("9.0")


# ---- config (config.yaml, or exactly the --configfile files) and its validation, before any job runs ----
include: "workflow/rules/common.smk"
# ---- stages ----
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/gradvar.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"


# Cheap steps over the whole grid run on the submitting machine, never as cluster jobs.
localrules:
    aggregate,
    analyze_probes,
    analyze,
    figures,
    analysis_figures,
    gradvar_figures,
    report,


# ---- before any job: damaged or deleted files are rebuilt by this run (common.smk) ----
remove_stale_outputs()


rule all:
    default_target: True
    input:
        # every stage's files, not only the report: a deleted intermediate is then rebuilt
        every_output,
