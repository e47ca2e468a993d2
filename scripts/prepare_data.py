"""Snakemake job: build the configured dataset once and save its train/val/test tensors."""
from optbench.data import build_dataset, save_dataset
from optbench.jobs import job_log

with job_log(snakemake.log[0]) as log:
    tensors = build_dataset(snakemake.config["dataset"])
    log("shapes: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items()))
    save_dataset(tensors, snakemake.output[0])
