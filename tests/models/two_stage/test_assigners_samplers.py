"""Max-IoU assigner against a loop port of the official rule; random and combined samplers."""

from __future__ import annotations

import torch

from streamvis.models.two_stage.assigners import AssignResult, MaxIoUAssigner
from streamvis.models.two_stage.samplers import CombinedSampler, RandomSampler


def naive_assign(overlaps, pos, neg, min_pos, low_quality):
    """The official assign_wrt_overlaps, loop by loop."""
    num_gts, num_boxes = overlaps.shape
    gt_inds = [-1] * num_boxes
    for j in range(num_boxes):
        column = overlaps[:, j].tolist()
        best = max(column)
        if 0 <= best < neg:
            gt_inds[j] = 0
        if best >= pos:
            gt_inds[j] = column.index(best) + 1
    if low_quality:
        for i in range(num_gts):
            gt_best = overlaps[i].max().item()
            if gt_best >= min_pos:
                for j in range(num_boxes):
                    if overlaps[i, j].item() == gt_best:
                        gt_inds[j] = i + 1
    return gt_inds


def test_assigner_matches_loop_with_low_quality_ties():
    overlaps = torch.tensor(
        [[0.35, 0.10, 0.35, 0.00, 0.20], [0.20, 0.10, 0.35, 0.30, 0.10], [0.05, 0.02, 0.01, 0.00, 0.25]]
    )
    for low_quality in (True, False):
        assigner = MaxIoUAssigner(0.7, 0.3, min_pos_iou=0.3, match_low_quality=low_quality)
        result = assigner.assign_overlaps(overlaps, torch.tensor([4, 5, 6]))
        assert result.gt_inds.tolist() == naive_assign(overlaps, 0.7, 0.3, 0.3, low_quality)
    assert result.gt_inds.tolist() == [-1, 0, -1, -1, 0]  # no low-quality matches
    full = MaxIoUAssigner(0.7, 0.3, min_pos_iou=0.3).assign_overlaps(overlaps, torch.tensor([4, 5, 6]))
    # gt 0 takes both boxes at its best IoU 0.35; box 2 ties with gt 1, and the later gt wins as
    # in the official loop; gt 2 (best 0.25 < min_pos_iou) takes nothing
    assert full.gt_inds.tolist() == [1, 0, 2, -1, 0]
    assert full.labels.tolist() == [4, -1, 5, -1, -1]
    torch.testing.assert_close(full.max_overlaps, torch.tensor([0.35, 0.1, 0.35, 0.3, 0.25]))


def test_assigner_random_against_loop():
    g = torch.Generator().manual_seed(0)
    overlaps = (torch.rand(6, 40, generator=g) * 10).round() / 10  # many ties
    result = MaxIoUAssigner(0.5, (0.1, 0.4), min_pos_iou=0.2).assign_overlaps(overlaps)
    expected = naive_assign(overlaps, 0.5, 99, 0.2, True)
    best = overlaps.max(dim=0).values
    for j, value in enumerate(expected):  # the tuple negative range replaces [0, neg)
        if value <= 0:
            expected[j] = 0 if 0.1 <= best[j] < 0.4 else -1
    assert result.gt_inds.tolist() == expected


def test_assigner_boxes_and_empty_inputs():
    assigner = MaxIoUAssigner(0.5, 0.5, min_pos_iou=0.5)
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    result = assigner.assign(boxes, torch.tensor([[0.0, 0, 10, 9]]), torch.tensor([3]))
    assert result.gt_inds.tolist() == [1, 0] and result.labels.tolist() == [3, -1]
    no_gt = assigner.assign(boxes, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert no_gt.gt_inds.tolist() == [0, 0] and no_gt.labels.tolist() == [-1, -1]
    assert assigner.assign(torch.zeros(0, 4), boxes).gt_inds.numel() == 0
    # mmdet 0.5 IoU (+1): 11x11 vs 11x10 boxes
    legacy = MaxIoUAssigner(0.5, 0.5, pixel_offset=1.0).assign(boxes, torch.tensor([[0.0, 0, 10, 9]]))
    assert abs(legacy.max_overlaps[0].item() - 110 / 121) < 1e-6


def _assign(gt_inds, overlaps=None, num_gts=2):
    gt_inds = torch.tensor(gt_inds)
    overlaps = torch.zeros(len(gt_inds)) if overlaps is None else torch.tensor(overlaps)
    labels = torch.where(gt_inds > 0, gt_inds + 10, torch.full_like(gt_inds, -1))
    return AssignResult(num_gts, gt_inds, overlaps, labels)


def test_random_sampler_counts_order_and_gt():
    assign = _assign([1, 0, 0, 2, 0, -1, 1, 0, 0, 0])
    boxes = torch.arange(40, dtype=torch.float32).view(10, 4)
    gt_boxes = torch.tensor([[0.0, 0, 5, 5], [1.0, 1, 6, 6]])
    sampler = RandomSampler(num=8, pos_fraction=0.25, add_gt_as_proposals=True)
    result = sampler.sample(
        assign, boxes, gt_boxes, torch.tensor([11, 12]), generator=torch.Generator().manual_seed(0)
    )
    assert result.pos_inds.numel() == 2 and result.neg_inds.numel() == 6
    assert torch.all(result.pos_inds[1:] > result.pos_inds[:-1])  # unique() sorts
    # candidates are [gt0, gt1, boxes...]: positives index the gts (2) or boxes 0, 3, 6 (+2)
    assert set(result.pos_inds.tolist()) <= {0, 1, 2, 5, 8}
    assert result.pos_is_gt.tolist() == [i < 2 for i in result.pos_inds.tolist()]
    assert result.pos_gt_labels.tolist() == [11 + int(g) for g in result.pos_assigned_gt_inds]
    assert result.boxes.shape == (8, 4)
    again = sampler.sample(
        assign, boxes, gt_boxes, torch.tensor([11, 12]), generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(again.neg_inds, result.neg_inds)
    capped = RandomSampler(num=8, pos_fraction=0.25, neg_pos_ub=1, add_gt_as_proposals=False).sample(
        assign, boxes, gt_boxes, generator=torch.Generator().manual_seed(0)
    )
    assert capped.pos_inds.numel() == 2 and capped.neg_inds.numel() == 2


def test_combined_sampler_balances_instances_and_ious():
    # 20 positives of gt 1, 2 of gt 2; 30 negatives with IoUs spread over [0, 0.3)
    gt_inds = [1] * 20 + [2] * 2 + [0] * 30
    overlaps = [0.9] * 22 + [0.0] * 10 + [0.01 * i for i in range(20)]
    sampler = CombinedSampler(num=16, pos_fraction=0.5, neg_pos_ub=3, add_gt_as_proposals=False)
    result = sampler.sample(
        _assign(gt_inds, overlaps),
        torch.zeros(52, 4),
        torch.zeros(2, 4),
        generator=torch.Generator().manual_seed(1),
    )
    assigned = result.pos_assigned_gt_inds.tolist()
    assert assigned.count(1) <= 5 and assigned.count(1) >= 1  # per gt: int(round(8 / 2) + 1) = 5
    assert 1 <= len(assigned) <= 8
    assert result.neg_inds.numel() == 8
    assert torch.all(result.neg_inds >= 22)
