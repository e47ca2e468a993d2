"""Snakemake job: evaluate every checkpoint of one bundle's runs on train, validation and test."""
from optbench.data import load_dataset
from optbench.evaluate import evaluate_checkpoints
from optbench.io import atomic_write_csv
from optbench.jobs import job_log, setup_job
from optbench.runfiles import load_checkpoints
from optbench.train import init_model

config = snakemake.config

with job_log(snakemake.log[0]) as log:
    device = setup_job(snakemake.threads, config["device"])
    tensors = load_dataset(snakemake.input.data)
    model = init_model(tensors["x_train"], config["model"]["hidden"], seed=0).to(device)
    for checkpoint_path, eval_path in zip(snakemake.input.checkpoints, snakemake.output.evals):
        table = evaluate_checkpoints(model, load_checkpoints(checkpoint_path), tensors,
                                     config["evaluate"]["batch_size"], device)
        atomic_write_csv(table, eval_path)
        log(f"{checkpoint_path}: {len(table)} rows")
