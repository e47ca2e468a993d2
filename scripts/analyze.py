"""Snakemake job: every analysis table (best LR, sensitivity, scaling, noise statistics, ...) and every claim's verdict."""
from optbench.analysis_stage import PROBE_STATISTICS, analysis_stage
from optbench.io import atomic_write_json
from optbench.jobs import job_log
from optbench.tables import read_benchmarks, read_table, write_table

# input key → declared table; the probes' statistics are rule analyze_probes' (PROBE_STATISTICS)
INPUT_TABLES = {"runs": "runs", "status": "run_status", **{name: name for name in PROBE_STATISTICS}}

with job_log(snakemake.log[0]) as log:
    tables = {key: read_table(snakemake.input[key], name) for key, name in INPUT_TABLES.items()
              if key in snakemake.input.keys()}
    tables["benchmarks"] = read_benchmarks(snakemake.params.benchmarks)
    results = analysis_stage(tables, snakemake.config, workers=snakemake.threads)
    for name in snakemake.output.keys():
        if name == "claims_json":
            atomic_write_json(results["claims"].to_dict(orient="records"), snakemake.output[name])
            continue
        write_table(results[name], snakemake.output[name], name)
        log(f"{snakemake.output[name]}: {len(results[name])} rows")
    for claim in results["claims"].itertuples():
        log(f"{claim.claim_id}: {claim.verdict} ({claim.reason})")
