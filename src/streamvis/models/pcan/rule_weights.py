"""Deterministic PCAN weights (reference/pcan/golden.md, "Weight and buffer rule"), for tests.

Every float tensor named NAME gets its own draw: ``seed64 = sha256(f"{SEED}:{NAME}")[:8]`` (little
endian) seeds ``numpy.random.default_rng``, whose float64 uniforms ``u`` in [0, 1) become
``offset + (2u - 1) * bound`` cast to float32. Prototype buffers are that draw with bound 1,
L2-normalised over the channel axis (``v / (1e-6 + ||v||)``, float32, as the official init).

Two flavours exist, both documented in golden.md:
- the **head rule** of the module goldens (names prefixed ``refine_head.``, ``mask_head.``,
  ``track_head.``; `head_rule_value`, `fill_head_with_rule`);
- the **whole-model rule** of golden_e2e.npz (names = full official state_dict keys, plus a gain,
  per-element bias offsets and a down-scaled last BN of each residual branch;
  `official_rule_state_dict`).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

SEED = 20211206  # golden.md: SEED of the rule

# golden.md, "Weight rule for the whole model": the only per-key gain and bias offsets
E2E_GAINS = {"roi_head.bbox_head.fc_cls.weight": 6.0}
E2E_BIAS_OFFSETS = {
    "roi_head.bbox_head.fc_cls.bias": (-0.38, 0.91, 4.6, -3.27, -2.68, -6.76, -2.2, 4.58, 3.94),
    "roi_head.refine_head.conv_logits.bias": (-3.7,),
}
E2E_BN_RESIDUAL_LAST = 0.2  # golden.md: weight of `*.bn3` / `*.downsample.1` is 0.2 * (1 + U(+-0.1))


def rule_seed(name: str, seed: int = SEED) -> int:
    """The 64-bit seed of tensor `name`: the first 8 bytes (little endian) of sha256("SEED:NAME")."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def rule_array(name: str, shape: tuple[int, ...], bound: float, offset: float = 0.0) -> np.ndarray:
    """``offset + U(-bound, bound)`` of shape `shape`: float64 draws cast to float32."""
    u = np.random.default_rng(rule_seed(name)).random(size=tuple(shape))
    return (offset + (u * 2.0 - 1.0) * bound).astype(np.float32)


def prototype_array(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A prototype buffer: U(+-1) L2-normalised over axis 1 (eps 1e-6 added to the norm), float32."""
    raw = rule_array(name, shape, 1.0)
    norm = np.sqrt((raw * raw).sum(axis=1, keepdims=True))
    return (raw / (np.float32(1e-6) + norm)).astype(np.float32)


def head_rule_params(name: str, shape: tuple[int, ...]) -> tuple[float, float]:
    """(bound, offset) of the head rule for `name` (full name, e.g. ``refine_head.conv1.conv.weight``).

    Biases (conv, linear, GroupNorm) U(+-0.1); GroupNorm weights 1 + U(+-0.1); conv / linear weights
    U(+-sqrt(6 / fan_in)) with fan_in = prod(shape[1:]), except the ConvTranspose2d ``upsample.weight``
    (in, out, k, k) where fan_in = shape[0] (stride = kernel, so each output sees `in` inputs).
    """
    if name.endswith(".bias"):
        return 0.1, 0.0
    if ".gn." in name:
        return 0.1, 1.0
    local = name.split(".", 1)[1]
    fan_in = shape[0] if local.startswith("upsample") else math.prod(shape[1:])
    return math.sqrt(6.0 / fan_in), 0.0


def head_rule_value(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The head rule's float32 value of parameter `name`."""
    bound, offset = head_rule_params(name, shape)
    return torch.from_numpy(rule_array(name, shape, bound, offset))


def fill_head_with_rule(head: nn.Module, prefix: str) -> nn.Module:
    """Fill a head's parameters by the head rule, named ``prefix + local name`` (in place).

    Buffers (e.g. the refine head's ``pos_mu``/``neg_mu``) are left alone: golden.md stores them in
    the npz files, which are authoritative.

    Args:
        head: the module (its state_dict names must be the official ones).
        prefix: ``"refine_head."``, ``"mask_head."`` or ``"track_head."``.
    """
    with torch.no_grad():
        for local, param in head.named_parameters():
            param.copy_(head_rule_value(prefix + local, tuple(param.shape)))
    return head


def read_key_table(path) -> list[tuple[str, tuple[int, ...], str, str, str]]:
    """Rows (key, shape, dtype, entry, module type) of pcan_state_dict_keys.tsv (header skipped)."""
    rows = []
    for line in Path(path).read_text().splitlines()[1:]:
        if not line.strip():
            continue
        key, shape, dtype, entry, module = line.split("\t")[:5]
        dims = () if shape == "scalar" else tuple(int(v) for v in shape.split("x"))
        rows.append((key, dims, dtype, entry, module))
    return rows


def _e2e_value(key: str, shape: tuple[int, ...], module: str) -> np.ndarray:
    """The whole-model rule's value of one float tensor (golden.md, "Weight rule for the whole model")."""
    leaf = key.rsplit(".", 1)[-1]
    if module == "EMQuasiDenseMaskRCNNRefine" or leaf in ("pos_mu", "neg_mu"):
        return prototype_array(key, shape)
    if module == "BatchNorm2d":
        last = key.rsplit(".", 1)[0].endswith((".bn3", ".downsample.1"))
        scale = E2E_BN_RESIDUAL_LAST if leaf == "weight" and last else 1.0
        offset = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}[leaf]
        return rule_array(key, shape, 0.1 * scale, offset * scale)
    if module == "GroupNorm":
        return rule_array(key, shape, 0.1, 1.0 if leaf == "weight" else 0.0)
    if leaf == "bias":
        value = rule_array(key, shape, 0.1)
        if key in E2E_BIAS_OFFSETS:
            offsets = np.asarray(E2E_BIAS_OFFSETS[key], dtype=np.float64).reshape(shape)
            value = (value.astype(np.float64) + offsets).astype(np.float32)
        return value
    if leaf == "weight" and module in ("Conv2d", "Linear", "ConvTranspose2d"):
        fan_in = shape[0] if module == "ConvTranspose2d" else math.prod(shape[1:])
        return rule_array(key, shape, E2E_GAINS.get(key, 1.0) * math.sqrt(6.0 / fan_in))
    raise KeyError(f"golden.md's whole-model weight rule has no case for {key!r} ({module})")


def official_rule_state_dict(rows) -> dict[str, torch.Tensor]:
    """The official-format state dict of the whole model filled by the rule, from `read_key_table` rows."""
    state = {}
    for key, shape, dtype, _entry, module in rows:
        if dtype != "float32":
            state[key] = torch.zeros(shape, dtype=getattr(torch, dtype))  # num_batches_tracked
        else:
            state[key] = torch.from_numpy(_e2e_value(key, shape, module))
    return state
