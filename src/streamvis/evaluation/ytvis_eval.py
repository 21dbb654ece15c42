"""YouTube-VIS temporal mask AP/AR, number for number the official toolkit, but fast.

The official toolkit is youtubevos/cocoapi ``PythonAPI/pycocotools/ytvoseval.py`` (COCOeval-like:
IoU thresholds .50:.05:.95, recall thresholds 0:.01:1, maxDets 1/10/100, YouTube-VIS area
ranges). This module reproduces its ``evaluate`` / ``accumulate`` / ``summarize`` with the same
tie-breaking and float operations (tests/evaluation checks 32 golden cases to 1e-9), on RLE and
numpy arrays: `tables` indexes the inputs (mask areas in batched pycocotools calls), `video_iou`
gets exact video IoUs from a few batched pycocotools calls (skipping the pairs that an area bound
puts below the lowest IoU threshold: they can match nothing), `groups` and `matching` run the greedy
matching batched over all (video, category) groups, `accumulate` is vectorized over every setting.
No torch (nor numpy.ma) is imported.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamvis.evaluation.accumulate import (
    SUMMARY_SETTINGS,
    DetectionTable,
    accumulate,
    per_category,
    summarize,
)
from streamvis.evaluation.groups import group_index, group_ious, match_all
from streamvis.evaluation.tables import (
    GroundTruthTable,
    ResultsTable,
    build_gt_table,
    build_results_table,
)

__all__ = ["EvalParams", "EvalResult", "evaluate", "evaluate_tables", "load_inputs"]

STAT_NAMES = tuple(s[0] for s in SUMMARY_SETTINGS)


@dataclass(frozen=True)
class EvalParams:
    """Evaluation settings; the defaults are the official ``Params.setDetParams`` (segm)."""

    # official: np.linspace(.5, .95, round((.95 - .5) / .05) + 1) and np.linspace(0, 1, 101)
    iou_thresholds: np.ndarray = field(
        default_factory=lambda: np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
    )
    recall_thresholds: np.ndarray = field(
        default_factory=lambda: np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
    )
    max_dets: tuple[int, ...] = (1, 10, 100)
    # official YouTube-VIS area ranges, inclusive at both ends: all, small, medium, large
    area_ranges: tuple[tuple[float, float], ...] = (
        (0**2, 1e5**2),
        (0**2, 128**2),
        (128**2, 256**2),
        (256**2, 1e5**2),
    )
    area_labels: tuple[str, ...] = ("all", "small", "medium", "large")


@dataclass
class EvalResult:
    """The outcome of `evaluate`.

    Attributes:
        stats: (12,) the official summary numbers, in the official order (see ``stats_named``).
        stats_named: the same keyed AP, AP50, AP75, AP_small, AP_medium, AP_large, AR1, AR10, AR100,
            AR_small, AR_medium, AR_large; -1 means no ground truth in that setting.
        per_category_AP / per_category_AR: ``str(category id) -> value`` at IoU .50:.95, area all,
            maxDets 100; -1 where the category has no non-crowd ground truth.
        precision: (T, R, K, A, M) official ``eval['precision']``.
        recall: (T, K, A, M) official ``eval['recall']``.
        category_ids, video_ids: the sorted ids evaluated.
        empty_union_pairs: (prediction, ground truth) pairs whose union is empty over all frames.
    """

    stats: np.ndarray
    stats_named: dict
    per_category_AP: dict  # noqa: N815 (spelled as in the golden files)
    per_category_AR: dict  # noqa: N815
    precision: np.ndarray
    recall: np.ndarray
    category_ids: list
    video_ids: list
    empty_union_pairs: int = 0

    def to_json(self) -> dict:
        """A json-ready dict with the keys of the golden ``expected.json`` files."""
        return {
            "stats": [float(v) for v in self.stats],
            "stats_named": dict(self.stats_named),
            "per_category_AP": dict(self.per_category_AP),
            "per_category_AR": dict(self.per_category_AR),
            "precision_shape": list(self.precision.shape),
            "category_ids": list(self.category_ids),
            "video_ids": list(self.video_ids),
            "iou_zero_union_warnings": int(self.empty_union_pairs),
        }


def load_inputs(gt, results, *, gt_path=None, results_path=None, validate: bool = True) -> tuple[dict, list]:
    """Read (paths) and validate (unless `validate` is False) the ground truth and the results.

    Raises:
        DataFormatError: malformed input, naming the file, the item and the field.
    """
    from streamvis.data.ytvis import load_results, load_ytvis, validate_ytvis

    if isinstance(gt, (str, Path)):
        gt = load_ytvis(gt)
    elif validate:
        validate_ytvis(gt, path=gt_path)
    if isinstance(results, (str, Path)) or validate:
        results = load_results(results, gt, path=results_path)
    return gt, results


def evaluate(
    gt, results, *, gt_path=None, results_path=None, validate: bool = True, params: EvalParams | None = None
) -> EvalResult:
    """Temporal mask AP/AR of `results` against `gt`, as the official YouTube-VIS toolkit computes it.

    Args:
        gt: a YouTube-VIS ground-truth dict or the path of its json.
        results: a results list ``[{video_id, category_id, score, segmentations}]`` or its json path.
        gt_path, results_path: file names to put in error messages when dicts/lists are given.
        validate: check in-memory `gt` / `results` (files are always checked); pass False only for
            data that `streamvis.data.ytvis.load_ytvis` / `load_results` already validated.
        params: evaluation settings (default: the official ones).

    Returns:
        An `EvalResult`. Empty results (where the official toolkit crashes) give AP and AR 0 for every
        category with ground truth, with a warning.

    Raises:
        DataFormatError: malformed input.
    """
    gt, results = load_inputs(gt, results, gt_path=gt_path, results_path=results_path, validate=validate)
    if not results:
        warnings.warn(
            "the results list is empty: every category with ground truth gets AP 0 and AR 0 "
            "(the official toolkit raises IndexError here)",
            stacklevel=2,
        )
    gt_table = build_gt_table(gt)
    return evaluate_tables(gt_table, build_results_table(results, gt_table), params)


def _gt_ignore(gt: GroundTruthTable, params: EvalParams) -> np.ndarray:
    """(A, G) official ``_ignore``: crowd, or average area outside the (inclusive) range."""
    lo, hi = np.array(params.area_ranges, dtype=np.float64).T[:, :, None]
    return gt.crowd[None, :] | (gt.avg_area[None, :] < lo) | (gt.avg_area[None, :] > hi)


def _keep_top(dt: ResultsTable, max_det: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the predictions kept per (video, category) (first `max_det` by stable score order)
    sorted by (video, category, rank), and their ranks."""
    sort = np.lexsort((dt.order, -dt.score, dt.category, dt.video))
    key = dt.video[sort] * (dt.category.max(initial=0) + 1) + dt.category[sort]
    first = np.concatenate([[True], key[1:] != key[:-1]]) if key.size else np.zeros(0, bool)
    starts = np.flatnonzero(first)
    rank = np.arange(key.size) - np.repeat(starts, np.diff(np.append(starts, key.size)))
    keep = rank < max_det
    return sort[keep], rank[keep]


