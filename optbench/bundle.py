"""Run bundles: several runs of one optimizer and batch size trained in one process as a batched-matmul ensemble."""
from __future__ import annotations

import math
from time import perf_counter  # a module-level name, so a test can substitute its own clock

import torch
from torch import nn
from torch.nn import functional as F

from optbench.config import Run, steps_per_epoch
from optbench.model import optimizer_param_group, optimizer_settings, optimizer_type
from optbench.train import RunResult, checkpoint_schedule, cpu_copy, derived_seed, init_model, training_state

CACHE_BYTES = 2 ** 20  # activations per forward/backward chunk of members: about an L2 cache
GATHER_BYTES = 8 * 2 ** 20  # mini-batch samples gathered at once for the coming steps of every member


def stacked_parameters(models: list[nn.Sequential]) -> dict[str, torch.Tensor]:
    """Member dimension first, in nn.Linear's layout (what the optimizer steps, in place)."""
    for model in models:
        kinds = {type(layer) for layer in model}
        if not kinds <= {nn.Flatten, nn.Linear, nn.ReLU}:
            raise TypeError(f"bundles need make_mlp's Flatten/Linear/ReLU model, got layers {kinds}")
    states = [model.state_dict() for model in models]
    return {k: torch.stack([s[k] for s in states]) for k in states[0]}


