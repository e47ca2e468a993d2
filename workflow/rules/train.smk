# Training: one job per bundle and batch size, one rule for all of them. A bundle (config.partition) is
# up to train.bundle_size runs of one optimizer (a block of its learning rates × a block of the seeds)
# trained in one process as one vectorised ensemble, so import and set-up are paid once per bundle.
#
# Why the output is the bundle's receipt, not the run files: a rule's outputs are fixed patterns, all
# with the same wildcards, so per-run outputs under a bundle wildcard would need every bundle to hold
# the same learning rates and seeds as literals (impossible with per-optimizer lrs), or bundles of one
# lr × the seeds (3 runs: most of the vectorisation lost). The other way, a bundle-level output plus a
# per-run rule that publishes each run's
# files, costs a Snakemake job per run: measured with Snakemake 9.27 on 2 cores, 360 per-run jobs
# (the default grid) added 35-44 s as shell jobs and 10-11 minutes as script or run jobs (each one a
# new Python process), against ~3 s for the whole 21-job bundle-level plan. So the train job writes
# each run's files under results/runs/ itself (checkpoints.pt, log.csv, run.json) and lists them,
# with their checksums, in the receipt; remove_stale_outputs (common.smk) voids a receipt whose files
# were deleted or changed, so that a plain rerun repairs them. Resume state lives in results/resume.


rule train:
    input:
        data=DATA,
    output:
        RECEIPT["train"],
    log:
        f"logs/train/{BUNDLE_LOG}.log",
    benchmark:
        f"benchmarks/train/{BUNDLE_LOG}.tsv"
    priority: bundle_priority
    # cluster: a bundle's train, evaluate and probe jobs form one SLURM job (profiles/slurm)
    group:
        "runs"
    conda:
        ENV
    threads: config["train"]["threads"]
    resources:
        # one GPU per job (sbatch --gpus=1 under profiles/slurm) only when the runs train on CUDA
        gpu=1 if DEVICE == "cuda" else 0,
    params:
        optimizer=lambda wildcards: wildcards.optimizer,
        batch_size=lambda wildcards: int(wildcards.batch_size),
        bundle=lambda wildcards: wildcards.bundle,
        members=bundle_members,
        run_dirs=bundle_run_dirs,
        resume_dirs=bundle_resume_dirs,
        # the runs' identity (experiment, optimizer settings, training and data code): a change reruns the job
        identity=bundle_identity,
        device=DEVICE,
    script:
        "../../scripts/train.py"
