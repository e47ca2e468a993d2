"""`snakemake --logger optbench`: progress a person can read, and a failed job's log where it is needed.

Snakemake's own output lists every input and output path of every job (the default optbench run prints
hundreds of kilobytes). This handler prints instead, to the same stream, one line when a job starts
(or is submitted to a cluster) and one when it ends, each with the time elapsed since the start, the
jobs done of the total and what is still running:

    [0:00:04]  1 of 19 done · finished prepare_data in 4 s
    [0:00:04]  1 of 19 done · started train optimizer=sgd batch_size=64 bundle=l0s0 · running: train ×2

and, when a job fails, its rule and wildcards, the job's log path and the log's last lines (a cluster
job's scheduler log too). Every other message Snakemake prints (warnings, errors, the path of its
complete log in .snakemake/log/, which keeps every detail) passes through; its routine chatter
("Select jobs to execute...") does not. A dry run (`-n`) prints exactly what Snakemake prints.

Why a plugin of our own: snakemake-logger-plugin-rich 0.5.1 (the maintained one) was tried on the tiny
config, 2026-12-01. Its progress is a rich Live bar, drawn only on a terminal: with output to a file or
a pipe (CI, `make run | tee`, nohup on a login node) the whole successful run printed 1.2 KB, a job
count table and "Workflow Finished", no job started or finished, nothing running, no elapsed time. A
failure printed the failed job's whole log (wrapped at 80 columns) after the traceback that Snakemake
had already printed, and it names no SLURM job or its log. It also pulls rich and pydantic into the
environment. `--quiet rules` with the default logger hides the failure block altogether. What is
needed here is plain lines that read the same in a terminal and in a log file.
"""
from __future__ import annotations

import logging
import re
import sys
import time
from collections import Counter
from pathlib import Path

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent

TAIL_LINES = 15      # of a failed job's log
MAX_LINE = 200       # characters of one log line shown
MAX_LABEL = 80       # characters of a job's rule-and-wildcards label
MAX_RUNNING = 70     # characters of the "running:" summary
# Snakemake's routine messages, said once per scheduling round; nothing a person acts on.
CHATTER = re.compile(
    r"^(Select jobs to execute|Execute \d+ jobs|Assuming unrestricted shared filesystem|Using shell:|"
    r"Provided (cores|remote nodes|resources)|Rules claiming more threads|Building DAG of jobs|"
    r"Conda environments: ignored|Singularity containers: ignored|host:|Job stats:|"
    r"Using profiles? .* for setting default command line arguments)"
)
# the SLURM executor's line for each submission; a group job is named by its group's id
SUBMITTED = re.compile(r"^Job (\S+) has been submitted with SLURM jobid (\S+) \(log: (\S+)\)\.?$")
DIGEST = re.compile(r"^[0-9a-f]{8}$")  # wildcard values that are settings digests: noise to a reader


def elapsed(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def job_label(rule: str, wildcards: dict | None) -> str:
    shown = [f"{k}={v}" for k, v in (wildcards or {}).items() if not DIGEST.match(str(v))]
    label = " ".join([rule, *shown])
    return label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1] + "…"


def log_tail(path: str, lines: int = TAIL_LINES) -> list[str]:
    """The last lines of a job's log, each cut to MAX_LINE characters, with a line saying how many."""
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError as error:
        return [f"log: {path} (not readable: {error.strerror or error})"]
    if not text:
        return [f"log: {path} (empty)"]
    shown = text[-lines:]
    head = f"log: {path}" + (f", last {len(shown)} of {len(text)} lines:" if len(text) > len(shown) else ":")
    return [head, *(f"│ {line[:MAX_LINE]}{'…' if len(line) > MAX_LINE else ''}" for line in shown)]


