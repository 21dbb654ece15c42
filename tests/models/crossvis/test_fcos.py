"""models/crossvis/fcos.py directly: head outputs, sparse paths, the fused head, FCOS inference."""

from __future__ import annotations

import math

import pytest
import torch

from streamvis.models.crossvis.fcos import (
    FCOSDetections,
    FCOSHead,
    FCOSHeadOutputs,
    FusedTowersHead,
    HeadOutputs,
    detect,
    level_candidates,
)
from streamvis.ops.misc import compute_locations

SIZES = ((8, 12), (4, 6))  # two FPN levels


@pytest.fixture(scope="module")
def head():
    torch.manual_seed(0)
    head = FCOSHead(in_channels=32, num_classes=3, num_convs=2, num_levels=2, num_controller_params=17,
                    reid_dim=5).eval()
    with torch.no_grad():  # the training init is almost constant; spread it so comparisons mean something
        for param in head.parameters():
            param.normal_(0, 0.1)
        head.reid_pred_bn.running_var.uniform_(0.5, 2.0)
        head.reid_pred_bn.running_mean.normal_(0, 0.1)
    return head


@pytest.fixture(scope="module")
def features():
    torch.manual_seed(1)
    return [torch.randn(2, 32, h, w) for h, w in SIZES]


def test_training_init_follows_the_official_prior():
    head = FCOSHead(in_channels=32, num_classes=3, num_convs=1)
    assert torch.allclose(head.cls_logits.bias, torch.full((3,), -math.log(99.0)))  # prior 0.01
    assert head.bbox_pred.bias.abs().max() == 0 and 0 < head.bbox_pred.weight.std() < 0.02


def test_dense_and_sparse_outputs(head, features):
    with torch.no_grad():
        dense, sparse = head(features), head(features, dense=False)
    assert isinstance(dense, FCOSHeadOutputs) and dense.bbox_towers is None
    assert sparse.controller_params is None and sparse.reid_feats is None and len(sparse.bbox_towers) == 2
    for level, (h, w) in enumerate(SIZES):
        assert dense.cls_logits[level].shape == (2, 3, h, w) and dense.ctrness[level].shape == (2, 1, h, w)
        assert dense.controller_params[level].shape == (2, 17, h, w)
        assert dense.reid_feats[level].shape == (2, 5, h, w)
        assert (dense.bbox_reg[level] >= 0).all()  # relu(scale * bbox_pred)
        torch.testing.assert_close(sparse.cls_logits[level], dense.cls_logits[level])


def test_sparse_controller_and_reid_equal_the_dense_maps(head, features):
    with torch.no_grad():
        dense, sparse = head(features), head(features, dense=False)
        level = 0
        im_inds, ys, xs = torch.tensor([0, 1, 1, 0]), torch.tensor([0, 7, 3, 4]), torch.tensor([0, 11, 5, 0])
        params = head.sparse_controller_params(sparse.bbox_towers[level], im_inds, ys, xs)
        reid = head.sparse_reid_feats(head.reid_tower(features[level]), im_inds, ys, xs)
    want_params = dense.controller_params[level][im_inds, :, ys, xs]  # (K, 17), borders zero-padded
    torch.testing.assert_close(params, want_params, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(reid, dense.reid_feats[level][im_inds, :, ys, xs], rtol=1e-4, atol=1e-5)
    head.reid_pred_bn.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        head.sparse_reid_feats(head.reid_tower(features[level]), im_inds, ys, xs)
    head.reid_pred_bn.eval()


def test_fused_towers_give_the_same_outputs(head, features):
    fused = FusedTowersHead(head)
    with torch.no_grad():
        ref, got = head(features), fused(features)
    for name in ("cls_logits", "bbox_reg", "ctrness", "controller_params", "reid_feats"):
        for a, b in zip(getattr(ref, name), getattr(got, name)):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    with pytest.raises(ValueError, match="at least one tower conv"):
        FusedTowersHead(FCOSHead(in_channels=32, num_classes=3, num_convs=0))


def test_level_candidates_by_hand():
    cls_logits = torch.full((2, 1, 2), -20.0)  # (C, H, W)
    cls_logits[1, 0, 1] = torch.logit(torch.tensor(0.64))
    ctrness = torch.zeros(1, 1, 2)  # sigmoid 0.5
    bbox_reg = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1).expand(4, 1, 2)
    locations = compute_locations(1, 2, 16)  # (8, 8), (24, 8)
    det = level_candidates(cls_logits, bbox_reg, ctrness, locations, 16, 3, score_threshold=0.05,
                           pre_nms_topk=5)
    assert isinstance(det, FCOSDetections) and det.classes.tolist() == [1] and det.cells.tolist() == [1]
    torch.testing.assert_close(det.scores, torch.tensor([0.32 ** 0.5]))  # sqrt(0.64 * 0.5)
    torch.testing.assert_close(det.boxes, torch.tensor([[24.0 - 16, 8 - 32, 24 + 48, 8 + 64]]))
    assert det.fpn_levels.tolist() == [3]
    assert det.select(torch.tensor([], dtype=torch.long)).boxes.shape == (0, 4)


def _one_level_outputs(cls_logits, bbox_reg, ctrness, stride=8):
    height, width = cls_logits.shape[-2:]
    locations = compute_locations(height, width, stride)
    return HeadOutputs([cls_logits[None]], [bbox_reg[None]], [ctrness[None]], None, None,
                       torch.zeros(1, 8, height, width), [locations], (stride,), [(height * 8, width * 8)])


def test_detect_thresholds_decodes_and_caps():
    logit = lambda p: torch.logit(torch.tensor(p))  # noqa: E731
    cls_logits = torch.full((2, 1, 3), -20.0)  # (C=2, H=1, W=3)
    cls_logits[0, 0, 0], cls_logits[1, 0, 2], cls_logits[0, 0, 1] = logit(0.5), logit(0.8), logit(0.09)
    ctrness = torch.full((1, 1, 3), float(logit(0.5)))
    bbox_reg = torch.ones(4, 1, 3)  # 1 stride = 8 px on each side
    det = detect(_one_level_outputs(cls_logits, bbox_reg, ctrness), 0, score_threshold=0.05, pre_nms_topk=10,
                 nms_threshold=0.6, detections_per_frame=100)
    # 0.09 * 0.5 = 0.045 <= 0.05 is dropped; the others score sqrt(cls * ctr)
    assert det.classes.tolist() == [1, 0] and det.cells.tolist() == [2, 0]
    torch.testing.assert_close(det.scores, torch.tensor([0.4 ** 0.5, 0.25 ** 0.5]))
    torch.testing.assert_close(det.boxes, torch.tensor([[12.0, -4, 28, 12], [-4.0, -4, 12, 12]]))
    capped = detect(_one_level_outputs(cls_logits, bbox_reg, ctrness), 0, score_threshold=0.05,
                    pre_nms_topk=1, nms_threshold=0.6, detections_per_frame=100)
    assert capped.classes.tolist() == [1]  # pre-NMS top-k per level


def test_detect_post_nms_cap_keeps_ties():
    cls_logits = torch.full((1, 1, 5), 2.0)  # five equal scores at far-apart boxes
    cls_logits[0, 0, 4] = 1.0
    det = detect(_one_level_outputs(cls_logits, torch.full((4, 1, 5), 0.2), torch.zeros(1, 1, 5), stride=128),
                 0, score_threshold=0.05, pre_nms_topk=10, nms_threshold=0.6, detections_per_frame=2)
    assert len(det.scores) == 4  # official kthvalue cap: every score >= the 2nd best survives
