# Evaluate every checkpoint of a bundle's runs on train, validation and test, in one process.

for optimizer, index, batch_size in BUNDLE_JOBS:
    members = BUNDLES[(optimizer, index)]

    rule:
        name:
            f"evaluate_{optimizer}_bs{batch_size}_{index}"
        input:
            data=DATA,
            checkpoints=bundle_files(optimizer, batch_size, members, "checkpoints.pt"),
        output:
            evals=bundle_files(optimizer, batch_size, members, "eval.csv"),
        log:
            bundle_log("evaluate", optimizer, index, batch_size),
        benchmark:
            bundle_log("evaluate", optimizer, index, batch_size, "benchmarks", "tsv")
        priority: bundle_priority(optimizer, batch_size, members)
        # cluster: a bundle's train, evaluate and probe jobs form one SLURM job (profiles/slurm)
        group: "runs"
        threads: config["evaluate"]["threads"]
        resources:
            # one GPU per job (sbatch --gpus=1 under profiles/slurm) only when the config demands CUDA
            gpu=1 if config["device"] == "cuda" else 0,
        conda:
            ENV
        script:
            "../../scripts/evaluate.py"
