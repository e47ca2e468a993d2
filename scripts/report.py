"""Snakemake job: render results/report.html from the tables and figures in the rule's inputs."""
from pathlib import Path

from optbench.jobs import job_log
from optbench.io import atomic_write_text
from optbench.provenance import provenance
from optbench.report import TEMPLATE_DIR, build_context, render
from optbench.tables import read_table

FIGURE = "figure_"

with job_log(snakemake.log[0]) as log:
    tables, svgs, csv_texts = {}, {}, {}
    for name, path in snakemake.input.items():
        if name == "sources":  # templates and rendering code: inputs only so that editing them re-renders
            continue
        if name.startswith(FIGURE):
            svgs[name[len(FIGURE):]] = Path(path).read_text()
        else:
            tables[name] = read_table(path, name)
            csv_texts[name] = Path(path).read_text()  # the page hands out each table's own file
    captions = {name: (TEMPLATE_DIR / f"{name}.rst").read_text() for name in svgs
                if (TEMPLATE_DIR / f"{name}.rst").exists()}
    context = build_context(snakemake.config, tables, svgs, captions,
                            provenance(snakemake.config, Path(snakemake.scriptdir).parent), csv_texts)
    html = render(context)
    atomic_write_text(html, snakemake.output[0])
    log(f"{snakemake.output[0]}: {len(html) / 1024:.0f} KiB, {len(svgs)} figures, tables {sorted(tables)}")
