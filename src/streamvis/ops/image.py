"""The model's input contract: BGR uint8 frames, normalized by per-channel statistics, zero-padded.

Every method's model takes a list of already-resized frames, each a (3, h, w) uint8 BGR tensor
with values 0..255 (resizing: `streamvis.data.transforms`), and turns them into one padded
float batch with `normalize_and_pad` below. The statistics are part of each method's config
(``pixel_mean``, ``pixel_std``); these are the defaults of the official CrossVIS models.
Both `streamvis.models` and `streamvis.data` import this module, so neither imports the other.
"""

from __future__ import annotations

import math

import torch

# official: detectron2 MODEL.PIXEL_MEAN for MSRA ResNets, BGR order, std 1 (no /255)
PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)
PIXEL_STD_BGR = (1.0, 1.0, 1.0)


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
