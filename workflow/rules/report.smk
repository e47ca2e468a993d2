# Figures (matplotlib SVG, also marked for `snakemake --report`) and the self-contained HTML report;
# the sections of optional stages follow the tables present (input functions in report_common.smk).


include: "report_common.smk"


report: "../report/workflow.rst"


rule figures:
    input:
        unpack(report_spine_figure_tables),
        sources=FIGURE_SOURCES,
    output:
        **report_figure_outputs("spine"),
    log:
        "logs/figures/spine.log",
    conda:
        ENV
    script:
        "../../scripts/figures.py"


rule analysis_figures:
    input:
        unpack(report_analysis_figure_tables),
        sources=FIGURE_SOURCES,
    output:
        **report_figure_outputs("analysis"),
    log:
        "logs/figures/analysis.log",
    conda:
        ENV
    script:
        "../../scripts/figures.py"


rule gradvar_figures:
    input:
        unpack(lambda wildcards: report_stage_tables("gradvar")),
        sources=FIGURE_SOURCES,
    output:
        **report_figure_outputs("gradvar"),
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
    params:
        benchmarks=report_benchmarks,
    log:
        "logs/report.log",
    conda:
        ENV
    script:
        "../../scripts/report.py"
