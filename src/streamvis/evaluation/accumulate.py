"""Precision/recall accumulation and the 12 summary numbers, vectorized over every setting.

official (``ytvoseval.py: accumulate``), per category k, area range a and maxDets m: the kept
predictions of all videos (the first m of each video, in score order) are stable-sorted by
descending score; with cumulative TP/FP counts, rc = tp / npig and pr = tp / (tp + fp + eps);
pr is made non-increasing from the right and sampled at the first index where rc >= each recall
threshold (0 past the end); recall is the last rc. -1 marks settings without non-ignored ground
truth.

Equivalences used here (checked by the golden tests): one total order (category, -score, video,
position in the results file) serves every m, a prediction beyond m or ignored being a flat step
that changes neither rc, pr nor the sampled values; rc >= r holds from the need(r)-th TP on, with
need(r) the least integer j with j / npig >= r; the right-to-left envelope at a TP is the maximum of
pr over the TPs that follow, because pr only rises at a TP.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DetectionTable", "accumulate", "summarize"]

_MAX_PAD_CELLS = 1 << 23  # cap on the padded (rows, longest run) array of the envelope step


@dataclass
class DetectionTable:
    """Predictions kept for accumulation (the first 100 of each (video, category) by score).

    Attributes:
        category, video, order: (N,) category index, video index, position in the results file.
        score: (N,) confidence.
        rank: (N,) rank in score order within the (video, category).
        matched: (A, T, N) matched annotation id, 0 when unmatched.
        matched_ignored: (A, T, N) bool, the matched ground truth is ignored.
        outside: (A, N) bool, the prediction's average area is outside area range a.
    """

    category: np.ndarray
    video: np.ndarray
    order: np.ndarray
    score: np.ndarray
    rank: np.ndarray
    matched: np.ndarray
    matched_ignored: np.ndarray
    outside: np.ndarray


def _tp_fp(dets: DetectionTable, max_dets: np.ndarray):
    """(A, M, T, N) TP and FP flags in accumulation order, and that order's category of each column."""
    sort = np.lexsort((dets.order, dets.video, -dets.score, dets.category))
    matched = dets.matched[..., sort] != 0  # official: dtm is an id, truthy when matched
    ignored = dets.matched_ignored[..., sort] | (~matched & dets.outside[:, None, sort])
    counted = dets.rank[sort][None, :] < max_dets[:, None]  # (M, N)
    tp = (matched & ~ignored)[:, None] & counted[None, :, None, :]
    fp = (~matched & ~ignored)[:, None] & counted[None, :, None, :]
    return tp, fp, dets.category[sort]


def _needed_tps(npig: np.ndarray, rec_thrs: np.ndarray) -> np.ndarray:
    """(A, K, R) least integer j with j / npig >= r (the float division the official code does)."""
    n = np.maximum(npig, 1)[..., None].astype(np.float64)
    guess = np.ceil(rec_thrs * n)
    cands = guess[..., None] + np.array([-1.0, 0.0, 1.0])  # (A, K, R, 3)
    ok = (cands >= 0) & (cands / n[..., None] >= rec_thrs[:, None])
    return np.where(ok, cands, np.inf).min(-1).astype(np.int64)


