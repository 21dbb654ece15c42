"""Image geometry and normalization shared by training and inference.

The model never resizes or normalizes by itself: callers use these functions (STYLE.md).
Frames are BGR uint8, as the official CrossVIS expects (reference facts.md, section 1).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

# official: detectron2 MODEL.PIXEL_MEAN for MSRA ResNets, BGR order, std 1 (no /255)
PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)
PIXEL_STD_BGR = (1.0, 1.0, 1.0)


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


def normalize_and_pad(
    images: list[torch.Tensor],
    pixel_mean=PIXEL_MEAN_BGR,
    pixel_std=PIXEL_STD_BGR,
    size_divisibility: int = 32,
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Normalize BGR images and pad them into one batch tensor.

    Args:
        images: each (3, H_i, W_i), uint8 or float, values 0..255, BGR.
        pixel_mean, pixel_std: per-channel (B, G, R) statistics.
        size_divisibility: the padded height and width are multiples of this.

    Returns:
        batch: (N, 3, Hp, Wp) float32; padding is 0 **after** normalization (official ImageList).
        image_sizes: the (H_i, W_i) of each image before padding.
    """
    if not images:
        raise ValueError("normalize_and_pad needs at least one image")
    device = images[0].device
    mean = torch.as_tensor(pixel_mean, dtype=torch.float32, device=device).view(3, 1, 1)
    std = torch.as_tensor(pixel_std, dtype=torch.float32, device=device).view(3, 1, 1)
    image_sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    max_h = max(h for h, _ in image_sizes)
    max_w = max(w for _, w in image_sizes)
    if size_divisibility > 1:
        max_h = int(math.ceil(max_h / size_divisibility) * size_divisibility)
        max_w = int(math.ceil(max_w / size_divisibility) * size_divisibility)
    batch = torch.zeros((len(images), 3, max_h, max_w), dtype=torch.float32, device=device)
    for i, im in enumerate(images):
        if im.dim() != 3 or im.shape[0] != 3:
            raise ValueError(f"image {i} has shape {tuple(im.shape)}; expected (3, H, W)")
        h, w = image_sizes[i]
        batch[i, :, :h, :w] = (im.to(torch.float32) - mean) / std
    return batch, image_sizes
