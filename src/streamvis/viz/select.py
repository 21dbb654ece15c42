"""Which tracks a picture shows: the score threshold of overlays and one drawn entry per object
(second class hypotheses and fragments of an object are kept in the results, left out of the picture)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Overlays (`predict --viz`, `render`, `demo`) draw tracks whose video-level score is at least this;
# the results json keeps every track. 0.25 is the confidence ultralytics' `predict` draws by default.
DRAW_SCORE_THRESHOLD = 0.25
# A drawn track hiding more than this share of a higher-scored drawn track (summed intersection over
# the smaller track's summed area, `select_tracks_to_draw`) is not drawn: one object, one label.
DRAW_MAX_OVERLAP = 0.5
RESULTS_SCORE_THRESHOLD = DRAW_SCORE_THRESHOLD  # former names, kept for callers
TRACK_SCORE_THRESHOLD = DRAW_SCORE_THRESHOLD


def suppress_overlapping(masks, scores: Sequence[float] | None, max_overlap: float) -> list[int]:
    """Indices (in input order) of the masks to draw, so that one object shows one label.

    A mask is left out when its overlap with a higher-scored kept mask (intersection over the
    smaller of the two areas) exceeds `max_overlap`: a second class hypothesis of the same object,
    or a fragment of it. Results keep such instances; only the picture leaves them out.

    Args:
        masks: (N, H, W) bool masks (numpy or torch).
        scores: N scores (None: input order is the priority).
        max_overlap: largest overlap two drawn masks may have; >= 1 keeps everything.
    """
    masks = np.asarray(masks, dtype=bool)
    if len(masks) < 2 or max_overlap >= 1.0:
        return list(range(len(masks)))
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable") if scores is not None \
        else np.arange(len(masks))
    flat = masks.reshape(len(masks), -1)
    areas = flat.sum(axis=1).astype(np.float64)
    keep: list[int] = []
    for i in order:
        if areas[i] > 0 and keep:
            inter = np.logical_and(flat[keep], flat[i]).sum(axis=1)
            overlap = inter / np.maximum(np.minimum(areas[keep], areas[i]), 1.0)
            if overlap.max() > max_overlap:
                continue
        keep.append(int(i))
    return sorted(keep)


def select_tracks_to_draw(entries: Sequence[dict], max_overlap: float = DRAW_MAX_OVERLAP) -> list[int]:
    """Indices (in input order) of one video's results entries to draw, so that each object shows once.

    A tracker may keep one track per class hypothesis of an object (the default tracker does), or
    a short fragment of it; the results keep them all (AP rewards it) but a picture of them is
    unreadable. Over the whole video, an entry is left out when the masks it shares with a
    higher-scored kept entry cover more than `max_overlap` of the smaller of the two (summed
    intersection over the smaller summed mask area). Deciding per track, not per frame, keeps one
    stable label per object instead of a label that flips between hypotheses.

    Args:
        entries: official results entries of ONE video (``score``, ``segmentations``: RLE or None
            per frame).
        max_overlap: in [0, 1]; >= 1 keeps every entry.

    Returns:
        Sorted indices into `entries`.
    """
    import pycocotools.mask as mask_util

    count = len(entries)
    if count < 2 or max_overlap >= 1.0:
        return list(range(count))
    areas = np.zeros(count)
    inter = np.zeros((count, count))  # summed intersection areas over frames
    length = max(len(e["segmentations"]) for e in entries)
    for t in range(length):
        present = [i for i, e in enumerate(entries) if t < len(e["segmentations"]) and e["segmentations"][t]]
        rles = [_coco_rle(entries[i]["segmentations"][t]) for i in present]
        if not rles:
            continue
        frame_areas = mask_util.area(rles).astype(np.float64)  # (P,)
        areas[present] += frame_areas
        if len(rles) > 1:
            iou = np.asarray(mask_util.iou(rles, rles, [0] * len(rles)), dtype=np.float64)  # (P, P)
            # intersection from IoU: I = IoU * (A + B) / (1 + IoU)
            pair_areas = frame_areas[:, None] + frame_areas[None, :]  # (P, P)
            inter[np.ix_(present, present)] += iou * pair_areas / (1.0 + iou)
    order = np.argsort(-np.array([float(e["score"]) for e in entries]), kind="stable")
    keep: list[int] = []
    for i in order:
        if keep and areas[i] > 0:
            overlap = inter[keep, i] / np.maximum(np.minimum(areas[keep], areas[i]), 1.0)
            if overlap.max() > max_overlap:
                continue
        keep.append(int(i))
    return sorted(keep)


def _coco_rle(rle: dict) -> dict:
    counts = rle["counts"]
    counts = counts.encode("ascii") if isinstance(counts, str) else counts
    return {"size": list(rle["size"]), "counts": counts}


def one_entry_per_object(tracks: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
    """Keep one of the results entries that share all their masks, so each object is drawn once.

    The default tracker writes a second class hypothesis of one object as another entry with the
    same ``segmentations`` (`streamvis.tracking.base.track_results`); the highest-scored of such
    entries is kept (the first in file order on a tie), in file order.

    Args:
        tracks: ``(track id, results entry)`` pairs.
    """
    import json

    best: dict[str, tuple[int, dict]] = {}
    order: list[str] = []
    for tid, entry in tracks:
        key = json.dumps(entry["segmentations"], sort_keys=True, default=str)
        if key not in best:
            order.append(key)
            best[key] = (tid, entry)
        elif entry["score"] > best[key][1]["score"]:
            best[key] = (tid, entry)
    return sorted((best[k] for k in order), key=lambda pair: pair[0])
