"""Snakemake job: collect every run's evaluation, log and metadata into tidy tables."""
import pandas as pd

from optbench.aggregate import build_tables
from optbench.config import model_tag
from optbench.io import atomic_write_csv
from optbench.jobs import job_log
from optbench.runfiles import load_metadata

with job_log(snakemake.log[0]) as log:
    tables = build_tables(
        metas=[load_metadata(path) for path in snakemake.input.meta],
        evals=[pd.read_csv(path) for path in snakemake.input.evals],
        logs=[pd.read_csv(path) for path in snakemake.input.logs],
        dataset=snakemake.config["dataset"]["name"],
        model=model_tag(snakemake.config),
    )
    for name, table in tables.items():
        atomic_write_csv(table, snakemake.output[name])
        log(f"{snakemake.output[name]}: {len(table)} rows")
