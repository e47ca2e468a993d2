"""The models (the tutorial's MLP, a small CNN for images) chosen by config, and the optimizers from torch.optim."""
from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from optbench.config import N_CLASSES, OPTIMIZER_TYPES, cnn_geometry


def make_mlp(input_size: int, hidden: list[int], n_classes: int = N_CLASSES) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = input_size
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def make_cnn(image_shape: tuple[int, int], channels: list[int], n_classes: int = N_CLASSES) -> nn.Sequential:
    """Per entry of `channels` one block, conv k×k (size kept) → ReLU → max-pool (config.cnn_geometry), then a
    Linear head on the flattened maps. The input is reshaped to (1, H, W) first, so that a flat 784-vector
    and a 28×28 image give the same model."""
    geometry = cnn_geometry()
    height, width = image_shape
    layers: list[nn.Module] = [nn.Flatten(), nn.Unflatten(1, (1, height, width))]
    depth = 1
    for count in channels:
        layers += [nn.Conv2d(depth, count, geometry["kernel"], padding=geometry["padding"]), nn.ReLU(),
                   nn.MaxPool2d(geometry["pool"])]
        depth, height, width = count, height // geometry["pool"], width // geometry["pool"]
    layers += [nn.Flatten(), nn.Linear(depth * height * width, n_classes)]
    return nn.Sequential(*layers)


def make_model(sample_shape: tuple[int, ...], model: dict | list[int]) -> nn.Sequential:
    """The config's model (its `model` section) for samples of `sample_shape`; a list is an MLP's hidden
    widths (the form before model kinds). A CNN takes 28×28 images; a flat square vector is read as one."""
    if isinstance(model, (list, tuple)):
        model = {"kind": "mlp", "hidden": list(model)}
    if model["kind"] == "mlp":
        return make_mlp(math.prod(sample_shape), model["hidden"])
    if model["kind"] == "cnn":
        if len(sample_shape) == 1 and math.isqrt(sample_shape[0]) ** 2 == sample_shape[0]:
            sample_shape = (math.isqrt(sample_shape[0]),) * 2
        if len(sample_shape) != 2:
            raise ValueError(f"a CNN takes H×W images, got samples of shape {tuple(sample_shape)}")
        return make_cnn(tuple(sample_shape), model["channels"])
    raise ValueError(f"unknown model kind '{model['kind']}'; expected mlp or cnn")


OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def optimizer_type(name: str, options: dict) -> str:
    """The torch.optim family of the config's optimizers.<name> entry: its `type:`, else its name."""
    kind = options.get("type", name)
    if kind not in OPTIMIZERS:
        raise ValueError(f"optimizer '{name}' has unknown type '{kind}'; expected one of {', '.join(OPTIMIZERS)}")
    return kind


def optimizer_settings(name: str, lr: float, options: dict) -> dict:
    """The keyword arguments of the torch.optim class of the config's optimizers.<name> entry (its type's
    settings, config.OPTIMIZER_TYPES' defaults where the entry leaves one out)."""
    kind = optimizer_type(name, options)
    settings = {key: options.get(key, default) for key, default in OPTIMIZER_TYPES[kind].items()}
    if "betas" in settings:
        settings["betas"] = tuple(settings["betas"])
    return {"lr": lr, **settings}


def make_optimizer(name: str, params, lr: float, options: dict) -> torch.optim.Optimizer:
    """torch.optim.SGD / Adam / AdamW (by the entry's type) with the options of the config's optimizers.<name>."""
    return OPTIMIZERS[optimizer_type(name, options)](params, **optimizer_settings(name, lr, options))


def optimizer_param_group(name: str, lr: float, options: dict, count: int) -> dict:
    """make_optimizer(name, <count parameters>, lr, options).state_dict()["param_groups"][0], without
    constructing an optimizer: the first torch.optim optimizer a process builds imports torch._dynamo
    (1.3 s, measured), which a bundle job needs for nothing else. The keys are the class's keyword
    defaults (AdamW: Adam with decoupled weight decay) and tests/test_bundle.py checks them against
    torch.optim's own state_dict, so a torch upgrade that changes them fails there."""
    kind = optimizer_type(name, options)
    signature = inspect.signature(OPTIMIZERS[kind].__init__).parameters.items()
    group = {k: p.default for k, p in signature if k not in ("self", "params") and p.default is not p.empty}
    if kind == "adamw":
        group["decoupled_weight_decay"] = True
    return {**group, **optimizer_settings(name, lr, options), "params": list(range(count))}


def input_size(x: torch.Tensor) -> int:
    return int(torch.tensor(x.shape[1:]).prod())
