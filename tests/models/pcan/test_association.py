"""Steps 7-11 of the official test flow: tracker match -> refine head with references -> memory update."""

from __future__ import annotations

import torch
from torch import nn

from streamvis.models.pcan.association import FrameDetections, associate_and_refine
from streamvis.models.pcan.refine_head import EMMatchHeadPlus
from streamvis.tracking.quasi_dense import QuasiDenseTracker


class SpyRefineHead(nn.Module):
    """Records the references it is given; returns the key's label-channel logits + 0.25."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def refine(self, key_feats, key_mask_pred, labels, ref_feats, ref_mask_pred):
        self.calls.append((key_feats.clone(), ref_feats.clone(), ref_mask_pred.clone()))
        rows = torch.arange(labels.shape[0])
        return key_mask_pred[rows, labels][:, None] + 0.25


def _frame(t: int, boxes, labels, directions) -> FrameDetections:
    n = len(boxes)
    tag = 1000.0 * t + torch.arange(n, dtype=torch.float32)  # detection tag in every tensor
    return FrameDetections(
        boxes=torch.tensor(boxes, dtype=torch.float32),
        labels=torch.tensor(labels, dtype=torch.long),
        mask_pred=tag[:, None, None, None].expand(n, 3, 28, 28).clone(),
        mask_feats=(tag + 0.5)[:, None, None, None].expand(n, 4, 14, 14).clone(),
        embeds=torch.nn.functional.one_hot(torch.tensor(directions, dtype=torch.long), 4).float() * 6,
    )


def test_references_come_from_the_tracklets_last_matched_frame():
    tracker, head = QuasiDenseTracker(), SpyRefineHead()
    first = associate_and_refine(tracker, head, _frame(0, [[0, 0, 10, 10, 0.9], [30, 0, 40, 10, 0.8]],
                                                     [1, 2], [0, 1]), 0)
    assert first.ids.tolist() == [0, 1] and first.reference_is_self.tolist() == [True, True]
    # frame 1: no detections -> nothing is called and nothing changes
    empty = _frame(1, [], [], [])
    assert associate_and_refine(tracker, head, empty._replace(boxes=torch.zeros(0, 5)), 1) is None
    assert len(head.calls) == 1
    # frame 2: object 1 (higher score now), object 0, a new weak object and a duplicate of object 1
    boxes = [[0, 0, 10, 10, 0.85], [30, 0, 40, 10, 0.95], [60, 0, 70, 10, 0.6], [30, 0, 40, 11, 0.5]]
    frame = _frame(2, boxes, [1, 2, 1, 2], [0, 1, 2, 1])
    out = associate_and_refine(tracker, head, frame, 2)
    assert out.kept_indices.tolist() == [1, 0, 2] and out.dropped_indices.tolist() == [3]
    assert out.ids.tolist() == [1, 0, -1]
    assert out.reference_is_self.tolist() == [False, False, True]
    _, ref_feats, ref_masks = head.calls[-1]
    # tracked detections are refined against frame 0's stored RoI (tags 1.5 / 0.5), the new one against itself
    assert ref_feats[:, 0, 0, 0].tolist() == [1.5, 0.5, 2002.5]
    assert ref_masks[:, 0, 0, 0].tolist() == [1.0, 0.0, 2002.0]
    # the memory now holds frame 2's mask-head logits, RoI features and refined logits
    assert float(tracker.tracklets[1].payload["mask_feats"].flatten()[0]) == 2001.5
    assert float(tracker.tracklets[1].payload["refine_pred"].flatten()[0]) == 2001.25


def test_with_the_real_refine_head_shapes():
    torch.manual_seed(0)
    head = EMMatchHeadPlus(in_channels=4, conv_channels=8).eval()
    out = associate_and_refine(QuasiDenseTracker(), head, _frame(0, [[0, 0, 10, 10, 0.9]], [2], [0]), 0)
    assert out.refine_logits.shape == (1, 1, 28, 28) and torch.isfinite(out.refine_logits).all()
