# Figures (matplotlib SVG, also marked for `snakemake --report`) and the self-contained HTML report,
# both drawn from the analysis tables (input functions in report_common.smk).


include: "report_common.smk"


report: "../report/workflow.rst"


rule figures:
    input:
        **figure_rule_inputs("figures"),
        sources=FIGURE_SOURCES,
    output:
        **figure_rule_outputs("figures"),
    log:
        "logs/figures/spine.log",
    # first where one core frees before the other (issue 14: REPORT_FIGURES says how the two jobs are split)
    priority: 1
    conda:
        ENV
    script:
        "../../scripts/figures.py"


rule analysis_figures:
    input:
        **figure_rule_inputs("analysis_figures"),
        sources=FIGURE_SOURCES,
    output:
        **figure_rule_outputs("analysis_figures"),
    log:
        "logs/figures/analysis.log",
    conda:
        ENV
    script:
        "../../scripts/figures.py"


# without probes this rule draws nothing and nothing asks for it
rule gradvar_figures:
    input:
        **figure_rule_inputs("gradvar_figures"),
        sources=FIGURE_SOURCES,
    output:
        **figure_rule_outputs("gradvar_figures"),
    log:
        "logs/figures/gradvar.log",
    conda:
        ENV
    script:
        "../../scripts/figures.py"


rule report:
    input:
        unpack(report_inputs),
    output:
        REPORT,
    log:
        "logs/report.log",
    conda:
        ENV
    script:
        "../../scripts/report.py"
