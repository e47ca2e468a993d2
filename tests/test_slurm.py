"""profiles/slurm on a real one-node SLURM cluster (tools/slurm/start.sh): the jobs go through sbatch,
the tables equal a local run's, and a job that fails on the cluster fails the run with its log path."""
from __future__ import annotations

import contextlib
import fcntl
import math
import os
import re
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from tests.conftest import BIN, ROOT, TINY, snakemake
from tests.test_terminal import corrupt_dataset_config

pytestmark = pytest.mark.slurm

PROFILE = ROOT / "profiles" / "slurm"
START, STOP = ROOT / "tools" / "slurm" / "start.sh", ROOT / "tools" / "slurm" / "stop.sh"
STATE = Path(os.environ.get("OPTBENCH_SLURM_DIR", "/tmp/optbench-slurm"))
TIMEOUT = 300  # seconds per snakemake run; the tiny run takes about 90 s on 2 cores
# The tables the cluster run builds: everything up to aggregation (figures and the report add only
# local work). run_status.csv is compared without its wall-clock columns.
TABLES = ["runs.csv", "minibatch.csv", "gradvar.csv", "gradvar_layers.csv", "gradvar_slopes.csv"]
TARGETS = [f"results/tables/{name}" for name in [*TABLES, "run_status.csv"]]
# Only for this test cluster, which has no accounting database (so `sacct` knows no jobs), and whose
# jobs take seconds: poll squeue early. The profile itself is used unchanged.
TEST_CLUSTER_ARGS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
                     "--seconds-between-status-checks", "2"]
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)")


def alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def exclusive(path: Path, timeout: float = 600):
    """One test session at a time on the cluster: another's stop.sh would kill this one's jobs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, f"another test session held {path} for {timeout} s"
                time.sleep(2)
        yield


@pytest.fixture(scope="module")
def cluster():
    """The one-node cluster, started for this module (and stopped after it, unless it was already up)."""
    with exclusive(STATE.parent / f"{STATE.name}.test.lock"):
        was_running = alive(STATE / "slurmctld.pid")
        started = subprocess.run([str(START)], capture_output=True, text=True, timeout=300)
        if started.returncode == 77:
            pytest.skip(f"this machine cannot run SLURM: {started.stderr.strip()}")
        assert started.returncode == 0, f"tools/slurm/start.sh failed:\n{started.stdout}\n{started.stderr}"
        node_cpus = int(subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True,
                                       check=True).stdout.split()[0])
        yield SimpleNamespace(state=STATE, node_cpus=node_cpus)
        if not was_running:
            subprocess.run([str(STOP)], capture_output=True, timeout=120)


def start_profile_run(workdir: Path, configfile: Path, cluster) -> subprocess.Popen:
    """`snakemake --profile profiles/slurm` in the background, under a hard timeout, output to run.log."""
    cores = yaml.safe_load((PROFILE / "config.yaml").read_text())["cores"]
    # A job asking for more CPUs than the node has would pend forever.
    fit = ["--cores", str(cluster.node_cpus)] if cluster.node_cpus < cores else []
    command = ["timeout", "-k", "10", str(TIMEOUT), str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"),
               "--configfile", str(configfile), "--directory", str(workdir), "--profile", str(PROFILE),
               *TEST_CLUSTER_ARGS, *fit, *TARGETS]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    with open(workdir / "run.log", "w") as log:
        return subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env)


def finish(process: subprocess.Popen, workdir: Path) -> SimpleNamespace:
    try:
        returncode = process.wait(timeout=TIMEOUT + 30)
    finally:
        if process.poll() is None:
            process.terminate()
    return SimpleNamespace(returncode=returncode, output=(workdir / "run.log").read_text(), workdir=workdir)


@pytest.fixture(scope="module")
def runs(cluster, request, tmp_path_factory):
    """The tiny config on the cluster, the failing config on the cluster and the tiny config run locally,
    all at once: the cluster runs spend most of their time waiting for status checks."""
    tiny_dir, failing_dir = tmp_path_factory.mktemp("slurm_tiny"), tmp_path_factory.mktemp("slurm_failing")
    tiny = start_profile_run(tiny_dir, TINY, cluster)
    failing = start_profile_run(failing_dir, corrupt_dataset_config(failing_dir), cluster)
    try:
        local = request.getfixturevalue("tiny_workdir")
    finally:
        results = SimpleNamespace(tiny=finish(tiny, tiny_dir), failing=finish(failing, failing_dir))
    results.local = local
    return results


def job_records(state: Path) -> dict[str, dict[str, str]]:
    """SLURM's own record of every finished job (jobcomp/filetxt, one `Key=Value ...` line per job)."""
    records = {}
    for line in (state / "jobcomp.txt").read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        records[fields["JobId"]] = fields
    return records


