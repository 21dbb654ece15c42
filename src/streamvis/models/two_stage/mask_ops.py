"""Mask targets and mask pasting of the two-stage core, vectorized over instances.

Both use bilinear sampling, which is separable: the value at image pixel (y, x) is
``sum_ij A_y[y, i] * P[i, j] * A_x[x, j]``, so a batch of masks is two batched matmuls with
per-instance interpolation matrices (no loop over instances; chunks bound the memory).

- mmdet 2.x targets (``mask_target`` -> ``BitmapMasks.crop_and_resize``): the proposal, clipped to
  the image, RoIAligned (aligned, adaptive sampling) on the ground-truth bitmap to 28 x 28, then ``>= 0.5``.
- mmdet 0.5 targets (masktrack facts.md section 5.2): the bitmap cropped at the proposal truncated
  to int (``w = x2 - x1 + 1``), bilinearly resized (cv2, half-pixel centres) to 28 x 28, rounded.
- mmdet 2.x paste (``_do_paste_mask`` with ``skip_empty=True``, the CPU path): ``grid_sample``
  (bilinear, zero padding, align_corners False) of the 28 x 28 probabilities into the box at
  sub-pixel coordinates, only inside [floor(x1) - 1, ceil(x2) + 1), then ``>= threshold``.
- mmdet 0.5 paste (masktrack facts.md section 7.8): box truncated to int, ``w = max(x2 - x1 + 1, 1)``,
  the probabilities resized bilinearly to (h, w) and written at [y1:y1+h, x1:x1+w], then ``> threshold``.
"""

from __future__ import annotations

import torch

from streamvis.ops.roi_align import roi_align

_PASTE_CHUNK = 32  # instances pasted at once (bounds memory at chunk * H * W floats)


def _linear_weights(coord: torch.Tensor, size: int, zero_outside: bool) -> torch.Tensor:
    """Interpolation matrix of sample coordinates `coord` (..., M) over `size` texels -> (..., M, size).

    zero_outside: grid_sample's zero padding (texels outside [0, size) contribute 0); otherwise the
    coordinate is clamped to [0, size - 1] (cv2 / torch ``interpolate`` border replication).
    """
    if not zero_outside:
        coord = coord.clamp(min=0, max=size - 1)
    low = coord.floor()
    frac = coord - low
    texels = torch.arange(size, dtype=coord.dtype, device=coord.device)
    weights = ((texels == low[..., None]) * (1 - frac)[..., None]
               + (texels == (low + 1)[..., None]) * frac[..., None])
    return weights


def paste_masks(probs: torch.Tensor, boxes: torch.Tensor, image_hw: tuple[int, int], *,
                threshold: float = 0.5, legacy: bool = False) -> torch.Tensor:
    """Paste per-instance mask probabilities into the image.

    Args:
        probs: (N, S, S) probabilities (sigmoid of the mask logits of each instance's class).
        boxes: (N, >=4) boxes in image pixels.
        image_hw: (H, W) of the output image.
        threshold: binarisation threshold (official 0.5); a negative value returns probabilities.
        legacy: mmdet 0.5 truncating paste (``> threshold``) instead of mmdet 2.x (``>= threshold``).

    Returns:
        (N, H, W) bool masks (float probabilities when threshold < 0).
    """
    height, width = image_hw
    chunks = []
    for start in range(0, probs.shape[0], _PASTE_CHUNK):
        part_probs = probs[start : start + _PASTE_CHUNK].float()
        part_boxes = boxes[start : start + _PASTE_CHUNK, :4].float()
        paste = _legacy_paste_weights if legacy else _grid_sample_weights
        rows = paste(part_boxes[:, 1], part_boxes[:, 3], height, probs.shape[1])  # (n, H, S)
        cols = paste(part_boxes[:, 0], part_boxes[:, 2], width, probs.shape[2])  # (n, W, S)
        chunks.append(rows @ part_probs @ cols.transpose(1, 2))  # (n, H, W)
    pasted = torch.cat(chunks) if chunks else probs.new_zeros((0, height, width))
    if threshold < 0:
        return pasted
    return pasted > threshold if legacy else pasted >= threshold