def evaluate_tables(gt: GroundTruthTable, dt: ResultsTable, params: EvalParams | None = None) -> EvalResult:
    """Evaluate already indexed tables (`build_gt_table`, `build_results_table`); see `evaluate`."""
    params = params or EvalParams()
    num_k, num_a, num_t = len(gt.category_ids), len(params.area_ranges), len(params.iou_thresholds)
    ignore = _gt_ignore(gt, params)  # (A, G)
    npig = np.stack([np.bincount(gt.category[~ig], minlength=num_k) for ig in ignore])  # (A, K)
    kept, rank = _keep_top(dt, params.max_dets[-1])
    index = group_index(gt, dt, kept, rank)
    thresholds = np.minimum(params.iou_thresholds, 1 - 1e-10)  # as `match_batch` compares
    lowest = float(thresholds.min()) if thresholds.size else 0.0
    pair_dt, pair_gt, ious, empty_unions = group_ious(gt, dt, kept, index, min_iou=lowest)
    matched = np.zeros((num_a, num_t, kept.size), dtype=np.int64)
    matched_ignored = np.zeros((num_a, num_t, kept.size), dtype=bool)
    if index.dt_pos.size:
        found = match_all(gt, index, (pair_dt, pair_gt, ious), ignore, params.iou_thresholds)
        matched[..., index.dt_pos], matched_ignored[..., index.dt_pos] = found
    lo, hi = np.array(params.area_ranges, dtype=np.float64).T[:, :, None]
    area = dt.avg_area[kept][None, :]
    dets = DetectionTable(
        category=dt.category[kept],
        video=dt.video[kept],
        order=dt.order[kept],
        score=dt.score[kept],
        rank=rank,
        matched=matched,
        matched_ignored=matched_ignored,
        outside=(area < lo) | (area > hi),  # (A, N) official: unmatched and outside -> ignored
    )
    precision, recall = accumulate(dets, npig, params)
    return _result(precision, recall, params, gt, empty_unions)


def _result(precision, recall, params, gt: GroundTruthTable, empty_unions: int) -> EvalResult:
    stats = summarize(precision, recall, params)
    ap, ar = per_category(precision, recall, params)
    keys = [str(int(c)) for c in gt.category_ids]
    return EvalResult(
        stats=stats,
        stats_named={name: float(v) for name, v in zip(STAT_NAMES, stats)},
        per_category_AP={k: float(v) for k, v in zip(keys, ap)},
        per_category_AR={k: float(v) for k, v in zip(keys, ar)},
        precision=precision,
        recall=recall,
        category_ids=[int(c) for c in gt.category_ids],
        video_ids=[int(v) for v in gt.video_ids],
        empty_union_pairs=empty_unions,
    )
