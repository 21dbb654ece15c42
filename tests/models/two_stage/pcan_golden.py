"""Golden fixtures of the two-stage core: the PCAN end-to-end golden and its deterministic weights.

The weight rule (../shared/reference/pcan/golden.md, "Weight rule for the whole model"): for the
official state_dict key NAME with shape S, ``offset + (u * 2 - 1) * bound`` with u drawn by
``numpy.random.default_rng(seed64)`` where seed64 = the first 8 bytes (little endian) of
sha256(f"20211206:{NAME}"); bound and offset per key are listed in pcan_state_dict_keys.tsv.
Two biases get an extra per-element offset and the prototype buffers are L2-normalised.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from tests.conftest import require_shared

SEED = 20211206
# golden.md: per-element offsets added (in float64) to the rule value of these biases
EXTRA_OFFSETS = {
    "roi_head.bbox_head.fc_cls.bias": [-0.38, 0.91, 4.6, -3.27, -2.68, -6.76, -2.2, 4.58, 3.94],
    "roi_head.refine_head.conv_logits.bias": [-3.7],
}
PROTOTYPE_BUFFERS = (
    "mu0",
    "mu1",
    "mu2",
    "mu3",
    "mu4",
    "roi_head.refine_head.pos_mu",
    "roi_head.refine_head.neg_mu",
)


def rule_value(name: str, shape: tuple[int, ...], bound: float, offset: float) -> np.ndarray:
    seed64 = int.from_bytes(hashlib.sha256(f"{SEED}:{name}".encode()).digest()[:8], "little")
    u = np.random.default_rng(seed64).random(size=shape)
    value = offset + (u * 2.0 - 1.0) * bound
    if name in EXTRA_OFFSETS:
        value = value + np.asarray(EXTRA_OFFSETS[name], dtype=np.float64)
    value = value.astype(np.float32)
    if name in PROTOTYPE_BUFFERS:
        value = value / (np.float32(1e-6) + np.sqrt((value * value).sum(axis=1, keepdims=True)))
    return value.astype(np.float32)


def load_rule_state_dict() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The official PCAN state_dict under the weight rule, and each key's sha256 prefix (from the tsv)."""
    path = require_shared("reference/pcan/pcan_state_dict_keys.tsv")
    state, digests = {}, {}
    for line in path.read_text().splitlines()[1:]:
        name, shape, dtype, _, _, bound, offset, _, _, digest = line.split("\t")
        size = () if shape == "scalar" else tuple(int(v) for v in shape.split("x"))
        if dtype == "int64":
            value = np.zeros(size, dtype=np.int64)
        else:
            base_offset = 0.0 if offset == "per-element" else float(offset)  # see EXTRA_OFFSETS
            value = rule_value(name, size, float(bound), base_offset)
        state[name] = torch.from_numpy(np.ascontiguousarray(value))
        digests[name] = digest
    return state, digests


@pytest.fixture(scope="session")
def pcan_rule_state() -> dict[str, torch.Tensor]:
    state, _ = load_rule_state_dict()
    return state


@pytest.fixture(scope="session")
def golden_e2e() -> dict[str, np.ndarray]:
    path = require_shared("reference/pcan/golden_e2e.npz")
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


# official (PCAN config img_norm_cfg): RGB mean / std
PIXEL_MEAN = np.array([123.675, 116.28, 103.53])
PIXEL_STD = np.array([58.395, 57.12, 57.375])


def golden_input(golden: dict[str, np.ndarray], frame: int) -> torch.Tensor:
    """The official network input of a frame: mmcv ``imnormalize`` (subtract the mean, multiply by
    1 / std, in float32) of ``resized_rgb``, zero-padded at the bottom/right to ``pad_shape``."""
    image = golden["resized_rgb"][frame].astype(np.float32)
    normalized = ((image - PIXEL_MEAN) * (1.0 / PIXEL_STD)).astype(np.float32)
    pad_h, pad_w = (int(v) for v in golden["pad_shape"][:2])
    padded = np.zeros((pad_h, pad_w, 3), dtype=np.float32)
    padded[: normalized.shape[0], : normalized.shape[1]] = normalized
    return torch.from_numpy(padded).permute(2, 0, 1)[None].contiguous()


def sub_state(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under `prefix` with the prefix removed."""
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


class FramePCAMReference:
    """PCAN's frame-level attention on P2/P3 (facts.md section 2), only to feed the core the fused
    levels the golden's RPN and R-CNN saw; PCAN's own module lives in models/pcan (another area).

    Args:
        mus: the initial prototype buffers of P2 and P3, each (1, C, K).
    """

    def __init__(self, mus: list[torch.Tensor]):
        self.initial = mus
        self.memory: list[torch.Tensor] = []
        self.mus: list[torch.Tensor] = []

    def __call__(self, features: list[torch.Tensor], frame: int) -> list[torch.Tensor]:
        """Fuse P2, P3 of `features` (a new video starts at frame 0) -> the levels the heads see."""
        if frame == 0:
            self.memory = [features[0], features[1]]
            self.mus = list(self.initial)
        fused = list(features)
        for level in (0, 1):
            protos = _em(self.memory[level], self.mus[level])
            fused[level] = _read_out(features[level], protos)
            self.memory[level] = 0.75 * fused[level] + 0.25 * self.memory[level]  # official 0.75 / 0.25
            self.mus[level] = 0.5 * self.mus[level] + 0.5 * protos  # official 0.5 / 0.5
        return fused


def _em(memory: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """3 EM iterations (kappa 20, eps 1e-6) on the (1, C, H, W) memory from (1, C, K) -> (1, C, K)."""
    flat = memory.flatten(2)  # (B, C, N)
    for _ in range(3):  # official stage_num 3
        z = torch.softmax(20.0 * flat.transpose(1, 2) @ mu, dim=2)  # (B, N, K); official kappa 20
        z = z / (1e-6 + z.sum(dim=1, keepdim=True))
        mu = flat @ z
        mu = mu / (1e-6 + mu.norm(dim=1, keepdim=True))
    return mu


def _read_out(feature: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """0.75 x + 0.25 protos softmax(x^T protos) (official fusion) -> (1, C, H, W)."""
    flat = feature.flatten(2)
    assign = torch.softmax(flat.transpose(1, 2) @ protos, dim=2)  # (B, N, K)
    return 0.75 * feature + 0.25 * (protos @ assign.transpose(1, 2)).reshape(feature.shape)


def frame_pcam_first_frame(feature: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """The attention at frame 0 of a video (the memory is the frame itself) for one level."""
    return _read_out(feature, _em(feature, mu))
