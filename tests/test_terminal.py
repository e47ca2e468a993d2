"""What a person sees in the terminal: `make run` (snakemake --profile profiles/local, --logger optbench)
prints a line per job start and end with the progress, stays small as the grid grows, and on a failure
names the rule, its log and the log's last lines; the long jobs' own logs count their progress."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from optbench.config import IDX_FILES, TORCHVISION_FOLDERS
from tests.conftest import BIN, ROOT, TINY

pytestmark = pytest.mark.workflow

LOCAL = ROOT / "profiles" / "local"
BUDGET = 20_000   # bytes the default run may print (issue 13)
PROGRESS = re.compile(r"^\[(\d+):(\d\d):(\d\d)\]\s+(\d+) of (\d+) done · (started|finished|submitted) (\w+)", re.M)


def plugin_env() -> dict[str, str]:
    """The environment for a snakemake that finds this checkout's logger plugin (tools/progress) before
    any installed copy (`make setup` installs it; the shared development venv may hold an older one)."""
    paths = [str(ROOT), str(ROOT / "tools" / "progress"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": os.pathsep.join(paths)}


def make_run(workdir: Path, *args: str, configfile: Path = TINY) -> SimpleNamespace:
    """What `make run` runs (snakemake --profile profiles/local --cores N), on `configfile`, in `workdir`;
    stdout and stderr together, as a terminal shows them."""
    command = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--configfile", str(configfile),
               "--directory", str(workdir), "--profile", str(LOCAL), "--cores", "2", *args]
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=plugin_env(),
                            timeout=900)
    return SimpleNamespace(returncode=result.returncode, output=result.stdout.decode(), size=len(result.stdout))


def planned_total(result_output: str) -> int:
    return int(re.search(r"^total\s+(\d+)$", result_output, re.M).group(1))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("terminal")
    return SimpleNamespace(workdir=workdir, **vars(make_run(workdir)))


def test_progress_is_one_line_per_job_start_and_end_with_done_of_total(tiny_run):
    assert tiny_run.returncode == 0, tiny_run.output[-3000:]
    events = PROGRESS.findall(tiny_run.output)
    total = int(re.search(r"^\[0:00:0\d\]\s+(\d+) jobs to run: prepare_data 1, train \d+", tiny_run.output, re.M).group(1))
    started = [e for e in events if e[5] == "started"]
    finished = [e for e in events if e[5] == "finished"]
    # every job with outputs appears once starting and once finishing (rule all has none)
    assert len(started) == len(finished) == total - 1, tiny_run.output
    assert {e[4] for e in events} == {str(total)}
    # the count goes up by one per finished job, to the total, and the elapsed time never goes back
    assert [int(e[3]) for e in finished] == list(range(1, total))
    seconds = [int(h) * 3600 + int(m) * 60 + int(s) for h, m, s, *_ in events]
    assert seconds == sorted(seconds) and seconds[-1] >= 1
    assert re.search(rf"^\[\d+:\d\d:\d\d\]\s+{total} of {total} done · every job finished$", tiny_run.output, re.M)
    # what is running: two cores, so at some point two jobs run side by side
    assert re.search(r"· running: \w+ ×2$|· running: \w+, \w+$", tiny_run.output, re.M)
    # a job is named by its rule and wildcards, without the settings digests
    assert re.search(r"started train optimizer=(sgd|adam) batch_size=\d+ bundle=l\d+s\d+", tiny_run.output)


def test_output_stays_small_per_job_so_the_default_run_prints_under_20_kb(tiny_run, tmp_path):
    """Snakemake's own output lists every path of every job (464 KB for the default run once); this one
    is a fixed size per job. Measured on the tiny grid, scaled to the default grid's job count."""
    assert tiny_run.returncode == 0
    lines = tiny_run.output.splitlines()
    assert max(map(len, lines)) <= 250, max(lines, key=len)
    job_lines = [line for line in lines if PROGRESS.match(line)]
    jobs = len(job_lines) // 2                           # a start and an end line each
    per_job = sum(len(line) + 1 for line in job_lines) / jobs
    fixed = tiny_run.size - sum(len(line) + 1 for line in job_lines)   # the plan, the closing lines
    assert per_job <= 350 and fixed <= 1500, f"{per_job:.0f} bytes per job, {fixed} fixed:\n{tiny_run.output}"
    # the default config's plan (a dry run prints Snakemake's usual listing, job table included)
    default = make_run(tmp_path, "-n", "--quiet", "rules", configfile=ROOT / "config.yaml")
    assert default.returncode == 0, default.output[-3000:]
    default_jobs = planned_total(default.output)
    assert default_jobs > jobs                           # the scaling is what this test is about
    assert fixed + per_job * default_jobs < BUDGET, (default_jobs, per_job, fixed)


