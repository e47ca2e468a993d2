"""Config loading, the checks a JSON schema cannot express, and the run grid with its paths."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"

# Training-set sizes before the validation split, known without loading anything, so that a batch
# size larger than the training set is rejected before any job runs.
DATASET_TRAIN_SIZES = {"mnist1d": 4000, "fashion_mnist": 60000, "mnist": 60000}


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and what is expected."""


RUN_KEYS = ["optimizer", "batch_size", "lr", "seed"]  # a run's identity: the key columns of every per-run table
CELL_KEYS = ["optimizer", "batch_size"]                # a grid cell: the runs of all its learning rates and seeds
OPTIMIZER_LABELS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "sgd_momentum": "momentum SGD"}


def optimizer_label(name) -> str:
    """How the report, its figures and the claim texts spell an optimizer."""
    return OPTIMIZER_LABELS.get(name, str(name))


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
    with open(path) as handle:
        config = yaml.safe_load(handle)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level, got {type(config).__name__}")
    return config


def validate_schema(config: dict) -> None:
    """JSON-schema validation with defaults filled in; errors name the key path.

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
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = _with_defaults(validator_cls)(schema, registry=Registry(retrieve=retrieve))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
        raise ConfigError(f"config key '{key}': {error.message}")


def _with_defaults(validator_cls):
    """Extend a jsonschema validator to fill in `default`s, as Snakemake's validate(set_default=True) does."""
    import jsonschema

    validate_properties = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, json.loads(json.dumps(subschema["default"])))
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


def check_semantics(config: dict) -> None:
    """The cross-key checks: each failure names the key and says what is expected."""
    dataset = config["dataset"]
    n_total = DATASET_TRAIN_SIZES[dataset["name"]]
    n_train = n_total - int(round(dataset["val_fraction"] * n_total))
    check_dataset_files(dataset)
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
        if not options or not options.get("lrs"):
            raise ConfigError(f"config key 'optimizers.{name}.lrs': optimizer '{name}' is in grid.optimizers "
                              "but has no learning-rate list; give a non-empty list of positive numbers")
        lrs = options["lrs"]
        if len(set(lrs)) != len(lrs):
            raise ConfigError(f"config key 'optimizers.{name}.lrs': duplicate learning rates {lrs}")
    if config["train"]["checkpoints"] > min(total_steps(config, b) for b in grid["batch_sizes"]) + 1:
        raise ConfigError(
            "config key 'train.checkpoints': more checkpoints than training steps at the largest batch size; "
            f"use at most {min(total_steps(config, b) for b in grid['batch_sizes']) + 1}"
        )
    check_grad_variance(config)


def check_grad_variance(config: dict) -> None:
    """Cross-key checks of `grad_variance`: every probe is a run of the grid, every m is below n."""
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


TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def check_dataset_files(dataset: dict) -> None:
    """A torchvision dataset that may not be downloaded must already be on disk: say so before any job."""
    if dataset["name"] not in TORCHVISION_FOLDERS or dataset["download"]:
        return
    raw = Path(dataset["root"]) / TORCHVISION_FOLDERS[dataset["name"]] / "raw"
    missing = [name for name in IDX_FILES if not (raw / name).exists()]
    if missing:
        raise ConfigError(
            f"config key 'dataset.root': {dataset['name']} files {missing} not found in '{raw}'; "
            "put the uncompressed IDX files there, point dataset.root at them, "
            "or set 'dataset.download: true' to let data preparation fetch them"
        )


def prepare_config(config: dict) -> dict:
    """Validate (schema, then semantics) and return the config with defaults filled in."""
    validate_schema(config)
    check_semantics(config)
    return config


def n_train_samples(config: dict) -> int:
    n_total = DATASET_TRAIN_SIZES[config["dataset"]["name"]]
    return n_total - int(round(config["dataset"]["val_fraction"] * n_total))


def steps_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def total_steps(config: dict, batch_size: int) -> int:
    train = config["train"]
    return train["epochs"] * steps_per_epoch(n_train_samples(config), batch_size, train["drop_last"])


def runs(config: dict) -> list[Run]:
    grid = config["grid"]
    return [
        Run(optimizer, batch_size, float(lr), seed)
        for optimizer in grid["optimizers"]
        for batch_size in grid["batch_sizes"]
        for lr in config["optimizers"][optimizer]["lrs"]
        for seed in grid["seeds"]
    ]


def groups(config: dict) -> list[tuple[str, int, float]]:
    """Run groups sharing everything but the seed: one train and one evaluate job each."""
    seen: dict[tuple, None] = {}
    for run in runs(config):
        seen.setdefault(run.group, None)
    return list(seen)


def partition(config: dict) -> dict[tuple[str, int], list[tuple[float, int]]]:
    """(optimizer, index) → a bundle's runs as (lr, seed): each optimizer's runs, lr-major, cut into
    near-equal bundles of at most train.bundle_size (1: one run each; a multiple of the seed count
    keeps a learning rate's seeds together). Every batch size has the same bundles."""
    size, seeds = config["train"]["bundle_size"], config["grid"]["seeds"]
    cut = {}
    for optimizer in config["grid"]["optimizers"]:
        members = [(float(lr), seed) for lr in config["optimizers"][optimizer]["lrs"] for seed in seeds]
        count = -(-len(members) // size)
        bounds = [round(i * len(members) / count) for i in range(count + 1)]
        for index in range(count):
            cut[(optimizer, index)] = members[bounds[index]:bounds[index + 1]]
    return cut


def model_tag(config: dict) -> str:
    return "mlp" + "x".join(str(w) for w in config["model"]["hidden"])


def _digest(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]


def data_tag(config: dict) -> str:
    """Readable name plus a digest of every dataset setting, so two data configs never share a file."""
    return f"{config['dataset']['name']}-{_digest(config['dataset'])}"


def experiment_tag(config: dict) -> str:
    """dataset-model-digest of everything except the grid that changes a run's outputs."""
    payload = {
        "dataset": config["dataset"],
        "model": config["model"],
        # resume_every_seconds changes when progress is saved, never the results
        "train": {k: v for k, v in config["train"].items() if k != "resume_every_seconds"},
        "device": config.get("device", "cpu"),
        "optimizers": {k: {kk: vv for kk, vv in v.items() if kk != "lrs"} for k, v in config["optimizers"].items()},
    }
    return f"{config['dataset']['name']}-{model_tag(config)}-{_digest(payload)}"
