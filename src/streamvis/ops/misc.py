"""Small tensor ops shared by the model: CondInst's aligned upsampling and FCOS location grids."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def aligned_bilinear(tensor: torch.Tensor, factor: int) -> torch.Tensor:
    """Upsample by an integer factor so that pixel centres stay aligned (official CondInst op).

    Replicate-pad one pixel right/bottom, bilinear-interpolate with align_corners=True to
    (f*h+1, f*w+1), replicate-pad f//2 left/top, then crop the first f*h rows and f*w columns
    (reference facts.md, section 6).

    Args:
        tensor: (N, C, h, w) float.
        factor: integer >= 1.

    Returns:
        (N, C, factor*h, factor*w).
    """
    if tensor.dim() != 4:
        raise ValueError(f"aligned_bilinear expects a 4-d tensor, got shape {tuple(tensor.shape)}")
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"aligned_bilinear factor must be a positive integer, got {factor}")
    factor = int(factor)
    if factor == 1:
        return tensor
    h, w = tensor.shape[-2:]
    tensor = F.pad(tensor, pad=(0, 1, 0, 1), mode="replicate")
    out_h, out_w = factor * h + 1, factor * w + 1
    tensor = F.interpolate(tensor, size=(out_h, out_w), mode="bilinear", align_corners=True)
    tensor = F.pad(tensor, pad=(factor // 2, 0, factor // 2, 0), mode="replicate")
    return tensor[:, :, : out_h - 1, : out_w - 1]


def compute_locations(height: int, width: int, stride: int, device=None) -> torch.Tensor:
    """Image-pixel (x, y) of each cell of a feature map, row-major (y slow, x fast).

    official FCOS: x = j*stride + stride//2, y = i*stride + stride//2.

    Returns:
        (height*width, 2) float32.
    """
    shifts_x = torch.arange(0, width * stride, step=stride, dtype=torch.float32, device=device)
    shifts_y = torch.arange(0, height * stride, step=stride, dtype=torch.float32, device=device)
    shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
    return torch.stack((shift_x.reshape(-1), shift_y.reshape(-1)), dim=1) + stride // 2