def test_a_dry_run_prints_snakemakes_usual_listing(tmp_path):
    result = make_run(tmp_path, "-n")
    assert result.returncode == 0, result.output[-3000:]
    # every job with its paths, wildcards and reason (grouped jobs indented), as without the plugin
    assert re.search(r"^\s*rule train:\n(?:\s+\w+: .*\n)*?\s+wildcards: optimizer=", result.output, re.M)
    assert "This was a dry-run" in result.output and planned_total(result.output) > 10


def test_long_jobs_log_their_progress_against_a_total(tiny_run):
    """train logs epoch k/N, evaluate run k of N, grad_variance checkpoint k/N, each up to N."""
    counted = re.compile(r"(?:epoch|run|checkpoint) (\d+)(?:/| of )(\d+)")
    for rule in ("train", "evaluate", "grad_variance"):
        logs = list((tiny_run.workdir / "logs" / rule).rglob("*.log"))
        assert logs, rule
        for log in logs:
            counts = [(int(k), int(n)) for k, n in counted.findall(log.read_text())]
            assert counts and counts[-1][0] == counts[-1][1] and all(k <= n for k, n in counts), log


def corrupt_dataset_config(workdir: Path) -> Path:
    """The tiny config on Fashion-MNIST whose IDX files exist (so validation passes) but are garbage:
    data preparation fails at run time."""
    raw = workdir / "idx" / TORCHVISION_FOLDERS["fashion_mnist"] / "raw"
    raw.mkdir(parents=True)
    for name in IDX_FILES:
        (raw / name).write_bytes(b"not an IDX file\n")
    config = yaml.safe_load(TINY.read_text())
    config["dataset"] = {"name": "fashion_mnist", "root": str(workdir / "idx"), "download": False}
    path = workdir / "corrupt.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_failed_job_shows_its_rule_log_and_the_logs_last_lines(tmp_path):
    """Corrupt data files (Fashion-MNIST's IDX files, garbage): data preparation fails; the output names
    the rule, its log and shows the log's last lines, the traceback's end."""
    result = make_run(tmp_path, configfile=corrupt_dataset_config(tmp_path))
    assert result.returncode != 0
    (log,) = re.findall(r"^\[\d+:\d\d:\d\d\]\s+FAILED prepare_data \(jobid \d+\) after .*\n\s+log: (\S+?)[,:]",
                        result.output, re.M) or [result.output]
    assert log.startswith("logs/prepare_data/"), log
    text = (tmp_path / log).read_text().splitlines()
    # the log's last 15 lines, as they are in the file: the end of the traceback
    shown = re.search(rf"log: {re.escape(log)}, last 15 of {len(text)} lines:\n((?:\s+│ .*\n)+)", result.output)
    assert shown, result.output
    assert [line.split("│ ", 1)[1] for line in shown.group(1).splitlines()] == [line[:200] for line in text[-15:]]
    assert text[-1] == "AssertionError"
    assert result.size < 12_000, result.output
