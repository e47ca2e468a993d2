"""Trainer: the tutorial's loop semantics, divergence as a result, determinism, resume."""
import copy
import math
import platform
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from optbench.config import Run
from optbench.evaluate import evaluate_split
from optbench.io import atomic_torch_save, load_tensors
from optbench.model import make_optimizer, optimizer_param_group
from optbench.train import checkpoint_schedule, derived_seed, init_model, train_run
from tests.conftest import ROOT
from tests.tutorial import train_loop


def small(tensors, n=512):
    return {**tensors, "x_train": tensors["x_train"][:n], "y_train": tensors["y_train"][:n]}


def test_checkpoint_schedule_is_log_spaced_from_zero_to_the_end():
    steps = checkpoint_schedule(6750, 30)
    assert steps[0] == 0 and steps[-1] == 6750 and len(steps) <= 30
    assert steps == sorted(set(steps))
    ratios = [b / a for a, b in zip(steps[1:], steps[2:])]
    assert max(ratios[5:]) / min(ratios[5:]) < 1.5  # roughly constant ratio once past rounding
    assert checkpoint_schedule(3, 30) == [0, 1, 2, 3]


def test_training_lowers_the_training_loss(mnist1d_tensors, config):
    config["train"]["epochs"] = 5
    result = train_run(mnist1d_tensors, Run("adam", 64, 0.004, 0), config, log=lambda _: None)
    assert result.status == "ok" and result.steps_done == result.total_steps == 5 * (3600 // 64)
    model = init_model(mnist1d_tensors["x_train"], config["model"]["hidden"], 0)
    losses = []
    for state in (result.checkpoint_states[0], result.checkpoint_states[-1]):
        model.load_state_dict(state)
        losses.append(evaluate_split(model, mnist1d_tensors["x_train"], mnist1d_tensors["y_train"], 1000)[0])
    assert losses[1] < 0.8 * losses[0]


def test_huge_lr_diverges_and_no_weights_are_invented_after_it(mnist1d_tensors, config):
    config["train"]["epochs"] = 2
    result = train_run(mnist1d_tensors, Run("sgd", 64, 1e6, 0), config, log=lambda _: None)
    assert result.status == "diverged" and result.diverged_step is not None
    assert result.steps_done == result.diverged_step - 1 < result.total_steps
    assert result.checkpoint_steps == checkpoint_schedule(result.total_steps, config["train"]["checkpoints"])
    for step, state in zip(result.checkpoint_steps, result.checkpoint_states):
        if step <= result.steps_done:
            assert state is not None
        else:
            assert state is None, f"checkpoint at step {step} after divergence holds weights"
    assert any(s is None for s in result.checkpoint_states)


def test_same_config_and_threads_give_bit_identical_runs(mnist1d_tensors, config):
    torch.set_num_threads(1)
    first = train_run(small(mnist1d_tensors), Run("adam", 32, 0.004, 1), config, log=lambda _: None)
    second = train_run(small(mnist1d_tensors), Run("adam", 32, 0.004, 1), config, log=lambda _: None)
    assert first.log_losses == second.log_losses
    for a, b in zip(first.checkpoint_states, second.checkpoint_states):
        assert all(torch.equal(a[k], b[k]) for k in a)
    third = train_run(small(mnist1d_tensors), Run("adam", 32, 0.004, 2), config, log=lambda _: None)
    assert first.log_losses != third.log_losses


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.1), ("adam", 0.003)])
def test_trainer_matches_the_tutorial_train_loop(mnist1d_tensors, config, optimizer, lr):
    """One epoch, drop_last=False, same batch order: the weights equal the tutorial loop's."""
    tensors = small(mnist1d_tensors, 500)  # 500 = 7 × 64 + 52: a partial last batch
    config["train"].update(epochs=1, drop_last=False)
    result = train_run(tensors, Run(optimizer, 64, lr, 3), config, log=lambda _: None)

    order = torch.randperm(500, generator=torch.Generator().manual_seed(derived_seed(3, "order")))
    loader = DataLoader(TensorDataset(tensors["x_train"], tensors["y_train"]), batch_size=64,
                        sampler=order.tolist(), drop_last=False)
    model = init_model(tensors["x_train"], config["model"]["hidden"], 3)
    train_loop(loader, model, nn.CrossEntropyLoss(),
               make_optimizer(optimizer, model.parameters(), lr, config["optimizers"][optimizer]))
    assert result.steps_done == 8
    final = result.checkpoint_states[-1]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(final[key], value, rtol=0, atol=1e-6)


