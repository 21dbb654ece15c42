"""Minimal stand-ins for the two-stage core (owned by the twostage engineer) used by the PCAN goldens.

`FCNMaskHead` mirrors mmdet's ``FCNMaskHead`` (official state_dict names) and `paste_mask` mirrors
mmdet 2.10's ``_do_paste_mask``. They exist only so the refine-head golden can be checked before
``models/two_stage`` lands; the tests switch to those modules once they exist.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class _Conv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv(x))


class FCNMaskHead(nn.Module):
    """4 x [conv3x3 + ReLU], ConvTranspose2d 2x2 s2 + ReLU, conv1x1 -> (R, num_classes, 28, 28) logits."""

    def __init__(self, channels: int = 256, num_classes: int = 8):
        super().__init__()
        self.convs = nn.ModuleList(_Conv(channels, channels) for _ in range(4))
        self.upsample = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.conv_logits = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = conv(x)
        return self.conv_logits(F.relu(self.upsample(x)))


def paste_mask(probs: Tensor, boxes: Tensor, height: int, width: int) -> Tensor:
    """Paste (N, 1, h, w) probabilities into (N, H, W) frames (``_do_paste_mask``, skip_empty=False).

    Pixel centres (i + 0.5) are mapped into each box's [-1, 1] range and sampled with
    ``grid_sample(align_corners=False)`` (zeros outside).
    """
    x0, y0, x1, y1 = boxes[:, :4].split(1, dim=1)  # (N, 1) each
    img_y = (torch.arange(height, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1  # (N, H)
    img_x = (torch.arange(width, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1  # (N, W)
    num = probs.shape[0]
    grid = torch.stack([img_x[:, None, :].expand(num, height, width),
                        img_y[:, :, None].expand(num, height, width)], dim=3)
    return F.grid_sample(probs.float(), grid, align_corners=False)[:, 0]
