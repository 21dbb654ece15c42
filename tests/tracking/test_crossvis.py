"""The official CrossVIS association rule on hand-built detection sequences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import require_shared

from streamvis.data.masks import decode_rle
from streamvis.structures import Instances
from streamvis.tracking import CrossVISTracker, build_tracker, track_to_result


def _run(frames, make):
    tracker = CrossVISTracker()
    for index, detections in enumerate(frames):
        tracker.update(make(detections), index)
    return tracker.finalize()


def test_two_classes_moving_objects(frame, emb):
    frames = [
        [([10 + 2 * t, 5, 30 + 2 * t, 25], 0, 0.9 - 0.1 * t, emb(0)), ([50, 10, 70, 30], 3, 0.5, emb(1))]
        for t in range(3)
    ]
    tracks = _run(frames, frame)
    assert [t.track_id for t in tracks] == [1, 2]
    assert tracks[0].score == pytest.approx(0.8, abs=1e-6)  # mean of 0.9, 0.8, 0.7
    entry = track_to_result(tracks[1], video_id=7, num_frames=4, category_ids=None)
    assert entry["video_id"] == 7 and entry["category_id"] == 4 and entry["score"] == pytest.approx(0.5)
    assert entry["segmentations"][3] is None and len(entry["segmentations"]) == 4
    mask = decode_rle(entry["segmentations"][2])
    assert mask.shape == (40, 80) and mask.sum() == 400 and mask[10:30, 50:70].all()
    mapped = track_to_result(tracks[1], video_id=7, num_frames=3, category_ids=[11, 12, 13, 14])
    assert mapped["category_id"] == 14


def test_new_track_threshold_is_0_4(frame, emb):
    """cosine + IoU against the last member: exactly 0.4 matches, just below starts a new track."""
    far = [60, 20, 70, 30]  # no overlap with the first box: the score is the cosine alone
    for cosine, expected_tracks in ((0.4, 1), (0.399, 2)):
        second = np.array([cosine, np.sqrt(1 - cosine**2), 0, 0, 0, 0, 0, 0], np.float32)
        tracks = _run([[([0, 0, 10, 10], 1, 0.9, emb(0))], [(far, 1, 0.9, second)]], frame)
        assert len(tracks) == expected_tracks


def test_iou_adds_to_cosine(frame, emb):
    half = np.array([0.2, np.sqrt(1 - 0.04), 0, 0, 0, 0, 0, 0], np.float32)  # cosine 0.2 < 0.4
    tracks = _run([[([0, 0, 20, 20], 1, 0.9, emb(0))], [([0, 0, 20, 10], 1, 0.9, half)]], frame)  # IoU 0.5
    assert len(tracks) == 1 and tracks[0].last_frame == 1


def test_classes_never_match_and_category_is_first_members(frame, emb):
    same = ([10, 10, 30, 30], 2, 0.9, emb(0))
    other_class = ([10, 10, 30, 30], 5, 0.8, emb(0))
    tracks = _run([[same], [other_class], [same]], frame)
    assert [(t.category, sorted(t.masks)) for t in tracks] == [(2, [0, 2]), (5, [1])]


def test_conflict_goes_to_higher_match_and_loser_is_dropped(frame, emb):
    """Two detections claim one track: the better match keeps it; the other starts no track (official)."""
    first = [([10, 10, 30, 30], 0, 0.9, emb(0))]
    second = [
        ([40, 10, 60, 30], 0, 0.95, emb(0)),  # higher detection score, but no overlap: match 1.0
        ([12, 10, 32, 30], 0, 0.60, emb(0)),  # overlapping: match 1.0 + IoU
    ]
    tracks = _run([first, second], frame)
    assert len(tracks) == 1
    assert tracks[0].scores == pytest.approx([0.9, 0.6])
    assert decode_rle(tracks[0].masks[1])[20, 31]  # the overlapping detection's mask
    reverse = _run([first, second[::-1]], frame)  # claim order does not change the winner
    assert reverse[0].scores == pytest.approx([0.9, 0.6])


def test_equal_claims_keep_the_first(frame, emb):
    first = [([10, 10, 30, 30], 0, 0.9, emb(0))]
    twins = [([10, 10, 30, 30], 0, 0.3, emb(0)), ([10, 10, 30, 30], 0, 0.7, emb(0))]
    tracks = _run([first, twins], frame)
    assert len(tracks) == 1 and tracks[0].scores == pytest.approx([0.9, 0.3])


def test_occlusion_gap_and_empty_frames(frame, emb):
    """Tracks never end: an object back after a gap (different place, same look) continues its track."""
    frames = [[([0, 0, 10, 10], 0, 0.8, emb(0))], [], [], [([60, 20, 75, 35], 0, 0.6, emb(0, noise=0.05))]]
    tracker = CrossVISTracker()
    matched = [tracker.update(frame(d), i) for i, d in enumerate(frames)]
    assert [len(m) for m in matched] == [1, 0, 0, 1]
    (track,) = tracker.finalize()
    entry = track_to_result(track, video_id=1, num_frames=4)
    assert [s is None for s in entry["segmentations"]] == [False, True, True, False]
    assert entry["score"] == pytest.approx(0.7)


def test_swapping_same_class_objects_follow_embeddings(frame, emb):
    left, right = [5, 10, 25, 30], [50, 10, 70, 30]
    first = [(left, 0, 0.9, emb(0)), (right, 0, 0.8, emb(1))]
    near_swap = [([48, 10, 68, 30], 0, 0.9, emb(0)), ([7, 10, 27, 30], 0, 0.8, emb(1))]  # IoU 0.8 < cosine 1
    tracks = _run([first, near_swap], frame)
    assert len(tracks) == 2
    assert decode_rle(tracks[0].masks[1])[20, 60] and decode_rle(tracks[1].masks[1])[20, 15]


def test_exact_swap_ties_and_loses_an_object(frame, emb):
    """cosine 1 + IoU 0 ties cosine 0 + IoU 1: both detections claim track 1, the second is dropped."""
    left, right = [5, 10, 25, 30], [50, 10, 70, 30]
    first = [(left, 0, 0.9, emb(0)), (right, 0, 0.8, emb(1))]
    swapped = [(right, 0, 0.9, emb(0)), (left, 0, 0.8, emb(1))]
    tracks = _run([first, swapped], frame)
    assert len(tracks) == 2 and sorted(tracks[0].masks) == [0, 1] and sorted(tracks[1].masks) == [0]
    assert decode_rle(tracks[0].masks[1])[20, 60]


def test_crossing_objects_greedy_rule_drops_a_detection(frame, emb):
    """Where boxes coincide and looks are ambiguous, both claim one track and one object is lost."""
    look = np.ones(8, np.float32)
    frames = [
        [([0, 10, 20, 30], 0, 0.9, look), ([60, 10, 80, 30], 0, 0.8, look)],
        [([30, 10, 50, 30], 0, 0.9, look), ([31, 10, 51, 30], 0, 0.8, look)],  # crossing in the middle
    ]
    tracks = _run(frames, frame)
    assert len(tracks) == 2 and sum(1 in t.masks for t in tracks) == 1


def _reference_rule(frames):
    """The official rule written as plain loops (float64), for comparing on random sequences."""
    memory = []  # per track: list of (frame, detection, box, class, embedding)
    for f, dets in enumerate(frames):
        claims = []
        for box, cls, _score, vec in dets:
            scores = []
            for members in memory:
                _, _, last_box, last_cls, last_vec = members[-1]
                if last_cls != cls:
                    scores.append(-1.0)
                    continue
                cosine = float(np.dot(vec, last_vec) / np.linalg.norm(vec) / np.linalg.norm(last_vec))
                lt, rb = np.maximum(box[:2], last_box[:2]), np.minimum(box[2:], last_box[2:])
                inter = np.clip(rb - lt, 0, None).prod()
                area = lambda b: max(b[2] - b[0], 0) * max(b[3] - b[1], 0)  # noqa: E731
                scores.append(cosine + inter / (area(box) + area(last_box) - inter + 1e-5))
            best_score = max(scores, default=-1.0)
            claims.append(None if best_score < 0.4 else (scores.index(best_score), best_score))
        best = {}
        for d, claim in enumerate(claims):
            member = (f, d, np.asarray(dets[d][0], float), dets[d][1], np.asarray(dets[d][3], float))
            if claim is None:
                memory.append([member])
            elif claim[0] not in best or claim[1] > best[claim[0]]:
                if claim[0] in best:
                    memory[claim[0]].pop()
                memory[claim[0]].append(member)
                best[claim[0]] = claim[1]
    return [[(m[0], m[1]) for m in members] for members in memory]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_plain_loop_reference_on_random_sequences(frame, seed):
    rng = np.random.default_rng(seed)
    looks = rng.normal(size=(4, 8)).astype(np.float32)
    frames = []
    for _ in range(12):
        dets = []
        for _ in range(rng.integers(0, 5)):
            x, y = rng.uniform(0, 60), rng.uniform(0, 25)
            who = int(rng.integers(0, 4))
            vec = looks[who] + rng.normal(0, 0.6, 8).astype(np.float32)
            box = [x, y, x + rng.uniform(4, 20), y + rng.uniform(4, 15)]
            dets.append((box, who % 2, float(rng.uniform()), vec))
        frames.append(dets)
    tracker = build_tracker("crossvis")
    det_of_mask = {}
    for f, dets in enumerate(frames):
        instances = frame(dets)
        for track in tracker.update(instances, f):
            det_of_mask[(track.track_id, f)] = next(
                d for d in range(len(dets)) if np.array_equal(track.box, np.float32(dets[d][0]))
            )
    ours = [[(f, det_of_mask[(t.track_id, f)]) for f in sorted(t.masks)] for t in tracker.finalize()]
    expected = _reference_rule(frames)
    assert len(expected) > 4 and ours == expected


def test_official_detections_match_plain_loop_reference():
    """Real official R-50 detections (golden_r50.npz: many same-class, overlapping) through the rule."""
    golden = np.load(require_shared("reference/crossvis/golden_r50.npz"))
    sequence = [0, 1, 0, 1, 1]
    frames, instances = [], []
    for i in sequence:
        boxes, classes = golden[f"boxes_{i}"], golden[f"classes_{i}"]
        scores, reid = golden[f"scores_{i}"], golden[f"reid_feat_{i}"]
        frames.append([(boxes[k], int(classes[k]), float(scores[k]), reid[k]) for k in range(len(scores))])
        instances.append(
            Instances(
                (360, 640),
                boxes=torch.from_numpy(boxes),
                scores=torch.from_numpy(scores),
                classes=torch.from_numpy(classes).long(),
                embeddings=torch.from_numpy(reid),
                masks=torch.from_numpy(golden[f"masks_{i}"]).bool(),
            )
        )
    tracker = CrossVISTracker()
    ours = {}
    for f, inst in enumerate(instances):
        for track in tracker.update(inst, f):
            k = next(k for k, d in enumerate(frames[f]) if np.array_equal(track.box, d[0]))
            ours.setdefault(track.track_id, []).append((f, k))
    expected = _reference_rule(frames)
    assert [ours[t.track_id] for t in tracker.finalize()] == expected
    assert len(expected) < 13 + 27 * 3  # some detections continued tracks
    first_mask = decode_rle(tracker.finalize()[0].masks[0])
    assert np.array_equal(first_mask, golden["masks_0"][expected[0][0][1]])
