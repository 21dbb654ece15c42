"""RPN proposals (NMS per level, top-k, legacy per-level variant) and the RPN training loss."""

from __future__ import annotations

import math

import torch

from streamvis.models.two_stage.rpn import ProposalConfig, RPNHead, RPNOutput, RPNTrainConfig
from streamvis.ops.anchors import AnchorGenerator


def _head(**proposal):
    return RPNHead(
        in_channels=4,
        feat_channels=4,
        anchor_generator=AnchorGenerator(strides=(4, 8), ratios=(1.0,), scales=(8.0,)),
        proposal_config=ProposalConfig(**proposal),
    )


def _output(logits_l0, logits_l1):
    """Level 0 is a 1x2 map (stride 4, 32x32 anchors), level 1 a 1x1 map (stride 8, 64x64)."""
    return RPNOutput(
        [torch.tensor(logits_l0).view(1, 1, 1, 2), torch.tensor(logits_l1).view(1, 1, 1, 1)],
        [torch.zeros(1, 4, 1, 2), torch.zeros(1, 4, 1, 1)],
    )


def test_proposals_nms_runs_within_levels_only():
    head = _head()
    proposals = head.proposals(_output([2.0, 1.0], [0.0]), [(64, 64)])[0]
    # level 0 anchors [-16,-16,16,16] and [-12,-16,20,16] clipped: IoU 256/320 = 0.8 >= 0.7, the
    # second is suppressed; level 1's [-32,-32,32,32] -> [0,0,32,32] is never compared with level 0
    torch.testing.assert_close(
        proposals,
        torch.tensor([[0.0, 0.0, 16.0, 16.0, 1 / (1 + math.exp(-2.0))], [0.0, 0.0, 32.0, 32.0, 0.5]]),
    )
    loose = _head(nms_iou_threshold=0.81).proposals(_output([2.0, 1.0], [0.0]), [(64, 64)])[0]
    assert loose.shape == (3, 5)
    torch.testing.assert_close(loose[:, 4], torch.sigmoid(torch.tensor([2.0, 1.0, 0.0])))
    top1 = _head(pre_nms_topk=1, max_proposals=1).proposals(_output([1.0, 3.0], [0.0]), [(64, 64)])[0]
    assert top1[:, :4].tolist() == [[0.0, 0.0, 20.0, 16.0]]


def test_legacy_per_level_nms_keeps_per_level_caps():
    head = _head(per_level_nms=True, post_nms_topk_per_level=1, max_proposals=5, nms_iou_threshold=0.81)
    proposals = head.proposals(_output([1.0, 2.0], [3.0]), [(64, 64)])[0]
    # one proposal per level after NMS, then all levels sorted by score
    torch.testing.assert_close(proposals[:, 4], torch.sigmoid(torch.tensor([3.0, 2.0])))


def test_proposals_empty_map_and_batch():
    head = _head()
    output = RPNOutput(
        [torch.zeros(2, 1, 0, 0), torch.zeros(2, 1, 1, 1)], [torch.zeros(2, 4, 0, 0), torch.zeros(2, 4, 1, 1)]
    )
    results = head.proposals(output, [(64, 64), (32, 32)])
    assert [r.shape for r in results] == [(1, 5), (1, 5)]
    assert results[1][0, :4].tolist() == [0.0, 0.0, 32.0, 32.0]


def test_rpn_loss_values():
    torch.manual_seed(0)
    head = RPNHead(
        in_channels=4,
        feat_channels=4,
        anchor_generator=AnchorGenerator(strides=(8,), ratios=(1.0,), scales=(4.0,)),
    )
    features = [torch.randn(1, 4, 6, 6)]
    output = head(features)
    output = RPNOutput(
        [torch.zeros_like(output.objectness[0], requires_grad=True)],
        [torch.zeros_like(output.deltas[0], requires_grad=True)],
    )
    gt = [torch.tensor([[4.0, 4.0, 36.0, 36.0]])]
    losses = head.loss(output, gt, [(48, 48)], (48, 48), generator=torch.Generator().manual_seed(0))
    # zero logits: every sampled anchor costs ln 2, and the sum is divided by #pos + #neg
    assert abs(losses["loss_rpn_cls"].item() - math.log(2)) < 1e-6
    # the anchor centred at (20, 20) (32x32 from 4 to 36) is the ground truth itself: zero deltas
    # are exact, so the box loss comes only from other positive anchors
    assert losses["loss_rpn_bbox"].item() >= 0
    (losses["loss_rpn_cls"] + losses["loss_rpn_bbox"]).backward()
    assert output.objectness[0].grad.abs().sum() > 0
    no_gt = head.loss(
        output, [torch.zeros(0, 4)], [(48, 48)], (48, 48), generator=torch.Generator().manual_seed(0)
    )
    assert no_gt["loss_rpn_bbox"].item() == 0.0
    # all 36 anchors are negatives and sampled; the average factor is 36 + max(0 positives, 1)
    assert abs(no_gt["loss_rpn_cls"].item() - math.log(2) * 36 / 37) < 1e-6


def test_rpn_loss_allowed_border_ignores_outside_anchors():
    head = RPNHead(
        in_channels=4,
        feat_channels=4,
        anchor_generator=AnchorGenerator(strides=(8,), ratios=(1.0,), scales=(4.0,)),
        train_config=RPNTrainConfig(allowed_border=0),
    )
    output = RPNOutput([torch.zeros(1, 1, 6, 6)], [torch.zeros(1, 4, 6, 6)])
    gt = [torch.tensor([[4.0, 4.0, 36.0, 36.0]])]
    losses = head.loss(output, gt, [(48, 48)], (48, 48), generator=torch.Generator().manual_seed(0))
    # anchors are 32x32 centred at 8k: inside [0, 48) only for k in {2, 3}: 4 anchors, each with
    # IoU 784 / 1264 with the ground truth, all tied at its best, so all 4 are low-quality positives
    # and there is no negative: ln 2 * 4 / (4 + max(0, 1))
    assert abs(losses["loss_rpn_cls"].item() - math.log(2) * 4 / 5) < 1e-6