def test_tables_equal_the_local_run_exactly(runs):
    assert runs.tiny.returncode == 0, runs.tiny.output[-5000:]
    # Same config, same thread count per job (train/evaluate threads: 1 both ways): bit-identical.
    for name in TABLES:
        assert (runs.tiny.workdir / "results/tables" / name).read_bytes() == \
            (runs.local / "results/tables" / name).read_bytes(), name
    cluster_status, local_status = (pd.read_csv(d / "results/tables/run_status.csv")
                                    for d in (runs.tiny.workdir, runs.local))
    timing = [c for c in local_status.columns if c.endswith("_seconds")]
    assert timing, "run_status.csv lost its timing column: update this test"
    pd.testing.assert_frame_equal(cluster_status.drop(columns=timing), local_status.drop(columns=timing),
                                  check_exact=True)
    assert set(cluster_status["device"]) == {"cpu"}


def test_jobs_went_through_sbatch_grouped_and_aggregation_ran_locally(runs, cluster):
    assert runs.tiny.returncode == 0, runs.tiny.output[-5000:]
    submitted = dict(SUBMITTED.findall(runs.tiny.output))
    records = job_records(cluster.state)
    mine = {job for job, record in records.items() if record["WorkDir"] == str(runs.tiny.workdir)}
    assert set(submitted) == mine, (submitted, mine)
    for job in submitted:
        assert records[job]["JobState"] == "COMPLETED" and records[job]["ExitCode"] == "0:0", records[job]
        assert int(records[job]["ProcCnt"]) <= cluster.node_cpus

    # One SLURM job prepares the data; the train/evaluate/probe jobs arrive grouped, as many
    # connected components (one per train job) per SLURM job as the profile allows.
    # one rule per stage: a train job is the rule with its wildcards (optimizer, batch size, bundle)
    train_jobs = len(set(re.findall(r"rule train:\n(?:\s+\w+: .*\n)*?\s+wildcards: (.*)", runs.tiny.output)))
    assert train_jobs >= 2
    per_job = yaml.safe_load((PROFILE / "config.yaml").read_text())["group-components"]["runs"]
    logs = list(submitted.values())
    assert sum("/rule_prepare_data/" in log for log in logs) == 1
    assert sum("/group_runs_" in log for log in logs) == math.ceil(train_jobs / per_job)
    assert len(logs) == 1 + math.ceil(train_jobs / per_job)
    for rule in ("aggregate", "aggregate_gradvar"):
        assert f"localrule {rule}:" in runs.tiny.output


def test_a_job_failing_on_the_cluster_fails_the_run_and_names_its_logs(runs, cluster):
    failing = runs.failing
    assert failing.returncode not in (0, 124, 137), failing.output[-5000:]
    assert "Error in rule prepare_data" in failing.output
    (job, slurm_log), = SUBMITTED.findall(failing.output)
    assert job_records(cluster.state)[job]["JobState"] == "FAILED"
    # The message points at both logs: the rule's own log and the SLURM job's output.
    rule_logs = re.findall(r"log: (logs/prepare_data/\S+\.log), (\S+) \(check log", failing.output)
    assert rule_logs and rule_logs[0][1] == slurm_log, failing.output[-3000:]
    assert "Traceback" in (failing.workdir / rule_logs[0][0]).read_text()
    assert Path(slurm_log).is_file()


@pytest.mark.parametrize("device, gpus", [("cpu", "0"), ("auto", "0"), ("cuda", "1")])
def test_a_gpu_is_requested_only_when_the_config_demands_cuda(tmp_path, device, gpus):
    result = snakemake(tmp_path, "--profile", str(PROFILE), "-n", "--config", f"device={device}")
    requests = re.findall(r"resources: .*", result.stdout)
    train_like = [r for r in requests if "gpu=" in r]
    # train and evaluate jobs of the tiny config, each naming its GPU count
    assert len(train_like) == 2 * len(re.findall(r"rule train:", result.stdout)) > 0
    assert {re.search(r"gpu=(\d+)", r).group(1) for r in train_like} == {gpus}
