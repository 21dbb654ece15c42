"""Mask conversions between bitmasks, RLE and polygons (pycocotools underneath; no torch).

YouTube-VIS stores one segmentation per frame in one of four forms:

- compressed RLE: ``{"size": [H, W], "counts": "<ascii>"}`` (``bytes`` counts in memory),
- uncompressed RLE: ``{"size": [H, W], "counts": [n0, n1, ...]}`` (run lengths, column-major,
  starting with a run of zeros, summing to H*W),
- polygons: ``[[x0, y0, x1, y1, ...], ...]`` (one flat list per part, unioned),
- ``None`` where the object is absent from the frame.

Everything here follows the official YouTube-VIS toolkit (``ytvos.py: annToRLE``): polygons are
rasterized with ``frPyObjects`` and merged, uncompressed RLE is compressed with ``frPyObjects``.
"""

from __future__ import annotations

import math
import reprlib
from numbers import Real

import numpy as np
import pycocotools.mask as mask_util

from streamvis.errors import DataFormatError

_short = reprlib.Repr()  # values quoted in error messages stay short (a fuzzed size can be 5000 chars)
_short.maxstring = _short.maxother = 60

__all__ = [
    "check_polygons",
    "check_rle_dict",
    "check_segmentation",
    "decode_rle",
    "decode_rles",
    "encode_mask",
    "encode_masks",
    "mask_to_bbox",
    "rle_area",
    "rle_to_bbox",
    "rle_to_json",
    "segmentation_to_rle",
]


def encode_masks(masks: np.ndarray) -> list[dict]:
    """Encode binary masks as json-ready compressed RLE (one pycocotools call for all).

    Args:
        masks: (N, H, W) bool or integer array; any non-zero pixel is foreground.

    Returns:
        N dicts ``{"size": [H, W], "counts": str}``.
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"encode_masks expects an (N, H, W) array, got shape {masks.shape}")
    if masks.shape[0] == 0:
        return []
    binary = (masks != 0).view(np.uint8) if masks.dtype != np.bool_ else masks.view(np.uint8)
    fortran = np.asfortranarray(binary.transpose(1, 2, 0))  # (H, W, N), column-major as pycocotools needs
    return [
        {"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")}
        for r in mask_util.encode(fortran)
    ]


def encode_mask(mask: np.ndarray) -> dict:
    """Encode one binary mask as json-ready compressed RLE.

    Args:
        mask: (H, W) bool or integer array; any non-zero pixel is foreground.

    Returns:
        ``{"size": [H, W], "counts": str}``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode_mask expects an (H, W) array, got shape {mask.shape}")
    return encode_masks(mask[None])[0]


def _to_pycoco(rle: dict) -> dict:
    """Return `rle` with compressed ``bytes`` counts (uncompressed list counts are compressed)."""
    counts = rle["counts"]
    height, width = (int(s) for s in rle["size"])
    if isinstance(counts, list):
        return mask_util.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [height, width], "counts": counts}


def decode_rle(rle: dict) -> np.ndarray:
    """Decode one RLE (compressed ``str``/``bytes`` counts or uncompressed ``list`` counts).

    Returns:
        (H, W) uint8 array of 0/1, C-contiguous.
    """
    return np.ascontiguousarray(mask_util.decode(_to_pycoco(rle)))


def decode_rles(rles: list[dict]) -> np.ndarray:
    """Decode RLEs of one size in one pycocotools call.

    Returns:
        (N, H, W) uint8 array of 0/1 (N may be 0, then H = W = 0 unless sizes are known).
    """
    if not rles:
        return np.zeros((0, 0, 0), dtype=np.uint8)
    stacked = mask_util.decode([_to_pycoco(r) for r in rles])  # (H, W, N)
    return np.ascontiguousarray(stacked.transpose(2, 0, 1))


def rle_area(rle: dict) -> int:
    """Number of foreground pixels of an RLE (any counts form), without decoding it."""
    counts = rle["counts"]
    if isinstance(counts, list):
        return int(sum(counts[1::2]))  # runs alternate background, foreground
    return int(mask_util.area(_to_pycoco(rle)))


def rle_to_bbox(rle: dict) -> list[float]:
    """Tight ``[x, y, w, h]`` box of an RLE (all zeros for an empty mask), as YouTube-VIS stores."""
    return [float(v) for v in mask_util.toBbox(_to_pycoco(rle))]


def rle_to_json(rle: dict) -> dict:
    """Return ``{"size": [H, W], "counts": str}`` (compressed) for any RLE form."""
    compressed = _to_pycoco(rle)
    return {"size": list(compressed["size"]), "counts": compressed["counts"].decode("ascii")}


