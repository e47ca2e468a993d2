"""profiles/slurm on a real one-node SLURM cluster (tools/slurm/start.sh): the README's command runs as
written; a cancelled job is redone and the tables equal a local run's; a failing job fails the run with
its logs; SIGTERM ends a run; the site and workflow profiles stay apart."""
from __future__ import annotations

import contextlib
import fcntl
import math
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from optbench.config import load_config, partition, prepare_config, trained_optimizers
from tests.conftest import BIN, ROOT, TINY
from tests.test_terminal import corrupt_dataset_config, plugin_env

pytestmark = pytest.mark.slurm

PROFILE = ROOT / "profiles" / "slurm"
WORKFLOW_PROFILE = ROOT / "profiles" / "default"
START, STOP = ROOT / "tools" / "slurm" / "start.sh", ROOT / "tools" / "slurm" / "stop.sh"
STATE = Path(os.environ.get("OPTBENCH_SLURM_DIR", "/tmp/optbench-slurm"))
# seconds per snakemake run: the default experiment takes about 8 minutes on the 2-core test cluster,
# the tiny one about 90 s with the fast polling below
README_TIMEOUT, TIMEOUT = 1800, 600
# The tables the tiny cluster run builds and compares: the aggregated ones (figures and the report add
# only local work). run_status.csv is compared without its wall-clock columns.
TABLES = ["runs.csv", "minibatch.csv", "probe_moments.csv", "probe_draws.csv", "gradvar_layers.csv"]
TARGETS = [f"results/tables/{name}" for name in [*TABLES, "run_status.csv"]]
# Only for the runs other than the README's: this test cluster's jobs take seconds, so poll every 2 s
# instead of the profile's first check after 60 s. Everything else is the profile's.
FAST = ["--slurm-init-seconds-before-status-checks", "2"]
SUBMITTED = re.compile(r"SLURM job (\d+) runs (.*) \(log: (\S+)\)$", re.M)


def alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def exclusive(path: Path, timeout: float = 1800):
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
        cores = yaml.safe_load((PROFILE / "config.yaml").read_text())["cores"]
        if node_cpus < cores:  # the README's command cannot be told otherwise: its jobs would pend forever
            pytest.skip(f"the test node has {node_cpus} CPUs; profiles/slurm asks for {cores} per job")
        try:
            yield SimpleNamespace(state=STATE, node_cpus=node_cpus)
        finally:
            if not was_running:
                subprocess.run([str(STOP)], capture_output=True, timeout=120)


def readme_command() -> list[str]:
    """The SLURM command of the README's "On a SLURM cluster" section, as written there."""
    section = (ROOT / "README.md").read_text().split("## On a SLURM cluster", 1)[1]
    line, = re.findall(r"^\.venv/bin/snakemake --profile profiles/slurm[^\n#]*", section, re.M)
    return shlex.split(line)


def start(workdir: Path, command: list[str], timeout: int = TIMEOUT) -> subprocess.Popen:
    """A snakemake command in the background from the repository, under a hard timeout, output to run.log."""
    with open(workdir / "run.log", "w") as log:
        return subprocess.Popen(["timeout", "-k", "10", str(timeout), *command], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, env=plugin_env())


def profile_run(workdir: Path, configfile: Path, *targets: str) -> subprocess.Popen:
    return start(workdir, [str(BIN / "snakemake"), "--profile", str(PROFILE), "--configfile", str(configfile),
                           "--directory", str(workdir), *FAST, *targets])


def finish(process: subprocess.Popen, workdir: Path, timeout: int = TIMEOUT) -> SimpleNamespace:
    try:
        returncode = process.wait(timeout=timeout + 30)
    finally:
        if process.poll() is None:
            process.terminate()
    return SimpleNamespace(returncode=returncode, output=(workdir / "run.log").read_text(), workdir=workdir)


def queue(workdir: Path) -> dict[str, str]:
    """SLURM job id → state, for the jobs of one run (by its working directory) still in the queue."""
    lines = subprocess.run(["squeue", "-h", "-o", "%i|%T|%Z"], capture_output=True, text=True).stdout
    return {job: state for job, state, where in (line.split("|") for line in lines.splitlines())
            if where == str(workdir)}


def cancel_a_running_group_job(workdir: Path, cancelled: list, deadline: float) -> None:
    """scancel the first grouped job of the run seen running, once a train job of it has written its
    receipt (so the retry has finished work to keep), or after 20 s of running."""
    running_since = {}
    while time.monotonic() < deadline and not cancelled:
        submitted = dict((job, what) for job, what, _ in SUBMITTED.findall((workdir / "run.log").read_text()))
        for job, state in queue(workdir).items():
            if state == "RUNNING" and "train" in submitted.get(job, ""):
                running_since.setdefault(job, time.monotonic())
                trained = list((workdir / "results" / "runs").rglob("bundle-*.train.json"))
                if trained or time.monotonic() - running_since[job] > 20:
                    subprocess.run(["scancel", job], check=True)
                    cancelled.append(job)
                    return
        time.sleep(0.5)