def test_resume_from_a_saved_epoch_is_bit_identical(tmp_path, mnist1d_tensors, config):
    config["train"]["epochs"] = 4
    tensors, run = small(mnist1d_tensors), Run("adam", 32, 0.004, 0)
    whole = train_run(tensors, run, config, log=lambda _: None)
    saved = {}

    def keep_epoch_2(build):
        if "state" not in saved and len(saved.setdefault("calls", [])) == 1:
            atomic_torch_save(build(), tmp_path / "state.pt")
            saved["state"] = True
        saved["calls"].append(1)

    train_run(tensors, run, config, log=lambda _: None, on_epoch_end=keep_epoch_2)
    state = load_tensors(tmp_path / "state.pt")  # weights_only=True: RNG state is a tensor
    assert state["epochs_done"] == 2
    resumed = train_run(tensors, run, config, log=lambda _: None, resume=state)
    assert resumed.log_losses == whole.log_losses
    assert resumed.checkpoint_steps == whole.checkpoint_steps
    for a, b in zip(resumed.checkpoint_states, whole.checkpoint_states):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_optimizer_options_reach_torch_optim():
    params = [nn.Parameter(torch.zeros(2))]
    sgd = make_optimizer("sgd", params, 0.1, {"momentum": 0.9, "weight_decay": 0.0})
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9
    adam = make_optimizer("adam", params, 1e-3, {"betas": [0.8, 0.99], "eps": 1e-6})
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["betas"] == (0.8, 0.99)
    adamw = make_optimizer("adamw", params, 1e-3, {})
    assert isinstance(adamw, torch.optim.AdamW) and math.isclose(adamw.param_groups[0]["weight_decay"], 0.01)


@pytest.mark.parametrize("name, options, cls, expected", [
    ("sgd_momentum", {"type": "sgd", "momentum": 0.9}, torch.optim.SGD, {"momentum": 0.9, "weight_decay": 0.0}),
    ("fast_adam", {"type": "adam", "eps": 1e-6}, torch.optim.Adam, {"betas": (0.9, 0.999), "eps": 1e-6}),
    ("decoupled", {"type": "adamw"}, torch.optim.AdamW, {"weight_decay": 0.01}),
    ("adam", {"type": "adamw"}, torch.optim.AdamW, {"weight_decay": 0.01}),   # the type, not the name, decides
])
def test_a_named_entry_gets_the_torch_optim_class_of_its_type(name, options, cls, expected):
    params = [nn.Parameter(torch.zeros(2))]
    optimizer = make_optimizer(name, params, 0.1, options)
    assert type(optimizer) is cls and optimizer.param_groups[0]["lr"] == 0.1
    assert {k: optimizer.param_groups[0][k] for k in expected} == expected
    # the bundle's hand-built param group (no torch.optim in a bundle job) is torch.optim's own
    assert optimizer_param_group(name, 0.1, options, 1) == optimizer.state_dict()["param_groups"][0]


def test_an_unknown_optimizer_type_is_refused_by_name():
    with pytest.raises(ValueError, match="optimizer 'fast' has unknown type 'fast'"):
        make_optimizer("fast", [nn.Parameter(torch.zeros(2))], 0.1, {})
    with pytest.raises(ValueError, match="unknown type 'lion'"):
        make_optimizer("sgd", [nn.Parameter(torch.zeros(2))], 0.1, {"type": "lion"})


def test_a_named_variant_trains_alone_as_its_type_would(mnist1d_tensors, config):
    """train_run (train.bundle_size 1) of sgd_momentum {type: sgd, momentum: 0.9}: the same bits as an entry
    named sgd with momentum 0.9 (the name is a label), and not the bits of plain SGD."""
    tensors = {**mnist1d_tensors, "x_train": mnist1d_tensors["x_train"][:320], "y_train": mnist1d_tensors["y_train"][:320]}
    config["train"].update(epochs=1, checkpoints=4)
    config["optimizers"]["sgd_momentum"] = {"type": "sgd", "momentum": 0.9, "lrs": [0.05]}
    momentum = train_run(tensors, Run("sgd_momentum", 32, 0.05, 0), config, log=lambda _: None)
    plain = train_run(tensors, Run("sgd", 32, 0.05, 0), config, log=lambda _: None)
    config["optimizers"]["sgd"] = {"momentum": 0.9, "lrs": [0.05]}
    same = train_run(tensors, Run("sgd", 32, 0.05, 0), config, log=lambda _: None)
    assert momentum.log_losses == same.log_losses and momentum.log_losses != plain.log_losses


