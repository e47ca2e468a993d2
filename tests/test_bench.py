"""The bench's compute floor: its FLOP count of each stage equals torch's FlopCounterMode on one step of it."""
import copy
import importlib.util

import torch
from torch.utils.flop_counter import FlopCounterMode

from optbench import gradvar as gv
from optbench.evaluate import evaluate_split
from optbench.model import make_mlp
from tests.conftest import ROOT


def load_bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_floor():
    return load_bench("floor")


def counted(function) -> int:
    with FlopCounterMode(display=False) as counter:
        function()
    return counter.get_total_flops()


def test_evaluation_floor_is_one_forward_per_sample():
    floor = load_floor()
    model, x, y = make_mlp(40, [30, 20]).eval(), torch.randn(2500, 40), torch.randint(0, 10, (2500,))
    assert counted(lambda: evaluate_split(model, x, y, 1000)) == floor.forward_flops(floor.layer_shapes(40, [30, 20]), 2500)


def test_probe_floor_counts_the_factor_products_and_the_pass_over_n():
    """One checkpoint of probe_run, with an m above n/2 (its left-out samples are summed)."""
    floor = load_floor()
    n, ms, draws = 60, [1, 5, 40], 7
    model, x, y = make_mlp(12, [9, 8]), torch.randn(n, 12), torch.randint(0, 10, (n,))
    bundle = {"steps": torch.tensor([3]), "states": [copy.deepcopy(model.state_dict())], "steps_per_epoch": 1}
    settings = {"batch_sizes": ms, "checkpoints": "all", "draws": draws, "seed": 0, "chunk_size": 4096}
    identity = {"dataset": "d", "model": "m", "optimizer": "sgd", "batch_size": 4, "lr": 0.1, "seed": 0}
    flops = counted(lambda: gv.probe_run(model, bundle, x, y, settings, identity, log=lambda _: None))
    assert flops == floor.probe_flops(floor.layer_shapes(12, [9, 8]), n, ms, draws)


def test_bare_products_have_the_counted_shapes():
    """The bare references run exactly the products the floor counts, at the stage's shapes."""
    floor = load_floor()
    layers = floor.layer_shapes(40, [100, 100])
    assert counted(lambda: [torch.bmm(a, b) for a, b in floor.train_products(layers, 36, 64)]) == \
        36 * floor.train_step_flops(layers, 64)
    assert counted(lambda: [torch.mm(a, b) for a, b in floor.evaluate_products(layers, 1000)]) == \
        floor.forward_flops(layers, 1000)
    products = floor.probe_products(layers, 3600, 2048, 200, gv.FACTOR_ELEMENTS)
    total = sum(counted(lambda: torch.bmm(a, b)) * calls for (a, b), calls in products)
    params = sum((i + 1) * o for i, o in layers)
    assert total == 2 * 200 * (3600 - 2048) * params


def test_the_bench_takes_the_workflows_first_bundle_of_each_optimizer():
    """make bench broke when bundles became named blocks (partition's keys (optimizer, "l0s0")): the bench
    scripts time the bundle the default grid really trains, found the way the workflow finds it
    (config.first_bundle, which bench/run.py, profile_bundle.py and compile_step.py call)."""
    from optbench.config import first_bundle, load_config, partition, prepare_config
    config = prepare_config(load_config(ROOT / "config.yaml"))
    for optimizer in ("sgd", "adam"):
        members = first_bundle(config, optimizer)
        assert len(members) == config["train"]["bundle_size"]
        assert {lr for lr, _ in members} <= set(config["optimizers"][optimizer]["lrs"])
        assert members == partition(config)[(optimizer, "l0s0")]


def test_profile_bundle_runs_on_the_default_config():
    import subprocess
    import sys
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "profile_bundle.py"), "--batch-size", "256",
                             "--rows", "3"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_probe_in_parts_has_a_row_per_m():
    """bench/gradvar_cost.py --probe --parts: one row per default m with its three parts, and their totals."""
    import re
    import subprocess
    import sys
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "gradvar_cost.py"), "--n", "400", "--hidden", "20",
                             "--repeats", "1", "--probe", "--parts"], capture_output=True, text=True, timeout=300,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = dict(re.findall(r"^\| (\w+) \| (.+) \|$", result.stdout, re.M))
    assert [key for key in rows if key.isdigit()] == [str(m) for m in gv.default_batch_sizes(400)]
    parts = {key: [float(v) for v in value.split(" | ")] for key, value in rows.items()
             if key.isdigit() or key == "all"}
    assert all(len(values) == 3 and min(values) >= 0 for values in parts.values())
    assert min(parts["all"]) > 0


def test_the_ab_bench_tells_identical_outputs_from_different_ones():
    """bench/ab.py's "identical: yes" is what a speed change's note cites: it must say no when one bit,
    one checkpoint or one table cell differs."""
    import pandas as pd

    from optbench.train import RunResult
    same = load_bench("ab").same
    run = RunResult(run=None, steps_per_epoch=1, total_steps=2)
    run.checkpoint_states, run.log_losses = [{"w": torch.ones(3)}, None], [0.5]
    twin = copy.deepcopy(run)
    assert same([run], [twin])
    twin.checkpoint_states[0]["w"][1] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))
    assert not same([run], [twin])
    table = pd.DataFrame({"loss": [0.1, 0.2]})
    assert same({"t": table}, {"t": table.copy()}) and not same({"t": table}, {"t": table + 1e-9})


def test_the_targets_say_pass_or_fail_by_their_sense_and_a_bound_whether_the_goal_is_within_it():
    """make bench's last lines: a TARGET line per target (≥ or ≤ goal), then a BOUND line for each target that
    carries a bound measured in the same run, saying whether the goal lies within what the machine allows."""
    lines = load_bench("run").target_lines([
        ("ceilinged", 2.16, 3.0, ">=", (2.78, "bare matmuls")),
        ("fast", 0.74, 0.5, "<=", (0.46, "floor")),
        ("plain", 2.4, 3.0, "<="),
        ("slow", 145.0, 90.0, "<=", (103.0, "packed")),
    ])
    assert lines == ["TARGET ceilinged 2.16 3 FAIL", "TARGET fast 0.74 0.5 FAIL", "TARGET plain 2.4 3 PASS",
                     "TARGET slow 145 90 FAIL",
                     "BOUND ceilinged 2.78 (goal beyond it): bare matmuls",
                     "BOUND fast 0.46 (goal within it): floor",
                     "BOUND slow 103 (goal beyond it): packed"]
