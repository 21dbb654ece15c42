"""Box head post-processing, background index conventions, mask targets and mask pasting."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from streamvis.models.two_stage.mask_ops import mask_targets, paste_masks
from streamvis.models.two_stage.roi_heads import (
    BoxHeadOutput,
    BoxTestConfig,
    FCNMaskHead,
    Shared2FCBBoxHead,
    multiclass_nms,
)
from streamvis.ops.roi_align import roi_align


def test_multiclass_nms_mmdet2_sorts_and_legacy_is_class_major():
    boxes = torch.tensor(
        [
            [[0.0, 0, 10, 10], [0, 0, 10, 10]],
            [[1.0, 0, 11, 10], [50, 50, 60, 60]],
            [[30.0, 30, 40, 40], [30, 30, 40, 40]],
        ]
    )  # (K=3, C=2, 4)
    scores = torch.tensor([[0.6, 0.3], [0.55, 0.9], [0.5, 0.7]])
    found = multiclass_nms(boxes, scores, BoxTestConfig(score_threshold=0.5))
    # candidates strictly above 0.5; (1, class 0) overlaps (0, class 0) with IoU 0.818 -> suppressed
    assert found.scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert found.labels.tolist() == [1, 1, 0]
    legacy = multiclass_nms(
        boxes,
        scores,
        BoxTestConfig(
            score_threshold=0.5, legacy_order=True, nms_pixel_offset=1.0, nms_suppress_at_threshold=False
        ),
    )
    assert legacy.labels.tolist() == [0, 1, 1] and legacy.scores.tolist() == pytest.approx([0.6, 0.9, 0.7])
    capped = multiclass_nms(
        boxes, scores, BoxTestConfig(score_threshold=0.5, legacy_order=True, max_per_image=2)
    )
    assert capped.scores.tolist() == pytest.approx([0.9, 0.7])  # over the cap: sorted by score
    empty = multiclass_nms(boxes, scores * 0, BoxTestConfig())
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)


@pytest.mark.parametrize("background_first", [False, True])
def test_box_head_background_conventions(background_first):
    head = Shared2FCBBoxHead(
        num_classes=3, in_channels=2, roi_size=2, fc_channels=8, background_first=background_first
    )
    assert head.fc_cls.out_features == 4
    assert head.fc_reg.out_features == (16 if background_first else 12)
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    probs = F.softmax(logits, dim=1)[0]
    expected = probs[1:] if background_first else probs[:3]
    torch.testing.assert_close(head.foreground_scores(logits)[0], expected)
    labels, positive = torch.tensor([2, 1]), torch.tensor([True, False])
    assert head.cls_targets(labels, positive).tolist() == ([3, 0] if background_first else [2, 3])


def test_box_head_predict_decodes_rescales_and_clips():
    head = Shared2FCBBoxHead(num_classes=2, in_channels=1, roi_size=1, fc_channels=4)
    rois = torch.tensor([[0.0, 10.0, 10.0, 30.0, 50.0]])
    cls_logits = torch.tensor([[math.log(8.0), 0.0, 0.0]])  # class 0 prob 0.8
    deltas = torch.zeros(1, 8)
    deltas[0, 2] = math.log(100.0) / 0.2  # class 0 width x100 -> clipped to the image
    found = head.predict(
        rois, BoxHeadOutput(cls_logits, deltas), (60, 80), torch.tensor([2.0, 2.0, 2.0, 2.0]), BoxTestConfig()
    )
    assert found.labels.tolist() == [0]
    torch.testing.assert_close(found.scores, torch.tensor([0.8]))
    torch.testing.assert_close(found.boxes, torch.tensor([[0.0, 5.0, 40.0, 25.0]]))  # clip to 80 wide, /2


def test_mask_head_shapes_channels_and_loss():
    head = FCNMaskHead(num_classes=3, in_channels=8, conv_channels=8)
    logits = head(torch.randn(2, 8, 14, 14))
    assert logits.shape == (2, 3, 28, 28)
    picked = head.class_logits(logits, torch.tensor([2, 0]))
    torch.testing.assert_close(picked, torch.stack([logits[0, 2], logits[1, 0]]))
    legacy = FCNMaskHead(num_classes=3, in_channels=8, conv_channels=8, background_first=True)
    out = legacy(torch.randn(1, 8, 14, 14))
    assert out.shape[1] == 4 and torch.equal(legacy.class_logits(out, torch.tensor([0])), out[:, 1])
    targets = (torch.rand(2, 28, 28) > 0.5).float()
    loss = head.loss(logits, targets, torch.tensor([2, 0]))
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(picked, targets))
    assert head.loss(logits[:0], targets[:0], torch.zeros(0, dtype=torch.int64)).item() == 0.0


def test_mask_targets_mmdet2_is_roi_align_of_the_bitmap():
    masks = torch.zeros(2, 40, 50, dtype=torch.bool)
    masks[0, 10:30, 10:40] = True
    masks[1, :, 25:] = True
    proposals = torch.tensor([[10.0, 10.0, 40.0, 30.0], [20.0, 5.0, 30.0, 25.0], [-5.0, 30.0, 60.0, 45.0]])
    assigned = torch.tensor([0, 1, 0])
    targets = mask_targets(proposals, assigned, masks, 28)
    assert targets.shape == (3, 28, 28)
    assert torch.all(targets[0] == 1)  # the box is exactly the mask
    clipped = torch.tensor(
        [[0.0, 10.0, 10.0, 40.0, 30.0], [1, 20.0, 5.0, 30.0, 25.0], [2, 0.0, 30.0, 50.0, 40.0]]
    )
    expected = roi_align(masks[assigned][:, None].float(), clipped, 28, 1.0, sampling_ratio=0, aligned=True)
    torch.testing.assert_close(targets, (expected[:, 0] >= 0.5).float())
    assert targets[1, :, :13].sum() == 0 and torch.all(targets[1, :, 15:] == 1)  # split at x = 25
    assert mask_targets(proposals[:0], assigned[:0], masks).shape == (0, 28, 28)


def test_mask_targets_legacy_crop_and_resize():
    masks = torch.zeros(1, 20, 20, dtype=torch.bool)
    masks[0, 4:12, 4:12] = True
    # truncated box [4, 4, 11, 11] (+1 widths: 8x8) is exactly the mask; resized to 28 it stays full
    targets = mask_targets(torch.tensor([[4.7, 4.2, 11.9, 11.5]]), torch.tensor([0]), masks, 28, legacy=True)
    assert torch.all(targets == 1)
    half = mask_targets(torch.tensor([[0.0, 4.0, 7.0, 11.0]]), torch.tensor([0]), masks, 28, legacy=True)
    assert torch.all(half[0, :, :14] == 0) and torch.all(half[0, :, 14:] == 1)


def naive_paste(probs, boxes, height, width):
    """The official _do_paste_mask, one box at a time with skip_empty=True, via F.grid_sample."""
    out = torch.zeros(len(probs), height, width)
    for index, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        xs0, ys0 = max(math.floor(x0) - 1, 0), max(math.floor(y0) - 1, 0)
        xs1, ys1 = min(math.ceil(x1) + 1, width), min(math.ceil(y1) + 1, height)
        img_y = (torch.arange(ys0, ys1, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
        img_x = (torch.arange(xs0, xs1, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
        img_x[torch.isinf(img_x)] = 0
        img_y[torch.isinf(img_y)] = 0
        grid = torch.stack(torch.broadcast_tensors(img_x[None, :], img_y[:, None]), dim=-1)[None]
        sampled = F.grid_sample(probs[index][None, None], grid, align_corners=False)
        out[index, ys0:ys1, xs0:xs1] = sampled[0, 0]
    return out


def test_paste_matches_grid_sample_loop_at_borders_and_sizes():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(6, 28, 28, generator=g)
    boxes = torch.tensor(
        [
            [3.3, 4.1, 20.7, 30.2],
            [0.0, 0.0, 64.0, 48.0],
            [-5.0, -3.0, 10.0, 12.0],
            [50.5, 40.2, 70.0, 60.0],
            [10.0, 10.0, 10.4, 10.3],
            [20.0, 5.0, 20.0, 9.0],
        ]
    )
    ours = paste_masks(probs, boxes, (48, 64), threshold=-1)
    torch.testing.assert_close(ours, naive_paste(probs, boxes, 48, 64), rtol=0, atol=1e-5)
    binary = paste_masks(probs, boxes, (48, 64))
    assert binary.dtype == torch.bool and torch.equal(binary, ours >= 0.5)
    assert paste_masks(probs[:0], boxes[:0], (48, 64)).shape == (0, 48, 64)


def test_legacy_paste_truncates_and_resizes():
    probs = torch.zeros(1, 28, 28)
    probs[0, :, 14:] = 1.0  # right half
    masks = paste_masks(probs, torch.tensor([[2.9, 3.6, 9.2, 6.99]]), (10, 12), legacy=True)
    # box truncated to [2, 3, 9, 6]: 8 wide x 4 high at rows 3..6, columns 2..9; right half -> 6..9
    expected = torch.zeros(10, 12, dtype=torch.bool)
    expected[3:7, 6:10] = True
    assert torch.equal(masks[0], expected)
    resized = F.interpolate(probs[None], size=(4, 8), mode="bilinear", align_corners=False)[0, 0]
    full = paste_masks(probs, torch.tensor([[2.9, 3.6, 9.2, 6.99]]), (10, 12), threshold=-1, legacy=True)
    torch.testing.assert_close(full[0, 3:7, 2:10], resized)


def test_paste_zero_size_box_on_pixel_centre_is_finite():
    probs = torch.ones(1, 28, 28)
    pasted = paste_masks(probs, torch.tensor([[10.5, 4.0, 10.5, 9.0]]), (16, 16), threshold=-1)
    assert torch.isfinite(pasted).all()
