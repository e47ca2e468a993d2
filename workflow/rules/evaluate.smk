# Evaluate every checkpoint of a group's runs on train, validation and test.


rule evaluate:
    input:
        data=DATA,
        checkpoints=group_files("checkpoints.pt"),
    output:
        evals=group_files("eval.csv"),
    log:
        f"logs/evaluate/{GROUP_LOG}.log",
    benchmark:
        f"benchmarks/evaluate/{GROUP_LOG}.tsv"
    threads: config["evaluate"]["threads"]
    resources:
        # one GPU per job (sbatch --gpus=1 under profiles/slurm) only when the config demands CUDA
        gpu=1 if config["device"] == "cuda" else 0,
    conda:
        ENV
    script:
        "../../scripts/evaluate.py"
