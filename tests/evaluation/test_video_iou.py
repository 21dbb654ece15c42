"""Video IoU: exact integer intersections from one pycocotools call, checked against merge + area."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_util
import pytest

from streamvis.evaluation import video_iou as video_iou_module
from streamvis.evaluation.video_iou import FrameMasks, frame_masks, pair_intersections, video_iou


def _masks(tracks, rle_of, height: int) -> FrameMasks:
    """FrameMasks of tracks (lists of per-frame masks or None) of one video; key = frame index."""
    owner, key, counts, areas = [], [], [], []
    for i, masks in enumerate(tracks):
        for t, m in enumerate(masks):
            if m is not None:
                owner.append(i)
                key.append(t)
                counts.append(rle_of(m)["counts"])
                areas.append(float(m.sum()))
    return frame_masks(owner, key, [height] * len(owner), counts, areas)


def _ious(dts, gts, rle_of, height, width):
    """(D, G) video IoU, (D, G) empty unions and (D, G) intersections through the module's functions."""
    dm, gm = _masks(dts, rle_of, height), _masks(gts, rle_of, height)
    d_own, g_own, inter = pair_intersections(dm, gm, width)
    full = np.zeros((len(dts), len(gts)))
    full[d_own, g_own] = inter
    d_total = np.bincount(dm.owner, dm.areas, minlength=len(dts))
    g_total = np.bincount(gm.owner, gm.areas, minlength=len(gts))
    ious, empty = video_iou(full.ravel(), np.repeat(d_total, len(gts)), np.tile(g_total, len(dts)))
    return ious.reshape(full.shape), empty.reshape(full.shape), full


def _reference_iou(d_masks, g_masks, rle_of) -> float:
    """The rule of the golden README, with pycocotools merge/area frame by frame."""
    inter = union = 0
    for d, g in zip(d_masks, g_masks):
        if d is not None and g is not None:
            pair = [rle_of(d), rle_of(g)]
            inter += int(mask_util.area(mask_util.merge(pair, intersect=True)))
            union += int(mask_util.area(mask_util.merge(pair, intersect=False)))
        elif d is not None or g is not None:
            union += int((d if d is not None else g).sum())
    return inter / union if union > 0 else 0.0


def _random_track(rng, length, height, width, absent=0.25):
    masks = []
    for _ in range(length):
        if rng.random() < absent:
            masks.append(None)
            continue
        y, x = np.ogrid[:height, :width]
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(1, max(height, width) / 2)
        blob = (y - cy) ** 2 + (x - cx) ** 2 < r**2
        masks.append(blob ^ (rng.random((height, width)) < 0.05))  # ragged boundary, holes, specks
    return masks


def test_hand_built_two_frames(rle_of, box):
    d = [box(6, 6, 0, 2, 0, 2), box(6, 6, 0, 3, 0, 3)]  # areas 4, 9
    g = [box(6, 6, 0, 2, 0, 1), None]  # area 2, absent
    ious, empty, _ = _ious([d], [g], rle_of, 6, 6)
    # frame 0: I 2, U 4; frame 1: only the prediction, U 9 -> 2 / 13
    assert ious[0, 0] == 2 / 13
    assert not empty.any()


def test_empty_union_gives_zero_and_is_flagged(rle_of):
    empty_mask = np.zeros((4, 5), bool)
    d = [empty_mask, None]
    g = [None, empty_mask]
    ious, empty, _ = _ious([d], [g], rle_of, 4, 5)
    assert ious[0, 0] == 0.0 and empty[0, 0]


@pytest.mark.parametrize(("seed", "cap"), [(0, 1 << 16), (1, 1 << 16), (2, 1 << 16), (3, 1), (4, 7), (5, 40)])
def test_matches_merge_and_area_on_random_tracks(seed, cap, rle_of, monkeypatch):
    """Also with tiny per-call caps, so that the frames are split over many pycocotools calls."""
    monkeypatch.setattr(video_iou_module, "_MAX_PAIRS_PER_CALL", cap)
    rng = np.random.default_rng(seed)
    height, width, length = int(rng.integers(1, 30)), int(rng.integers(1, 30)), int(rng.integers(1, 7))
    dts = [_random_track(rng, length, height, width) for _ in range(4)]
    gts = [_random_track(rng, length, height, width) for _ in range(3)]
    ious, _, _ = _ious(dts, gts, rle_of, height, width)
    expected = np.array([[_reference_iou(d, g, rle_of) for g in gts] for d in dts])
    np.testing.assert_array_equal(ious, expected)


