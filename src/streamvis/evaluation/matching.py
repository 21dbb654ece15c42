"""Greedy matching of predictions to ground truth, for all (video, category) groups at once.

official (``ytvoseval.py: evaluateVid``), per group, area range and IoU threshold t: predictions go
in descending score order; ground truths are ordered non-ignored first (stable); a prediction takes
the *last* ground truth with the highest IoU >= t among the free non-ignored ones, or, when there is
none, among the free ignored ones (crowd or outside the area range). A ground truth is free until
matched, a crowd one stays free. The prediction records the matched annotation id (0: unmatched)
and inherits the ground truth's ignore flag.

Here the groups (times area ranges) form a batch and all thresholds are handled together; the only
Python loop runs over the prediction rank (at most 100 steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MatchGroup", "match_batch", "match_groups"]


@dataclass
class MatchGroup:
    """One (video, category) with both predictions and ground truth.

    Attributes:
        ious: (D, G) video IoU, predictions in descending score order, ground truth in file order.
        gt_ids: (G,) annotation ids.
        gt_crowd: (G,) bool, ``iscrowd`` (a crowd ground truth can absorb several predictions).
        gt_ignore: (A, G) bool, crowd or outside area range a.
    """

    ious: np.ndarray
    gt_ids: np.ndarray
    gt_crowd: np.ndarray
    gt_ignore: np.ndarray


def _pad(groups: list[MatchGroup], num_ranges: int):
    """Batch (group, area range) with ground truth sorted ignore-last; padding is never a candidate."""
    num_det = max(g.ious.shape[0] for g in groups)
    num_gt = max(g.ious.shape[1] for g in groups)
    batch = len(groups) * num_ranges
    ious = np.full((batch, num_det, num_gt), -1.0)  # (B, D, G)
    ignore = np.ones((batch, num_gt), dtype=bool)
    crowd = np.zeros((batch, num_gt), dtype=bool)
    ids = np.zeros((batch, num_gt), dtype=np.int64)
    for b, (g, a) in enumerate((g, a) for g in range(len(groups)) for a in range(num_ranges)):
        group = groups[g]
        perm = np.argsort(group.gt_ignore[a], kind="stable")  # official: gt sorted ignore-last, mergesort
        d, n = group.ious.shape
        ious[b, :d, :n] = group.ious[:, perm]
        ignore[b, :n] = group.gt_ignore[a][perm]
        crowd[b, :n] = group.gt_crowd[perm]
        ids[b, :n] = group.gt_ids[perm]
    return ious, ignore, crowd, ids


def _last_argmax(values: np.ndarray) -> np.ndarray:
    """Index of the last maximum along the last axis."""
    return values.shape[-1] - 1 - np.argmax(values[..., ::-1], axis=-1)


def match_batch(ious, ignore, crowd, ids, det_count, iou_thresholds):
    """Run the official greedy matching on a padded batch of (group, area range) problems.

    Args:
        ious: (B, D, G) IoUs, predictions in score order; padding must be < 0 (never a candidate).
        ignore: (B, G) bool, ground truth ignored (crowd or outside the area range); in each row
            the non-ignored ones come first, in file order, then the ignored ones.
        crowd: (B, G) bool, crowd ground truth.
        ids: (B, G) annotation ids.
        det_count: (B,) number of real predictions per problem.
        iou_thresholds: (T,) thresholds.

    Returns:
        matched: (B, T, D) matched annotation id (0 when unmatched); matched_ignored: (B, T, D)
        bool, the matched ground truth is ignored.
    """
    order = np.argsort(-np.asarray(det_count), kind="stable")  # longest first: an active prefix
    ious, ignore, crowd, ids = ious[order], ignore[order], crowd[order], ids[order]
    det_count = np.asarray(det_count)[order]
    batch, num_det, num_gt = ious.shape
    thr = np.minimum(iou_thresholds, 1 - 1e-10)[None, :, None]  # official: min(t, 1 - 1e-10)
    taken = np.zeros((batch, len(iou_thresholds), num_gt), dtype=bool)  # (B, T, G)
    matched = np.zeros((batch, len(iou_thresholds), num_det), dtype=np.int64)
    matched_ignored = np.zeros_like(matched, dtype=bool)
    regular_gt = ~ignore[:, None, :]  # (B, 1, G)
    free_crowd = crowd[:, None, :]
    for d in range(num_det):
        n = int(np.count_nonzero(det_count > d))
        iou = ious[:n, d, None, :]  # (n, 1, G)
        candidate = ~(taken[:n] & ~free_crowd[:n]) & (iou >= thr)  # (n, T, G)
        regular = candidate & regular_gt[:n]
        use = np.where(regular.any(-1, keepdims=True), regular, candidate)
        has = use.any(-1)  # (n, T)
        best = _last_argmax(np.where(use, iou, -np.inf))  # (n, T)
        b_idx, t_idx = np.nonzero(has)
        g_idx = best[b_idx, t_idx]
        taken[b_idx, t_idx, g_idx] = True
        matched[b_idx, t_idx, d] = ids[b_idx, g_idx]
        matched_ignored[b_idx, t_idx, d] = ignore[b_idx, g_idx]
    inverse = np.argsort(order)
    return matched[inverse], matched_ignored[inverse]


def match_groups(groups: list[MatchGroup], iou_thresholds: np.ndarray, num_ranges: int):
    """Run the official greedy matching for every group, area range and threshold.

    Args:
        groups: the (video, category) groups; ``gt_ignore`` has ``num_ranges`` rows.
        iou_thresholds: (T,) thresholds.
        num_ranges: A, the number of area ranges.

    Returns:
        Per group, in input order: ``(matched_ids, matched_ignored)``, each (A, T, D): the matched
        annotation id (0 when unmatched) and whether the matched ground truth is ignored.
    """
    if not groups:
        return []
    ious, ignore, crowd, ids = _pad(groups, num_ranges)
    det_count = np.repeat([g.ious.shape[0] for g in groups], num_ranges)
    matched, matched_ignored = match_batch(ious, ignore, crowd, ids, det_count, iou_thresholds)
    out = []
    for g, group in enumerate(groups):
        rows = slice(g * num_ranges, (g + 1) * num_ranges)
        d = group.ious.shape[0]
        out.append((matched[rows, :, :d], matched_ignored[rows, :, :d]))
    return out
