"""Snakemake job: train one bundle of runs (one optimizer and batch size); write per-run files and the receipt.

A run whose files are intact and were made by the same identity (config values, training code, data,
device) is kept untouched; the others continue from their resume state or start over. Bundled runs
train as one vectorised ensemble; with train.bundle_size 1, or a model that is not a stack of Linear layers
(model.kind cnn), they train one by one with train_run.

Each run trained here is also evaluated here, from the checkpoints still in memory, when this job runs
at the evaluate stage's thread count: its eval.csv and eval.json are what the evaluate job would
write, which then only checks them, so the bundle pays for importing torch, loading the data and
reading the checkpoints once, not twice (issue 14). The evaluate job evaluates whatever this left out.
"""
import time
from contextlib import ExitStack

from optbench.bundle import train_bundle
from optbench.config import Run, trains_in_bundles
from optbench.data import load_dataset
from optbench.evaluate import eval_csv
from optbench.identity import git_state
from optbench.jobs import job_log, setup_job
from optbench.resume import RunStore, bundle_saver, lockstep_groups
from optbench.io import file_stamp
from optbench.runfiles import (RUN_FILES, checkpoint_bundle, evaluation_basis, evaluation_record, publish_eval,
                               reusable, run_metadata, save_run, write_bundle_receipt)
from optbench.train import init_model, train_run

config, params = snakemake.config, snakemake.params
identity, every = params.identity, config["train"]["resume_every_seconds"]

with job_log(snakemake.log[0]) as log, ExitStack() as stack:
    device = setup_job(snakemake.threads, params.device)
    tensors = load_dataset(snakemake.input.data)
    runs = [Run(params.optimizer, params.batch_size, float(lr), int(seed)) for lr, seed in params.members]
    stores = [stack.enter_context(RunStore(d).locked(log)) for d in params.resume_dirs]
    todo = []
    for i, run_dir in enumerate(params.run_dirs):
        why = reusable(run_dir, identity)
        log(f"{runs[i]}: " + ("kept: already trained by this code and config" if why is None else f"to train ({why})"))
        todo += [] if why is None else [i]
    if len(todo) < len(runs):
        log("Kept runs are left untouched: training is deterministic, so retraining them would give the same bits. "
            "To retrain one anyway, delete its folder (results/runs/...) and rerun snakemake.")
    states = {i: stores[i].load_state(identity, log) for i in todo}
    bundled = trains_in_bundles(config)
    if not bundled and len(runs) > 1:
        log(f"model.kind {config['model']['kind']}: bundles are for Linear stacks, so this bundle's runs train one "
            "by one with train_run, as with train.bundle_size 1 (their results do not depend on the bundle)")
    # evaluated here only at the evaluate stage's threads: eval.csv's bits depend on the thread count
    evaluates = snakemake.threads == config["evaluate"]["threads"]
    if evaluates:
        basis = evaluation_basis(config["evaluate"], params.device, snakemake.threads)
        model = init_model(tensors["x_train"], config["model"], seed=0).to(device)
    about = {"bundle": params.bundle, "bundle_size": len(runs), **git_state(), "identity": identity}
    steps = {i: states[i]["steps_done"] if states[i] else 0 for i in todo}
    written, evaluation_seconds = {}, 0.0
    for members, companion in lockstep_groups(todo, steps, len(runs)):
        group, resumes, savers = [runs[i] for i in members], [states[i] for i in members], [stores[i] for i in members]
        if companion:  # a discarded copy: a member trained on its own would get other bits than in its bundle
            group, resumes, savers = group * 2, resumes * 2, savers + [None]
        if not bundled:
            results = [train_run(tensors, runs[i], config, device, log, resume=states[i],
                                 on_epoch_end=stores[i].saver(every, identity)) for i in members]
        else:
            results = train_bundle(tensors, group, config, device, log, resumes=resumes,
                                   on_epoch_end=bundle_saver(savers, every, identity))
        for i, result in zip(members, results):
            meta = run_metadata(result, device, snakemake.threads, len(tensors["x_train"]),
                                config["train"]["log_every"])
            written[i] = save_run(result, params.run_dirs[i], {**meta, **about})
            stores[i].finish()
            log(f"{runs[i]}: {result.status}, {result.steps_done} steps in {result.train_seconds:.2f}s")
            if evaluates:
                started = time.perf_counter()
                text = eval_csv(model, checkpoint_bundle(result), tensors, config["evaluate"]["batch_size"], device)
                publish_eval(params.run_dirs[i], text,
                             evaluation_record(basis, written[i]["checkpoints.pt"]["sha256"]))
                evaluation_seconds += time.perf_counter() - started
    if evaluates and written:
        # bench/run.py counts these seconds as the evaluate stage's
        log(f"evaluated {len(written)} runs for the evaluate stage in {evaluation_seconds:.2f}s")
    files = [written.get(i) or {name: file_stamp(f"{d}/{name}") for name in RUN_FILES} for i, d in enumerate(params.run_dirs)]
    write_bundle_receipt(snakemake.output[0], [{"lr": lr, "seed": s, "dir": d} for (lr, s), d
                                               in zip(params.members, params.run_dirs)], files, **about)
