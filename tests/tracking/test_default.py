"""streamvis' default tracker (tracking/default.py) on hand-built detection sequences."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from streamvis.data.masks import decode_rle
from streamvis.errors import ConfigError
from streamvis.tracking import CrossVISTracker, DefaultTracker, DefaultTrackerOptions, track_results
from streamvis.tracking.base import unpack_instances
from streamvis.tracking.default import assign


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
            ([11, 10, 30, 31], 1, 0.7, emb(1)),  # ... and as another class: a class hypothesis
            ([50, 5, 60, 15], 0, 0.5, emb(2)),
        ]
    ]
    tracks = _run(frames, frame)
    assert sorted((t.category, round(t.score, 2)) for t in tracks) == [(0, 0.5), (0, 0.9)]
    assert tracks[0].class_votes == pytest.approx({0: 0.9, 1: 0.7})
    assert tracks[0].scores == pytest.approx([0.9])
    tracks = _run(frames, frame, duplicates_across_classes=False)  # a track per class hypothesis
    assert sorted((t.category, round(t.score, 2)) for t in tracks) == [(0, 0.5), (0, 0.9), (1, 0.7)]
    assert len(_run(frames, frame, class_merge_iou=0.99)) == 3  # IoU 0.9 < 0.99: another object
    assert len(_run(frames, frame, duplicate_iou=1.0, class_merge_iou=1.0)) == 4
    assert len(_run(frames, frame, min_score=0.55)) == 1  # 0.9 with 0.7 folded in


def test_class_hypotheses_are_entries_of_one_track(frame, emb):
    """One object whose best class flips between two classes: one track, one entry per class."""
    box, twin = [10, 10, 30, 30], [10, 10, 30, 31]  # mask IoU 0.95
    frames = [
        [(box, 2, 0.8, emb(0)), (twin, 5, 0.5, emb(0))],
        [(box, 5, 0.7, emb(0)), (twin, 2, 0.6, emb(0))],
        [(box, 2, 0.9, emb(0))],
        [(box, 2, 0.4, emb(0)), ([60, 5, 75, 20], 1, 0.3, emb(3))],  # a small, other object
    ]
    tracker = DefaultTracker(DefaultTrackerOptions(length_weight=0.0, hypothesis_share=0.2))
    live = [tracker.update(frame(d), i) for i, d in enumerate(frames)]
    assert [[t.track_id for t in tracks] for tracks in live] == [[1], [1], [1], [1, 2]]  # overlays: once
    track, other = tracker.finalize()
    assert track.class_votes == pytest.approx({2: 0.8 + 0.6 + 0.9 + 0.4, 5: 0.5 + 0.7})
    assert track.category == 2 and track.score == pytest.approx((0.8 + 0.7 + 0.9 + 0.4) / 4)
    assert track.hypotheses == pytest.approx({5: 1.2 / 4})  # mean class-5 evidence per member
    assert other.hypotheses == {}
    entries = track_results(track, video_id=9, num_frames=4, category_ids=[10, 11, 12, 13, 14, 15])
    assert [(e["category_id"], round(e["score"], 4)) for e in entries] == [(12, 0.7), (15, 0.3)]
    assert entries[1]["segmentations"] is entries[0]["segmentations"]  # the same masks, no copy
    assert all(s is not None for s in entries[0]["segmentations"])
    # the share threshold and the count limit
    for options, expected in (({"hypothesis_share": 0.4}, {}), ({"max_hypotheses": 0}, {}),
                              ({"hypothesis_share": 0.3}, {5: 1.2 / 4})):
        (track, _) = _run(frames, frame, length_weight=0.0, **options)
        assert track.hypotheses == pytest.approx(expected), options


def test_hypothesis_scores_use_the_length_weight(frame, emb):
    box, twin = [10, 10, 30, 30], [10, 10, 30, 31]
    frames = [[(box, 0, 0.8, emb(0)), (twin, 1, 0.6, emb(0))], [], [], []]
    (track,) = _run(frames, frame, length_weight=0.5)
    assert track.score == pytest.approx(0.8 * 0.5) and track.hypotheses == pytest.approx({1: 0.6 * 0.5})


def test_class_agreement_is_the_overlap_of_class_shares(frame, emb):
    box, twin = [10, 10, 30, 30], [10, 10, 30, 31]
    tracker = DefaultTracker()
    tracker.update(frame([(box, 0, 0.9, emb(0)), (twin, 1, 0.6, emb(0))]), 0)  # track shares 0.6 / 0.4
    detections = [(box, 1, 0.5, emb(0)), ([50, 5, 60, 15], 3, 0.5, emb(1))]
    objects = tracker._objects(unpack_instances(frame(detections)))
    agreement = tracker._class_agreement(objects.evidence)
    assert agreement[:, 0] == pytest.approx([0.4, 0.0])


def test_excluded_pairs_do_not_break_exact_ties():
    """Detection 0 ties exactly between tracks 0 and 1; detection 1 is below the threshold for
    both, 1e-7 apart. Assigning first and dropping weak pairs afterwards lets those 1e-7 decide
    detection 0's track; excluding them first leaves the tie to the solver's fixed order."""
    for noise in (1e-7, -1e-7):
        similarity = np.array([[0.9, 0.9], [0.1, 0.1 + noise]])
        rows, cols = assign(similarity, 0.8)
        assert rows.tolist() == [0] and cols.tolist() == [0], noise
    post_hoc = {noise: linear_sum_assignment(np.array([[0.9, 0.9], [0.1, 0.1 + noise]]), maximize=True)[1][0]
                for noise in (1e-7, -1e-7)}
    assert post_hoc == {1e-7: 0, -1e-7: 1}  # the bug the exclusion fixes
    assert assign(np.zeros((0, 3)), 0.5)[0].size == 0
    rows, cols = assign(np.array([[0.95, 0.3], [0.85, 0.9]]), 0.8)  # allowed pairs: max total
    assert (rows.tolist(), cols.tolist()) == ([0, 1], [0, 1])
    # a weak second detection that passes the threshold for track 0 only must not push the strong
    # one onto track 1 (a large negative weight for excluded pairs would: it maximizes the count)
    rows, cols = assign(np.array([[1.5, 0.81], [0.85, 0.3]]), 0.8)
    assert (rows.tolist(), cols.tolist()) == ([0], [0])


def test_tied_tracks_end_to_end(frame):
    """Two same-class tracks with mirror-image looks; a detection halfway between them ties
    exactly. Which one it joins must not depend on a second, unmatched detection."""
    delta = 1e-3
    looks = np.zeros((2, 8), np.float32)
    looks[0, :2], looks[1, :2] = (1.0, delta), (1.0, -delta)
    middle = np.zeros(8, np.float32)
    middle[0] = 1.0
    joined = set()
    for sign in (1.0, -1.0):
        stray = np.zeros(8, np.float32)
        stray[1], stray[2] = sign, 3.0  # cosine +-0.32 * delta: below the threshold for both tracks
        tracker = DefaultTracker()
        tracker.update(frame([([0, 0, 10, 10], 0, 0.9, looks[0]), ([60, 0, 70, 10], 0, 0.9, looks[1])]), 0)
        second = [([30, 0, 40, 10], 0, 0.9, middle), ([30, 20, 40, 30], 0, 0.8, stray)]
        tracks = tracker.update(frame(second), 1)
        assert [t.track_id for t in tracks] == [1, 3] or [t.track_id for t in tracks] == [2, 3]
        joined.add(tracks[0].track_id)
    assert joined == {1}  # the first track, both times


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
    for bad in ({"embedding_momentum": 1.5}, {"max_age": -1}, {"duplicate_iou": -0.1},
                {"class_merge_iou": -1.0}, {"hypothesis_share": -0.5}, {"max_hypotheses": -1},
                {"min_track_members": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            DefaultTrackerOptions(**bad)


def test_render_draws_each_object_once(frame, emb):
    """The entries of one track's class hypotheses share masks: `render` keeps the best-scored one."""
    from streamvis.viz import one_entry_per_object

    box, twin = [10, 10, 30, 30], [10, 10, 30, 31]
    frames = [[(box, 0, 0.8, emb(0)), (twin, 1, 0.7, emb(0))], [([50, 5, 70, 25], 2, 0.6, emb(1))]]
    entries = [e for t in _run(frames, frame, hypothesis_share=0.3)
               for e in track_results(t, video_id=1, num_frames=2)]
    assert [e["category_id"] for e in entries] == [1, 2, 3]
    entries = json.loads(json.dumps(entries))  # as read back from results.json: no shared lists
    kept = one_entry_per_object([(i + 1, e) for i, e in enumerate(entries)])
    assert [(tid, e["category_id"]) for tid, e in kept] == [(1, 1), (3, 3)]
    entries[1]["score"] = 0.95  # a better-scored hypothesis wins
    assert [tid for tid, _ in one_entry_per_object([(i + 1, e) for i, e in enumerate(entries)])] == [2, 3]


def test_assign_equals_scipy_maximize_ties_included():
    """`assign` solves with streamvis' scipy-equivalent solver (no scipy import for per-frame sizes):
    the pairs are scipy's ``maximize=True`` answer, exact ties included."""
    rng = np.random.default_rng(0)
    for trial in range(300):
        shape = tuple(rng.integers(1, 8, size=2))
        similarity = rng.choice([0.5, 0.7, 0.85, 0.9, 1.0], size=shape) if trial % 2 else rng.random(shape)
        allowed = similarity >= 0.6
        want_rows, want_cols = linear_sum_assignment(np.where(allowed, similarity - 0.6, 0.0), maximize=True)
        keep = allowed[want_rows, want_cols]
        rows, cols = assign(similarity, 0.6)
        assert rows.tolist() == want_rows[keep].tolist() and cols.tolist() == want_cols[keep].tolist(), trial


def test_importing_the_trackers_leaves_scipy_unloaded():
    """scipy.optimize costs ~0.9 s of start-up: predict's first frame must not wait for it."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from streamvis.tracking.default import assign; "
            "assign(np.eye(3), 0.5); print('scipy.optimize' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
