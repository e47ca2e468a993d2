"""Snakemake job: evaluate every checkpoint of one bundle's runs on train, validation and test; write the receipt.

Each checkpoint file is checked against its run.json (checksum, the schedule it was trained to) before
it is read. An eval.csv whose bytes would not change is left untouched.
"""
from pathlib import Path

from optbench.data import load_dataset
from optbench.evaluate import evaluate_checkpoints
from optbench.io import atomic_write_text, damaged, file_stamp
from optbench.jobs import job_log, setup_job
from optbench.runfiles import EVAL_FILE, load_checkpoints, load_metadata, write_bundle_receipt
from optbench.train import checkpoint_schedule, init_model

config, params = snakemake.config, snakemake.params

with job_log(snakemake.log[0]) as log:
    device = setup_job(snakemake.threads, params.device)
    tensors = load_dataset(snakemake.input.data)
    model = init_model(tensors["x_train"], config["model"], seed=0).to(device)
    files = []
    for k, run_dir in enumerate(map(Path, params.run_dirs), start=1):
        meta = load_metadata(run_dir / "run.json")
        if file_stamp(run_dir / "checkpoints.pt")["sha256"] != meta["files"]["checkpoints.pt"]:
            raise damaged(run_dir / "checkpoints.pt", "checkpoint file", "differs from what training wrote")
        schedule = checkpoint_schedule(meta["total_steps"], config["train"]["checkpoints"])
        checkpoints = load_checkpoints(run_dir / "checkpoints.pt", expected_steps=schedule)
        text = evaluate_checkpoints(model, checkpoints, tensors, config["evaluate"]["batch_size"],
                                    device).to_csv(index=False)
        target = run_dir / EVAL_FILE
        if not target.exists() or target.read_text() != text:
            atomic_write_text(text, target)
        files.append({EVAL_FILE: file_stamp(target)})
        log(f"run {k} of {len(params.run_dirs)}: {target}: {text.count(chr(10)) - 1} rows")
    members = [{"lr": lr, "seed": seed, "dir": d} for (lr, seed), d in zip(params.members, params.run_dirs)]
    write_bundle_receipt(snakemake.output[0], members, files, bundle=params.bundle, settings=params.settings)
