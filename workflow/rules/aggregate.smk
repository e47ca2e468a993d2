# Tidy pandas tables over every run: the single source of the figures and the report.


rule aggregate:
    input:
        evals=all_run_files("eval.csv"),
        logs=all_run_files("log.csv"),
        meta=all_run_files("run.json"),
    output:
        runs="results/tables/runs.csv",
        status="results/tables/run_status.csv",
        minibatch="results/tables/minibatch.csv",
    log:
        "logs/aggregate.log",
    conda:
        ENV
    script:
        "../../scripts/aggregate.py"
