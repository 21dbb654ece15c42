"""Samplers of assigned candidates (mmdet ``RandomSampler`` and ``CombinedSampler`` with
``InstanceBalancedPosSampler`` / ``IoUBalancedNegSampler``), with an explicit torch generator.

Shared rule (mmdet ``BaseSampler.sample``): with ``add_gt_as_proposals`` the ground-truth boxes are
prepended to the candidates; ``int(num * pos_fraction)`` positives are drawn, then
``num - #positives`` negatives (at most ``neg_pos_ub * max(#positives, 1)`` when ``neg_pos_ub >= 0``).
Both index sets are de-duplicated and sorted (``Tensor.unique``), positives first in `boxes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from streamvis.models.two_stage.assigners import AssignResult


@dataclass
class SamplingResult:
    """Sampled candidates of one image.

    Attributes:
        pos_inds, neg_inds: (P,), (Q,) indices into the candidates (ground truths first when added).
        pos_boxes, neg_boxes: (P, 4), (Q, 4).
        pos_is_gt: (P,) bool, the positive is a ground-truth box added as a candidate.
        pos_assigned_gt_inds: (P,) index of each positive's ground truth.
        pos_gt_boxes: (P, 4); pos_gt_labels: (P,) or None.
    """

    pos_inds: torch.Tensor
    neg_inds: torch.Tensor
    pos_boxes: torch.Tensor
    neg_boxes: torch.Tensor
    pos_is_gt: torch.Tensor
    pos_assigned_gt_inds: torch.Tensor
    pos_gt_boxes: torch.Tensor
    pos_gt_labels: torch.Tensor | None

    @property
    def boxes(self) -> torch.Tensor:
        """(P + Q, 4): positives, then negatives (mmdet ``SamplingResult.bboxes``)."""
        return torch.cat((self.pos_boxes, self.neg_boxes))


def random_choice(gallery: torch.Tensor, num: int, generator: torch.Generator | None) -> torch.Tensor:
    """`num` elements of `gallery` without replacement, in random order (mmdet ``random_choice``)."""
    perm = torch.randperm(gallery.numel(), generator=generator)[:num].to(gallery.device)
    return gallery[perm]


@dataclass(frozen=True)
class RandomSampler:
    """Uniform sampling of positives and negatives (official R-CNN: 512, 0.25, GT added; RPN: 256,
    0.5, no GT; MaskTrack R-CNN R-CNN: 128, 0.25, GT added)."""

    num: int
    pos_fraction: float
    neg_pos_ub: float = -1
    add_gt_as_proposals: bool = True

    def sample(self, assign: AssignResult, boxes: torch.Tensor, gt_boxes: torch.Tensor,
               gt_labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> SamplingResult:
        """Args: assign over `boxes` (N, >=4); gt_boxes (G, 4); gt_labels (G,). Returns the sample."""
        boxes = boxes[:, :4]
        is_gt = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
        if self.add_gt_as_proposals and gt_boxes.shape[0] > 0:
            boxes = torch.cat((gt_boxes[:, :4].to(boxes), boxes))
            assign = assign.add_gt(gt_labels)
            is_gt = torch.cat((torch.ones(gt_boxes.shape[0], dtype=torch.bool, device=boxes.device), is_gt))
        pos_inds = self._sample_pos(assign, int(self.num * self.pos_fraction), generator).unique()
        num_neg = self.num - pos_inds.numel()
        if self.neg_pos_ub >= 0:
            num_neg = min(num_neg, int(self.neg_pos_ub * max(1, pos_inds.numel())))
        neg_inds = self._sample_neg(assign, num_neg, generator).unique()
        assigned = assign.gt_inds[pos_inds] - 1
        return SamplingResult(
            pos_inds=pos_inds, neg_inds=neg_inds, pos_boxes=boxes[pos_inds], neg_boxes=boxes[neg_inds],
            pos_is_gt=is_gt[pos_inds], pos_assigned_gt_inds=assigned,
            pos_gt_boxes=gt_boxes[assigned, :4] if gt_boxes.shape[0] else boxes.new_zeros((0, 4)),
            pos_gt_labels=None if assign.labels is None else assign.labels[pos_inds])

    def _sample_pos(self, assign: AssignResult, num: int, generator) -> torch.Tensor:
        pos = torch.nonzero(assign.gt_inds > 0).squeeze(1)
        return _at_most(pos, num, generator)

    def _sample_neg(self, assign: AssignResult, num: int, generator) -> torch.Tensor:
        neg = torch.nonzero(assign.gt_inds == 0).squeeze(1)
        return _at_most(neg, num, generator)


@dataclass(frozen=True)
class CombinedSampler(RandomSampler):
    """``CombinedSampler(InstanceBalancedPosSampler, IoUBalancedNegSampler)`` (official QDTrack / PCAN
    embedding sampler: 256, 0.5, neg_pos_ub 3, GT added, floor_thr -1, floor_fraction 0, 3 bins).

    Positives (``InstanceBalancedPosSampler``): when there are more than needed, up to
    ``int(round(num / #gts) + 1)`` per ground truth; if that falls short, extras are drawn from
    **all** positives (official: the set difference it intends is a no-op on tensors, so extras may
    repeat sampled ones and are removed by the final de-duplication); if it is too many, a random subset.
    Negatives (``IoUBalancedNegSampler``): the official sampler sets ``floor_thr`` from -1 to 0 on
    its first call; this is its steady state (floor_thr 0): negatives with IoU > 0 are drawn over
    `num_bins` equal IoU intervals of [0, max IoU of all candidates), at most num / bins each, topped
    up from the rest of that set; IoU-0 negatives fill what is left; then any negative.
    """

    floor_thr: float = -1.0
    floor_fraction: float = 0.0
    num_bins: int = 3

    def _sample_pos(self, assign: AssignResult, num: int, generator) -> torch.Tensor:
        pos = torch.nonzero(assign.gt_inds > 0).squeeze(1)
        if pos.numel() <= num:
            return pos
        unique_gts = assign.gt_inds[pos].unique()
        per_gt = int(round(num / float(unique_gts.numel())) + 1)
        sampled = []
        for gt in unique_gts.tolist():  # a loop over ground-truth instances, as official
            inds = torch.nonzero(assign.gt_inds == gt).squeeze(1)
            sampled.append(_at_most(inds, per_gt, generator))
        sampled = torch.cat(sampled)
        if sampled.numel() < num:
            sampled = torch.cat((sampled, _at_most(pos, num - sampled.numel(), generator)))
        elif sampled.numel() > num:
            sampled = random_choice(sampled, num, generator)
        return sampled

    def _sample_neg(self, assign: AssignResult, num: int, generator) -> torch.Tensor:
        neg = torch.nonzero(assign.gt_inds == 0).squeeze(1)
        if neg.numel() <= num:
            return neg
        overlaps = assign.max_overlaps
        floor_thr = max(self.floor_thr, 0.0)  # official: -1 becomes 0 after the first call
        if floor_thr > 0:
            is_floor = (overlaps >= 0) & (overlaps < floor_thr)
            is_iou = overlaps >= floor_thr
        else:
            is_floor, is_iou = overlaps == 0, overlaps > 0
        floor_neg, iou_neg = neg[is_floor[neg]], neg[is_iou[neg]]
        num_iou = int(num * (1 - self.floor_fraction))
        if iou_neg.numel() > num_iou:
            iou_sampled = self._sample_via_interval(overlaps, iou_neg, num_iou, floor_thr, generator)
        else:
            iou_sampled = iou_neg
        num_floor = num - iou_sampled.numel()
        floor_sampled = _at_most(floor_neg, num_floor, generator)
        sampled = torch.cat((floor_sampled, iou_sampled))
        if sampled.numel() < num:
            sampled = torch.cat((sampled, _top_up(neg, sampled, num - sampled.numel(), generator)))
        return sampled

    def _sample_via_interval(self, overlaps: torch.Tensor, candidates: torch.Tensor, num: int,
                             floor_thr: float, generator) -> torch.Tensor:
        max_iou = float(overlaps.max())
        interval = (max_iou - floor_thr) / self.num_bins
        per_bin = int(num / self.num_bins)
        values = overlaps[candidates]
        sampled = []
        for index in range(self.num_bins):
            start, end = floor_thr + index * interval, floor_thr + (index + 1) * interval
            in_bin = candidates[(values >= start) & (values < end)]
            sampled.append(_at_most(in_bin, per_bin, generator))
        sampled = torch.cat(sampled)
        if sampled.numel() < num:
            sampled = torch.cat((sampled, _top_up(candidates, sampled, num - sampled.numel(), generator)))
        return sampled


def _top_up(pool: torch.Tensor, taken: torch.Tensor, num: int, generator) -> torch.Tensor:
    """Up to `num` random elements of `pool` that are not in `taken`."""
    return _at_most(pool[~torch.isin(pool, taken)], num, generator)


def _at_most(gallery: torch.Tensor, num: int, generator) -> torch.Tensor:
    """`gallery` itself when it has at most `num` elements, else a random subset of `num`."""
    return random_choice(gallery, num, generator) if gallery.numel() > num else gallery
