# One job per bundle and batch size: up to train.bundle_size runs of one optimizer (several LRs ×
# seeds) trained in one process as one vectorised ensemble, so import and set-up are paid once per
# bundle; outputs stay per run. A bundle's runs are fixed by the config, hence one rule per job
# (its priority schedules the longest first). Resume state lives in results/resume, outside the
# outputs (Snakemake deletes a failed job's outputs).

for optimizer, index, batch_size in BUNDLE_JOBS:
    members = BUNDLES[(optimizer, index)]

    rule:
        name:
            f"train_{optimizer}_bs{batch_size}_{index}"
        input:
            data=DATA,
        output:
            checkpoints=bundle_files(optimizer, batch_size, members, "checkpoints.pt"),
            logs=bundle_files(optimizer, batch_size, members, "log.csv"),
            meta=bundle_files(optimizer, batch_size, members, "run.json"),
        params:
            optimizer=optimizer,
            batch_size=batch_size,
            runs=members,
            run_dirs=bundle_run_dirs(optimizer, batch_size, members),
            resume_dirs=bundle_run_dirs(optimizer, batch_size, members, root=f"results/resume/{EXP}"),
        log:
            bundle_log("train", optimizer, index, batch_size),
        benchmark:
            bundle_log("train", optimizer, index, batch_size, "benchmarks", "tsv")
        priority: bundle_priority(optimizer, batch_size, members)
        # cluster: a bundle's train, evaluate and probe jobs form one SLURM job (profiles/slurm)
        group: "runs"
        threads: config["train"]["threads"]
        resources:
            # one GPU per job (sbatch --gpus=1 under profiles/slurm) only when the config demands CUDA
            gpu=1 if config["device"] == "cuda" else 0,
        conda:
            ENV
        script:
            "../../scripts/train.py"
