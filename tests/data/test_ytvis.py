import copy
import json

import numpy as np
import pytest
from tests.conftest import require_shared

from streamvis.data.masks import encode_mask
from streamvis.data.ytvis import (
    annotations_by_video,
    categories_by_id,
    load_results,
    load_ytvis,
    results_by_video,
    validate_results,
    validate_ytvis,
    videos_by_id,
    write_results,
    write_ytvis,
)
from streamvis.errors import DataFormatError, StreamvisError

H, W = 6, 8


def rle(value=1):
    mask = np.zeros((H, W), bool)
    mask[1:4, 2 : 2 + value] = True
    return encode_mask(mask)


def make_gt():
    """Two videos (3 and 2 frames), two categories, annotations in all four per-frame forms."""
    videos = [
        {"id": 1, "width": W, "height": H, "length": 3, "file_names": ["a/0.jpg", "a/1.jpg", "a/2.jpg"]},
        {
            "id": 5,
            "width": W,
            "height": H,
            "length": 2,
            "file_names": ["b/0.jpg", "b/1.jpg"],
            "extra": "kept",
        },
    ]
    uncompressed = {"size": [H, W], "counts": [10, 3, 35]}
    polygon = [[1.0, 1.0, 5.0, 1.0, 5.0, 4.0]]
    anns = [
        {
            "id": 1,
            "video_id": 1,
            "category_id": 2,
            "iscrowd": 0,
            "segmentations": [rle(), None, uncompressed],
            "bboxes": [[2.0, 1.0, 1.0, 3.0], None, [1.0, 4.0, 1.0, 2.0]],
            "areas": [3, None, 3],
        },
        {
            "id": 7,
            "video_id": 5,
            "category_id": 3,
            "iscrowd": 1,
            "segmentations": [polygon, rle(2)],
            "bboxes": [[1.0, 1.0, 4.0, 3.0], [2.0, 1.0, 2.0, 3.0]],
            "areas": [6, 6],
        },
    ]
    cats = [{"id": 2, "name": "cat", "supercategory": "animal"}, {"id": 3, "name": "dog"}]
    return {"info": {"year": 2021}, "licenses": [], "videos": videos, "categories": cats, "annotations": anns}


def make_results():
    return [
        {"video_id": 1, "category_id": 2, "score": 0.9, "segmentations": [rle(), rle(3), None]},
        {"video_id": 5, "category_id": 3, "score": 0.25, "segmentations": [None, rle(2)]},
    ]


def test_valid_gt_and_results_pass_and_load_unchanged(tmp_path):
    gt = make_gt()
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    assert load_ytvis(path) == gt  # extra keys (supercategory, extra, info) kept
    assert load_results(make_results(), gt) == make_results()


def test_valid_and_test_splits_may_omit_annotations():
    for annotations in ("absent", None, []):
        gt = make_gt()
        if annotations == "absent":
            del gt["annotations"]
        else:
            gt["annotations"] = annotations
        validate_ytvis(gt)
        assert annotations_by_video(gt) == {1: [], 5: []}


def test_malformed_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"videos": [\n  {"id": 1,,}\n]}')
    with pytest.raises(DataFormatError, match=r"broken\.json: malformed json: .* line 2, column 12"):
        load_ytvis(path)
    with pytest.raises(DataFormatError, match="broken.json: malformed json"):
        load_results(path, make_gt())


def test_missing_file_is_a_user_error_naming_it(tmp_path):
    with pytest.raises(StreamvisError, match="nope.json: file not found"):
        load_ytvis(tmp_path / "nope.json")
    with pytest.raises(StreamvisError, match="not a file"):
        load_ytvis(tmp_path)


def set_key(container, key, value):
    def mutate(gt):
        target = gt if container is None else container(gt)
        if value is DELETE:
            del target[key]
        else:
            target[key] = value

    return mutate


DELETE = object()
VIDEO0 = lambda gt: gt["videos"][0]  # noqa: E731
VIDEO1 = lambda gt: gt["videos"][1]  # noqa: E731
ANN0 = lambda gt: gt["annotations"][0]  # noqa: E731
ANN1 = lambda gt: gt["annotations"][1]  # noqa: E731

