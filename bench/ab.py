"""A speed change measured side by side: this checkout's module against the same module at a git revision.

    python bench/ab.py REV bundle [--batch-size 16] [--optimizer adam] [--rounds 21]
    python bench/ab.py REV probe [--rounds 9]
    python bench/ab.py REV evaluate [--rounds 9]
    python bench/ab.py REV tables --workdir DIR [--rounds 5]

Loads optbench/<module>.py as it is at REV (`git show`) beside the checked-out one, in one process, and
runs the same work with each in paired rounds, the order alternating (old-new, new-old, ...), so that the
load of a shared machine hits both alike. Prints the median of the rounds' new ÷ old time ratios with
its quartiles, and whether the outputs are identical (tensors torch.equal, tables DataFrame.equals): a
speed change that keeps the numbers says "identical: yes". The work: `bundle`, the default bundle of the
optimizer for one epoch at the batch size (optbench.bundle.train_bundle); `probe`, one checkpoint's
probe at the default K and m list (optbench.gradvar.probe_checkpoint, at initialisation); `evaluate`,
evaluate_checkpoints over 6 runs' checkpoints from a short SGD bundle trained first; `tables`,
read_table of every declared table of a finished run in DIR (results/tables/*.csv, each run's log.csv
and eval.csv: what aggregate and the analysis read).
"""
import argparse
import copy
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from optbench.config import Run, first_bundle, load_config, prepare_config  # noqa: E402
from optbench.data import build_dataset  # noqa: E402
from optbench.jobs import setup_job  # noqa: E402
from optbench.train import init_model  # noqa: E402

MODULES = {"bundle": "bundle", "probe": "gradvar", "evaluate": "evaluate", "tables": "tables"}


def module_at(revision: str, name: str):
    """optbench/<name>.py as it is at `revision`, imported under another name (its own imports are this
    checkout's optbench)."""
    source = subprocess.run(["git", "show", f"{revision}:optbench/{name}.py"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / f"{name}_at_revision.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"{name}_at_revision", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it is being executed
    spec.loader.exec_module(module)
    return module


def same(a, b) -> bool:
    """Equal to the bit: tensors, tables, and lists, dicts and RunResults of them."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if hasattr(a, "equals"):
        return a.equals(b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if hasattr(a, "checkpoint_states"):
        return same(a.checkpoint_states, b.checkpoint_states) and a.log_losses == b.log_losses
    return a == b


def work(what: str, config: dict, tensors: dict, args):
    """(function of a module returning the outputs to compare) for the chosen work."""
    if what == "bundle":
        short = copy.deepcopy(config)
        short["train"].update(epochs=1, checkpoints=2)
        runs = [Run(args.optimizer, args.batch_size, float(lr), seed)
                for lr, seed in first_bundle(config, args.optimizer)]
        return lambda module: module.train_bundle(tensors, runs, short, log=lambda _: None)
    if what == "probe":
        from optbench.gradvar import default_batch_sizes
        x, y = tensors["x_train"], tensors["y_train"]
        model = init_model(x, config["model"]["hidden"], 0)
        settings = config["grad_variance"]
        return lambda module: module.probe_checkpoint(model, x, y, default_batch_sizes(len(x)), settings["draws"],
                                                      [0], settings["chunk_size"])
    if what == "tables":
        from optbench.tables import TABLES
        results = Path(args.workdir) / "results"
        files = [(path, path.stem) for path in sorted((results / "tables").glob("*.csv")) if path.stem in TABLES]
        files += [(path, path.stem) for path in sorted((results / "runs").rglob("*.csv")) if path.stem in ("log", "eval")]
        if not files:
            raise SystemExit(f"no tables under {results}: --workdir must be a finished run's folder")
        return lambda module: [module.read_table(path, name) for path, name in files]
    from optbench.bundle import train_bundle
    short = copy.deepcopy(config)
    short["train"].update(epochs=3)
    runs = [Run("sgd", 64, float(lr), seed) for lr, seed in first_bundle(config, "sgd")][:6]
    trained = [{"steps": torch.tensor(r.checkpoint_steps), "states": r.checkpoint_states,
                "steps_per_epoch": r.steps_per_epoch} for r in train_bundle(tensors, runs, short, log=lambda _: None)]
    model = init_model(tensors["x_train"], config["model"], seed=0)
    batch = config["evaluate"]["batch_size"]
    return lambda module: [module.evaluate_checkpoints(model, run, tensors, batch) for run in trained]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revision", help="the git revision to compare against (e.g. HEAD~1, a commit)")
    parser.add_argument("what", choices=sorted(MODULES))
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--workdir", default=str(ROOT), help="tables: the folder of a finished run")
    args = parser.parse_args()
    config = prepare_config(load_config(args.config))
    setup_job(1, "cpu")
    tensors = build_dataset(config["dataset"])
    new = importlib.import_module(f"optbench.{MODULES[args.what]}")
    old = module_at(args.revision, MODULES[args.what])
    run = work(args.what, config, tensors, args)
    outputs, ratios = {}, []
    for round_ in range(args.rounds):
        seconds = {}
        for name, module in (("old", old), ("new", new))[::1 if round_ % 2 == 0 else -1]:
            start = time.perf_counter()
            outputs[name] = run(module)
            seconds[name] = time.perf_counter() - start
        ratios.append(seconds["new"] / seconds["old"])
    low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratios[0],) * 3
    label = f"{args.what}" + (f" ({args.optimizer}, batch {args.batch_size})" if args.what == "bundle" else "")
    print(f"{label}: new ÷ old time {statistics.median(ratios):.3f} (quartiles {low:.3f}–{high:.3f}, "
          f"{args.rounds} paired rounds, against {args.revision}); identical: "
          f"{'yes' if same(outputs['old'], outputs['new']) else 'NO'}")


if __name__ == "__main__":
    main()