class LogHandler(LogHandlerBase):
    def __post_init__(self) -> None:
        self.stream = sys.stdout if self.common_settings.stdout else sys.stderr
        self.started = time.monotonic()
        self.total = 0
        self.done = 0
        self.jobs: dict[int, dict] = {}       # jobid → rule, label, log, start time
        self.running: dict[int, str] = {}     # jobid → rule
        self.remote: set[int] = set()         # jobids submitted to a cluster: queued or running there
        self.groups: dict[str, list[int]] = {}  # a group member's uuid → the group's members' jobids
        quiet = {str(q).lower() for q in (self.common_settings.quiet or ())}
        self.silent = any("all" in q for q in quiet)
        if self.common_settings.dryrun:
            from snakemake.logging import DefaultFilter, DefaultFormatter

            s = self.common_settings
            self.addFilter(DefaultFilter(s.quiet, s.debug_dag, s.verbose, s.dryrun, s.printshellcmds))
            self.setFormatter(DefaultFormatter(s.quiet, s.show_failed_logs))

    # ---- what Snakemake asks of a handler ----
    writes_to_stream = property(lambda self: True)
    writes_to_file = property(lambda self: False)
    has_filter = property(lambda self: True)
    has_formatter = property(lambda self: True)
    needs_rulegraph = property(lambda self: False)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.common_settings.dryrun:
                if self.filter(record):
                    self.write(self.format(record))
                return
            event = getattr(record, "event", None)
            handler = {
                LogEvent.RUN_INFO: self.on_run_info,
                LogEvent.JOB_INFO: self.on_job_info,
                LogEvent.GROUP_INFO: self.on_group_info,
                LogEvent.JOB_FINISHED: self.on_job_finished,
                LogEvent.JOB_ERROR: self.on_job_error,
                LogEvent.GROUP_ERROR: self.on_group_error,
                LogEvent.PROGRESS: self.on_progress,
            }.get(event)
            if handler is not None:
                handler(record)
            elif event in (None, LogEvent.ERROR):   # ERROR: an exception snakemake reports
                self.on_message(record)
        except Exception:  # noqa: BLE001 — a display problem must never stop the workflow
            self.handleError(record)

    # ---- events ----
    def on_run_info(self, record) -> None:
        stats = dict(getattr(record, "stats", {}) or {})
        self.total = int(stats.pop("total", 0)) or self.total
        plan = ", ".join(f"{rule} {count}" for rule, count in stats.items())
        self.line(f"{self.total} jobs to run: {plan}", progress=False)

    def on_job_info(self, record) -> None:
        jobid, rule = record.jobid, record.rule_name
        self.jobs[jobid] = dict(rule=rule, label=job_label(rule, record.wildcards), log=list(record.log or ()),
                                start=time.monotonic(), shown=bool(record.output or record.log))
        self.running[jobid] = rule
        if not record.local:
            self.remote.add(jobid)
        if self.jobs[jobid]["shown"]:
            self.line(f"{'started' if record.local else 'submitted'} {self.jobs[jobid]['label']}")

    def on_group_info(self, record) -> None:
        # the cluster knows a group job by the uuid of one of its members (Snakemake's GroupJob.jobid)
        members = [job.jobid for job in record.jobs]
        for job in record.jobs:
            self.groups[str(job.uuid())] = members

    def on_submitted(self, job: str, slurm_id: str, slurm_log: str) -> None:
        """Which jobs a cluster job runs (a group's members are listed just above as submitted)."""
        members = self.groups.get(job, [int(job)] if job.isdigit() else [])
        rules = Counter(self.jobs[m]["rule"] for m in members if m in self.jobs)
        what = ", ".join(f"{rule} ×{n}" if n > 1 else rule for rule, n in rules.most_common()) or f"job {job}"
        self.line(f"SLURM job {slurm_id} runs {what} (log: {slurm_log})", running=False)

    def on_job_finished(self, record) -> None:
        job = self.jobs.get(record.job_id)
        self.running.pop(record.job_id, None)
        self.done += 1
        if job is not None and job["shown"]:
            self.line(f"finished {job['label']} in {duration(time.monotonic() - job['start'])}")

    def on_progress(self, record) -> None:
        self.done, self.total = record.done, record.total
        if self.done == self.total:
            self.line("every job finished", running=False)

    def on_job_error(self, record) -> None:
        job = self.jobs.get(record.jobid, {})
        self.running.pop(record.jobid, None)
        label = job.get("label") or job_label(record.rule_name, None)
        ran = f" after {duration(time.monotonic() - job['start'])}" if "start" in job else ""
        lines = [f"FAILED {label} (jobid {record.jobid}){ran}"]
        if record.rule_msg:
            lines.append(f"message: {record.rule_msg}")
        for key, value in (getattr(record, "aux", None) or {}).items():
            lines.append(f"{key}: {value}")
        logs = list(record.log or ())
        for path in logs:
            lines.extend(log_tail(path))
        if not logs:
            lines.append("this rule writes no log; .snakemake/log/ has snakemake's complete log")
        self.block(lines)

    def on_group_error(self, record) -> None:
        lines = [f"FAILED group job {record.groupid} ({len(record.job_error_info)} jobs; each is listed below)"]
        if record.msg:
            lines.append(f"message: {record.msg}")
        for path in record.aux_logs or ():
            lines.extend(log_tail(path))
        self.block(lines)

    def on_message(self, record) -> None:
        message = record.getMessage()
        if message in ("", "None") or (record.levelno < logging.WARNING and CHATTER.match(message)):
            return
        if record.levelno <= logging.DEBUG and not self.common_settings.verbose:
            return
        if self.silent and record.levelno < logging.ERROR:
            return
        if submitted := SUBMITTED.match(message):
            self.on_submitted(*submitted.groups())
            return
        self.write(message)

    # ---- output ----
    def line(self, text: str, progress: bool = True, running: bool = True) -> None:
        if self.silent:
            return
        prefix = f"[{elapsed(time.monotonic() - self.started)}]  "
        if progress:
            prefix += f"{self.done:>{len(str(self.total))}} of {self.total} done · "
        if running and progress and self.running:
            summary = ", ".join(f"{rule} ×{n}" if n > 1 else rule
                                for rule, n in Counter(self.running.values()).most_common())
            state = "running or queued" if self.remote & set(self.running) else "running"
            text += f" · {state}: " + (summary if len(summary) <= MAX_RUNNING else summary[: MAX_RUNNING - 1] + "…")
        self.write(prefix + text)

    def block(self, lines: list[str]) -> None:
        stamp = f"[{elapsed(time.monotonic() - self.started)}]"
        indent = " " * (len(stamp) + 2)
        self.write("\n".join([f"{stamp}  {lines[0]}", *(indent + line for line in lines[1:])]))

    def write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
