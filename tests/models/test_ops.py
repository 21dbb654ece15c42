"""ops: aligned_bilinear, location grids and NMS (against a plain-Python greedy reference)."""

from __future__ import annotations

import pytest
import torch

from streamvis.ops import nms as nms_ops
from streamvis.ops.misc import aligned_bilinear, compute_locations
from streamvis.ops.nms import batched_nms, nms


def test_aligned_bilinear_hand_case():
    x = torch.tensor([[[[0.0, 1.0]]]])  # (1, 1, 1, 2)
    out = aligned_bilinear(x, 2)
    # pad right -> [0, 1, 1]; align_corners to 5 -> [0, .5, 1, 1, 1]; pad left 1 -> crop 4
    assert out.shape == (1, 1, 2, 4)
    torch.testing.assert_close(out, torch.tensor([[[[0.0, 0.0, 0.5, 1.0]] * 2]]))


def test_aligned_bilinear_shapes_and_errors():
    x = torch.randn(2, 3, 5, 7)
    assert aligned_bilinear(x, 1) is x
    assert aligned_bilinear(x, 4).shape == (2, 3, 20, 28)
    with pytest.raises(ValueError):
        aligned_bilinear(x, 1.5)
    with pytest.raises(ValueError):
        aligned_bilinear(x[0], 2)


def test_compute_locations_row_major_centres():
    locs = compute_locations(2, 3, 8)
    assert locs.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]


def reference_nms(boxes, scores, threshold):
    """Plain-Python greedy NMS (torchvision semantics: stable descending sort, IoU > threshold)."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    b = boxes.tolist()
    area = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in b]
    removed, keep = set(), []
    for rank, i in enumerate(order):
        if i in removed:
            continue
        keep.append(i)
        for j in order[rank + 1 :]:
            w = max(0.0, min(b[i][2], b[j][2]) - max(b[i][0], b[j][0]))
            h = max(0.0, min(b[i][3], b[j][3]) - max(b[i][1], b[j][1]))
            inter = w * h
            if inter / (area[i] + area[j] - inter) > threshold:
                removed.add(j)
    return keep


def random_boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 40 + 1
    scores = torch.rand(n, generator=g).round(decimals=1)  # many ties
    return torch.cat([xy, xy + wh], dim=1), scores


def test_nms_hand_case():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert nms(boxes, scores, 0.6).tolist() == [3, 2]  # box 3 suppresses 0 (IoU 1) and 1 (IoU 9/11)
    assert nms(boxes, scores, 0.95).tolist() == [3, 1, 2]  # IoU 1 > 0.95 removes 0; 9/11 stays
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nms_matches_greedy_reference(seed):
    boxes, scores = random_boxes(300, seed)
    assert nms(boxes, scores, 0.5).tolist() == reference_nms(boxes, scores, 0.5)


def test_batched_nms_classes_do_not_interact(monkeypatch):
    boxes, scores = random_boxes(400, 3)
    labels = torch.randint(0, 5, (400,), generator=torch.Generator().manual_seed(3))
    expected = []
    for label in range(5):
        idx = torch.where(labels == label)[0]
        expected += idx[reference_nms(boxes[idx], scores[idx], 0.6)].tolist()
    offset_path = batched_nms(boxes, scores, labels, 0.6)
    assert sorted(offset_path.tolist()) == sorted(expected)
    assert (scores[offset_path].diff() <= 0).all()
    monkeypatch.setattr(nms_ops, "_COORDINATE_TRICK_MAX_NUMEL", 0)  # force the per-label loop
    assert batched_nms(boxes, scores, labels, 0.6).tolist() == offset_path.tolist()


def test_nms_large_input_uses_row_chunks(monkeypatch):
    monkeypatch.setattr(nms_ops, "_ROW_CHUNK", 7)
    boxes, scores = random_boxes(50, 4)
    assert nms(boxes, scores, 0.3).tolist() == reference_nms(boxes, scores, 0.3)


@pytest.mark.parametrize("shape,groups", [((1, 64, 12, 20), 1), ((2, 96, 7, 9), 3), ((1, 64, 3, 5), 1)])
def test_winograd_conv_matches_conv2d(shape, groups):
    from streamvis.ops.fast_conv import WinogradConv2d, is_winograd_compatible, winograd_convs

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(shape[1], 64 * groups, 3, padding=1, groups=groups)
    x = torch.randn(shape)
    with torch.no_grad():
        torch.testing.assert_close(WinogradConv2d(conv)(x), conv(x), rtol=1e-4, atol=1e-5)
    assert not is_winograd_compatible(torch.nn.Conv2d(64, 64, 3, stride=2, padding=1))
    assert not is_winograd_compatible(torch.nn.Conv2d(64, 5, 3, padding=1))  # too few outputs to pay off
    seq = winograd_convs(torch.nn.Sequential(conv, torch.nn.Conv2d(64 * groups, 8, 1)), keep=())
    assert isinstance(seq[0], WinogradConv2d) and type(seq[1]) is torch.nn.Conv2d
