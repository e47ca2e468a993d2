# The analysis stage: every statistic of the run and probe tables, and each claim's verdict by the rule
# declared in config `verdicts`. Figures and the report only format what this rule writes.


include: "analysis_common.smk"


rule analyze:
    input:
        **ANALYSIS_INPUTS,
    output:
        **{name: analysis_output(name) for name in ANALYSIS_TABLES},
        claims_json="results/tables/claims.json",
    log:
        "logs/analyze.log",
    conda:
        ENV
    # the last job of the grid: its bootstrap uses two threads where there are two cores (Snakemake scales
    # the count down to --cores; the numbers do not depend on it)
    threads: 2
    params:
        # Part of the job's identity (canonical JSON, so key order never reruns it): changing a rule, an
        # analysis setting, the probes' seed or what the analysis code does reruns the analysis, and only it.
        settings=ANALYSIS_IDENTITY,
        code=code_digest("analysis"),
        benchmarks=analysis_benchmarks,
    script:
        "../../scripts/analyze.py"
