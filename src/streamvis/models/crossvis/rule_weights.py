"""Deterministic CrossVIS weights (reference/crossvis/weights_rule.md), for tests and benchmarks.

The rule gives every float tensor its own seeded normal draw, scaled by the tensor's role, so a
model can be compared with the official implementation (golden tests) or timed with realistic
activations (benchmarks) without any trained checkpoint.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import torch
from torch import nn

_DTYPES = {"float32": torch.float32, "int64": torch.int64}
STEM_GAIN = 1.0 / 64  # weights_rule.md: the stem conv is scaled down so FPN features stay O(1)
CLS_BIAS_SHIFT = -5.2  # weights_rule.md: gives 13 / 27 detections on the golden images
BBOX_BIAS_SHIFT = 1.0  # weights_rule.md: mostly positive l, t, r, b

# the three keys the rule treats specially, in the official and in our naming
OFFICIAL_SPECIAL_KEYS = (
    "backbone.bottom_up.stem.conv1.weight",
    "proposal_generator.fcos_head.cls_logits.bias",
    "proposal_generator.fcos_head.bbox_pred.bias",
)
STREAMVIS_SPECIAL_KEYS = ("backbone.stem.conv1.weight", "head.cls_logits.bias", "head.bbox_pred.bias")


def read_key_table(path) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """Rows (key, shape, dtype) of a state_dict_keys*.tsv file ('scalar' for shape (); no header)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith("key\t"):
            continue
        key, shape, dtype = line.split("\t")
        dims = () if shape == "scalar" else tuple(int(v) for v in shape.split("x"))
        rows.append((key, dims, _DTYPES[dtype]))
    return rows


def rule_value(
    key: str,
    shape: tuple[int, ...],
    *,
    special_keys: tuple[str, str, str] = OFFICIAL_SPECIAL_KEYS,
    cls_bias_shift: float = CLS_BIAS_SHIFT,
) -> torch.Tensor | None:
    """The rule's value of the float tensor `key` (None when the rule has no case for it).

    Args:
        key: the state_dict key; its crc32 seeds the draw.
        shape: the tensor's shape.
        special_keys: (stem conv weight, class-logits bias, box-regression bias) keys.
        cls_bias_shift: added to the class-logits bias (the rule's -5.2 by default).
    """
    stem_key, cls_bias_key, bbox_bias_key = special_keys
    g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    z = torch.randn(shape, generator=g, dtype=torch.float32)
    if key.endswith(".weight") and len(shape) >= 2:
        # multiply by the Python float 1/sqrt(fan_in), as the rule says (dividing can differ in the last bit)
        value = z * (1.0 / math.sqrt(math.prod(shape[1:])))
        return value * STEM_GAIN if key == stem_key else value
    if key.endswith(".weight"):
        return 1 + 0.1 * z
    if key.endswith(".bias"):
        value = 0.1 * z
        if key == cls_bias_key:
            value = value + cls_bias_shift
        if key == bbox_bias_key:
            value = value + BBOX_BIAS_SHIFT
        return value
    if key.endswith(".running_mean"):
        return 0.1 * z
    if key.endswith(".running_var"):
        return torch.exp(0.2 * z)
    if key.endswith(".scale"):
        return 1 + 0.1 * z
    return None


def official_rule_state_dict(rows) -> dict[str, torch.Tensor]:
    """The official-format state dict filled by the rule, from `read_key_table` rows."""
    state = {}
    for key, shape, dtype in rows:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros(shape, dtype=torch.int64)
        elif key == "mask_head.sizes_of_interest":
            state[key] = torch.tensor([64, 128, 256, 512, 1024])
        elif key == "mask_head._iter":
            state[key] = torch.zeros(shape)
        else:
            value = rule_value(key, shape)
            if value is None:
                raise KeyError(f"weights_rule.md has no case for key {key!r}")
            state[key] = value.to(dtype)
    return state


def fill_with_rule(model: nn.Module, *, cls_bias_shift: float = CLS_BIAS_SHIFT) -> nn.Module:
    """Fill a streamvis model's float tensors by the rule, seeded by *our* key names (in place)."""
    state = model.state_dict()
    for key, value in state.items():
        if value.is_floating_point():
            filled = rule_value(key, tuple(value.shape), special_keys=STREAMVIS_SPECIAL_KEYS,
                                cls_bias_shift=cls_bias_shift)
            if filled is not None:
                state[key] = filled
    model.load_state_dict(state)
    return model


def checksum_mismatches(state: dict[str, torch.Tensor], checksum_path, rtol: float = 1e-6) -> list[str]:
    """Keys whose sum / sum |.| / first value differ from a weights_checksums_*.tsv file."""
    bad = []
    for line in Path(checksum_path).read_text().splitlines()[1:]:
        key, total, total_abs, first = line.split("\t")
        value = state[key].double()
        got = (value.sum().item(), value.abs().sum().item(), value.flatten()[0].item())
        for g, want in zip(got, (float(total), float(total_abs), float(first))):
            if abs(g - want) > rtol * max(abs(want), 1e-6) + 1e-9:
                bad.append(key)
                break
    return bad
