"""Box geometry for the two-stage core: IoU, the delta (dx, dy, dw, dh) box coder, clipping.

Two pixel conventions are supported, chosen by ``pixel_offset``:
- ``0.0`` (default): mmdetection 2.x, where a box's width is ``x2 - x1``.
- ``1.0``: mmdetection 0.5 (MaskTrack R-CNN), where the width is ``x2 - x1 + 1`` and boxes are
  clipped to ``[0, W - 1]``. Reference: masktrack facts.md section 7.1 / 7.3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# official (mmdet 2.x / 0.5 delta2bbox): dw, dh clamped to |log(16 / 1000)| = 4.135
DEFAULT_WH_RATIO_CLIP = 16 / 1000
# official (mmdet 2.x bbox_overlaps): the union is clamped at this eps
IOU_EPS = 1e-6


def box_area(boxes: torch.Tensor, *, pixel_offset: float = 0.0) -> torch.Tensor:
    """Areas of (..., 4) xyxy boxes: (x2 - x1 + offset) * (y2 - y1 + offset) -> (...)."""
    return (boxes[..., 2] - boxes[..., 0] + pixel_offset) * (boxes[..., 3] - boxes[..., 1] + pixel_offset)


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, *, pixel_offset: float = 0.0,
            eps: float | None = IOU_EPS) -> torch.Tensor:
    """Pairwise IoU as mmdet ``bbox_overlaps(mode='iou')``.

    mmdet 2.x: no +1, the union clamped at ``eps`` (1e-6). mmdet 0.5 (``pixel_offset=1``,
    ``eps=None``): +1 widths, the intersection width ``(min x2 - max x1 + 1).clamp(0)``, no clamp.

    Args:
        boxes1: (N, 4) xyxy; boxes2: (M, 4) xyxy (extra columns, e.g. scores, are ignored).
        pixel_offset: 0 (mmdet 2.x) or 1 (mmdet 0.5).
        eps: lower clamp of the union, or None for no clamp.

    Returns:
        (N, M) IoU in the boxes' dtype; (N, 0) / (0, M) for empty inputs.
    """
    boxes1, boxes2 = boxes1[:, :4], boxes2[:, :4]
    area1 = box_area(boxes1, pixel_offset=pixel_offset)
    area2 = box_area(boxes2, pixel_offset=pixel_offset)
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2)
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])  # (N, M, 2)
    wh = (rb - lt + pixel_offset).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - overlap
    if eps is not None:
        union = union.clamp(min=eps)
    return overlap / union


def clip_boxes(boxes: torch.Tensor, image_hw: tuple[int, int], *, pixel_offset: float = 0.0) -> torch.Tensor:
    """Clip (..., 4) xyxy boxes to [0, W - offset] x [0, H - offset] (mmdet 2.x: W; 0.5: W - 1)."""
    height, width = image_hw
    x = boxes[..., 0::2].clamp(min=0, max=width - pixel_offset)
    y = boxes[..., 1::2].clamp(min=0, max=height - pixel_offset)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


@dataclass(frozen=True)
class DeltaXYWHBoxCoder:
    """mmdet ``DeltaXYWHBBoxCoder`` (2.x) / ``bbox2delta``-``delta2bbox`` (0.5).

    Args:
        means, stds: per-coordinate normalisation of the deltas (RPN: 0 / 1; R-CNN: 0 /
            (0.1, 0.1, 0.2, 0.2), official configs).
        pixel_offset: 0 (mmdet 2.x) or 1 (mmdet 0.5: widths +1, decoded corners at
            ``ctr -/+ 0.5 * w +/- 0.5``, clipped to ``W - 1``).
        wh_ratio_clip: dw, dh are clamped to ``|log(wh_ratio_clip)|``.
    """

    means: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    stds: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    pixel_offset: float = 0.0
    wh_ratio_clip: float = DEFAULT_WH_RATIO_CLIP

    def encode(self, proposals: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Deltas that map `proposals` (N, 4) onto `targets` (N, 4) -> (N, 4) normalised deltas."""
        proposals, targets = proposals[:, :4].float(), targets[:, :4].float()
        px = (proposals[:, 0] + proposals[:, 2]) * 0.5
        py = (proposals[:, 1] + proposals[:, 3]) * 0.5
        pw = proposals[:, 2] - proposals[:, 0] + self.pixel_offset
        ph = proposals[:, 3] - proposals[:, 1] + self.pixel_offset
        gx = (targets[:, 0] + targets[:, 2]) * 0.5
        gy = (targets[:, 1] + targets[:, 3]) * 0.5
        gw = targets[:, 2] - targets[:, 0] + self.pixel_offset
        gh = targets[:, 3] - targets[:, 1] + self.pixel_offset
        deltas = torch.stack(((gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)), dim=-1)
        return (deltas - deltas.new_tensor(self.means)) / deltas.new_tensor(self.stds)

    def decode(self, rois: torch.Tensor, deltas: torch.Tensor,
               max_shape: tuple[int, int] | None = None) -> torch.Tensor:
        """Apply deltas to boxes.

        Args:
            rois: (N, 4) xyxy reference boxes (anchors or proposals).
            deltas: (N, 4k) normalised deltas (k = 1, or one set per class).
            max_shape: (H, W) of the unpadded input image to clip to, or None.

        Returns:
            (N, 4k) decoded xyxy boxes.
        """
        num, width = deltas.shape
        deltas = deltas.view(num, width // 4, 4)
        deltas = deltas * deltas.new_tensor(self.stds) + deltas.new_tensor(self.means)
        max_ratio = abs(math.log(self.wh_ratio_clip))
        dx, dy = deltas[..., 0], deltas[..., 1]
        dw, dh = deltas[..., 2].clamp(-max_ratio, max_ratio), deltas[..., 3].clamp(-max_ratio, max_ratio)
        rois = rois[:, :4].to(deltas)
        px = ((rois[:, 0] + rois[:, 2]) * 0.5)[:, None]
        py = ((rois[:, 1] + rois[:, 3]) * 0.5)[:, None]
        pw = (rois[:, 2] - rois[:, 0] + self.pixel_offset)[:, None]
        ph = (rois[:, 3] - rois[:, 1] + self.pixel_offset)[:, None]
        gw, gh = pw * dw.exp(), ph * dh.exp()
        gx, gy = px + pw * dx, py + ph * dy
        half = 0.5 * self.pixel_offset  # official 0.5: x1 = gx - 0.5 gw + 0.5, x2 = gx + 0.5 gw - 0.5
        boxes = torch.stack((gx - gw * 0.5 + half, gy - gh * 0.5 + half,
                             gx + gw * 0.5 - half, gy + gh * 0.5 - half), dim=-1)
        if max_shape is not None:
            boxes = clip_boxes(boxes, max_shape, pixel_offset=self.pixel_offset)
        return boxes.reshape(num, width)


def boxes_to_rois(boxes_per_image: list[torch.Tensor]) -> torch.Tensor:
    """mmdet ``bbox2roi``: [(n_i, >=4)] per image -> (sum n_i, 5) rows [image index, x1, y1, x2, y2]."""
    rois = []
    for index, boxes in enumerate(boxes_per_image):
        column = boxes.new_full((boxes.shape[0], 1), float(index))
        rois.append(torch.cat((column, boxes[:, :4]), dim=1))
    if not rois:
        return torch.zeros((0, 5))
    return torch.cat(rois, dim=0)
