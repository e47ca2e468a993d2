"""Snakemake job: evaluate every checkpoint of one bundle's runs on train, validation and test; write the receipt.

Each checkpoint file is checked against its run.json (checksum) first. A run whose eval.csv was made
from these checkpoints with the same settings, device, threads and evaluation code (its eval.json
says so, and eval.csv still has the checksum recorded there) is kept: its bundle's train job
evaluated it from the checkpoints in memory, and evaluating again would give the same bytes. The
others are evaluated here, each checkpoint file first checked against the schedule it was trained to.
"""
from pathlib import Path

from optbench.io import damaged, file_stamp
from optbench.jobs import job_log
from optbench.runfiles import (EVAL_FILE, evaluation_basis, evaluation_record, load_metadata, publish_eval,
                               reusable_eval, write_bundle_receipt)

config, params = snakemake.config, snakemake.params

with job_log(snakemake.log[0]) as log:
    basis = evaluation_basis(params.settings, params.device, snakemake.threads)
    stamps, todo = {}, []
    for k, run_dir in enumerate(map(Path, params.run_dirs), start=1):
        meta = load_metadata(run_dir / "run.json")
        if file_stamp(run_dir / "checkpoints.pt")["sha256"] != meta["files"]["checkpoints.pt"]:
            raise damaged(run_dir / "checkpoints.pt", "checkpoint file", "differs from what training wrote")
        record = evaluation_record(basis, meta["files"]["checkpoints.pt"])
        why = reusable_eval(run_dir, record)
        if why is None:
            stamps[run_dir] = file_stamp(run_dir / EVAL_FILE)
        else:
            todo.append((run_dir, meta, record))
        log(f"run {k} of {len(params.run_dirs)}: {run_dir / EVAL_FILE}: " + (f"to evaluate ({why})" if why else "kept"))
    log(f"{len(stamps)} of {len(params.run_dirs)} runs kept: their eval.csv was made from these checkpoints with "
        "these settings, device, threads and code (eval.json)")
    if todo:
        # imported only now: a job whose runs were all evaluated by their train job never loads torch (~2 s)
        from optbench.data import load_dataset
        from optbench.evaluate import eval_csv
        from optbench.jobs import setup_job
        from optbench.runfiles import load_checkpoints
        from optbench.train import checkpoint_schedule, init_model

        device = setup_job(snakemake.threads, params.device)
        tensors = load_dataset(snakemake.input.data)
        model = init_model(tensors["x_train"], config["model"], seed=0).to(device)
        for j, (run_dir, meta, record) in enumerate(todo, start=1):
            schedule = checkpoint_schedule(meta["total_steps"], config["train"]["checkpoints"])
            checkpoints = load_checkpoints(run_dir / "checkpoints.pt", expected_steps=schedule)
            text = eval_csv(model, checkpoints, tensors, config["evaluate"]["batch_size"], device)
            stamps[run_dir] = publish_eval(run_dir, text, record)
            log(f"evaluated {j} of {len(todo)}: {run_dir / EVAL_FILE}: {text.count(chr(10)) - 1} rows")
    members = [{"lr": lr, "seed": seed, "dir": d} for (lr, seed), d in zip(params.members, params.run_dirs)]
    write_bundle_receipt(snakemake.output[0], members, [{EVAL_FILE: stamps[Path(d)]} for d in params.run_dirs],
                         bundle=params.bundle, settings=params.settings)
