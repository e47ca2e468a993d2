# Tidy pandas tables over every run: the single source of the figures and the report.


rule aggregate:
    input:
        # the receipts list every run's files; the job checks those files against them
        trained=all_bundle_receipts("train"),
        evaluated=all_bundle_receipts("evaluate"),
    output:
        runs="results/tables/runs.csv",
        run_status="results/tables/run_status.csv",
        minibatch="results/tables/minibatch.csv",
        test_loop="results/tables/test_loop.csv",
    log:
        "logs/aggregate.log",
    conda:
        ENV
    script:
        "../../scripts/aggregate.py"