# name: (mutation, expected message part, expected `where`, expected field)
GT_ERRORS = {
    "missing videos": (set_key(None, "videos", DELETE), "missing required key 'videos'", None, "videos"),
    "missing categories": (
        set_key(None, "categories", DELETE),
        "missing required key 'categories'",
        None,
        "categories",
    ),
    "videos not a list": (set_key(None, "videos", {}), "must be a list", None, "videos"),
    "video missing key": (
        set_key(VIDEO1, "height", DELETE),
        "missing required key",
        "videos[1] (id 5)",
        "height",
    ),
    "video bad size": (set_key(VIDEO0, "width", 0), "positive integer", "videos[0] (id 1)", "width"),
    "file_names length": (
        set_key(VIDEO0, "length", 4),
        "has 3 entries but the video's length is 4",
        "videos[0] (id 1)",
        "file_names",
    ),
    "duplicated video id": (set_key(VIDEO1, "id", 1), "duplicated id 1", "videos[1] (id 1)", "id"),
    "duplicated category id": (
        lambda gt: gt["categories"][1].update(id=2),
        "duplicated id 2",
        "categories[1] (id 2)",
        "id",
    ),
    "duplicated annotation id": (set_key(ANN1, "id", 1), "duplicated id 1", "annotations[1] (id 1)", "id"),
    "annotation missing key": (
        set_key(ANN1, "segmentations", DELETE),
        "missing required key",
        "annotations[1] (id 7)",
        "segmentations",
    ),
    "unknown video_id": (
        set_key(ANN1, "video_id", 9),
        "unknown video_id 9",
        "annotations[1] (id 7)",
        "video_id",
    ),
    "unknown category_id": (
        set_key(ANN0, "category_id", 1),
        "unknown category_id 1",
        "annotations[0] (id 1)",
        "category_id",
    ),
    "segmentations length": (
        lambda gt: ANN0(gt)["segmentations"].pop(),
        "has 2 entries but the video's length is 3",
        "annotations[0] (id 1)",
        "segmentations",
    ),
    "bboxes length": (
        lambda gt: ANN1(gt)["bboxes"].append(None),
        "has 3 entries but the video's length is 2",
        "annotations[1] (id 7)",
        "bboxes",
    ),
    "areas length": (lambda gt: ANN1(gt)["areas"].pop(), "has 1 entries", "annotations[1] (id 7)", "areas"),
    "bad bbox": (
        lambda gt: ANN0(gt)["bboxes"].__setitem__(2, [1, 2, 3]),
        "[x, y, w, h]",
        "annotations[0] (id 1)",
        "bboxes[2]",
    ),
    "rle size": (
        lambda gt: ANN1(gt)["segmentations"][1].update(size=[W, H]),
        "differs from the video",
        "annotations[1] (id 7)",
        "segmentations[1].size",
    ),
    "iscrowd not 0/1": (set_key(ANN0, "iscrowd", 2), "must be 0 or 1", "annotations[0] (id 1)", "iscrowd"),
    "malformed polygon": (
        lambda gt: ANN1(gt)["segmentations"][0][0].pop(),
        "even number",
        "annotations[1] (id 7)",
        "segmentations[0]",
    ),
    "malformed uncompressed rle": (
        lambda gt: ANN0(gt)["segmentations"][2].update(counts=[10, 3, 30]),
        "sum to 43, not height\\*width = 48",
        "annotations[0] (id 1)",
        "segmentations[2].counts",
    ),
}


@pytest.mark.parametrize("case", GT_ERRORS, ids=list(GT_ERRORS))
def test_gt_errors_name_file_item_and_field(case):
    mutate, reason, where, field = GT_ERRORS[case]
    gt = make_gt()
    mutate(gt)
    with pytest.raises(DataFormatError, match=reason) as info:
        validate_ytvis(gt, path="train.json")
    assert info.value.path == "train.json" and str(info.value).startswith("train.json: ")
    assert (info.value.where, info.value.field) == (where, field)


def test_gt_top_level_must_be_an_object(tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([make_gt()]))
    with pytest.raises(DataFormatError, match="list.json: the top level must be a json object, got list"):
        load_ytvis(path)


def result_mutation(index, key, value):
    def mutate(results):
        if value is DELETE:
            del results[index][key]
        else:
            results[index][key] = value

    return mutate


RESULT_ERRORS = {
    "missing key": (result_mutation(1, "score", DELETE), "missing required key", "results[1]", "score"),
    "unknown video_id": (result_mutation(0, "video_id", 2), "unknown video_id 2", "results[0]", "video_id"),
    "unknown category_id": (
        result_mutation(1, "category_id", 40),
        "unknown category_id 40",
        "results[1]",
        "category_id",
    ),
    "segmentations length": (
        result_mutation(1, "segmentations", [None, None, None]),
        "has 3 entries but the video's length is 2",
        "results[1]",
        "segmentations",
    ),
    "nan score": (result_mutation(0, "score", float("nan")), "finite number", "results[0]", "score"),
    "inf score": (result_mutation(0, "score", float("inf")), "finite number", "results[0]", "score"),
    "string score": (result_mutation(0, "score", "0.5"), "finite number", "results[0]", "score"),
    "bool score": (result_mutation(0, "score", True), "finite number", "results[0]", "score"),
    "rle size": (
        lambda r: r[0]["segmentations"][1].update(size=[H + 1, W]),
        "differs from the video",
        "results[0]",
        "segmentations[1].size",
    ),
    "polygon result": (
        lambda r: r[1]["segmentations"].__setitem__(0, [[1, 1, 3, 1, 3, 3]]),
        "RLE dict or null",
        "results[1]",
        "segmentations[0]",
    ),
    "entry not an object": (lambda r: r.__setitem__(1, [1, 2]), "must be an object", "results[1]", None),
}


