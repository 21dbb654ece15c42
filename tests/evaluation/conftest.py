"""Builders of tiny YouTube-VIS ground truth and results for the evaluation tests."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_util
import pytest


def rle(mask: np.ndarray) -> dict:
    """json-ready compressed RLE of a (H, W) bool mask."""
    encoded = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def box_mask(height: int, width: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[y0:y1, x0:x1] = True
    return mask


class Builder:
    """Accumulates videos, annotations and results; masks are (H, W) bool arrays or None."""

    def __init__(self, categories=(1, 2)):
        self.gt = {
            "videos": [],
            "categories": [{"id": c, "name": f"cat{c}"} for c in categories],
            "annotations": [],
        }
        self.results = []

    def video(self, vid: int, length: int, height: int = 8, width: int = 10) -> int:
        names = [f"{vid}/{t}.jpg" for t in range(length)]
        self.gt["videos"].append(
            {"id": vid, "width": width, "height": height, "length": length, "file_names": names}
        )
        return vid

    def track(self, vid: int, category: int, masks, *, iscrowd: int = 0, areas=None) -> int:
        ann_id = len(self.gt["annotations"]) + 1
        segs = [None if m is None else rle(m) for m in masks]
        if areas is None:
            areas = [None if m is None else int(m.sum()) for m in masks]
        self.gt["annotations"].append(
            {
                "id": ann_id,
                "video_id": vid,
                "category_id": category,
                "iscrowd": iscrowd,
                "segmentations": segs,
                "areas": areas,
            }
        )
        return ann_id

    def result(self, vid: int, category: int, score: float, masks) -> None:
        segs = [None if m is None else rle(m) for m in masks]
        self.results.append({"video_id": vid, "category_id": category, "score": score, "segmentations": segs})


@pytest.fixture
def builder():
    return Builder()


@pytest.fixture
def rle_of():
    """The `rle(mask)` helper."""
    return rle


@pytest.fixture
def box():
    """The `box_mask(height, width, y0, y1, x0, x1)` helper."""
    return box_mask
