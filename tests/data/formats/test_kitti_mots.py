"""KITTI-MOTS txt: round trips through the YouTube-VIS dict, golden folders, and every refusal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest

from streamvis.data.formats import kitti_mots
from streamvis.data.formats._mots_text import rle_total
from streamvis.data.ytvis import validate_results, validate_ytvis
from streamvis.errors import DataFormatError, StreamvisError

GOLDEN = Path(__file__).resolve().parents[1] / "mots_eval"
H, W = 6, 8


def rle_string(mask: np.ndarray) -> str:
    return mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")


def box(y0, y1, x0, x1, shape=(H, W)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def line(frame, oid, cls, mask) -> str:
    return f"{frame} {oid} {cls} {mask.shape[0]} {mask.shape[1]} {rle_string(mask)}\n"


def write_gt_folder(root: Path, files: dict[str, str], lengths: dict[str, int]) -> Path:
    (root / "label_02").mkdir(parents=True)
    for name, text in files.items():
        (root / "label_02" / f"{name}.txt").write_text(text)
    (root / "evaluate_mots.seqmap.val").write_text(
        "".join(f"{n} empty 000000 {lengths[n] - 1:06d}\n" for n in files)
    )
    return root


def decode(seg) -> np.ndarray:
    return mask_util.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)


@pytest.fixture
def small_gt(tmp_path):
    text = (
        line(0, 1001, 1, box(0, 2, 0, 2))
        + line(0, 2001, 2, box(3, 5, 3, 5))
        + line(0, 10000, 10, box(0, 1, 6, 8))
        + line(0, 10000, 10, box(0, 2, 7, 8))
        + line(2, 1001, 1, box(0, 2, 1, 3))
    )
    return write_gt_folder(
        tmp_path / "gt", {"0000": text, "0003": line(1, 1002, 1, box(1, 2, 1, 2))}, {"0000": 3, "0003": 2}
    )


def test_read_gt_builds_the_youtube_vis_dict(small_gt):
    data = kitti_mots.read_gt(small_gt)
    validate_ytvis(data)
    assert [(v["id"], v["length"], v["height"], v["width"]) for v in data["videos"]] == [
        (1, 3, H, W),
        (2, 2, H, W),
    ]
    assert data["videos"][1]["file_names"][1] == "0003/000001.png"
    assert [c["name"] for c in data["categories"]] == ["car", "pedestrian", "ignore"]
    anns = data["annotations"]
    assert [(a["video_id"], a["category_id"], a["track_id"], a["iscrowd"]) for a in anns] == [
        (1, 1, 1001, 0),
        (1, 2, 2001, 0),
        (1, 10, 10000, 1),
        (2, 1, 1002, 0),
    ]
    car = anns[0]
    assert car["segmentations"][1] is None and car["areas"] == [4, None, 4]
    assert (decode(car["segmentations"][2]) == box(0, 2, 1, 3)).all()
    assert (decode(anns[2]["segmentations"][0]) == (box(0, 1, 6, 8) | box(0, 2, 7, 8))).all()  # united


def test_gt_round_trip(small_gt, tmp_path):
    data = kitti_mots.read_gt(small_gt)
    kitti_mots.write_gt(data, tmp_path / "out")
    again = kitti_mots.read_gt(tmp_path / "out")
    assert again == data
    assert (tmp_path / "out" / "evaluate_mots.seqmap.val").read_text() == (
        "0000 empty 000000 000002\n0003 empty 000000 000001\n"
    )


def test_results_round_trip(small_gt, tmp_path):
    data = kitti_mots.read_gt(small_gt)
    tracker = tmp_path / "tracker"
    tracker.mkdir()
    (tracker / "0000.txt").write_text(
        line(0, 7, 1, box(0, 2, 0, 3))
        + line(2, 7, 2, box(3, 6, 0, 2))
        + line(2, 5, 1, np.zeros((H, W), bool))
    )
    (tracker / "0003.txt").write_text("")
    results = kitti_mots.read_results(tracker, dataset=data)
    validate_results(results, data)
    assert [(r["video_id"], r["category_id"], r["track_id"], r["score"]) for r in results] == [
        (1, 1, 7, 1.0),
        (1, 2, 7, 1.0),
        (1, 1, 5, 1.0),
    ]  # one entry per (id, class); empty masks kept
    assert results[2]["segmentations"][2]["counts"] == rle_string(np.zeros((H, W), bool))
    kitti_mots.write_results(results, data, tmp_path / "again")
    assert kitti_mots.read_results(tmp_path / "again", dataset=data) == results
    assert (tmp_path / "again" / "0003.txt").read_text() == ""


@pytest.mark.parametrize("case", ["case_004", "case_009"])
def test_golden_folders_round_trip(case, tmp_path):
    data, results = kitti_mots.read_evaluation_inputs(
        GOLDEN / case / "gt", GOLDEN / case / "tracker" / "predictions" / "data"
    )
    kitti_mots.write_gt(data, tmp_path / "gt")
    kitti_mots.write_results(results, data, tmp_path / "data")
    again, results_again = kitti_mots.read_evaluation_inputs(tmp_path / "gt", tmp_path / "data")
    assert again == data and results_again == results


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0 1001 1 6 8\n", r"line 1: a MOTS line has 6 space-separated fields .* has 5"),
        ("0 x 1 6 8 PP\n", r"line 1: field 'object id': must be an integer, got 'x'"),
        (
            f"0 1001 1 6 9 {rle_string(box(0, 2, 0, 2))}\n",
            r"field 'rle': the RLE covers 48 pixels but .* 6 x 9 has 54",
        ),
        ("0 1001 1 6 8 ab~c\n", r"field 'rle': not a compressed COCO RLE"),
        (f"0 1001 3 6 8 {rle_string(box(0, 2, 0, 2))}\n", r"field 'class id': class 3 is not one"),
        (
            f"5 1001 1 6 8 {rle_string(box(0, 2, 0, 2))}\n",
            r"field 'frame': frame 5 is outside the sequence \(frames 0..2\)",
        ),
        (
            line(0, 1001, 1, box(0, 2, 0, 2)) + line(0, 1001, 1, box(3, 4, 3, 4)),
            r"line 2: field 'object id': object id 1001 appears twice in frame 0 \(also on line 1\)",
        ),
        (
            line(1, 1001, 1, box(0, 2, 0, 2)) + line(1, 1002, 1, box(1, 3, 1, 3)),
            r"line 2: field 'rle': line 2's mask overlaps an earlier mask of frame 1",
        ),
        (
            line(1, 1001, 1, box(0, 2, 0, 2)) + line(1, 10000, 10, box(1, 3, 1, 3)),
            r"the frame's ignore region overlaps an earlier mask of frame 1",
        ),
        (
            line(0, 1001, 1, box(0, 2, 0, 2)) + line(1, 1001, 1, box(0, 2, 0, 2, shape=(7, 8))),
            r"line 2: field 'image height': image size 7 x 8 differs from the sequence's 6 x 8",
        ),
    ],
)
def test_bad_gt_lines_are_refused(tmp_path, text, match):
    folder = write_gt_folder(tmp_path / "gt", {"0000": text, "0001": ""}, {"0000": 3, "0001": 1})
    with pytest.raises(DataFormatError, match=match) as error:
        kitti_mots.read_gt(folder, image_sizes={"0001": (H, W)})
    assert "label_02/0000.txt" in str(error.value)


def test_refusals_of_the_tracker_side(small_gt, tmp_path):
    data = kitti_mots.read_gt(small_gt)
    tracker = tmp_path / "tracker"
    tracker.mkdir()
    (tracker / "0000.txt").write_text("")
    with pytest.raises(StreamvisError, match="0003.txt: file not found"):
        kitti_mots.read_results(tracker, dataset=data)
    (tracker / "0003.txt").write_text(line(0, 4, 1, box(0, 1, 0, 1)) + line(0, 4, 2, box(2, 3, 2, 3)))
    with pytest.raises(DataFormatError, match="object id 4 appears twice in frame 0"):  # across classes
        kitti_mots.read_results(tracker, dataset=data)


def test_blank_files_single_row_seqmaps_and_missing_sizes(tmp_path):
    folder = write_gt_folder(tmp_path / "gt", {"0000": "\n"}, {"0000": 2})  # single row, only a newline
    with pytest.raises(DataFormatError, match="no lines, so its image size is unknown"):
        kitti_mots.read_gt(folder)
    data = kitti_mots.read_gt(folder, image_sizes={"0000": (H, W)})
    assert data["annotations"] == [] and data["videos"][0]["length"] == 2
    assert [c["name"] for c in data["categories"]] == ["car", "pedestrian"]  # no ignore regions
    (folder / "evaluate_mots.seqmap.val").write_text("0000 empty\n")
    with pytest.raises(DataFormatError, match="seqmap row has 4 fields"):
        kitti_mots.read_gt(folder)


def test_writers_refuse_overlaps_and_write_nothing(small_gt, tmp_path):
    data = kitti_mots.read_gt(small_gt)
    results = [
        {
            "video_id": 1,
            "category_id": 1,
            "score": 0.9,
            "segmentations": [{"size": [H, W], "counts": rle_string(box(0, 3, 0, 3))}, None, None],
        },
        {
            "video_id": 1,
            "category_id": 2,
            "score": 0.5,
            "segmentations": [{"size": [H, W], "counts": rle_string(box(2, 4, 2, 4))}, None, None],
        },
    ]
    with pytest.raises(DataFormatError, match="masks of frame 0 overlap"):
        kitti_mots.write_results(results, data, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    kitti_mots.write_results(results, data, tmp_path / "out", resolve_overlaps=True)
    back = kitti_mots.read_results(tmp_path / "out", dataset=data)
    assert [r["track_id"] for r in back] == [1, 2]
    assert (
        decode(back[1]["segmentations"][0]) == (box(2, 4, 2, 4) & ~box(0, 3, 0, 3))
    ).all()  # higher score wins
    bad = json.loads(json.dumps(data))
    bad["annotations"][0]["category_id"] = 2
    bad["categories"].append({"id": 5, "name": "bus"})
    bad["annotations"][1]["category_id"] = 5
    with pytest.raises(DataFormatError, match="a category has no MOTS class .*pass class_map"):
        kitti_mots.write_gt(bad, tmp_path / "gt_out")
    assert not (tmp_path / "gt_out").exists()
    kitti_mots.write_gt(bad, tmp_path / "gt_out", class_map={"bus": 1})
    assert [a["category_id"] for a in kitti_mots.read_gt(tmp_path / "gt_out")["annotations"][:2]] == [2, 1]
    with pytest.raises(DataFormatError, match="class_map key 'tram' is not a category"):
        kitti_mots.write_gt(bad, tmp_path / "gt_other", class_map={"tram": 1})


def test_rle_total_matches_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((13, 17)) < rng.random()
        assert rle_total(rle_string(mask)) == 13 * 17
    assert rle_total("") == 0 and rle_total("0") == 0 and rle_total("P") is None  # 'P' continues a run


def test_copy_of_the_golden_folder_is_evaluated_like_trackeval(tmp_path):
    """A single-sequence seqmap (TrackEval's sniffer fails on it) is read."""
    shutil.copytree(GOLDEN / "case_001", tmp_path / "case")
    seqmap = tmp_path / "case" / "gt" / "evaluate_mots.seqmap.val"
    seqmap.write_text(seqmap.read_text().splitlines()[0] + "\n")
    data, results = kitti_mots.read_evaluation_inputs(
        tmp_path / "case" / "gt", tmp_path / "case" / "tracker" / "predictions" / "data"
    )
    assert [v["file_names"][0] for v in data["videos"]] == ["0000/000000.png"]
    assert {r["video_id"] for r in results} == {1}


def test_without_seqmap_results_must_fit_the_gt(tmp_path):
    gt = tmp_path / "gt"
    (gt / "label_02").mkdir(parents=True)
    (gt / "label_02" / "0005.txt").write_text(line(1, 1001, 1, box(0, 2, 0, 2)))  # 2 frames: 0..1
    tracker = tmp_path / "tracker"
    tracker.mkdir()
    (tracker / "0005.txt").write_text(line(2, 1, 1, box(0, 2, 0, 2)))
    with pytest.raises(DataFormatError, match=r"0005.txt: line 1: field 'frame': frame 2 is outside .*0..1"):
        kitti_mots.read_evaluation_inputs(gt, tracker)
    (tracker / "0005.txt").write_text(line(0, 1, 1, np.zeros((H + 1, W), bool)))
    with pytest.raises(DataFormatError, match=r"image size 7 x 8 differs from the sequence's 6 x 8"):
        kitti_mots.read_evaluation_inputs(gt, tracker)
    (tracker / "0005.txt").write_text(line(1, 1, 1, box(0, 2, 0, 2)))
    data, results = kitti_mots.read_evaluation_inputs(gt, tracker)
    assert data["videos"][0]["length"] == 2 and results[0]["segmentations"][0] is None


def test_official_instances_txt_folder(small_gt, tmp_path):
    shutil.copytree(small_gt / "label_02", tmp_path / "official" / "instances_txt")
    assert (
        kitti_mots.read_gt(tmp_path / "official")["annotations"]
        == kitti_mots.read_gt(small_gt)["annotations"]
    )


def test_bad_track_ids_are_refused(small_gt, tmp_path):
    data = kitti_mots.read_gt(small_gt)
    entry = {"video_id": 1, "category_id": 1, "score": 1.0, "segmentations": [None] * 3, "track_id": "seven"}
    with pytest.raises(DataFormatError, match=r"results\[0\]: field 'track_id': a MOTS object id must be"):
        kitti_mots.write_results([entry], data, tmp_path / "out")
    data["annotations"][0]["track_id"] = -4
    with pytest.raises(DataFormatError, match=r"annotation 1: field 'track_id'"):
        kitti_mots.write_gt(data, tmp_path / "gt_out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "gt_out").exists()


def test_classes_follow_category_names(small_gt, tmp_path):
    """A YouTube-VIS dict whose ids differ from KITTI's: car / pedestrian are written by name."""
    data = kitti_mots.read_gt(small_gt)
    swapped = json.loads(json.dumps(data))
    new_id = {1: 7, 2: 3, 10: 10}
    swapped["categories"] = [{**c, "id": new_id[c["id"]]} for c in swapped["categories"]]
    for ann in swapped["annotations"]:
        ann["category_id"] = new_id[ann["category_id"]]
    kitti_mots.write_gt(swapped, tmp_path / "named")
    assert kitti_mots.read_gt(tmp_path / "named") == data
