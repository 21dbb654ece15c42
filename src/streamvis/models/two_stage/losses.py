"""Loss functions of the two-stage core (mmdet ``smooth_l1_loss``, weighted sums with an average factor)."""

from __future__ import annotations

import torch


def smooth_l1_loss(pred: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """Element-wise smooth L1: 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (mmdet, unreduced).

    Official beta: RPN 1/9, R-CNN 1.0. A beta of 0 is plain L1.
    """
    diff = (pred - target).abs()
    if beta <= 0:
        return diff
    return torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)
