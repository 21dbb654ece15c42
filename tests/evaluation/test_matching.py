"""Batched greedy matching against a plain per-group, per-threshold loop of the same rules."""

from __future__ import annotations

import numpy as np
import pytest

from streamvis.evaluation.matching import MatchGroup, match_groups

THRESHOLDS = np.linspace(0.5, 0.95, 10)


def _naive(group: MatchGroup, a: int, thr: float):
    """One area range and threshold: predictions in order; each takes the last best free ground truth,
    non-ignored first, ignored only when no non-ignored one reaches the threshold."""
    order = np.argsort(group.gt_ignore[a], kind="stable")
    taken = np.zeros(len(order), bool)
    ids, ignored = [], []
    for d in range(group.ious.shape[0]):
        best, best_iou = None, thr
        for pass_ignored in (False, True):
            for g in order:
                if group.gt_ignore[a][g] != pass_ignored or (taken[g] and not group.gt_crowd[g]):
                    continue
                if group.ious[d, g] >= best_iou:
                    best, best_iou = g, group.ious[d, g]
            if best is not None:
                break
        if best is None:
            ids.append(0)
            ignored.append(False)
        else:
            taken[best] = True
            ids.append(int(group.gt_ids[best]))
            ignored.append(bool(group.gt_ignore[a][best]))
    return ids, ignored


def _group(ious, ids=None, crowd=None, ignore=None):
    ious = np.asarray(ious, dtype=np.float64)
    g = ious.shape[1]
    crowd = np.zeros(g, bool) if crowd is None else np.asarray(crowd, bool)
    ignore = crowd[None, :].copy() if ignore is None else np.asarray(ignore, bool)
    ids = np.arange(1, g + 1) if ids is None else np.asarray(ids)
    return MatchGroup(ious=ious, gt_ids=ids, gt_crowd=crowd, gt_ignore=ignore)


def test_tie_goes_to_the_last_ground_truth():
    ((ids, ignored),) = match_groups([_group([[0.7, 0.7]], ids=[11, 12])], THRESHOLDS, 1)
    assert ids[0, 0].tolist() == [12]  # t = .5
    assert ids[0, -1].tolist() == [0]  # t = .95: no match
    assert not ignored.any()


def test_regular_ground_truth_wins_over_a_better_ignored_one():
    group = _group([[0.6, 0.9]], ids=[5, 6], ignore=[[False, True]])
    ((ids, ignored),) = match_groups([group], THRESHOLDS, 1)
    assert ids[0, 0, 0] == 5 and not ignored[0, 0, 0]  # .5: the regular one
    assert ids[0, 3, 0] == 6 and ignored[0, 3, 0]  # .65: only the ignored one reaches it


def test_crowd_absorbs_several_predictions_a_regular_one_only_one():
    group = _group([[0.8, 0.9], [0.8, 0.9], [0.8, 0.9]], ids=[1, 2], crowd=[False, True])
    ((ids, ignored),) = match_groups([group], THRESHOLDS, 1)
    # the regular gt 1 is preferred first, then the crowd gt 2 takes the rest
    assert ids[0, 0].tolist() == [1, 2, 2]
    assert ignored[0, 0].tolist() == [False, True, True]


def test_matched_id_zero_is_kept_as_given():
    """The official code stores the annotation id; an id of 0 reads as "unmatched" later."""
    ((ids, _),) = match_groups([_group([[0.9]], ids=[0])], THRESHOLDS, 1)
    assert (ids == 0).all()


@pytest.mark.parametrize("seed", range(5))
def test_batched_equals_naive_loop(seed):
    rng = np.random.default_rng(seed)
    groups = []
    for _ in range(25):
        d, g = int(rng.integers(1, 12)), int(rng.integers(1, 6))
        ious = (
            rng.choice([0.0, 0.5, 0.55, 0.7, 0.7, 0.95, 1.0], (d, g))
            if rng.random() < 0.5
            else rng.random((d, g))
        )
        crowd = rng.random(g) < 0.3
        ignore = crowd[None, :] | (rng.random((3, g)) < 0.3)
        groups.append(_group(ious, ids=rng.permutation(100)[:g] + 1, crowd=crowd, ignore=ignore))
    out = match_groups(groups, THRESHOLDS, 3)
    for group, (ids, ignored) in zip(groups, out):
        for a in range(3):
            for t, thr in enumerate(THRESHOLDS):
                exp_ids, exp_ignored = _naive(group, a, thr)
                assert ids[a, t].tolist() == exp_ids
                assert ignored[a, t].tolist() == exp_ignored
