"""Max-IoU assignment of candidate boxes (anchors, proposals) to ground-truth boxes (mmdet
``MaxIoUAssigner``, identical in mmdet 2.x and 0.5 apart from the IoU's pixel convention)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from streamvis.ops.boxes import IOU_EPS, box_iou


@dataclass
class AssignResult:
    """The assignment of N candidates.

    Attributes:
        num_gts: number of ground-truth boxes.
        gt_inds: (N,) int64: 0 = negative, -1 = ignored, i + 1 = assigned to ground truth i.
        max_overlaps: (N,) the candidate's highest IoU with any ground truth (0 without any).
        labels: (N,) int64 label of the assigned ground truth, -1 elsewhere; None without labels.
    """

    num_gts: int
    gt_inds: torch.Tensor
    max_overlaps: torch.Tensor
    labels: torch.Tensor | None = None

    def add_gt(self, gt_labels: torch.Tensor | None) -> AssignResult:
        """mmdet ``add_gt_``: prepend the ground truths themselves as positive candidates (IoU 1)."""
        self_inds = torch.arange(1, self.num_gts + 1, dtype=torch.int64, device=self.gt_inds.device)
        labels = None
        if self.labels is not None and gt_labels is not None:
            labels = torch.cat((gt_labels.to(self.labels), self.labels))
        return AssignResult(self.num_gts, torch.cat((self_inds, self.gt_inds)),
                            torch.cat((self.max_overlaps.new_ones(self.num_gts), self.max_overlaps)), labels)


@dataclass(frozen=True)
class MaxIoUAssigner:
    """Positive when max IoU >= pos_iou_threshold, negative when in [0, neg_iou_threshold) (or in the
    (low, high) range when a tuple is given), then every ground truth whose best IoU is
    >= min_pos_iou also takes its best candidate(s) (``match_low_quality``), ground truths later in
    the list overwriting earlier ones, exactly as the official loop over ground truths.

    Official settings: RPN (0.7, 0.3, min_pos_iou 0.3); PCAN R-CNN (0.5, 0.5, 0.5); QDTrack embed
    (0.7, 0.3, 0.5, match_low_quality False); MaskTrack R-CNN RPN / R-CNN as PCAN's, with +1 IoU.

    Args:
        pixel_offset: 0 (mmdet 2.x IoU, union clamped at 1e-6) or 1 (mmdet 0.5: +1, no clamp).
        gt_max_assign_all: a ground truth takes every candidate tied at its best IoU (official True).
    """

    pos_iou_threshold: float
    neg_iou_threshold: float | tuple[float, float]
    min_pos_iou: float = 0.0
    match_low_quality: bool = True
    gt_max_assign_all: bool = True
    pixel_offset: float = 0.0

    def assign(self, boxes: torch.Tensor, gt_boxes: torch.Tensor,
               gt_labels: torch.Tensor | None = None) -> AssignResult:
        """Args: boxes (N, >=4) candidates; gt_boxes (G, >=4); gt_labels (G,) or None."""
        eps = None if self.pixel_offset else IOU_EPS
        overlaps = box_iou(gt_boxes, boxes, pixel_offset=self.pixel_offset, eps=eps)  # (G, N)
        return self.assign_overlaps(overlaps, gt_labels)

    def assign_overlaps(self, overlaps: torch.Tensor, gt_labels: torch.Tensor | None = None) -> AssignResult:
        """Assign from a (G, N) IoU matrix (mmdet ``assign_wrt_overlaps``)."""
        num_gts, num_boxes = overlaps.shape
        gt_inds = torch.full((num_boxes,), -1, dtype=torch.int64, device=overlaps.device)
        if num_gts == 0 or num_boxes == 0:
            if num_gts == 0:
                gt_inds.zero_()
            labels = None if gt_labels is None else torch.full_like(gt_inds, -1)
            return AssignResult(num_gts, gt_inds, overlaps.new_zeros(num_boxes), labels)
        max_overlaps, argmax_overlaps = overlaps.max(dim=0)
        gt_max_overlaps, gt_argmax_overlaps = overlaps.max(dim=1)
        if isinstance(self.neg_iou_threshold, tuple):
            low, high = self.neg_iou_threshold
            gt_inds[(max_overlaps >= low) & (max_overlaps < high)] = 0
        else:
            gt_inds[(max_overlaps >= 0) & (max_overlaps < self.neg_iou_threshold)] = 0
        positive = max_overlaps >= self.pos_iou_threshold
        gt_inds[positive] = argmax_overlaps[positive] + 1
        if self.match_low_quality:
            gt_ok = gt_max_overlaps >= self.min_pos_iou  # (G,)
            if self.gt_max_assign_all:
                takes = (overlaps == gt_max_overlaps[:, None]) & gt_ok[:, None]  # (G, N)
            else:
                takes = torch.zeros_like(overlaps, dtype=torch.bool)
                rows = torch.nonzero(gt_ok).squeeze(1)
                takes[rows, gt_argmax_overlaps[rows]] = True
            # the official loop over ground truths lets the last one win: take the largest index
            order = torch.arange(1, num_gts + 1, device=overlaps.device)[:, None]
            winner = (takes * order).max(dim=0).values  # (N,) 0 where no ground truth takes it
            gt_inds = torch.where(winner > 0, winner, gt_inds)
        labels = None
        if gt_labels is not None:
            labels = torch.full_like(gt_inds, -1)
            positive = gt_inds > 0
            labels[positive] = gt_labels.to(torch.int64)[gt_inds[positive] - 1]
        return AssignResult(num_gts, gt_inds, max_overlaps, labels)
