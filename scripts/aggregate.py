"""Snakemake job: collect every run's evaluation, log and metadata into tidy tables.

Each run file is first checked against the receipt of the job that wrote it (checksum) and against
what it must hold (run.json's keys and seal, a log row per logged step, an eval row per checkpoint
and split); a damaged one stops the job, naming it.
"""
from optbench.aggregate import build_tables
from optbench.config import model_tag
from optbench.jobs import job_log
from optbench.runfiles import load_evals, load_logs, load_metadata, verified_run_files
from optbench.tables import write_table

with job_log(snakemake.log[0]) as log:
    run_dirs = verified_run_files(snakemake.input.trained, snakemake.input.evaluated)
    metas = [load_metadata(run_dir / "run.json") for run_dir in run_dirs]
    logs = load_logs([run_dir / "log.csv" for run_dir in run_dirs], metas)
    evals = load_evals([run_dir / "eval.csv" for run_dir in run_dirs], metas)
    tables = build_tables(metas, evals, logs, dataset=snakemake.config["dataset"]["name"],
                          model=model_tag(snakemake.config))
    for name, table in tables.items():
        write_table(table, snakemake.output[name], name)
        log(f"{snakemake.output[name]}: {len(table)} rows")
