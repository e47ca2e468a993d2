"""Run bundles: each member equals its run trained alone with torch.optim; divergence stays inside a member."""
import copy
import importlib.util

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from optbench.bundle import (VectorisedOptimizer, epoch_batches, member_chunk, member_losses, member_optimizer_state,
                             stacked_parameters, train_bundle)
from optbench.config import Run, partition
from optbench.io import atomic_torch_save, load_tensors
from optbench.model import make_optimizer
from optbench.train import derived_seed, init_model, train_run
from tests.conftest import ROOT

OPTIONS = {"sgd": {"momentum": 0.9, "weight_decay": 1e-3},
           "adam": {"betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 1e-3},
           "adamw": {"betas": [0.8, 0.99], "eps": 1e-8, "weight_decay": 0.01}}
LRS = {"sgd": [0.05, 0.2, 0.1], "adam": [0.001, 0.004, 0.002], "adamw": [0.001, 0.004, 0.002]}


def quiet(_):
    pass


class TickingClock:
    """A perf_counter that advances exactly 1 s per read. train_bundle reads its clock at each epoch's
    start and end, so under it every epoch lasts 1 s and a bundle's loop time is its epoch count."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def twenty_steps(tensors, config, optimizer):
    """320 samples at batch 16 with drop_last: one epoch is exactly 20 steps, the last one a checkpoint."""
    config = copy.deepcopy(config)
    config["optimizers"][optimizer] = {**OPTIONS[optimizer], "lrs": LRS[optimizer]}
    config["train"].update(epochs=1, checkpoints=6, drop_last=True)
    return {**tensors, "x_train": tensors["x_train"][:320], "y_train": tensors["y_train"][:320]}, config


def solo_torch_optim(tensors, config, run, steps):
    """The oracle: one model, torch.optim, the member's own init and data order, `steps` updates."""
    model = init_model(tensors["x_train"], config["model"]["hidden"], run.seed)
    optimizer = make_optimizer(run.optimizer, model.parameters(), run.lr, config["optimizers"][run.optimizer])
    order = torch.Generator().manual_seed(derived_seed(run.seed, "order"))
    permutation = torch.randperm(len(tensors["x_train"]), generator=order)
    for step in range(steps):
        index = permutation[step * run.batch_size:(step + 1) * run.batch_size]
        nn.CrossEntropyLoss()(model(tensors["x_train"][index]), tensors["y_train"][index]).backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.state_dict()


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize("shared_lr", [True, False])
def test_member_matches_its_run_alone_over_20_steps(mnist1d_tensors, config, optimizer, shared_lr):
    tensors, config = twenty_steps(mnist1d_tensors, config, optimizer)
    lrs = LRS[optimizer][:1] * 3 if shared_lr else LRS[optimizer]  # shared: torch.optim; else ours
    runs = [Run(optimizer, 16, lr, seed) for lr, seed in zip(lrs, (0, 1, 2))]
    results = train_bundle(tensors, runs, config, log=quiet)
    for run, result in zip(runs, results):
        assert result.status == "ok" and result.steps_done == 20 and result.checkpoint_steps[-1] == 20
        expected = solo_torch_optim(tensors, config, run, 20)
        for key, value in expected.items():
            torch.testing.assert_close(result.checkpoint_states[-1][key], value, rtol=0, atol=1e-5)
        assert result.checkpoint_states[0]["1.weight"].equal(init_model(tensors["x_train"], [16], run.seed)[1].weight)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_vectorised_update_equals_torch_optim_per_member(optimizer):
    torch.manual_seed(0)
    lrs = [0.3, 0.01, 0.07]
    stacked = [torch.randn(3, 5, 4).requires_grad_(), torch.randn(3, 5).requires_grad_()]
    alone = [[nn.Parameter(p.detach()[m].clone()) for p in stacked] for m in range(3)]
    ours = VectorisedOptimizer(optimizer, stacked, lrs, OPTIONS[optimizer])
    theirs = [make_optimizer(optimizer, params, lr, OPTIONS[optimizer]) for params, lr in zip(alone, lrs)]
    for _ in range(15):
        grads = [torch.randn_like(p) for p in stacked]
        for p, g in zip(stacked, grads):
            p.grad = g.clone()
        ours.step()
        for m, optim in enumerate(theirs):
            for q, g in zip(alone[m], grads):
                q.grad = g[m].clone()
            optim.step()
    for m in range(3):  # torch's fused kernel against its default update: within an ulp or two per step
        for p, q in zip(stacked, alone[m]):
            torch.testing.assert_close(p.detach()[m], q.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_a_step_taken_member_range_by_range_equals_one_whole_step(optimizer):
    """What the bundle does chunk by chunk (each range's own gradients, the step counted once) is
    the whole-bundle update, bit for bit, though members 1-4 share a learning rate and a range cuts
    them: each member's tensors go to the fused kernel on their own (its vectorised body and scalar
    tail round differently, so a slice of several members would round by its length)."""
    torch.manual_seed(0)
    lrs = [0.3, 0.01, 0.01, 0.01, 0.01, 0.07]
    shapes = [(6, 5, 4), (6, 5)]
    whole = [torch.randn(shape) for shape in shapes]
    ranged = [p.clone() for p in whole]
    ours, by_range = (VectorisedOptimizer(optimizer, params, lrs, OPTIONS[optimizer]) for params in (whole, ranged))
    for _ in range(4):
        grads = [torch.randn(shape) for shape in shapes]
        ours.step(grads=grads)
        for part in (slice(0, 2), slice(2, 6)):
            by_range.step(part, [g[part].clone() for g in grads], advance=part.start == 0)
    for p, q in zip(whole, ranged):
        assert torch.equal(p, q)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_a_members_optimizer_state_is_torch_optims_state_dict_of_its_solo_run(optimizer):
    """Built by hand (no torch.optim in a bundle job), yet equal to what a solo torch.optim holding the
    member's slice of the state returns, param_groups included; a solo optimizer loads it and steps on."""
    torch.manual_seed(0)
    stacked = [torch.randn(3, 5, 4), torch.randn(3, 5)]
    ours = VectorisedOptimizer(optimizer, stacked, LRS[optimizer], OPTIONS[optimizer])
    ours.step(grads=[torch.randn_like(p) for p in stacked])
    built = member_optimizer_state(optimizer, ours, stacked, 1, LRS[optimizer][1], OPTIONS[optimizer])
    solo_params = [nn.Parameter(p[1].clone()) for p in stacked]
    solo = make_optimizer(optimizer, solo_params, LRS[optimizer][1], OPTIONS[optimizer])
    for p, q in zip(stacked, solo_params):
        solo.state[q] = {k: (v.clone() if k == "step" else v[1].clone()) for k, v in ours.state[p].items()}
    expected = solo.state_dict()
    assert built["param_groups"] == expected["param_groups"]
    assert built["state"].keys() == expected["state"].keys()
    for index, state in expected["state"].items():
        assert state.keys() == built["state"][index].keys()
        assert all(torch.equal(state[k], built["state"][index][k]) for k in state)
    fresh = make_optimizer(optimizer, [nn.Parameter(p[1].clone()) for p in stacked], LRS[optimizer][1],
                           OPTIONS[optimizer])
    fresh.load_state_dict(built)
    for q in fresh.param_groups[0]["params"]:
        q.grad = torch.ones_like(q)
    fresh.step()


def test_a_diverged_member_changes_no_other_member(mnist1d_tensors, config):
    tensors = {**mnist1d_tensors, "x_train": mnist1d_tensors["x_train"][:512],
               "y_train": mnist1d_tensors["y_train"][:512]}
    config["train"].update(epochs=2)
    calm = [Run("sgd", 32, 0.1, 0), Run("sgd", 32, 0.2, 1)]
    wild = Run("sgd", 32, 1e6, 2)
    alone = train_bundle(tensors, calm, config, log=quiet)
    together = train_bundle(tensors, [calm[0], wild, calm[1]], config, log=quiet)
    solo_wild = train_run(tensors, wild, config, log=quiet)
    diverged = together[1]
    assert diverged.status == "diverged" == solo_wild.status
    assert diverged.diverged_step == solo_wild.diverged_step and diverged.steps_done == solo_wild.steps_done
    assert diverged.checkpoint_steps == solo_wild.checkpoint_steps
    assert [s is None for s in diverged.checkpoint_states] == [s is None for s in solo_wild.checkpoint_states]
    assert diverged.log_steps == solo_wild.log_steps
    for a, b in zip(alone, (together[0], together[2])):
        assert b.status == "ok" and a.log_losses == b.log_losses
        for x, y in zip(a.checkpoint_states, b.checkpoint_states):
            assert all(torch.equal(x[k], y[k]) for k in x)


def test_bundle_resumed_from_a_saved_epoch_is_bit_identical(tmp_path, mnist1d_tensors, config):
    tensors = {**mnist1d_tensors, "x_train": mnist1d_tensors["x_train"][:512],
               "y_train": mnist1d_tensors["y_train"][:512]}
    config["train"]["epochs"] = 4
    runs = [Run("adam", 32, 0.004, 0), Run("adam", 32, 0.001, 1)]
    whole = train_bundle(tensors, runs, config, log=quiet)
    saved = []

    def keep_epoch_2(build):
        saved.append(None)
        if len(saved) == 2:
            for i, state in enumerate(build()):
                atomic_torch_save(state, tmp_path / f"state{i}.pt")

    train_bundle(tensors, runs, config, log=quiet, on_epoch_end=keep_epoch_2)
    states = [load_tensors(tmp_path / f"state{i}.pt") for i in range(2)]  # weights_only=True
    assert [s["epochs_done"] for s in states] == [2, 2]
    resumed = train_bundle(tensors, runs, config, log=quiet, resumes=states)
    # a solo run continues from a bundle member's state too: the formats are the same
    solo = train_run(tensors, runs[1], config, log=quiet, resume=states[1])
    for a, b in zip(resumed, whole):
        assert a.log_losses == b.log_losses and a.checkpoint_steps == b.checkpoint_steps
        for x, y in zip(a.checkpoint_states, b.checkpoint_states):
            assert all(torch.equal(x[k], y[k]) for k in x)
    for key, value in whole[1].checkpoint_states[-1].items():
        torch.testing.assert_close(solo.checkpoint_states[-1][key], value, rtol=0, atol=1e-5)


def test_flushing_denormals_changes_no_weight_or_loss_of_a_bundle_whose_adam_moments_sit_at_denormals(
        mnist1d_tensors, config):
    """What a job's flush-to-zero (optbench.jobs.setup_job) may change: only values below float32's smallest
    normal, 1.2e-38. An Adam update reads them as lr·m̂/(√v̂ + eps) ≤ 0.0512 · 10 · 1.2e-38 / 1e-8 ≈ 6e-31 (the
    bias correction at most 10×), below the last bit of any weight above 1e-23; so the same weights and
    losses, bit for bit, here where 800 steps at high learning rates left thousands of first moments at
    denormals (without the flush)."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals (torch.set_flush_denormal)")
    tensors = {**mnist1d_tensors, "x_train": mnist1d_tensors["x_train"][:320],
               "y_train": mnist1d_tensors["y_train"][:320]}
    config["train"].update(epochs=40, checkpoints=3)
    config["model"]["hidden"] = [100, 100]  # the default model: its dead units are what leaves moments stuck
    runs = [Run("adam", 16, lr, 0) for lr in (0.0512, 0.0064, 0.0008)]
    smallest_normal = torch.finfo(torch.float32).tiny
    optimizers = []

    class Recorded(VectorisedOptimizer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            optimizers.append(self)

    def trained(flush):
        # one thread, as a job trains (train.threads): the flush is the calling thread's
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        torch.set_flush_denormal(flush)
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr("optbench.bundle.VectorisedOptimizer", Recorded)
                results = train_bundle(tensors, runs, config, log=quiet)
        finally:
            torch.set_flush_denormal(False)
            torch.set_num_threads(threads)
        moments = [state["exp_avg"] for state in optimizers[-1].state.values()]
        return results, sum(int(((m != 0) & (m.abs() < smallest_normal)).sum()) for m in moments)

    plain, denormals = trained(False)
    flushed, left = trained(True)
    assert denormals > 1000 and left == 0
    for a, b in zip(plain, flushed):
        assert a.log_losses == b.log_losses and a.checkpoint_steps == b.checkpoint_steps
        for x, y in zip(a.checkpoint_states, b.checkpoint_states):
            assert all(torch.equal(x[k], y[k]) for k in x)


def test_partition_cuts_each_optimizers_runs_into_bundles_of_at_most_bundle_size(config):
    config["grid"]["seeds"] = [0, 1, 2]
    every_run = {(o, float(lr), s) for o in config["grid"]["optimizers"]
                 for lr in config["optimizers"][o]["lrs"] for s in config["grid"]["seeds"]}
    # fixed blocks of bundle_size // 3 learning rates × 3 seeds (tests/test_config.py: stable as the grid grows)
    for size, expected in ((1, [1] * 9), (3, [3, 3, 3]), (4, [3, 3, 3]), (5, [3, 3, 3]), (9, [9]), (36, [9])):
        config["train"]["bundle_size"] = size
        bundles = partition(config)
        assert sorted(len(m) for (o, _), m in bundles.items() if o == "sgd") == sorted(expected)
        assert {(o, lr, s) for (o, _), members in bundles.items() for lr, s in members} == every_run
        assert sum(len(m) for m in bundles.values()) == len(every_run)


def test_member_chunk_keeps_a_chunk_of_activations_within_the_cache_budget():
    assert member_chunk(16, 100) >= 36        # small batches: the whole default bundle in one product
    assert 4 <= member_chunk(256, 100) < 36   # large batches: cut so activations stay in cache
    assert member_chunk(60000, 1000) == 1


def test_bundle_with_a_diverged_member_resumes_bit_identically(tmp_path, mnist1d_tensors, config):
    """States saved after a member diverged (and left the ensemble) continue like the uninterrupted bundle."""
    tensors = {**mnist1d_tensors, "x_train": mnist1d_tensors["x_train"][:512],
               "y_train": mnist1d_tensors["y_train"][:512]}
    config["train"]["epochs"] = 3
    runs = [Run("sgd", 32, 0.1, 0), Run("sgd", 32, 1e6, 1), Run("sgd", 32, 0.2, 2)]
    whole = train_bundle(tensors, runs, config, log=quiet)
    saved = []
    train_bundle(tensors, runs, config, log=quiet, on_epoch_end=lambda build: saved.append(build()))
    atomic_torch_save(saved[1], tmp_path / "states.pt")  # after epoch 2
    states = load_tensors(tmp_path / "states.pt")  # weights_only=True round trip
    assert states[1]["status"] == "diverged" and states[0]["epochs_done"] == 2
    resumed = train_bundle(tensors, runs, config, log=quiet, resumes=states)
    for a, b in zip(resumed, whole):
        assert a.status == b.status and a.log_losses == b.log_losses and a.checkpoint_steps == b.checkpoint_steps
        for x, y in zip(a.checkpoint_states, b.checkpoint_states):
            assert (x is None) == (y is None) and (x is None or all(torch.equal(x[k], y[k]) for k in x))


def test_bench_flop_count_equals_torchs_count_for_a_bundle_step_and_for_its_bare_products(config):
    """The FLOP/s target rests on bench/run.py's count: check it against torch's own FlopCounterMode
    on a real forward + backward of a bundle, and the bare reference's products in both orientations."""
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    members, batch_size, x = 3, 64, torch.randn(10, 40)
    models = [init_model(x, config["model"]["hidden"], seed) for seed in range(members)]
    params = {k: v.requires_grad_() for k, v in stacked_parameters(models).items()}
    stated, layers = bench.matmul_flops(config, 40, batch_size)
    with FlopCounterMode(display=False) as counted:
        member_losses(params, torch.randn(members, batch_size, 40),
                      torch.randint(0, 10, (members, batch_size))).sum().backward()
    assert counted.get_total_flops() == stated * members
    for orientation in ("features-first", "batch-first"):
        with FlopCounterMode(display=False) as counted:
            bench.bare_matmuls(layers, members, batch_size, 1, orientation)()
        assert counted.get_total_flops() == stated * members, orientation


def test_a_bundles_train_seconds_share_each_epoch_among_the_members_training_in_it(monkeypatch, mnist1d_tensors,
                                                                                  config):
    """3 epochs; the wild member diverges in epoch 1 and leaves: it holds 1/3 of epoch 1, the two others
    1/3 of epoch 1 and 1/2 of epochs 2 and 3; the shares add up to the loop time (3 s), not 3 × 3 s."""
    monkeypatch.setattr("optbench.bundle.perf_counter", TickingClock())
    tensors = {**mnist1d_tensors, "x_train": mnist1d_tensors["x_train"][:512],
               "y_train": mnist1d_tensors["y_train"][:512]}
    config["train"]["epochs"] = 3
    runs = [Run("sgd", 32, 0.1, 0), Run("sgd", 32, 1e6, 1), Run("sgd", 32, 0.2, 2)]
    results = train_bundle(tensors, runs, config, log=quiet)
    assert [r.status for r in results] == ["ok", "diverged", "ok"] and results[1].diverged_step <= 16
    assert [r.train_seconds for r in results] == pytest.approx([1 / 3 + 2 / 2, 1 / 3, 1 / 3 + 2 / 2], rel=1e-12)
    assert sum(r.train_seconds for r in results) == pytest.approx(3.0, rel=1e-12)
    calm = train_bundle(tensors, [runs[0], runs[2]], config, log=quiet)
    assert [r.train_seconds for r in calm] == [1.5, 1.5]


def test_a_resumed_bundle_continues_each_members_train_seconds(monkeypatch, tmp_path, mnist1d_tensors, config):
    """4 epochs of 2 members, saved after epoch 2 and resumed: 0.5 s per member-epoch either way, and the
    resumed members' shares still add up to the whole bundle's loop time (4 s)."""
    monkeypatch.setattr("optbench.bundle.perf_counter", TickingClock())
    tensors = {**mnist1d_tensors, "x_train": mnist1d_tensors["x_train"][:512],
               "y_train": mnist1d_tensors["y_train"][:512]}
    config["train"]["epochs"] = 4
    runs = [Run("adam", 32, 0.004, 0), Run("adam", 32, 0.001, 1)]
    saved = []
    whole = train_bundle(tensors, runs, config, log=quiet, on_epoch_end=lambda build: saved.append(build()))
    assert [s["train_seconds"] for s in saved[1]] == [1.0, 1.0]
    atomic_torch_save(saved[1], tmp_path / "states.pt")
    resumed = train_bundle(tensors, runs, config, log=quiet, resumes=load_tensors(tmp_path / "states.pt"))
    assert [r.train_seconds for r in resumed] == [r.train_seconds for r in whole] == [2.0, 2.0]


@pytest.mark.parametrize("block", [1, 3, 100])
def test_epoch_batches_are_the_permutations_batches_a_partial_last_one_included(block):
    x, y = torch.arange(500.0).view(50, 10), torch.arange(50)
    permutations = torch.stack([torch.randperm(50, generator=torch.Generator().manual_seed(s)) for s in range(4)])
    batches = list(epoch_batches(x, y, permutations, 8, 7, block))  # 7 steps: 6 of 8 samples, then 2
    assert [tuple(xb.shape) for xb, _ in batches] == [(4, 8, 10)] * 6 + [(4, 2, 10)]
    for k, (xb, yb) in enumerate(batches):
        index = permutations[:, 8 * k:8 * (k + 1)]
        assert torch.equal(xb, x[index]) and torch.equal(yb, index) and xb.is_contiguous()


def test_member_keeps_the_partial_last_batch_like_its_solo_run(mnist1d_tensors, config):
    """drop_last: false, 500 = 7 × 64 + 52: the bundle's 8th update sees the 52 samples train_run does."""
    tensors = {**mnist1d_tensors, "x_train": mnist1d_tensors["x_train"][:500], "y_train": mnist1d_tensors["y_train"][:500]}
    config["train"].update(epochs=2, drop_last=False)
    runs = [Run("adam", 64, 0.004, 0), Run("adam", 64, 0.001, 1)]
    for member, run in zip(train_bundle(tensors, runs, config, log=quiet), runs):
        solo = train_run(tensors, run, config, log=quiet)
        assert member.steps_done == solo.steps_done == 16 and member.log_steps == solo.log_steps
        for key, value in solo.checkpoint_states[-1].items():
            torch.testing.assert_close(member.checkpoint_states[-1][key], value, rtol=0, atol=1e-5)


# ---- named optimizer variants (an entry's `type:` picks the family; its name is only a name) ----

VARIANTS = {  # entry name → (its config entry, the torch.optim optimizer it must equal, built directly)
    "sgd_momentum": ({"type": "sgd", "momentum": 0.9, "weight_decay": 0.0},
                     lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9)),
    "adam_malladi_k4": ({"type": "adam", "betas": [0.975, 0.99975], "eps": 2e-8, "weight_decay": 0.0},
                        lambda params, lr: torch.optim.Adam(params, lr=lr, betas=(0.975, 0.99975), eps=2e-8)),
}


def variant_config(config, name, lrs):
    config = copy.deepcopy(config)
    config["optimizers"][name] = {**VARIANTS[name][0], "lrs": lrs}
    config["train"].update(epochs=1, checkpoints=6, drop_last=True)
    return config


@pytest.mark.parametrize("name", VARIANTS)
def test_a_named_variants_member_matches_torch_optim_with_its_settings_over_20_steps(mnist1d_tensors, config, name):
    """sgd_momentum: {type: sgd, momentum: 0.9} in a bundle, three learning rates (so the vectorised update,
    not torch.optim, steps them), against torch.optim.SGD(momentum=0.9) built here, not by make_optimizer."""
    lrs = [0.05, 0.2, 0.1] if name == "sgd_momentum" else [0.001, 0.004, 0.002]
    config = variant_config(config, name, lrs)
    tensors = {**mnist1d_tensors, "x_train": mnist1d_tensors["x_train"][:320], "y_train": mnist1d_tensors["y_train"][:320]}
    runs = [Run(name, 16, lr, seed) for lr, seed in zip(lrs, (0, 1, 2))]
    for run, result in zip(runs, train_bundle(tensors, runs, config, log=quiet)):
        assert result.status == "ok" and result.steps_done == 20
        model = init_model(tensors["x_train"], config["model"]["hidden"], run.seed)
        optimizer = VARIANTS[name][1](model.parameters(), run.lr)
        order = torch.Generator().manual_seed(derived_seed(run.seed, "order"))
        permutation = torch.randperm(320, generator=order)
        for step in range(20):
            index = permutation[16 * step:16 * (step + 1)]
            nn.CrossEntropyLoss()(model(tensors["x_train"][index]), tensors["y_train"][index]).backward()
            optimizer.step()
            optimizer.zero_grad()
        for key, value in model.state_dict().items():
            torch.testing.assert_close(result.checkpoint_states[-1][key], value, rtol=0, atol=1e-5)


def test_the_momentum_update_equals_torch_optim_sgd_with_momentum_per_member():
    torch.manual_seed(0)
    lrs = [0.3, 0.01, 0.07]
    stacked = [torch.randn(3, 5, 4), torch.randn(3, 5)]
    alone = [[nn.Parameter(p[m].clone()) for p in stacked] for m in range(3)]
    ours = VectorisedOptimizer("sgd_momentum", stacked, lrs, VARIANTS["sgd_momentum"][0])
    assert ours.kind == "sgd" and ours.settings["momentum"] == 0.9
    theirs = [VARIANTS["sgd_momentum"][1](params, lr) for params, lr in zip(alone, lrs)]
    for _ in range(15):
        grads = [torch.randn_like(p) for p in stacked]
        ours.step(grads=grads)
        for m, optim in enumerate(theirs):
            for q, g in zip(alone[m], grads):
                q.grad = g[m].clone()
            optim.step()
    for m in range(3):
        for p, q in zip(stacked, alone[m]):
            torch.testing.assert_close(p[m], q.detach(), rtol=1e-6, atol=1e-7)
        assert "momentum_buffer" in ours.state[stacked[0]]


def test_a_momentum_bundle_resumed_from_a_saved_epoch_is_bit_identical(tmp_path, mnist1d_tensors, config):
    """The momentum buffers travel in the resume state (torch.optim's state_dict format), so a resumed
    momentum bundle continues bit for bit, and a solo torch.optim run continues from a member's state."""
    tensors = {**mnist1d_tensors, "x_train": mnist1d_tensors["x_train"][:512],
               "y_train": mnist1d_tensors["y_train"][:512]}
    config = variant_config(config, "sgd_momentum", [0.05, 0.02])
    config["train"].update(epochs=4, checkpoints=8)
    runs = [Run("sgd_momentum", 32, 0.05, 0), Run("sgd_momentum", 32, 0.02, 1)]
    whole = train_bundle(tensors, runs, config, log=quiet)
    saved = []
    train_bundle(tensors, runs, config, log=quiet, on_epoch_end=lambda build: saved.append(build()))
    atomic_torch_save(saved[1], tmp_path / "states.pt")  # after epoch 2
    states = load_tensors(tmp_path / "states.pt")
    assert all("momentum_buffer" in s["optimizer"]["state"][0] for s in states)
    resumed = train_bundle(tensors, runs, config, log=quiet, resumes=states)
    for a, b in zip(resumed, whole):
        assert a.log_losses == b.log_losses and a.checkpoint_steps == b.checkpoint_steps
        for x, y in zip(a.checkpoint_states, b.checkpoint_states):
            assert all(torch.equal(x[k], y[k]) for k in x)
    solo = train_run(tensors, runs[1], config, log=quiet, resume=states[1])
    for key, value in whole[1].checkpoint_states[-1].items():
        torch.testing.assert_close(solo.checkpoint_states[-1][key], value, rtol=0, atol=1e-5)


def test_a_variants_name_changes_no_number(mnist1d_tensors, config):
    """sgd_momentum {type: sgd, momentum: 0.9} trains exactly as an entry named sgd with momentum 0.9."""
    tensors = {**mnist1d_tensors, "x_train": mnist1d_tensors["x_train"][:320], "y_train": mnist1d_tensors["y_train"][:320]}
    named = variant_config(config, "sgd_momentum", [0.05, 0.1])
    plain = copy.deepcopy(named)
    plain["optimizers"]["sgd"] = {k: v for k, v in named["optimizers"]["sgd_momentum"].items() if k != "type"}
    a = train_bundle(tensors, [Run("sgd_momentum", 16, 0.05, 0), Run("sgd_momentum", 16, 0.1, 1)], named, log=quiet)
    b = train_bundle(tensors, [Run("sgd", 16, 0.05, 0), Run("sgd", 16, 0.1, 1)], plain, log=quiet)
    for x, y in zip(a, b):
        assert x.log_losses == y.log_losses
        assert all(torch.equal(x.checkpoint_states[-1][k], y.checkpoint_states[-1][k]) for k in x.checkpoint_states[-1])


def test_gradient_buffers_give_autograds_own_gradients_bit_for_bit(config):
    """train_bundle's backward writes each parameter's gradient into a buffer it keeps (issue 14: so the
    optimizer's per-member views are cut once, not every step): the numbers must be autograd's own for
    baddbmm, bit for bit, whatever the members' losses (a masked, i.e. diverged, member included), and
    the buffers the very tensors handed back, step after step."""
    members, batch_size, x = 5, 16, torch.randn(10, 40)
    models = [init_model(x, config["model"]["hidden"], seed) for seed in range(members)]
    params = {k: v.requires_grad_() for k, v in stacked_parameters(models).items()}
    buffers = {k: torch.empty_like(v) for k, v in params.items()}
    for step in range(2):
        xb, yb = torch.randn(members, batch_size, 40), torch.randint(0, 10, (members, batch_size))
        mask = torch.tensor([True, True, step == 0, True, True])
        plain = torch.autograd.grad(torch.where(mask, member_losses(params, xb, yb), 0.0).sum(), list(params.values()))
        buffered = torch.autograd.grad(torch.where(mask, member_losses(params, xb, yb, buffers), 0.0).sum(),
                                       list(params.values()))
        assert all(g is b for g, b in zip(buffered, buffers.values()))
        for name, a, b in zip(params, plain, buffered):
            assert torch.equal(a, b), name
        assert step == 0 or not buffered[0][2].any()  # the masked member gets no gradient
