"""Exact video IoU between predicted and ground-truth tracks (RLE, no pixel loops).

official (``ytvoseval.py: computeIoU``): IoU = sum over frames of |D ∩ G| / sum over frames of
|D ∪ G|; a frame where only one track has a mask adds that mask's area to the union, frames where
neither has one add nothing, and an empty total union gives IoU 0. So with per-track total areas
A_D, A_G and I = sum of per-frame intersections, IoU = I / (A_D + A_G - I).

The intersections come from few ``pycocotools.mask.iou`` calls, each over many frames of many
videos: every mask of (video, frame) key k is handed over with the nominal size (H, W_max + k).
pycocotools only walks the run lengths of masks of equal size (others get -1), so masks of different
frames are never intersected; the walk does not use the width, and the bounding boxes it uses to
skip disjoint pairs depend only on H, so o = I / U is the true per-frame ratio. With the areas a, b
known, U = a + b - I gives back the integer intersection exactly: I = round(o (a + b) / (1 + o))
(o is within 2**-52 relatively of I / U, and I < 2**32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pycocotools.mask as mask_util

from streamvis.evaluation import setops
from streamvis.utils.memo import ScopedLog

__all__ = [
    "FrameMasks",
    "frame_masks",
    "pair_intersections",
    "remember_ious",
    "same_frame_pairs",
    "same_key_ratios",
    "select_masks",
    "video_iou",
]

# bounds the (masks x masks) ratio matrix of one pycocotools call; 1 << 12 measured faster than 1 << 14
_MAX_PAIRS_PER_CALL = 1 << 12


@dataclass
class FrameMasks:
    """The non-null per-frame masks of a set of tracks, sorted by frame key.

    Attributes:
        owner: (F,) index of the track each mask belongs to.
        key: (F,) frame key, unique per (video, frame) (e.g. the video's frame offset + frame index).
        height: (F,) frame height.
        counts: (F,) object array of the compressed RLE counts (``str`` or ``bytes``).
        areas: (F,) float64 mask areas.
    """

    owner: np.ndarray
    key: np.ndarray
    height: np.ndarray
    counts: np.ndarray
    areas: np.ndarray


def _object_array(items: list) -> np.ndarray:
    """(N,) object array of `items` (strings are kept whole), so that subsets are numpy indexing."""
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


def frame_masks(owner, key, height, counts: list, areas) -> FrameMasks:
    """Build a `FrameMasks`, sorting the masks by frame key (stable)."""
    key = np.asarray(key, dtype=np.int64)
    order = np.argsort(key, kind="stable")
    return FrameMasks(
        owner=np.asarray(owner, dtype=np.int64)[order],
        key=key[order],
        height=np.asarray(height, dtype=np.int64)[order],
        counts=_object_array(counts)[order],
        areas=np.asarray(areas, dtype=np.float64)[order],
    )


def _chunks(dt_key: np.ndarray, gt_key: np.ndarray):
    """Split the key range so that each call's (dt masks x gt masks) stays under the cap."""
    keys = setops.union(dt_key, gt_key)
    d_end = np.searchsorted(dt_key, keys, side="right").tolist()
    g_end = np.searchsorted(gt_key, keys, side="right").tolist()
    d_lo = g_lo = d_prev = g_prev = 0
    for d_hi, g_hi in zip(d_end, g_end):  # one step per frame key; a chunk closes before it gets too big
        if (d_hi - d_lo) * (g_hi - g_lo) > _MAX_PAIRS_PER_CALL and (d_prev > d_lo or g_prev > g_lo):
            yield slice(d_lo, d_prev), slice(g_lo, g_prev)
            d_lo, g_lo = d_prev, g_prev
        d_prev, g_prev = d_hi, g_hi
    yield slice(d_lo, len(dt_key)), slice(g_lo, len(gt_key))


def _rles(masks: FrameMasks, part: slice, base_width: int) -> list:
    return [
        {"size": [h, base_width + k], "counts": c}
        for h, k, c in zip(masks.height[part].tolist(), masks.key[part].tolist(), masks.counts[part].tolist())
    ]


def select_masks(masks: FrameMasks, keep: np.ndarray) -> FrameMasks:
    """The masks where the (F,) bool `keep` is set (order kept)."""
    index = np.flatnonzero(keep)
    return FrameMasks(
        owner=masks.owner[index],
        key=masks.key[index],
        height=masks.height[index],
        counts=masks.counts[index],
        areas=masks.areas[index],
    )


def same_frame_pairs(dt: FrameMasks, gt: FrameMasks) -> tuple[np.ndarray, np.ndarray]:
    """Every (prediction mask, ground-truth mask) pair with the same frame key.

    Returns:
        dt_index, gt_index: (M,) positions in `dt` and `gt`, by prediction mask then ground truth.
    """
    first = np.searchsorted(gt.key, dt.key, side="left")
    count = np.searchsorted(gt.key, dt.key, side="right") - first
    dt_index = np.repeat(np.arange(dt.key.size), count)
    start = np.repeat(first - (np.cumsum(count) - count), count)  # first gt mask, minus the pairs before
    return dt_index, start + np.arange(dt_index.size)


def same_key_ratios(dt: FrameMasks, gt: FrameMasks, base_width: int):
    """pycocotools' IoU of every (prediction mask, ground-truth mask) pair with the same frame key.

    Args:
        dt, gt: masks sorted by key (`frame_masks`); their ``areas`` are not read.
        base_width: at least the largest frame width (nominal widths are ``base_width + key``).

    Returns:
        (rows, cols, ratio): positions in `dt` and `gt` of the pairs whose IoU is above 0 (the
        others are disjoint or empty), and that IoU (float64, bit for bit what
        ``pycocotools.mask.iou`` gives for the two masks alone).
    """
    log = _IOUS.active
    if log is not None and dt.key.size and gt.key.size:
        remembered = log.lookup(dt, gt)
        if remembered is not None:
            return remembered
    all_rows, all_cols, all_ratios = [], [], []
    for d_part, g_part in _chunks(dt.key, gt.key):
        if d_part.stop <= d_part.start or g_part.stop <= g_part.start:
            continue
        ratio = np.asarray(
            mask_util.iou(
                _rles(dt, d_part, base_width),
                _rles(gt, g_part, base_width),
                [0] * (g_part.stop - g_part.start),
            )
        )
        same = dt.key[d_part, None] == gt.key[None, g_part]
        rows, cols = np.nonzero(same & (ratio > 0))  # -1: other frame; 0: disjoint
        all_ratios.append(ratio[rows, cols])
        all_rows.append(rows + d_part.start)
        all_cols.append(cols + g_part.start)
    if not all_rows:
        result = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    else:
        result = np.concatenate(all_rows), np.concatenate(all_cols), np.concatenate(all_ratios)
    if log is not None:
        log.record(dt, gt, *result)
    return result


# ------------------------------------------------------------------------------ shared mask IoUs
class PairLog:
    """The same-frame pair IoUs of one `remember_ious` block, kept as arrays.

    A record is one `same_key_ratios` call: the distinct counts objects of each side (by identity),
    the sorted keys of every same-frame pair (prediction object index * ground-truth objects +
    ground-truth object index), and the keys and IoUs of the pairs above 0.
    """

    def __init__(self):
        self.records: list[tuple] = []
        self._objects: list = []  # keeps the counts objects (and so their ids) alive

    def __len__(self) -> int:
        """How many pairs are known (zero IoUs included)."""
        return sum(record[2].size for record in self.records)

    def record(self, dt: FrameMasks, gt: FrameMasks, rows, cols, ratio) -> None:
        d_ids, d_index = setops.unique_inverse(_ids(dt))
        g_ids, g_index = setops.unique_inverse(_ids(gt))
        every_dt, every_gt = same_frame_pairs(dt, gt)  # the pairs not in rows/cols have IoU 0
        every = setops.unique(d_index[every_dt] * g_ids.size + g_index[every_gt])
        positive, where = setops.unique_inverse(d_index[rows] * g_ids.size + g_index[cols])
        ratios = np.zeros(positive.size)
        ratios[where] = ratio  # a pair seen twice (shared mask objects) has one IoU
        self.records.append((d_ids, g_ids, every, positive, ratios))
        self._objects.append((dt.counts, gt.counts))

    def lookup(self, dt: FrameMasks, gt: FrameMasks):
        """`same_key_ratios` of `dt` x `gt` from one record that holds all their pairs, else None."""
        every_dt, every_gt = same_frame_pairs(dt, gt)
        d_wanted, g_wanted = _ids(dt), _ids(gt)
        for d_ids, g_ids, every, positive, ratios in self.records:
            d_index, d_found = setops.find(d_ids, d_wanted)
            g_index, g_found = setops.find(g_ids, g_wanted)
            if not (d_found.all() and g_found.all()):
                continue
            keys = d_index[every_dt] * g_ids.size + g_index[every_gt]
            if not setops.find(every, keys)[1].all():
                continue
            at, hit = setops.find(positive, keys)
            return every_dt[hit], every_gt[hit], ratios[at[hit]]
        return None


_IOUS = ScopedLog("streamvis_ious", PairLog)


def remember_ious():
    """Within the block, `same_key_ratios` keeps every same-frame pair's IoU for later calls.

    ``streamvis evaluate --metrics all`` computes the tracking metrics' per-frame IoUs first (every
    prediction against every ground truth of its class, frame by frame); AP then needs a subset of
    the same pairs (same video, category and frame), which this memo serves without decoding again.
    Pairs are keyed by the identities of the two counts objects (kept alive by the log; a block
    opened in one thread is invisible to another: `streamvis.utils.memo.ScopedLog`); a call is
    served only when one earlier call knew every one of its pairs.

    Yields:
        The block's `PairLog` (for tests).
    """
    return _IOUS.scope()


def _ids(masks: FrameMasks) -> np.ndarray:
    return np.fromiter(map(id, masks.counts.tolist()), np.int64, masks.counts.size)


def pair_intersections(dt: FrameMasks, gt: FrameMasks, base_width: int):
    """Sums over frames of the intersection areas of (prediction, ground truth) track pairs.

    Args:
        dt, gt: the masks of the predicted and ground-truth tracks.
        base_width: at least the largest frame width (nominal widths are ``base_width + key``).

    Returns:
        (dt_owner, gt_owner, intersection): the track pairs with a non-empty intersection on some
        frame, each pair once, and the exact summed intersection (float64 integers).
    """
    num_gt = int(gt.owner.max(initial=-1)) + 1
    # only non-empty masks of frames that both sides have can intersect: the others are not decoded
    dt = select_masks(dt, (dt.areas > 0) & setops.isin(dt.key, gt.key[gt.areas > 0]))
    gt = select_masks(gt, (gt.areas > 0) & setops.isin(gt.key, dt.key))
    rows, cols, o = same_key_ratios(dt, gt, base_width)
    if not rows.size:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    values = np.rint(o * (dt.areas[rows] + gt.areas[cols]) / (1.0 + o))
    unique, inverse = setops.unique_inverse(dt.owner[rows] * num_gt + gt.owner[cols])
    summed = np.bincount(inverse, values, minlength=unique.size).astype(np.float64)
    return unique // num_gt, unique % num_gt, summed


def video_iou(inter: np.ndarray, dt_total_area: np.ndarray, gt_total_area: np.ndarray):
    """Video IoU from summed intersections and per-track total areas, as the official toolkit.

    Args:
        inter: (P,) summed intersections of P (prediction, ground truth) pairs.
        dt_total_area, gt_total_area: (P,) the pair's tracks' mask areas summed over frames.

    Returns:
        ious: (P,) float64 (0 where the union is empty); empty: (P,) bool, the union is empty (the
        official toolkit prints a warning for those).
    """
    union = dt_total_area + gt_total_area - inter
    empty = union <= 0
    ious = np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=~empty)
    return ious, empty
