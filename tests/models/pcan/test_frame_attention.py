"""Frame-level PCAM against golden_frame_pcam.npz (official forward_test over 3 frames) + hand cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import require_shared

from streamvis.errors import StreamvisError
from streamvis.models.pcan.frame_attention import FrameAttention, em_prototypes, l2norm
from streamvis.models.pcan.rule_weights import prototype_array

# golden.md: suggested absolute tolerances
TOLERANCES = {"protos": 5e-5, "mu": 5e-5, "assign": 1e-4, "fused": 1e-5, "memory": 1e-5}


@pytest.fixture(scope="module")
def golden():
    return np.load(require_shared("reference/pcan/golden_frame_pcam.npz"))


def _module_from(golden) -> FrameAttention:
    module = FrameAttention()
    with torch.no_grad():
        module.mu0.copy_(torch.from_numpy(golden["mu_init_l0"]))
        module.mu1.copy_(torch.from_numpy(golden["mu_init_l1"]))
        module.mu2.copy_(torch.from_numpy(golden["mu_init_l2_unused"]))
    return module


def test_buffers_follow_the_weight_rule(golden):
    """golden.md: mu{l} = l2norm(U(+-1)) named frame_pcam/mu{l}; the npz values are that rule."""
    for level, key in enumerate(("mu_init_l0", "mu_init_l1", "mu_init_l2_unused")):
        np.testing.assert_array_equal(prototype_array(f"frame_pcam/mu{level}", (1, 256, 30)), golden[key])


def test_matches_official_over_frames(golden):
    module = _module_from(golden)
    worst = dict.fromkeys(TOLERANCES, 0.0)
    # golden.md: P4..P6 were constant 0.25 tensors (unused by the attention)
    extra = [torch.full((1, 256, h, w), 0.25) for h, w in ((3, 5), (2, 3), (1, 2))]
    for t in range(3):
        feats = [torch.from_numpy(golden[f"input_l{lv}"][t].astype(np.float32))[None] for lv in range(2)]
        steps = module.step(feats + extra, t)
        for level, step in enumerate(steps):
            got = {
                "protos": step.protos.numpy(),
                "assign": step.assign[0].numpy(),
                "fused": step.fused[0].numpy(),
                "memory": step.memory[0].numpy(),
                "mu": step.prototypes.numpy(),
            }
            for name, value in got.items():
                want = golden[f"f{t}_{name}_l{level}"]
                assert value.shape == want.shape, (t, level, name)
                err = float(np.abs(value - want).max())
                worst[name] = max(worst[name], err)
                assert err <= TOLERANCES[name], f"frame {t} level {level} {name}: max abs error {err}"
    print("frame PCAM max abs errors:", worst)


def test_forward_replaces_p2_p3_only_and_resets_per_video(golden):
    module = _module_from(golden)
    p2 = torch.from_numpy(golden["input_l0"][0].astype(np.float32))[None]
    p3 = torch.from_numpy(golden["input_l1"][0].astype(np.float32))[None]
    p4 = torch.full((1, 256, 3, 5), 0.25)
    out0 = module([p2, p3, p4], 0)
    assert out0[2] is p4
    np.testing.assert_allclose(out0[0][0].numpy(), golden["f0_fused_l0"], atol=1e-5)
    module([p2 * 0.5, p3 * 0.5, p4], 1)  # changes the state
    again = module([p2, p3, p4], 0)  # a new video: the state restarts from the buffers
    torch.testing.assert_close(again[0], out0[0], rtol=0, atol=0)
    torch.testing.assert_close(again[1], out0[1], rtol=0, atol=0)


def test_hand_built_single_prototype_is_the_normalised_mean():
    """With K=1 every pixel has responsibility 1/N, so EM gives the L2-normalised mean feature."""
    torch.manual_seed(0)
    memory = torch.randn(1, 4, 3, 5)
    mu = l2norm(torch.randn(1, 4, 1), dim=1)
    protos = em_prototypes(memory, mu)
    mean = memory.flatten(2).mean(dim=2, keepdim=True)  # (1, 4, 1)
    # l1norm divides by (1e-6 + N * 1) instead of N: the direction is unchanged
    torch.testing.assert_close(protos, mean / mean.norm(dim=1, keepdim=True), atol=1e-6, rtol=1e-5)


def test_frame_without_video_start_and_size_change_raise():
    module = FrameAttention(channels=4, num_prototypes=3)
    feats = [torch.randn(1, 4, 6, 8), torch.randn(1, 4, 3, 4)]
    with pytest.raises(StreamvisError, match="before frame 0"):
        module(feats, 1)
    module(feats, 0)
    with pytest.raises(StreamvisError, match="same size"):
        module([torch.randn(1, 4, 5, 8), torch.randn(1, 4, 3, 4)], 1)
    with pytest.raises(StreamvisError, match="at least 2"):
        module(feats[:1], 0)


def test_official_state_dict_names():
    assert sorted(FrameAttention().state_dict()) == [f"mu{i}" for i in range(5)]

