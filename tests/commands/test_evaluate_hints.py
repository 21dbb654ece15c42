"""`streamvis evaluate` on results that do not fit: partial results warn, wrong lengths hint at a split."""

from __future__ import annotations

import json

import numpy as np

from streamvis.cli import main
from streamvis.data.masks import encode_mask


def _mask():
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    return encode_mask(mask)


def _write(tmp_path, results):
    videos = [{"id": vid, "width": 8, "height": 8, "length": 2,
               "file_names": [f"{vid}/0.jpg", f"{vid}/1.jpg"]}
              for vid in (1, 2, 3)]
    annotations = [{"id": vid, "video_id": vid, "category_id": 1, "iscrowd": 0,
                    "segmentations": [_mask()] * 2,
                    "areas": [16, 16], "bboxes": [[2, 2, 4, 4]] * 2} for vid in (1, 2, 3)]
    gt = {"videos": videos, "categories": [{"id": 1, "name": "cat"}], "annotations": annotations}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "results.json").write_text(json.dumps(results))
    return ["evaluate", "--gt", str(tmp_path / "gt.json"), "--results", str(tmp_path / "results.json")]


def test_partial_results_are_scored_with_a_warning(tmp_path, capsys):
    entry = {"video_id": 2, "category_id": 1, "score": 0.9, "segmentations": [_mask()] * 2}
    assert main(_write(tmp_path, [entry])) == 0
    captured = capsys.readouterr()
    assert "the results cover 1 of 3 videos; 2 videos have no results (ids 1, 3)" in captured.err
    assert "AP" in captured.out  # scored anyway


def test_length_mismatch_names_the_video_and_suggests_another_split(tmp_path, capsys):
    entries = [{"video_id": 1, "category_id": 1, "score": 0.9, "segmentations": [_mask()] * 2},
               {"video_id": 3, "category_id": 1, "score": 0.5, "segmentations": [_mask()] * 5}]
    assert main(_write(tmp_path, entries)) == 2
    err = capsys.readouterr().err
    assert "results[1], video id 3" in err and "has 5 entries but the video's length is 2" in err
    assert "another split" in err and "Traceback" not in err
    entries[1]["video_id"] = 77
    entries[1]["segmentations"] = [_mask()] * 2
    assert main(_write(tmp_path, entries)) == 2
    err = capsys.readouterr().err
    assert "video id 77" in err and "unknown video_id 77" in err and "another split" in err
