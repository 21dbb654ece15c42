"""COCO-video (CocoVID / TAO) json: frame and track keys, category ids, bad input, round trip."""

from __future__ import annotations

import json

import pytest
from tests.data.formats.conftest import frame_lists, masks_by_object

from streamvis.data.formats import coco_video
from streamvis.data.ytvis import validate_ytvis
from streamvis.errors import DataFormatError

SQUARE = [[1.0, 1.0, 4.0, 1.0, 4.0, 4.0, 1.0, 4.0]]


def _tao_style():
    return {
        "videos": [{"id": 5, "name": "street"}],
        "images": [
            {
                "id": 11,
                "video_id": 5,
                "frame_index": 30,
                "file_name": "street/30.jpg",
                "height": 8,
                "width": 9,
            },
            {"id": 10, "video_id": 5, "frame_index": 0, "file_name": "street/0.jpg", "height": 8, "width": 9},
        ],
        "annotations": [
            {"id": 1, "image_id": 11, "category_id": 805, "track_id": 2, "segmentation": SQUARE},
            {"id": 2, "image_id": 10, "category_id": 95, "track_id": 1, "segmentation": SQUARE, "iscrowd": 1},
        ],
        "categories": [{"id": 95, "name": "bicycle"}, {"id": 805, "name": "person"}],
    }


def test_tao_style_keys_order_and_ids(tmp_path):
    path = tmp_path / "tao.json"
    path.write_text(json.dumps(_tao_style()))
    data = coco_video.read_gt(path)
    validate_ytvis(data)
    video = data["videos"][0]
    assert (video["id"], video["name"], video["file_names"]) == (
        5,
        "street",
        ["street/0.jpg", "street/30.jpg"],
    )
    assert data["categories"] == [{"id": 95, "name": "bicycle"}, {"id": 805, "name": "person"}]
    person, bicycle = sorted(data["annotations"], key=lambda a: -a["category_id"])
    assert person["track_id"] == 2 and person["segmentations"][0] is None and person["areas"][1] == 9
    assert bicycle["iscrowd"] == 1 and bicycle["segmentations"][1] is None


def test_round_trip(dataset, tmp_path):
    coco_video.write_gt(dataset, tmp_path / "out")
    written = json.loads((tmp_path / "out" / "annotations.json").read_text())
    assert written["images"][1] == {
        "id": 2,
        "video_id": 1,
        "frame_id": 1,
        "file_name": "walk/00001.jpg",
        "height": 24,
        "width": 32,
    }
    assert {a["instance_id"] for a in written["annotations"]} == {1, 3, 7}
    back = coco_video.read_gt(tmp_path / "out" / "annotations.json")
    assert masks_by_object(back) == masks_by_object(dataset)
    assert frame_lists(back) == frame_lists(dataset)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["annotations"][1].update(image_id=11, track_id=2),
            r"annotations\[1\] \(id 2\): field 'track_id': object id 2 appears twice in image 11",
        ),
        (
            lambda d: d["images"][0].update(height=9),
            r"images\[0\] \(id 11\): field 'height': the image is 9x9 but video 5's first frame is 8x9",
        ),
        (
            lambda d: d["images"][0].update(frame_index=0),
            r"images\[1\] \(id 10\): video 5 has two images with frame number 0 \(the other is images\[0\]\)",
        ),
        (
            lambda d: d["annotations"][0].pop("track_id"),
            r"annotations\[0\] \(id 1\): field 'instance_id': needs one of the keys",
        ),
        (
            lambda d: d["annotations"][0].update(segmentation={"size": [8, 8], "counts": "xyz"}),
            r"annotations\[0\] \(id 1\): field 'segmentation.size': RLE size \[8, 8\] differs",
        ),
    ],
)
def test_bad_input(tmp_path, edit, message):
    data = _tao_style()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=message):
        coco_video.read_gt(path)
