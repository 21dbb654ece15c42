"""Properties of the tracking metrics on random YouTube-VIS data (hypothesis)."""

from __future__ import annotations

import copy

import numpy as np
import pycocotools.mask as mask_util
from hypothesis import given, settings
from hypothesis import strategies as st

from streamvis.data.formats import kitti_mots
from streamvis.evaluation.tracking import evaluate_tracking

H, W = 12, 16


def _rle(mask: np.ndarray) -> dict:
    encoded = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [H, W], "counts": encoded["counts"].decode("ascii")}


@st.composite
def datasets(draw):
    """1-2 videos; 1-4 tracks of categories 1/2, each a rectangle in its own 4-pixel-wide column
    band (so no two masks overlap), present on a random subset of frames."""
    videos, annotations = [], []
    for vid in range(1, draw(st.integers(1, 2)) + 1):
        length = draw(st.integers(1, 5))
        videos.append(
            {
                "id": vid,
                "width": W,
                "height": H,
                "length": length,
                "file_names": [f"v{vid}/{t}.jpg" for t in range(length)],
            }
        )
        for band in range(draw(st.integers(1, 4))):
            segs = []
            for _ in range(length):
                if draw(st.booleans()):
                    top = draw(st.integers(0, H - 2))
                    mask = np.zeros((H, W), bool)
                    mask[top : top + draw(st.integers(1, H - top)), 4 * band : 4 * band + 3] = True
                    segs.append(_rle(mask))
                else:
                    segs.append(None)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "video_id": vid,
                    "iscrowd": 0,
                    "category_id": draw(st.sampled_from([1, 2])),
                    "segmentations": segs,
                }
            )
    categories = [{"id": 1, "name": "car"}, {"id": 2, "name": "pedestrian"}]
    return {"videos": videos, "categories": categories, "annotations": annotations}


def _as_results(gt: dict) -> list[dict]:
    return [
        {
            "video_id": a["video_id"],
            "category_id": a["category_id"],
            "score": 1.0,
            "segmentations": copy.deepcopy(a["segmentations"]),
        }
        for a in gt["annotations"]
    ]


@settings(max_examples=40, deadline=None)
@given(datasets())
def test_perfect_and_empty_results(gt):
    perfect = evaluate_tracking(gt, _as_results(gt))
    for row in perfect.per_class.values():
        if row["Count"]["GT_Dets"] == 0:
            continue
        assert np.all(row["HOTA"]["HOTA"] == 1.0) and np.all(row["HOTA"]["LocA"] == 1.0)
        assert row["CLEAR"]["MOTA"] == 1.0 and row["CLEAR"]["IDSW"] == 0 and row["CLEAR"]["CLR_FP"] == 0
        assert row["Identity"]["IDF1"] == 1.0
        assert row["Count"]["Dets"] == row["Count"]["GT_Dets"]
    empty = evaluate_tracking(gt, []).cls_comb_det_av
    assert empty["CLEAR"]["CLR_TP"] == 0 and np.all(empty["HOTA"]["HOTA"] == 0.0)
    assert empty["Identity"]["IDFN"] == empty["Count"]["GT_Dets"]


@settings(max_examples=25, deadline=None)
@given(datasets())
def test_kitti_mots_round_trip_keeps_the_metrics(tmp_path_factory, gt):
    """Through KITTI-MOTS txt and back (GT and results), every number stays the same."""
    folder = tmp_path_factory.mktemp("kitti")
    gt = {
        **gt,
        "videos": [
            {**v, "file_names": [f"{v['id']:04d}/{t:06d}.png" for t in range(v["length"])]}
            for v in gt["videos"]
        ],
    }
    results = _as_results(gt)[::2]
    kitti_mots.write_gt(gt, folder / "gt")
    kitti_mots.write_results(results, gt, folder / "data")
    gt_back, results_back = kitti_mots.read_evaluation_inputs(folder / "gt", folder / "data")
    before = evaluate_tracking(gt, results, mots=True, class_ids=[1, 2]).to_json()
    after = evaluate_tracking(gt_back, results_back, mots=True, class_ids=[1, 2]).to_json()
    for key in ("cls_comb_cls_av", "cls_comb_det_av", "per_category"):
        assert after[key] == before[key]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(1, 5))
def test_clear_single_gt_shortcut_equals_the_per_frame_matching(seed, frames, trackers):
    """One GT id: the solver-free CLEAR path gives the general path's counts and MOTP sum exactly."""
    from streamvis.evaluation import clear
    from streamvis.evaluation.sequences import SequenceData

    rng = np.random.default_rng(seed)
    gt_present = rng.random((frames, 1)) < 0.8
    tracker_present = rng.random((frames, trackers)) < 0.6
    # IoUs on a coarse grid around the 0.5 cutoff, so ties and threshold cases are common
    values = rng.choice([0.0, 0.25, 0.5 - 1e-17, 0.5, 0.75, 0.75, 1.0], size=(frames, 1, trackers))
    similarity = np.where(gt_present[:, :, None] & tracker_present[:, None, :], values, 0.0)
    seq = SequenceData.from_arrays(gt_present, tracker_present, similarity)
    if seq.num_gt_ids != 1 or seq.num_tracker_ids == 0:
        return
    cutoff = 0.5 - clear.EPS
    fast = clear._single_gt_matches(seq, cutoff)
    general = clear._matches(seq, cutoff)
    assert fast[:3] == general[:3]  # TP, IDSW, MOTP_sum (bit for bit)
    assert np.array_equal(fast[3], general[3]) and np.array_equal(fast[4], general[4])