def mask_to_bbox(mask: np.ndarray) -> list[float]:
    """Tight ``[x, y, w, h]`` box of a binary (H, W) mask; ``[0, 0, 0, 0]`` for an empty mask.

    Matches pycocotools' ``toBbox``: ``w = max_x - min_x + 1`` (pixels are unit squares).
    """
    mask = np.asarray(mask)
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    rows = np.flatnonzero(mask.any(axis=1))
    x0, x1, y0, y1 = cols[0], cols[-1], rows[0], rows[-1]
    return [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)]


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_rle_dict(seg: dict, height: int, width: int, *, path=None, where=None, field=None) -> None:
    """Validate an RLE dict's keys, size and counts type (uncompressed counts are summed).

    Raises:
        DataFormatError naming ``path``/``where``/``field`` on any problem.
    """

    def fail(message, sub=""):
        raise DataFormatError(message, path=path, where=where, field=f"{field}{sub}" if field else sub[1:])

    if "size" not in seg or "counts" not in seg:
        fail(f"an RLE needs 'size' and 'counts', got keys {_short.repr(sorted(seg))}")
    size = seg["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(_is_int(s) for s in size):
        fail(f"RLE size must be [height, width] integers, got {_short.repr(size)}", ".size")
    if (size[0], size[1]) != (height, width):
        fail(f"RLE size {list(size)} differs from the video's [height, width] = [{height}, {width}]", ".size")
    counts = seg["counts"]
    if isinstance(counts, list):
        if not all(_is_int(c) and c >= 0 for c in counts):
            fail("uncompressed RLE counts must be non-negative integers", ".counts")
        if sum(counts) != height * width:
            fail(
                f"uncompressed RLE counts sum to {sum(counts)}, not height*width = {height * width}",
                ".counts",
            )
    elif not isinstance(counts, (str, bytes)):
        fail(
            f"RLE counts must be a string (compressed) or a list (uncompressed), got {type(counts).__name__}",
            ".counts",
        )


def check_polygons(seg: list, *, path=None, where=None, field=None) -> None:
    """Validate a polygon list: each part a flat list of >= 6, an even number of finite numbers."""

    def fail(message):
        raise DataFormatError(message, path=path, where=where, field=field)

    if not seg:
        fail("empty polygon list (use null for a frame without the object)")
    for k, poly in enumerate(seg):
        if not isinstance(poly, list) or not all(_is_number(v) for v in poly):
            fail(f"polygon {k} must be a flat list of numbers [x0, y0, x1, y1, ...]")
        if len(poly) < 6 or len(poly) % 2:
            fail(f"polygon {k} has {len(poly)} coordinates; it needs an even number, at least 6")
        if not all(math.isfinite(v) for v in poly):
            fail(f"polygon {k} has a non-finite coordinate")


def check_segmentation(seg, height: int, width: int, *, path=None, where=None, field=None) -> None:
    """Validate one per-frame segmentation in any YouTube-VIS form without decoding it."""
    if seg is None:
        return
    if isinstance(seg, dict):
        check_rle_dict(seg, height, width, path=path, where=where, field=field)
    elif isinstance(seg, list):
        check_polygons(seg, path=path, where=where, field=field)
    else:
        raise DataFormatError(
            f"a segmentation must be an RLE dict, a polygon list or null, got {type(seg).__name__}",
            path=path,
            where=where,
            field=field,
        )


def segmentation_to_rle(seg, height: int, width: int, *, path=None, where=None, field=None) -> dict | None:
    """Convert one per-frame segmentation (any YouTube-VIS form) to compressed RLE.

    Args:
        seg: compressed RLE (``str``/``bytes`` counts), uncompressed RLE (``list`` counts),
            polygons (list of flat ``[x0, y0, ...]`` lists) or None.
        height, width: the video's frame size; RLE sizes must equal it, polygons are rasterized to it.
        path, where, field: named in the error message.

    Returns:
        ``{"size": [H, W], "counts": bytes}`` ready for pycocotools, or None for a None input.

    Raises:
        DataFormatError: wrong type, size mismatch, bad uncompressed counts or a malformed polygon.
    """
    check_segmentation(seg, height, width, path=path, where=where, field=field)
    if seg is None:
        return None
    if isinstance(seg, dict):
        return _to_pycoco(seg)
    parts = mask_util.frPyObjects([[float(v) for v in poly] for poly in seg], height, width)
    merged = mask_util.merge(parts) if len(parts) > 1 else parts[0]  # union of the parts
    return {"size": [height, width], "counts": merged["counts"]}