def _sampled_envelope(values: np.ndarray, group: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Per group, max(values[j:]) within the group sampled at j = index[group, r].

    Args:
        values: (P,) sorted by group.
        group: (P,) group of each value.
        index: (num_groups, R) positions to sample (clipped to the group's last position).

    Returns:
        (num_groups, R) samples (-1 for an empty group).
    """
    num_groups = index.shape[0]
    counts = np.bincount(group, minlength=num_groups)
    starts = np.concatenate([[0], np.cumsum(counts)])
    out = np.full(index.shape, -1.0)
    step = max(1, _MAX_PAD_CELLS // max(int(counts.max(initial=1)), 1))
    for lo in range(0, num_groups, step):  # chunks bound the padded array's memory
        hi = min(lo + step, num_groups)
        longest = int(counts[lo:hi].max(initial=0))
        if longest == 0:
            continue
        sel = slice(starts[lo], starts[hi])
        block = np.full((hi - lo, longest), -1.0)  # (groups, longest run), -1 past a group's end
        block[group[sel] - lo, np.arange(sel.start, sel.stop) - starts[group[sel]]] = values[sel]
        block = np.maximum.accumulate(block[:, ::-1], axis=1)[:, ::-1]
        out[lo:hi] = np.take_along_axis(block, np.minimum(index[lo:hi], longest - 1), axis=1)
    return out


def accumulate(dets: DetectionTable, npig: np.ndarray, params) -> tuple[np.ndarray, np.ndarray]:
    """Precision (T, R, K, A, M) and recall (T, K, A, M) arrays, as the official ``accumulate``.

    Args:
        dets: the kept predictions of evaluated categories.
        npig: (A, K) number of non-ignored ground truths per area range and category.
        params: an object with ``iou_thresholds`` (T,), ``recall_thresholds`` (R,), ``max_dets`` (M,).
    """
    max_dets = np.asarray(params.max_dets)
    num_t, num_r, num_m = len(params.iou_thresholds), len(params.recall_thresholds), len(max_dets)
    num_a, num_k = npig.shape
    tp, fp, category = _tp_fp(dets, max_dets)  # (A, M, T, N)
    seg_start = np.searchsorted(category, np.arange(num_k), side="left")
    seg_end = np.searchsorted(category, np.arange(num_k), side="right")
    zero = np.zeros(tp.shape[:-1] + (1,), dtype=np.int32)
    cum_tp = np.concatenate([zero, np.cumsum(tp, axis=-1, dtype=np.int32)], axis=-1)  # (A, M, T, N + 1)
    cum_fp = np.concatenate([zero, np.cumsum(fp, axis=-1, dtype=np.int32)], axis=-1)
    num_tp = cum_tp[..., seg_end] - cum_tp[..., seg_start]  # (A, M, T, K)
    a, m, t, i = np.nonzero(tp)
    k = category[i]
    tps = (cum_tp[a, m, t, i + 1] - cum_tp[a, m, t, seg_start[k]]).astype(np.float64)
    fps = (cum_fp[a, m, t, i + 1] - cum_fp[a, m, t, seg_start[k]]).astype(np.float64)
    pr = tps / (fps + tps + np.spacing(1))  # official formula, evaluated at the TPs
    group = ((a * num_m + m) * num_t + t) * num_k + k
    need = _needed_tps(npig, np.asarray(params.recall_thresholds))[:, None, None]  # (A, 1, 1, K, R)
    have = num_tp[..., None]  # (A, M, T, K, 1)
    index = np.broadcast_to(np.maximum(need - 1, 0), have.shape[:-1] + (num_r,)).reshape(-1, num_r)
    sampled = _sampled_envelope(pr, group, index).reshape(have.shape[:-1] + (num_r,))
    q = np.where((have > 0) & (need <= have), sampled, 0.0)  # (A, M, T, K, R)
    has_gt = (npig > 0)[:, None, None, :]  # (A, 1, 1, K)
    precision = np.where(has_gt[..., None], q, -1.0).transpose(2, 4, 3, 0, 1)  # (T, R, K, A, M)
    recall = np.where(has_gt, num_tp / np.maximum(npig, 1)[:, None, None, :], -1.0)
    return np.ascontiguousarray(precision), np.ascontiguousarray(recall.transpose(2, 3, 0, 1))


# official summarize(): (is AP, IoU threshold or None for .50:.95, area label, maxDets)
SUMMARY_SETTINGS = (
    ("AP", True, None, "all", 100),
    ("AP50", True, 0.5, "all", 100),
    ("AP75", True, 0.75, "all", 100),
    ("AP_small", True, None, "small", 100),
    ("AP_medium", True, None, "medium", 100),
    ("AP_large", True, None, "large", 100),
    ("AR1", False, None, "all", 1),
    ("AR10", False, None, "all", 10),
    ("AR100", False, None, "all", 100),
    ("AR_small", False, None, "small", 100),
    ("AR_medium", False, None, "medium", 100),
    ("AR_large", False, None, "large", 100),
)


def _mean_valid(values: np.ndarray) -> float:
    """official: mean of the entries > -1, or -1 when there is none."""
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def summarize(precision: np.ndarray, recall: np.ndarray, params) -> np.ndarray:
    """The 12 official summary numbers (order of ``SUMMARY_SETTINGS``)."""
    stats = np.zeros(len(SUMMARY_SETTINGS))
    for n, (_, is_ap, iou_thr, area, max_det) in enumerate(SUMMARY_SETTINGS):
        aind = [params.area_labels.index(area)]
        mind = [list(params.max_dets).index(max_det)]
        s = precision if is_ap else recall
        if iou_thr is not None:
            s = s[np.where(iou_thr == params.iou_thresholds)[0]]
        s = s[:, :, :, aind, mind] if is_ap else s[:, :, aind, mind]
        stats[n] = _mean_valid(s)
    return stats


def per_category(precision: np.ndarray, recall: np.ndarray, params) -> tuple[np.ndarray, np.ndarray]:
    """(K,) AP and AR per category at IoU .50:.95, area all, maxDets 100 (-1: no non-crowd GT)."""
    a = params.area_labels.index("all")
    m = list(params.max_dets).index(100)
    num_k = precision.shape[2]
    ap = np.array([_mean_valid(precision[:, :, k, a, m]) for k in range(num_k)])
    ar = np.array([_mean_valid(recall[:, k, a, m]) for k in range(num_k)])
    return ap, ar