@pytest.fixture(scope="module")
def runs(cluster, request, tmp_path_factory):
    """All at once (the cluster runs spend most of their time waiting for a status check): the README's
    command; the tiny config with one grouped job cancelled; a failing config; the tiny config locally."""
    readme_dir = tmp_path_factory.mktemp("slurm_readme")
    tiny_dir, failing_dir = tmp_path_factory.mktemp("slurm_tiny"), tmp_path_factory.mktemp("slurm_failing")
    readme = start(readme_dir, [*readme_command(), "--directory", str(readme_dir)], timeout=README_TIMEOUT)
    tiny = profile_run(tiny_dir, TINY, *TARGETS)
    failing = profile_run(failing_dir, corrupt_dataset_config(failing_dir))
    cancelled = []
    canceller = threading.Thread(target=cancel_a_running_group_job,
                                 args=(tiny_dir, cancelled, time.monotonic() + TIMEOUT), daemon=True)
    canceller.start()
    try:
        local = request.getfixturevalue("tiny_workdir")
    finally:
        results = SimpleNamespace(tiny=finish(tiny, tiny_dir), failing=finish(failing, failing_dir),
                                  readme=finish(readme, readme_dir, README_TIMEOUT))
    canceller.join(timeout=5)
    results.local, results.cancelled = local, cancelled
    return results


def job_records(state: Path) -> dict[str, dict[str, str]]:
    """SLURM's own record of every finished job (jobcomp/filetxt, one `Key=Value ...` line per job)."""
    records = {}
    for line in (state / "jobcomp.txt").read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        records[fields["JobId"]] = fields
    return records


def snakemake_log(workdir: Path) -> str:
    """Snakemake's complete output of the run (its default format), kept in .snakemake/log/."""
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    return logs[-1].read_text()


def test_the_readme_command_runs_the_default_experiment_as_written(runs, cluster):
    readme = runs.readme
    assert readme.returncode == 0, readme.output[-5000:]
    assert (readme.workdir / "results" / "report.html").stat().st_size > 0
    submitted = {job: (what, log) for job, what, log in SUBMITTED.findall(readme.output)}
    records = job_records(cluster.state)
    mine = {job for job, record in records.items() if record["WorkDir"] == str(readme.workdir)}
    assert set(submitted) == mine, (submitted, mine)
    for job in mine:
        assert records[job]["JobState"] == "COMPLETED" and records[job]["ExitCode"] == "0:0", records[job]
        assert records[job]["Name"].startswith("optbench_"), records[job]  # slurm-jobname-prefix
    # one data job, then the train bundles grouped as the workflow profile says, nothing else
    config = prepare_config(load_config(ROOT / "config.yaml"))
    batch_sizes = trained_optimizers(config)  # grid optimizers at every batch size, Malladi's variants at one
    bundles = sum(len(batch_sizes[optimizer]) for optimizer, _ in partition(config))
    per_job = yaml.safe_load((WORKFLOW_PROFILE / "config.yaml").read_text())["group-components"]["runs"]
    logs = [log for _, log in submitted.values()]
    assert sum("/rule_prepare_data/" in log for log in logs) == 1
    assert sum("/group_runs_" in log for log in logs) == math.ceil(bundles / per_job) == len(logs) - 1
    full_log = snakemake_log(readme.workdir)
    for rule in ("aggregate", "analyze", "report"):
        assert f"localrule {rule}:" in full_log


def test_a_cancelled_job_is_redone_and_the_tables_equal_the_local_run_exactly(runs, cluster):
    assert runs.tiny.returncode == 0, runs.tiny.output[-5000:]
    (job,) = runs.cancelled
    records = job_records(cluster.state)
    assert records[job]["JobState"] == "CANCELLED", records[job]
    # line by line: a pattern spanning lines with nested repeats backtracks for ever when it does not match
    # the failure is shown with the cancelled SLURM job's own log (a group job fails as its group)
    assert re.search(r"^\[[\d:]+\]  FAILED group job runs", runs.tiny.output, re.M), runs.tiny.output[-5000:]
    assert re.search(rf"^[ \t]+log: \S+/slurm_logs/\S+/{job}\.log, last \d+ of \d+ lines:", runs.tiny.output, re.M)
    assert "Trying to restart job" in runs.tiny.output
    mine = [r for r in records.values() if r["WorkDir"] == str(runs.tiny.workdir)]
    assert sum(r["JobState"] == "COMPLETED" for r in mine) == len(mine) - 1  # the retry completed
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


