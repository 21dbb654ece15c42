"""Identity metrics: TrackEval's IDF1/IDR/IDP, and the ID-switch count of ``evaluate --id-switches``.

**IDF1** (Ristani et al., ECCV 2016 workshops), number for number TrackEval 1.3.0's ``identity.py``:
a (GT id, tracker id) pair scores one potential match per frame where their IoU is >= the threshold
(0.5, no eps slack); GT and tracker ids are assigned one-to-one (with "unmatched" dummies) by a
min-cost bipartite matching of IDFN + IDFP; ``IDTP = GT dets - IDFN``. `identity_sequence` scores
one sequence and class; `combine_sequences` sums counts; `combine_classes_class_averaged` averages
the ratios. The matching is `streamvis.evaluation.assignment` (scipy only for large matrices).

**ID switches** (streamvis' own simple count, kept for ``streamvis evaluate --id-switches``):
For each ground-truth track and each frame where it is visible, the matched prediction is the
results entry (track) whose mask has the highest IoU with it, if that IoU is >= 0.5. An ID switch
is a change of the matched track between consecutive matched frames of one ground-truth track
(frames without a match are skipped, so a missed frame is not a switch).

    from streamvis.evaluation.identity import id_switches
    count = id_switches(gt, results)          # IdSwitchCount(switches, matched_frames, gt_frames)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pycocotools.mask as mask_util

from streamvis.evaluation.rows import class_averaged, summed

if TYPE_CHECKING:
    from streamvis.evaluation.sequences import SequenceData

COUNT_FIELDS = ("IDTP", "IDFN", "IDFP")
RATIO_FIELDS = ("IDF1", "IDR", "IDP")
# TrackEval identity.py: the cost that forbids an assignment in the extended (dummy) matrix
_FORBIDDEN = 1e10


def _final_fields(row: dict) -> dict:
    idtp, idfn, idfp = row["IDTP"], row["IDFN"], row["IDFP"]
    row["IDR"] = idtp / max(1.0, idtp + idfn)
    row["IDP"] = idtp / max(1.0, idtp + idfp)
    row["IDF1"] = idtp / max(1.0, idtp + 0.5 * idfp + 0.5 * idfn)
    return row


def _zero_row() -> dict:
    return {"IDF1": 0.0, "IDR": 0.0, "IDP": 0.0, "IDTP": 0, "IDFN": 0, "IDFP": 0}


def identity_sequence(seq: SequenceData, threshold: float = 0.5) -> dict:
    """IDF1, IDR, IDP and their counts for one sequence and class.

    Args:
        seq: the class's GT/tracker ids and (g_t, k_t) IoU matrices per frame.
        threshold: smallest IoU of a potential match (``>=``, TrackEval's default 0.5).

    Returns:
        A row ``{IDF1, IDR, IDP, IDTP, IDFN, IDFP}`` (an early-return row of raw counts, ratios 0,
        when one side has no dets).
    """
    row = _zero_row()
    if seq.num_tracker_dets == 0 or seq.num_gt_dets == 0:
        row.update(IDFN=seq.num_gt_dets, IDFP=seq.num_tracker_dets)
        return row
    from streamvis.evaluation.assignment import linear_sum_assignment

    num_gt, num_tracker = seq.num_gt_ids, seq.num_tracker_ids
    both = seq.gt_present[:, :, None] & seq.tracker_present[:, None, :]  # (T, G, K)
    potential = ((seq.similarity >= threshold) & both).sum(0).astype(float)
    gt_count = seq.gt_present.sum(0).astype(float)
    tracker_count = seq.tracker_present.sum(0).astype(float)
    size = num_gt + num_tracker
    # rows: GT ids then one dummy per tracker id; columns: tracker ids then one dummy per GT id
    fn_cost, fp_cost = np.zeros((size, size)), np.zeros((size, size))
    fp_cost[num_gt:, :num_tracker] = _FORBIDDEN
    fn_cost[:num_gt, num_tracker:] = _FORBIDDEN
    fn_cost[:num_gt, :num_tracker] = gt_count[:, None]
    fn_cost[np.arange(num_gt), num_tracker + np.arange(num_gt)] = gt_count
    fp_cost[:num_gt, :num_tracker] = tracker_count[None, :]
    fp_cost[num_gt + np.arange(num_tracker), np.arange(num_tracker)] = tracker_count
    fn_cost[:num_gt, :num_tracker] -= potential
    fp_cost[:num_gt, :num_tracker] -= potential
    rows, cols = linear_sum_assignment(fn_cost + fp_cost)
    row["IDFN"] = int(fn_cost[rows, cols].sum())
    row["IDFP"] = int(fp_cost[rows, cols].sum())
    row["IDTP"] = int(gt_count.sum()) - row["IDFN"]
    return _final_fields(row)


def combine_sequences(rows: list[dict]) -> dict:
    """Sum IDTP/IDFN/IDFP of sequences (or classes, detection-averaged) and recompute the ratios."""
    return _final_fields({**_zero_row(), **summed(rows, COUNT_FIELDS)})


combine_classes_det_averaged = combine_sequences


def combine_classes_class_averaged(rows: list[dict]) -> dict:
    """TrackEval's ``cls_comb_cls_av``: counts summed, IDF1/IDR/IDP plain means over the classes."""
    return class_averaged(rows, COUNT_FIELDS, RATIO_FIELDS)


@dataclass(frozen=True)
class IdSwitchCount:
    """ID switches of a results list against its ground truth.

    Attributes:
        switches: total changes of the matched predicted track, over all ground-truth tracks.
        matched_frames: (ground-truth track, frame) pairs with a match.
        gt_frames: (ground-truth track, frame) pairs where the object is visible.
    """

    switches: int
    matched_frames: int
    gt_frames: int


def _frame_rles(segmentations: list, frame: int, height: int, width: int) -> list:
    from streamvis.data.masks import segmentation_to_rle  # numpy + pycocotools only

    return [
        segmentation_to_rle(segs[frame], height, width) if segs[frame] is not None else None
        for segs in segmentations
    ]


def matched_track_ids(
    gt_segmentations: list, result_segmentations: list, height: int, width: int, iou_threshold: float = 0.5
) -> list[list[int | None]]:
    """Per ground-truth track and frame, the index of the best-IoU predicted track (or None).

    Args:
        gt_segmentations: G lists of T per-frame segmentations (RLE / polygons / None) of one video.
        result_segmentations: P lists of T per-frame segmentations of the video's predicted tracks.
        height, width: the video's frame size.
        iou_threshold: smallest mask IoU of a match.

    Returns:
        G lists of T entries: the matched prediction's index (ties: the lowest), else None.
    """
    num_frames = len(gt_segmentations[0]) if gt_segmentations else 0
    matches: list[list[int | None]] = [[None] * num_frames for _ in gt_segmentations]
    for t in range(num_frames):
        gt_rles = _frame_rles(gt_segmentations, t, height, width)
        dt_rles = _frame_rles(result_segmentations, t, height, width)
        gt_idx = [i for i, r in enumerate(gt_rles) if r is not None]
        dt_idx = [j for j, r in enumerate(dt_rles) if r is not None]
        if not gt_idx or not dt_idx:
            continue
        ious = np.asarray(
            mask_util.iou([dt_rles[j] for j in dt_idx], [gt_rles[i] for i in gt_idx], [0] * len(gt_idx))
        ).reshape(len(dt_idx), len(gt_idx))  # (P', G')
        best = ious.argmax(axis=0)  # (G',) first maximum: the lowest index wins ties
        for column, i in enumerate(gt_idx):
            if ious[best[column], column] >= iou_threshold:
                matches[i][t] = dt_idx[best[column]]
    return matches


def count_switches(track_ids: list[int | None]) -> int:
    """Changes of the matched id between consecutive matched frames (unmatched frames skipped)."""
    matched = [i for i in track_ids if i is not None]
    return sum(a != b for a, b in zip(matched, matched[1:]))


def id_switches(
    gt: dict, results: list[dict], *, iou_threshold: float = 0.5, min_score: float = 0.0
) -> IdSwitchCount:
    """ID switches of `results` (official results format: one entry per track) against `gt`.

    Args:
        gt: a YouTube-VIS dataset dict with annotations.
        results: ``[{video_id, category_id, score, segmentations}]``; a track is an entry.
        iou_threshold: smallest mask IoU of a match.
        min_score: tracks (entries) scored below this are ignored.

    Returns:
        An `IdSwitchCount` summed over all videos and ground-truth tracks.
    """
    from streamvis.data.ytvis import annotations_by_video, results_by_video

    gt_by_video, dt_by_video = annotations_by_video(gt), results_by_video(results)
    switches = matched = visible = 0
    for video in gt["videos"]:
        gt_segs = [a["segmentations"] for a in gt_by_video.get(video["id"], []) if not a.get("iscrowd")]
        dt_segs = [e["segmentations"] for e in dt_by_video.get(video["id"], []) if e["score"] >= min_score]
        ids = matched_track_ids(gt_segs, dt_segs, video["height"], video["width"], iou_threshold)
        switches += sum(count_switches(row) for row in ids)
        matched += sum(i is not None for row in ids for i in row)
        visible += sum(s is not None for segs in gt_segs for s in segs)
    return IdSwitchCount(switches, matched, visible)
