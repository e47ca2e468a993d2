"""Which library code makes a stage's numbers, as a digest that comments and docstrings do not change."""
from __future__ import annotations

import ast
import hashlib
import subprocess
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent

# The code that turns settings into a stage's numbers: whole modules (None), or the named top-level
# definitions of a module. What only moves, checks or formats files (io, runfiles, resume, jobs,
# validation in config) is left out, so that editing it retrains nothing (jobs also flushes denormals:
# no trained bit changed by it on the default grid or in tests/test_bundle.py). train.py and bundle.py
# are the two trainers (solo, vectorised bundles); model.py builds every model kind, with the CNN's
# blocks from config.cnn_geometry; config.steps_per_epoch fixes the epochs.
STAGE_CODE = {
    "data": {"data.py": ("make_mnist1d", "read_mnist_5k", "mnist_subset_test_index", "load_mnist_subset",
                         "load_torchvision", "build_dataset")},
    "train": {"train.py": None, "bundle.py": None, "model.py": None,
              "config.py": ("steps_per_epoch", "cnn_geometry")},
    # what turns checkpoints into eval.csv (an eval.csv made by other evaluation code is made again)
    "evaluate": {"evaluate.py": None},
    # every statistic and verdict of the analysis stage (format.py writes the numbers of the claims' texts)
    "analysis": {**{name: None for name in ("analysis.py", "analysis_stage.py", "critical.py", "noise.py", "stats.py",
                                            "verdicts.py", "seeds.py", "format.py")},
                 # which runs are Malladi's variants and with what settings, and how the claims spell optimizers
                 "config.py": ("optimizer_label", "malladi_names", "malladi_variants", "on_grid")},
}


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _definitions(tree: ast.Module, names) -> list[ast.AST]:
    if names is None:
        return [tree]
    found = {getattr(node, "name", None): node for node in tree.body}
    missing = [name for name in names if name not in found]
    if missing:
        raise KeyError(f"optbench.identity.STAGE_CODE names {missing}, which the module no longer defines")
    return [found[name] for name in names]


def code_digest(stage: str, library: Path = LIBRARY) -> str:
    """sha256 (16 hex digits) of the syntax trees of STAGE_CODE[stage]: the same for any edit of
    comments, docstrings or layout, different for any edit of what the code does."""
    h = hashlib.sha256()
    for module, names in sorted(STAGE_CODE[stage].items()):
        tree = _without_docstrings(ast.parse((library / module).read_text()))
        for node in _definitions(tree, names):
            h.update(f"{module}\n{ast.dump(node, annotate_fields=False)}\n".encode())
    return h.hexdigest()[:16]


def git_state(root: Path = LIBRARY.parent) -> dict:
    """The checkout's commit and whether tracked files differ from it (None both outside a git checkout)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return {"git_commit": None, "git_dirty": None}
        status = git("status", "--porcelain", "--untracked-files=no")
        return {"git_commit": head.stdout.strip(), "git_dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"git_commit": None, "git_dirty": None}
