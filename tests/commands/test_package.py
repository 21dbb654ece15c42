"""`streamvis package`: pre-flight checks against the split, the server zip, warnings and exit codes."""

from __future__ import annotations

import json
import zipfile

import pytest
from tests.data.formats.conftest import make_dataset

from streamvis.cli import main
from streamvis.data.formats.common import build_results, dataset_videos
from streamvis.data.formats.submission import check_submission
from streamvis.data.ytvis import write_ytvis


def _results(gt):
    videos = dataset_videos(gt)
    for video in videos:
        for k, track in enumerate(video.tracks):
            track.score = 0.9 - 0.1 * k
    return [{k: v for k, v in r.items() if k != "track_id"} for r in build_results(videos, gt)]


@pytest.fixture
def split(tmp_path):
    gt = make_dataset()
    write_ytvis(tmp_path / "valid.json", gt)
    return gt, tmp_path / "valid.json"


def test_good_results_are_zipped_with_one_results_json(split, tmp_path, capsys):
    gt, gt_path = split
    results = _results(gt)
    results[0]["segmentations"][0] = {
        "size": [24, 32],
        "counts": [0, 24 * 32],
    }  # uncompressed: compressed in the zip
    (tmp_path / "r.json").write_text(json.dumps(results))
    out = tmp_path / "submission.zip"
    assert (
        main(["package", "--results", str(tmp_path / "r.json"), "--gt", str(gt_path), "--out", str(out)]) == 0
    )
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["results.json"]
        packed = json.loads(archive.read("results.json"))
    assert len(packed) == 3 and set(packed[0]) == {"video_id", "category_id", "score", "segmentations"}
    assert isinstance(packed[0]["segmentations"][0]["counts"], str)
    printed = capsys.readouterr().out
    assert "videos with results: 2/2" in printed and "warning" not in printed and "-> " in printed


def test_every_problem_is_counted_and_nothing_is_written(split, tmp_path, capsys):
    gt, gt_path = split
    results = _results(gt)
    results[0]["score"] = float("nan")
    results[1]["segmentations"] = results[1]["segmentations"][:4]
    results[2]["segmentations"][0] = {"size": [24, 32], "counts": "abc"}
    results.append({"video_id": 99, "category_id": 1, "score": 0.5, "segmentations": []})
    results.append({"video_id": 1, "category_id": 40, "score": 0.5, "segmentations": [None] * 5})
    (tmp_path / "r.json").write_text(json.dumps(results))
    out = tmp_path / "submission.zip"
    assert (
        main(["package", "--results", str(tmp_path / "r.json"), "--gt", str(gt_path), "--out", str(out)]) == 2
    )
    printed = capsys.readouterr().out
    assert "5 errors (no zip written)" in printed
    for line in (
        "bad_value: 1",
        "length_mismatch: 1",
        "bad_segmentation: 1",
        "unknown_video: 1",
        "unknown_category: 1",
        "results[2]: field 'segmentations[0].size': RLE size [24, 32] differs from the video's [height, "
        "width] = [16, 20]",
    ):
        assert line in printed
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_missing_videos_and_too_many_tracks_are_warnings(split):
    gt, _ = split
    results = [r for r in _results(gt) if r["video_id"] == 1] * 3
    report = check_submission(results, gt, max_tracks=5)
    assert report.num_errors == 0
    assert report.missing_videos == [2]
    assert report.crowded_videos == [(1, 6)]
    assert check_submission({"results": []}, gt).counts == {"bad_structure": 1}


def test_the_report_counts_the_validators_records(split):
    """package and loading share the validator: a broken RLE string of the right size is caught too
    (the old per-module check only looked at uncompressed counts), and the counts are its records'."""
    from streamvis.data.validate import count_problems, results_problems
    from streamvis.data.ytvis import validate_results
    from streamvis.errors import DataFormatError

    gt, _ = split
    results = _results(gt)
    results[0]["segmentations"][0] = {"size": [24, 32], "counts": "abc"}  # video 1 is 24x32
    results[1]["score"] = "0.5"
    report = check_submission(results, gt)
    assert dict(report.counts) == count_problems(results_problems(results, gt))
    assert dict(report.counts) == {"bad_value": 1, "bad_segmentation": 1}
    assert report.examples["bad_segmentation"][0].startswith("results[0]: field 'segmentations[0].counts'")
    with pytest.raises(DataFormatError) as err:
        validate_results(results, gt)
    assert str(err.value) in [example for examples in report.examples.values() for example in examples]
