"""streamvis' default tracker (tracking/default.py) on hand-built detection sequences."""

from __future__ import annotations

import numpy as np
import pytest

from streamvis.data.masks import decode_rle
from streamvis.errors import ConfigError
from streamvis.tracking import CrossVISTracker, DefaultTracker, DefaultTrackerOptions


def _run(frames, make, **kwargs):
    tracker = DefaultTracker(DefaultTrackerOptions(**kwargs))
    for index, detections in enumerate(frames):
        tracker.update(make(detections), index)
    return tracker.finalize()


def _x_center(track, frame_index):
    mask = decode_rle(track.masks[frame_index])
    return float(np.flatnonzero(mask.any(axis=0)).mean())


def test_crossing_objects_keep_identities(frame, emb):
    """Two same-class objects cross (boxes overlap mid-way); noisy but distinct looks keep them apart."""
    frames = []
    for t in range(7):
        a, b = 5 + 9 * t, 59 - 9 * t
        frames.append(
            [
                ([a, 10, a + 16, 30], 0, 0.9, emb(0, noise=0.15, seed=t)),
                ([b, 14, b + 16, 34], 0, 0.8, emb(1, noise=0.15, seed=100 + t)),  # mask IoU <= 0.67
            ]
        )
    tracks = _run(frames, frame)
    assert len(tracks) == 2 and all(len(t.scores) == 7 for t in tracks)
    assert [_x_center(tracks[0], t) for t in (0, 6)] == pytest.approx([12.5, 66.5])
    assert [_x_center(tracks[1], t) for t in (0, 6)] == pytest.approx([66.5, 12.5])


def test_exact_swap_follows_embeddings(frame, emb):
    """Where the official rule ties and drops an object, the Hungarian match keeps both right."""
    left, right = [5, 10, 25, 30], [50, 10, 70, 30]
    frames = [
        [(left, 0, 0.9, emb(0)), (right, 0, 0.8, emb(1))],
        [(right, 0, 0.9, emb(0)), (left, 0, 0.8, emb(1))],
    ]
    tracks = _run(frames, frame)
    assert len(tracks) == 2 and all(sorted(t.masks) == [0, 1] for t in tracks)
    assert _x_center(tracks[0], 1) == pytest.approx(59.5) and _x_center(tracks[1], 1) == pytest.approx(14.5)


def test_ambiguous_crossing_keeps_both_detections(frame, emb):
    look = np.ones(8, np.float32)
    frames = [
        [([0, 10, 20, 30], 0, 0.9, look), ([60, 10, 80, 30], 0, 0.8, look)],
        [([30, 10, 50, 30], 0, 0.9, look), ([31, 10, 51, 30], 0, 0.8, look)],
    ]
    official = CrossVISTracker()
    ours = DefaultTracker(DefaultTrackerOptions(duplicate_iou=0.99))
    for index, detections in enumerate(frames):
        official.update(frame(detections), index)
        ours.update(frame(detections), index)
    assert sum(1 in t.masks for t in official.finalize()) == 1
    assert sum(1 in t.masks for t in ours.finalize()) == 2


@pytest.mark.parametrize(("max_age", "expected_tracks"), [(5, 1), (2, 2)])
def test_occlusion_gap_reidentifies_within_max_age(frame, emb, max_age, expected_tracks):
    frames = [[([0, 0, 15, 15], 0, 0.8, emb(0, noise=0.1, seed=1))]] * 2
    frames += [[]] * 3 + [[([55, 20, 70, 35], 0, 0.7, emb(0, noise=0.1, seed=2))]]  # back, elsewhere
    tracks = _run(frames, frame, max_age=max_age)
    assert len(tracks) == expected_tracks
    assert sorted(tracks[-1].masks) == ([0, 1, 5] if expected_tracks == 1 else [5])


def test_new_object_with_another_look_gets_a_new_track(frame, emb):
    first = [([10, 10, 30, 30], 0, 0.9, emb(0))]
    # cosine 0, box and mask IoU 0.33: 0.8 * 0.33 + 0.25 < 0.65, a new object nearby
    assert len(_run([first, [([20, 10, 40, 30], 0, 0.9, emb(3))]], frame)) == 2
    # the same place (IoU 0.82) and class outweigh a changed look: the track continues
    assert len(_run([first, [([12, 10, 32, 30], 0, 0.9, emb(3))]], frame)) == 1
    # ... but not with another class as well (-0.25 instead of +0.25)
    assert len(_run([first, [([12, 10, 32, 30], 1, 0.9, emb(3))]], frame)) == 2


