"""The one validator: every problem as a record, loading and check-dataset agree, untrusted-input limits."""

from __future__ import annotations

import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamvis.commands.check_dataset import check_dataset
from streamvis.data.masks import encode_mask
from streamvis.data.validate import (
    KINDS,
    MAX_FRAME_SIDE,
    Problem,
    check_file_name,
    count_problems,
    first_error,
    results_problems,
    rle_string_problems,
    ytvis_problems,
)
from streamvis.data.ytvis import MAX_JSON_DEPTH, load_results, load_ytvis, read_json, validate_ytvis
from streamvis.errors import DataFormatError

H, W = 6, 8


def _rle(width=2):
    mask = np.zeros((H, W), bool)
    mask[1:4, 2 : 2 + width] = True
    return encode_mask(mask)


def _gt():
    video = {"id": 1, "width": W, "height": H, "length": 2, "file_names": ["v/0.jpg", "v/1.jpg"]}
    ann = {"id": 9, "video_id": 1, "category_id": 3, "segmentations": [_rle(), None]}
    return {"videos": [video], "categories": [{"id": 3, "name": "c"}], "annotations": [ann]}


def _write_frames(gt, root):
    from PIL import Image

    for video in gt["videos"]:
        for name in video["file_names"]:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((video["height"], video["width"], 3), np.uint8)).save(root / name)


def test_every_problem_is_one_record_with_ids_and_fields():
    gt = _gt()
    gt["videos"].append({"id": 2, "width": True, "height": H, "length": 1, "file_names": ["../x.jpg"]})
    ann = gt["annotations"][0]
    ann["segmentations"][1] = {"size": [H, W], "counts": "0o"}  # a cut-short RLE string
    gt["annotations"].append({"id": 9, "video_id": 1, "category_id": 3, "segmentations": [None, None]})
    gt["annotations"].append({"id": 10, "video_id": 7, "category_id": 4, "segmentations": []})
    problems = list(ytvis_problems(gt, path="gt.json"))
    got = [(p.kind, p.where, p.field, p.video_id, p.annotation_id, p.frame) for p in problems]
    assert got == [
        ("bad_video", "videos[1] (id 2)", "width", 2, None, None),
        ("unsafe_path", "videos[1] (id 2)", "file_names[0]", 2, None, None),
        ("duplicate_id", "annotations[1] (id 9)", "id", None, None, None),
        ("unknown_video", "annotations[2] (id 10)", "video_id", 7, 10, None),
        ("unknown_category", "annotations[2] (id 10)", "category_id", 7, 10, None),
        # compressed RLE strings are checked in bulk: their problems come last
        ("bad_segmentation", "annotations[0] (id 9)", "segmentations[1].counts", 1, 9, 1),
    ]
    assert all(p.severity == "error" and p.path == "gt.json" for p in problems)
    assert count_problems(problems) == {"duplicate_id": 1, "bad_video": 1, "unsafe_path": 1,
                                        "unknown_video": 1, "unknown_category": 1, "bad_segmentation": 1}
    expected = "gt.json: videos[1] (id 2): field 'width': must be a positive integer, got True"
    assert str(problems[0]) == expected
    assert problems[0].to_dict()["severity"] == "error" and set(KINDS) >= {p.kind for p in problems}
    # loading raises exactly the first record
    with pytest.raises(DataFormatError) as info:
        validate_ytvis(gt, path="gt.json")
    assert str(info.value) == str(problems[0])


def test_a_bool_width_is_refused_by_loading_and_by_check_dataset_alike(tmp_path):
    """The two validators used to disagree: check-dataset took True as width 1, loading refused it."""
    gt = _gt()
    gt["videos"][0].update(width=True, height=True)
    for ann in gt["annotations"]:
        ann["segmentations"] = [None, None]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    message = r"videos\[0\] \(id 1\): field 'width': must be a positive integer, got True"
    with pytest.raises(DataFormatError, match=message):
        load_ytvis(path)
    report = check_dataset(path, tmp_path)
    assert report.counts == {"bad_video": 2} and report.num_errors == 2
    assert report.num_frames == 0  # an invalid video's frames are not opened


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "/etc/passwd", "v/../../x.jpg", "..\\..\\x.jpg", "C:\\x.jpg", "", "a\x00b.jpg"],
)
def test_file_names_cannot_escape_the_image_root(tmp_path, name):
    gt = _gt()
    gt["videos"][0]["file_names"][1] = name
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    with pytest.raises(DataFormatError) as info:
        load_ytvis(path)
    assert (info.value.where, info.value.field) == ("videos[0] (id 1)", "file_names[1]")
    assert check_file_name(name) in str(info.value)
    report = check_dataset(path, tmp_path / "images")
    assert report.counts["unsafe_path"] == 1 and "missing_frame" in report.counts  # only v/0.jpg opened
    assert report.counts["missing_frame"] == 1


