"""The Snakemake DAG end to end: dry run of the default config, the tiny config, idempotence, lint."""
import re
import time

import pandas as pd
import pytest
import yaml

from optbench.config import experiment_tag, groups, runs
from tests.conftest import ROOT, TINY, snakemake

pytestmark = pytest.mark.workflow


def planned_jobs(result) -> dict[str, int]:
    """rule → job count from a dry run's job table."""
    return {line.split()[0]: int(line.split()[1]) for line in result.stdout.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit() and line.split()[0] != "total"}


def test_default_config_dry_run_plans_one_train_and_evaluate_job_per_bundle(tmp_path):
    counts = planned_jobs(snakemake(tmp_path, "-n", "--quiet", "rules", configfile=ROOT / "config.yaml"))
    # bundle_size 36: each (optimizer, batch size) is one bundle of 12 LRs × 3 seeds, and each of
    # literature.malladi's two variants one of 3 seeds at its batch size; one rule per stage
    assert counts["train"] == 12 and counts["evaluate"] == 12 and counts["prepare_data"] == 1
    assert counts["grad_variance"] == 2 and counts["analyze"] == 1
    assert counts["aggregate"] == 1 and counts["report"] == 1


def test_tiny_config_runs_end_to_end(tiny_workdir, tiny_config):
    tables = tiny_workdir / "results" / "tables"
    table = pd.read_csv(tables / "runs.csv")
    n_runs = len(runs(tiny_config))
    assert table.groupby(["optimizer", "batch_size", "lr", "seed"]).ngroups == n_runs
    assert set(table["split"]) == {"train", "val", "test"}
    status = pd.read_csv(tables / "run_status.csv")
    assert len(status) == n_runs and set(status["status"]) <= {"ok", "diverged"}
    assert (tiny_workdir / "results" / "report.html").stat().st_size > 0
    exp = experiment_tag(tiny_config, "cpu")
    for optimizer, batch_size, _ in groups(tiny_config):
        assert list((tiny_workdir / "benchmarks" / "train" / exp).glob(f"{optimizer}-*_bs{batch_size}_l0s0.tsv"))
    # training lowers the loss for most runs (claim C1 on the tiny grid)
    train = table[table["split"] == "train"]
    first = train[train["step"] == 0].set_index(["optimizer", "batch_size", "lr", "seed"])["loss"]
    last = train.loc[train.groupby(["optimizer", "batch_size", "lr", "seed"])["step"].idxmax()].set_index(
        ["optimizer", "batch_size", "lr", "seed"])["loss"]
    assert (last < first).mean() > 0.8


def test_second_invocation_has_nothing_to_do(tiny_workdir):
    result = snakemake(tiny_workdir, "-n", "--cores", "2")
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.parametrize("source, reruns", [
    ("workflow/report/report.css", {"report"}),
    ("optbench/figures.py", {"figures", "analysis_figures", "gradvar_figures", "report"}),
    ("optbench/train.py", set()),   # library code behind the grid: never retrains it unasked
])
def test_editing_presentation_code_reruns_what_it_draws_and_nothing_upstream(tiny_workdir, source, reruns):
    path = ROOT / source
    original = path.read_bytes()
    try:
        path.write_bytes(original + (b"\n/* edited */\n" if source.endswith(".css") else b"\n# edited\n"))
        result = snakemake(tiny_workdir, "-n", "--cores", "2")
    finally:
        path.write_bytes(original)
    planned = set(re.findall(r"^(\w+)\s+\d+$", result.stdout, flags=re.M)) - {"all", "total"}
    assert planned == reruns
    # content, not mtime, decides: the restored file (newer mtime, same bytes) reruns nothing
    assert "Nothing to be done" in snakemake(tiny_workdir, "-n", "--cores", "2").stdout


def test_tables_are_bit_identical_when_rerun_from_scratch(tiny_workdir, tmp_path):
    snakemake(tmp_path, "--cores", "2", "results/tables/runs.csv", "results/tables/minibatch.csv")
    for name in ("runs.csv", "minibatch.csv"):
        assert (tmp_path / "results" / "tables" / name).read_bytes() == \
            (tiny_workdir / "results" / "tables" / name).read_bytes(), name


def test_lint_is_clean(tmp_path):
    result = snakemake(tmp_path, "--lint", check=False)
    assert result.returncode == 0 and "Congratulations" in result.stdout + result.stderr, result.stdout[-3000:]


# ---- one rule per stage: what Snakemake's per-rule options need ----

def test_resources_of_a_stage_are_set_by_its_rule_name(tiny_workdir):
    result = snakemake(tiny_workdir, "-n", "--forcerun", "train", "--set-resources", "train:runtime=5",
                       "evaluate:mem_mb=123")
    trains = re.findall(r"rule train:\n(?:.+\n)*?\s+resources: (.*)", result.stdout)
    assert len(trains) == 4 and all("runtime=5" in r for r in trains)


def test_forcerun_train_plans_every_train_job_and_what_reads_their_files(tiny_workdir):
    counts = planned_jobs(snakemake(tiny_workdir, "-n", "--quiet", "rules", "--forcerun", "train"))
    assert counts["train"] == 4 and counts["evaluate"] == 4 and counts["aggregate"] == 1
    # a probe depends on its run's identity, in its path: same code and settings, same bits, no rerun
    assert "grad_variance" not in counts


def test_until_evaluate_stops_after_the_evaluate_stage(tmp_path):
    counts = planned_jobs(snakemake(tmp_path, "-n", "--quiet", "rules", "--until", "evaluate"))
    assert counts == {"prepare_data": 1, "train": 4, "evaluate": 4}


def test_the_rule_graph_has_one_node_per_stage(tiny_workdir):
    graph = snakemake(tiny_workdir, "--rulegraph").stdout
    names = re.findall(r'label = "(\w+)"', graph)
    assert sorted(names) == sorted({"all", "prepare_data", "train", "evaluate", "grad_variance", "aggregate_gradvar",
                                    "analyze_probes", "aggregate", "analyze", "figures", "analysis_figures",
                                    "gradvar_figures", "report"})


@pytest.mark.parametrize("key, value, reruns", [
    # the probes' statistics read only their own settings: a verdict's threshold leaves their bootstrap alone
    (("verdicts", "C1", "min_drop"), 0.2, {"analyze", "figures", "analysis_figures", "report"}),
    (("analysis", "bootstrap_resamples"), 499, {"analyze_probes", "analyze", "figures", "analysis_figures",
                                                "gradvar_figures", "report"}),
])
def test_an_analysis_setting_reruns_the_analysis_rules_that_read_it(tiny_workdir, tmp_path, key, value, reruns):
    config = yaml.safe_load(TINY.read_text())
    *path, last = key
    target = config
    for part in path:
        target = target.setdefault(part, {})
    target[last] = value
    configfile = tmp_path / "edited.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))  # key order as in the file
    result = snakemake(tiny_workdir, "-n", "--cores", "2", configfile=configfile)
    assert set(re.findall(r"^(\w+)\s+\d+$", result.stdout, flags=re.M)) - {"all", "total"} == reruns
