"""MOTSChallenge txt: frames from 1, seqinfo.ini sizes, round trips and refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest

from streamvis.data.formats import mots_challenge
from streamvis.data.ytvis import validate_results, validate_ytvis
from streamvis.errors import DataFormatError, StreamvisError

GOLDEN = Path(__file__).resolve().parents[1] / "mots_eval"


def _paths(case: str) -> tuple[Path, Path]:
    return GOLDEN / case / "gt", GOLDEN / case / "tracker" / "MOTS-train" / "predictions" / "data"


def test_read_golden_case():
    data, results = mots_challenge.read_evaluation_inputs(*_paths("case_011"))
    validate_ytvis(data)
    validate_results(results, data)
    assert [(v["file_names"][0], v["length"], v["height"], v["width"]) for v in data["videos"]] == [
        ("MOTS20-91/img1/000000.jpg", 9, 60, 80),
        ("MOTS20-92/img1/000000.jpg", 8, 60, 80),
    ]
    assert {a["category_id"] for a in data["annotations"] if not a["iscrowd"]} == {2}
    assert any(a["iscrowd"] and a["category_id"] == 10 for a in data["annotations"])
    first = (
        (GOLDEN / "case_011" / "gt" / "MOTS-train" / "MOTS20-91" / "gt" / "gt.txt").read_text().split("\n")[0]
    )
    frame, oid, _, h, w, counts = first.split()
    ann = next(a for a in data["annotations"] if a["video_id"] == 1 and a["track_id"] == int(oid))
    assert ann["segmentations"][int(frame) - 1] == {
        "size": [int(h), int(w)],
        "counts": counts,
    }  # frames from 1


@pytest.mark.parametrize("case", ["case_011", "case_012"])
def test_round_trip(case, tmp_path):
    data, results = mots_challenge.read_evaluation_inputs(*_paths(case))
    mots_challenge.write_gt(data, tmp_path / "gt")
    mots_challenge.write_results(results, data, tmp_path / "data")
    assert (tmp_path / "gt" / "seqmaps" / "MOTS-train.txt").read_text().startswith("name\nMOTS20-91\n")
    assert mots_challenge.read_evaluation_inputs(tmp_path / "gt", tmp_path / "data") == (data, results)


def test_refusals(tmp_path):
    data, _ = mots_challenge.read_evaluation_inputs(*_paths("case_011"))
    mots_challenge.write_gt(data, tmp_path / "gt")
    gt_file = tmp_path / "gt" / "MOTS-train" / "MOTS20-91" / "gt" / "gt.txt"
    good = gt_file.read_text().splitlines()
    mask = np.zeros((60, 80), np.uint8)
    mask[:2, :2] = 1
    counts = mask_util.encode(np.asfortranarray(mask))["counts"].decode()
    gt_file.write_text(f"0 2001 2 60 80 {counts}\n")  # frame 0 does not exist: frames are 1..9
    with pytest.raises(
        DataFormatError, match=r"gt.txt: line 1: field 'frame': frame 0 is outside .*frames 1..9"
    ):
        mots_challenge.read_gt(tmp_path / "gt")
    gt_file.write_text(f"1 2001 1 60 80 {counts}\n")  # a car in MOTSChallenge
    with pytest.raises(DataFormatError, match=r"class 1 is not one of this format's classes \[2, 10\]"):
        mots_challenge.read_gt(tmp_path / "gt")
    small = mask_util.encode(np.asfortranarray(mask[:50]))["counts"].decode()
    gt_file.write_text(f"1 2001 2 50 80 {small}\n")  # not the seqinfo size
    with pytest.raises(DataFormatError, match="image size 50 x 80 differs from the sequence's 60 x 80"):
        mots_challenge.read_gt(tmp_path / "gt")
    gt_file.write_text("\n".join(good) + "\n")
    seqinfo = gt_file.parent.parent / "seqinfo.ini"
    seqinfo.write_text("[Sequence]\nseqLength=nine\n")
    with pytest.raises(DataFormatError, match="seqinfo.ini: needs a \\[Sequence\\] section"):
        mots_challenge.read_gt(tmp_path / "gt")
    seqinfo.unlink()
    with pytest.raises(StreamvisError, match="seqinfo.ini: file not found"):
        mots_challenge.read_gt(tmp_path / "gt")
