"""Greedy non-maximum suppression in plain torch, with torchvision's exact semantics.

torchvision's CPU kernel sorts the scores (stable, descending), then walks the boxes in that
order: a box that is not yet suppressed is kept and suppresses every later box whose IoU with it
is strictly greater than the threshold. IoU uses areas (x2-x1)*(y2-y1) (no +1) and is computed as
inter / (area_i + area_j - inter) in the boxes' dtype. We compute the pairwise "suppresses"
matrix at once (vectorized) and then only loop over the kept boxes.
"""

from __future__ import annotations

import torch

# official (torchvision batched_nms): above this many box coordinates on CPU it loops over classes
# instead of offsetting the boxes per class
_COORDINATE_TRICK_MAX_NUMEL = 4000
_ROW_CHUNK = 1024  # rows of the IoU matrix computed at once (bounds memory for large inputs)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas (x2-x1)*(y2-y1) of (K, 4) xyxy boxes -> (K,)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def pairwise_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair, computed in the same operation order as torchvision's NMS kernel.

    Args:
        boxes1: (K, 4) xyxy; boxes2: (M, 4) xyxy.

    Returns:
        (K, M) IoU; 0/0 gives NaN, which compares as "not above threshold", as in torchvision.
    """
    area1, area2 = box_area(boxes1), box_area(boxes2)
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (K, M, 2)
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (K, M, 2)
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS; same result as ``torchvision.ops.nms``.

    Args:
        boxes: (K, 4) xyxy float.
        scores: (K,) float.
        iou_threshold: a box is suppressed when its IoU with a kept, higher-scored box is > this.

    Returns:
        (M,) int64 indices of the kept boxes, sorted by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    num = sorted_boxes.shape[0]
    suppresses = torch.empty((num, num), dtype=torch.bool, device=boxes.device)
    for start in range(0, num, _ROW_CHUNK):
        rows = sorted_boxes[start : start + _ROW_CHUNK]
        suppresses[start : start + _ROW_CHUNK] = pairwise_iou(rows, sorted_boxes) > iou_threshold
    suppresses = torch.triu(suppresses, diagonal=1)  # a box only suppresses lower-ranked boxes
    return order[greedy_keep(suppresses).to(boxes.device)]


def greedy_keep(suppresses: torch.Tensor) -> torch.Tensor:
    """Walk boxes in rank order: keep each one not yet suppressed, and suppress what it suppresses.

    The walk needs one decision per kept box, so it runs on the CPU: a GPU matrix is copied to
    the host once (one synchronisation per NMS call instead of one per kept box).

    Args:
        suppresses: (K, K) bool, ``[i, j]``: box i (higher-ranked) suppresses box j (upper triangle).

    Returns:
        (M,) int64 CPU ranks of the kept boxes, increasing.
    """
    suppresses = suppresses.cpu()
    num = suppresses.shape[0]
    removed = torch.zeros(num, dtype=torch.bool)
    keep = []
    current = 0
    while current < num:
        keep.append(current)
        removed |= suppresses[current]
        alive = (~removed[current + 1 :]).nonzero()
        if alive.numel() == 0:
            break
        current = current + 1 + int(alive[0, 0])
    return torch.tensor(keep, dtype=torch.int64)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Class-aware NMS (boxes of different labels never suppress each other).

    Mirrors torchvision's ``batched_nms`` (used by detectron2 and the official CrossVIS): up to
    1000 boxes it offsets each class's boxes by label * (max coordinate + 1) and runs one NMS;
    above that it runs NMS per label and merges the kept indices by decreasing score.

    Args:
        boxes: (K, 4) xyxy float; scores: (K,); labels: (K,) int64.

    Returns:
        (M,) int64 indices of the kept boxes, sorted by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    boxes = boxes.float()  # official detectron2 batched_nms casts to float
    if boxes.numel() > _COORDINATE_TRICK_MAX_NUMEL:
        return _batched_nms_per_label(boxes, scores, labels, iou_threshold)
    max_coordinate = boxes.max()
    offsets = labels.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def _batched_nms_per_label(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for label in torch.unique(labels):
        indices = torch.where(labels == label)[0]
        keep_mask[indices[nms(boxes[indices], scores[indices], iou_threshold)]] = True
    kept = torch.where(keep_mask)[0]
    return kept[scores[kept].sort(descending=True, stable=True).indices]


def mmdet_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, *, pixel_offset: float = 0.0,
              suppress_at_threshold: bool = True) -> torch.Tensor:
    """Greedy NMS with mmcv / mmdetection semantics (the two-stage core's NMS).

    mmcv 1.2.7 ``nms`` (CPU kernel ``nms_cpu``), used by mmdet 2.x: areas without +1, a box is
    suppressed when its IoU with a kept, higher-scored box is **>=** the threshold
    (``suppress_at_threshold=True``). mmdet 0.5's GPU NMS (MaskTrack R-CNN test time, masktrack
    facts.md section 7.6): +1 areas (``pixel_offset=1``) and suppression when IoU **>** thr.
    Scores are sorted stably (the official sort is not stable: ties are in unspecified order).

    Args:
        boxes: (K, 4) xyxy float; scores: (K,).
        iou_threshold: the IoU threshold.
        pixel_offset: 0 (mmdet 2.x) or 1 (mmdet 0.5).
        suppress_at_threshold: suppress at IoU == threshold too (mmcv) or only above it (mmdet 0.5 GPU).

    Returns:
        (M,) int64 indices of the kept boxes, by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order, :4]
    num = sorted_boxes.shape[0]
    area = (sorted_boxes[:, 2] - sorted_boxes[:, 0] + pixel_offset) * (sorted_boxes[:, 3] - sorted_boxes[:, 1]
                                                                       + pixel_offset)
    suppresses = torch.empty((num, num), dtype=torch.bool, device=boxes.device)
    for start in range(0, num, _ROW_CHUNK):
        rows = sorted_boxes[start : start + _ROW_CHUNK]
        lt = torch.maximum(rows[:, None, :2], sorted_boxes[None, :, :2])
        rb = torch.minimum(rows[:, None, 2:], sorted_boxes[None, :, 2:])
        wh = (rb - lt + pixel_offset).clamp(min=0)
        inter = wh[..., 0] * wh[..., 1]
        iou = inter / (area[start : start + _ROW_CHUNK, None] + area[None, :] - inter)
        suppresses[start : start + _ROW_CHUNK] = (iou >= iou_threshold) if suppress_at_threshold else (
            iou > iou_threshold)
    suppresses = torch.triu(suppresses, diagonal=1)
    return order[greedy_keep(suppresses).to(boxes.device)]


def mmdet_batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float,
                      **nms_options) -> torch.Tensor:
    """mmcv ``batched_nms``: boxes of different groups (classes, or pyramid levels for RPN proposals)
    never suppress each other; the boxes are shifted by ``group * (max coordinate + 1)`` and one
    `mmdet_nms` runs over all of them.

    Args:
        boxes: (K, 4); scores: (K,); groups: (K,) int64; nms_options: see `mmdet_nms`.

    Returns:
        (M,) int64 kept indices by decreasing score.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    offsets = groups.to(boxes) * (boxes[:, :4].max() + 1)
    return mmdet_nms(boxes[:, :4] + offsets[:, None], scores, iou_threshold, **nms_options)
