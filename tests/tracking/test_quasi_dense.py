"""The quasi-dense tracker against golden_tracker.npz (official tracker, scripted sequence) + hand cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.conftest import require_shared
from tests.tracking.conftest import make_frame

from streamvis.errors import ConfigError, StreamvisError
from streamvis.structures import Instances
from streamvis.tracking import tracker_options
from streamvis.tracking.quasi_dense import (
    QuasiDenseOptions,
    QuasiDenseTracker,
    QuasiDenseVideoTracker,
    box_iou,
)

RUNS = {"official": QuasiDenseOptions(), "short_memory": QuasiDenseOptions(memo_tracklet_frames=2)}


@pytest.fixture(scope="module")
def golden():
    return np.load(require_shared("reference/pcan/golden_tracker.npz"))


def _tag_of(tensor: torch.Tensor) -> np.ndarray:
    return tensor.flatten(1)[:, 0].numpy().astype(np.float32)


def _run_frame(tracker: QuasiDenseTracker, golden, t: int):
    boxes = torch.from_numpy(golden[f"in_f{t}_bboxes"])
    n = boxes.shape[0]
    tag = 1000.0 * t + torch.arange(n, dtype=torch.float32)
    payload = {"mask_pred": tag[:, None, None, None].expand(n, 2, 2, 2).clone(),
               "mask_feats": (tag + 0.5)[:, None, None, None].expand(n, 3, 2, 2).clone()}
    result = tracker.match(boxes, torch.from_numpy(golden[f"in_f{t}_labels"]),
                           torch.from_numpy(golden[f"in_f{t}_embeds"]), t, payload)
    stored = dict(result.payload, refine_pred=result.payload["mask_pred"][:, :1] + 0.25)
    tracker.update_memo(result, t, stored)
    return result


@pytest.mark.parametrize("run", sorted(RUNS))
def test_matches_official_sequence(golden, run):
    tracker = QuasiDenseTracker(RUNS[run])
    worst = {"scores": 0.0, "embed": 0.0, "velocity": 0.0}
    for t in range(int(golden["num_frames"])):
        def g(key, t=t):
            return golden[f"{run}_f{t}_{key}"]

        result = _run_frame(tracker, golden, t)
        np.testing.assert_array_equal(result.sort_indices.numpy(), g("sort_inds"))
        np.testing.assert_array_equal(result.valids.numpy().astype(np.uint8), g("valids"))
        np.testing.assert_array_equal(result.kept_input_indices.numpy(), g("kept_input_index"))
        np.testing.assert_array_equal(result.ids.numpy(), g("ids"), err_msg=f"frame {t} ids")
        np.testing.assert_array_equal(_tag_of(result.references["mask_pred"]), g("ref_mask_tag"))
        np.testing.assert_array_equal(_tag_of(result.references["mask_feats"]), g("ref_feat_tag"))
        np.testing.assert_array_equal(result.memo_ids.numpy(), g("memo_col_ids"))
        assert result.scores.shape == g("bisoftmax_scores").shape
        if result.scores.numel():
            err = float(np.abs(result.scores.numpy() - g("bisoftmax_scores")).max())
            worst["scores"] = max(worst["scores"], err)
        # state after update_memo, tracklets in id order
        ids = sorted(tracker.tracklets)
        np.testing.assert_array_equal(ids, g("state_ids"))
        np.testing.assert_array_equal(list(tracker.tracklets), g("state_dict_order"))
        tracklets = [tracker.tracklets[i] for i in ids]
        if tracklets:
            np.testing.assert_array_equal(torch.stack([k.box for k in tracklets]).numpy(), g("state_bbox"))
            embed = torch.stack([k.embed for k in tracklets]).numpy()
            velocity = torch.stack([k.velocity for k in tracklets]).numpy()
            worst["embed"] = max(worst["embed"], float(np.abs(embed - g("state_embed")).max()))
            worst["velocity"] = max(worst["velocity"], float(np.abs(velocity - g("state_velocity")).max()))
        np.testing.assert_array_equal([k.label for k in tracklets], g("state_label"))
        np.testing.assert_array_equal([k.last_frame for k in tracklets], g("state_last_frame"))
        np.testing.assert_array_equal([k.acc_frame for k in tracklets], g("state_acc_frame"))
        for key, name in (("mask_pred", "mask"), ("mask_feats", "feat"), ("refine_pred", "refine")):
            tags = [float(k.payload[key].flatten()[0]) for k in tracklets]
            np.testing.assert_array_equal(np.array(tags, dtype=np.float32), g(f"state_{name}_tag"))
        backdrop = tracker.backdrops[0]
        np.testing.assert_array_equal(backdrop.boxes.numpy(), g("backdrop_bboxes"))
        np.testing.assert_array_equal(backdrop.labels.numpy(), g("backdrop_labels"))
        np.testing.assert_array_equal(backdrop.embeds.numpy(), g("backdrop_embeds"))
        np.testing.assert_array_equal(_tag_of(backdrop.payload["mask_pred"]), g("backdrop_mask_tag"))
        assert len(tracker.backdrops) == int(g("num_backdrop_frames"))
        assert tracker.num_tracklets == int(g("id_counter"))
    print(run, "max abs errors:", worst)
    assert worst["scores"] <= 1e-5 and worst["embed"] <= 1e-6 and worst["velocity"] <= 1e-5


def test_iou_is_mmdet_convention():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 20.0, 20.0]])
    np.testing.assert_allclose(box_iou(a, b).numpy(), [[50 / 150, 0.0]])
    assert float(box_iou(b[1:], b[1:])) == 0.0  # zero-area box: union clamped at 1e-6, no NaN


def _embed(direction: int, dim: int = 4, scale: float = 5.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(direction), dim).float() * scale


def test_hand_built_two_objects_one_frame_and_empty_frames():
    tracker = QuasiDenseTracker()
    boxes = torch.tensor([[0, 0, 10, 10, 0.9], [50, 50, 60, 60, 0.8]])
    embeds = torch.stack([_embed(0), _embed(1)])
    first = tracker.match(boxes, torch.tensor([1, 1]), embeds, 0)
    assert first.ids.tolist() == [0, 1] and first.memo_ids.numel() == 0  # nothing to compare with
    tracker.update_memo(first, 0)
    # an empty frame: no ids, no state change (official skips the tracker)
    empty = tracker.match(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long), torch.zeros(0, 4), 1)
    tracker.update_memo(empty, 1)
    assert empty.ids.numel() == 0 and sorted(tracker.tracklets) == [0, 1] and len(tracker.backdrops) == 1
    # the objects come in swapped input order: ids follow the embeddings (ids are in sorted order)
    second = tracker.match(boxes[[1, 0]] + torch.tensor([1.0, 1, 1, 1, 0]), torch.tensor([1, 1]),
                           embeds[[1, 0]], 2)
    assert second.sort_indices.tolist() == [1, 0] and second.ids.tolist() == [0, 1]
    tracker.update_memo(second, 2)
    expected = 0.2 * _embed(0) + 0.8 * _embed(0)
    torch.testing.assert_close(tracker.tracklets[0].embed, expected)
    # velocity over 2 frames: box +1 in 2 frames, same score
    torch.testing.assert_close(tracker.tracklets[0].velocity, torch.tensor([0.5, 0.5, 0.5, 0.5, 0.0]))


def test_weak_detection_gets_minus_two_and_new_tracks_need_0_7():
    tracker = QuasiDenseTracker()
    first = tracker.match(torch.tensor([[0, 0, 10, 10, 0.9]]), torch.tensor([0]), _embed(0)[None], 0)
    tracker.update_memo(first, 0)
    boxes = torch.tensor([[100, 100, 110, 110, 0.25], [200, 200, 210, 210, 0.6]])
    result = tracker.match(boxes, torch.tensor([0, 0]), torch.stack([_embed(0), _embed(2)]), 1)
    # sorted: the 0.6 box first (unmatched, below 0.7: stays -1), then the weak duplicate of track 0 (-2)
    assert result.sort_indices.tolist() == [1, 0] and result.ids.tolist() == [-1, -2]
    tracker.update_memo(result, 1)
    assert tracker.backdrops[0].boxes[:, 4].tolist() == [pytest.approx(0.6)]


def test_track_deleted_after_memo_frames_and_class_gate():
    tracker = QuasiDenseTracker(QuasiDenseOptions(memo_tracklet_frames=2))
    start = tracker.match(torch.tensor([[0, 0, 10, 10, 0.9]]), torch.tensor([0]), _embed(0)[None], 0)
    tracker.update_memo(start, 0)
    other = torch.tensor([[50, 50, 60, 60, 0.9]])
    # same embedding, other class: no match -> a new id
    r1 = tracker.match(other, torch.tensor([3]), _embed(0)[None], 1)
    assert r1.ids.tolist() == [1]
    tracker.update_memo(r1, 1)
    tracker.update_memo(tracker.match(other, torch.tensor([3]), _embed(0)[None], 2), 2)
    assert sorted(tracker.tracklets) == [1]  # track 0 unmatched for 2 frames: deleted


def test_class_mask_before_softmax_option():
    """Official: a same-embedding object of another class halves the column softmax; the fix does not."""
    def run(options):
        tracker = QuasiDenseTracker(options)
        boxes = torch.tensor([[0, 0, 10, 10, 0.9], [50, 50, 60, 60, 0.8]])
        tracker.update_memo(tracker.match(boxes[:1], torch.tensor([0]), _embed(0)[None], 0), 0)
        return tracker.match(boxes, torch.tensor([0, 1]), torch.stack([_embed(0), _embed(0)]), 1)

    official, fixed = run(QuasiDenseOptions()), run(QuasiDenseOptions(mask_classes_before_softmax=True))
    assert float(official.scores[0, 0]) == pytest.approx(0.75, abs=1e-6)  # (1 + 0.5) / 2
    assert float(fixed.scores[0, 0]) == pytest.approx(1.0, abs=1e-6)
    assert float(fixed.scores[1, 0]) == 0.0


def test_bad_inputs_and_options():
    tracker = QuasiDenseTracker()
    with pytest.raises(StreamvisError, match=r"boxes must be \(N, 5\)"):
        tracker.match(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long), torch.zeros(2, 3), 0)
    with pytest.raises(StreamvisError, match="payload 'x' has 1 rows"):
        tracker.match(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), torch.zeros(2, 3), 0,
                      {"x": torch.zeros(1)})
    with pytest.raises(ConfigError, match="match_metric"):
        QuasiDenseOptions(match_metric="iou")
    with pytest.raises(ConfigError, match="no option bogus"):
        QuasiDenseVideoTracker(bogus=1)
    with pytest.raises(dataclasses_error()):
        QuasiDenseOptions().memo_momentum = 0.5  # frozen


def dataclasses_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_video_adapter_protocol():
    tracker = QuasiDenseVideoTracker(init_score_threshold=0.6)
    e0, e1 = np.eye(8, dtype=np.float32)[0] * 5, np.eye(8, dtype=np.float32)[1] * 5
    frame0 = make_frame([((2, 2, 12, 12), 0, 0.9, e0), ((40, 10, 60, 30), 1, 0.65, e1)])
    members = tracker.update(frame0, 0)
    assert [t.track_id for t in members] == [1, 2]  # 0.65 > 0.6 starts a track with this option
    assert tracker.update(Instances((40, 80), boxes=torch.zeros(0, 4), scores=torch.zeros(0),
                                    classes=torch.zeros(0, dtype=torch.long), embeddings=torch.zeros(0, 8),
                                    masks=torch.zeros(0, 40, 80, dtype=torch.bool)), 1) == []
    frame2 = make_frame([((41, 11, 61, 31), 1, 0.7, e1)])
    members = tracker.update(frame2, 2)
    assert [t.track_id for t in members] == [2]
    tracks = tracker.finalize()
    assert [(t.track_id, t.category, sorted(t.masks)) for t in tracks] == [(1, 0, [0]), (2, 1, [0, 2])]
    assert tracks[1].score == pytest.approx((0.65 + 0.7) / 2)
    assert tracks[1].masks[2]["size"] == [40, 80]


def test_adapter_exposes_options_to_the_registry_signature():
    import inspect

    params = inspect.signature(QuasiDenseVideoTracker).parameters
    assert params["memo_momentum"].default == 0.8 and params["with_cats"].default is True
    assert tracker_options("crossvis") is not None  # the registry itself is untouched here


def test_official_end_to_end_detections_give_the_official_ids():
    """golden_e2e.npz: the official model's detections and embeddings of 4 frames, fed to our tracker,
    give the official ids, sort/dedup and refine references (tracklet's stored RoI vs. its own)."""
    e2e = np.load(require_shared("reference/pcan/golden_e2e.npz"))
    tracker = QuasiDenseTracker()
    for t in range(int(e2e["num_frames"])):
        boxes = torch.from_numpy(e2e[f"f{t}_det_bboxes"])
        n = boxes.shape[0]
        own = torch.arange(n, dtype=torch.float32) + 1000.0 * t  # tag: frame and detection
        result = tracker.match(boxes, torch.from_numpy(e2e[f"f{t}_det_labels"]),
                               torch.from_numpy(e2e[f"f{t}_embeds"]), t, {"mask_feats": own})
        tracker.update_memo(result, t)
        np.testing.assert_array_equal(result.sort_indices.numpy(), e2e[f"f{t}_trk_inds"])
        np.testing.assert_array_equal(result.valids.numpy().astype(np.uint8), e2e[f"f{t}_trk_valids"])
        np.testing.assert_array_equal(result.ids.numpy(), e2e[f"f{t}_trk_ids"], err_msg=f"frame {t}")
        np.testing.assert_array_equal(result.boxes.numpy(), e2e[f"f{t}_trk_bboxes"])
        is_self = (result.references["mask_feats"] == result.payload["mask_feats"]).numpy().astype(np.uint8)
        np.testing.assert_array_equal(is_self, e2e[f"f{t}_refine_ref_is_self"])
        np.testing.assert_array_equal((~result.matched).numpy().astype(np.uint8), is_self)
        np.testing.assert_array_equal(result.ids[result.ids > -1].numpy(), e2e[f"f{t}_out_track_ids"])
