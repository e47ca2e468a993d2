"""Resume: SIGKILL a real training job (or snakemake itself) at random moments; the rerun finishes
with tensors and tables bit-identical to an uninterrupted run, and nothing is retrained or lost."""
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from optbench.io import load_tensors
from tests.conftest import BIN, ROOT, TINY, snakemake

TARGETS = ("results/tables/runs.csv", "results/tables/minibatch.csv")


@pytest.fixture(scope="module")
def kill_config(tmp_path_factory) -> Path:
    """One bundle of three seeds long enough (~4 s of training) to be killed many times."""
    config = yaml.safe_load(TINY.read_text())
    config["grid"] = {"optimizers": ["adam"], "batch_sizes": [16], "seeds": [0, 1, 2]}
    config["optimizers"]["adam"]["lrs"] = [0.004]
    config["model"]["hidden"] = [100, 100]
    config["train"].update(epochs=16, resume_every_seconds=0)
    config["grad_variance"]["probes"] = []  # the tiny config probes SGD, which this grid lacks
    path = tmp_path_factory.mktemp("kill") / "kill.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def uninterrupted(kill_config, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("whole")
    snakemake(workdir, "--cores", "1", *TARGETS, configfile=kill_config)
    return workdir


def start(workdir: Path, config: Path) -> subprocess.Popen:
    command = [str(BIN / "snakemake"), "-s", str(ROOT / "Snakefile"), "--configfile", str(config),
               "--directory", str(workdir), "--cores", "1", "--rerun-incomplete", *TARGETS]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True,
                            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})


def training_started(workdir: Path) -> bool:
    return any("epoch" in p.read_text() for p in (workdir / "logs" / "train").rglob("*.log"))


def assert_same_results(workdir: Path, reference: Path) -> None:
    for name in TARGETS:
        assert (workdir / name).read_bytes() == (reference / name).read_bytes(), name
    checkpoints = sorted((reference / "results" / "runs").rglob("checkpoints.pt"))
    assert len(checkpoints) == 3
    for path in checkpoints:
        expected = load_tensors(path)
        got = load_tensors(workdir / path.relative_to(reference))
        assert torch.equal(got["steps"], expected["steps"])
        for a, b in zip(got["states"], expected["states"]):
            assert all(torch.equal(a[k], b[k]) for k in b)


@pytest.mark.workflow
def test_training_killed_at_random_points_resumes_bit_identically(kill_config, uninterrupted, tmp_path):
    rng = random.Random(20261126)
    kills = 0
    for _ in range(15):
        process = start(tmp_path, kill_config)
        deadline = time.monotonic() + 60
        while not training_started(tmp_path) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.8))
        if process.poll() is not None:
            break  # finished before the kill point
        os.killpg(process.pid, signal.SIGKILL)  # snakemake and its job, mid-epoch or mid-write
        process.wait()
        kills += 1
        for log in (tmp_path / "logs" / "train").rglob("*.log"):
            log.unlink()
        snakemake(tmp_path, "--unlock", *TARGETS, configfile=kill_config)
        if kills >= 6:
            break
    assert kills >= 5, f"only {kills} kills landed inside training"
    snakemake(tmp_path, "--cores", "1", "--rerun-incomplete", *TARGETS, configfile=kill_config)
    assert_same_results(tmp_path, uninterrupted)
    log = (next((tmp_path / "logs" / "train").rglob("*.log"))).read_text()
    assert "resuming at epoch" in log or "kept: already trained" in log


@pytest.mark.workflow
def test_killing_snakemake_leaves_orphans_and_the_rerun_retrains_nothing(kill_config, uninterrupted, tmp_path):
    process = start(tmp_path, kill_config)
    while not training_started(tmp_path):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)  # only snakemake: its job runs on as an orphan
    process.wait()
    snakemake(tmp_path, "--unlock", *TARGETS, configfile=kill_config)
    snakemake(tmp_path, "--cores", "1", "--rerun-incomplete", *TARGETS, configfile=kill_config)
    assert_same_results(tmp_path, uninterrupted)
    # forcing the train job again (snakemake deletes its outputs first) retrains nothing: its three runs
    # (one bundle) are intact and were trained by this code, and the log says how to retrain anyway
    snakemake(tmp_path, "--cores", "1", "--forcerun", "train", *TARGETS, configfile=kill_config)
    log = next((tmp_path / "logs" / "train").rglob("*.log")).read_text()
    assert log.count("kept: already trained by this code and config") == 3, log
    assert "To retrain one anyway, delete its folder" in log
    assert_same_results(tmp_path, uninterrupted)
    assert pd.read_csv(tmp_path / TARGETS[0]).shape == pd.read_csv(uninterrupted / TARGETS[0]).shape


def test_a_run_retrained_without_its_bundle_gets_the_bundles_bits(mnist1d_tensors, tiny_config):
    """A damaged or killed member is retrained alone or in a part of its bundle: a part of two or more
    gives it its whole bundle's bits, and a member on its own trains beside a discarded copy of itself
    (alone it would get other bits)."""
    import copy

    from optbench.bundle import train_bundle
    from optbench.config import Run
    from optbench.resume import lockstep_groups

    config = copy.deepcopy(tiny_config)
    config["train"]["epochs"] = 1
    tensors = {**mnist1d_tensors, "x_train": mnist1d_tensors["x_train"][:640],
               "y_train": mnist1d_tensors["y_train"][:640]}
    runs = [Run("adam", 64, lr, seed) for lr in (0.001, 0.004) for seed in (0, 1)]
    whole = train_bundle(tensors, runs, config, log=lambda _: None)
    assert lockstep_groups([3], {3: 0}, len(runs)) == [([3], True)]
    parts = {"with its copy": [runs[3], runs[3]], "with another lr": [runs[0], runs[3]],
             "with its lr's other seed": [runs[2], runs[3]]}
    for name, part in parts.items():
        got = train_bundle(tensors, part, config, log=lambda _: None)[part.index(runs[3])]
        for state, expected in zip(got.checkpoint_states, whole[3].checkpoint_states):
            assert all(torch.equal(state[k], expected[k]) for k in expected), name
    assert lockstep_groups([0, 1, 2], {0: 5, 1: 5, 2: 0}, 3) == [([0, 1], False), ([2], True)]
    assert lockstep_groups([0], {0: 0}, 1) == [([0], False)]  # train.bundle_size 1: solo runs throughout
