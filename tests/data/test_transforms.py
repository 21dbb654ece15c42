"""Geometry of the training augmentation: resize, flip and box bookkeeping, on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamvis.data.transforms import (
    augment_frame,
    boxes_from_masks,
    clip_boxes,
    hflip_boxes,
    hflip_image,
    hflip_masks,
    resize_boxes,
    shortest_edge_size,
)
from streamvis.ops.image import normalize_and_pad


@pytest.mark.parametrize(
    ("size", "short", "max_size", "expected"),
    [
        ((360, 640), 360, 640, (360, 640)),  # facts.md s.1: comes out unchanged
        ((720, 1280), 360, 640, (360, 640)),
        ((100, 1000), 360, 640, (64, 640)),  # long side capped
        ((64, 96), 192, 320, (192, 288)),
        ((96, 64), 32, 320, (48, 32)),  # portrait
    ],
)
def test_shortest_edge_size(size, short, max_size, expected):
    assert shortest_edge_size(*size, short, max_size) == expected


def test_boxes_from_masks_is_tight_with_exclusive_max():
    masks = np.zeros((2, 10, 12), bool)
    masks[0, 2:5, 3:9] = True
    assert boxes_from_masks(masks).tolist() == [[3, 2, 9, 5], [0, 0, 0, 0]]
    assert boxes_from_masks(masks).dtype == np.float32


def test_hflip_boxes_matches_flipped_masks_and_is_an_involution():
    masks = np.zeros((2, 8, 20), bool)
    masks[0, 1:4, 2:7] = True
    masks[1, 0:8, 15:20] = True
    boxes = boxes_from_masks(masks)
    flipped = hflip_boxes(boxes, 20)
    assert flipped.tolist() == [[13, 1, 18, 4], [0, 0, 5, 8]]
    np.testing.assert_array_equal(flipped, boxes_from_masks(hflip_masks(masks)))
    np.testing.assert_array_equal(hflip_boxes(flipped, 20), boxes)


def test_hflip_image_mirrors_columns():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out = hflip_image(image)
    np.testing.assert_array_equal(out[:, 0], image[:, 2])
    assert out.flags["C_CONTIGUOUS"]


def test_resize_and_clip_boxes():
    boxes = np.array([[10, 4, 30, 20]], np.float32)
    assert resize_boxes(boxes, (40, 60), (20, 30)).tolist() == [[5, 2, 15, 10]]
    assert resize_boxes(boxes, (40, 60), (80, 90)).tolist() == [[15, 8, 45, 40]]  # x*1.5, y*2
    assert clip_boxes(np.array([[-3, -1, 70, 10]], np.float32), (8, 60)).tolist() == [[0, 0, 60, 8]]


@pytest.mark.parametrize("flip", [False, True])
def test_augment_frame_keeps_image_masks_and_boxes_aligned(flip):
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :15] = (10, 20, 30)  # dark left half
    image[:, 15:] = 200
    masks = np.zeros((1, 20, 30), np.uint8)
    masks[0, 4:10, 2:8] = 1
    boxes = boxes_from_masks(masks)
    out_image, out_masks, out_boxes = augment_frame(
        image, masks, boxes, short_side=40, max_size=100, flip=flip
    )
    assert out_image.shape == (40, 60, 3) and out_masks.shape == (1, 40, 60) and out_masks.dtype == bool
    expected = [[4, 8, 16, 20]] if not flip else [[44, 8, 56, 20]]
    assert out_boxes.tolist() == expected
    np.testing.assert_array_equal(boxes_from_masks(out_masks), out_boxes)
    left_is_dark = out_image[:, :20].mean() < out_image[:, 40:].mean()
    assert left_is_dark != flip
    np.testing.assert_array_equal(out_image[0, 59 if flip else 0], (10, 20, 30))  # channel order kept


def test_augment_frame_with_no_instances():
    image = np.zeros((20, 30, 3), np.uint8)
    out_image, masks, boxes = augment_frame(
        image, np.zeros((0, 20, 30), bool), np.zeros((0, 4), np.float32), short_side=10, max_size=100,
        flip=True,
    )
    assert out_image.shape == (10, 15, 3) and masks.shape == (0, 10, 15) and boxes.shape == (0, 4)


def test_normalize_and_pad_pads_to_32_after_normalization():
    images = [torch.full((3, 40, 50), 100, dtype=torch.uint8), torch.zeros((3, 64, 20), dtype=torch.uint8)]
    batch, sizes = normalize_and_pad(images)
    assert batch.shape == (2, 3, 64, 64) and sizes == [(40, 50), (64, 20)]
    assert batch[0, 0, 0, 0].item() == pytest.approx(100 - 103.530)
    assert batch[0, :, 40:].abs().sum() == 0 and batch[0, :, :, 50:].abs().sum() == 0
