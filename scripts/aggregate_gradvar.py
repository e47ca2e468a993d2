"""Snakemake job: collect the probe runs' gradient-noise tables into results/tables/gradvar*.csv."""
import pandas as pd

from optbench.gradvar import combine_tables
from optbench.io import atomic_write_csv
from optbench.jobs import job_log

with job_log(snakemake.log[0]) as log:
    for name in ("moments", "layers", "slopes"):
        table = combine_tables([pd.read_csv(path) for path in snakemake.input[name]], name)
        atomic_write_csv(table, snakemake.output[name])
        log(f"{snakemake.output[name]}: {len(table)} rows from {len(snakemake.input[name])} probe runs")
