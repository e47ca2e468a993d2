"""The tutorial's MLP (Flatten → Linear → ReLU → … → Linear) and the optimizers from torch.optim."""
from __future__ import annotations

import torch
from torch import nn

N_CLASSES = 10


def make_mlp(input_size: int, hidden: list[int], n_classes: int = N_CLASSES) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = input_size
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def make_optimizer(name: str, params, lr: float, options: dict) -> torch.optim.Optimizer:
    """torch.optim.SGD / Adam / AdamW with the options from the config's optimizers.<name> table."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=options.get("momentum", 0.0),
                               weight_decay=options.get("weight_decay", 0.0))
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        default_wd = 0.0 if name == "adam" else 0.01
        return cls(params, lr=lr, betas=tuple(options.get("betas", (0.9, 0.999))),
                   eps=options.get("eps", 1e-8), weight_decay=options.get("weight_decay", default_wd))
    raise ValueError(f"unknown optimizer '{name}'; expected one of sgd, adam, adamw")


def input_size(x: torch.Tensor) -> int:
    return int(torch.tensor(x.shape[1:]).prod())
