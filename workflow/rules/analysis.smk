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
    params:
        # Part of the job's identity: changing a rule, an analysis setting or the probes' seed reruns it.
        settings={k: config[k] for k in ("analysis", "verdicts", "selection")},
        probes={k: config["grad_variance"][k] for k in ("probes", "draws", "seed")},
        benchmarks=analysis_benchmarks,
    script:
        "../../scripts/analyze.py"