def test_safe_file_names_pass():
    for name in ("a.jpg", "video/00001.jpg", "a..b/c.jpg", "./a.jpg", "deep/er/x.png", "a:b.jpg", "..a.jpg"):
        assert check_file_name(name) is None, name


def test_check_dataset_and_loading_agree_on_a_clean_set(tmp_path):
    gt = _gt()
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    _write_frames(gt, tmp_path)
    assert load_ytvis(path) == gt
    report = check_dataset(path, tmp_path)
    assert report.num_errors == 0 and report.num_frames == 2


def test_results_problems_are_all_reported():
    gt = _gt()
    results = [
        {"video_id": 1, "category_id": 3, "score": float("nan"), "segmentations": [_rle(), None]},
        {"video_id": 1, "category_id": 5, "score": 0.5,
         "segmentations": [{"size": [H, W], "counts": "!!"}, None]},
        "not an entry",
    ]
    got = [(p.kind, p.where, p.field, p.result_index) for p in results_problems(results, gt, path="r.json")]
    assert got == [
        ("bad_value", "results[0]", "score", 0),
        ("unknown_category", "results[1]", "category_id", 1),
        ("bad_item", "results[2]", None, 2),
        ("bad_segmentation", "results[1]", "segmentations[0].counts", 1),
    ]
    with pytest.raises(DataFormatError, match=r"r\.json: results\[0\]: field 'score': .*finite"):
        load_results(results, gt, path="r.json")


def test_first_error_skips_warnings():
    warning = Problem("empty_mask", "empty")
    error = Problem("bad_value", "bad")
    assert warning.severity == "warning" and not warning.is_error
    assert first_error([warning, error]) is error and first_error([warning]) is None


def test_frame_sides_and_polygons_are_bounded():
    gt = _gt()
    gt["videos"][0]["width"] = MAX_FRAME_SIDE + 1
    assert [p.field for p in ytvis_problems(gt)] == ["width"]
    gt = _gt()
    gt["annotations"][0]["segmentations"][1] = [[0, 0, 5, 0, 1e12, 4]]  # pycocotools would allocate ~TBs
    (problem,) = ytvis_problems(gt)
    assert problem.kind == "bad_segmentation" and "outside" in problem.message
    gt["annotations"][0]["segmentations"][1] = [[-2, -1, 9, 0, 9, 7]]  # slightly outside is fine
    assert list(ytvis_problems(gt)) == []


# ------------------------------------------------------------------------------------ RLE strings
@pytest.mark.parametrize(
    ("counts", "reason"),
    [
        ("", "empty"),
        ("0o", "cut short"),
        ("a b", "characters"),
        ("é", "characters"),
        ("8", "sum to 8, not height\\*width = 48"),  # a valid run of 8 pixels: too few
        ("0ooooooo0", "longer than"),
        ("0@", "negative"),  # '@' - 48 = 0x10: the sign bit, so the second run is -16
    ],
)
def test_broken_rle_strings_are_refused(counts, reason):
    (problem,) = rle_string_problems([counts], [H * W])
    assert problem is not None and __import__("re").search(reason, problem), problem


masks = st.tuples(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**32 - 1), st.floats(0, 1))


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(masks, min_size=1, max_size=8))
def test_pycocotools_strings_are_accepted_and_their_prefixes_refused(specs):
    """Every string pycocotools writes passes; cutting it anywhere is found (runs no longer sum to H*W)."""
    strings, pixels = [], []
    for height, width, seed, density in specs:
        mask = np.random.default_rng(seed).random((height, width)) < density
        strings.append(mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"])
        pixels.append(height * width)
    assert rle_string_problems(strings, pixels) == [None] * len(strings)
    cut = [s[: len(s) - 1 - (i % len(s))] or b"" for i, s in enumerate(strings)]
    assert all(reason is not None for reason in rle_string_problems(cut, pixels))


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.text(alphabet=[chr(c) for c in range(48, 112)], min_size=1, max_size=9), st.integers(1, 6),
       st.integers(1, 6))
def test_what_the_check_accepts_pycocotools_decodes_faithfully(counts, height, width):
    rle = {"size": [height, width], "counts": counts.encode()}
    if rle_string_problems([counts], [height * width])[0] is None:
        decoded = mask_util.decode(rle)
        assert decoded.shape == (height, width) and decoded.max(initial=0) <= 1
        assert int(decoded.sum()) == int(mask_util.area(rle))


# ------------------------------------------------------------------------------------- json limits
def test_json_nesting_is_capped_with_a_clear_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * (MAX_JSON_DEPTH + 10) + "]" * (MAX_JSON_DEPTH + 10))
    with pytest.raises(DataFormatError, match=r"deep\.json: json nested deeper than 1024 levels"):
        read_json(path)
    path.write_text("[NaN, " + "[" * 5000 + "]" * 5000 + "]")  # NaN: the json fallback parses it
    with pytest.raises(DataFormatError, match="nested deeper"):
        read_json(path)