def _grid_sample_weights(low: torch.Tensor, high: torch.Tensor, length: int, size: int) -> torch.Tensor:
    """mmdet 2.x ``_do_paste_mask`` along one axis -> (n, length, size)."""
    pixel = torch.arange(length, dtype=torch.float32, device=low.device) + 0.5  # pixel centres
    normalized = (pixel[None, :] - low[:, None]) / (high - low)[:, None] * 2 - 1
    normalized = torch.where(torch.isinf(normalized), torch.zeros_like(normalized), normalized)  # official
    # 0 / 0 (a zero-size box with a pixel centre on its edge): sample nothing there rather than NaN
    normalized = torch.nan_to_num(normalized, nan=-2.0)
    texel = ((normalized + 1) * size - 1) / 2  # grid_sample, align_corners=False
    weights = _linear_weights(texel, size, zero_outside=True)
    # official skip_empty (CPU pastes one box at a time): only [floor(low) - 1, ceil(high) + 1) is written
    start = (low.floor() - 1).clamp(min=0)
    end = (high.ceil() + 1).clamp(max=length)
    inside = (pixel[None, :] - 0.5 >= start[:, None]) & (pixel[None, :] - 0.5 < end[:, None])
    return weights * inside[..., None]


def _legacy_paste_weights(low: torch.Tensor, high: torch.Tensor, length: int, size: int) -> torch.Tensor:
    """mmdet 0.5 paste along one axis: truncated box, cv2 bilinear resize to its size -> (n, length, size)."""
    first = low.to(torch.int32).to(torch.float32)  # numpy astype(int32): truncation
    extent = (high.to(torch.int32).to(torch.float32) - first + 1).clamp(min=1)
    pixel = torch.arange(length, dtype=torch.float32, device=low.device)
    source = (pixel[None, :] - first[:, None] + 0.5) * (size / extent[:, None]) - 0.5
    weights = _linear_weights(source.clamp(min=0), size, zero_outside=False)
    inside = (pixel[None, :] >= first[:, None]) & (pixel[None, :] < (first + extent)[:, None])
    return weights * inside[..., None]


def mask_targets(proposals: torch.Tensor, assigned_gt_inds: torch.Tensor, gt_masks: torch.Tensor,
                 mask_size: int = 28, *, legacy: bool = False) -> torch.Tensor:
    """Training targets of the mask head for the positive proposals of one image.

    Args:
        proposals: (P, >=4) positive boxes; assigned_gt_inds: (P,) their ground truths.
        gt_masks: (G, H, W) bool / uint8 ground-truth bitmaps (padded like the image).
        mask_size: official 28.
        legacy: mmdet 0.5 crop-and-resize (see the module docstring).

    Returns:
        (P, mask_size, mask_size) float 0/1.
    """
    num = proposals.shape[0]
    if num == 0 or gt_masks.shape[0] == 0:
        return proposals.new_zeros((0, mask_size, mask_size))
    masks = gt_masks[assigned_gt_inds].float()  # (P, H, W)
    height, width = masks.shape[-2:]
    boxes = proposals[:, :4].float()
    if legacy:
        rows = _crop_resize_weights(boxes[:, 1], boxes[:, 3], height, mask_size)  # (P, S, H)
        cols = _crop_resize_weights(boxes[:, 0], boxes[:, 2], width, mask_size)  # (P, S, W)
        resized = rows @ masks @ cols.transpose(1, 2)
        return (resized >= 0.5).float()  # official: cv2 uint8 resize rounds to 0 / 1
    boxes = torch.stack((boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
                         boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)), dim=1)
    rois = torch.cat((torch.arange(num, dtype=boxes.dtype, device=boxes.device)[:, None], boxes), dim=1)
    pooled = roi_align(masks[:, None], rois, mask_size, 1.0, sampling_ratio=0, aligned=True)
    return (pooled[:, 0] >= 0.5).float()


def _crop_resize_weights(low: torch.Tensor, high: torch.Tensor, length: int, size: int) -> torch.Tensor:
    """mmdet 0.5 target crop [int(low), int(low) + extent) (clipped by the image, as numpy slicing)
    resized to `size` with cv2 bilinear -> (P, size, length)."""
    first = low.to(torch.int32).clamp(min=0).to(torch.float32)
    extent = (high.to(torch.int32).to(torch.float32) - low.to(torch.int32).to(torch.float32) + 1).clamp(min=1)
    extent = torch.minimum(extent, length - first)  # numpy slicing stops at the image border
    out = torch.arange(size, dtype=torch.float32, device=low.device)
    source = (out[None, :] + 0.5) * (extent[:, None] / size) - 0.5  # crop-relative, cv2 half-pixel
    source = first[:, None] + torch.minimum(source.clamp(min=0), (extent - 1)[:, None])  # image pixels
    return _linear_weights(source, length, zero_outside=True)
