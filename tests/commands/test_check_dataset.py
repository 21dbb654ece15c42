"""`streamvis check-dataset`: counts of each error kind, examples naming file/video/frame, exit codes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamvis.cli import main
from streamvis.commands.check_dataset import check_dataset

_spec = importlib.util.spec_from_file_location(
    "tiny_ytvis_fixtures", Path(__file__).resolve().parents[1] / "data" / "conftest.py"
)
fixtures = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(fixtures)  # the tiny dataset builder shared with tests/data


def _rewrite(tiny, edit) -> None:
    data = json.loads(tiny.json_path.read_text())
    edit(data)
    tiny.json_path.write_text(json.dumps(data))


def _drop_empty_mask(data) -> None:
    data["annotations"] = [a for a in data["annotations"] if a["id"] != 203]


@pytest.fixture
def tiny(tmp_path):
    return fixtures.make_tiny_ytvis(tmp_path)


def _cli(tiny, *extra) -> int:
    return main(["check-dataset", "--gt", str(tiny.json_path), "--images", str(tiny.image_root),
                 "--no-progress", *extra])


def test_a_clean_dataset_passes(tiny, capsys):
    _rewrite(tiny, _drop_empty_mask)
    assert _cli(tiny) == 0
    out = capsys.readouterr().out
    assert "checked 3 videos, 51 frames, 6 annotations" in out and "OK: no errors found" in out


def test_the_fixture_s_empty_mask_is_a_warning(tiny, capsys):
    """An empty non-null mask loads (load_ytvis accepts it), so it is a warning: exit 0, same verdict."""
    assert _cli(tiny) == 0
    out = capsys.readouterr().out
    assert "OK: no errors found" in out and "1 warning" in out and "empty_mask: 1  [warning]" in out
    assert "annotations[5] (id 203): field 'segmentations[21]': the segmentation has no foreground" in out


def _break_json(data) -> None:
    _drop_empty_mask(data)
    anns = {a["id"]: a for a in data["annotations"]}
    anns[100]["category_id"] = 99  # unknown category
    anns[201]["segmentations"] = anns[201]["segmentations"][:-1]  # 39 entries for 40 frames
    anns[200]["segmentations"][3] = {"size": [10, 10], "counts": "PPYo0"}  # wrong size
    data["annotations"].append(dict(anns[200], id=500, video_id=77))  # unknown video
    data["videos"][2]["length"] = 4  # 3 file names


def test_every_kind_of_error_is_counted(tiny, capsys):
    _rewrite(tiny, _break_json)
    root = tiny.image_root
    (root / "left" / "00003.jpg").unlink()
    (root / "left" / "00005.jpg").unlink()
    data = (root / "far" / "00007.jpg").read_bytes()
    (root / "far" / "00007.jpg").write_bytes(data[:-8])  # truncated JPEG
    with Image.open(root / "far" / "00007.jpg") as im:
        assert im.size == (64, 48)  # its header still reads: only decoding finds the truncation
    (root / "far" / "00008.jpg").write_bytes(b"not a jpeg")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(root / "crowd" / "00001.jpg")  # wrong size

    report = check_dataset(tiny.json_path, tiny.image_root, max_examples=1)
    assert dict(report.counts) == {
        "missing_frame": 2, "unreadable_frame": 2, "frame_size_mismatch": 1, "length_mismatch": 2,
        "unknown_video": 1, "unknown_category": 1, "bad_segmentation": 1,
    }
    assert len(report.examples["unreadable_frame"]) == 1  # max_examples
    assert report.examples["unreadable_frame"][0].startswith("far/00007.jpg (video 20, frame 7)")

    assert _cli(tiny, "--max-examples", "1", "--out", str(tiny.json_path.parent / "report.json")) == 1
    out = capsys.readouterr().out
    assert "missing_frame: 2" in out and "left/00003.jpg (video 10, frame 3): file not found" in out
    assert "... and 1 more" in out
    assert "crowd/00001.jpg (video 30, frame 1)" in out and "10x10" in out
    assert "annotations[3] (id 200): field 'segmentations[3].size'" in out
    saved = json.loads((tiny.json_path.parent / "report.json").read_text())
    assert saved["num_errors"] == 10 and saved["counts"]["unreadable_frame"] == 2


def test_a_missing_json_is_a_user_error(tmp_path, capsys):
    assert main(["check-dataset", "--gt", str(tmp_path / "nope.json"), "--images", str(tmp_path)]) == 2
    assert "nope.json" in capsys.readouterr().err
