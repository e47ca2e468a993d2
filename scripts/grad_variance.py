"""Snakemake job: gradient-noise probes of one run — σ², ||∇f||², the K draws of ||g_B − ∇f||² per m, GᵀHG and eᵀHe, raw."""
from optbench.config import model_tag
from optbench.data import load_dataset
from optbench.gradvar import probe_run
from optbench.jobs import job_log, setup_job
from optbench.runfiles import load_checkpoints
from optbench.tables import PROBE_TABLES, write_table
from optbench.train import init_model

config = snakemake.config
wildcards = snakemake.wildcards

with job_log(snakemake.log[0]) as log:
    device = setup_job(snakemake.threads, snakemake.params.device)
    tensors = load_dataset(snakemake.input.data)
    x, y = tensors["x_train"].to(device), tensors["y_train"].to(device)
    model = init_model(tensors["x_train"], config["model"], seed=0).to(device)
    identity = {"dataset": config["dataset"]["name"], "model": model_tag(config),
                "optimizer": wildcards.optimizer, "batch_size": int(wildcards.batch_size),
                "lr": float(wildcards.lr), "seed": int(wildcards.seed)}
    log(f"probing {identity} with n = {len(x)}")
    tables = probe_run(model, load_checkpoints(snakemake.params.checkpoints), x, y,
                       config["grad_variance"], identity, log)
    for name in snakemake.output.keys():  # the Hessian tables only when grad_variance.hessian is on
        write_table(tables[name], snakemake.output[name], PROBE_TABLES[name])
        log(f"{snakemake.output[name]}: {len(tables[name])} rows")
