"""Snakemake job: train every seed of one (optimizer, batch size, lr) group; write per-run files.

Progress is kept in a resume store outside the declared outputs, so a killed job rerun by
snakemake continues each run from its last saved epoch, and finished runs are not retrained.
"""
from optbench.config import Run
from optbench.data import load_dataset
from optbench.jobs import job_log, setup_job
from optbench.resume import RunStore
from optbench.runfiles import run_metadata, save_run
from optbench.train import train_run

config, wildcards = snakemake.config, snakemake.wildcards

with job_log(snakemake.log[0]) as log:
    device = setup_job(snakemake.threads, config["device"])
    tensors = load_dataset(snakemake.input.data)
    for seed, run_dir, store_dir in zip(config["grid"]["seeds"], snakemake.params.run_dirs,
                                        snakemake.params.resume_dirs):
        run = Run(wildcards.optimizer, int(wildcards.batch_size), float(wildcards.lr), seed)
        with RunStore(store_dir).locked(log) as store:
            if store.has_final():
                log(f"{run}: already trained, restoring its files from {store_dir}")
            else:
                result = train_run(tensors, run, config, device, log, resume=store.load_state(),
                                   on_epoch_end=store.saver(config["train"]["resume_every_seconds"]))
                meta = run_metadata(result, device, snakemake.threads, len(tensors["x_train"]))
                save_run(result, store.final_dir, meta)
                store.finish()
                log(f"{run}: {result.status}, {result.steps_done} steps in {result.train_seconds:.2f}s")
            store.publish(run_dir)
