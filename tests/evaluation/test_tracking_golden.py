"""TrackEval 1.3.0's HOTA / CLEAR / Identity / Count, reproduced to 1e-9 on all 45 golden cases.

32 YouTube-VIS cases (``expected_trackeval.json``) and 13 MOTS cases (KITTI-MOTS / MOTSChallenge
txt, read by `streamvis.data.formats`). The cases live in ../shared/golden; tests/data holds a copy
so that a clone without ../shared runs them too (../shared wins when present).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from streamvis.data.formats import kitti_mots, mots_challenge
from streamvis.errors import DataFormatError
from streamvis.evaluation.tracking import evaluate_tracking

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("STREAMVIS_SHARED", REPO.parent / "shared")) / "golden"
COPY = REPO / "tests" / "data"


def _root(name: str) -> Path:
    return SHARED / name if (SHARED / name).is_dir() else COPY / name


YTVIS, MOTS = _root("ytvis_eval"), _root("mots_eval")
YTVIS_CASES = sorted(p.name for p in (COPY / "ytvis_eval").glob("case_*"))
MOTS_CASES = sorted(p.name for p in (COPY / "mots_eval").glob("case_*"))
TOL = 1e-9  # both READMEs


def assert_same(got, expected, path="metrics"):
    """Every key of `expected` is in `got` (and no other), numbers within TOL, counts exactly."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), (
            f"{path}: keys {sorted(got)} != {sorted(expected)}"
        )
        for key, value in expected.items():
            assert_same(got[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected), f"{path}: length"
        for k, (a, b) in enumerate(zip(got, expected)):
            assert_same(a, b, f"{path}[{k}]")
    elif isinstance(expected, bool) or isinstance(expected, str) or expected is None:
        assert got == expected, f"{path}: {got!r} != {expected!r}"
    elif isinstance(expected, int):  # counts exactly (TrackEval writes a zero MOTP_sum as 0, too)
        assert got == expected, f"{path}: {got!r} != {expected}"
    else:
        assert abs(got - expected) <= TOL, f"{path}: {got!r} != {expected!r}"


def test_all_cases_are_there():
    assert len(YTVIS_CASES) == 32 and len(MOTS_CASES) == 13
    for case in YTVIS_CASES:
        assert (YTVIS / case / "expected_trackeval.json").is_file()


@pytest.mark.parametrize("case", YTVIS_CASES)
def test_ytvis_case(case):
    folder = YTVIS / case
    gt = json.loads((folder / "gt.json").read_text())
    results = json.loads((folder / "results.json").read_text())
    expected = json.loads((folder / "expected_trackeval.json").read_text())
    got = evaluate_tracking(gt, results).to_json()
    for key in (
        "trackeval_version",
        "dataset_class",
        "alphas",
        "metric_config",
        "video_names",
        "cls_comb_cls_av",
        "cls_comb_det_av",
        "per_category",
        "per_video",
    ):
        assert_same(got[key], expected["metrics"][key], key)
    # the summary keys of the earlier 8-case version are the combined rows' means
    assert abs(got["cls_comb_cls_av"]["HOTA"]["HOTA"] - expected["class_averaged"]["HOTA"]) <= TOL
    assert abs(got["cls_comb_det_av"]["HOTA"]["AssA"] - expected["detection_averaged"]["AssA"]) <= TOL


def _read_mots(case: str):
    folder = MOTS / case
    info = json.loads((folder / "case.json").read_text())
    if info["format"] == "kitti_mots":
        gt, results = kitti_mots.read_evaluation_inputs(
            folder / "gt", folder / "tracker" / "predictions" / "data"
        )
        return gt, results, kitti_mots.EVAL_CLASSES
    gt, results = mots_challenge.read_evaluation_inputs(
        folder / "gt", folder / "tracker" / "MOTS-train" / "predictions" / "data"
    )
    return gt, results, mots_challenge.EVAL_CLASSES


@pytest.mark.parametrize("case", MOTS_CASES)
def test_mots_case(case):
    expected = json.loads((MOTS / case / "expected.json").read_text())
    if expected["error"] is not None:  # case_013: TrackEval refuses overlapping tracker masks
        with pytest.raises(DataFormatError, match=r"0001\.txt: line \d+.*overlaps.*frame 2"):
            _read_mots(case)
        return
    gt, results, classes = _read_mots(case)
    got = evaluate_tracking(gt, results, mots=True, class_ids=list(classes)).to_json(
        key_by_name=True, all_video_rows=True, video_per_alpha=True
    )
    combined = {
        **got["per_category"],
        "cls_comb_cls_av": got["cls_comb_cls_av"],
        "cls_comb_det_av": got["cls_comb_det_av"],
    }
    assert_same(combined, expected["combined"], "combined")
    assert_same(got["per_video"], expected["per_sequence"], "per_sequence")
    assert {
        name: got["per_video"][name][expected["classes"][0]]["Count"]["Frames"]
        for name in expected["sequences"]
    } == expected["sequences"]