def test_class_is_a_score_weighted_vote(frame, emb):
    box = [10, 10, 30, 30]
    frames = [[(box, 2, 0.5, emb(0))], [(box, 4, 0.3, emb(0))], [(box, 4, 0.3, emb(0))]]
    (track,) = _run(frames, frame)
    assert track.class_votes == pytest.approx({2: 0.5, 4: 0.6}) and track.category == 4
    (track,) = _run(frames[:2], frame)
    assert track.category == 2


def test_duplicates_are_suppressed(frame, emb):
    frames = [
        [
            ([10, 10, 30, 30], 0, 0.6, emb(0)),
            ([10, 10, 30, 31], 0, 0.9, emb(1)),  # the same object again, higher score: mask IoU 0.95
            ([11, 10, 30, 31], 1, 0.7, emb(1)),  # ... and as another class
            ([50, 5, 60, 15], 0, 0.5, emb(2)),
        ]
    ]
    tracks = _run(frames, frame)
    assert sorted((t.category, round(t.score, 2)) for t in tracks) == [(0, 0.5), (0, 0.9), (1, 0.7)]
    tracks = _run(frames, frame, duplicates_across_classes=True)
    assert sorted((t.category, round(t.score, 2)) for t in tracks) == [(0, 0.5), (0, 0.9)]
    assert len(_run(frames, frame, duplicate_iou=1.0)) == 4
    assert len(_run(frames, frame, min_score=0.55)) == 2  # 0.9 and 0.7 remain


def test_low_scored_detections_extend_tracks_but_never_start_one(frame, emb):
    box, far = [10, 10, 30, 30], [50, 5, 70, 25]
    frames = [
        [(box, 0, 0.8, emb(0)), (far, 1, 0.2, emb(1))],  # a confident object and a weak stray one
        [(box, 0, 0.25, emb(0)), (far, 1, 0.2, emb(1))],  # the object scores low for a frame
        [(box, 0, 0.7, emb(0))],
    ]
    (track,) = _run(frames, frame, new_track_score=0.3)
    assert sorted(track.masks) == [0, 1, 2] and track.scores == pytest.approx([0.8, 0.25, 0.7])
    assert len(_run(frames, frame)) == 2  # default 0: the stray detection starts a track too
    assert _run([[(box, 0, 0.2, emb(0))]], frame, new_track_score=0.3) == []


def test_length_weight_ranks_fragments_below_whole_tracks(frame, emb):
    whole, fragment = [10, 10, 30, 30], [50, 5, 70, 25]
    frames = [[(whole, 0, 0.6, emb(0))] for _ in range(4)]
    frames[1] = frames[1] + [(fragment, 1, 0.9, emb(1))]
    plain = {t.category: t.score for t in _run(frames, frame, length_weight=0.0)}
    assert plain == pytest.approx({0: 0.6, 1: 0.9})  # the official mean: the fragment ranks first
    default = {t.category: t.score for t in _run(frames, frame)}
    assert default == pytest.approx({0: 0.6, 1: 0.9 * (1 / 4) ** DefaultTrackerOptions().length_weight})
    weighted = {t.category: t.score for t in _run(frames, frame, length_weight=0.5)}
    assert weighted == pytest.approx({0: 0.6, 1: 0.9 * (1 / 4) ** 0.5})
    tracker = DefaultTracker(DefaultTrackerOptions(length_weight=0.5))
    for index, detections in enumerate(frames):
        tracker.update(frame(detections), index)
    first = [t.score for t in tracker.finalize()]
    assert [t.score for t in tracker.finalize()] == first  # finalize twice: same scores


def test_embedding_is_a_normalized_moving_average(frame, emb):
    tracker = DefaultTracker(DefaultTrackerOptions(embedding_momentum=0.5))
    box = [10, 10, 30, 30]
    tracker.update(frame([(box, 0, 0.9, 3 * emb(0))]), 0)
    (track,) = tracker.update(frame([(box, 0, 0.9, 2 * emb(1))]), 1)
    assert track.embedding[:2] == pytest.approx([np.sqrt(0.5), np.sqrt(0.5)], abs=1e-6)
    assert track.score == pytest.approx(0.9)


def test_empty_frames_and_results(frame):
    tracker = DefaultTracker()
    assert tracker.update(frame([]), 0) == [] and tracker.finalize() == []


def test_options_are_checked():
    for bad in ({"embedding_momentum": 1.5}, {"max_age": -1}, {"duplicate_iou": -0.1}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            DefaultTrackerOptions(**bad)
