"""The shared track table (building and taking apart the YouTube-VIS dict), atomic folders, category maps."""

from __future__ import annotations

import numpy as np
import pytest

from streamvis.data.formats import FORMATS, get_format
from streamvis.data.formats.common import (
    Track,
    atomic_output_dir,
    dataset_videos,
    object_ids,
    paint_id_map,
)
from streamvis.data.formats.convert import apply_category_map, parse_category_map, summarize
from streamvis.data.masks import decode_rle, encode_mask
from streamvis.data.ytvis import validate_ytvis
from streamvis.errors import DataFormatError, StreamvisError


def test_table_names_every_module_and_imports_lazily():
    assert FORMATS["kitti-mots"] == "streamvis.data.formats.kitti_mots"
    assert FORMATS["mots-challenge"] == "streamvis.data.formats.mots_challenge"
    for name in ("ytvis", "bdd-mots", "davis", "coco-video", "cvat", "labelme"):
        module = get_format(name)
        assert callable(module.read_gt) and callable(module.write_gt)
    with pytest.raises(StreamvisError, match="unknown format 'vott'.*cvat"):
        get_format("vott")


def test_build_dataset_is_valid_with_boxes_areas_and_ids(dataset):
    validate_ytvis(dataset)
    assert [v["name"] for v in dataset["videos"]] == ["walk", "road"]
    assert dataset["categories"] == [{"id": 1, "name": "pedestrian"}, {"id": 2, "name": "car"}]
    person = dataset["annotations"][0]
    assert person["track_id"] == 3 and person["category_id"] == 1
    assert person["bboxes"][2] == [5.0, 2.0, 4.0, 6.0]  # x = 1 + 2*2, 6x4 box
    assert person["areas"] == [24] * 5
    car = dataset["annotations"][1]
    assert car["segmentations"][0] is None and car["bboxes"][4] is None
    assert [a["id"] for a in dataset["annotations"]] == [1, 2, 3]


def test_dataset_videos_round_trip(dataset):
    videos = dataset_videos(dataset)
    assert [t.track_id for t in videos[0].tracks] == [3, 7]
    assert sorted(videos[0].tracks[1].segmentations) == [1, 2, 3]
    assert videos[1].height == 16 and videos[1].file_names[2] == "road/00002.jpg"


def test_object_ids_fall_back_to_numbering_when_not_unique():
    assert object_ids([{"track_id": 5}, {"track_id": 2}]) == [5, 2]
    assert object_ids([{"track_id": 5}, {"track_id": 5}]) == [1, 2]
    assert object_ids([{"track_id": 5}, {}]) == [1, 2]


def test_category_map_renames_merges_and_drops_keeping_ids(dataset):
    renamed = apply_category_map(dataset, {"pedestrian": "person"})
    assert renamed["categories"] == [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]
    merged = apply_category_map(dataset, {"car": "thing", "pedestrian": "thing"})
    assert merged["categories"] == [{"id": 1, "name": "thing"}]  # the first source's id
    assert {a["category_id"] for a in merged["annotations"]} == {1}
    dropped = apply_category_map(dataset, {"pedestrian": None})
    assert dropped["categories"] == [{"id": 2, "name": "car"}]  # ids are kept, not renumbered
    assert [a["track_id"] for a in dropped["annotations"]] == [7, 1]
    validate_ytvis(dropped)
    only_cars = apply_category_map(dataset, {"car": "vehicle", "*": None})
    assert only_cars["categories"] == [{"id": 2, "name": "vehicle"}] and len(only_cars["annotations"]) == 2
    rest = apply_category_map(dataset, {"car": "car", "*": "other"})
    assert [c["name"] for c in rest["categories"]] == ["other", "car"]
    with pytest.raises(StreamvisError, match="'truck'"):
        apply_category_map(dataset, {"truck": "car"})


def test_parse_category_map_inline_and_file(tmp_path):
    assert parse_category_map("person=pedestrian, van=car,tree=") == {
        "person": "pedestrian",
        "van": "car",
        "tree": None,
    }
    file = tmp_path / "map.json"
    file.write_text('{"van": "car", "tree": null}')
    assert parse_category_map(str(file)) == {"van": "car", "tree": None}
    file.write_text('{"van": 3}')
    with pytest.raises(DataFormatError, match="map.json"):
        parse_category_map(str(file))
    with pytest.raises(StreamvisError, match="SOURCE=TARGET"):
        parse_category_map("van")


def test_atomic_output_dir_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_output_dir(out) as tmp:
        (tmp / "a.txt").write_text("a")
    assert (out / "a.txt").read_text() == "a"
    with pytest.raises(StreamvisError, match="not empty"):
        with atomic_output_dir(out):
            pass
    with atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "b.txt").write_text("b")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _square(y, x):
    mask = np.zeros((6, 6), np.uint8)
    mask[y : y + 3, x : x + 3] = 1
    return encode_mask(mask)


def test_paint_id_map_refuses_overlap_or_lets_the_higher_score_win():
    low = Track(1, "a", {0: _square(0, 0)}, score=0.2)
    high = Track(2, "a", {0: _square(1, 1)}, score=0.9)
    with pytest.raises(DataFormatError, match=r"video 'v', frame 0: objects 1 and 2 overlap in 4 pixels"):
        paint_id_map([low, high], [1, 2], 0, 6, 6, overlap="error", where="video 'v', frame 0")
    painted = paint_id_map([high, low], [2, 1], 0, 6, 6, overlap="score", where="")
    assert painted[1, 1] == 2 and painted[0, 0] == 1 and (painted == 2).sum() == 9


def test_summarize_counts(dataset):
    assert summarize(dataset) == {
        "videos": 2,
        "frames": 8,
        "tracks": 3,
        "masks": 10,
        "classes": {"pedestrian": 1, "car": 2},
        "empty_tracks": 0,
    }
    dataset["annotations"][2]["segmentations"] = [None, None, None]
    dataset["annotations"][1]["segmentations"][1:4] = [encode_mask(np.zeros((24, 32), np.uint8))] * 3
    assert summarize(dataset)["empty_tracks"] == 2


def test_masks_survive_the_table(dataset):
    video = dataset_videos(dataset)[0]
    original = decode_rle(dataset["annotations"][1]["segmentations"][2])
    assert np.array_equal(decode_rle(video.tracks[1].segmentations[2]), original)
