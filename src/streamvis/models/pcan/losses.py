"""PCAN's training losses: the two QDTrack association losses and the refine head's pairing and loss.

Official sources (reference/pcan/facts.md 3.3 and 4.2): ``QuasiDenseEmbedHead.match`` /
``.get_track_targets`` / ``.loss``, ``MultiPosCrossEntropyLoss`` and ``L2Loss``
(``pcan/models/losses``), ``EMMatchHeadPlus.match`` and its ``loss_mask``.

Per image, the **key** side is the positive sampled RoIs of the key frame and the **reference** side
is all sampled RoIs of the reference frame, positives first (mmdet ``SamplingResult.bboxes`` order).

- targets[i, j] = 1 iff gt_match_indices[key_assigned_gt[i]] == ref_assigned_gt[j] (reference
  positives only; reference negatives are always 0); weights[i] = 1 iff row i has a positive.
- ``loss_track`` (x 0.25): per row ``log(1 + sum_pos exp(-d) * sum_neg exp(min(d, 80)))`` on the raw dot
  products d, averaged with the row weights (sum w l / sum w, no eps), then the mean over images.
- ``loss_track_aux`` (x 1.0): on the cosine matrix, ``p = clamp(cos - 0.3 [negatives], 0, 1)``,
  cost ``(p - target)^2``; if negatives outnumber 3 x positives, only the 3 x num_pos costliest
  negatives are kept; the mean over kept entries, then the mean over images.

Official oddity with an opt-in fix: an image without any positive pair divides by zero (Python
``ZeroDivisionError`` in L2Loss, 0/0 = NaN in the cross-entropy). By default we raise a clear
error instead; ``skip_images_without_positives=True`` gives such an image 0 in both losses.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from streamvis.errors import StreamvisError

TRACK_LOSS_WEIGHT = 0.25  # official config: MultiPosCrossEntropyLoss loss_weight=0.25
AUX_LOSS_WEIGHT = 1.0  # official config: L2Loss loss_weight=1.0
EXP_CLAMP = 80.0  # official multi_pos_cross_entropy: exp(pred.clamp(max=80)) on negatives only
AUX_NEG_MARGIN = 0.3  # official config: L2Loss neg_margin=0.3 (pos_margin=0)
AUX_NEG_POS_UB = 3  # official config: L2Loss neg_pos_ub=3, hard_mining=True
REFINE_MATCH_THRESHOLD = 0.5  # official config: EMMatchHeadPlus match_score_thr=0.5


class ImagePairs(NamedTuple):
    """One image's sampled RoIs for the association losses.

    Attributes:
        key_embeds: (P, D) embeddings of the key frame's positive RoIs.
        ref_embeds: (Q, D) embeddings of all sampled reference RoIs, positives first.
        key_assigned_gt: (P,) int64 key GT index of each key positive.
        ref_assigned_gt: (Q_pos,) int64 reference GT index of each reference positive (Q_pos <= Q).
        gt_match_indices: (G_key,) int64 key GT -> reference GT with the same instance, or -1.
    """

    key_embeds: Tensor
    ref_embeds: Tensor
    key_assigned_gt: Tensor
    ref_assigned_gt: Tensor
    gt_match_indices: Tensor


def embedding_similarities(key_embeds: Tensor, ref_embeds: Tensor) -> tuple[Tensor, Tensor]:
    """(dot products, cosine similarities), each (P, Q) (official ``cal_similarity``, temperature -1).

    The cosine uses ``F.normalize`` (norm clamped at 1e-12), as official.
    """
    dists = key_embeds @ ref_embeds.t()
    cos = F.normalize(key_embeds, p=2, dim=1) @ F.normalize(ref_embeds, p=2, dim=1).t()
    return dists, cos


def track_targets(pairs: ImagePairs) -> tuple[Tensor, Tensor]:
    """(targets (P, Q) int32, weights (P,) float32) of one image (official ``get_track_targets``)."""
    num_key, num_ref = pairs.key_embeds.shape[0], pairs.ref_embeds.shape[0]
    num_ref_pos = pairs.ref_assigned_gt.shape[0]
    if num_ref_pos > num_ref:
        raise StreamvisError(
            f"association targets: {num_ref_pos} reference positives but only {num_ref} reference embeddings"
        )
    targets = torch.zeros((num_key, num_ref), dtype=torch.int32, device=pairs.key_embeds.device)
    match = pairs.gt_match_indices[pairs.key_assigned_gt]  # (P,) reference GT of each key RoI, or -1
    targets[:, :num_ref_pos] = (match[:, None] == pairs.ref_assigned_gt[None, :]).int()
    weights = (targets.sum(dim=1) > 0).float()
    return targets, weights


def multi_pos_cross_entropy(dists: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    """Unweighted MultiPosCrossEntropy of one image: sum_i w_i l_i / sum_i w_i (official old exp form).

    Args:
        dists: (P, Q) raw dot products.
        targets: (P, Q) 1 = positive pair, 0 = negative.
        weights: (P,) row weights.
    """
    positive = (targets == 1).to(dists.dtype)
    negative = (targets == 0).to(dists.dtype)
    exp_pos = (torch.exp(-dists) * positive).sum(dim=1)
    exp_neg = (torch.exp(dists.clamp(max=EXP_CLAMP)) * negative).sum(dim=1)
    per_row = torch.log(1 + exp_pos * exp_neg)
    return (per_row * weights).sum() / weights.sum()  # mmdet 2.10 weight_reduce_loss: no eps


def l2_aux_loss(cos: Tensor, targets: Tensor) -> Tensor:
    """Unweighted L2 auxiliary loss of one image with hard negative mining (official ``L2Loss``).

    Args:
        cos: (P, Q) cosine similarities.
        targets: (P, Q) 1 = positive pair, 0 = negative.
    """
    positive, negative = targets == 1, targets == 0
    pred = torch.where(negative, cos - AUX_NEG_MARGIN, cos).clamp(0, 1)
    cost = (pred - targets.to(cos.dtype)) ** 2  # (P, Q)
    num_pos, num_neg = int(positive.sum()), int(negative.sum())
    keep = positive.clone()
    neg_costs = cost[negative]
    if num_neg / num_pos > AUX_NEG_POS_UB:
        # official: costs.topk(num_pos * 3) over the negatives in row-major order
        chosen = neg_costs.detach().topk(num_pos * AUX_NEG_POS_UB).indices
        neg_keep = torch.zeros_like(neg_costs, dtype=torch.bool)
        neg_keep[chosen] = True
        keep[negative] = neg_keep
    else:
        keep |= negative
    return cost[keep].sum() / keep.sum()


def track_losses(
    images: list[ImagePairs], *, skip_images_without_positives: bool = False
) -> dict[str, Tensor]:
    """``loss_track`` and ``loss_track_aux``, weighted and averaged over images as official.

    Args:
        images: one `ImagePairs` per image of the batch.
        skip_images_without_positives: opt-in fix (off = official): an image without any positive
            pair contributes 0 instead of dividing by zero (which the official code does).

    Returns:
        ``{"loss_track": scalar, "loss_track_aux": scalar}``.

    Raises:
        StreamvisError: an image has no positive pair and the fix is off.
    """
    if not images:
        raise StreamvisError("association losses need at least one image")
    track, aux = [], []
    for index, pairs in enumerate(images):
        targets, weights = track_targets(pairs)
        dists, cos = embedding_similarities(pairs.key_embeds, pairs.ref_embeds)
        if not bool((targets == 1).any()):
            if not skip_images_without_positives:
                raise StreamvisError(
                    f"association losses: image {index} has no positive key/reference pair, where the "
                    "official L2Loss divides by zero; pass skip_images_without_positives=True to count "
                    "such images as 0"
                )
            zero = dists.sum() * 0
            track.append(zero)
            aux.append(zero)
            continue
        track.append(TRACK_LOSS_WEIGHT * multi_pos_cross_entropy(dists, targets, weights))
        aux.append(AUX_LOSS_WEIGHT * l2_aux_loss(cos, targets))
    return {"loss_track": torch.stack(track).mean(), "loss_track_aux": torch.stack(aux).mean()}


def refine_pairs(key_embeds: Tensor, ref_embeds: Tensor, key_pids: Tensor, ref_pids: Tensor,
                 *, score_threshold: float = REFINE_MATCH_THRESHOLD) -> tuple[Tensor, Tensor]:
    """Pair key positive RoIs with reference positives of the same instance (``EMMatchHeadPlus.match``).

    The score is the cosine of the embeddings where the instance ids agree, 0 elsewhere; each key
    RoI takes its best reference (first on ties) and is valid when that score is > 0.5.

    Args:
        key_embeds: (P, D) key positive embeddings.
        ref_embeds: (Q, D) reference **positive** embeddings.
        key_pids: (P,) instance id of each key RoI (gt_match_indices[assigned gt]; -1 = no match).
        ref_pids: (Q,) instance id of each reference RoI (its assigned reference GT).

    Returns:
        (valid (P,) bool, ref_index (V,) int64 index into the reference positives of each valid key RoI).
    """
    if ref_embeds.shape[0] == 0 or key_embeds.shape[0] == 0:
        # official torch.max over an empty dim raises; no reference means no valid pair
        return (torch.zeros(key_embeds.shape[0], dtype=torch.bool, device=key_embeds.device),
                torch.zeros(0, dtype=torch.int64, device=key_embeds.device))
    _, cos = embedding_similarities(key_embeds, ref_embeds)
    scores = torch.where(key_pids[:, None] == ref_pids[None, :], cos, torch.zeros_like(cos))
    conf, ref_index = scores.max(dim=1)
    valid = conf > score_threshold
    return valid, ref_index[valid]


def refine_loss(refine_logits: Tensor, mask_targets: Tensor) -> Tensor:
    """``loss_refine``: mean binary cross-entropy with logits over all R x 28 x 28 elements (weight 1.0).

    Args:
        refine_logits: (R, 1, 28, 28) or (R, 28, 28) refine-head logits.
        mask_targets: (R, 28, 28) binary targets of the key RoIs.
    """
    logits = refine_logits.squeeze(1) if refine_logits.dim() == 4 else refine_logits
    return F.binary_cross_entropy_with_logits(logits, mask_targets.to(logits.dtype), reduction="mean")
