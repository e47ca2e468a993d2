"""Reproducible seeds derived from a run and a stream name, shared by measurement and analysis."""
from __future__ import annotations

import hashlib
import json

import numpy as np


def draw_seed(entropy: list[int], stream: int) -> int:
    """Independent, reproducible seeds per checkpoint (`entropy`) and stream (m, or 0: bootstrap)."""
    return int(np.random.SeedSequence([*entropy, stream]).generate_state(1)[0])


def run_entropy(identity: dict) -> int:
    """A stable integer per run, so that two probe runs never share their mini-batch draws.

    Values are normalised to Python int/float first: the same run read back from a CSV (numpy
    scalars) gives the same integer as the probe job that wrote it.
    """
    values = [str(identity["optimizer"]), int(identity["batch_size"]), float(identity["lr"]), int(identity["seed"])]
    return int(hashlib.sha256(json.dumps(values).encode()).hexdigest()[:8], 16)
