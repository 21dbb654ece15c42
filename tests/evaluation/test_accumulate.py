"""Vectorized accumulation against a plain loop over (category, area, maxDets, threshold)."""

from __future__ import annotations

import numpy as np
import pytest

from streamvis.evaluation.accumulate import DetectionTable, accumulate, per_category, summarize
from streamvis.evaluation.ytvis_eval import EvalParams

PARAMS = EvalParams()


def _naive(dets: DetectionTable, npig: np.ndarray):
    """Per setting: stable sort by score over (video, file order), cumulative TP/FP, right-to-left
    envelope, first index with recall >= each threshold."""
    num_t, num_r = len(PARAMS.iou_thresholds), len(PARAMS.recall_thresholds)
    num_a, num_k = npig.shape
    num_m = len(PARAMS.max_dets)
    precision = -np.ones((num_t, num_r, num_k, num_a, num_m))
    recall = -np.ones((num_t, num_k, num_a, num_m))
    base = np.lexsort((dets.order, dets.video))
    for k in range(num_k):
        for a in range(num_a):
            if npig[a, k] == 0:
                continue
            for m, max_det in enumerate(PARAMS.max_dets):
                sel = base[(dets.category[base] == k) & (dets.rank[base] < max_det)]
                sel = sel[np.argsort(-dets.score[sel], kind="mergesort")]
                for t in range(num_t):
                    hit = dets.matched[a, t, sel] != 0
                    ignored = dets.matched_ignored[a, t, sel] | (~hit & dets.outside[a, sel])
                    tp = np.cumsum(hit & ~ignored).astype(float)
                    fp = np.cumsum(~hit & ~ignored).astype(float)
                    rc, pr = tp / npig[a, k], tp / (fp + tp + np.spacing(1))
                    recall[t, k, a, m] = rc[-1] if sel.size else 0
                    pr = np.maximum.accumulate(pr[::-1])[::-1]
                    idx = np.searchsorted(rc, PARAMS.recall_thresholds, side="left")
                    precision[t, :, k, a, m] = np.where(
                        idx < sel.size, pr[np.minimum(idx, max(sel.size - 1, 0))] if sel.size else 0, 0
                    )
    return precision, recall


def _random_dets(rng, n: int, num_k: int, num_v: int) -> DetectionTable:
    num_a, num_t = len(PARAMS.area_ranges), len(PARAMS.iou_thresholds)
    video = rng.integers(0, num_v, n)
    category = rng.integers(0, num_k, n)
    score = rng.choice([0.1, 0.5, 0.5, 0.9], n) if rng.random() < 0.5 else rng.random(n)
    order = rng.permutation(n)
    rank = np.zeros(n, dtype=np.int64)  # rank within (video, category) by stable score order
    for key in set(zip(video.tolist(), category.tolist())):
        members = np.flatnonzero((video == key[0]) & (category == key[1]))
        members = members[np.lexsort((order[members], -score[members]))]
        rank[members] = np.arange(members.size)
    matched = np.where(rng.random((num_a, num_t, n)) < 0.4, rng.integers(1, 50, (num_a, num_t, n)), 0)
    return DetectionTable(
        category=category,
        video=video,
        order=order,
        score=score,
        rank=rank,
        matched=matched,
        matched_ignored=(matched > 0) & (rng.random((num_a, num_t, n)) < 0.2),
        outside=rng.random((num_a, n)) < 0.3,
    )


@pytest.mark.parametrize("seed", range(4))
def test_vectorized_equals_loop(seed):
    rng = np.random.default_rng(seed)
    num_k = 4
    dets = _random_dets(rng, int(rng.integers(0, 60)), num_k, num_v=5)
    npig = rng.integers(0, 6, (len(PARAMS.area_ranges), num_k))
    precision, recall = accumulate(dets, npig, PARAMS)
    exp_precision, exp_recall = _naive(dets, npig)
    np.testing.assert_array_equal(precision, exp_precision)
    np.testing.assert_array_equal(recall, exp_recall)
    stats = summarize(precision, recall, PARAMS)
    assert stats[0] == (
        np.mean(exp_precision[:, :, :, 0, 2][exp_precision[:, :, :, 0, 2] > -1])
        if (npig[0] > 0).any()
        else -1
    )
    ap, ar = per_category(precision, recall, PARAMS)
    assert ((ap == -1) == (npig[0] == 0)).all() and ((ar == -1) == (npig[0] == 0)).all()
