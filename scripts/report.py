"""Snakemake job: render results/report.html from the tables and figures in the rule's inputs."""
from pathlib import Path

import pandas as pd

from optbench.io import atomic_write_text
from optbench.jobs import job_log
from optbench.report import TEMPLATE_DIR, build_context, provenance, read_benchmarks, render

FIGURE = "figure_"

with job_log(snakemake.log[0]) as log:
    tables, svgs = {}, {}
    for name, path in snakemake.input.items():
        if name == "sources":  # templates and rendering code: inputs only so that editing them re-renders
            continue
        if name.startswith(FIGURE):
            svgs[name[len(FIGURE):]] = Path(path).read_text()
        else:
            tables[name] = pd.read_csv(path)
    captions = {name: (TEMPLATE_DIR / f"{name}.rst").read_text() for name in svgs
                if (TEMPLATE_DIR / f"{name}.rst").exists()}
    benchmarks = read_benchmarks(snakemake.params.benchmarks)
    context = build_context(snakemake.config, tables, svgs, captions, benchmarks,
                            provenance(snakemake.config, Path(snakemake.scriptdir).parent))
    html = render(context)
    atomic_write_text(html, snakemake.output[0])
    log(f"{snakemake.output[0]}: {len(html) / 1024:.0f} KiB, {len(svgs)} figures, tables {sorted(tables)}")
