# The analysis stage: every statistic of the run and probe tables, and each claim's verdict by the rule
# declared in config `verdicts`. Figures and the report only format what these two rules write.


include: "analysis_common.smk"


# The probes' statistics first, in a job of their own (issue 14): a verdict's threshold then reruns
# analyze and not their bootstrap, and the bootstrap runs on a core that the last training jobs or
# aggregate leave free (on the default grid on 2 cores that gap is short: the tail did not get shorter,
# BENCHMARKS.md). One thread, so that one free core is enough (with two it would wait for both; the
# numbers do not depend on the count).
rule analyze_probes:
    input:
        **PROBE_ANALYSIS_INPUTS,
    output:
        **{name: analysis_output(name) for name in PROBE_ANALYSIS_TABLES},
    log:
        "logs/analyze_probes.log",
    conda:
        ENV
    params:
        # its identity: the settings it reads and the analysis code (analyze's digest)
        settings=PROBE_ANALYSIS_IDENTITY,
        code=CODE["analysis"],
    script:
        "../../scripts/analyze_probes.py"


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
        # Part of the job's identity (canonical JSON, so key order never reruns it): changing a rule, an
        # analysis setting, the probes' seed or what the analysis code does reruns the analysis, and only it.
        settings=ANALYSIS_IDENTITY,
        code=CODE["analysis"],
        benchmarks=analysis_benchmarks,
    script:
        "../../scripts/analyze.py"
