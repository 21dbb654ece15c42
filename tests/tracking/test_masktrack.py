"""The official MaskTrack R-CNN association: golden replay (golden.md (b)) and hand-built cases."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.conftest import require_shared

from streamvis.errors import ConfigError
from streamvis.models.masktrack.rule_weights import fill_with_rule
from streamvis.models.masktrack.track_head import TrackHead
from streamvis.ops.boxes import box_iou
from streamvis.structures import Instances
from streamvis.tracking.masktrack import (
    MaskTrackAssociation,
    MaskTrackOptions,
    MaskTrackTracker,
    majority_label,
)

GOLDEN_DIR = "reference/masktrack"


# ------------------------------------------------------------------------------------------------
# Golden replay
# ------------------------------------------------------------------------------------------------


def legacy_paste(mask_logits: np.ndarray, boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Official ``FCNMaskHead.get_seg_masks`` paste (facts.md s.7.8): box truncated to int, the
    28x28 probabilities resized bilinearly (half-pixel centres) to ``x2-x1+1`` x ``y2-y1+1``,
    thresholded at > 0.5. A test-side reference for the two-stage core's legacy paste."""
    height, width = image_size
    out = np.zeros((len(boxes), height, width), dtype=bool)
    probs = torch.from_numpy(mask_logits.astype(np.float32)).sigmoid()
    for i, box in enumerate(boxes[:, :4].astype(np.int32)):
        w, h = max(box[2] - box[0] + 1, 1), max(box[3] - box[1] + 1, 1)
        resized = F.interpolate(probs[i][None, None], size=(int(h), int(w)), mode="bilinear",
                                align_corners=False)[0, 0]
        out[i, box[1]:box[1] + h, box[0]:box[0] + w] = (resized > 0.5).numpy()
    return out


@pytest.fixture(scope="module")
def golden():
    arrays = np.load(require_shared(f"{GOLDEN_DIR}/golden_assoc.npz"))
    rles = json.loads(require_shared(f"{GOLDEN_DIR}/golden_assoc_frame_rles.json").read_text())
    results = json.loads(require_shared(f"{GOLDEN_DIR}/golden_assoc_results.json").read_text())
    return arrays, rles, results


@pytest.fixture(scope="module")
def replay(golden):
    """Run the tracker over the golden videos (one tracker per video); record every frame."""
    g, _, _ = golden
    head = fill_with_rule(TrackHead(), "track_head.")
    image_size = tuple(int(v) for v in g["ori_hw"])
    frames, results = {}, []
    trackers: dict[int, MaskTrackTracker] = {}
    for video, frame in g["img_ids"].tolist():
        key = f"v{video}_f{frame}"
        tracker = trackers.setdefault(video, MaskTrackTracker())
        memory_before = tracker.association.embeddings  # updated in place: copied below
        memory_before = None if memory_before is None else memory_before.clone()
        boxes = g[f"{key}_boxes"]
        with torch.no_grad():
            embeddings = head.embed(torch.from_numpy(g[f"{key}_roi_feats"].astype(np.float32)))
        instances = Instances(
            image_size, boxes=torch.from_numpy(boxes[:, :4]), scores=torch.from_numpy(boxes[:, 4]),
            classes=torch.from_numpy(g[f"{key}_labels"]), embeddings=embeddings,
            masks=torch.from_numpy(legacy_paste(g[f"{key}_mask_logits"], boxes, image_size)))
        active = tracker.update(instances, frame)
        frames[key] = dict(step=tracker.last_step, active=active, embeddings=embeddings.numpy(),
                           memory_before=None if memory_before is None else memory_before.numpy(),
                           memory=tracker.association)
        frames[key]["mem_boxes"] = (tracker.association.boxes.numpy().copy()
                                    if len(tracker.association) else np.zeros((0, 4)))
        frames[key]["mem_labels"] = (tracker.association.labels.numpy().copy()
                                     if len(tracker.association) else np.zeros((0,), np.int64))
    for video in sorted(trackers):
        num_frames = int((g["img_ids"][:, 0] == video).sum())
        results += trackers[video].results(video_id=video + 1, num_frames=num_frames)
    return frames, results


def _keys(g):
    return [f"v{v}_f{t}" for v, t in g["img_ids"].tolist()]


