"""Golden fixtures of the two-stage core: the PCAN end-to-end golden and its deterministic weights.

The weight rule (../shared/reference/pcan/golden.md, "Weight rule for the whole model") is
`streamvis.models.pcan.rule_weights.official_rule_state_dict`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import require_shared

from streamvis.models.pcan.frame_attention import attend_level
from streamvis.models.pcan.rule_weights import official_rule_state_dict, read_key_table


def load_rule_state_dict() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The official PCAN state_dict under the weight rule, and each key's sha256 prefix (from the tsv).

    The rule itself is `streamvis.models.pcan.rule_weights.official_rule_state_dict` (one copy).
    """
    path = require_shared("reference/pcan/pcan_state_dict_keys.tsv")
    state = official_rule_state_dict(read_key_table(path))
    digests = {line.split("\t")[0]: line.split("\t")[-1] for line in path.read_text().splitlines()[1:]}
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
    """PCAN's frame-level attention on P2/P3 (facts.md section 2) over `attend_level` of
    models/pcan/frame_attention.py, exposing the running prototypes per level (``mus``).

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
            step = attend_level(features[level], self.memory[level], self.mus[level])
            fused[level], self.memory[level], self.mus[level] = step.fused, step.memory, step.prototypes
        return fused


def frame_pcam_first_frame(feature: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """The attention at frame 0 of a video (the memory is the frame itself) for one level."""
    return attend_level(feature, feature, mu).fused
