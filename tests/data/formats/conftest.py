"""A tiny two-video YouTube-VIS dict with disjoint masks, and a helper comparing datasets by masks and ids.

- video "walk": 5 frames 24x32. Object 3 (pedestrian): a 6x4 box moving right by 2 px a frame, on
  frames 0-4. Object 7 (car): an L-shaped mask on frames 1-3 (absent on 0 and 4).
- video "road": 3 frames 16x20. Object 1 (car): a 5x5 square on frames 0 and 2 (a gap on frame 1).
"""

from __future__ import annotations

import numpy as np
import pytest

from streamvis.data.formats.common import Track, Video, build_dataset
from streamvis.data.masks import decode_rle, encode_mask


def _box(height, width, y, x, h, w):
    mask = np.zeros((height, width), np.uint8)
    mask[y : y + h, x : x + w] = 1
    return mask


def make_dataset(categories=("pedestrian", "car")) -> dict:
    walk_person = Track(3, "pedestrian", {f: encode_mask(_box(24, 32, 2, 1 + 2 * f, 6, 4)) for f in range(5)})
    l_shape = {}
    for f in (1, 2, 3):
        mask = _box(24, 32, 12, 10 + f, 8, 3)
        mask[17:20, 10 + f : 20 + f] = 1
        l_shape[f] = encode_mask(mask)
    walk_car = Track(7, "car", l_shape)
    road_car = Track(1, "car", {f: encode_mask(_box(16, 20, 4, 6 + f, 5, 5)) for f in (0, 2)})
    videos = [
        Video("walk", 24, 32, [f"walk/{i:05d}.jpg" for i in range(5)], [walk_person, walk_car]),
        Video("road", 16, 20, [f"road/{i:05d}.jpg" for i in range(3)], [road_car]),
    ]
    return build_dataset(videos, list(categories))


@pytest.fixture
def dataset() -> dict:
    return make_dataset()


def masks_by_object(dataset: dict, *, key: str = "track_id") -> dict:
    """``{(video name, object id): (category name, {frame: mask bytes})}`` for comparing datasets."""
    videos = {v["id"]: v for v in dataset["videos"]}
    names = {c["id"]: c["name"] for c in dataset["categories"]}
    out = {}
    for ann in dataset["annotations"]:
        video = videos[ann["video_id"]]
        frames = {
            f: decode_rle(seg).tobytes() for f, seg in enumerate(ann["segmentations"]) if seg is not None
        }
        out[(video["name"], ann[key])] = (names[ann["category_id"]], frames)
    return out


def frame_lists(dataset: dict) -> dict:
    return {v["name"]: (v["height"], v["width"], v["length"]) for v in dataset["videos"]}