def test_a_job_failing_on_the_cluster_is_tried_three_times_and_fails_the_run_with_its_logs(runs, cluster):
    failing = runs.failing
    assert failing.returncode not in (0, 124, 137), failing.output[-5000:]
    submitted = SUBMITTED.findall(failing.output)
    assert len(submitted) == 3 and {what for _, what, _ in submitted} == {"prepare_data"}  # restart-times: 2
    records = job_records(cluster.state)
    assert [records[job]["JobState"] for job, _, _ in submitted] == ["FAILED"] * 3
    # each failure names the rule's log, with its last lines, and the SLURM job's log
    job, _, slurm_log = submitted[-1]
    block = re.search(rf"FAILED prepare_data \(jobid \d+\).*\n((?:[ ]{{5,}}.*\n)+)", failing.output.split(
        f"SLURM job {job} runs")[1])
    assert block, failing.output[-3000:]
    rule_log = re.search(r"log: (logs/prepare_data/\S+\.log), last \d+ of \d+ lines:", block.group(1)).group(1)
    assert "Traceback" in (failing.workdir / rule_log).read_text()
    assert "│ AssertionError" in block.group(1) and f"log: {slurm_log}" in block.group(1)
    assert Path(slurm_log).is_file()


def test_sigterm_ends_a_run_and_its_submitted_jobs_finish_on_the_cluster(runs, cluster, tmp_path):
    """Snakemake's SIGTERM: submit nothing more and exit within seconds (before the status command was
    squeue, the run never ended on this cluster); the jobs already submitted are left to the cluster and
    run to their end there (Ctrl-C cancels them instead; docs/slurm.md)."""
    process = profile_run(tmp_path, TINY)
    deadline = time.monotonic() + TIMEOUT
    while not re.search(r"SLURM job \d+ runs .*train", (tmp_path / "run.log").read_text()):
        assert time.monotonic() < deadline and process.poll() is None, (tmp_path / "run.log").read_text()
        time.sleep(0.5)
    terminated = time.monotonic()
    process.send_signal(signal.SIGTERM)  # to timeout(1), which passes it on to snakemake
    result = finish(process, tmp_path, timeout=300)
    assert result.returncode not in (0, 124, 137), result.output[-3000:]
    assert time.monotonic() - terminated < 120
    assert "Will exit after finishing currently running jobs" in result.output
    submitted = {job for job, _, _ in SUBMITTED.findall(result.output)}
    while queue(tmp_path) and time.monotonic() < deadline:  # left to the cluster: they end by themselves
        time.sleep(1)
    assert queue(tmp_path) == {}
    records = job_records(cluster.state)
    mine = {job: r for job, r in records.items() if r["WorkDir"] == str(tmp_path)}
    assert set(mine) == submitted and all(r["JobState"] == "COMPLETED" for r in mine.values()), mine


def test_site_and_workflow_profiles_set_different_keys():
    """Snakemake takes a key set in both from the workflow profile, whole: keep them apart, so that what a
    site edits is never silently replaced, and site settings stay out of the workflow's file."""
    site = yaml.safe_load((PROFILE / "config.yaml").read_text())
    workflow = yaml.safe_load((WORKFLOW_PROFILE / "config.yaml").read_text())
    assert set(site) & set(workflow) == set()
    assert {"group-components", "set-resources"} <= set(workflow)
    # no site setting among the workflow profile's keys and values (its comments may name them)
    assert not re.search(r"slurm|partition|account|qos|executor", yaml.safe_dump(workflow), re.I)


def dry_run(tmp_path: Path, *args: str) -> str:
    command = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--configfile", str(TINY), "--directory",
               str(tmp_path), "--profile", str(PROFILE), "-n", *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=plugin_env(), timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_the_workflow_profile_gives_each_stage_its_resources(tmp_path):
    output = dry_run(tmp_path)
    resources = dict(re.findall(r"^[ ]*rule (\w+):\n(?:[ ]+\w+: .*\n)*?[ ]+resources: (.*)", output, re.M))
    assert "mem_mb=4000" in resources["prepare_data"] and "runtime=30" in resources["grad_variance"]
    assert all("runtime=20" in resources[rule] and "mem_mb=2000" in resources[rule] for rule in ("train", "evaluate"))
    # the command line replaces the workflow profile's list, stage by stage as named
    output = dry_run(tmp_path, "--set-resources", "train:runtime=5")
    trains = re.findall(r"rule train:\n(?:[ ]+\w+: .*\n)*?[ ]+resources: (.*)", output)
    assert trains and all("runtime=5" in r for r in trains)


@pytest.mark.parametrize("device, gpus", [("cpu", "0"), ("auto", "0"), ("cuda", "1")])
def test_a_gpu_is_requested_only_when_the_config_demands_cuda(tmp_path, device, gpus):
    output = dry_run(tmp_path, "--config", f"device={device}")
    requests = re.findall(r"resources: .*", output)
    train_like = [r for r in requests if "gpu=" in r]
    # train and evaluate jobs of the tiny config, each naming its GPU count
    assert len(train_like) == 2 * len(re.findall(r"rule train:", output)) > 0
    assert {re.search(r"gpu=(\d+)", r).group(1) for r in train_like} == {gpus}