@pytest.mark.parametrize("case", RESULT_ERRORS, ids=list(RESULT_ERRORS))
def test_result_errors_name_file_index_and_field(case):
    mutate, reason, where, field = RESULT_ERRORS[case]
    results = make_results()
    mutate(results)
    with pytest.raises(DataFormatError, match=reason) as info:
        validate_results(results, make_gt(), path="res.json")
    assert str(info.value).startswith("res.json: ")
    assert (info.value.where, info.value.field) == (where, field)


def test_results_must_be_a_list(tmp_path):
    path = tmp_path / "res.json"
    path.write_text(json.dumps({"results": make_results()}))
    with pytest.raises(DataFormatError, match="res.json: results must be a json list, got dict"):
        load_results(path, make_gt())


def test_empty_results_are_valid():
    assert load_results([], make_gt()) == []


def test_results_round_trip_converts_bytes_counts_and_numpy_numbers(tmp_path):
    results = make_results()
    as_bytes = copy.deepcopy(results)
    for seg in as_bytes[0]["segmentations"][:2]:
        seg["counts"] = seg["counts"].encode()
    as_bytes[0]["score"] = np.float32(0.9)
    as_bytes[1]["video_id"] = np.int64(5)
    path = tmp_path / "out" / "results.json"
    write_results(path, as_bytes, make_gt())
    loaded = load_results(path, make_gt())
    assert loaded[0]["segmentations"] == results[0]["segmentations"]
    assert isinstance(loaded[1]["video_id"], int) and loaded[1]["video_id"] == 5
    assert loaded[0]["score"] == pytest.approx(0.9)


def test_write_results_refuses_invalid_entries_and_leaves_no_file(tmp_path):
    bad = make_results()
    bad[0]["score"] = float("nan")
    path = tmp_path / "results.json"
    with pytest.raises(DataFormatError, match="score"):
        write_results(path, bad)
    with pytest.raises(DataFormatError, match="unknown video_id"):
        write_results(path, [dict(bad[1], video_id=3)], make_gt())
    assert list(tmp_path.iterdir()) == []
    write_results(path, make_results())  # without gt: structure only
    assert json.loads(path.read_text()) == make_results()


def test_gt_round_trip(tmp_path):
    gt = make_gt()
    first = gt["annotations"][0]["segmentations"][0]
    first["counts"] = first["counts"].encode()
    path = tmp_path / "gt.json"
    write_ytvis(path, gt)
    loaded = load_ytvis(path)
    assert loaded == make_gt()
    broken = make_gt()
    broken["videos"][0]["length"] = 1
    with pytest.raises(DataFormatError, match="file_names"):
        write_ytvis(tmp_path / "other.json", broken)
    assert not (tmp_path / "other.json").exists()


def test_indexing_helpers():
    gt = make_gt()
    assert list(videos_by_id(gt)) == [1, 5] and videos_by_id(gt)[5]["extra"] == "kept"
    assert categories_by_id(gt)[3]["name"] == "dog"
    assert [a["id"] for a in annotations_by_video(gt)[5]] == [7]
    grouped = results_by_video(make_results() + [dict(make_results()[0], score=0.1)])
    assert [e["score"] for e in grouped[1]] == [0.9, 0.1] and len(grouped[5]) == 1


GOLDEN_CASES = [f"case_{i:03d}" for i in range(1, 33)]


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_cases_load(case):
    folder = require_shared(f"golden/ytvis_eval/{case}")
    gt = load_ytvis(folder / "gt.json")
    results = load_results(folder / "results.json", gt)
    assert len(gt["videos"]) > 0 and len(gt["categories"]) > 0
    assert all(len(r["segmentations"]) == videos_by_id(gt)[r["video_id"]]["length"] for r in results)
    assert (len(results) == 0) == (case == "case_008")


def test_golden_cases_cover_every_gt_form():
    forms = set()
    for case in GOLDEN_CASES:
        gt = load_ytvis(require_shared(f"golden/ytvis_eval/{case}") / "gt.json")
        for ann in gt["annotations"]:
            for seg in ann["segmentations"]:
                if seg is None:
                    forms.add("null")
                elif isinstance(seg, list):
                    forms.add("polygon")
                else:
                    forms.add("uncompressed" if isinstance(seg["counts"], list) else "compressed")
    assert forms == {"null", "polygon", "uncompressed", "compressed"}