def bundle_forward(params: dict[str, torch.Tensor], x: torch.Tensor,
                   grad_buffers: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """x: (members, batch, ...) → logits (members, classes, batch): one baddbmm per layer.

    Batched matmuls rather than torch.func.vmap(functional_call): bench/run.py measured them faster
    here (fewer dispatches per step), and each member's product is its own block of the batch.
    Activations are held as (members, features, batch), i.e. h_next = W·h + b: then cross-entropy
    normalises over dim 1 with the batch contiguous (log_softmax over a 10-wide last dim was ~25×
    slower), and every gradient autograd produces is contiguous in its activation's layout, so the
    ReLU backward never runs a strided kernel. `make bench` (BENCHMARKS.md): 0.65 → 0.74–0.79 of the
    bare-matmul rate at batch 256 (with the malloc thresholds of optbench.jobs), and more
    member-samples/s at batch 16 and 64 too.

    With `grad_buffers` (a tensor shaped like each parameter) the backward writes each parameter's
    gradient into its buffer (_LinearLayer): the same tensors every step.
    """
    h = x.flatten(2).transpose(1, 2)
    names = list(params)
    for i in range(0, len(names), 2):
        weight, bias = params[names[i]], params[names[i + 1]]
        if grad_buffers is None:
            h = torch.baddbmm(bias.unsqueeze(2), weight, h)
        else:
            h = _LinearLayer.apply(bias, weight, h, grad_buffers[names[i + 1]], grad_buffers[names[i]])
        if i + 2 < len(names):
            h = h.relu_()  # in place: baddbmm's backward needs its inputs, not its output
    return h


class _LinearLayer(torch.autograd.Function):
    """baddbmm(b, W, h) whose backward writes ∂/∂b and ∂/∂W into given tensors (`out=`), the same
    ones every step, so the optimizer cuts its per-member views of them once (VectorisedOptimizer.
    _run_grads) instead of unbinding six fresh gradients per step: that was a third of a batch-16
    Adam update (issue 14). Each gradient is the product autograd's BaddbmmBackward0 computes (b's
    is its broadcast gradient summed over the batch, W's grad·hᵀ, h's Wᵀ·grad): the same bits."""

    @staticmethod
    def forward(ctx, bias, weight, h, grad_bias, grad_weight):
        ctx.save_for_backward(weight, h)
        ctx.buffers = grad_bias, grad_weight
        return torch.baddbmm(bias.unsqueeze(2), weight, h)

    @staticmethod
    def backward(ctx, grad):
        weight, h = ctx.saved_tensors
        grad_bias, grad_weight = ctx.buffers
        needs_bias, needs_weight, needs_h = ctx.needs_input_grad[:3]
        return (torch.sum(grad, 2, out=grad_bias) if needs_bias else None,
                torch.bmm(grad, h.transpose(1, 2), out=grad_weight) if needs_weight else None,
                torch.bmm(weight.transpose(1, 2), grad) if needs_h else None, None, None)


def member_losses(params: dict, x: torch.Tensor, y: torch.Tensor,
                  grad_buffers: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Each member's mean cross-entropy over its own mini-batch: (members,)."""
    return F.cross_entropy(bundle_forward(params, x, grad_buffers), y, reduction="none").mean(1)


def member_chunk(batch_size: int, width: int, element_size: int = 4) -> int:
    """Members per forward/backward chunk: their widest activation fits in CACHE_BYTES."""
    return max(1, CACHE_BYTES // (batch_size * width * element_size))


def epoch_batches(x: torch.Tensor, y: torch.Tensor, permutations: torch.Tensor, batch_size: int, steps: int,
                  block: int):
    """Each step's samples of every member, (members, batch, ...), from the members' permutations
    (members, n): gathered `block` steps at a time (one indexing op, not one per step), step-major so
    that each step's samples are contiguous; a last partial batch (drop_last: false) comes alone."""
    members = len(permutations)
    for first in range(0, steps, block):
        count = min(block, steps - first)
        index = permutations[:, first * batch_size:(first + count) * batch_size]
        full = min(count, index.shape[1] // batch_size)
        by_step = index[:, :full * batch_size].reshape(members, full, batch_size).transpose(0, 1).contiguous()
        # index_select, not x[by_step]: the same rows, ~4× faster for MNIST-1D's 40-wide samples
        flat = by_step.flatten()
        yield from zip(x.index_select(0, flat).view(*by_step.shape, *x.shape[1:]),
                       y.index_select(0, flat).view(by_step.shape))
        if full < count:
            rest = index[:, full * batch_size:]
            yield x[rest], y[rest]


def _same_tensors(cached, current) -> bool:
    """Whether `current` holds the very tensor objects `cached` does (the views cut from them still apply)."""
    return len(cached) == len(current) and all(a is b for a, b in zip(cached, current))


class VectorisedOptimizer:
    """torch.optim's SGD (with or without momentum) / Adam / AdamW on stacked parameters with one learning
    rate per member; `name` is the config's optimizer entry, whose type picks the family.

    torch.optim takes one scalar lr per group, so it is exact on a bundle only when members share it;
    the state keys (step, exp_avg, exp_avg_sq, momentum_buffer) are torch.optim's, per stacked tensor.
    The update is torch.optim's own fused kernel (its `fused=True` path: one pass over parameter,
    gradient and state per element), one call per run of members sharing a learning rate (a bundle
    is lr-major: 12 calls for the default bundle), each given every member's tensors separately.
    Separately, because the kernel rounds its vectorised body and its scalar tail differently: on a
    slice of several members, which elements fall in the tail would depend on the bundle's make-up,
    and a resumed bundle split by its members' saved steps, or one a diverged member left, would no
    longer be bit-identical. It replaced ~10 elementwise ops per tensor, which profiled at ~40 % of a
    batch-16 step (BENCHMARKS.md); its rounding differs from that op-by-op formula by an ulp or so.
    """

    def __init__(self, name: str, params: list[torch.Tensor], lrs: list[float], options: dict):
        # `name` is the config's entry (e.g. sgd_momentum), its type the family (sgd): the same settings as
        # make_optimizer would give torch.optim
        self.kind = optimizer_type(name, options)
        self.name, self.params, self.options = name, params, options
        self.settings = optimizer_settings(name, 0.0, options)
        self.state: dict[torch.Tensor, dict] = {p: {} for p in params}
        self.weight_decay = self.settings["weight_decay"]
        self.lrs = [float(lr) for lr in lrs]
        self._views: dict = {}  # member range → (the tensors they were cut from, its runs)
        self._grad_views: dict = {}  # member range → (the gradients they were cut from, runs, per-run lists)

    def _runs(self, members: slice, keys: list[str]) -> list[tuple]:
        """(lr, first, last, [params, *state[key] for key in keys]) per run of equal learning rates
        within `members`: flat lists of the members' own tensors, parameter-major, cut once and
        reused while the underlying tensors stay the same (a resume replaces the state tensors)."""
        sources = tuple(t for p in self.params for t in (p, *(self.state[p][k] for k in keys)))
        cache_key = (members.start, members.stop, len(keys))
        cached, runs = self._views.get(cache_key, ((), []))
        if not _same_tensors(cached, sources):
            per_member = [t.unbind(0) for t in sources]
            runs, first = [], members.start
            for end in range(members.start + 1, members.stop + 1):
                if end == members.stop or self.lrs[end] != self.lrs[first]:
                    lists = [[m for j in range(i, len(sources), 1 + len(keys)) for m in per_member[j][first:end]]
                             for i in range(1 + len(keys))]
                    runs.append((self.lrs[first], first, end, lists))
                    first = end
            self._views[cache_key] = (sources, runs)
        return runs

    def _run_grads(self, grads: list[torch.Tensor], members: slice, runs: list[tuple]) -> list[list[torch.Tensor]]:
        """Each run's gradients in its parameter-major order, from the range's stacked gradients: cut
        once while the same gradient tensors come back (train_bundle's gradient buffers)."""
        cache_key = (members.start, members.stop)
        cached, cached_runs, lists = self._grad_views.get(cache_key, ((), None, []))
        if cached_runs is not runs or not _same_tensors(cached, grads):
            per_member = [g.unbind(0) for g in grads]
            lists = [[m for g in per_member for m in g[first - members.start:end - members.start]]
                     for _, first, end, _ in runs]
            self._grad_views[cache_key] = (tuple(grads), runs, lists)
        return lists

    @torch.no_grad()
    def step(self, members: slice | None = None, grads: list[torch.Tensor] | None = None,
             advance: bool = True) -> None:
        """Update `members` (default: all) from `grads`, one per parameter holding those members'
        gradients (default: each parameter's .grad). A step may be taken range by range as each
        range's gradients arrive; `advance` counts the step (Adam's step counter): pass it once per step."""
        members = slice(*(members or slice(None)).indices(len(self.params[0]))[:2])
        grads = grads if grads is not None else [p.grad for p in self.params]
        if self.kind == "sgd":
            self._sgd(members, grads)
        else:
            self._adam(members, grads, advance)

    def _sgd(self, members, grads) -> None:
        momentum = self.settings["momentum"]
        if momentum != 0 and "momentum_buffer" not in self.state[self.params[0]]:
            # zeros, not torch's copy of the first gradient: 0·momentum + g is that copy, bit for bit,
            # and the first step may come range by range
            for p in self.params:
                self.state[p]["momentum_buffer"] = torch.zeros_like(p)
        runs = self._runs(members, ["momentum_buffer"] if momentum != 0 else [])
        for (lr, _, _, (params, *buffers)), run_grads in zip(runs, self._run_grads(grads, members, runs)):
            torch._fused_sgd_(params, run_grads, buffers[0] if buffers else [], weight_decay=self.weight_decay,
                              momentum=momentum, lr=lr, dampening=0.0, nesterov=False, maximize=False,
                              is_first_step=False)

    def _adam(self, members, grads, advance) -> None:
        beta1, beta2 = self.settings["betas"]
        for p in self.params:
            if not self.state[p]:
                self.state[p].update(step=torch.tensor(0.0), exp_avg=torch.zeros_like(p),
                                     exp_avg_sq=torch.zeros_like(p))
        steps = [self.state[p]["step"] for p in self.params]
        if advance:
            torch._foreach_add_(steps, 1)
        kernel = torch._fused_adamw_ if self.kind == "adamw" else torch._fused_adam_
        runs = self._runs(members, ["exp_avg", "exp_avg_sq"])
        for (lr, first, end, (params, exp_avgs, exp_avg_sqs)), run_grads in zip(runs, self._run_grads(grads, members, runs)):
            kernel(params, run_grads, exp_avgs, exp_avg_sqs, [], [t for t in steps for _ in range(end - first)],
                   lr=lr, beta1=beta1, beta2=beta2, weight_decay=self.weight_decay,
                   eps=self.settings["eps"], amsgrad=False, maximize=False)


def member_optimizer_state(name: str, optimizer, params: list[torch.Tensor], member: int,
                           lr: float, options: dict) -> dict:
    """The member's slice as the state_dict of a solo torch.optim run (so resume files mix freely),
    built without a torch.optim optimizer (see optbench.model.optimizer_param_group)."""
    state = {index: {k: (v.detach().clone() if k == "step" else v.detach()[member].clone())
                     for k, v in optimizer.state.get(p, {}).items()} for index, p in enumerate(params)}
    return {"state": state, "param_groups": [optimizer_param_group(name, lr, options, len(params))]}


def load_member_optimizer_state(optimizer, params: list[torch.Tensor], member: int, state_dict: dict) -> None:
    for index, p in enumerate(params):
        saved = state_dict["state"].get(index, {})
        state = optimizer.state.setdefault(p, {})
        for key, value in saved.items():
            if key == "step":
                state[key] = value.clone()
            else:
                state.setdefault(key, torch.zeros_like(p.detach()))[member].copy_(value)


def train_bundle(tensors: dict, runs: list[Run], config: dict, device: str = "cpu", log=print,
                 resumes: list[dict | None] | None = None, on_epoch_end=None, *,
                 announce_resume: bool = True) -> list[RunResult]:
    """Train runs of one optimizer and batch size together; each equals train_run(run) to rounding.

    Each member keeps its own initialisation (init_model(seed)), data order (its own `order`
    generator, one permutation per epoch) and learning rate. A member with a non-finite mini-batch
    loss stops there exactly as in train_run: no update from that loss (its loss is masked out of
    the backward, so no gradient reaches any other member) and no weights after it.

    `resumes[i]` is member i's training_state() (train_run's format); all must be at the same step.
    `on_epoch_end(states_fn)` is called after every epoch; states_fn() builds every member's
    training_state (built only if the caller saves).

    Time: each epoch's loop time (from its permutations to its log line, resume saves excluded) is
    shared equally among the members training at the epoch's start, a member that diverges during
    it included; from the next epoch on a diverged member stops accruing. So the members'
    train_seconds (each continuing from its resumed value) add up to the bundle's loop time, and a
    grid's summed train_seconds never exceeds the wall time of its train jobs.
    """
    (name,), (batch_size,) = {r.optimizer for r in runs}, {r.batch_size for r in runs}
    train_cfg, options = config["train"], config["optimizers"][name]
    resumes = resumes or [None] * len(runs)
    x = tensors["x_train"].to(device)
    y = tensors["y_train"].to(device)
    n = len(x)
    per_epoch = steps_per_epoch(n, batch_size, train_cfg["drop_last"])
    total = train_cfg["epochs"] * per_epoch
    results = [RunResult(run=run, steps_per_epoch=per_epoch, total_steps=total) for run in runs]

    models = [init_model(tensors["x_train"], config["model"]["hidden"], run.seed) for run in runs]
    for model, resume in zip(models, resumes):
        if resume is not None:
            model.load_state_dict(resume["model"])
    keys = list(models[0].state_dict())
    stacked = {k: v.to(device) for k, v in stacked_parameters(models).items()}
    params = list(stacked.values())
    # Members go through forward and backward in chunks whose activations stay in cache (measured
    # ~2× faster at batch 256 than one product over all members), each chunk on leaf views of the
    # stacked tensors; its members are updated as soon as its gradients exist, from autograd's own
    # gradient tensors, still in cache (no zero-filled stacked gradient to accumulate into and
    # clear: three passes over every parameter per step, ~40 % of a step at the tutorial's 784-512-512).
    chunk = member_chunk(batch_size, max(config["model"]["hidden"] + [x[0].numel()]))
    chunks = [slice(start, start + chunk) for start in range(0, len(runs), chunk)]
    # Samples are gathered for `block` steps at a time (one indexing op, not one per step and chunk),
    # within GATHER_BYTES whatever the data's width.
    block = max(1, GATHER_BYTES // (len(runs) * batch_size * x[0].numel() * x.element_size()))
    chunk_params = [{k: p[part].requires_grad_() for k, p in stacked.items()} for part in chunks]
    grad_buffers = [{k: torch.empty_like(view) for k, view in views.items()} for views in chunk_params]
    lrs = [run.lr for run in runs]
    optimizer = VectorisedOptimizer(name, params, lrs, options)
    orders = [torch.Generator().manual_seed(derived_seed(run.seed, "order")) for run in runs]
    for member, (result, resume) in enumerate(zip(results, resumes)):
        if resume is None:
            continue
        load_member_optimizer_state(optimizer, params, member, resume["optimizer"])
        orders[member].set_state(resume["order_rng"])
        result.restore_progress(resume)
    training = [r for r in results if r.status == "ok"]
    if len({r.steps_done for r in training}) > 1:
        raise ValueError("bundle members must resume from the same step; train them as separate bundles")
    if not training:
        return results
    step = training[0].steps_done
    if step and announce_resume:
        log(f"bundle of {len(runs)}: resuming at epoch {training[0].epochs_done}, step {step}")
    schedule = checkpoint_schedule(total, train_cfg["checkpoints"])
    pending = [[s for s in schedule if s not in r.checkpoint_steps] for r in results]
    scheduled = set(schedule)
    active = torch.tensor([r.status == "ok" for r in results], device=device)
    active_parts = [active[part] for part in chunks]  # views: updating one updates `active`

    def member_state(member: int) -> dict:
        return cpu_copy({k: stacked[k][member] for k in keys})

    def checkpoint(member: int, at: int) -> None:
        pending[member].pop(0)
        results[member].checkpoint_steps.append(at)
        results[member].checkpoint_states.append(member_state(member))

    def member_training_state(member: int) -> dict:
        return training_state(results[member], member_state(member),
                              member_optimizer_state(name, optimizer, params, member, lrs[member], options),
                              orders[member])

    def diverge(member: int, at: int) -> None:
        results[member].diverge(at, pending[member])
        log(f"{runs[member]}: diverged at step {at} (non-finite mini-batch loss)")

    if step == 0:
        for member in range(len(runs)):
            if pending[member] and pending[member][0] == 0:
                checkpoint(member, 0)
    log_every = train_cfg["log_every"]
    while active.any() and step < total:
        epoch_started, sharing = perf_counter(), torch.nonzero(active).flatten().tolist()
        # Every member draws its permutation each epoch, as its solo run would (diverged ones too: unused).
        permutations = torch.stack([torch.randperm(n, generator=g) for g in orders]).to(device)
        logged_steps, logged_losses = [], []
        for x_step, y_step in epoch_batches(x, y, permutations, batch_size, per_epoch, block):
            chunk_losses = []
            for part, views, buffers, chunk_active in zip(chunks, chunk_params, grad_buffers, active_parts):
                losses = member_losses(views, x_step[part], y_step[part], buffers)
                # where(), not a product: 0 × NaN would leak NaN into the shared backward.
                objective = torch.where(chunk_active, losses, 0.0).sum()
                if not math.isfinite(objective.item()):  # rare: find the active members whose loss is not finite
                    finite = torch.isfinite(losses.detach())
                    for member in (torch.nonzero(chunk_active & ~finite).flatten() + part.start).tolist():
                        diverge(member, step + 1)
                    chunk_active &= finite
                    objective = torch.where(chunk_active, losses, 0.0).sum()
                grads = torch.autograd.grad(objective, list(views.values()))  # the chunk's buffers, filled
                chunk_losses.append(losses.detach())
                # diverged members are updated too (from zero gradients), as before: never observed
                optimizer.step(part, list(grads), advance=part.start == 0)
            if not active.any():
                break
            step += 1
            if step % log_every == 0:
                logged_steps.append(step)
                logged_losses.append(chunk_losses[0] if len(chunks) == 1 else torch.cat(chunk_losses))
            if step in scheduled:  # a set lookup per step; the members are visited only at checkpoints
                for member in torch.nonzero(active).flatten().tolist():
                    if pending[member] and pending[member][0] == step:
                        checkpoint(member, step)
        table = torch.stack(logged_losses).to("cpu", torch.float64).T.tolist() if logged_losses else []
        for member, result in enumerate(results):
            # a member logs the steps it trained: all of them, or those before its divergence
            last = step if result.status == "ok" else result.diverged_step - 1
            keep = [(s, v) for s, v in zip(logged_steps, table[member] if table else []) if s <= last]
            result.log_steps += [s for s, _ in keep]
            result.log_losses += [v for _, v in keep]
            if result.status == "ok":
                result.steps_done = step
                result.epochs_done += 1
        ok = [r for r in results if r.status == "ok"]
        if ok:
            log(f"bundle of {len(runs)} ({name}, bs {batch_size}): epoch {ok[0].epochs_done}/{train_cfg['epochs']} "
                f"step {step}, {len(ok)} members training")
        share = (perf_counter() - epoch_started) / len(sharing)
        for member in sharing:
            results[member].train_seconds += share
        if on_epoch_end is not None:
            on_epoch_end(lambda: [member_training_state(member) for member in range(len(runs))])
        alive = [m for m, r in enumerate(results) if r.status == "ok"]
        if 0 < len(alive) < len(runs) and step < total:
            return _continue_without_diverged(tensors, runs, config, device, log, results, alive,
                                              [member_training_state(m) for m in range(len(runs))], on_epoch_end)
    return results


def _continue_without_diverged(tensors, runs, config, device, log, results, alive, states, on_epoch_end):
    """Drop diverged members from the ensemble: the survivors continue from their states as a
    smaller bundle (same numbers: a member's products never involve another member)."""
    log(f"{len(runs) - len(alive)} diverged member(s) leave the bundle; {len(alive)} continue")

    def epoch_end(build_alive):
        def build_all():
            fresh = dict(zip(alive, build_alive()))
            return [fresh.get(m, states[m]) for m in range(len(runs))]
        on_epoch_end(build_all)

    rest = train_bundle(tensors, [runs[m] for m in alive], config, device, log, [states[m] for m in alive],
                        epoch_end if on_epoch_end is not None else None, announce_resume=False)
    for m, result in zip(alive, rest):
        results[m] = result
    return results
