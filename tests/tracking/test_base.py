"""tracking/base.py (the protocol, Track, unpacking, similarities, results entries) and the TRACKERS table."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from streamvis.data.masks import decode_rle, encode_masks
from streamvis.errors import ConfigError
from streamvis.structures import Instances
from streamvis.tracking import (
    TRACKERS,
    CrossVISTracker,
    CrossVISTrackerOptions,
    DefaultTracker,
    DefaultTrackerOptions,
    build_tracker,
    parse_tracker_options,
    tracker_options,
)
from streamvis.tracking.base import (
    SpilledTracks,
    Track,
    Tracker,
    TrackerDetections,
    box_iou,
    coarse_mask_iou,
    cosine_similarity,
    encode_frame_masks,
    mask_iou,
    overlapping_mask_iou,
    track_to_result,
    unpack_instances,
)


def _track(track_id=1, scores=(0.5,), **changes) -> Track:
    values = dict(track_id=track_id, category=1, box=np.arange(4, dtype=np.float32),
                  embedding=np.ones(3, np.float32), first_frame=0, last_frame=len(scores) - 1,
                  scores=list(scores))
    return Track(**{**values, **changes})


def test_box_iou_by_hand():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]], np.float32)
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0.0, 0.0]], rtol=1e-6)
    # the official tracker adds eps to the union: an empty pair gives 0, not nan
    assert box_iou(b[2:], b[2:], eps=1e-5)[0, 0] == 0.0
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_cosine_similarity_handles_zero_vectors():
    a = np.array([[1, 0], [0, 0]], np.float32)
    b = np.array([[1, 1], [-2, 0]], np.float32)
    np.testing.assert_allclose(cosine_similarity(a, b), [[2 ** -0.5, -1.0], [0.0, 0.0]], rtol=1e-6)


def test_mask_ious_and_encoding():
    masks = np.zeros((3, 6, 8), bool)
    masks[0, :3, :4] = True  # 12 pixels
    masks[1, :3, 2:6] = True  # overlaps 0 by 6 pixels
    masks[2, 4:, 6:] = True
    rles = encode_frame_masks(masks)
    assert all(isinstance(r["counts"], str) and r["size"] == [6, 8] for r in rles)
    assert np.array_equal(decode_rle(rles[1]).astype(bool), masks[1])
    expected = np.array([[1, 6 / 18, 0], [6 / 18, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(mask_iou(rles, rles), expected, rtol=1e-6)
    np.testing.assert_allclose(overlapping_mask_iou(rles, rles), expected, rtol=1e-6)
    np.testing.assert_allclose(coarse_mask_iou(masks), expected, rtol=1e-6)  # small: pixel by pixel
    probs = masks.astype(np.float32) * 0.6  # probabilities: > 0.5 is foreground, as official
    assert encode_frame_masks(probs) == rles


def test_overlapping_mask_iou_is_exact():
    rng = np.random.default_rng(0)
    masks = np.zeros((6, 30, 40), bool)
    for m in masks:
        y, x = rng.integers(0, 20), rng.integers(0, 30)
        m[y : y + rng.integers(2, 10), x : x + rng.integers(2, 10)] = True
    masks[5] = False  # an empty mask
    rles = encode_masks(masks)
    exact = mask_iou(rles[:3], rles[3:])
    assert np.array_equal(overlapping_mask_iou(rles[:3], rles[3:]), exact)
    full = mask_iou(rles, rles)
    assert np.array_equal(overlapping_mask_iou(rles, rles), full) and (full[~np.eye(6, dtype=bool)] > 0).any()


def test_unpack_instances_copies_to_numpy_and_selects():
    inst = Instances((4, 5), boxes=torch.tensor([[0, 0, 2, 2], [1, 1, 3, 3.0]]),
                     scores=torch.tensor([0.9, 0.4]), classes=torch.tensor([2, 0]),
                     embeddings=torch.ones(2, 3), masks=torch.zeros(2, 4, 5, dtype=torch.bool))
    dets = unpack_instances(inst)
    assert isinstance(dets, TrackerDetections) and len(dets) == 2
    assert dets.masks.dtype == np.bool_ and dets.classes.dtype == np.int64 and dets.embeddings.shape == (2, 3)
    picked = dets.select(np.array([1]))
    assert picked.scores.tolist() == pytest.approx([0.4]) and picked.boxes.tolist() == [[1, 1, 3, 3]]
    assert dets.select(np.arange(2)) is dets
    empty = unpack_instances(inst[torch.zeros(2, dtype=torch.bool)])
    assert len(empty) == 0 and empty.masks.shape == (0, 4, 5)


def test_track_scores_and_results_entry():
    track = _track(scores=(0.2, 0.6), masks={1: {"size": [2, 2], "counts": "04"}})
    assert track.mean_score == pytest.approx(0.4) and track.score == pytest.approx(0.4)
    assert track.last_mask == {"size": [2, 2], "counts": "04"}
    track.video_score = 0.1
    entry = track_to_result(track, video_id=7, num_frames=3)
    assert entry == {"video_id": 7, "score": 0.1, "category_id": 2,
                     "segmentations": [None, {"size": [2, 2], "counts": "04"}, None]}
    assert track_to_result(track, video_id=7, num_frames=3, category_ids=[10, 20])["category_id"] == 20
    assert _track(scores=()).score == 0.0


def test_spilled_tracks_round_trip_and_keep_appending():
    store = SpilledTracks()
    assert len(store) == 0 and list(store) == []

    def make(i):
        return _track(track_id=i, first_frame=i, masks={i: {"size": [2, 2], "counts": "04"}})

    store.extend([make(1), make(2)])
    assert [t.track_id for t in store] == [1, 2]
    store.extend([make(3)])  # appending after a read must not overwrite
    tracks = list(store)
    assert [t.track_id for t in tracks] == [1, 2, 3] and len(store) == 3
    assert tracks[2].masks == {3: {"size": [2, 2], "counts": "04"}} and tracks[0].box.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("name", sorted(TRACKERS))
def test_every_tracker_follows_the_protocol(name, frame):
    spec = TRACKERS[name]
    options = spec.options_class()
    assert dataclasses.is_dataclass(options) and spec.options_class.__dataclass_params__.frozen
    tracker = build_tracker(name)
    assert isinstance(tracker, spec.tracker_class) and isinstance(tracker, Tracker)
    assert tracker.options == options
    emb = np.eye(8, dtype=np.float32)
    first = tracker.update(frame([((2, 2, 12, 12), 1, 0.9, emb[0]), ((40, 5, 60, 25), 2, 0.8, emb[1])]), 0)
    assert [t.track_id for t in first] == [1, 2] and all(0 in t.masks for t in first)
    second = tracker.update(frame([((3, 2, 13, 12), 1, 0.7, emb[0])]), 1)
    assert [t.track_id for t in second] == [1] and 1 in second[0].masks
    assert tracker.update(frame([]), 2) == []
    final = tracker.finalize()
    assert [t.track_id for t in final] == [1, 2] and final[0].scores == pytest.approx([0.9, 0.7])


def test_tracker_table_and_build_errors():
    assert set(TRACKERS) == {"default", "crossvis", "masktrack", "quasi_dense"}
    assert isinstance(build_tracker("crossvis"), CrossVISTracker)
    assert build_tracker("default", {"max_age": 3}).options.max_age == 3
    assert build_tracker("default", DefaultTrackerOptions(max_age=4)).options.max_age == 4
    with pytest.raises(ConfigError, match="choose one of: default, crossvis, masktrack, quasi_dense"):
        build_tracker("sort")
    with pytest.raises(ConfigError, match="takes DefaultTrackerOptions, got CrossVISTrackerOptions"):
        build_tracker("default", CrossVISTrackerOptions())
    with pytest.raises(ConfigError, match="tracker 'crossvis' options: new_track_threshold"):
        build_tracker("crossvis", {"speed": 2})
    with pytest.raises(ConfigError, match=r"new_track_threshold must lie in \[-1, 2\]"):
        CrossVISTrackerOptions(new_track_threshold=3)


def test_command_line_options_are_checked():
    assert tracker_options("default")["max_age"] == DefaultTrackerOptions().max_age
    items = ["max_age=60", "new_track_score=1", "duplicates_across_classes=true"]
    options = parse_tracker_options("default", items)
    assert options == DefaultTrackerOptions(max_age=60, new_track_score=1.0, duplicates_across_classes=True)
    assert isinstance(options.new_track_score, float)
    assert isinstance(DefaultTracker(options).options.max_age, int)
    assert parse_tracker_options("crossvis", []) == CrossVISTrackerOptions()
    for bad, message in [
        ("max_age", "expected KEY=VALUE"),
        ("colour=red", "unknown config key 'tracker.colour'.*tracker 'default' options: match_threshold, "),
        ("max_age=1.5", "'tracker.max_age' must be int"),
        ("duplicates_across_classes=1", "must be bool"),
        ("max_age=-2", "max_age must be >= 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_tracker_options("default", [bad])
