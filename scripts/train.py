"""Snakemake job: train one bundle of runs (one optimizer and batch size); write per-run files.

Progress is kept in a per-run resume store outside the declared outputs, so a killed job rerun by
snakemake continues each run from its last saved epoch, and finished runs are not retrained.
train.bundle_size 1 trains run by run with train_run (no vectorisation).
"""
from contextlib import ExitStack

from optbench.bundle import train_bundle
from optbench.config import Run
from optbench.data import load_dataset
from optbench.jobs import job_log, setup_job
from optbench.resume import RunStore, bundle_saver
from optbench.runfiles import run_metadata, save_run
from optbench.train import train_run

config, params = snakemake.config, snakemake.params

with job_log(snakemake.log[0]) as log, ExitStack() as stack:
    device = setup_job(snakemake.threads, config["device"])
    tensors = load_dataset(snakemake.input.data)
    runs = [Run(params.optimizer, params.batch_size, float(lr), int(seed)) for lr, seed in params.runs]
    stores = [stack.enter_context(RunStore(d).locked(log)) for d in params.resume_dirs]
    todo = [i for i, store in enumerate(stores) if not store.has_final()]
    for i in set(range(len(runs))) - set(todo):
        log(f"{runs[i]}: already trained, restoring its files from {stores[i].root}")
    states = {i: stores[i].load_state() for i in todo}
    # Members train in lockstep: those resumed at different steps (a kill between saves) form separate bundles.
    by_step = {}
    for i in todo:
        by_step.setdefault(states[i]["steps_done"] if states[i] else 0, []).append(i)
    every = config["train"]["resume_every_seconds"]
    for members in by_step.values():
        if config["train"]["bundle_size"] == 1:
            results = [train_run(tensors, runs[i], config, device, log, resume=states[i],
                                 on_epoch_end=stores[i].saver(every)) for i in members]
        else:
            results = train_bundle(tensors, [runs[i] for i in members], config, device, log,
                                   resumes=[states[i] for i in members],
                                   on_epoch_end=bundle_saver([stores[i] for i in members], every))
        for i, result in zip(members, results):
            meta = run_metadata(result, device, snakemake.threads, len(tensors["x_train"]))
            meta["bundle_size"] = len(members)
            save_run(result, stores[i].final_dir, meta)
            stores[i].finish()
            log(f"{runs[i]}: {result.status}, {result.steps_done} steps in {result.train_seconds:.2f}s")
    for store, run_dir in zip(stores, params.run_dirs):
        store.publish(run_dir)
