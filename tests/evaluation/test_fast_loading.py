"""The evaluator's fast input paths give exactly what the plain ones give: orjson on a memory map
(with json deciding whatever orjson rejects), the bulk validation checks, and the sort-based set
operations that replace numpy's (which import numpy.ma)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamvis.data import ytvis
from streamvis.data.ytvis import load_results, load_ytvis, read_json, validate_ytvis
from streamvis.errors import DataFormatError
from streamvis.evaluation import setops


def _gt(boxes, areas):
    video = {"id": 1, "width": 4, "height": 3, "length": 2, "file_names": ["a", "b"]}
    ann = {"id": 5, "video_id": 1, "category_id": 1, "segmentations": [None, None]}
    ann.update(bboxes=boxes, areas=areas)
    return {"videos": [video], "categories": [{"id": 1, "name": "c"}], "annotations": [ann]}


def test_orjson_is_used_and_equals_json(tmp_path):
    assert ytvis._orjson is not None  # a declared dependency: the fast path is the one tested here
    data = {"a": [1, 2.5, -0.0, 1e-7, 123456789012345678, "x\u00e9\\\"", None, True], "b": {"c": []}}
    path = tmp_path / "d.json"
    path.write_text(json.dumps(data))
    parsed = read_json(path)
    assert parsed == json.loads(path.read_text())
    assert math.copysign(1.0, parsed["a"][2]) == -1.0


def test_what_orjson_rejects_json_still_reads(tmp_path):
    """NaN literals: json accepts them, so validation (not the parser) decides, as before."""
    path = tmp_path / "res.json"
    path.write_text('[{"video_id": 1, "category_id": 1, "score": NaN, "segmentations": [null]}]')
    assert math.isnan(read_json(path)[0]["score"])
    gt = {"videos": [{"id": 1, "width": 2, "height": 2, "length": 1, "file_names": ["a"]}],
          "categories": [{"id": 1, "name": "c"}]}  # fmt: skip
    with pytest.raises(DataFormatError, match=r"res\.json: results\[0\]: .*finite number"):
        load_results(path, gt)


def test_integers_past_64_bits_are_rejected_as_ids(tmp_path):
    """orjson reads them as floats (json as ints, which the int64 tables could not hold anyway)."""
    gt = _gt(None, None)
    gt["videos"][0]["id"] = 123456789012345678901234567890
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    assert read_json(path)["videos"][0]["id"] == pytest.approx(1.2345678901234568e29)
    with pytest.raises(DataFormatError, match=r"gt\.json: videos\[0\]: .*id must be an integer"):
        load_ytvis(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"empty\.json: malformed json: Expecting value at line 1, column 1"),
        (b'{"a": [1,\n 2,,]}', r"empty\.json: malformed json: .* at line 2, column 4"),
        (b'{"a": "\xff"}', r"empty\.json: not UTF-8 text \(invalid start byte at byte 7\)"),
    ],
)
def test_errors_name_file_line_and_column(tmp_path, content, message):
    path = tmp_path / "empty.json"
    path.write_bytes(content)
    with pytest.raises(DataFormatError, match=message):
        load_ytvis(path)


@pytest.mark.parametrize(
    ("boxes", "areas", "field"),
    [
        ([[0, 0, 1, 1], [0, 0, float("inf"), 1]], None, "bboxes[1]"),
        ([[0, 0, 1, 1], [0, 0, float("nan"), 1]], None, "bboxes[1]"),
        ([[0, 0, 1, True], None], None, "bboxes[0]"),
        ([[0, 0, 1], None], None, "bboxes[0]"),
        ([None, (0, 0, 1, 1)], None, "bboxes[1]"),
        (None, [1, -2], "areas[1]"),
        (None, [float("nan"), 2], "areas[0]"),
        (None, [False, 2], "areas[0]"),
        (None, ["3", 2], "areas[0]"),
    ],
)
def test_bulk_checks_fall_back_to_the_exact_error(boxes, areas, field):
    with pytest.raises(DataFormatError) as info:
        validate_ytvis(_gt(boxes, areas), path="gt.json")
    assert info.value.field == field and "annotations[0] (id 5)" in str(info.value)


@pytest.mark.parametrize(
    ("boxes", "areas"),
    [
        ([[1e308, 1e308, 1e308, 1e308], [0, 0.5, np.float32(2.0), np.int64(3)]], [1e308, 1e308]),
        ([None, None], [0, None]),
        ([[0, 0, 1, 1], None], [np.float64(2.5), 10**30]),
    ],
)
def test_bulk_checks_accept_what_the_exact_checks_accept(boxes, areas):
    """Overflowing sums and numpy scalars leave the fast path but are valid."""
    validate_ytvis(_gt(boxes, areas))


int_arrays = st.lists(st.integers(-50, 50), max_size=40).map(lambda v: np.array(v, dtype=np.int64))


@settings(max_examples=150, deadline=None)
@given(int_arrays, int_arrays)
def test_set_operations_equal_numpy(first, second):
    np.testing.assert_array_equal(setops.unique(first), np.unique(first))
    np.testing.assert_array_equal(setops.isin(first, second), np.isin(first, second))
    np.testing.assert_array_equal(setops.intersect(first, second), np.intersect1d(first, second))
    np.testing.assert_array_equal(setops.union(first, second), np.union1d(first, second))
    values, inverse = setops.unique_inverse(first)
    expected_values, expected_inverse = np.unique(first, return_inverse=True)
    np.testing.assert_array_equal(values, expected_values)
    np.testing.assert_array_equal(inverse, expected_inverse.reshape(-1))
