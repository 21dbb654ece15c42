"""Box IoU, the delta box coder and mmcv-style NMS against loop references and known values."""

from __future__ import annotations

import math

import pytest
import torch

from streamvis.ops.boxes import DeltaXYWHBoxCoder, box_iou, boxes_to_rois, clip_boxes
from streamvis.ops.nms import mmdet_batched_nms, mmdet_nms


def naive_iou(a, b, offset, eps):
    out = torch.zeros(len(a), len(b), dtype=torch.float64)
    for i, (ax1, ay1, ax2, ay2) in enumerate(a.tolist()):
        for j, (bx1, by1, bx2, by2) in enumerate(b.tolist()):
            iw = max(min(ax2, bx2) - max(ax1, bx1) + offset, 0)
            ih = max(min(ay2, by2) - max(ay1, by1) + offset, 0)
            inter = iw * ih
            area_a = (ax2 - ax1 + offset) * (ay2 - ay1 + offset)
            union = area_a + (bx2 - bx1 + offset) * (by2 - by1 + offset) - inter
            out[i, j] = inter / (max(union, eps) if eps is not None else union)
    return out


BOXES = torch.tensor([[0, 0, 10, 10], [5, 5, 15, 15], [0, 0, 0, 0], [3, 3, 3.5, 9],
                      [-5, -5, 1000, 800], [10, 10, 20, 20]], dtype=torch.float64)


@pytest.mark.parametrize("offset,eps", [(0.0, 1e-6), (1.0, None)])
def test_box_iou_matches_loop(offset, eps):
    torch.testing.assert_close(box_iou(BOXES, BOXES.flip(0), pixel_offset=offset, eps=eps),
                               naive_iou(BOXES, BOXES.flip(0), offset, eps))


def test_box_iou_known_values_and_empty():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 5, 15, 15], [0, 0, 0, 0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[25 / 175, 0.0]]))
    # mmdet 0.5: 11x11 boxes overlapping in 6x6
    torch.testing.assert_close(box_iou(a, b[:1], pixel_offset=1, eps=None), torch.tensor([[36 / 206]]))
    assert box_iou(a, torch.zeros(0, 4)).shape == (1, 0)
    assert box_iou(torch.zeros(0, 4), b).shape == (0, 2)


def test_coder_roundtrip_and_official_formulas():
    coder = DeltaXYWHBoxCoder(stds=(0.1, 0.1, 0.2, 0.2))
    proposals = torch.tensor([[10.0, 20.0, 50.0, 40.0], [0.0, 0.0, 5.0, 5.0]])
    targets = torch.tensor([[12.0, 18.0, 60.0, 44.0], [1.0, 1.0, 4.0, 3.0]])
    deltas = coder.encode(proposals, targets)
    # dx = (36 - 30) / 40 / 0.1, dy = (31 - 30) / 20 / 0.1, dw = log(48 / 40) / 0.2, dh = log(26 / 20) / 0.2
    torch.testing.assert_close(deltas[0], torch.tensor([1.5, 0.5, math.log(1.2) / 0.2, math.log(1.3) / 0.2]))
    torch.testing.assert_close(coder.decode(proposals, deltas), targets)
    legacy = DeltaXYWHBoxCoder(stds=(0.1, 0.1, 0.2, 0.2), pixel_offset=1.0)
    torch.testing.assert_close(legacy.decode(proposals, legacy.encode(proposals, targets)), targets)
    # mmdet 0.5: width 41 -> dw = log(49 / 41)
    assert abs(legacy.encode(proposals, targets)[0, 2].item() - math.log(49 / 41) / 0.2) < 1e-5


def test_decode_clamps_dw_and_clips_to_image():
    coder = DeltaXYWHBoxCoder()
    rois = torch.tensor([[10.0, 10.0, 20.0, 20.0]])
    big = coder.decode(rois, torch.tensor([[0.0, 0.0, 100.0, -100.0]]))
    max_ratio = abs(math.log(16 / 1000))
    torch.testing.assert_close(big[0, 2] - big[0, 0], torch.tensor(10 * math.exp(max_ratio)))
    torch.testing.assert_close(big[0, 3] - big[0, 1], torch.tensor(10 * math.exp(-max_ratio)))
    clipped = coder.decode(rois, torch.tensor([[0.0, 0.0, 3.0, 3.0]]), max_shape=(30, 40))
    assert clipped.tolist() == [[0.0, 0.0, 40.0, 30.0]]  # mmdet 2.x clips to W, H
    legacy = DeltaXYWHBoxCoder(pixel_offset=1.0).decode(rois, torch.tensor([[0.0, 0.0, 3.0, 3.0]]), (30, 40))
    assert legacy.tolist() == [[0.0, 0.0, 39.0, 29.0]]  # mmdet 0.5 clips to W - 1, H - 1
    # class-specific deltas (N, 4k) decode each class
    two = coder.decode(rois, torch.zeros(1, 8))
    assert two.tolist() == [[10.0, 10.0, 20.0, 20.0] * 2]
    assert coder.decode(torch.zeros(0, 4), torch.zeros(0, 8)).shape == (0, 8)


def test_clip_and_rois():
    boxes = torch.tensor([[-3.0, -1.0, 50.0, 60.0]])
    assert clip_boxes(boxes, (40, 30)).tolist() == [[0.0, 0.0, 30.0, 40.0]]
    rois = boxes_to_rois([boxes, torch.zeros(0, 4), boxes + 1])
    assert rois[:, 0].tolist() == [0.0, 2.0] and rois.shape == (2, 5)


def naive_nms(boxes, scores, thr, offset, at_threshold):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        ok = True
        for k in keep:
            iou = naive_iou(boxes[i : i + 1], boxes[k : k + 1], offset, None)[0, 0].item()
            if (iou >= thr) if at_threshold else (iou > thr):
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("offset,at_threshold", [(0.0, True), (1.0, False)])
def test_mmdet_nms_matches_loop(offset, at_threshold):
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(60, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(60, 2, generator=g) * 30], dim=1).double()
    scores = torch.rand(60, generator=g).double()
    keep = mmdet_nms(boxes, scores, 0.5, pixel_offset=offset, suppress_at_threshold=at_threshold)
    assert keep.tolist() == naive_nms(boxes, scores, 0.5, offset, at_threshold)


def test_mmdet_nms_threshold_equality_and_groups():
    # IoU exactly 0.5: mmcv (>=) suppresses, mmdet 0.5 GPU NMS (>) keeps
    boxes = torch.tensor([[0.0, 0.0, 30.0, 10.0], [10.0, 0.0, 40.0, 10.0]])  # inter 20x10, union 400
    scores = torch.tensor([0.9, 0.8])
    assert mmdet_nms(boxes, scores, 0.5).tolist() == [0]
    assert mmdet_nms(boxes, scores, 0.5, suppress_at_threshold=False).tolist() == [0, 1]
    assert mmdet_batched_nms(boxes, scores, torch.tensor([0, 1]), 0.5).tolist() == [0, 1]
    assert mmdet_nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    # two identical zero-area boxes: 0/0 IoU never suppresses (as the official kernel)
    assert mmdet_nms(torch.zeros(2, 4), torch.tensor([0.5, 0.4]), 0.7).tolist() == [0, 1]
