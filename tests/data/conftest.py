"""A tiny YouTube-VIS-format dataset built in tmp_path (JPEG frames + json with pycocotools RLE).

Layout (HxW; frames are dark on the left half and bright on the right half, so a flip is visible):

- video 10 "left": 8 frames 64x96. ann 100 (category 7): a 12x16 box at x=8.., y=10+frame, on all
  frames, with json bboxes. ann 101 (category 3): a 10x10 square on frames 2..5, given as
  *uncompressed* RLE, with ``bboxes`` null on frame 4 (the box then comes from the mask).
  ann 102: crowd (category 3) on all frames.
- video 20 "far": 40 frames 48x64. ann 200 (category 3) on frames 0, 3, 21, 22; ann 201
  (category 7) on frames 22, 39; ann 203 (category 7) an *empty* RLE on frame 21 (no ``areas``).
  Annotated frames: 0, 3, 21, 22, 39.
- video 30 "crowd": 3 frames 32x32 with only a crowd annotation (no key frames).

Categories are listed as [7, 3], so the sorted order makes 3 -> class 0 and 7 -> class 1.
Identities (non-crowd, json order): 100 -> 1, 101 -> 2, 200 -> 3, 201 -> 4, 203 -> 5.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import pytest
from PIL import Image

VIDEO_SIZES = {10: (64, 96), 20: (48, 64), 30: (32, 32)}
VIDEO_LENGTHS = {10: 8, 20: 40, 30: 3}
ANNOTATED_FRAMES = {10: (0, 1, 2, 3, 4, 5, 6, 7), 20: (0, 3, 21, 22, 39), 30: ()}
IDENTITY_OF_ANNOTATION = {100: 1, 101: 2, 200: 3, 201: 4, 203: 5}


@dataclass
class TinyDataset:
    json_path: Path
    image_root: Path
    data: dict


def frame_image(height: int, width: int, frame: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB: left half dark, right half bright, a little per-frame variation."""
    image = np.full((height, width, 3), 40, np.uint8)
    image[:, width // 2 :] = 200
    image[..., 2] = (image[..., 2].astype(int) + 3 * frame).clip(0, 255)  # blue varies with the frame
    return image


def rle(mask: np.ndarray) -> dict:
    """Compressed json RLE of an (H, W) bool mask."""
    encoded = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def uncompressed_rle(mask: np.ndarray) -> dict:
    """Uncompressed RLE (column-major runs starting with zeros) of an (H, W) bool mask."""
    flat = mask.astype(np.uint8).flatten(order="F")
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])))  # run boundaries (2: sentinel)
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    return {"size": list(mask.shape), "counts": [int(c) for c in counts]}


def box_mask(height: int, width: int, x: int, y: int, w: int, h: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[y : y + h, x : x + w] = True
    return mask


def _track(video_id: int, present: dict[int, tuple[int, int, int, int]], *, uncompressed=False,
           null_boxes=()) -> tuple[list, list]:
    """Per-frame segmentations and XYWH bboxes of a box-shaped object (None where absent)."""
    height, width = VIDEO_SIZES[video_id]
    segs, boxes = [], []
    for frame in range(VIDEO_LENGTHS[video_id]):
        if frame not in present:
            segs.append(None)
            boxes.append(None)
            continue
        mask = box_mask(height, width, *present[frame])
        segs.append(uncompressed_rle(mask) if uncompressed else rle(mask))
        boxes.append(None if frame in null_boxes else [float(v) for v in present[frame]])
    return segs, boxes


def _annotation(ann_id, video_id, category_id, segs, boxes, iscrowd=0) -> dict:
    return {"id": ann_id, "video_id": video_id, "category_id": category_id, "iscrowd": iscrowd,
            "segmentations": segs, "bboxes": boxes}


def _annotations() -> list[dict]:
    anns = []
    segs, boxes = _track(10, {f: (8, 10 + f, 16, 12) for f in range(8)})
    anns.append(_annotation(100, 10, 7, segs, boxes))
    segs, boxes = _track(10, {f: (30, 30, 10, 10) for f in range(2, 6)}, uncompressed=True, null_boxes=(4,))
    anns.append(_annotation(101, 10, 3, segs, boxes))
    segs, boxes = _track(10, {f: (60, 40, 20, 20) for f in range(8)})
    anns.append(_annotation(102, 10, 3, segs, boxes, iscrowd=1))
    segs, boxes = _track(20, {f: (4 + f, 6, 8, 8) for f in (0, 3, 21, 22)})
    anns.append(_annotation(200, 20, 3, segs, boxes))
    segs, boxes = _track(20, {f: (40, 30, 6, 9) for f in (22, 39)})
    anns.append(_annotation(201, 20, 7, segs, boxes))
    empty = [None] * 40
    empty[21] = rle(np.zeros(VIDEO_SIZES[20], bool))
    anns.append(_annotation(203, 20, 7, empty, [None] * 40))
    segs, boxes = _track(30, {f: (2, 2, 10, 10) for f in range(3)})
    anns.append(_annotation(300, 30, 3, segs, boxes, iscrowd=1))
    return anns


def make_tiny_ytvis(root: Path) -> TinyDataset:
    """Write the frames under ``root/JPEGImages`` and the json at ``root/train.json``."""
    image_root = root / "JPEGImages"
    videos = []
    names = {10: "left", 20: "far", 30: "crowd"}
    for video_id, (height, width) in VIDEO_SIZES.items():
        (image_root / names[video_id]).mkdir(parents=True)
        file_names = [f"{names[video_id]}/{f:05d}.jpg" for f in range(VIDEO_LENGTHS[video_id])]
        for frame, name in enumerate(file_names):
            Image.fromarray(frame_image(height, width, frame)).save(image_root / name, quality=95)
        videos.append({"id": video_id, "width": width, "height": height, "length": len(file_names),
                       "file_names": file_names})
    data = {
        "videos": videos,
        "categories": [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}],
        "annotations": _annotations(),
    }
    json_path = root / "train.json"
    json_path.write_text(json.dumps(data))
    return TinyDataset(json_path=json_path, image_root=image_root, data=data)


@pytest.fixture
def tiny_ytvis(tmp_path) -> TinyDataset:
    """The tiny dataset described in this module's docstring, written under tmp_path."""
    return make_tiny_ytvis(tmp_path)


@pytest.fixture(scope="module")
def tiny_ytvis_shared(tmp_path_factory) -> TinyDataset:
    """The same dataset, built once per test module (for tests that only read it)."""
    return make_tiny_ytvis(tmp_path_factory.mktemp("tiny_ytvis"))
