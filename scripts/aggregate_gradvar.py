"""Snakemake job: collect the probe runs' raw tables into results/tables/probe_{moments,draws}.csv and gradvar_layers.csv."""
from optbench.jobs import job_log
from optbench.tables import PROBE_TABLES, combine, read_table, write_table

with job_log(snakemake.log[0]) as log:
    for name, table_name in PROBE_TABLES.items():
        table = combine([read_table(path, table_name) for path in snakemake.input[name]], table_name)
        write_table(table, snakemake.output[name], table_name)
        log(f"{snakemake.output[name]}: {len(table)} rows from {len(snakemake.input[name])} probe runs")