FAULTS_PER_BLOCK = """
import resource, sys, torch
from optbench.jobs import retain_freed_memory
if sys.argv[1] == "tuned":
    assert retain_freed_memory()
# Each block a page larger than the last: glibc's dynamic mmap threshold, raised to the size of
# the last freed mmapped block, sends every one of them to a fresh mmap unless the job fixed it.
sizes = [2 ** 20 + 4096 * k for k in range(200)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for size in sizes:
    torch.empty(size, dtype=torch.uint8).fill_(1)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / len(sizes))
"""


def last_number_printed(script: str, *args: str) -> float:
    """Run `script` in a fresh Python (a job's process, or a plain one as the control): the last number it prints."""
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc tuning is glibc's")
def test_job_setup_lets_malloc_reuse_freed_megabyte_blocks_instead_of_faulting_in_fresh_pages():
    assert last_number_printed(FAULTS_PER_BLOCK, "plain") > 200   # the control: a 1 MiB block is 256 pages
    assert last_number_printed(FAULTS_PER_BLOCK, "tuned") < 30


STUCK_FIRST_MOMENTS = """
import sys, torch
from optbench.bundle import VectorisedOptimizer
from optbench.jobs import setup_job
mode, threads = sys.argv[1], int(sys.argv[2])
if mode == "job":
    setup_job(threads, "cpu")
else:
    torch.set_num_threads(threads)
# Parameters whose gradient stays zero (a dead ReLU unit's weights): Adam's first moment decays by 0.9 a step
# until it is a few multiples of float32's smallest denormal, where 0.9·m rounds back to m. Large enough that
# the update's kernel splits it among the threads.
param = torch.zeros(4, 2 ** 16)
optimizer = VectorisedOptimizer("adam", [param], [1e-3] * 4, {"betas": [0.9, 0.999], "eps": 1e-8})
optimizer.step(grads=[torch.full_like(param, 1e-30)])
for _ in range(400):
    optimizer.step(grads=[torch.zeros_like(param)])
print(int((optimizer.state[param]["exp_avg"] != 0).sum()))
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_a_job_flushes_denormals_so_that_adams_first_moments_of_zero_gradients_reach_zero(threads):
    """Issue 14: from its fourth epoch the default Adam bundle at batch 16 took 1.7× as long a step (0.6 → 1.0 s
    an epoch), its update reading first moments stuck at denormals (a quarter of the second layer's), each
    a slow path on x86. In a job (optbench.jobs.setup_job) they flush to zero, on every thread of the job
    (the flush is per thread: set before the thread pool starts, its threads inherit it); the control,
    without the job's set-up, keeps them all."""
    assert last_number_printed(STUCK_FIRST_MOMENTS, "plain", str(threads)) == 4 * 2 ** 16
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals (torch.set_flush_denormal)")
    assert last_number_printed(STUCK_FIRST_MOMENTS, "job", str(threads)) == 0


def test_the_downsampled_logs_are_each_windows_last_step_mean_and_maximum():
    """minibatch.csv's curves (optbench.aggregate.downsample_logs, every run's log at once) against a loop
    over each log's windows: at most MINIBATCH_POINTS equal windows of steps, each its last step and
    epoch, mean and largest loss; a log as short as that keeps every step, an empty one gives no row."""
    import pandas as pd

    from optbench.aggregate import MINIBATCH_POINTS, downsample_logs

    logs = []
    for steps in (150, 6750, 0, 200, 201):
        generator = torch.Generator().manual_seed(steps)
        logs.append(pd.DataFrame({"step": range(1, steps + 1), "epoch": [s / 225 for s in range(1, steps + 1)],
                                  "loss": torch.rand(steps, generator=generator, dtype=torch.float64).numpy()}))
    table = downsample_logs(logs)
    assert table["log"].tolist() == sorted(table["log"])
    for index, log in enumerate(logs):
        steps, rows_of_log = len(log), table[table["log"] == index]
        assert len(rows_of_log) == min(steps, MINIBATCH_POINTS)
        for row, window in zip(rows_of_log.itertuples(), range(len(rows_of_log))):
            rows = log[[k * MINIBATCH_POINTS // steps == window for k in range(steps)]] \
                if steps > MINIBATCH_POINTS else log.iloc[[window]]
            assert (row.step, row.epoch) == (rows["step"].iloc[-1], rows["epoch"].iloc[-1])
            assert row.loss == pytest.approx(rows["loss"].mean(), rel=1e-12) and row.loss_max == rows["loss"].max()