def test_numbers_past_python_s_digit_limit_are_a_format_error(tmp_path):
    path = tmp_path / "big.json"
    path.write_text('{"videos": [{"id": ' + "9" * 5000 + "}]}")
    with pytest.raises(DataFormatError, match=r"big\.json: malformed json: .*digits"):
        read_json(path)


def test_json_size_is_capped(tmp_path, monkeypatch):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(_gt()))
    monkeypatch.setenv("STREAMVIS_MAX_JSON_BYTES", "100")
    with pytest.raises(DataFormatError, match=r"gt\.json: the file is \d+ bytes, more than the 100-byte"):
        load_ytvis(path)
    monkeypatch.setenv("STREAMVIS_MAX_JSON_BYTES", str(10**6))
    assert load_ytvis(path) == _gt()


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1))
def test_loading_and_check_dataset_give_the_same_verdict(tmp_path_factory, seed):
    """On mutated annotation json (the fuzz corpus' mutations): loading raises iff check-dataset
    finds an error-level json problem, and loading raises exactly check-dataset's first error."""
    import random

    from tests.fuzz.corpus import _mutated_json

    folder = tmp_path_factory.mktemp("verdict")
    path = folder / "gt.json"
    path.write_bytes(_mutated_json(random.Random(seed), _gt(), []))
    try:
        load_ytvis(path)
        load_error = None
    except DataFormatError as err:
        load_error = str(err)
    try:
        data = read_json(path)
    except DataFormatError as err:
        assert load_error == str(err)  # unparseable: both refuse with the parser's message
        return
    errors = [p for p in ytvis_problems(data, path=path) if p.is_error]
    assert (load_error is None) == (not errors)
    if errors:
        assert load_error == str(errors[0])
        report = check_dataset(path, folder)
        not_json = ("missing_frame", "unreadable_frame", "frame_size_mismatch", "empty_mask")
        assert sum(n for k, n in report.counts.items() if k not in not_json) == len(errors)


def test_raise_error_summary_counts_errors_and_quotes_the_first():
    from streamvis.data.validate import raise_error_summary

    gt = _gt()
    gt["annotations"][0]["segmentations"] = [None]  # length 1 != 2
    gt["annotations"].append({"id": 10, "video_id": 7, "category_id": 3, "segmentations": [None, None]})
    with pytest.raises(DataFormatError) as err:
        raise_error_summary(ytvis_problems(gt, path="gt.json"), "the converted set")
    assert str(err.value) == (
        "the converted set has 2 errors (length_mismatch 1, unknown_video 1); the first: gt.json: "
        "annotations[0] (id 9): field 'segmentations': has 1 entries but the video's length is 2"
    )
    warning = Problem("empty_mask", "no foreground", path="gt.json")
    raise_error_summary([warning], "warnings only")  # nothing raised


def test_ids_must_fit_in_64_bits():
    """The evaluation keeps ids in int64 arrays: a larger id is refused, not an OverflowError later."""
    gt = _gt()
    gt["annotations"][0]["id"] = 2**63
    gt["categories"].append({"id": -(2**63) - 1, "name": "d"})
    problems = [(p.kind, p.where, p.field) for p in ytvis_problems(gt)]
    assert problems == [("bad_item", "categories[1]", "id"), ("bad_item", "annotations[0]", "id")]
    results = [{"video_id": 2**64, "category_id": 3, "score": 0.5, "segmentations": [None, None]}]
    assert [(p.kind, p.field) for p in results_problems(results)] == [("unknown_video", "video_id")]


def _rle_fr_string(counts: bytes) -> list[int]:
    """pycocotools' rleFrString, statement by statement (the reference for `_decode_runs`)."""
    runs, p = [], 0
    while p < len(counts):
        x, k, more = 0, 0, True
        while more:
            c = counts[p] - 48
            x |= (c & 0x1F) << 5 * k
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << 5 * k
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.lists(st.binary(min_size=1, max_size=12).map(lambda b: bytes(48 + v % 64 for v in b)),
                min_size=1, max_size=6))
def test_vectorised_decoder_equals_rle_fr_string(strings):
    """Several strings in one batch (each restarts both delta chains) decode as pycocotools does."""
    from streamvis.data.validate import _decode_runs

    runs, owner, bad = _decode_runs(b"".join(strings), np.array([len(s) for s in strings]))
    for i, counts in enumerate(strings):
        if counts[-1] - 48 < 0x20 and not bad[i]:  # complete strings with runs pycocotools can hold
            assert runs[owner == i].tolist() == _rle_fr_string(counts), counts
