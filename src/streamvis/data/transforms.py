"""Image geometry shared by training and inference: resizing, flipping, box and mask transforms.

The model never resizes by itself: callers use these functions (STYLE.md). Frames are BGR uint8,
as the official CrossVIS expects (reference facts.md, section 1). Normalization and padding, the
model's side of the input contract, live in `streamvis.ops.image` (used by models and data alike).
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def shortest_edge_size(height: int, width: int, short_side: int, max_size: int) -> tuple[int, int]:
    """Output (height, width) of detectron2's ResizeShortestEdge for one image.

    The short side becomes `short_side`; if the long side then exceeds `max_size`, both sides
    are scaled down so that it equals `max_size`. Each side is rounded as int(v + 0.5).
    """
    scale = short_side * 1.0 / min(height, width)
    new_h, new_w = height * scale, width * scale
    if max(new_h, new_w) > max_size:
        rescale = max_size * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * rescale, new_w * rescale
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to `size` = (height, width) with PIL bilinear, as official."""
    if image.shape[:2] == tuple(size):
        return image
    resized = Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(resized)


def resize_masks(masks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (N, H, W) bool/uint8 masks to `size` with nearest neighbour (PIL NEAREST, as detectron2)."""
    if masks.shape[1:] == tuple(size):
        return masks.astype(bool, copy=False)
    out = np.zeros((masks.shape[0], size[0], size[1]), dtype=bool)
    for i, m in enumerate(masks):
        out[i] = np.asarray(Image.fromarray(m.astype(np.uint8)).resize((size[1], size[0]), Image.NEAREST)) > 0
    return out


def resize_boxes(boxes: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Scale (N, 4) xyxy boxes from an image of `from_size` to one of `to_size`, both (height, width).

    Each coordinate is multiplied by the ratio of the sides, as detectron2's ResizeTransform does.
    """
    scale_x = to_size[1] / from_size[1]
    scale_y = to_size[0] / from_size[0]
    scale = np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float32)
    return (np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * scale).astype(np.float32)


def hflip_image(image: np.ndarray) -> np.ndarray:
    """Mirror an (H, W, C) image left-right (a contiguous copy)."""
    return np.ascontiguousarray(image[:, ::-1])


def hflip_masks(masks: np.ndarray) -> np.ndarray:
    """Mirror (N, H, W) masks left-right (a contiguous copy)."""
    return np.ascontiguousarray(masks[:, :, ::-1])


def hflip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Mirror (N, 4) xyxy boxes in an image `width` pixels wide: x1' = W - x2, x2' = W - x1."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1)


def clip_boxes(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Clip (N, 4) xyxy boxes to an image of `size` = (height, width), as detectron2's Boxes.clip."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, size[1])
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, size[0])
    return boxes


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight xyxy boxes of (N, H, W) masks: x2 = max column + 1, y2 = max row + 1; empty -> zeros.

    Returns:
        (N, 4) float32.
    """
    boxes = np.zeros((masks.shape[0], 4), dtype=np.float32)
    for i, mask in enumerate(masks):
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if rows.size:
            boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def augment_frame(
    image: np.ndarray, masks: np.ndarray, boxes: np.ndarray, *, short_side: int, max_size: int, flip: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resize (shortest edge, PIL bilinear / nearest) then optionally mirror one training frame.

    Give both frames of a pair the same `short_side` and `flip` to augment them identically.
    No padding: the model pads to a multiple of 32 in `normalize_and_pad`.

    Args:
        image: (H, W, 3) uint8.
        masks: (N, H, W) bool or uint8.
        boxes: (N, 4) xyxy in pixels of `image`.
        short_side, max_size: ResizeShortestEdge parameters (see `shortest_edge_size`).
        flip: mirror left-right after resizing.

    Returns:
        image (H', W', 3) uint8, masks (N, H', W') bool, boxes (N, 4) float32 xyxy clipped to the image.
    """
    size = shortest_edge_size(image.shape[0], image.shape[1], short_side, max_size)
    boxes = resize_boxes(boxes, image.shape[:2], size)
    image, masks = resize_image(image, size), resize_masks(masks, size)
    if flip:
        image, masks, boxes = hflip_image(image), hflip_masks(masks), hflip_boxes(boxes, size[1])
    return image, masks, clip_boxes(boxes, size)
