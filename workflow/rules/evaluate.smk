# Evaluation of every checkpoint of a bundle's runs on train, validation and test, in one process:
# one job per bundle and batch size, one rule. Like training (train.smk says why), the job writes each
# run's eval.csv and lists it in its receipt, the rule's output.
#
# A run's train job has usually evaluated it already, from the checkpoints in memory (scripts/train.py:
# same code, settings and threads, so the same bytes), and recorded in eval.json what from; this job
# then checks that record against these checkpoints and settings and keeps the file, without loading
# torch, the data or the checkpoints (≈ 2.5 s a job, issue 14). Any other run it evaluates itself, so a
# change of the evaluation settings reruns this job and evaluates every run again, never training.


rule evaluate:
    input:
        data=DATA,
        trained=trained_bundle,
    output:
        RECEIPT["evaluate"],
    log:
        f"logs/evaluate/{BUNDLE_LOG}.log",
    benchmark:
        f"benchmarks/evaluate/{BUNDLE_LOG}.tsv"
    priority: bundle_priority
    # cluster: a bundle's train, evaluate and probe jobs form one SLURM job (profiles/slurm)
    group:
        "runs"
    conda:
        ENV
    threads: config["evaluate"]["threads"]
    resources:
        gpu=1 if DEVICE == "cuda" else 0,
    params:
        bundle=lambda wildcards: wildcards.bundle,
        members=bundle_members,
        run_dirs=bundle_run_dirs,
        # a change of the evaluation settings or code reruns the job (a change of its runs reruns their
        # train job); the job re-evaluates the runs whose eval.json records other settings or code
        settings=dict(sorted(config["evaluate"].items())),
        code=CODE["evaluate"],
        device=DEVICE,
    script:
        "../../scripts/evaluate.py"
