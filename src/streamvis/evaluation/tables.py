"""Ground truth and results as flat numpy tables, the input of the evaluation (no torch).

This is the "load" half of the official toolkit (``ytvos.py`` + ``loadRes`` + ``_prepare``): masks
become compressed RLE, per-frame mask areas are computed in one pycocotools call per side, and each
track gets the average area that decides its area range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pycocotools.mask as mask_util

from streamvis.data import rle_fast
from streamvis.data.masks import segmentation_to_rle

__all__ = ["GroundTruthTable", "ResultsTable", "build_gt_table", "build_results_table", "rle_areas"]


@dataclass
class GroundTruthTable:
    """Evaluated ground-truth tracks (only those of known videos and categories), in file order.

    Attributes:
        video_ids: (V,) sorted video ids; ``video`` below indexes it.
        category_ids: (K,) sorted category ids; ``category`` below indexes it.
        video_sizes: (V, 2) frame height and width of each video.
        video_lengths: (V,) number of frames of each video.
        ann_ids: (G,) annotation ids.
        video, category: (G,) indices into ``video_ids`` / ``category_ids``.
        crowd: (G,) bool, ``iscrowd`` (crowd tracks are never TP nor FP).
        avg_area: (G,) mean of the non-null, non-zero values of the ``areas`` field.
        frames: G arrays of the frame indices where the track has a mask.
        rles: G lists of compressed RLE dicts, aligned with ``frames``.
        frame_areas: G float64 arrays of mask areas, aligned with ``frames``.
    """

    video_ids: np.ndarray
    category_ids: np.ndarray
    video_sizes: np.ndarray
    video_lengths: np.ndarray
    ann_ids: np.ndarray
    video: np.ndarray
    category: np.ndarray
    crowd: np.ndarray
    avg_area: np.ndarray
    frames: list
    rles: list
    frame_areas: list


@dataclass
class ResultsTable:
    """Predicted tracks of evaluated videos and categories.

    Attributes:
        order: (D,) position of each track in the results list (ties in score keep this order).
        video, category: (D,) indices into the ground truth's ``video_ids`` / ``category_ids``.
        score: (D,) float64 confidence.
        avg_area: (D,) mean of the non-zero mask areas (0 when there is none).
        segmentations: D per-frame lists (RLE dict or None), as given.
        area_offset: (D + 1,) slice of each track's non-null frames in ``flat_areas``.
        flat_areas: float64 mask areas of all non-null frames, track after track.
    """

    order: np.ndarray
    video: np.ndarray
    category: np.ndarray
    score: np.ndarray
    avg_area: np.ndarray
    segmentations: list
    area_offset: np.ndarray
    flat_areas: np.ndarray


def _mean_nonzero_area(values) -> float:
    """official ``_toMask``: the mean of the truthy entries of ``areas`` (numpy mean), else 0."""
    kept = [a for a in values or () if a]
    return float(np.array(kept).mean()) if kept else 0.0


def _gt_track(ann: dict, height: int, width: int, where: str):
    frames, rles = [], []
    for t, seg in enumerate(ann["segmentations"]):
        if not seg:  # official: a falsy segmentation (None) is an absent frame
            continue
        if type(seg) is not dict or type(seg.get("counts")) not in (str, bytes):
            seg = segmentation_to_rle(seg, height, width, where=where, field=f"segmentations[{t}]")
        frames.append(t)
        rles.append(seg)
    return np.asarray(frames, dtype=np.int64), rles


def build_gt_table(gt: dict) -> GroundTruthTable:
    """Index a validated ground-truth dict (see `streamvis.data.ytvis.validate_ytvis`).

    Args:
        gt: the YouTube-VIS dict; annotations of unknown videos or categories are skipped, as the
            official toolkit's ``getAnnIds(vidIds, catIds)`` does.

    Returns:
        A `GroundTruthTable`.
    """
    video_ids = np.array(sorted(v["id"] for v in gt["videos"]), dtype=np.int64)
    category_ids = np.array(sorted(c["id"] for c in gt["categories"]), dtype=np.int64)
    video_rank = {int(v): i for i, v in enumerate(video_ids)}
    category_rank = {int(c): i for i, c in enumerate(category_ids)}
    sizes = {v["id"]: (v["height"], v["width"]) for v in gt["videos"]}
    lengths = {v["id"]: v["length"] for v in gt["videos"]}
    rows, frames, rles = [], [], []
    for i, ann in enumerate(gt.get("annotations") or ()):
        if ann["video_id"] not in video_rank or ann["category_id"] not in category_rank:
            continue
        height, width = sizes[ann["video_id"]]
        track_frames, track_rles = _gt_track(ann, height, width, f"annotations[{i}] (id {ann['id']})")
        frames.append(track_frames)
        rles.append(track_rles)
        areas = ann.get("areas")
        rows.append(
            (
                ann["id"],
                video_rank[ann["video_id"]],
                category_rank[ann["category_id"]],
                bool(ann.get("iscrowd", 0)),
                _mean_nonzero_area(areas) if areas is not None else np.nan,
            )
        )
    frame_areas = _split_areas([r for track in rles for r in track], [len(f) for f in frames])
    table = np.array(rows, dtype=object).reshape(-1, 5)
    avg_area = table[:, 4].astype(np.float64)
    for g in np.flatnonzero(np.isnan(avg_area)):  # no `areas` field: fall back to the mask areas
        avg_area[g] = _mean_nonzero_area(frame_areas[g].tolist())
    return GroundTruthTable(
        video_ids=video_ids,
        category_ids=category_ids,
        video_sizes=np.array([sizes[int(v)] for v in video_ids], dtype=np.int64).reshape(-1, 2),
        video_lengths=np.array([lengths[int(v)] for v in video_ids], dtype=np.int64),
        ann_ids=table[:, 0].astype(np.int64),
        video=table[:, 1].astype(np.int64),
        category=table[:, 2].astype(np.int64),
        crowd=table[:, 3].astype(bool),
        avg_area=avg_area,
        frames=frames,
        rles=rles,
        frame_areas=frame_areas,
    )


_AREA_CHUNK = 255  # pycocotools 2.0.11 `area` overflows a uint8 for lists of 256 or more RLEs


def rle_areas(rles: list) -> np.ndarray:
    """(N,) float64 areas of compressed RLE dicts, in few pycocotools calls.

    Areas the RLE check already computed (inside `streamvis.data.rle_fast.remember_areas`) are
    taken from there; pycocotools computes the others.
    """
    known = rle_fast.known_areas([r["counts"] for r in rles])
    if known is not None and known[1].any():
        areas, found = known
        if not found.all():
            missing = np.flatnonzero(~found).tolist()
            areas[missing] = rle_areas([rles[i] for i in missing])  # all unknown: pycocotools
        return areas
    chunks = [mask_util.area(rles[i : i + _AREA_CHUNK]) for i in range(0, len(rles), _AREA_CHUNK)]
    return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)


def _split_areas(flat_rles: list, lengths: list) -> list:
    areas = rle_areas(flat_rles)
    return np.split(areas, np.cumsum(lengths)[:-1]) if lengths else []


def build_results_table(results: list, gt_table: GroundTruthTable) -> ResultsTable:
    """Index a validated results list; tracks of unknown videos or categories are skipped.

    Mask areas of all frames are computed by pycocotools in batches of 255 masks (the official
    ``loadRes`` computes them frame by frame); a track's average area is the mean of its non-zero
    frame areas (official ``_toMask``).
    """
    video_rank = {int(v): i for i, v in enumerate(gt_table.video_ids)}
    category_rank = {int(c): i for i, c in enumerate(gt_table.category_ids)}
    kept = [
        i for i, r in enumerate(results) if r["video_id"] in video_rank and r["category_id"] in category_rank
    ]
    segmentations = [results[i]["segmentations"] for i in kept]
    present = np.array([len(s) - s.count(None) for s in segmentations], dtype=np.int64)
    flat = [seg for segs in segmentations for seg in segs if seg is not None]
    flat_areas = rle_areas(flat)
    offset = np.concatenate([[0], np.cumsum(present)])
    track = np.repeat(np.arange(len(kept)), present)  # (F,) track of each flat frame
    area_sum = np.bincount(track, weights=flat_areas, minlength=len(kept))
    nonzero = np.bincount(track, weights=flat_areas > 0, minlength=len(kept))
    with np.errstate(invalid="ignore", divide="ignore"):
        avg_area = np.where(nonzero > 0, area_sum / np.maximum(nonzero, 1), 0.0)
    return ResultsTable(
        order=np.asarray(kept, dtype=np.int64),
        video=np.array([video_rank[results[i]["video_id"]] for i in kept], dtype=np.int64),
        category=np.array([category_rank[results[i]["category_id"]] for i in kept], dtype=np.int64),
        score=np.array([results[i]["score"] for i in kept], dtype=np.float64),
        avg_area=avg_area,
        segmentations=segmentations,
        area_offset=offset,
        flat_areas=flat_areas,
    )
