"""DAVIS palette PNG folders: round trip, the palette, void pixels, bad input, results overlaps."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tests.data.formats.conftest import frame_lists, masks_by_object

from streamvis.data.formats import davis
from streamvis.data.formats.common import build_results, dataset_videos
from streamvis.data.masks import decode_rle
from streamvis.data.ytvis import validate_results, validate_ytvis
from streamvis.errors import DataFormatError


def _agnostic(dataset):
    return {key: frames for key, (_, frames) in masks_by_object(dataset).items()}


def test_round_trip_keeps_masks_ids_and_frames(dataset, tmp_path):
    davis.write_gt(dataset, tmp_path / "ann")
    assert sorted(p.name for p in (tmp_path / "ann" / "walk").iterdir()) == [f"{i:05d}.png" for i in range(5)]
    back = davis.read_gt(tmp_path / "ann")
    validate_ytvis(back)
    assert _agnostic(back) == _agnostic(dataset)
    assert frame_lists(back) == frame_lists(dataset)
    assert back["categories"] == [{"id": 1, "name": "object"}]
    assert back["videos"][0]["file_names"] == ["road/00000.jpg", "road/00001.jpg", "road/00002.jpg"]


def test_written_png_is_indexed_with_the_davis_palette(dataset, tmp_path):
    davis.write_gt(dataset, tmp_path / "ann")
    with Image.open(tmp_path / "ann" / "walk" / "00002.png") as image:
        assert image.mode == "P"
        palette = image.getpalette()[:12]
        ids = np.asarray(image)
    assert palette == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]  # official VOC/DAVIS colours 0..3
    assert set(np.unique(ids).tolist()) == {0, 3, 7}
    assert ids[2, 5] == 3  # the pedestrian box at x = 1 + 2*2


def test_void_pixels_are_not_objects_and_single_video_folder(tmp_path):
    folder = tmp_path / "cat"
    folder.mkdir()
    for frame in range(2):
        ids = np.zeros((8, 10), np.uint8)
        ids[2:5, 2:5] = 1
        ids[0, :] = 255
        Image.fromarray(ids, mode="L").save(folder / f"{frame:05d}.png")
    data = davis.read_gt(folder, category="cat")
    assert [v["name"] for v in data["videos"]] == ["cat"]
    assert len(data["annotations"]) == 1 and data["annotations"][0]["areas"] == [9, 9]
    assert data["categories"][0]["name"] == "cat"


def test_size_change_mid_video_names_the_file(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 10), np.uint8), mode="L").save(folder / "00000.png")
    Image.fromarray(np.zeros((8, 12), np.uint8), mode="L").save(folder / "00001.png")
    with pytest.raises(
        DataFormatError, match=r"00001\.png: the frame is 8x12 .* first frame 00000\.png is 8x10"
    ):
        davis.read_gt(tmp_path)


def test_rgb_png_is_refused(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / "00000.png")
    with pytest.raises(DataFormatError, match="00000.png: a DAVIS annotation must be a PNG of mode P/L"):
        davis.read_gt(tmp_path)


def test_overlapping_ground_truth_is_refused_and_nothing_written(dataset, tmp_path):
    walk = dataset["annotations"][0]
    dataset["annotations"][1]["segmentations"][1] = walk["segmentations"][1]  # car = pedestrian on frame 1
    with pytest.raises(
        DataFormatError, match=r"video 'walk', frame 1 .*objects 3 and 7 overlap in 24 pixels"
    ):
        davis.write_gt(dataset, tmp_path / "ann")
    assert list(tmp_path.iterdir()) == []


def test_results_overlap_goes_to_the_higher_score(dataset, tmp_path):
    videos = dataset_videos(dataset)
    for video in videos:
        for k, track in enumerate(video.tracks):
            track.score = 0.9 if k == 0 else 0.5
    videos[0].tracks[1].segmentations[1] = videos[0].tracks[0].segmentations[1]
    results = build_results(videos, dataset)
    validate_results(results, dataset)
    davis.write_results(results, dataset, tmp_path / "pred")
    ids = np.asarray(Image.open(tmp_path / "pred" / "walk" / "00001.png"))
    person = decode_rle(dataset["annotations"][0]["segmentations"][1]).astype(bool)
    assert (ids[person] == 3).all()  # the 0.9 track owns the shared pixels
    back = davis.read_results(tmp_path / "pred", dataset=dataset)
    assert len(back) == 3 and {r["track_id"] for r in back if r["video_id"] == 1} == {3, 7}


def test_results_below_the_score_threshold_are_left_out(dataset, tmp_path):
    videos = dataset_videos(dataset)
    for video in videos:
        for k, track in enumerate(video.tracks):
            track.score = 0.9 if k == 0 else 0.3
    results = build_results(videos, dataset)
    davis.write_results(results, dataset, tmp_path / "pred", score_threshold=0.5)
    back = davis.read_results(tmp_path / "pred", dataset=dataset)
    assert sorted((r["video_id"], r["track_id"]) for r in back) == [(1, 3), (2, 1)]


def test_overlap_later_lets_later_objects_win(dataset, tmp_path):
    walk = dataset["annotations"][0]
    dataset["annotations"][1]["segmentations"][1] = walk["segmentations"][1]
    davis.write_gt(dataset, tmp_path / "ann", overlap="later")
    ids = np.asarray(Image.open(tmp_path / "ann" / "walk" / "00001.png"))
    assert (ids[decode_rle(walk["segmentations"][1]).astype(bool)] == 7).all()
