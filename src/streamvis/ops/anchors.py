"""Anchor generator of the two-stage core (mmdet ``AnchorGenerator`` / ``LegacyAnchorGenerator``).

For each level with stride s (base size = s), one base anchor per ratio r (ratio-major, then
scale): ``h_ratio = sqrt(r)``, ``w_ratio = 1 / h_ratio``, ``w = s * w_ratio * scale``,
``h = s * h_ratio * scale``.
- mmdet 2.x (``legacy=False``): centre (0, 0), corners ``ctr -/+ 0.5 * w`` (stride 4, ratio 1,
  scale 8 gives [-16, -16, 16, 16]).
- mmdet 0.5 (``legacy=True``): centre ``((s - 1) / 2, (s - 1) / 2)``, corners ``ctr -/+ 0.5 * (w - 1)``,
  then rounded (stride 4, ratio 0.5 gives [-21, -9, 24, 12]; masktrack facts.md section 7.2).
The grid adds ``(x * s, y * s)``; locations are row-major with the anchors of one location
consecutive, which matches the RPN head's (H, W, A) output order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# official (PCAN / MaskTrack R-CNN RPN configs): scale 8, ratios 0.5/1/2, strides 4..64 (P2..P6)
DEFAULT_STRIDES = (4, 8, 16, 32, 64)
DEFAULT_RATIOS = (0.5, 1.0, 2.0)
DEFAULT_SCALES = (8.0,)


@dataclass(frozen=True)
class AnchorGenerator:
    """Anchors per pyramid level.

    Args:
        strides: stride (= base size) of each level.
        ratios: height / width ratios, in the order anchors are laid out at a location.
        scales: anchor sizes in units of the stride.
        legacy: mmdet 0.5 centred-and-rounded base anchors (see the module docstring).
    """

    strides: tuple[int, ...] = DEFAULT_STRIDES
    ratios: tuple[float, ...] = DEFAULT_RATIOS
    scales: tuple[float, ...] = DEFAULT_SCALES
    legacy: bool = False

    @property
    def num_anchors_per_location(self) -> int:
        return len(self.ratios) * len(self.scales)

    def base_anchors(self, stride: int) -> torch.Tensor:
        """The A = len(ratios) * len(scales) anchors of one location at the origin -> (A, 4) float32."""
        ratios = torch.tensor(self.ratios, dtype=torch.float32)
        scales = torch.tensor(self.scales, dtype=torch.float32)
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        ws = (stride * w_ratios[:, None] * scales[None, :]).reshape(-1)  # ratio-major (official scale_major)
        hs = (stride * h_ratios[:, None] * scales[None, :]).reshape(-1)
        if self.legacy:
            center = 0.5 * (stride - 1)
            anchors = torch.stack((center - 0.5 * (ws - 1), center - 0.5 * (hs - 1),
                                   center + 0.5 * (ws - 1), center + 0.5 * (hs - 1)), dim=-1)
            return anchors.round()
        return torch.stack((-0.5 * ws, -0.5 * hs, 0.5 * ws, 0.5 * hs), dim=-1)

    def grid_anchors(self, feature_sizes: list[tuple[int, int]], device=None) -> list[torch.Tensor]:
        """Anchors of every level.

        Args:
            feature_sizes: (H_l, W_l) per level, in `strides` order.

        Returns:
            per level (H_l * W_l * A, 4) float32, index (y * W_l + x) * A + a.
        """
        if len(feature_sizes) != len(self.strides):
            raise ValueError(f"got {len(feature_sizes)} feature sizes for {len(self.strides)} anchor strides")
        anchors = []
        for (height, width), stride in zip(feature_sizes, self.strides):
            base = self.base_anchors(stride).to(device)
            shift_x = torch.arange(width, device=device, dtype=torch.float32) * stride
            shift_y = torch.arange(height, device=device, dtype=torch.float32) * stride
            yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")
            shifts = torch.stack((xx.reshape(-1), yy.reshape(-1), xx.reshape(-1), yy.reshape(-1)), dim=1)
            anchors.append((shifts[:, None, :] + base[None]).reshape(-1, 4))
        return anchors

    def valid_flags(self, feature_sizes: list[tuple[int, int]], pad_hw: tuple[int, int],
                    device=None) -> list[torch.Tensor]:
        """mmdet ``valid_flags``: anchors at locations inside ceil(pad / stride) -> per level (H*W*A,)."""
        flags = []
        for (height, width), stride in zip(feature_sizes, self.strides):
            valid_h = min(int(math.ceil(pad_hw[0] / stride)), height)
            valid_w = min(int(math.ceil(pad_hw[1] / stride)), width)
            valid_y = torch.arange(height, device=device) < valid_h
            valid_x = torch.arange(width, device=device) < valid_w
            valid = (valid_y[:, None] & valid_x[None, :]).reshape(-1)
            flags.append(valid[:, None].expand(-1, self.num_anchors_per_location).reshape(-1))
        return flags


def anchor_inside_flags(anchors: torch.Tensor, valid_flags: torch.Tensor, image_hw: tuple[int, int],
                        allowed_border: float) -> torch.Tensor:
    """mmdet ``anchor_inside_flags``: valid anchors that lie inside the image up to `allowed_border`
    pixels (a negative border keeps every valid anchor: mmdet 2.x RPN ``allowed_border=-1``; the
    mmdet 0.5 RPN uses 0).

    Args:
        anchors: (K, 4); valid_flags: (K,) bool; image_hw: unpadded (H, W).

    Returns:
        (K,) bool.
    """
    if allowed_border < 0:
        return valid_flags
    height, width = image_hw
    return (valid_flags & (anchors[:, 0] >= -allowed_border) & (anchors[:, 1] >= -allowed_border)
            & (anchors[:, 2] < width + allowed_border) & (anchors[:, 3] < height + allowed_border))
