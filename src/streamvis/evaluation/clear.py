"""CLEAR MOT metrics (Bernardin & Stiefelhagen 2008), number for number TrackEval 1.3.0's ``clear.py``.

With mask IoU as similarity these are the MOTS metrics of Voigtlaender et al. (CVPR 2019):
MOTSA = ``MOTA``, MOTSP = ``MOTP``, sMOTSA = ``sMOTA`` (`MOTS_NAMES`). TrackEval's rules:

- per frame, a Hungarian matching on ``1000 * [t continues this GT's match of the previous evaluated
  frame] + IoU`` with IoU below ``threshold - eps`` set to 0; a pair matches when its score > eps
  (so IoU exactly 0.5 is a TP, and continuing a track beats a higher IoU);
- frames where the class has no GT det or no tracker det are skipped by that bookkeeping (they do
  not reset "matched in the previous frame");
- IDSW: a match to another tracker id than the last one this GT had, any number of frames earlier;
  Frag: per GT, the times it becomes tracked again, minus one; MT ratio > 0.8, PT >= 0.2;
- a sequence without tracker (or GT) dets returns raw counts, every ratio 0 except ``MLR = 1`` and
  ``CLR_Frames = 0``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from streamvis.evaluation.hota import EPS
from streamvis.evaluation.rows import class_averaged, summed

if TYPE_CHECKING:
    from streamvis.evaluation.sequences import SequenceData

__all__ = [
    "COUNT_FIELDS",
    "MOTS_NAMES",
    "RATIO_FIELDS",
    "clear_sequence",
    "combine_classes_class_averaged",
    "combine_classes_det_averaged",
    "combine_sequences",
]

RATIO_FIELDS = (
    "MOTA",
    "MOTP",
    "MODA",
    "CLR_Re",
    "CLR_Pr",
    "MTR",
    "PTR",
    "MLR",
    "sMOTA",
    "CLR_F1",
    "FP_per_frame",
    "MOTAL",
    "MOTP_sum",
)
COUNT_FIELDS = ("CLR_TP", "CLR_FN", "CLR_FP", "IDSW", "MT", "PT", "ML", "Frag", "CLR_Frames")
# TrackEval sums these over sequences (MOTP_sum is summed too, but averaged over classes)
SUMMED_FIELDS = COUNT_FIELDS + ("MOTP_sum",)
# the MOTS paper's names of the same numbers (TrackEval has no separate fields for them)
MOTS_NAMES = {"MOTSA": "MOTA", "MOTSP": "MOTP", "sMOTSA": "sMOTA"}
# TrackEval clear.py: MT above 80 % tracked, ML below 20 %
MOSTLY_TRACKED, MOSTLY_LOST = 0.8, 0.2


def _zero_row() -> dict:
    row = {field: 0 for field in COUNT_FIELDS}
    row.update({field: 0.0 for field in RATIO_FIELDS})
    return row


def empty_row(num_gt_dets: int = 0, num_gt_ids: int = 0, num_tracker_dets: int = 0) -> dict:
    """The early-return row: no tracker dets (all FN, every GT ML) or no GT dets (all FP)."""
    row = _zero_row()
    if num_tracker_dets == 0:
        row.update(CLR_FN=num_gt_dets, ML=num_gt_ids)
    else:
        row["CLR_FP"] = num_tracker_dets
    row["MLR"] = 1.0
    return row


def _final_fields(row: dict) -> dict:
    """TrackEval ``_compute_final_fields``: every ratio from the counts and ``MOTP_sum``."""
    tp, fn, fp, idsw = row["CLR_TP"], row["CLR_FN"], row["CLR_FP"], row["IDSW"]
    num_gt_ids = row["MT"] + row["ML"] + row["PT"]
    row["MTR"] = row["MT"] / max(1.0, num_gt_ids)
    row["MLR"] = row["ML"] / max(1.0, num_gt_ids)
    row["PTR"] = row["PT"] / max(1.0, num_gt_ids)
    row["CLR_Re"] = tp / max(1.0, tp + fn)
    row["CLR_Pr"] = tp / max(1.0, tp + fp)
    row["MODA"] = (tp - fp) / max(1.0, tp + fn)
    row["MOTA"] = (tp - fp - idsw) / max(1.0, tp + fn)
    row["MOTP"] = row["MOTP_sum"] / max(1.0, tp)
    row["sMOTA"] = (row["MOTP_sum"] - fp - idsw) / max(1.0, tp + fn)
    row["CLR_F1"] = tp / max(1.0, tp + 0.5 * fn + 0.5 * fp)
    row["FP_per_frame"] = fp / max(1.0, row["CLR_Frames"])
    safe_log_idsw = math.log10(idsw) if idsw > 0 else idsw
    row["MOTAL"] = (tp - fp - safe_log_idsw) / max(1.0, tp + fn)
    return row


def clear_sequence(seq: SequenceData, threshold: float = 0.5) -> dict:
    """CLEAR of one sequence and class.

    Args:
        seq: the class's GT/tracker ids and (g_t, k_t) IoU matrices per frame.
        threshold: smallest IoU of a match (TrackEval's default 0.5, compared with ``- eps``).

    Returns:
        A row of `COUNT_FIELDS` (int) and `RATIO_FIELDS` (float).
    """
    if seq.num_tracker_dets == 0 or seq.num_gt_dets == 0:
        return empty_row(seq.num_gt_dets, seq.num_gt_ids, seq.num_tracker_dets)
    if seq.num_gt_ids == 1:  # the common case: every frame is a single row
        tp, idsw, motp_sum, tracked, fragments = _single_gt_matches(seq, threshold - EPS)
    else:
        tp, idsw, motp_sum, tracked, fragments = _matches(seq, threshold - EPS)
    row = _zero_row()
    present = seq.gt_present.sum(0)  # frames with a det of each GT (frames without tracker dets too)
    ratio = tracked[present > 0] / present[present > 0]
    fn, fp = seq.num_gt_dets - tp, seq.num_tracker_dets - tp
    row.update(CLR_TP=tp, CLR_FN=fn, CLR_FP=fp, IDSW=int(idsw), MOTP_sum=float(motp_sum))
    row["MT"] = int(np.sum(ratio > MOSTLY_TRACKED))
    row["PT"] = int(np.sum(ratio >= MOSTLY_LOST)) - row["MT"]
    row["ML"] = seq.num_gt_ids - row["MT"] - row["PT"]
    row["Frag"] = int(np.sum(fragments[fragments > 0] - 1))
    row["CLR_Frames"] = seq.num_timesteps
    return _final_fields(row)


def _single_gt_matches(seq: SequenceData, cutoff: float):
    """`_matches` for a sequence with one GT id, the frames' choices found without a solver.

    In each frame the tracker id matched in the previous evaluated frame keeps the match when its
    IoU reaches the cutoff (its score carries the +1000 continuation bonus); otherwise the first of
    the highest IoUs at or above the cutoff is matched (scipy's choice on a single row).
    """
    both = np.flatnonzero(seq.gt_present[:, 0] & seq.tracker_present.any(1))
    tracked, fragments = np.zeros(1), np.zeros(1)
    if both.size == 0:
        return 0, 0, 0.0, tracked, fragments
    similarity = seq.similarity[both, 0, :]  # (F, K), 0 where the tracker id has no det
    allowed = seq.tracker_present[both] & (similarity >= cutoff)
    best = np.argmax(np.where(allowed, similarity, -np.inf), axis=1).tolist()
    has_best = allowed.any(1).tolist()
    allowed, values = allowed.tolist(), similarity.tolist()
    tp = idsw = 0
    motp_sum = 0.0
    last = previous = None  # tracker id matched last (ever) / in the previous evaluated frame
    for i in range(both.size):
        if previous is not None and allowed[i][previous]:
            k = previous
        elif has_best[i]:
            k = best[i]
        else:
            previous = None
            continue
        idsw += last is not None and last != k
        fragments[0] += previous is None
        last = previous = k
        tp += 1
        motp_sum += values[i][k]
    tracked[0] = tp
    return tp, idsw, motp_sum, tracked, fragments


def _matches(seq: SequenceData, cutoff: float):
    """Per-frame CLEAR matching (solver where needed): (TP, IDSW, MOTP_sum, tracked, fragments)."""
    from streamvis.evaluation.assignment import linear_sum_assignment

    tp = idsw = 0
    motp_sum = 0.0
    tracked = np.zeros(seq.num_gt_ids)
    fragments = np.zeros(seq.num_gt_ids)
    last_match: dict[int, int] = {}  # GT -> the last tracker id matched to it, ever
    previous: dict[int, int] = {}  # GT -> tracker id matched in the previous evaluated frame
    # frames without GT or without tracker dets only add FN/FP: they neither match nor reset
    for gt_ids, tracker_ids, similarity in seq.matched_frames():
        gts, trackers = gt_ids.tolist(), tracker_ids.tolist()
        if len(gts) == 1 and len(trackers) == 1:  # the common case, without the solver
            value = float(similarity[0, 0])
            score = 1000.0 * (previous.get(gts[0]) == trackers[0]) + value
            pairs = [(0, 0)] if value >= cutoff and score > 0 + EPS else []
        else:
            continuing = np.array([[previous.get(g) == k for k in trackers] for g in gts])
            score = 1000.0 * continuing + similarity
            score[similarity < cutoff] = 0
            rows, cols = linear_sum_assignment(-score)
            pairs = [(r, c) for r, c in zip(rows.tolist(), cols.tolist()) if score[r, c] > 0 + EPS]
        current = {}
        for r, c in pairs:
            g, k = gts[r], trackers[c]
            idsw += g in last_match and last_match[g] != k
            last_match[g] = current[g] = k
            tracked[g] += 1
            fragments[g] += g not in previous
        previous = current
        tp += len(pairs)
        if pairs:
            motp_sum += sum(similarity[r, c] for r, c in pairs)  # TrackEval: python sum, in matching order
    return tp, idsw, motp_sum, tracked, fragments


def combine_sequences(rows: list[dict]) -> dict:
    """Sum the counts and ``MOTP_sum`` of sequences (or classes, detection-averaged); recompute ratios."""
    return _final_fields({**_zero_row(), **summed(rows, SUMMED_FIELDS)})


combine_classes_det_averaged = combine_sequences


def combine_classes_class_averaged(rows: list[dict]) -> dict:
    """TrackEval's ``cls_comb_cls_av``: counts summed, every ratio *and* ``MOTP_sum`` a plain mean."""
    return class_averaged(rows, COUNT_FIELDS, RATIO_FIELDS)
