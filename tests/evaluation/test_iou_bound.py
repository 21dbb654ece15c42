"""Pairs whose video IoU is surely below the lowest threshold (area bound) are not intersected, and
that changes no number: checked on the golden cases and on random tracks, against full IoU."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from streamvis.evaluation import groups, video_iou, ytvis_eval
from streamvis.evaluation.video_iou import frame_masks, same_frame_pairs

REPO = Path(__file__).resolve().parents[2]
SHARED_CASES = Path(os.environ.get("STREAMVIS_SHARED", REPO.parent / "shared")) / "golden" / "ytvis_eval"
CASES_ROOT = SHARED_CASES if SHARED_CASES.is_dir() else REPO / "tests" / "data" / "ytvis_eval"


def _evaluate(gt, results, monkeypatch, *, prune: bool):
    """(result, number of masks handed to pycocotools) with or without the bound."""
    handed = []
    real_iou = video_iou.mask_util.iou

    def counting_iou(dt, gt_rles, crowd):
        handed.append(len(dt) + len(gt_rles))
        return real_iou(dt, gt_rles, crowd)

    def full_group_ious(*args, min_iou=0.0):
        return groups.group_ious(*args, min_iou=0.0)

    with monkeypatch.context() as patch:
        patch.setattr(video_iou.mask_util, "iou", counting_iou)
        if not prune:
            patch.setattr(ytvis_eval, "group_ious", full_group_ious)
        result = ytvis_eval.evaluate(gt, results)
    return result, sum(handed)


def _assert_same(pruned, full):
    np.testing.assert_array_equal(pruned.precision, full.precision)
    np.testing.assert_array_equal(pruned.recall, full.recall)
    np.testing.assert_array_equal(pruned.stats, full.stats)
    assert pruned.empty_union_pairs == full.empty_union_pairs


@pytest.mark.parametrize("case", ["case_001", "case_005", "case_013", "case_020", "case_031"])
def test_golden_cases_identical_with_and_without_the_bound(case, monkeypatch):
    folder = CASES_ROOT / case
    gt, results = (json.loads((folder / name).read_text()) for name in ("gt.json", "results.json"))
    pruned, pruned_masks = _evaluate(gt, results, monkeypatch, prune=True)
    full, full_masks = _evaluate(gt, results, monkeypatch, prune=False)
    _assert_same(pruned, full)
    assert pruned_masks <= full_masks


def _random_case(builder, rng):
    """Blobs of very different sizes, some nested, so that many pairs fall below IoU .5."""
    for vid in (1, 2, 3):
        builder.video(vid, 3, height=12, width=14)
        y, x = np.ogrid[:12, :14]
        for _ in range(int(rng.integers(1, 4))):
            category = int(rng.integers(1, 3))
            cy, cx = rng.uniform(2, 10, 2)
            for owner in ("gt", "dt", "dt", "dt"):
                masks = []
                for _ in range(3):
                    if rng.random() < 0.2:
                        masks.append(None)
                        continue
                    r = rng.uniform(0.5, 6)
                    masks.append((y - cy - rng.normal(0, 1)) ** 2 + (x - cx - rng.normal(0, 1)) ** 2 < r * r)
                if owner == "gt":
                    builder.track(vid, category, masks, iscrowd=int(rng.random() < 0.15))
                else:
                    builder.result(vid, category, float(rng.uniform(0, 1)), masks)


@pytest.mark.parametrize("seed", range(6))
def test_random_tracks_identical_with_and_without_the_bound(seed, builder, monkeypatch):
    _random_case(builder, np.random.default_rng(seed))
    pruned, pruned_masks = _evaluate(builder.gt, builder.results, monkeypatch, prune=True)
    full, full_masks = _evaluate(builder.gt, builder.results, monkeypatch, prune=False)
    _assert_same(pruned, full)
    assert full.stats_named["AP50"] > 0  # there are matches to get wrong
    assert pruned_masks < full_masks  # the bound did skip some masks


def test_a_small_prediction_inside_a_large_ground_truth_is_not_decoded(builder, box, monkeypatch):
    """1 pixel inside 16: the bound 1 / 16 < .5, so pycocotools never sees these masks; AP 0 either way."""
    vid = builder.video(1, 2, height=8, width=8)
    builder.track(vid, 1, [box(8, 8, 0, 4, 0, 4), box(8, 8, 0, 4, 0, 4)])
    builder.result(vid, 1, 0.9, [box(8, 8, 1, 2, 1, 2), None])
    pruned, pruned_masks = _evaluate(builder.gt, builder.results, monkeypatch, prune=True)
    full, full_masks = _evaluate(builder.gt, builder.results, monkeypatch, prune=False)
    assert (pruned_masks, full_masks) == (0, 2)
    assert pruned.stats_named["AP"] == full.stats_named["AP"] == 0.0


def test_same_frame_pairs_lists_every_pair_of_a_key():
    dt = frame_masks([0, 0, 1], [5, 7, 7], [4, 4, 4], ["a", "b", "c"], [1, 1, 1])
    gt = frame_masks([0, 1, 1, 2], [7, 3, 7, 9], [4, 4, 4, 4], ["w", "x", "y", "z"], [1, 1, 1, 1])
    dt_index, gt_index = same_frame_pairs(dt, gt)
    pairs = {(dt.counts[d], gt.counts[g]) for d, g in zip(dt_index.tolist(), gt_index.tolist())}
    assert pairs == {("b", "w"), ("b", "y"), ("c", "w"), ("c", "y")}
    assert len(dt_index) == 4
