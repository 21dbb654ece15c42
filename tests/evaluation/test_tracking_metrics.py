"""HOTA / CLEAR / Identity on hand-built cases with known answers (`streamvis.evaluation.tracking`)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from streamvis.errors import StreamvisError
from streamvis.evaluation import hota
from streamvis.evaluation.identity import identity_sequence
from streamvis.evaluation.sequences import SequenceData
from streamvis.evaluation.tracking import evaluate_tracking


def _square(builder_box, y: int, x: int, size: int = 4):
    return builder_box(8, 10, y, y + size, x, x + size)


def _row(result, cls=1):
    return result.to_json()["per_category"][str(cls)]


def test_perfect_tracker(builder, box):
    vid = builder.video(1, 4)
    masks = [_square(box, 0, t) for t in range(4)]
    builder.track(vid, 1, masks)
    builder.result(vid, 1, 0.3, masks)
    row = _row(evaluate_tracking(builder.gt, builder.results))
    assert row["HOTA"]["HOTA"] == row["HOTA"]["DetA"] == row["HOTA"]["AssA"] == row["HOTA"]["LocA"] == 1.0
    assert row["CLEAR"]["MOTA"] == 1.0 and row["CLEAR"]["MT"] == 1 and row["CLEAR"]["IDSW"] == 0
    assert row["Identity"]["IDF1"] == 1.0 and row["Identity"]["IDTP"] == 4
    assert row["Count"] == {"Dets": 4, "GT_Dets": 4, "IDs": 1, "GT_IDs": 1}


def test_id_switch_halves_association(builder, box):
    vid = builder.video(1, 4)
    masks = [_square(box, 0, t) for t in range(4)]
    builder.track(vid, 1, masks)
    builder.result(vid, 1, 0.9, masks[:2] + [None, None])  # track A: frames 0-1
    builder.result(vid, 1, 0.9, [None, None] + masks[2:])  # track B: frames 2-3, same object
    row = _row(evaluate_tracking(builder.gt, builder.results))
    clear = row["CLEAR"]
    assert (clear["CLR_TP"], clear["IDSW"], clear["Frag"]) == (4, 1, 0)
    assert clear["MOTA"] == pytest.approx(0.75) and clear["MODA"] == 1.0
    assert clear["MOTAL"] == pytest.approx((4 - 0 - math.log10(1)) / 4)
    ident = row["Identity"]
    assert (ident["IDTP"], ident["IDFN"], ident["IDFP"]) == (2, 2, 2) and ident["IDF1"] == 0.5
    # every alpha: 4 TPs; each (GT, track) pair has c = 2, n_g = 4, n_t = 2: AssA = 2 * (2 * 2/4) / 4
    assert row["HOTA"]["DetA"] == 1.0 and row["HOTA"]["AssA"] == pytest.approx(0.5)
    assert row["HOTA"]["HOTA"] == pytest.approx(math.sqrt(0.5))
    assert row["HOTA"]["AssRe"] == pytest.approx(0.5) and row["HOTA"]["AssPr"] == pytest.approx(1.0)


def test_iou_exactly_one_half(builder, box):
    """IoU 0.5 is a CLEAR TP (threshold - eps) and a HOTA TP for the 10 alphas up to 0.5."""
    vid = builder.video(1, 1)
    builder.track(vid, 1, [box(8, 10, 0, 4, 0, 4)])  # 16 pixels
    builder.result(vid, 1, 0.9, [box(8, 10, 0, 4, 0, 2)])  # 8 pixels inside: IoU 8/16
    row = _row(evaluate_tracking(builder.gt, builder.results))
    assert row["CLEAR"]["CLR_TP"] == 1 and row["CLEAR"]["MOTP"] == 0.5
    assert row["HOTA"]["per_alpha"]["HOTA_TP"] == [1] * 10 + [0] * 9
    assert row["HOTA"]["HOTA"] == pytest.approx(10 / 19)
    assert row["HOTA"]["LocA"] == pytest.approx((10 * 0.5 + 9 * 1.0) / 19)  # LocA 1 where no TP
    assert row["HOTA"]["HOTA(0)"] == 1.0 and row["HOTA"]["LocA(0)"] == 0.5
    assert row["Identity"]["IDTP"] == 1  # IoU >= 0.5, no eps


def test_empty_results_and_classes_without_gt(builder, box):
    vid = builder.video(1, 3)
    builder.track(vid, 1, [_square(box, 0, 0)] * 3)
    result = evaluate_tracking(builder.gt, [])
    row = _row(result)
    assert row["HOTA"]["HOTA"] == 0.0 and row["HOTA"]["LocA"] == 1.0
    assert row["CLEAR"]["CLR_FN"] == 3 and row["CLEAR"]["ML"] == 1 and row["CLEAR"]["MLR"] == 1.0
    assert row["Identity"]["IDFN"] == 3
    builder.result(vid, 2, 0.5, [_square(box, 4, 4), _square(box, 4, 4), None])  # class 2: no GT
    result = evaluate_tracking(builder.gt, builder.results)
    assert _row(result, 2)["CLEAR"]["MOTA"] == -2.0  # TrackEval: -FP when there is no GT
    # class-averaged: plain mean over the classes; detection-averaged: pooled counts
    cls_av, det_av = result.to_json()["cls_comb_cls_av"], result.to_json()["cls_comb_det_av"]
    assert cls_av["CLEAR"]["MOTA"] == pytest.approx((0.0 - 2.0) / 2)
    assert det_av["CLEAR"]["MOTA"] == pytest.approx((0 - 2) / 3)
    assert cls_av["Count"] == {"Dets": 2, "GT_Dets": 3, "IDs": 1, "GT_IDs": 1}


def test_frames_without_tracker_dets_do_not_fragment(builder, box):
    vid = builder.video(1, 3)
    masks = [_square(box, 0, 0)] * 3
    builder.track(vid, 1, masks)
    builder.result(vid, 1, 0.9, [masks[0], None, masks[2]])
    clear = _row(evaluate_tracking(builder.gt, builder.results))["CLEAR"]
    assert (clear["CLR_TP"], clear["CLR_FN"], clear["Frag"], clear["IDSW"]) == (2, 1, 0, 0)
    builder.result(vid, 2, 0.9, [None, _square(box, 4, 4), None])  # another class: still skipped per class
    clear = _row(evaluate_tracking(builder.gt, builder.results))["CLEAR"]
    assert clear["Frag"] == 0


def test_null_only_tracks_do_not_exist(builder, box):
    vid = builder.video(1, 2)
    builder.track(vid, 1, [_square(box, 0, 0), None])
    builder.track(vid, 1, [None, None])
    builder.result(vid, 1, 0.9, [None, None])
    row = _row(evaluate_tracking(builder.gt, builder.results))
    assert row["Count"] == {"Dets": 0, "GT_Dets": 1, "IDs": 0, "GT_IDs": 1}


def test_mots_ignore_regions(builder, box):
    """Unmatched predictions more than half inside a crowd (ignore) region are removed (MOTS only)."""
    vid = builder.video(1, 1)
    builder.track(vid, 1, [box(8, 10, 0, 2, 0, 2)])
    builder.track(vid, 1, [box(8, 10, 4, 8, 4, 8)], iscrowd=1)  # ignore region: 16 pixels
    builder.result(vid, 1, 0.9, [box(8, 10, 4, 8, 4, 7)])  # fully inside: removed
    builder.result(vid, 1, 0.9, [box(8, 10, 4, 6, 2, 6)])  # IoA exactly 4/8: kept (an FP)
    mots = _row(evaluate_tracking(builder.gt, builder.results, mots=True, class_ids=[1]))
    assert mots["Count"] == {"Dets": 1, "GT_Dets": 1, "IDs": 1, "GT_IDs": 1}
    assert mots["CLEAR"]["CLR_FP"] == 1 and mots["CLEAR"]["CLR_FN"] == 1
    ytvis = _row(evaluate_tracking(builder.gt, builder.results))  # crowd GT is ordinary GT there
    assert ytvis["Count"] == {"Dets": 2, "GT_Dets": 2, "IDs": 2, "GT_IDs": 2}


def test_families_subset_and_unknown(builder, box):
    vid = builder.video(1, 1)
    builder.track(vid, 1, [_square(box, 0, 0)])
    row = _row(evaluate_tracking(builder.gt, builder.results, families=("identity",)))
    assert set(row) == {"name", "Identity", "Count"}
    with pytest.raises(StreamvisError, match="unknown tracking metric"):
        evaluate_tracking(builder.gt, [], families=("mota",))


def test_identity_one_to_one_assignment():
    similarity = np.zeros((3, 1, 2))  # (T, G, K)
    similarity[:, 0, 0] = [0.9, 0, 0]
    similarity[:, 0, 1] = [0, 0.6, 0.4]
    seq = SequenceData.from_arrays(
        np.ones((3, 1), bool), np.array([[1, 0], [0, 1], [0, 1]], bool), similarity
    )
    row = identity_sequence(seq)
    # one GT id can take one tracker id: either gives 1 IDTP (the 0.4 frame is below the threshold)
    assert (row["IDTP"], row["IDFN"], row["IDFP"]) == (1, 2, 2)
    assert row["IDF1"] == pytest.approx(1 / 3)


def test_tracks_without_dets_are_dropped():
    seq = SequenceData.from_arrays(np.zeros((2, 2), bool), np.array([[1], [0]], bool), np.zeros((2, 2, 1)))
    assert (seq.num_gt_ids, seq.num_tracker_ids, seq.num_tracker_dets, seq.num_timesteps) == (0, 1, 1, 2)


def test_hota_alphas_are_trackevals():
    assert len(hota.ALPHAS) == 19 and hota.ALPHAS[14] == 0.7500000000000001


def test_tracking_import_pulls_neither_torch_nor_scipy():
    code = (
        "import sys; import streamvis.evaluation.tracking, streamvis.data.formats.kitti_mots, "
        "streamvis.data.formats.mots_challenge\n"
        "bad = [m for m in ('torch', 'scipy') if m in sys.modules]\nassert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
