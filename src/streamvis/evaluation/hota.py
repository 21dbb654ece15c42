"""HOTA (Luiten et al., IJCV 2021), number for number TrackEval 1.3.0's ``metrics/hota.py``.

One sequence and class at a time (`hota_sequence`), then combined over sequences and classes.
The rules, all TrackEval's (``shared/golden/mots_eval/README.md`` lists them with the golden cases
that pin each one down):

- one Hungarian matching per frame for all alphas, maximising ``A(g, t) * IoU(g, t)`` where ``A`` is
  the global alignment score ``P / (n_g + n_t - P)`` built from the frame-normalised similarities;
  the solver breaks ties as scipy's ``linear_sum_assignment`` on the negated score (`assignment`; it decides
  three YouTube-VIS golden rows);
- a matched pair is a TP at alpha when ``IoU >= alpha - eps``;
- ``LocA = 1`` when there is no TP; a sequence without tracker (or GT) dets returns early;
- reported HOTA, DetA, ... are the arithmetic means of the 19 per-alpha values.

Rows are plain dicts keyed by TrackEval's field names: (19,) float arrays for `ARRAY_FIELDS` and the
counts `COUNT_FIELDS`, floats for `SCALAR_FIELDS`. The per-frame work is vectorised over frames
(`SequenceData` holds dense (T, G, K) IoUs); only the Hungarian matchings run frame by frame. No
torch; scipy only for matrices too large for `assignment`'s own solver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from streamvis.evaluation.rows import class_averaged, summed

if TYPE_CHECKING:
    from streamvis.evaluation.sequences import SequenceData

__all__ = [
    "ALPHAS",
    "ARRAY_FIELDS",
    "COUNT_FIELDS",
    "SCALAR_FIELDS",
    "EPS",
    "combine_classes_class_averaged",
    "combine_classes_det_averaged",
    "combine_sequences",
    "empty_row",
    "hota_sequence",
]

# TrackEval hota.py: self.array_labels = np.arange(0.05, 0.99, 0.05) (19 values, e.g. 0.7500000000000001)
ALPHAS = np.arange(0.05, 0.99, 0.05)
# TrackEval compares against thresholds with np.finfo('float').eps slack
EPS = float(np.finfo(float).eps)
COUNT_FIELDS = ("HOTA_TP", "HOTA_FN", "HOTA_FP")
ARRAY_FIELDS = ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA", "OWTA")
SCALAR_FIELDS = ("HOTA(0)", "LocA(0)", "HOTALocA(0)")


def empty_row(num_gt_dets: int = 0, num_tracker_dets: int = 0) -> dict:
    """The early-return row of a sequence with no tracker dets or no GT dets (TrackEval's shortcut).

    Args:
        num_gt_dets: GT dets of the sequence (all FN); num_tracker_dets: tracker dets (all FP).

    Returns:
        A row with every ratio 0, ``LocA`` and ``LocA(0)`` 1.
    """
    n = len(ALPHAS)
    row = {field: np.zeros(n) for field in COUNT_FIELDS + ARRAY_FIELDS}
    row["HOTA_FN"] = np.full(n, float(num_gt_dets))
    row["HOTA_FP"] = np.full(n, float(num_tracker_dets))
    row["LocA"] = np.ones(n)
    row.update({"HOTA(0)": 0.0, "LocA(0)": 1.0, "HOTALocA(0)": 0.0})
    return row


def _final_fields(row: dict) -> dict:
    """DetRe/DetPr/DetA, HOTA, OWTA and the alpha-0 scalars from the counts and association scores."""
    tp, fn, fp = row["HOTA_TP"], row["HOTA_FN"], row["HOTA_FP"]
    row["DetRe"] = tp / np.maximum(1, tp + fn)
    row["DetPr"] = tp / np.maximum(1, tp + fp)
    row["DetA"] = tp / np.maximum(1, tp + fn + fp)
    row["HOTA"] = np.sqrt(row["DetA"] * row["AssA"])
    row["OWTA"] = np.sqrt(row["DetRe"] * row["AssA"])
    row["HOTA(0)"] = float(row["HOTA"][0])
    row["LocA(0)"] = float(row["LocA"][0])
    row["HOTALocA(0)"] = row["HOTA(0)"] * row["LocA(0)"]
    return row


def _alignment(seq: SequenceData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Global alignment score ``A`` (G, K) and the per-id det counts n_g (G, 1), n_t (1, K)."""
    similarity = seq.similarity  # (T, G, K)
    # each frame's similarity normalised by its row and column sums (TrackEval: sim_iou)
    denominator = similarity.sum(1)[:, None, :] + similarity.sum(2)[:, :, None] - similarity
    normalised = np.zeros_like(similarity)
    valid = denominator > 0 + EPS
    normalised[valid] = similarity[valid] / denominator[valid]
    potential = normalised.sum(0)  # (G, K), frames added in order
    gt_count = seq.gt_present.sum(0)[:, None].astype(float)
    tracker_count = seq.tracker_present.sum(0)[None, :].astype(float)
    return potential / (gt_count + tracker_count - potential), gt_count, tracker_count


def _matches(seq: SequenceData, alignment: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The per-frame Hungarian matches of all frames: GT columns, tracker columns and their IoUs (M,).

    A frame with one GT det or one tracker det (most frames) is a single row or column: scipy then
    takes the first highest score (`assignment`), found for all such frames at once; the others go
    through the solver. Matches stay in frame order (the sums over them are order-sensitive).
    """
    from streamvis.evaluation.assignment import linear_sum_assignment

    gt_present, tracker_present = seq.gt_present, seq.tracker_present
    both = np.flatnonzero(gt_present.any(1) & tracker_present.any(1))
    if both.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    single = (gt_present[both].sum(1) == 1) | (tracker_present[both].sum(1) == 1)
    frames, gts, trackers, ious = [], [], [], []
    if single.any():
        t = both[single]
        similarity = seq.similarity[t]  # (F, G, K)
        present = gt_present[t][:, :, None] & tracker_present[t][:, None, :]
        score = np.where(present, alignment[None] * similarity, -np.inf).reshape(t.size, -1)
        best = np.argmax(score, axis=1)  # first highest, row-major: (g, k) in the solver's order
        g, k = np.divmod(best, similarity.shape[2])
        frames.append(t)
        gts.append(g)
        trackers.append(k)
        ious.append(similarity[np.arange(t.size), g, k])
    for t in both[~single].tolist():
        gt_cols, dt_cols = np.flatnonzero(gt_present[t]), np.flatnonzero(tracker_present[t])
        similarity = seq.similarity[t][gt_cols[:, None], dt_cols]
        rows, cols = linear_sum_assignment(-(alignment[gt_cols[:, None], dt_cols] * similarity))
        frames.append(np.full(rows.size, t))
        gts.append(gt_cols[rows])
        trackers.append(dt_cols[cols])
        ious.append(similarity[rows, cols])
    order = np.argsort(np.concatenate(frames), kind="stable")
    return np.concatenate(gts)[order], np.concatenate(trackers)[order], np.concatenate(ious)[order]


def hota_sequence(seq: SequenceData) -> dict:
    """HOTA of one sequence and class.

    Args:
        seq: the class's dets and IoUs (`streamvis.evaluation.sequences.SequenceData`).

    Returns:
        A row: (19,) arrays of `COUNT_FIELDS` and `ARRAY_FIELDS`, floats of `SCALAR_FIELDS`.
    """
    if seq.num_tracker_dets == 0 or seq.num_gt_dets == 0:
        return empty_row(seq.num_gt_dets, seq.num_tracker_dets)
    n = len(ALPHAS)
    alignment, gt_count, tracker_count = _alignment(seq)
    gt_cols, dt_cols, matched_iou = _matches(seq, alignment)
    is_tp = matched_iou[None, :] >= (ALPHAS - EPS)[:, None]  # (19, M)
    tp = is_tp.sum(1).astype(float)
    row = {"HOTA_TP": tp, "HOTA_FN": seq.num_gt_dets - tp, "HOTA_FP": seq.num_tracker_dets - tp}
    loc_sum = np.where(is_tp, matched_iou[None, :], 0.0).sum(1)
    # a match with IoU s is a TP at the first k alphas (thresholds increase): per-alpha pair counts
    # are tail sums of the counts by k
    by_passed = np.zeros((n + 1, seq.num_gt_ids, seq.num_tracker_ids))
    np.add.at(by_passed, (is_tp.sum(0), gt_cols, dt_cols), 1)
    matches = np.cumsum(by_passed[::-1], axis=0)[::-1][1:]  # (19, G, K)
    tp_floor = np.maximum(1, tp)
    ass_a = matches / np.maximum(1, gt_count[None] + tracker_count[None] - matches)
    row["AssA"] = np.sum(matches * ass_a, axis=(1, 2)) / tp_floor
    row["AssRe"] = np.sum(matches * (matches / np.maximum(1, gt_count[None])), axis=(1, 2)) / tp_floor
    row["AssPr"] = np.sum(matches * (matches / np.maximum(1, tracker_count[None])), axis=(1, 2)) / tp_floor
    row["LocA"] = np.maximum(1e-10, loc_sum) / np.maximum(1e-10, tp)  # TrackEval: 1 where TP = 0
    return _final_fields(row)


def _weighted(rows: list[dict], field: str, total_tp: np.ndarray) -> np.ndarray:
    """TP-weighted mean of a per-alpha field (TrackEval ``_combine_weighted_av``)."""
    return sum(r[field] * r["HOTA_TP"] for r in rows) / np.maximum(1.0, total_tp)


def combine_sequences(rows: list[dict]) -> dict:
    """Combine rows of sequences (or classes, detection-averaged): sum counts, TP-weight the rest.

    Args:
        rows: rows of `hota_sequence` / `empty_row` (at least one).

    Returns:
        The combined row, its ratios recomputed from the summed counts.
    """
    combined = summed(rows, COUNT_FIELDS)
    for field in ("AssRe", "AssPr", "AssA"):
        combined[field] = _weighted(rows, field, combined["HOTA_TP"])
    loc_sum = sum(r["LocA"] * r["HOTA_TP"] for r in rows)
    combined["LocA"] = np.maximum(1e-10, loc_sum) / np.maximum(1e-10, combined["HOTA_TP"])
    return _final_fields(combined)


combine_classes_det_averaged = combine_sequences


def combine_classes_class_averaged(rows: list[dict]) -> dict:
    """TrackEval's ``cls_comb_cls_av``: counts summed, every ratio (arrays and scalars) a plain mean.

    Every class counts, empty ones included; nothing is recomputed.
    """
    return class_averaged(rows, COUNT_FIELDS, SCALAR_FIELDS, array_fields=ARRAY_FIELDS)
