"""One video's dets of one class as dense arrays: what HOTA, CLEAR and Identity read.

Each GT annotation / results entry of the class is one track (a column); a frame where its
segmentation is not null is a det (an empty mask too). The mask IoUs of a frame are computed once
(pycocotools, GT tracks as rows in annotation order, predictions as columns in results order: the
order scipy's Hungarian solver sees, which decides ties) and every metric family reads them from
`SequenceData.similarity`. Tracks without any det do not exist for these metrics and are dropped.

MOTS (TrackEval ``KittiMOTS`` / ``MOTSChallenge`` preprocessing): per frame, predictions not matched
to a GT det (Hungarian on IoU, pairs below 0.5 - eps forbidden) whose intersection over their own
area with the frame's ignore region exceeds 0.5 + eps are removed before any metric sees them.
No torch; matchings by `streamvis.evaluation.assignment`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pycocotools.mask as mask_util

__all__ = ["SequenceData", "build_sequence", "frame_similarities", "one_sided_sequence", "to_rle"]

EPS = float(np.finfo(float).eps)  # TrackEval's slack in threshold comparisons
# TrackEval KittiMOTS: an unmatched tracker det more than half inside the ignore region is removed
IGNORE_REGION_IOA = 0.5
# TrackEval KittiMOTS preprocessing matches at IoU >= 0.5 - eps; -10000 marks "cannot match"
MOTS_MATCH_IOU, MOTS_NO_MATCH = 0.5, -10000.0


@dataclass
class SequenceData:
    """Dets of one class in one video.

    Attributes:
        gt_present: (T, G) bool, GT track g has a det in frame t (every column has at least one).
        tracker_present: (T, K) bool, the same for predicted tracks.
        similarity: (T, G, K) mask IoU, 0 where either det is absent (all 0 when one side has no
            det: every metric then returns early and reads only the counts below).
        num_gt_dets, num_tracker_dets, num_gt_ids, num_tracker_ids: totals.
    """

    gt_present: np.ndarray
    tracker_present: np.ndarray
    similarity: np.ndarray
    num_gt_dets: int
    num_tracker_dets: int
    num_gt_ids: int
    num_tracker_ids: int

    @property
    def num_timesteps(self) -> int:
        return self.gt_present.shape[0]

    def matched_frames(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The frames with dets on both sides, in order: (GT columns (g,), tracker columns (k,), the
        (g, k) IoUs), the matrices the per-frame Hungarian matchings see (computed once, shared)."""
        cached = getattr(self, "_matched_frames", None)
        if cached is None:
            both = (self.gt_present.any(1) & self.tracker_present.any(1)).nonzero()[0]
            cached = []
            for t in both:
                gt_cols, dt_cols = self.gt_present[t].nonzero()[0], self.tracker_present[t].nonzero()[0]
                cached.append((gt_cols, dt_cols, self.similarity[t][gt_cols[:, None], dt_cols]))
            self._matched_frames = cached
        return cached

    @classmethod
    def from_arrays(cls, gt_present, tracker_present, similarity) -> SequenceData:
        """Build from dense arrays, dropping tracks without any det."""
        keep_gt, keep_dt = gt_present.any(0), tracker_present.any(0)
        gt_present, tracker_present = gt_present[:, keep_gt], tracker_present[:, keep_dt]
        similarity = similarity[:, keep_gt][:, :, keep_dt]
        return cls(
            gt_present,
            tracker_present,
            similarity,
            int(gt_present.sum()),
            int(tracker_present.sum()),
            gt_present.shape[1],
            tracker_present.shape[1],
        )


def _presence(tracks: list, length: int) -> np.ndarray:
    """(T, N) bool: which frames of each track's segmentations are not null."""
    present = np.zeros((length, len(tracks)), dtype=bool)
    for column, segs in enumerate(tracks):
        present[:, column] = [s is not None for s in segs]
    return present


def one_sided_sequence(gt_tracks: list, dt_tracks: list, length: int) -> SequenceData:
    """A class with dets on at most one side: only the counts matter (every metric returns early)."""
    gt_present, dt_present = _presence(gt_tracks, length), _presence(dt_tracks, length)
    similarity = np.zeros((length, gt_present.shape[1], dt_present.shape[1]))
    return SequenceData.from_arrays(gt_present, dt_present, similarity)


def to_rle(seg, height: int, width: int) -> dict:
    """pycocotools RLE of a validated segmentation (fast path for compressed string counts)."""
    if isinstance(seg, dict) and isinstance(seg.get("counts"), str):
        return {"size": [int(s) for s in seg["size"]], "counts": seg["counts"].encode("ascii")}
    from streamvis.data.masks import segmentation_to_rle

    return segmentation_to_rle(seg, height, width)


def _mots_unmatched(similarity: np.ndarray) -> np.ndarray:
    """Columns of a frame's (g, k) IoU matrix left unmatched by TrackEval's MOTS preprocessing."""
    unmatched = np.arange(similarity.shape[1])
    if similarity.shape[0] == 0:
        return unmatched
    from streamvis.evaluation.assignment import linear_sum_assignment

    scores = np.where(similarity < MOTS_MATCH_IOU - EPS, MOTS_NO_MATCH, similarity)
    rows, cols = linear_sum_assignment(-scores)
    return np.delete(unmatched, cols[scores[rows, cols] > 0 + EPS])


