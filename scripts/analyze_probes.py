"""Snakemake job: the gradient probes' statistics (CIs against σ²/m, z, slopes, the Hessian B_noise), which rule analyze reads."""
from optbench.analysis_stage import probe_statistics
from optbench.jobs import job_log
from optbench.tables import read_table, write_table

with job_log(snakemake.log[0]) as log:
    tables = {key: read_table(path, key) for key, path in snakemake.input.items()}
    results = probe_statistics(tables, snakemake.config, workers=snakemake.threads)
    for name in snakemake.output.keys():
        write_table(results[name], snakemake.output[name], name)
        log(f"{snakemake.output[name]}: {len(results[name])} rows")