def test_golden_scores_per_frame(golden, replay):
    g, _, _ = golden
    frames, _ = replay
    checked = 0
    for key in _keys(g):
        step = frames[key]["step"]
        if f"{key}_comp_scores" not in g.files:
            assert step.comp_scores is None
            continue
        assert np.abs(frames[key]["embeddings"] - g[f"{key}_det_embed"]).max() <= 1e-5
        assert np.abs(frames[key]["memory_before"] - g[f"{key}_mem_embed"]).max() <= 1e-5
        assert np.abs(step.match_scores.numpy() - g[f"{key}_match_score"]).max() <= 1e-4
        assert np.abs(step.comp_scores.numpy() - g[f"{key}_comp_scores"]).max() <= 1e-4
        checked += 1
    assert checked == 6  # v0 frames 1-5 and v1 frame 3 (v1 frame 1 follows an empty first frame: all new)


def test_golden_ids_memory_and_per_frame_results(golden, replay):
    g, rles, _ = golden
    frames, _ = replay
    for key in _keys(g):
        frame, step = frames[key], frames[key]["step"]
        assert step.official_ids.tolist() == g[f"{key}_det_obj_ids"].tolist(), key
        assert np.array_equal(frame["mem_boxes"], g[f"{key}_mem_boxes"][:, :4]), key
        assert np.array_equal(frame["mem_labels"], g[f"{key}_mem_labels"]), key
        result_ids = [track.track_id - 1 for track in frame["active"]]
        assert result_ids == g[f"{key}_result_ids"].tolist() == rles[key]["result_ids"], key
        boxes = g[f"{key}_boxes"]
        winners = [det for _, det in step.outputs]
        assert np.array_equal(boxes[winners], g[f"{key}_result_boxes"]), key
        assert g[f"{key}_labels"][winners].tolist() == g[f"{key}_result_labels"].tolist(), key
        assert [t.masks[int(key.split("_f")[1])] for t in frame["active"]] == rles[key]["rle"], key


def test_golden_memory_sources(golden, replay):
    """Which detection's embedding each memory row holds after each frame (official mem_src)."""
    g, _, _ = golden
    frames, _ = replay
    source: dict[int, list] = {}
    for key in _keys(g):
        video, frame = (int(v) for v in key[1:].split("_f"))
        rows = source.setdefault(video, [])
        if frame == 0:
            rows.clear()
        for track, det in frames[key]["step"].outputs:
            if track == len(rows):
                rows.append(None)
            rows[track] = [frame, det]
        assert rows == g[f"{key}_mem_src"].tolist(), key


def test_golden_results_entries(golden, replay):
    _, _, official = golden
    _, results = replay
    assert len(results) == len(official) == 10
    for ours, theirs in zip(results, official):
        assert ours["video_id"] == theirs["video_id"]
        assert ours["category_id"] == theirs["category_id"]
        assert abs(ours["score"] - theirs["score"]) <= 1e-6
        assert ours["segmentations"] == theirs["segmentations"]


def test_golden_scenario_oddities(golden, replay):
    """The documented outcomes: label frozen (C -> new track 7 at frame 4), duplicate id at frame 5."""
    g, _, _ = golden
    frames, _ = replay
    assert g["v0_f4_det_obj_ids"].tolist()[2] == 7
    assert frames["v0_f5"]["step"].official_ids.tolist() == [0, 1, 0, 3, 4, 5, 6, 2]
    assert frames["v0_f5"]["step"].track_ids.tolist() == [-1, 1, 0, 3, 4, 5, 6, 2]
    assert frames["v1_f3"]["step"].track_ids.tolist() == [1, 0]


# ------------------------------------------------------------------------------------------------
# Hand-built cases (embeddings in 4 dimensions; masks are box rectangles)
# ------------------------------------------------------------------------------------------------

SIZE = (60, 100)


def frame(dets) -> Instances:
    """dets: list of (box, label, score, embedding)."""
    masks = torch.zeros((len(dets), *SIZE), dtype=torch.bool)
    for i, (box, *_rest) in enumerate(dets):
        masks[i, box[1]:box[3] + 1, box[0]:box[2] + 1] = True
    return Instances(SIZE, boxes=torch.tensor([d[0] for d in dets], dtype=torch.float32).reshape(-1, 4),
                     classes=torch.tensor([d[1] for d in dets], dtype=torch.int64),
                     scores=torch.tensor([d[2] for d in dets], dtype=torch.float32),
                     embeddings=torch.tensor([d[3] for d in dets], dtype=torch.float32).reshape(-1, 4),
                     masks=masks)


E = [[10.0, 0, 0, 0], [0, 10.0, 0, 0], [0, 0, 10.0, 0], [0, 0, 0, 10.0]]
BOX_A, BOX_B = [10, 10, 29, 29], [60, 10, 79, 29]


