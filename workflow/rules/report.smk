# Figures (matplotlib SVG, also marked for `snakemake --report`) and the self-contained HTML report.
# Placeholder until the report module lands: renders the tables only.


rule report:
    input:
        runs="results/tables/runs.csv",
        status="results/tables/run_status.csv",
    output:
        REPORT,
    log:
        "logs/report.log",
    conda:
        ENV
    shell:
        "python -c \"import pandas as pd; pd.read_csv('{input.runs}').head(50).to_html('{output}')\" > {log} 2>&1"
