"""labelme per-frame jsons: identities by (label, group_id), united parts, mask shapes, bad input."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from tests.data.formats.conftest import frame_lists, masks_by_object

from streamvis.data.formats import labelme
from streamvis.data.masks import decode_rle
from streamvis.data.ytvis import validate_ytvis
from streamvis.errors import DataFormatError


def _frame(folder, name, shapes, height=10, width=12):
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "version": "5.5.0",
        "flags": {},
        "shapes": shapes,
        "imagePath": f"{name}.jpg",
        "imageData": None,
        "imageHeight": height,
        "imageWidth": width,
    }
    (folder / f"{name}.json").write_text(json.dumps(data))


def _poly(label, group, points, kind="polygon"):
    return {"label": label, "group_id": group, "points": points, "shape_type": kind, "flags": {}}


def test_identities_parts_and_shape_types(tmp_path):
    video = tmp_path / "clip"
    square = [[1, 1], [4, 1], [4, 4], [1, 4]]
    _frame(
        video,
        "frame2",
        [
            _poly("dog", 1, square),
            _poly("dog", 1, [[6, 6], [8, 8]], "rectangle"),
            _poly("dog", None, [[0, 8], [1, 9]], "rectangle"),
        ],
    )
    _frame(
        video,
        "frame10",
        [
            _poly("dog", 1, [[2, 2], [3, 3]], "rectangle"),
            _poly("cat", 1, [[9, 1], [10, 2]], "rectangle"),
            _poly("dog", 1, [[0, 0], [5, 5]], "line"),
        ],
    )
    data = labelme.read_gt(tmp_path)
    validate_ytvis(data)
    assert data["videos"][0]["file_names"] == ["clip/frame2.jpg", "clip/frame10.jpg"]  # natural order
    assert [c["name"] for c in data["categories"]] == ["dog", "cat"]
    anns = data["annotations"]
    assert [(a["track_id"], a["category_id"]) for a in anns] == [(1, 1), (2, 1), (3, 2)]
    dog = anns[0]
    assert dog["areas"] == [9 + 9, 4]  # the polygon's 3x3 plus the 3x3 rectangle, united; then a 2x2
    assert anns[1]["segmentations"][1] is None  # the group-less dog is in frame2 only


def test_mask_shape_is_placed_in_its_inclusive_box(tmp_path):
    crop = np.array([[1, 0, 1], [1, 1, 1]], np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(crop * 255, mode="L").save(buffer, format="PNG")
    shape = _poly("cup", 4, [[5, 2], [7, 3]], "mask")
    shape["mask"] = base64.b64encode(buffer.getvalue()).decode()
    _frame(tmp_path / "v", "0001", [shape])
    mask = decode_rle(labelme.read_gt(tmp_path)["annotations"][0]["segmentations"][0])
    expected = np.zeros((10, 12), np.uint8)
    expected[2:4, 5:8] = crop
    assert np.array_equal(mask, expected)


def test_round_trip(dataset, tmp_path):
    labelme.write_gt(dataset, tmp_path / "out")
    written = json.loads((tmp_path / "out" / "walk" / "00001.json").read_text())
    assert [(s["label"], s["group_id"], s["shape_type"]) for s in written["shapes"]] == [
        ("pedestrian", 3, "mask"),
        ("car", 7, "mask"),
    ]
    back = labelme.read_gt(tmp_path / "out")
    assert masks_by_object(back) == masks_by_object(dataset)
    assert frame_lists(back) == frame_lists(dataset)


def test_bad_input_names_file_shape_and_field(tmp_path):
    _frame(tmp_path / "a" / "v", "0001", [_poly("dog", 1, [[1, 1], [2, 2]])])
    with pytest.raises(
        DataFormatError,
        match=r"0001\.json: shapes\[0\] \(label 'dog'\): field 'points': a polygon needs at least 3",
    ):
        labelme.read_gt(tmp_path / "a")
    _frame(tmp_path / "b" / "v", "0001", [])
    _frame(tmp_path / "b" / "v", "0002", [], height=11)
    with pytest.raises(DataFormatError, match=r"0002\.json: field 'imageHeight': the frame is 11x12"):
        labelme.read_gt(tmp_path / "b")
    _frame(tmp_path / "c" / "v", "0001", [_poly("dog", "x", [[1, 1], [2, 2], [1, 2]])])
    with pytest.raises(DataFormatError, match="field 'group_id': must be an integer or null"):
        labelme.read_gt(tmp_path / "c")


def test_windows_image_paths_keep_only_the_file_name(tmp_path):
    _frame(tmp_path / "v", "0001", [])
    data = json.loads((tmp_path / "v" / "0001.json").read_text())
    data["imagePath"] = "..\\images\\0001.png"
    (tmp_path / "v" / "0001.json").write_text(json.dumps(data))
    assert labelme.read_gt(tmp_path)["videos"][0]["file_names"] == ["v/0001.png"]
    assert labelme.read_gt(tmp_path, image_ext=".jpg")["videos"][0]["file_names"] == ["v/0001.jpg"]