def test_empty_frames_and_all_new_objects():
    tracker = MaskTrackTracker()
    assert tracker.update(frame([]), 0) == []
    assert len(tracker.association) == 0
    active = tracker.update(frame([(BOX_A, 0, 0.9, E[0]), (BOX_B, 1, 0.8, E[1])]), 1)
    assert [t.track_id for t in active] == [1, 2]  # memory empty: all new, in detection order
    assert tracker.update(frame([]), 2) == []
    assert len(tracker.association) == 2  # an empty frame keeps the memory
    # orthogonal looks, far away, other labels: S + 2 IoU + 10 same < 10 for every track -> new
    active = tracker.update(frame([(BOX_A, 2, 0.7, E[2])]), 3)
    assert [t.track_id for t in active] == [3]
    tracks = tracker.finalize()
    assert [t.track_id for t in tracks] == [1, 2, 3]
    assert [sorted(t.masks) for t in tracks] == [[1], [1], [3]]


def test_reidentification_after_a_gap_and_never_expiring_tracks():
    tracker = MaskTrackTracker()
    tracker.update(frame([(BOX_A, 0, 0.9, E[0])]), 0)
    for index in range(1, 6):
        tracker.update(frame([(BOX_B, 1, 0.9, E[1])]), index)
    active = tracker.update(frame([(BOX_A, 0, 0.6, E[0])]), 6)
    assert [t.track_id for t in active] == [1]
    results = tracker.results(video_id=3, num_frames=7)
    assert results[0]["video_id"] == 3
    assert [s is not None for s in results[0]["segmentations"]] == [True] + [False] * 5 + [True]
    assert results[0]["score"] == pytest.approx(float(np.float32([0.9, 0.6]).mean()), abs=0)


def test_conflict_official_drops_the_loser_and_the_fix_makes_a_track():
    first = frame([(BOX_A, 0, 0.9, E[0])])
    # two claimants of track 1: comp 11.31 (listed first) loses to comp 11.95 (the later one wins)
    second = frame([(BOX_A, 0, 0.5, [5.0, 0, 0, 0]), (BOX_A, 0, 0.95, E[0])])
    official = MaskTrackTracker()
    official.update(first, 0)
    active = official.update(second, 1)
    assert official.last_step.official_ids.tolist() == [0, 0]  # the duplicate the official code emits
    assert official.last_step.track_ids.tolist() == [-1, 0]
    assert [(t.track_id, t.scores[-1]) for t in active] == [(1, pytest.approx(0.95))]
    assert len(official.association) == 1  # the loser does not start a track
    fixed = MaskTrackTracker(MaskTrackOptions(losers_start_tracks=True))
    fixed.update(first, 0)
    active = fixed.update(second, 1)
    assert fixed.last_step.track_ids.tolist() == [1, 0]
    assert sorted(t.track_id for t in active) == [1, 2]
    assert len(fixed.association) == 2


def test_conflict_tie_goes_to_the_first_detection():
    tracker = MaskTrackTracker()
    tracker.update(frame([(BOX_A, 0, 0.9, E[0])]), 0)
    tracker.update(frame([(BOX_A, 0, 0.8, E[0]), (BOX_A, 0, 0.8, E[0])]), 1)
    assert tracker.last_step.track_ids.tolist() == [0, -1]


def test_stored_label_is_frozen_unless_update_label():
    def run(options):
        tracker = MaskTrackTracker(options)
        tracker.update(frame([(BOX_A, 0, 0.9, E[0])]), 0)
        # a strong look (S = 100) keeps the track despite the new label 5
        tracker.update(frame([(BOX_A, 5, 0.9, E[0])]), 1)
        # a weak look (S = 1) with label 5: joins only if the stored label is 5 too
        tracker.update(frame([(BOX_A, 5, 0.9, [0.1, 0, 0, 0])]), 2)
        return tracker
    official = run(MaskTrackOptions())
    assert official.last_step.track_ids.tolist() == [1]  # stored label still 0: a new track
    assert official.association.labels.tolist() == [0, 5]
    fixed = run(MaskTrackOptions(update_label=True))
    assert fixed.last_step.track_ids.tolist() == [0]
    tracks = fixed.finalize()
    assert tracks[0].category == 5  # labels 0, 5, 5: majority vote


def test_comp_scores_formula_by_hand():
    assoc = MaskTrackAssociation()
    match = torch.tensor([[0.0, 2.0, -1.0]])
    comp = assoc.comp_scores(match, torch.tensor([0.5]), torch.tensor([[0.5, 0.0]]),
                             torch.tensor([[0.0, 1.0]]))
    log_prob = torch.log_softmax(match, dim=1)
    expected = log_prob + np.log(0.5) + 2 * torch.tensor([[0.0, 0.5, 0.0]]) + 10 * torch.tensor([[1.0, 0, 1]])
    assert torch.allclose(comp, expected)


