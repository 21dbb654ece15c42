"""The 32 golden cases of the official YouTube-VIS toolkit, reproduced to 1e-9.

The cases live in ../shared/golden/ytvis_eval; tests/data/ytvis_eval is a copy so that a clone
without ../shared runs them too (../shared wins when present).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

from streamvis.evaluation import evaluate

REPO = Path(__file__).resolve().parents[2]
SHARED_CASES = Path(os.environ.get("STREAMVIS_SHARED", REPO.parent / "shared")) / "golden" / "ytvis_eval"
COPY_CASES = REPO / "tests" / "data" / "ytvis_eval"
CASES_ROOT = SHARED_CASES if SHARED_CASES.is_dir() else COPY_CASES
CASES = sorted(p.name for p in COPY_CASES.glob("case_*"))
TOL = 1e-9  # README of the golden cases


def _categories_with_gt(gt: dict) -> set[str]:
    return {str(a["category_id"]) for a in gt["annotations"] if not a.get("iscrowd", 0)}


def test_the_cases_are_there():
    assert len(CASES) == 32
    assert sorted(p.name for p in CASES_ROOT.glob("case_*")) == CASES


@pytest.mark.parametrize("case", CASES)
def test_golden_case(case):
    folder = CASES_ROOT / case
    expected = json.loads((folder / "expected.json").read_text())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate(folder / "gt.json", folder / "results.json")
    if expected["error"] is not None:  # case 008: empty results, the official toolkit crashes
        gt = json.loads((folder / "gt.json").read_text())
        with_gt = _categories_with_gt(gt)
        assert any("empty" in str(w.message) for w in caught)
        assert result.per_category_AP == {k: (0.0 if k in with_gt else -1.0) for k in result.per_category_AP}
        assert result.per_category_AR == {k: (0.0 if k in with_gt else -1.0) for k in result.per_category_AR}
        assert result.stats_named["AP"] == 0.0 and result.stats_named["AR100"] == 0.0
        return
    assert not caught
    assert result.stats == pytest.approx(expected["stats"], abs=TOL, rel=0)
    assert result.stats_named == pytest.approx(expected["stats_named"], abs=TOL, rel=0)
    assert result.per_category_AP == pytest.approx(expected["per_category_AP"], abs=TOL, rel=0)
    assert result.per_category_AR == pytest.approx(expected["per_category_AR"], abs=TOL, rel=0)
    assert list(result.precision.shape) == expected["precision_shape"]
    assert result.category_ids == expected["category_ids"]
    assert result.video_ids == expected["video_ids"]
    assert result.empty_union_pairs == expected["iou_zero_union_warnings"]
    as_json = result.to_json()
    for key in ("stats_named", "per_category_AP", "per_category_AR"):
        assert set(as_json[key]) == set(expected[key])


@pytest.mark.parametrize("case", ["case_005", "case_006", "case_013", "case_031"])
def test_golden_case_with_tiny_batches(case, monkeypatch):
    """The memory caps split IoU calls, matching batches and the envelope step; results must not move."""
    from streamvis.evaluation import accumulate, groups, video_iou

    monkeypatch.setattr(video_iou, "_MAX_PAIRS_PER_CALL", 1)
    monkeypatch.setattr(groups, "_MAX_BATCH_CELLS", 1)
    monkeypatch.setattr(accumulate, "_MAX_PAD_CELLS", 1)
    folder = CASES_ROOT / case
    expected = json.loads((folder / "expected.json").read_text())
    result = evaluate(folder / "gt.json", folder / "results.json")
    assert result.stats == pytest.approx(expected["stats"], abs=TOL, rel=0)
    assert result.per_category_AP == pytest.approx(expected["per_category_AP"], abs=TOL, rel=0)
    assert result.per_category_AR == pytest.approx(expected["per_category_AR"], abs=TOL, rel=0)
