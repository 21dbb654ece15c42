"""Element losses of CrossVIS training: sigmoid focal, FCOS IoU/GIoU, centerness, dice.

Each function follows the official implementation's arithmetic (AdelaiDet / fvcore as used by
hustvl/CrossVIS, reference facts.md section 9 and golden_losses.md), so that the sums match the
official values to float32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# official: MODEL.FCOS.LOSS_ALPHA / LOSS_GAMMA and the re-ID focal loss (alpha 0.25, gamma 2)
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
# official: dice_coefficient in CondInst's dynamic_mask_head.py
DICE_EPS = 1e-5


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = FOCAL_ALPHA,
    gamma: float = FOCAL_GAMMA,
    reduction: str = "sum",
) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017), the fvcore formula used by the official code.

    Args:
        logits: (..., C) raw scores.
        targets: (..., C) float targets in [0, 1] (one-hot for classification).
        alpha: weight of the positive class; a negative value disables the alpha weighting.
        gamma: focusing exponent.
        reduction: "none", "sum" or "mean".

    Returns:
        The loss, shaped like `logits` for "none", else a scalar.
    """
    prob = torch.sigmoid(logits)
    ce_loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return _reduce(loss, reduction)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"unknown reduction {reduction!r}; expected 'none', 'sum' or 'mean'")


def ltrb_iou_giou(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and GIoU of boxes given as (l, t, r, b) distances from the same location.

    The official FCOS form: IoU is smoothed as (I + 1) / (U + 1), which is why the official code
    computes it in units of the level stride (the +1 is then 1 stride^2, not 1 pixel^2).

    Args:
        pred: (P, 4) predicted l, t, r, b (>= 0).
        target: (P, 4) target l, t, r, b.

    Returns:
        ious: (P,) (I + 1) / (U + 1).
        gious: (P,) ious - (C - U) / C, with C the area of the enclosing box.
    """
    pl, pt, pr, pb = pred.unbind(dim=1)
    tl, tt, tr, tb = target.unbind(dim=1)
    target_area = (tl + tr) * (tt + tb)
    pred_area = (pl + pr) * (pt + pb)
    w_inter = torch.min(pl, tl) + torch.min(pr, tr)
    h_inter = torch.min(pb, tb) + torch.min(pt, tt)
    w_enclose = torch.max(pl, tl) + torch.max(pr, tr)
    h_enclose = torch.max(pb, tb) + torch.max(pt, tt)
    enclose_area = w_enclose * h_enclose
    inter_area = w_inter * h_inter
    union_area = target_area + pred_area - inter_area
    ious = (inter_area + 1.0) / (union_area + 1.0)  # official: +1 smoothing
    gious = ious - (enclose_area - union_area) / enclose_area
    return ious, gious


def iou_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    loss_type: str = "giou",
) -> torch.Tensor:
    """Summed FCOS box loss over positives (official IOULoss).

    Args:
        pred: (P, 4) predicted l, t, r, b.
        target: (P, 4) target l, t, r, b.
        weight: optional (P,) per-box weight (CrossVIS uses the centerness target).
        loss_type: "giou" (1 - GIoU, official CrossVIS), "iou" (-log IoU) or "linear_iou" (1 - IoU).

    Returns:
        Scalar: sum over boxes of weight * loss (0 for P = 0).
    """
    ious, gious = ltrb_iou_giou(pred, target)
    if loss_type == "giou":
        losses = 1 - gious
    elif loss_type == "iou":
        losses = -torch.log(ious)
    elif loss_type == "linear_iou":
        losses = 1 - ious
    else:
        raise ValueError(f"unknown IoU loss type {loss_type!r}; expected 'giou', 'iou' or 'linear_iou'")
    if weight is not None:
        losses = losses * weight
    return losses.sum()


def centerness_targets(reg_targets: torch.Tensor) -> torch.Tensor:
    """FCOS centerness sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b)).

    Args:
        reg_targets: (P, 4) l, t, r, b of positive locations (any common unit).

    Returns:
        (P,) centerness in [0, 1].
    """
    if len(reg_targets) == 0:
        return reg_targets.new_zeros(0)
    left_right = reg_targets[:, [0, 2]]
    top_bottom = reg_targets[:, [1, 3]]
    ratio = (left_right.min(dim=-1).values / left_right.max(dim=-1).values) * (
        top_bottom.min(dim=-1).values / top_bottom.max(dim=-1).values
    )
    return torch.sqrt(ratio)


def centerness_loss(ctrness_logits: torch.Tensor, ctrness_targets: torch.Tensor) -> torch.Tensor:
    """Summed binary cross-entropy with logits between predicted and target centerness.

    Args:
        ctrness_logits: (P,) raw centerness predictions.
        ctrness_targets: (P,) targets in [0, 1].

    Returns:
        Scalar sum (0 for P = 0).
    """
    return F.binary_cross_entropy_with_logits(ctrness_logits, ctrness_targets, reduction="sum")


def dice_loss(scores: torch.Tensor, targets: torch.Tensor, eps: float = DICE_EPS) -> torch.Tensor:
    """Per-instance dice loss 1 - 2*sum(x*t) / (sum(x^2) + sum(t^2) + eps) (official CondInst).

    Args:
        scores: (K, ...) mask probabilities.
        targets: (K, ...) binary (or soft) targets of the same shape.
        eps: added to the denominator.

    Returns:
        (K,) loss per instance.
    """
    n = scores.shape[0]
    scores = scores.reshape(n, -1)
    targets = targets.reshape(n, -1)
    intersection = (scores * targets).sum(dim=1)
    union = (scores**2.0).sum(dim=1) + (targets**2.0).sum(dim=1) + eps
    return 1.0 - (2 * intersection / union)
