"""The replication page reads each workload's tables: verdicts side by side, agreement, figures, a self-contained file."""
import re
from pathlib import Path

import pandas as pd
import pytest

from optbench.compare import Workload, comparison_table, read_workload, render_comparison, summary_frame
from optbench.replicate import load_replication, replicate
from optbench.config import ConfigError
from optbench.tables import write_table
from tests.conftest import ROOT, TINY

CLAIM_COLUMNS = ["claim_id", "claim_text", "verdict", "domain", "headline", "finding", "reason", "evidence", "rule",
                 "anchor"]
SVG = ('<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
       '<g id="figure_1"><use href="#m1"/></g></svg>')


def workload(tmp_path: Path, name: str, verdicts: dict[str, str], figures=("scaling",)) -> Workload:
    results = tmp_path / name / "results"
    (results / "figures").mkdir(parents=True)
    rows = [{"claim_id": claim, "claim_text": f"text of {claim}", "verdict": verdict, "domain": f"{name} domain",
             "headline": f"{name} {claim} headline", "finding": "", "reason": "", "evidence": "", "rule": "r",
             "anchor": ""} for claim, verdict in verdicts.items()]
    write_table(pd.DataFrame(rows, columns=CLAIM_COLUMNS), results / "tables" / "claims.csv", "claims")
    for figure in figures:
        (results / "figures" / f"{figure}.svg").write_text(SVG)
    return Workload(name, results, f"the {name} workload")


def test_agreement_says_replicates_conflicts_or_how_many_decided(tmp_path):
    a = workload(tmp_path, "a", {"C1": "supported", "C2": "supported", "C3": "inconclusive", "C4": "supported"})
    b = workload(tmp_path, "b", {"C1": "supported", "C2": "not supported", "C3": "inconclusive",
                                 "C4": "inconclusive"})
    table = comparison_table([read_workload(a), read_workload(b)])
    agreement = {row[0].sort: row[-1].text for row in table.rows}
    assert agreement == {"C1": "replicates", "C2": "conflicts", "C3": "0 of 2 decided",
                         "C4": "1 of 2 decided (supported)"}
    first = table.rows[0]
    assert [cell.badge for cell in first[1:3]] == ["yes", "yes"] and "a C1 headline" in first[1].detail


def test_the_page_is_self_contained_with_unique_ids_and_every_workload(tmp_path):
    workloads = [workload(tmp_path, "a", {"C1": "supported"}), workload(tmp_path, "b w", {"C1": "not supported"})]
    html = render_comparison("<b>replication</b>", workloads, ["c skipped: its files are missing"])
    assert "&lt;b&gt;replication&lt;/b&gt;" in html and "c skipped" in html
    assert html.count("<svg") == 2 and re.search(r"https?://(?!www\.w3\.org)", html) is None
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "ids repeat across the workloads' figures"
    frame = summary_frame(workloads)
    assert list(frame["verdict"]) == ["supported", "not supported"]


def test_replication_config_errors_name_the_entry(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("workloads:\n  - {name: a}\n")
    with pytest.raises(ConfigError, match=r"workloads\[0\] needs 'name' and 'configfile'"):
        load_replication(path)
    path.write_text(f"workloads:\n  - {{name: a, configfile: {TINY}}}\n  - {{name: a, configfile: {TINY}}}\n")
    with pytest.raises(ConfigError, match="used twice"):
        load_replication(path)


def test_an_optional_workload_without_its_files_is_skipped_and_named(tmp_path):
    finished = workload(tmp_path, "tiny", {"C1": "supported"})
    fashion = tmp_path / "fashion.yaml"
    fashion.write_text((TINY.read_text().replace("name: mnist1d", f"name: fashion_mnist\n  root: {tmp_path}")))
    spec = tmp_path / "r.yaml"
    spec.write_text(f"title: t\nworkloads:\n  - {{name: tiny, configfile: {TINY}, directory: {finished.results.parent}}}\n"
                    f"  - {{name: fashion, configfile: {fashion}, optional: true}}\n")
    output = replicate(spec, output=tmp_path / "compare.html", run=False)
    html = output.read_text()
    assert "fashion skipped" in html and "dataset.root" in html and "<strong>tiny</strong>" in html


def test_shipped_replication_config_names_real_configs():
    spec = load_replication(ROOT / "configs" / "replication.yaml")
    for entry in spec["workloads"]:
        assert (ROOT / entry["configfile"]).exists(), entry


def test_a_relative_dataset_root_is_pinned_to_where_replicate_runs(tmp_path, monkeypatch):
    """Each workload runs in its own folder: a relative root must still name the files validation found."""
    from optbench.replicate import pin_dataset_root

    monkeypatch.chdir(tmp_path)
    config = {"dataset": {"name": "fashion_mnist", "root": "data/torchvision"}}
    assert pin_dataset_root(config, ["results/report.html"]) == [
        "results/report.html", "--config", f'dataset={{"root": "{tmp_path}/data/torchvision"}}']
    assert config["dataset"]["root"] == str(tmp_path / "data" / "torchvision")
    beside = pin_dataset_root({"dataset": {"root": "x"}}, ["--config", "device=cpu", "--dry-run"])
    assert beside == ["--config", f'dataset={{"root": "{tmp_path}/x"}}', "device=cpu", "--dry-run"]
    absolute = {"dataset": {"name": "mnist1d", "root": "/elsewhere"}}
    assert pin_dataset_root(absolute, []) == [] and absolute["dataset"]["root"] == "/elsewhere"
    # a torchvision dataset without `root:` takes the schema's relative default, which must be pinned too
    unset = {"dataset": {"name": "fashion_mnist"}}
    assert pin_dataset_root(unset, []) == ["--config", f'dataset={{"root": "{tmp_path}/data/torchvision"}}']
    assert pin_dataset_root({"dataset": {"name": "mnist1d"}}, []) == []   # MNIST-1D reads no root
