"""(video, category) groups holding both predictions and ground truth: their IoUs and matches.

Everything is vectorized over groups: one flat list of the groups' predictions (in score order)
and ground truths (in file order), video IoUs from `video_iou.pair_intersections` (only for the
pairs whose area bound can reach the lowest threshold), and padded batches of bounded size for
`matching.match_batch`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamvis.evaluation import setops
from streamvis.evaluation.matching import match_batch
from streamvis.evaluation.tables import GroundTruthTable, ResultsTable
from streamvis.evaluation.video_iou import (
    FrameMasks,
    frame_masks,
    pair_intersections,
    same_frame_pairs,
    select_masks,
    video_iou,
)

__all__ = ["GroupIndex", "group_index", "group_ious", "match_all"]


@dataclass
class GroupIndex:
    """Members of the Q groups with both sides.

    Attributes:
        dt_pos: (Nd,) positions in the kept predictions; dt_group, dt_row: group and score rank.
        gt_idx: (Ng,) ground-truth indices; gt_group, gt_col: group and position in file order.
        num_dt, num_gt: (Q,) group sizes.
    """

    dt_pos: np.ndarray
    dt_group: np.ndarray
    dt_row: np.ndarray
    gt_idx: np.ndarray
    gt_group: np.ndarray
    gt_col: np.ndarray
    num_dt: np.ndarray
    num_gt: np.ndarray


def _rank_in_group(group: np.ndarray) -> np.ndarray:
    """Position of each element within its group, for `group` sorted (non-decreasing)."""
    starts = np.searchsorted(group, group, side="left")
    return np.arange(group.size) - starts


def group_index(gt: GroundTruthTable, dt: ResultsTable, kept: np.ndarray, rank: np.ndarray) -> GroupIndex:
    """Find the groups with both kept predictions and ground truth, and their members."""
    num_k = len(gt.category_ids)
    dt_key = dt.video[kept] * num_k + dt.category[kept]  # kept is sorted by (video, category, rank)
    gt_key = gt.video * num_k + gt.category
    shared = setops.intersect(dt_key, gt_key)
    dt_pos = np.flatnonzero(setops.isin(dt_key, shared))
    dt_group = np.searchsorted(shared, dt_key[dt_pos])
    gt_idx = np.flatnonzero(setops.isin(gt_key, shared))
    order = np.argsort(np.searchsorted(shared, gt_key[gt_idx]), kind="stable")  # keeps file order
    gt_idx = gt_idx[order]
    gt_group = np.searchsorted(shared, gt_key[gt_idx])
    return GroupIndex(
        dt_pos=dt_pos,
        dt_group=dt_group,
        dt_row=rank[dt_pos],
        gt_idx=gt_idx,
        gt_group=gt_group,
        gt_col=_rank_in_group(gt_group),
        num_dt=np.bincount(dt_group, minlength=shared.size),
        num_gt=np.bincount(gt_group, minlength=shared.size),
    )


def _dt_masks(dt: ResultsTable, tracks: np.ndarray, frame_offset: np.ndarray, heights: np.ndarray):
    """Masks of predicted `tracks`; frame keys and heights are given per track."""
    frames, counts = [], []
    for track in tracks.tolist():
        segs = dt.segmentations[track]
        frames.append([t for t, seg in enumerate(segs) if seg is not None])
        counts.extend(seg["counts"] for seg in segs if seg is not None)
    lengths = [len(f) for f in frames]
    owner = np.repeat(np.arange(len(frames)), lengths)
    key = np.repeat(frame_offset, lengths) + np.fromiter(
        (t for f in frames for t in f), np.int64, len(counts)
    )
    start, stop = dt.area_offset[tracks], dt.area_offset[tracks + 1]  # the tracks' slices of flat_areas
    flat = np.repeat(start - np.concatenate([[0], np.cumsum(stop - start)[:-1]]), stop - start)
    areas = dt.flat_areas[flat + np.arange(flat.size)]
    return frame_masks(owner, key, np.repeat(heights, lengths), counts, areas)


def _gt_masks(gt: GroundTruthTable, members: np.ndarray, frame_offset: np.ndarray, heights: np.ndarray):
    """Masks of ground-truth `members`; frame keys and heights are given per member."""
    members = members.tolist()
    lengths = [len(gt.frames[g]) for g in members]
    frames = np.concatenate([gt.frames[g] for g in members]) if members else np.zeros(0, np.int64)
    counts = [r["counts"] for g in members for r in gt.rles[g]]
    areas = np.concatenate([gt.frame_areas[g] for g in members]) if members else np.zeros(0)
    owner = np.repeat(np.arange(len(members)), lengths)
    return frame_masks(
        owner, np.repeat(frame_offset, lengths) + frames, np.repeat(heights, lengths), counts, areas
    )


def _group_pairs(index: GroupIndex) -> tuple[np.ndarray, np.ndarray]:
    """Every (prediction, ground truth) pair of each group, by prediction then ground truth."""
    pair_dt = np.repeat(np.arange(index.dt_pos.size), index.num_gt[index.dt_group])
    gt_start = np.concatenate([[0], np.cumsum(index.num_gt)[:-1]])
    return pair_dt, gt_start[index.dt_group[pair_dt]] + _rank_in_group(pair_dt)


def _reaching(dt_m: FrameMasks, gt_m: FrameMasks, pairs, totals, min_iou: float):
    """Which pairs may reach IoU `min_iou`, and the masks of the frames where such pairs meet.

    An upper bound from the areas alone: per shared frame |D ∩ G| <= min(a_D, a_G) =: s, so with
    S the sum of s, I <= S and U = A_D + A_G - I >= A_D + A_G - S, hence IoU <= S / (A_D + A_G - S).
    Correctly rounded division is monotone, so a pair whose bound is below `min_iou` also has a
    float IoU below it: it is never a match candidate and its masks need not be intersected.

    Returns:
        reach: (P,) bool; dt_m, gt_m: the masks restricted to frames of reaching pairs.
    """
    (pair_dt, pair_gt), (dt_total, gt_total) = pairs, totals
    frame_dt, frame_gt = same_frame_pairs(dt_m, gt_m)
    num_gt = int(gt_total.size)
    # a same-frame (prediction, ground truth) is always a pair: frame keys are per group
    pair_key = pair_dt * num_gt + pair_gt  # sorted
    frame_pair = np.searchsorted(pair_key, dt_m.owner[frame_dt] * num_gt + gt_m.owner[frame_gt])
    shared = np.bincount(
        frame_pair, np.minimum(dt_m.areas[frame_dt], gt_m.areas[frame_gt]), minlength=pair_dt.size
    )
    union_low = dt_total[pair_dt] + gt_total[pair_gt] - shared
    bound = np.divide(shared, union_low, out=np.zeros(shared.size), where=union_low > 0)
    reach = ~(bound < min_iou)
    use = reach[frame_pair]
    need_dt, need_gt = np.zeros(dt_m.key.size, bool), np.zeros(gt_m.key.size, bool)
    need_dt[frame_dt[use]] = True
    need_gt[frame_gt[use]] = True
    return reach, select_masks(dt_m, need_dt), select_masks(gt_m, need_gt)


def group_ious(
    gt: GroundTruthTable, dt: ResultsTable, kept: np.ndarray, index: GroupIndex, min_iou: float = 0.0
):
    """Video IoU of every (prediction, ground truth) pair within each group.

    Args:
        gt, dt, kept, index: the tables, the kept predictions and their groups.
        min_iou: pairs whose IoU is surely below it (by `_reaching`'s area bound) get IoU 0 without
            decoding their masks; pass the lowest matching threshold (0 computes every IoU).

    Returns:
        pair_dt, pair_gt: (P,) indices into the index's predictions / ground truths.
        ious: (P,) video IoU (0 for the pairs below `min_iou`).
        empty_unions: number of pairs whose union is empty.
    """
    # frame key = the group's offset + frame index: only masks of one group and frame are intersected
    group_video = dt.video[kept[index.dt_pos]][np.searchsorted(index.dt_group, np.arange(index.num_dt.size))]
    offset = np.concatenate([[0], np.cumsum(gt.video_lengths[group_video])[:-1]])
    heights = gt.video_sizes[group_video, 0]
    dt_m = _dt_masks(dt, kept[index.dt_pos], offset[index.dt_group], heights[index.dt_group])
    gt_m = _gt_masks(gt, index.gt_idx, offset[index.gt_group], heights[index.gt_group])
    dt_total = np.bincount(dt_m.owner, dt_m.areas, minlength=index.dt_pos.size)
    gt_total = np.bincount(gt_m.owner, gt_m.areas, minlength=index.gt_idx.size)
    pair_dt, pair_gt = _group_pairs(index)
    reach, dt_m, gt_m = _reaching(dt_m, gt_m, (pair_dt, pair_gt), (dt_total, gt_total), min_iou)
    d_own, g_own, inter = pair_intersections(dt_m, gt_m, int(gt.video_sizes[:, 1].max(initial=1)))
    pair_inter = np.zeros(pair_dt.size)
    if inter.size:  # pairs that never intersect are absent from `inter`
        keys, query = d_own * index.gt_idx.size + g_own, pair_dt * index.gt_idx.size + pair_gt
        found, hit = setops.find(keys, query)
        pair_inter[hit] = inter[found[hit]]
    ious, empty = video_iou(pair_inter, dt_total[pair_dt], gt_total[pair_gt])
    ious[~reach] = 0.0
    return pair_dt, pair_gt, ious, int(empty.sum())


_MAX_BATCH_CELLS = 1 << 21  # bounds the padded (groups, A, D, G) IoU array of one matching batch


def _chunks_of_groups(num_dt: np.ndarray, num_gt: np.ndarray, num_a: int):
    """Split the groups (largest first) into batches whose padded size stays under the cap."""
    order = np.argsort(-num_dt, kind="stable")
    start, widest = 0, 0
    for i, q in enumerate(order.tolist()):
        widest = max(widest, int(num_gt[q]))
        if i > start and (i + 1 - start) * num_a * int(num_dt[order[start]]) * widest > _MAX_BATCH_CELLS:
            yield order[start:i]
            start, widest = i, int(num_gt[q])
    if order.size:
        yield order[start:]


def _match_batch_of(gt, index: GroupIndex, pairs, ignore, cols, groups: np.ndarray, iou_thresholds):
    """Match the given groups; returns (positions in the index's predictions, matched, ignored)."""
    pair_dt, pair_gt, ious = pairs
    num_a = ignore.shape[0]
    local = np.full(index.num_dt.size, -1)
    local[groups] = np.arange(groups.size)
    d_sel = np.flatnonzero(local[index.dt_group] >= 0)
    g_sel = np.flatnonzero(local[index.gt_group] >= 0)
    p_sel = np.flatnonzero(local[index.dt_group[pair_dt]] >= 0)
    num_d, num_g = int(index.num_dt[groups].max()), int(index.num_gt[groups].max())
    batch_ious = np.full((groups.size, num_a, num_d, num_g), -1.0)  # -1: padding, never a candidate
    batch_ignore = np.ones((groups.size, num_a, num_g), dtype=bool)
    batch_crowd = np.zeros((groups.size, num_a, num_g), dtype=bool)
    batch_ids = np.zeros((groups.size, num_a, num_g), dtype=np.int64)
    g_group, members = local[index.gt_group[g_sel]], index.gt_idx[g_sel]
    p_dt, p_gt = pair_dt[p_sel], pair_gt[p_sel]
    for a in range(num_a):
        batch_ious[local[index.dt_group[p_dt]], a, index.dt_row[p_dt], cols[a, p_gt]] = ious[p_sel]
        batch_ignore[g_group, a, cols[a, g_sel]] = ignore[a, members]
        batch_crowd[g_group, a, cols[a, g_sel]] = gt.crowd[members]
        batch_ids[g_group, a, cols[a, g_sel]] = gt.ann_ids[members]
    flat = (groups.size * num_a,)
    matched, matched_ignored = match_batch(
        batch_ious.reshape(flat + (num_d, num_g)),
        batch_ignore.reshape(flat + (num_g,)),
        batch_crowd.reshape(flat + (num_g,)),
        batch_ids.reshape(flat + (num_g,)),
        np.repeat(index.num_dt[groups], num_a),
        iou_thresholds,
    )
    shape = (groups.size, num_a, len(iou_thresholds), num_d)
    pick = (local[index.dt_group[d_sel]], slice(None), slice(None), index.dt_row[d_sel])
    return d_sel, matched.reshape(shape)[pick], matched_ignored.reshape(shape)[pick]  # (n, A, T)


def match_all(gt: GroundTruthTable, index: GroupIndex, pairs, ignore: np.ndarray, iou_thresholds):
    """Official matching of every group and area range (in batches of bounded memory).

    Args:
        gt: the ground-truth table.
        index: the groups.
        pairs: ``(pair_dt, pair_gt, ious)`` from `group_ious`.
        ignore: (A, G) ground-truth ignore flags of every ground truth.
        iou_thresholds: (T,) thresholds.

    Returns:
        matched, matched_ignored: (A, T, Nd) for the index's predictions.
    """
    num_a = ignore.shape[0]
    cols = np.empty((num_a, index.gt_idx.size), dtype=np.int64)  # column of each gt, per area range
    for a in range(num_a):  # official: ground truth sorted ignore-last (stable) per area range
        order = np.lexsort((index.gt_col, ignore[a, index.gt_idx], index.gt_group))
        cols[a, order] = _rank_in_group(index.gt_group[order])
    matched = np.zeros((num_a, len(iou_thresholds), index.dt_pos.size), dtype=np.int64)
    matched_ignored = np.zeros(matched.shape, dtype=bool)
    for groups in _chunks_of_groups(index.num_dt, index.num_gt, num_a):
        d_sel, ids, ignored = _match_batch_of(gt, index, pairs, ignore, cols, groups, iou_thresholds)
        matched[..., d_sel] = ids.transpose(1, 2, 0)
        matched_ignored[..., d_sel] = ignored.transpose(1, 2, 0)
    return matched, matched_ignored
