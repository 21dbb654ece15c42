"""`evaluate` on hand-built cases with known answers, input errors, the table, and no torch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from streamvis.errors import DataFormatError
from streamvis.evaluation import evaluate, format_table

H, W = 8, 10
ONE = pytest.approx(1.0, abs=1e-12)  # official precision is tp / (tp + fp + eps): 1 - 2e-16 at best


def test_perfect_predictions_score_one(builder, box):
    vid = builder.video(1, 3)
    masks = [box(H, W, 0, 4, 0, 4), None, box(H, W, 2, 6, 3, 9)]
    builder.track(vid, 1, masks)
    builder.result(vid, 1, 0.9, masks)
    result = evaluate(builder.gt, builder.results)
    assert result.stats_named["AP"] == ONE and result.stats_named["AR1"] == 1.0
    assert result.stats_named["AP_small"] == ONE
    assert result.stats_named["AP_medium"] == -1.0 and result.stats_named["AR_large"] == -1.0
    assert result.per_category_AP == {"1": ONE, "2": -1.0}


def test_false_positive_ranked_first_halves_precision(builder, box):
    vid = builder.video(1, 2)
    gt_masks = [box(H, W, 0, 4, 0, 4)] * 2
    builder.track(vid, 1, gt_masks)
    builder.result(vid, 1, 0.9, [box(H, W, 5, 8, 6, 10)] * 2)  # disjoint: FP, ranked first
    builder.result(vid, 1, 0.8, gt_masks)  # TP
    result = evaluate(builder.gt, builder.results)
    # rc = [0, 1], pr = [0, 1/2]: every recall threshold samples 1/2
    assert result.stats_named["AP"] == pytest.approx(0.5, abs=1e-12)
    assert result.stats_named["AR1"] == 0.0  # only the top prediction counts: the FP
    assert result.stats_named["AR10"] == 1.0
    assert result.precision.shape == (10, 101, 2, 4, 3)
    assert (result.precision[:, :, 0, 0, 2] == 1 / (2 + np.spacing(1))).all()
    assert (result.precision[:, :, 1] == -1).all()  # category 2 has no ground truth


def test_video_iou_decides_the_threshold(builder, box):
    vid = builder.video(1, 2)
    builder.track(vid, 1, [box(H, W, 0, 4, 0, 5), box(H, W, 0, 4, 0, 5)])  # 20 + 20 pixels
    builder.result(vid, 1, 0.5, [box(H, W, 0, 4, 0, 5), box(H, W, 0, 4, 0, 2)])  # I = 20 + 8, U = 40
    result = evaluate(builder.gt, builder.results)  # IoU 0.7: matched at .50 ... .70 (5 of 10)
    assert result.stats_named["AP"] == pytest.approx(0.5, abs=1e-12)
    assert result.stats_named["AP50"] == ONE and result.stats_named["AP75"] == 0.0


def test_area_range_comes_from_the_areas_field(builder, box):
    vid = builder.video(1, 1)
    builder.track(vid, 1, [box(H, W, 0, 4, 0, 4)], areas=[200 * 200])  # medium by its `areas` field
    builder.result(vid, 1, 0.5, [box(H, W, 0, 4, 0, 4)])
    result = evaluate(builder.gt, builder.results)
    assert result.stats_named["AP_medium"] == ONE
    assert result.stats_named["AP_small"] == -1.0  # no small ground truth (the 16-pixel mask does not count)


def test_crowd_ground_truth_is_neither_tp_nor_fp(builder, box):
    vid = builder.video(1, 1)
    builder.track(vid, 1, [box(H, W, 0, 4, 0, 4)])
    builder.track(vid, 1, [box(H, W, 4, 8, 4, 10)], iscrowd=1)
    builder.result(vid, 1, 0.9, [box(H, W, 4, 8, 4, 10)])  # on the crowd: ignored
    builder.result(vid, 1, 0.8, [box(H, W, 0, 4, 0, 4)])  # TP
    result = evaluate(builder.gt, builder.results)
    assert result.stats_named["AP"] == ONE


def test_empty_results_warn_and_score_zero(builder, box):
    vid = builder.video(1, 1)
    builder.track(vid, 2, [box(H, W, 0, 4, 0, 4)])
    with pytest.warns(UserWarning, match="empty"):
        result = evaluate(builder.gt, [])
    assert result.per_category_AP == {"1": -1.0, "2": 0.0}
    assert result.per_category_AR == {"1": -1.0, "2": 0.0}
    assert result.stats_named["AP"] == 0.0


def test_category_with_gt_but_no_prediction_counts_zero(builder, box):
    vid = builder.video(1, 1)
    builder.track(vid, 1, [box(H, W, 0, 4, 0, 4)])
    builder.track(vid, 2, [box(H, W, 4, 8, 4, 8)])
    builder.result(vid, 1, 0.9, [box(H, W, 0, 4, 0, 4)])
    result = evaluate(builder.gt, builder.results)
    assert result.per_category_AP == {"1": ONE, "2": 0.0}
    assert result.stats_named["AP"] == pytest.approx(0.5, abs=1e-12)


def test_paths_and_dicts_agree(builder, box, tmp_path):
    import json

    vid = builder.video(1, 2)
    builder.track(vid, 1, [box(H, W, 0, 4, 0, 4), None])  # 16 px
    builder.result(vid, 1, 0.4, [box(H, W, 0, 3, 0, 4), box(H, W, 0, 1, 0, 1)])  # I 12, U 16 + 1: .706
    (tmp_path / "gt.json").write_text(json.dumps(builder.gt))
    (tmp_path / "res.json").write_text(json.dumps(builder.results))
    from_files = evaluate(tmp_path / "gt.json", str(tmp_path / "res.json"))
    from_dicts = evaluate(builder.gt, builder.results)
    assert from_files.stats.tolist() == from_dicts.stats.tolist()
    assert from_dicts.stats_named["AP"] == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda gt, res: res[0].update(score=float("nan")), "score"),
        (lambda gt, res: res[0].update(video_id=99), "video_id"),
        (lambda gt, res: res[0]["segmentations"].pop(), "segmentations"),
        (lambda gt, res: res[0]["segmentations"][0].update(size=[3, 3]), "segmentations[0].size"),
        (lambda gt, res: gt["annotations"][0].pop("category_id"), "category_id"),
    ],
)
def test_malformed_input_names_file_and_field(builder, box, mutate, field):
    vid = builder.video(1, 2)
    builder.track(vid, 1, [box(H, W, 0, 4, 0, 4)] * 2)
    builder.result(vid, 1, 0.4, [box(H, W, 0, 4, 0, 4)] * 2)
    mutate(builder.gt, builder.results)
    with pytest.raises(DataFormatError) as err:
        evaluate(builder.gt, builder.results, gt_path="gt.json", results_path="res.json")
    assert err.value.field == field
    assert err.value.path in ("gt.json", "res.json")


def test_format_table_lists_the_numbers_and_classes(builder, box):
    vid = builder.video(1, 1)
    builder.track(vid, 1, [box(H, W, 0, 4, 0, 4)])
    builder.result(vid, 1, 0.9, [box(H, W, 0, 4, 0, 4)])
    result = evaluate(builder.gt, builder.results)
    table = format_table(result, builder.gt["categories"], per_class=True)
    lines = table.splitlines()
    assert lines[0].startswith(
        " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] =  1.0000"
    )
    assert "AR_large" in lines[11] and "-1.0000" in lines[11]
    assert any(line.split()[:4] == ["1", "cat1", "1.0000", "1.0000"] for line in lines)
    assert any(line.split()[:4] == ["2", "cat2", "-", "-"] for line in lines)
    assert len(format_table(result, None).splitlines()) == 12


def test_warning_free_on_normal_input(builder, box):
    vid = builder.video(1, 1)
    builder.track(vid, 1, [box(H, W, 0, 4, 0, 4)])
    builder.result(vid, 1, 0.9, [None])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate(builder.gt, builder.results)
    assert result.stats_named["AP"] == 0.0