def _counts(seg, height: int, width: int):
    if type(seg) is dict and type(seg.get("counts")) in (str, bytes):
        return seg["counts"]
    return to_rle(seg, height, width)["counts"]


def frame_similarities(jobs: list[tuple[list, list, dict]]) -> list[tuple[np.ndarray, ...]]:
    """The per-frame mask IoUs of many sequences at once (few pycocotools calls for all of them).

    Args:
        jobs: ``(gt_tracks, dt_tracks, video)`` per sequence, as `build_sequence` takes them.

    Returns:
        Per job, ``(t, g, k, iou)``: (P,) frame, GT track, predicted track and their IoU, for every
        pair with IoU above 0 on a frame where both have a det (the other pairs' IoU is 0). The IoUs
        are bit for bit ``pycocotools.mask.iou`` of the two masks (`video_iou.same_key_ratios`).
    """
    from streamvis.evaluation.video_iou import frame_masks, same_key_ratios

    gt_cols, dt_cols, gt_parts, dt_parts = [], [], ([], [], []), ([], [], [])
    offsets, offset, widest = [], 0, 1
    for gt_tracks, dt_tracks, video in jobs:
        length, height, width = video["length"], video["height"], video["width"]
        offsets.append(offset)
        widest = max(widest, width)
        gt_frames = set()
        for tracks, columns, (keys, heights, counts), wanted in (
            (gt_tracks, gt_cols, gt_parts, None),
            (dt_tracks, dt_cols, dt_parts, gt_frames),
        ):
            for column, segs in enumerate(tracks):
                for t, seg in enumerate(segs):
                    if seg is None or (wanted is not None and t not in wanted):
                        continue
                    if wanted is None:
                        gt_frames.add(t)
                    columns.append(column)
                    keys.append(offset + t)
                    heights.append(height)
                    counts.append(_counts(seg, height, width))
        offset += length
    empty = np.zeros(0, np.int64)
    if not gt_cols or not dt_cols:
        return [(empty, empty, empty, np.zeros(0))] * len(jobs)
    gt = frame_masks(gt_cols, gt_parts[0], gt_parts[1], gt_parts[2], np.zeros(len(gt_cols)))
    dt = frame_masks(dt_cols, dt_parts[0], dt_parts[1], dt_parts[2], np.zeros(len(dt_cols)))
    rows, cols, ratio = same_key_ratios(dt, gt, widest)
    keys = dt.key[rows]
    job = np.searchsorted(np.asarray(offsets, np.int64), keys, side="right") - 1
    order = np.argsort(job, kind="stable")
    bounds = np.searchsorted(job[order], np.arange(len(jobs) + 1))
    t = keys - np.asarray(offsets, np.int64)[job]
    g, k = gt.owner[cols], dt.owner[rows]
    return [
        (t[order[a:b]], g[order[a:b]], k[order[a:b]], ratio[order[a:b]])
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())
    ]


def build_sequence(
    gt_tracks: list, dt_tracks: list, video: dict, ignore: list | None = None, ious: tuple | None = None
) -> SequenceData:
    """Dense `SequenceData` of one class in one video, with the IoUs of every frame.

    Args:
        gt_tracks / dt_tracks: per-frame segmentation lists of the class's GT / predicted tracks, in
            file order.
        video: the video dict (``length``, ``height``, ``width``).
        ignore: MOTS only: per frame, the united ignore-region RLE or None.
        ious: the sequence's ``(t, g, k, iou)`` from `frame_similarities` (then no mask is decoded
            here; not with `ignore`).
    """
    length, height, width = video["length"], video["height"], video["width"]
    gt_present, dt_present = _presence(gt_tracks, length), _presence(dt_tracks, length)
    similarity = np.zeros((length, len(gt_tracks), len(dt_tracks)))
    if ious is not None and not ignore:
        t, g, k, values = ious
        similarity[t, g, k] = values
        return SequenceData.from_arrays(gt_present, dt_present, similarity)
    has_gt, has_dt = gt_present.any(1), dt_present.any(1)
    ignored = np.array([r is not None for r in ignore], dtype=bool) if ignore else np.zeros(length, bool)
    for t in np.flatnonzero(has_dt & (has_gt | ignored)):
        gt_cols, dt_cols = np.flatnonzero(gt_present[t]), np.flatnonzero(dt_present[t])
        dt_rles = [to_rle(dt_tracks[k][t], height, width) for k in dt_cols]
        if len(gt_cols):
            gt_rles = [to_rle(gt_tracks[g][t], height, width) for g in gt_cols]
            ious = np.asarray(mask_util.iou(gt_rles, dt_rles, [0] * len(dt_rles)), dtype=float)
            similarity[t, gt_cols[:, None], dt_cols[None, :]] = ious.reshape(len(gt_cols), len(dt_cols))
        if ignored[t]:
            unmatched = _mots_unmatched(similarity[t][np.ix_(gt_cols, dt_cols)])
            if len(unmatched):
                ioa = mask_util.iou([dt_rles[k] for k in unmatched], [ignore[t]], [1])
                removed = dt_cols[
                    unmatched[np.asarray(ioa, dtype=float).reshape(-1) > IGNORE_REGION_IOA + EPS]
                ]
                dt_present[t, removed] = False
                similarity[t][:, removed] = 0.0
    return SequenceData.from_arrays(gt_present, dt_present, similarity)
