"""BDD100K MOTS: the RGBA packing of category / attributes / instance id, Scalabel json, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from tests.data.formats.conftest import frame_lists, masks_by_object

from streamvis.data.formats import bdd_mots
from streamvis.data.masks import encode_mask
from streamvis.data.ytvis import validate_ytvis
from streamvis.errors import DataFormatError, StreamvisError


def _bitmask(height=6, width=8):
    return np.zeros((height, width, 4), np.uint8)


def _write_video(folder, frames):
    folder.mkdir(parents=True)
    for k, rgba in enumerate(frames):
        Image.fromarray(rgba, mode="RGBA").save(folder / f"vid-{k + 1:07d}.png")


def test_reads_the_official_channel_packing(tmp_path):
    first = _bitmask()
    first[1:3, 1:4] = (3, 2, 1, 44)  # car, crowd bit, instance (1 << 8) + 44 = 300
    first[4:6, 5:8] = (1, 8 + 4, 0, 7)  # pedestrian, truncated + occluded, instance 7
    second = _bitmask()
    second[4:6, 4:7] = (1, 0, 0, 7)
    _write_video(tmp_path / "masks" / "vid", [first, second])
    data = bdd_mots.read_gt(tmp_path / "masks")
    validate_ytvis(data)
    assert [c["name"] for c in data["categories"]] == list(bdd_mots.SEG_TRACK_CATEGORIES)
    by_id = {a["track_id"]: a for a in data["annotations"]}
    assert sorted(by_id) == [7, 300]
    assert by_id[300]["category_id"] == 3 and by_id[300]["iscrowd"] == 1
    assert by_id[300]["areas"] == [6, None] and by_id[300]["bdd_attributes"] == [2, None]
    assert by_id[7]["category_id"] == 1 and by_id[7]["iscrowd"] == 0
    assert by_id[7]["bdd_attributes"] == [12, 0] and by_id[7]["bboxes"][1] == [4.0, 4.0, 3.0, 2.0]
    assert data["videos"][0]["file_names"] == ["vid/vid-0000001.jpg", "vid/vid-0000002.jpg"]


def test_bitmask_round_trip_is_byte_identical(tmp_path):
    frame = _bitmask()
    frame[1:3, 1:4] = (3, 2, 1, 44)
    frame[4:6, 5:8] = (1, 12, 0, 7)
    _write_video(tmp_path / "in" / "vid", [frame])
    bdd_mots.write_gt(bdd_mots.read_gt(tmp_path / "in"), tmp_path / "out")
    written = np.asarray(Image.open(tmp_path / "out" / "vid" / "vid-0000001.png"))
    assert np.array_equal(written, frame)


def test_round_trip_of_a_dataset_in_both_layouts(dataset, tmp_path):
    bdd_mots.write_gt(dataset, tmp_path / "bitmasks")
    back = bdd_mots.read_gt(tmp_path / "bitmasks")
    assert masks_by_object(back) == masks_by_object(dataset)
    assert frame_lists(back) == frame_lists(dataset)
    bdd_mots.write_gt(dataset, tmp_path / "labels.json")
    back = bdd_mots.read_gt(tmp_path / "labels.json")
    assert masks_by_object(back) == masks_by_object(dataset)
    frames = json.loads((tmp_path / "labels.json").read_text())
    assert frames[1]["videoName"] == "walk" and frames[1]["frameIndex"] == 1
    assert {lab["id"] for lab in frames[1]["labels"]} == {"3", "7"}


def test_instance_with_two_categories_is_refused(tmp_path):
    frame = _bitmask()
    frame[0:2, 0:2] = (3, 0, 0, 5)
    frame[3:4, 3:4] = (4, 0, 0, 5)
    _write_video(tmp_path / "m" / "vid", [frame])
    message = r"vid-0000001\.png: instance 5 has several \(category R, attributes G\) values "
    message += r"\[\(3, 0\), \(4, 0\)\]"
    with pytest.raises(DataFormatError, match=message):
        bdd_mots.read_gt(tmp_path / "m")


def test_non_rgba_png_and_size_change_are_refused(tmp_path):
    _write_video(tmp_path / "a" / "vid", [_bitmask(), _bitmask(6, 9)])
    with pytest.raises(DataFormatError, match=r"vid-0000002\.png: the frame is 6x9"):
        bdd_mots.read_gt(tmp_path / "a")
    (tmp_path / "b" / "vid").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "b" / "vid" / "x.png")
    with pytest.raises(DataFormatError, match="must be a PNG of mode RGBA, this one is mode RGB"):
        bdd_mots.read_gt(tmp_path / "b")


def test_scalabel_duplicate_id_and_bezier_are_refused(tmp_path):
    rle = encode_mask(np.ones((4, 4), np.uint8))
    label = {"id": "a", "category": "car", "rle": rle}
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps([{"name": "f1.jpg", "videoName": "v", "frameIndex": 0, "labels": [label, label]}])
    )
    with pytest.raises(
        DataFormatError, match=r"s\.json: frames\[0\] \(f1\.jpg\), labels\[1\]: field 'id': object id 'a'"
    ):
        bdd_mots.read_gt(path)
    curve = {"vertices": [[0, 0], [3, 0], [3, 3], [0, 3]], "types": "LCCL", "closed": True}
    path.write_text(
        json.dumps(
            [
                {
                    "name": "f1.jpg",
                    "videoName": "v",
                    "labels": [{"id": "a", "category": "car", "poly2d": [curve]}],
                }
            ]
        )
    )
    with pytest.raises(DataFormatError, match="Bezier"):
        bdd_mots.read_gt(path)


def test_scalabel_line_polygons_are_rasterized(tmp_path):
    square = {"vertices": [[1, 1], [5, 1], [5, 4], [1, 4]], "types": "LLLL", "closed": True}
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps(
            {
                "frames": [
                    {
                        "name": "f.jpg",
                        "videoName": "v",
                        "frameIndex": 0,
                        "size": {"width": 8, "height": 6},
                        "labels": [{"id": "9", "category": "bus", "poly2d": [square]}],
                    }
                ]
            }
        )
    )
    data = bdd_mots.read_gt(path)
    assert data["videos"][0]["height"] == 6 and data["annotations"][0]["track_id"] == 9
    assert data["annotations"][0]["areas"][0] == 12  # pycocotools: the 4x3 interior pixels


def test_unknown_category_names_the_fix(dataset, tmp_path):
    dataset["categories"][0]["name"] = "person"
    with pytest.raises(StreamvisError, match="'person' is not a BDD100K MOTS category.*--category-map"):
        bdd_mots.write_gt(dataset, tmp_path / "out")
    assert not (tmp_path / "out").exists()
