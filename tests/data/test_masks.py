import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import array_shapes, arrays

from streamvis.data.masks import (
    decode_rle,
    decode_rles,
    encode_mask,
    encode_masks,
    mask_to_bbox,
    rle_area,
    rle_to_bbox,
    rle_to_json,
    segmentation_to_rle,
)
from streamvis.errors import DataFormatError

# A (5, 6) mask as uncompressed column-major runs: 7 zeros, 2 ones, 3 zeros, 2 ones, 16 zeros.
UNCOMPRESSED = {"size": [5, 6], "counts": [7, 2, 3, 2, 16]}
UNCOMPRESSED_MASK = np.zeros((5, 6), np.uint8)
UNCOMPRESSED_MASK[2:4, 1] = 1  # column 1, rows 2-3
UNCOMPRESSED_MASK[2:4, 2] = 1  # column 2, rows 2-3


def random_masks(n=4, h=13, w=17, seed=0):
    return np.random.default_rng(seed).random((n, h, w)) > 0.6


def test_encode_decode_round_trip_is_exact_and_json_ready():
    masks = random_masks()
    rles = encode_masks(masks)
    assert len(rles) == 4
    for rle, mask in zip(rles, masks):
        assert rle["size"] == [13, 17] and isinstance(rle["counts"], str)
        assert json.loads(json.dumps(rle)) == rle
        decoded = decode_rle(rle)
        assert decoded.dtype == np.uint8 and decoded.shape == (13, 17)
        np.testing.assert_array_equal(decoded, mask)
    np.testing.assert_array_equal(decode_rles(rles), masks)


def test_encode_mask_matches_encode_masks_and_treats_nonzero_as_foreground():
    masks = random_masks(n=2, seed=1)
    assert encode_mask(masks[1]) == encode_masks(masks)[1]
    as_255 = masks[0].astype(np.uint8) * 255
    assert encode_mask(as_255) == encode_mask(masks[0])
    assert encode_masks(np.zeros((0, 4, 4), bool)) == []
    with pytest.raises(ValueError, match="shape"):
        encode_mask(np.zeros((2, 3, 3)))


def test_empty_full_and_single_pixel_masks():
    for mask in (np.zeros((3, 4), bool), np.ones((3, 4), bool), np.ones((1, 1), bool)):
        rle = encode_mask(mask)
        np.testing.assert_array_equal(decode_rle(rle), mask)
        assert rle_area(rle) == mask.sum()


def test_decode_accepts_str_bytes_and_list_counts():
    rle = encode_mask(UNCOMPRESSED_MASK)
    as_bytes = {"size": rle["size"], "counts": rle["counts"].encode()}
    np.testing.assert_array_equal(decode_rle(rle), UNCOMPRESSED_MASK)
    np.testing.assert_array_equal(decode_rle(as_bytes), UNCOMPRESSED_MASK)
    np.testing.assert_array_equal(decode_rle(UNCOMPRESSED), UNCOMPRESSED_MASK)


def test_rle_area_and_json_for_every_counts_form():
    rle = encode_mask(UNCOMPRESSED_MASK)
    assert rle_area(rle) == rle_area(UNCOMPRESSED) == 4
    assert rle_to_json(UNCOMPRESSED) == rle
    assert rle_to_json({"size": [5, 6], "counts": rle["counts"].encode()}) == rle


def test_mask_to_bbox_is_tight_and_matches_pycocotools():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    mask[7, 4] = True
    assert mask_to_bbox(mask) == [3.0, 2.0, 6.0, 6.0]
    assert mask_to_bbox(np.zeros((4, 4))) == [0.0, 0.0, 0.0, 0.0]
    for m in random_masks(n=3, seed=2):
        assert mask_to_bbox(m) == rle_to_bbox(encode_mask(m))


