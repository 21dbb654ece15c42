"""Training targets and loss of MaskTrack R-CNN's tracking head (facts.md s.2, official code).

One training sample is a key frame plus a reference frame of the same video. The reference
frame's GT boxes (all valid GT, in annotation order) are pooled (7x7) and embedded by the same
`TrackHead`; every RoI sampled for the box head of the key frame is scored against them
(`TrackHead.forward`), giving (n_rois, 1 + n_refs) logits per image.

- pid of a key-frame GT = 1 + index of the same object id in the reference GT list, 0 when the
  object is absent there (official ``YTVOSDataset.prepare_train_img``).
- target of a RoI: the pid of its assigned GT for a positive (weight 1), 0 with **weight 0** for a
  negative (negatives never enter the loss). RoIs are ordered positives first, then negatives
  (official ``bbox_target_single``).
- loss: per image, softmax cross-entropy over the 1 + k columns averaged over the weighted rows;
  then summed over images and divided by the number of images. Official quirk kept by default:
  an image with exactly one positive is skipped (``nonzero(w).squeeze()`` becomes 0-dim) but still
  counted in the division.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def reference_pids(gt_obj_ids: Sequence[int] | Tensor, ref_obj_ids: Sequence[int] | Tensor) -> Tensor:
    """Match target of each key-frame GT: 1 + position of its object in the reference GT, else 0.

    Args:
        gt_obj_ids: (G,) object ids of the key frame's GT, in annotation order.
        ref_obj_ids: (R,) object ids of the reference frame's GT, in annotation order.

    Returns:
        (G,) int64 pids (official ``ref_ids.index(i) + 1 if i in ref_ids else 0``).
    """
    refs = [int(v) for v in ref_obj_ids]
    position = {}
    for index, obj in enumerate(refs):
        position.setdefault(obj, index + 1)  # list.index: the first occurrence
    return torch.tensor([position.get(int(v), 0) for v in gt_obj_ids], dtype=torch.int64)


def track_targets(pos_assigned_gt_inds: Tensor, num_negatives: int, gt_pids: Tensor) -> tuple[Tensor, Tensor]:
    """Match targets and weights of one image's sampled RoIs (positives first, then negatives).

    Args:
        pos_assigned_gt_inds: (P,) 0-based index of the GT each positive RoI is assigned to.
        num_negatives: number of negative RoIs that follow the positives.
        gt_pids: (G,) pids of the image's GT (`reference_pids`).

    Returns:
        ids: (P + N,) int64: the assigned GT's pid for positives, 0 for negatives.
        weights: (P + N,) float32: 1 for positives (official ``pos_weight=-1``), 0 for negatives.
    """
    positives = gt_pids[pos_assigned_gt_inds.long()].long()  # (P,)
    ids = torch.cat([positives, positives.new_zeros(num_negatives)])
    weights = torch.cat([torch.ones(positives.shape[0]), torch.zeros(num_negatives)])
    return ids, weights


def match_loss(match_scores: Sequence[Tensor], ids: Sequence[Tensor], weights: Sequence[Tensor], *,
               skip_single_positive: bool = True) -> dict[str, Tensor]:
    """The tracking loss ``loss_match`` and the logged top-1 accuracy ``match_acc`` (official).

    Args:
        match_scores: per image, (n_i, 1 + k_i) logits from `TrackHead.forward`.
        ids: per image, (n_i,) int64 targets (0 = new object, j = j-th reference object).
        weights: per image, (n_i,) float weights (1 positive, 0 negative).
        skip_single_positive: reproduce the official quirk: an image with exactly one weighted
            row contributes 0 (it still counts in the number of images). False: it is used.

    Returns:
        ``{"loss_match": () tensor, "match_acc": () tensor}``; the loss is
        ``sum_images(sum_valid w*CE / max(#valid, 1)) / n_images``; the accuracy is in percent
        over the valid rows of the images used (0 when there is none). An image without any
        positive contributes 0 (the official code would crash in its accuracy).
    """
    if not len(match_scores) == len(ids) == len(weights):
        raise ValueError(f"match_loss: {len(match_scores)} score tensors, {len(ids)} id tensors and "
                         f"{len(weights)} weight tensors; need one of each per image")
    if not match_scores:
        raise ValueError("match_loss needs at least one image")
    total = match_scores[0].new_zeros(())
    correct, counted = 0, 0
    for score, target, weight in zip(match_scores, ids, weights):
        valid = weight > 0  # (n_i,)
        n_valid = int(valid.sum())
        if n_valid == 0 or (skip_single_positive and n_valid == 1):
            continue
        ce = F.cross_entropy(score, target.long(), reduction="none")  # (n_i,)
        total = total + (ce * weight.to(ce.dtype)).sum() / max(n_valid, 1)
        correct += int((score[valid].argmax(dim=1) == target[valid]).sum())
        counted += n_valid
    accuracy = 100.0 * correct / counted if counted else 0.0
    return {"loss_match": total / len(match_scores), "match_acc": torch.tensor(accuracy)}


def track_loss(track_head: nn.Module, roi_feats: Tensor, rois_per_image: Sequence[int], ref_roi_feats: Tensor,
               refs_per_image: Sequence[int], pos_assigned_gt_inds: Sequence[Tensor],
               gt_pids: Sequence[Tensor], *, skip_single_positive: bool = True) -> dict[str, Tensor]:
    """``loss_match`` of a batch from the box head's sampled RoIs (official ``forward_train``).

    Args:
        track_head: a `TrackHead`.
        roi_feats: (sum n_i, C, 7, 7) features of the sampled RoIs (the box head's ``bbox_feats``),
            image after image, each image's positives first.
        rois_per_image: n_i, the sampled RoIs per image.
        ref_roi_feats: (sum r_i, C, 7, 7) features of the reference frames' GT boxes (pooled at
            ``ops.boxes.boxes_to_rois`` of the reference GT boxes).
        refs_per_image: r_i, the reference GT boxes per image.
        pos_assigned_gt_inds: per image, (P_i,) GT index of each positive RoI.
        gt_pids: per image, (G_i,) pids of the key frame's GT (`reference_pids`).
        skip_single_positive: see `match_loss`.

    Returns:
        ``{"loss_match", "match_acc"}`` as `match_loss`.
    """
    scores = track_head(roi_feats, ref_roi_feats, rois_per_image, refs_per_image)
    ids, weights = [], []
    for count, positives, pids in zip(rois_per_image, pos_assigned_gt_inds, gt_pids):
        image_ids, image_weights = track_targets(positives, int(count) - positives.shape[0], pids)
        ids.append(image_ids)
        weights.append(image_weights.to(roi_feats.dtype))
    return match_loss(scores, ids, weights, skip_single_positive=skip_single_positive)
