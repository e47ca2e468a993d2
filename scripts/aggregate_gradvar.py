"""Snakemake job: collect the probe runs' raw tables (moments, draws, layers; Hessian products when on) into results/tables/."""
from optbench.jobs import job_log
from optbench.tables import PROBE_TABLES, combine, read_table, write_table

with job_log(snakemake.log[0]) as log:
    for name in snakemake.output.keys():  # probe_hessian{,_draws} only when grad_variance.hessian is on
        table_name = PROBE_TABLES[name]
        table = combine([read_table(path, table_name) for path in snakemake.input[name]], table_name)
        write_table(table, snakemake.output[name], table_name)
        log(f"{snakemake.output[name]}: {len(table)} rows from {len(snakemake.input[name])} probe runs")
