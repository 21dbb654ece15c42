"""The deterministic CrossVIS weights of reference/crossvis/weights_rule.md (official key names).

Imported by tests that need the golden R-50 (or R-101) weights. The rule is re-implemented here from
its description: one seeded normal draw per key, scaled by the key's role.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import torch

_DTYPES = {"float32": torch.float32, "int64": torch.int64}
STEM_GAIN = 1.0 / 64  # weights_rule.md: the stem conv is scaled down so FPN features stay O(1)
CLS_BIAS_SHIFT = -5.2  # weights_rule.md: gives 13 / 27 detections on the golden images
BBOX_BIAS_SHIFT = 1.0  # weights_rule.md: mostly positive l, t, r, b


def read_key_table(path: Path) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """Rows (key, shape, dtype) of a state_dict_keys*.tsv file ('scalar' for shape (); no header)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith("key\t"):
            continue
        key, shape, dtype = line.split("\t")
        dims = () if shape == "scalar" else tuple(int(v) for v in shape.split("x"))
        rows.append((key, dims, _DTYPES[dtype]))
    return rows


def golden_value(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The rule's value of one float key."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    z = torch.randn(shape, generator=g, dtype=torch.float32)
    if key.endswith(".weight") and len(shape) >= 2:
        value = z * (1.0 / math.sqrt(math.prod(shape[1:])))
        return value * STEM_GAIN if key == "backbone.bottom_up.stem.conv1.weight" else value
    if key.endswith(".weight"):
        return 1 + 0.1 * z
    if key.endswith(".bias"):
        value = 0.1 * z
        if key == "proposal_generator.fcos_head.cls_logits.bias":
            value = value + CLS_BIAS_SHIFT
        if key == "proposal_generator.fcos_head.bbox_pred.bias":
            value = value + BBOX_BIAS_SHIFT
        return value
    if key.endswith(".running_mean"):
        return 0.1 * z
    if key.endswith(".running_var"):
        return torch.exp(0.2 * z)
    if key.endswith(".scale"):
        return 1 + 0.1 * z
    raise KeyError(key)


def golden_state_dict(rows) -> dict[str, torch.Tensor]:
    """The official-format state dict filled by the rule."""
    state = {}
    for key, shape, dtype in rows:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.zeros(shape, dtype=torch.int64)
        elif key == "mask_head.sizes_of_interest":
            state[key] = torch.tensor([64, 128, 256, 512, 1024])
        elif key == "mask_head._iter":
            state[key] = torch.zeros(shape)
        else:
            state[key] = golden_value(key, shape).to(dtype)
    return state


def checksum_mismatches(state: dict[str, torch.Tensor], checksum_path: Path, rtol: float = 1e-6) -> list[str]:
    """Keys whose sum / sum |.| / first value differ from weights_checksums_r50.tsv."""
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
