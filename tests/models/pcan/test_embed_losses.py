"""Embedding head, QDTrack association losses and refine-head pairing against golden_losses.npz."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import require_shared

from streamvis.errors import StreamvisError
from streamvis.models.pcan.embed_head import QuasiDenseEmbedHead
from streamvis.models.pcan.losses import (
    ImagePairs,
    embedding_similarities,
    l2_aux_loss,
    multi_pos_cross_entropy,
    refine_loss,
    refine_pairs,
    track_losses,
    track_targets,
)
from streamvis.models.pcan.rule_weights import fill_head_with_rule


@pytest.fixture(scope="module")
def golden():
    return np.load(require_shared("reference/pcan/golden_losses.npz"))


def _f32(array) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array).astype(np.float32))


def _pairs(golden, i) -> ImagePairs:
    return ImagePairs(
        key_embeds=_f32(golden[f"img{i}_key_embeds"]),
        ref_embeds=_f32(golden[f"img{i}_ref_embeds"]),
        key_assigned_gt=torch.from_numpy(golden[f"img{i}_key_pos_assigned_gt"]),
        ref_assigned_gt=torch.from_numpy(golden[f"img{i}_ref_pos_assigned_gt"]),
        gt_match_indices=torch.from_numpy(golden[f"img{i}_gt_match_indices"]),
    )


def test_official_state_dict_names():
    keys = {k for k in QuasiDenseEmbedHead().state_dict()}
    expected = {f"convs.{i}.conv.weight" for i in range(4)}
    expected |= {f"convs.{i}.gn.{p}" for i in range(4) for p in ("weight", "bias")}
    expected |= {"fcs.0.weight", "fcs.0.bias", "fc_embed.weight", "fc_embed.bias"}
    assert keys == expected


def test_embed_head_forward(golden):
    head = fill_head_with_rule(QuasiDenseEmbedHead(), "track_head.").eval()
    with torch.no_grad():
        out = head(_f32(golden["embedhead_input"]))
    err = float(np.abs(out.numpy() - golden["embedhead_output"]).max())
    print("embedhead_output max abs error", err)
    assert err <= 5e-5  # golden.md tolerance


def test_embed_head_empty_and_bad_shape():
    head = QuasiDenseEmbedHead(in_channels=32, conv_channels=32, fc_channels=16, embed_channels=8)
    assert head(torch.zeros(0, 32, 7, 7)).shape == (0, 8)
    with pytest.raises(StreamvisError, match=r"\(R, 32, 7, 7\)"):
        head(torch.zeros(2, 32, 14, 14))


@pytest.mark.parametrize("i", [0, 1])
def test_targets_similarities_and_per_image_losses(golden, i):
    pairs = _pairs(golden, i)
    assert pairs.ref_embeds.shape[0] - pairs.ref_assigned_gt.shape[0] == int(golden[f"img{i}_num_ref_neg"])
    dists, cos = embedding_similarities(pairs.key_embeds, pairs.ref_embeds)
    np.testing.assert_allclose(dists.numpy(), golden[f"img{i}_dists"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(cos.numpy(), golden[f"img{i}_cos_dists"], rtol=0, atol=1e-6)
    targets, weights = track_targets(pairs)
    np.testing.assert_array_equal(targets.numpy(), golden[f"img{i}_track_targets"])
    np.testing.assert_array_equal(weights.numpy(), golden[f"img{i}_track_weights"])
    track = 0.25 * multi_pos_cross_entropy(dists, targets, weights)
    aux = l2_aux_loss(cos, targets)
    np.testing.assert_allclose(track.item(), golden[f"img{i}_loss_track_raw"], rtol=1e-5)
    np.testing.assert_allclose(aux.item(), golden[f"img{i}_loss_track_aux"], rtol=1e-5)


def test_batch_losses(golden):
    losses = track_losses([_pairs(golden, 0), _pairs(golden, 1)])
    np.testing.assert_allclose(losses["loss_track"].item(), golden["loss_track"], rtol=1e-5)
    np.testing.assert_allclose(losses["loss_track_aux"].item(), golden["loss_track_aux"], rtol=1e-5)


def test_losses_have_gradients(golden):
    pairs = _pairs(golden, 0)
    key = pairs.key_embeds.clone().requires_grad_(True)
    losses = track_losses([pairs._replace(key_embeds=key)])
    (losses["loss_track"] + losses["loss_track_aux"]).backward()
    assert key.grad is not None and float(key.grad.abs().sum()) > 0


@pytest.mark.parametrize("i", [0, 1])
def test_refine_pairing(golden, i):
    pairs = _pairs(golden, i)
    num_ref_pos = pairs.ref_assigned_gt.shape[0]
    valid, ref_index = refine_pairs(
        pairs.key_embeds, pairs.ref_embeds[:num_ref_pos],
        pairs.gt_match_indices[pairs.key_assigned_gt], pairs.ref_assigned_gt,
    )
    np.testing.assert_array_equal(valid.numpy().astype(np.uint8), golden[f"img{i}_refine_match_valid"])
    np.testing.assert_array_equal(ref_index.numpy(), golden[f"img{i}_refine_match_ref_ind"])


def test_hand_built_loss_values():
    """One key RoI, one positive (d=2) and one negative (d=-1): log(1 + e^-2 e^-1); aux by hand."""
    dists = torch.tensor([[2.0, -1.0]])
    targets = torch.tensor([[1, 0]], dtype=torch.int32)
    value = multi_pos_cross_entropy(dists, targets, torch.ones(1))
    assert value.item() == pytest.approx(np.log1p(np.exp(-3.0)), rel=1e-6)
    cos = torch.tensor([[0.9, 0.5]])
    # positive: (0.9 - 1)^2 = 0.01; negative: clamp(0.5 - 0.3) = 0.2 -> 0.04; mean over 2 = 0.025
    assert l2_aux_loss(cos, targets).item() == pytest.approx(0.025, rel=1e-6)


def test_hard_mining_keeps_three_negatives_per_positive():
    cos = torch.tensor([[1.0, 0.9, 0.8, 0.7, 0.6, 0.35]])
    targets = torch.tensor([[1, 0, 0, 0, 0, 0]], dtype=torch.int32)
    # negatives' costs (cos - 0.3)^2: 0.36, 0.25, 0.16, 0.09, 0.0025 -> keep the top 3 with the positive (0)
    assert l2_aux_loss(cos, targets).item() == pytest.approx((0.36 + 0.25 + 0.16) / 4, rel=1e-5)


def test_image_without_positives_raises_or_is_skipped():
    pairs = ImagePairs(torch.ones(2, 4), torch.ones(3, 4), torch.tensor([0, 0]), torch.tensor([0]),
                       torch.tensor([-1]))
    with pytest.raises(StreamvisError, match="image 0 has no positive"):
        track_losses([pairs])
    losses = track_losses([pairs], skip_images_without_positives=True)
    assert losses["loss_track"].item() == 0 and losses["loss_track_aux"].item() == 0


def test_refine_pairing_empty_reference_and_refine_loss():
    valid, ref_index = refine_pairs(torch.ones(3, 4), torch.zeros(0, 4), torch.zeros(3, dtype=torch.long),
                                    torch.zeros(0, dtype=torch.long))
    assert valid.tolist() == [False] * 3 and ref_index.numel() == 0
    logits = torch.zeros(2, 1, 28, 28)
    assert refine_loss(logits, torch.ones(2, 28, 28)).item() == pytest.approx(np.log(2), rel=1e-6)
