# One job per group of runs sharing everything but the seed: import and set-up are paid once.


rule train:
    input:
        data=DATA,
    output:
        checkpoints=group_files("checkpoints.pt"),
        logs=group_files("log.csv"),
        meta=group_files("run.json"),
    params:
        run_dirs=lambda wc: [f"{GROUP_DIR}/seed{s}".format(**wc) for s in SEEDS],
    log:
        f"logs/train/{GROUP_LOG}.log",
    benchmark:
        f"benchmarks/train/{GROUP_LOG}.tsv"
    threads: config["train"]["threads"]
    conda:
        ENV
    script:
        "../../scripts/train.py"
