"""Snakemake job: draw the figures named by the rule's outputs from the tables in its inputs."""
from optbench.figures import make
from optbench.io import atomic_write_text
from optbench.jobs import job_log
from optbench.tables import read_table

with job_log(snakemake.log[0]) as log:
    # "sources" lists the drawing code (an input only so that editing it redraws)
    tables = {name: read_table(path, name) for name, path in snakemake.input.items() if name != "sources"}
    for name, path in snakemake.output.items():
        svg = make(name, tables, snakemake.config)
        atomic_write_text(svg, path)
        log(f"{path}: {len(svg) / 1024:.0f} KiB")