def test_segmentation_to_rle_compressed_and_uncompressed():
    rle = encode_mask(UNCOMPRESSED_MASK)
    out = segmentation_to_rle(rle, 5, 6)
    assert out == {"size": [5, 6], "counts": rle["counts"].encode()}
    assert segmentation_to_rle(out, 5, 6) == out  # bytes counts pass through
    converted = segmentation_to_rle(UNCOMPRESSED, 5, 6)
    assert isinstance(converted["counts"], bytes)
    np.testing.assert_array_equal(decode_rle(converted), UNCOMPRESSED_MASK)
    assert segmentation_to_rle(None, 5, 6) is None


def test_segmentation_to_rle_polygons_follow_the_official_rasterization_and_union():
    square = [1.0, 1.0, 6.0, 1.0, 6.0, 5.0, 1.0, 5.0]
    triangle = [8, 2, 11, 2, 11, 7]
    official = mask_util.merge(mask_util.frPyObjects([square, triangle], 9, 12))
    out = segmentation_to_rle([square, triangle], 9, 12)
    assert out == {"size": [9, 12], "counts": official["counts"]}
    union = decode_rle(segmentation_to_rle([square], 9, 12)) | decode_rle(
        segmentation_to_rle([triangle], 9, 12)
    )
    np.testing.assert_array_equal(decode_rle(out), union)
    assert rle_area(out) > 20


ERROR_CASES = {
    "wrong type": (5, "segmentation must be"),
    "string": ("abc", "segmentation must be"),
    "missing counts": ({"size": [5, 6]}, "needs 'size' and 'counts'"),
    "size mismatch": ({"size": [5, 7], "counts": "x"}, "differs from the video"),
    "size not ints": ({"size": ["5", 6], "counts": "x"}, "integers"),
    "counts type": ({"size": [5, 6], "counts": 3}, "counts must be"),
    "counts sum": ({"size": [5, 6], "counts": [7, 2, 3]}, "sum to 12"),
    "negative count": ({"size": [5, 6], "counts": [32, -2]}, "non-negative"),
    "short polygon": ([[1, 1, 2, 2]], "at least 6"),
    "odd polygon": ([[1, 1, 2, 2, 3, 3, 4]], "even number"),
    "non-finite polygon": ([[1, 1, 2, float("nan"), 3, 3]], "non-finite"),
    "non-number polygon": ([[1, 1, 2, "2", 3, 3]], "flat list of numbers"),
    "nested polygon": ([1, 2, 3, 4, 5, 6], "flat list of numbers"),
    "empty polygons": ([], "empty polygon list"),
}


@pytest.mark.parametrize("case", ERROR_CASES, ids=list(ERROR_CASES))
def test_segmentation_to_rle_errors_name_file_item_and_field(case):
    seg, reason = ERROR_CASES[case]
    with pytest.raises(DataFormatError, match=reason) as info:
        segmentation_to_rle(
            seg, 5, 6, path="gt.json", where="annotations[3] (id 9)", field="segmentations[2]"
        )
    message = str(info.value)
    assert message.startswith("gt.json: annotations[3] (id 9): field 'segmentations[2]")
    assert info.value.path == "gt.json" and info.value.field.startswith("segmentations[2]")


def uncompressed_counts(mask: np.ndarray) -> list[int]:
    """Column-major run lengths starting with a (possibly empty) run of zeros, computed independently."""
    flat = mask.flatten(order="F").astype(int)
    counts, current, run = [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    return counts + [run]


@settings(max_examples=60, deadline=None)
@given(arrays(np.bool_, array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=9)))
def test_property_every_form_round_trips(mask):
    rle = encode_mask(mask)
    np.testing.assert_array_equal(decode_rle(rle), mask)
    assert rle_area(rle) == int(mask.sum())
    assert mask_to_bbox(mask) == rle_to_bbox(rle)
    height, width = mask.shape
    uncompressed = {"size": [height, width], "counts": uncompressed_counts(mask)}
    assert rle_area(uncompressed) == int(mask.sum())
    assert rle_to_json(segmentation_to_rle(uncompressed, height, width)) == rle