def test_recovered_intersection_is_exact_on_large_masks(rle_of):
    """I = round(o (a + b) / (1 + o)) must equal merge + area even at 720x1280 with huge areas."""
    rng = np.random.default_rng(7)
    height, width, length = 720, 1280, 3
    dts, gts = [], []
    for _ in range(2):
        for group in (dts, gts):
            masks = []
            for _ in range(length):
                cut_y, cut_x = rng.integers(1, height), rng.integers(1, width)
                mask = np.zeros((height, width), bool)
                mask[:cut_y, :cut_x] = True
                mask ^= rng.random((height, width)) < rng.uniform(0.001, 0.3)
                masks.append(mask)
            group.append(masks)
    _, _, inter = _ious(dts, gts, rle_of, height, width)
    for i, d in enumerate(dts):
        for j, g in enumerate(gts):
            exact = sum(
                int(mask_util.area(mask_util.merge([rle_of(a), rle_of(b)], intersect=True)))
                for a, b in zip(d, g)
            )
            assert inter[i, j] == exact
            assert exact > 100_000  # large enough for a rounding slip to show


def test_frames_never_mix(rle_of, box):
    """A prediction on frame 0 and a ground truth on frame 1 at the same place do not intersect."""
    same = box(5, 5, 0, 5, 0, 5)
    d = [same, None]
    g = [None, same]
    ious, _, inter = _ious([d], [g], rle_of, 5, 5)
    assert inter[0, 0] == 0 and ious[0, 0] == 0.0


def test_remembered_ious_serve_ap_after_the_tracking_metrics(monkeypatch):
    """Inside `remember_ious`, AP reads the tracking pass's per-frame IoUs (no pycocotools iou call)."""
    import json
    from pathlib import Path

    from streamvis.evaluation import evaluate
    from streamvis.evaluation.tracking import evaluate_tracking

    folder = Path(__file__).resolve().parents[1] / "data" / "ytvis_eval"
    for case in ("case_001", "case_003"):  # case_003 mixes polygons and uncompressed RLE in the GT
        gt = json.loads((folder / case / "gt.json").read_text())
        results = json.loads((folder / case / "results.json").read_text())
        alone = evaluate(gt, results).stats
        with video_iou_module.remember_ious() as memo:
            tracking = evaluate_tracking(gt, results)
            assert memo  # every same-frame pair of the tracking pass, zero IoUs included
            calls = []
            real_iou = video_iou_module.mask_util.iou
            monkeypatch.setattr(video_iou_module.mask_util, "iou",
                                lambda *a, calls=calls, real_iou=real_iou: calls.append(1) or real_iou(*a))
            shared = evaluate(gt, results).stats
            monkeypatch.undo()
        assert np.array_equal(alone, shared)
        assert tracking.to_json() == evaluate_tracking(gt, results).to_json()
        if case == "case_001":
            assert calls == []  # compressed RLE on both sides: every AP pair came from the memo


def test_the_pair_log_serves_subsets_and_shared_objects_and_refuses_unknown_pairs(monkeypatch):
    from streamvis.evaluation.video_iou import same_key_ratios, select_masks

    rng = np.random.default_rng(2)
    masks = [rng.random((9, 7)) < 0.5 for _ in range(6)]
    counts = [mask_util.encode(np.asfortranarray(m.astype(np.uint8)))["counts"] for m in masks]
    # prediction 0's mask object is used again on frame 2 (a tracker reporting shared masks)
    dt = frame_masks([0, 0, 1, 1, 0], [0, 1, 1, 2, 2], [9] * 5,
                     [counts[0], counts[1], counts[2], counts[3], counts[0]], [0.0] * 5)
    gt = frame_masks([0, 0, 0], [0, 1, 2], [9] * 3, [counts[4], counts[5], counts[1]], [0.0] * 3)
    alone = same_key_ratios(dt, gt, 7)
    with video_iou_module.remember_ious() as log:
        assert [a.tolist() for a in same_key_ratios(dt, gt, 7)] == [a.tolist() for a in alone]
        assert len(log) == 5  # every same-frame pair, zero IoUs included
        calls = []
        monkeypatch.setattr(video_iou_module.mask_util, "iou", lambda *a: calls.append(1))
        keep = np.array([True, False, True, True, True])
        sub_alone_rows = [(r, c) for r, c in zip(*alone[:2]) if keep[r]]
        rows, cols, ratio = same_key_ratios(select_masks(dt, keep), gt, 7)  # served by the log
        positions = np.flatnonzero(keep)
        assert [(positions[r], c) for r, c in zip(rows, cols)] == sub_alone_rows
        assert calls == []
        other = frame_masks([0], [1], [9], [counts[3]], [0.0])  # a pair the log never saw
        assert log.lookup(other, gt) is None
