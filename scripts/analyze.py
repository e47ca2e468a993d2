"""Snakemake job: the analysis tables (best LR, sensitivity, scaling, ...) and every claim's verdict."""
import pandas as pd

from optbench.analysis import analyze
from optbench.io import atomic_write_csv, atomic_write_json
from optbench.jobs import job_log
from optbench.verdicts import evaluate_claims

config = snakemake.config

with job_log(snakemake.log[0]) as log:
    tables = {"runs": pd.read_csv(snakemake.input.runs), "status": pd.read_csv(snakemake.input.status)}
    # Gradient-noise tables exist only when the config has probe runs (C4, C5 and B_simple for C6).
    for name in ("gradvar", "gradvar_slopes"):
        if name in snakemake.input.keys():
            tables[name] = pd.read_csv(snakemake.input[name])
    tables.update(analyze(tables, config["analysis"], config["selection"]["metric"]))
    claims = evaluate_claims(tables, config)
    for name in snakemake.output.keys():
        if name == "claims_json":
            atomic_write_json(claims.to_dict(orient="records"), snakemake.output[name])
        else:
            table = claims if name == "claims" else tables[name]
            atomic_write_csv(table, snakemake.output[name])
        log(f"{snakemake.output[name]}: {len(claims if name.startswith('claims') else tables[name])} rows")
    for claim in claims.itertuples():
        log(f"{claim.claim_id}: {claim.verdict} ({claim.reason})")
