"""Deterministic MaskTrack R-CNN head weights (reference/masktrack/golden.md, "Weight rule").

The goldens of the official tracking head and box head were produced with these weights, so a
head filled by `fill_with_rule` can be compared with the official outputs without a checkpoint.
The rule is keyed by the **official** parameter name (``track_head.fcs.0.weight``, ...).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

SEED = 20190602  # golden.md: SEED
BIAS_BOUNDS = {"track_head.fcs.0.bias": 0.05, "track_head.fcs.1.bias": 0.02}  # golden.md
BBOX_BIAS_BOUND = 0.05  # golden.md: every bbox_head.*.bias
ROW_CENTRED = "track_head.fcs.1.weight"  # golden.md: rows centred (a property of the test weights)


def rule_seed(name: str, seed: int = SEED) -> int:
    """The 64-bit seed of parameter `name`: little-endian first 8 bytes of sha256("SEED:NAME")."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")


def rule_bound(name: str, shape: tuple[int, ...]) -> float:
    """Half-width of the uniform draw: sqrt(6 / fan_in) for weights, the listed bound for biases."""
    if name.endswith(".bias"):
        if name in BIAS_BOUNDS:
            return BIAS_BOUNDS[name]
        if name.startswith("bbox_head."):
            return BBOX_BIAS_BOUND
        raise KeyError(f"golden.md's weight rule has no bias bound for {name!r}")
    return float(np.sqrt(6.0 / int(np.prod(shape[1:]))))


def rule_array(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The rule's float32 value of parameter `name` (official name) with `shape`."""
    bound = rule_bound(name, shape)
    uniform = np.random.default_rng(rule_seed(name)).random(size=tuple(shape))  # float64 in [0, 1)
    value = (uniform * 2.0 - 1.0) * bound
    if name == ROW_CENTRED:
        value = value - value.mean(axis=1, keepdims=True)
    return value.astype(np.float32)


def fill_with_rule(module: nn.Module, prefix: str) -> nn.Module:
    """Fill every parameter of `module` by the rule, named ``prefix + key`` (in place).

    Args:
        module: e.g. a `TrackHead`.
        prefix: its official prefix, e.g. ``"track_head."``.

    Returns:
        `module`.
    """
    state = {key: torch.from_numpy(rule_array(prefix + key, tuple(value.shape)))
             for key, value in module.state_dict().items()}
    module.load_state_dict(state)
    return module
