# One job per group of runs sharing everything but the seed: import and set-up are paid once.
# Resume state lives in RESUME_DIR, outside the outputs (Snakemake deletes a failed job's outputs).


rule train:
    input:
        data=DATA,
    output:
        checkpoints=group_files("checkpoints.pt"),
        logs=group_files("log.csv"),
        meta=group_files("run.json"),
    params:
        run_dirs=lambda wc: [f"{GROUP_DIR}/seed{s}".format(**wc) for s in SEEDS],
        resume_dirs=lambda wc: [f"{RESUME_DIR}/seed{s}".format(**wc) for s in SEEDS],
    log:
        f"logs/train/{GROUP_LOG}.log",
    benchmark:
        f"benchmarks/train/{GROUP_LOG}.tsv"
    threads: config["train"]["threads"]
    resources:
        # one GPU per job (sbatch --gpus=1 under profiles/slurm) only when the config demands CUDA
        gpu=1 if config["device"] == "cuda" else 0,
    conda:
        ENV
    script:
        "../../scripts/train.py"