def test_legacy_iou_plus_one():
    a = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    b = torch.tensor([[5.0, 0.0, 14.0, 9.0], [10.0, 0.0, 19.0, 9.0]])
    assert torch.allclose(box_iou(a, b, pixel_offset=1.0, eps=None), torch.tensor([[50.0 / 150.0, 0.0]]))
    assert torch.allclose(box_iou(a, b, pixel_offset=0.0, eps=None), torch.tensor([[36.0 / 126.0, 0.0]]))


def test_majority_label_ties_go_to_the_smallest():
    assert majority_label([5, 5, 28, 28]) == 5
    assert majority_label([7, 13, 13]) == 13


def test_options_are_frozen_and_checked():
    options = MaskTrackOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.update_label = True  # type: ignore[misc]
    with pytest.raises(ConfigError, match="no option max_age"):
        MaskTrackOptions.from_kwargs(max_age=3)
    with pytest.raises(ConfigError, match="3 weights"):
        MaskTrackOptions(match_coeff=(1.0, 2.0))
    tracker = MaskTrackTracker()
    tracker.update(frame([(BOX_A, 0, 0.9, E[0])]), 0)
    with pytest.raises(ValueError, match="one video"):
        tracker.update(frame([(BOX_A, 0, 0.9, E[0])]), 0)


def test_bad_instances_are_refused_with_a_clear_message():
    tracker = MaskTrackTracker()
    tracker.update(frame([(BOX_A, 0, 0.9, E[0])]), 0)
    no_embeddings = frame([(BOX_A, 0, 0.9, E[0])])
    no_embeddings.remove("embeddings")
    with pytest.raises(ValueError, match="needs the 'embeddings' field"):
        tracker.update(no_embeddings, 1)
    wider = frame([(BOX_A, 0, 0.9, E[0])])
    wider.remove("embeddings")
    wider.embeddings = torch.zeros(1, 6)
    with pytest.raises(ValueError, match="size 6, but the tracks in memory have embeddings of size 4"):
        tracker.update(wider, 1)


def _official_loop(comp: torch.Tensor) -> list[int]:
    """facts.md s.3 step 5, literally: det_obj_ids of one frame (new ids from the memory length)."""
    num_tracks = comp.shape[1] - 1
    ids, best, memory = [], [-100.0] * num_tracks, num_tracks
    for det, column in enumerate(comp.argmax(dim=1).tolist()):
        if column == 0:
            ids.append(memory)
            memory += 1
        elif float(comp[det, column]) > best[column - 1]:
            ids.append(column - 1)
            best[column - 1] = float(comp[det, column])
        else:
            ids.append(-1)
    return ids


@pytest.mark.parametrize("seed", range(40))
def test_resolution_equals_the_literal_official_loop(seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(1, 9)), int(rng.integers(1, 6))
    comp = torch.from_numpy(rng.integers(-3, 4, size=(n, 1 + m)).astype(np.float32))  # many ties
    assoc = MaskTrackAssociation()
    step = assoc._resolve(comp)
    assert step.official_ids.tolist() == _official_loop(comp)
    kept = [(t, d) for t, d in step.outputs]
    assert len({t for t, _ in kept}) == len(kept)  # one output per track
    assert sorted(d for _, d in kept) == [d for d, t in enumerate(step.track_ids.tolist()) if t >= 0]
    fixed = MaskTrackAssociation(MaskTrackOptions(losers_start_tracks=True))._resolve(comp)
    assert (fixed.track_ids >= 0).all()  # nobody is dropped
    assert fixed.new_tracks == list(range(m, m + len(fixed.new_tracks)))  # consecutive, in order


def test_registered_with_frozen_options_and_checked_command_line_options():
    from streamvis.tracking import build_tracker, parse_tracker_options

    tracker = build_tracker("masktrack", {"update_label": True})
    assert isinstance(tracker, MaskTrackTracker) and tracker.options.update_label
    with pytest.raises(dataclasses.FrozenInstanceError):
        tracker.options.update_label = False  # type: ignore[misc]
    options = parse_tracker_options("masktrack", ["losers_start_tracks=true", "match_coeff=[1, 2, 5]"])
    assert options == MaskTrackOptions(losers_start_tracks=True, match_coeff=(1.0, 2.0, 5.0))
    with pytest.raises(ConfigError, match="tracker 'masktrack' options: match_coeff") as err:
        parse_tracker_options("masktrack", ["max_age=3"])
    assert "max_age" in str(err.value)
