"""Snakemake job: train every seed of one (optimizer, batch size, lr) group; write per-run files."""
from optbench.config import Run
from optbench.data import load_dataset
from optbench.jobs import job_log, setup_job
from optbench.runfiles import run_metadata, save_run
from optbench.train import train_run

config, wildcards = snakemake.config, snakemake.wildcards

with job_log(snakemake.log[0]) as log:
    device = setup_job(snakemake.threads, config["device"])
    tensors = load_dataset(snakemake.input.data)
    for seed, run_dir in zip(config["grid"]["seeds"], snakemake.params.run_dirs):
        run = Run(wildcards.optimizer, int(wildcards.batch_size), float(wildcards.lr), seed)
        result = train_run(tensors, run, config, device, log)
        save_run(result, run_dir, run_metadata(result, device, snakemake.threads, len(tensors["x_train"])))
        log(f"{run}: {result.status}, {result.steps_done} steps in {result.train_seconds:.2f}s")
