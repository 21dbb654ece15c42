"""Tracking metrics of a results list: HOTA, CLEAR (MOTS), Identity and Count, as TrackEval 1.3.0.

One pass over the videos computes every frame's mask IoUs between all GT and all predicted masks
once (pycocotools, one call per frame); each class's sequence data is cut from them and fed to every
metric family (`hota`, `clear`, `identity`). Rows combine over videos per class, then over classes
into TrackEval's two combined rows ``cls_comb_cls_av`` (plain mean of ratios over all classes) and
``cls_comb_det_av`` (counts pooled, ratios recomputed).

Two readings of a YouTube-VIS dict (TrackEval's ``YouTubeVIS`` and ``KittiMOTS``/``MOTSChallenge``
dataset classes; ``shared/golden/*/README.md`` list the conventions):

- ``mots=False`` (YouTube-VIS): every category is a class; each annotation and each results entry
  is one track; every prediction is used (scores ignored, no per-video limit); ``iscrowd`` is
  ignored; a non-null frame is a det even if its mask is empty; predictions of unknown categories
  are dropped.
- ``mots=True`` (MOTS txt read by `streamvis.data.formats`): crowd annotations are the per-frame
  ignore regions (united); an unmatched prediction more than half inside the ignore region is
  removed; only `class_ids` are evaluated.

Example::

    from streamvis.evaluation.tracking import evaluate_tracking
    result = evaluate_tracking(gt, results)
    result.to_json()["cls_comb_cls_av"]["HOTA"]["HOTA"]

No torch; scipy (Hungarian matching) is imported only when there is something to match.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pycocotools.mask as mask_util

from streamvis.errors import StreamvisError
from streamvis.evaluation import clear, hota, identity

__all__ = [
    "FAMILIES",
    "SequenceData",
    "TrackingResult",
    "evaluate_tracking",
    "format_tracking_table",
    "row_to_json",
]

FAMILIES = ("hota", "clear", "identity")  # Count is always computed
_FAMILY_NAMES = {"hota": "HOTA", "clear": "CLEAR", "identity": "Identity"}
# TrackEval KittiMOTS: an unmatched tracker det more than half inside the ignore region is removed
IGNORE_REGION_IOA = 0.5
# TrackEval KittiMOTS preprocessing matches at IoU >= 0.5 - eps
MOTS_MATCH_IOU = 0.5


@dataclass
class SequenceData:
    """One video's dets of one class, as every metric family reads them.

    Attributes:
        num_timesteps: frames of the video.
        gt_ids / tracker_ids: per frame, (g_t,) / (k_t,) int ids, contiguous from 0 within the class.
        similarity: per frame, the (g_t, k_t) mask IoU matrix (rows in GT order, columns in
            prediction order: the order scipy's Hungarian solver sees).
        num_gt_ids, num_tracker_ids: distinct ids; num_gt_dets, num_tracker_dets: dets in all frames.
    """

    num_timesteps: int
    gt_ids: list[np.ndarray]
    tracker_ids: list[np.ndarray]
    similarity: list[np.ndarray]
    num_gt_ids: int = 0
    num_tracker_ids: int = 0
    num_gt_dets: int = 0
    num_tracker_dets: int = 0


@dataclass
class _Frame:
    """All dets of one frame: GT tracks (G,), predicted tracks (K,), their classes and IoUs (G, K)."""

    gt_track: np.ndarray
    gt_class: np.ndarray
    dt_track: np.ndarray
    dt_class: np.ndarray
    iou: np.ndarray
    dt_rles: list
    ignore: dict | None = None


@dataclass
class TrackingResult:
    """Rows of every metric family: per class, per (video, class) and the two combined rows.

    Attributes:
        class_ids: the evaluated classes (category ids) in order; class_names: their names.
        per_class: ``{category id: row}``; a row is ``{"HOTA": ..., "CLEAR": ..., "Identity": ...,
            "Count": ...}`` of the families asked for (plus Count) in TrackEval's field names.
        cls_comb_cls_av, cls_comb_det_av: TrackEval's combined rows.
        per_video: ``{video name: {category id: row}}`` for the pairs with at least one det.
        video_names: ``{video name: video id}``; video_frames: ``{video name: frames}``.
        families: the metric families computed.
    """

    class_ids: list[int]
    class_names: dict[int, str]
    per_class: dict[int, dict]
    cls_comb_cls_av: dict
    cls_comb_det_av: dict
    per_video: dict[str, dict[int, dict]]
    video_names: dict[str, int]
    video_frames: dict[str, int]
    families: tuple[str, ...] = field(default=FAMILIES)

    def to_json(
        self, *, key_by_name: bool = False, all_video_rows: bool = False, video_per_alpha: bool = False
    ) -> dict:
        """The ``metrics`` object of ``expected_trackeval.json`` (numbers as plain floats/ints).

        Args:
            key_by_name: key classes by name (MOTS) instead of category id (YouTube-VIS, with the
                ``name`` added to each ``per_category`` row).
            all_video_rows: list every (video, class) pair in ``per_video`` (empty ones as TrackEval's
                early-return rows), as TrackEval's MOTS ``per_sequence``; else only pairs with dets.
            video_per_alpha: keep the per-alpha arrays in per-video rows.

        Returns:
            ``{alphas, metric_config, video_names, cls_comb_cls_av, cls_comb_det_av, per_category,
            per_video}``.
        """

        def key(class_id: int) -> str:
            return self.class_names[class_id] if key_by_name else str(class_id)

        per_category = {}
        for class_id in self.class_ids:
            row = row_to_json(self.per_class[class_id])
            per_category[key(class_id)] = row if key_by_name else {"name": self.class_names[class_id], **row}
        per_video = {}
        for name, rows in self.per_video.items():
            frames = self.video_frames[name]
            chosen = self.class_ids if all_video_rows else [c for c in self.class_ids if c in rows]
            per_video[name] = {
                key(c): row_to_json(
                    rows.get(c) or _empty_rows(self.families, frames),
                    per_alpha=video_per_alpha,
                    frames=frames,
                )
                for c in chosen
            }
        metric_config = {"HOTA": {}, "CLEAR": {"THRESHOLD": 0.5}, "Identity": {"THRESHOLD": 0.5}}
        return {
            "alphas": [float(a) for a in hota.ALPHAS],
            "metric_config": {_FAMILY_NAMES[f]: metric_config[_FAMILY_NAMES[f]] for f in self.families},
            "video_names": dict(self.video_names),
            "cls_comb_cls_av": row_to_json(self.cls_comb_cls_av),
            "cls_comb_det_av": row_to_json(self.cls_comb_det_av),
            "per_category": per_category,
            "per_video": per_video,
        }


# ------------------------------------------------------------------------------------- json rows
def _number(value):
    return int(value) if isinstance(value, (int, np.integer)) else float(value)


def row_to_json(row: dict, *, per_alpha: bool = True, frames: int | None = None) -> dict:
    """One row in the golden files' shape: HOTA means over alphas (+ ``per_alpha``), CLEAR, Identity, Count.

    Args:
        row: ``{"HOTA": hota row, "CLEAR": ..., "Identity": ..., "Count": ...}`` (families may be absent).
        per_alpha: include ``HOTA.per_alpha`` (19-value arrays).
        frames: add ``Count.Frames`` (per-video rows).
    """
    out = {}
    if "HOTA" in row:
        h = row["HOTA"]
        out["HOTA"] = {f: float(np.mean(h[f])) for f in hota.ARRAY_FIELDS}
        out["HOTA"].update({f: float(h[f]) for f in hota.SCALAR_FIELDS})
        if per_alpha:
            arrays = {f: [float(v) for v in h[f]] for f in hota.ARRAY_FIELDS}
            arrays.update({f: [int(v) for v in h[f]] for f in hota.COUNT_FIELDS})
            out["HOTA"]["per_alpha"] = arrays
    if "CLEAR" in row:
        c = row["CLEAR"]
        out["CLEAR"] = {f: float(c[f]) for f in clear.RATIO_FIELDS}
        out["CLEAR"].update({f: int(c[f]) for f in clear.COUNT_FIELDS})
    if "Identity" in row:
        i = row["Identity"]
        out["Identity"] = {f: float(i[f]) for f in identity.RATIO_FIELDS}
        out["Identity"].update({f: int(i[f]) for f in identity.COUNT_FIELDS})
    count = {k: int(v) for k, v in row["Count"].items()}
    if frames is not None:
        count["Frames"] = int(frames)
    out["Count"] = count
    return out


# ------------------------------------------------------------------------------------ rows of a sequence
def _count_row(seq: SequenceData) -> dict:
    return {
        "Dets": seq.num_tracker_dets,
        "GT_Dets": seq.num_gt_dets,
        "IDs": seq.num_tracker_ids,
        "GT_IDs": seq.num_gt_ids,
    }


def _sequence_rows(seq: SequenceData, families: tuple[str, ...]) -> dict:
    row = {}
    if "hota" in families:
        row["HOTA"] = hota.hota_sequence(seq)
    if "clear" in families:
        row["CLEAR"] = clear.clear_sequence(seq)
    if "identity" in families:
        row["Identity"] = identity.identity_sequence(seq)
    row["Count"] = _count_row(seq)
    return row


def _empty_rows(families: tuple[str, ...], frames: int = 0) -> dict:
    """Rows of a (video, class) pair without any det (TrackEval evaluates it to early-return rows)."""
    return _sequence_rows(SequenceData(frames, [], [], []), families)


_COMBINE = {
    "HOTA": hota,
    "CLEAR": clear,
    "Identity": identity,
}


def _combine(rows: list[dict], how: str) -> dict:
    """Combine rows per family: ``how`` is 'sequences', 'det_av' or 'cls_av' (Count always sums)."""
    combined = {}
    for name, module in _COMBINE.items():
        if name not in rows[0]:
            continue
        parts = [r[name] for r in rows]
        if how == "cls_av":
            combined[name] = module.combine_classes_class_averaged(parts)
        else:
            combined[name] = module.combine_sequences(parts)
    combined["Count"] = {k: sum(r["Count"][k] for r in rows) for k in rows[0]["Count"]}
    return combined


# ----------------------------------------------------------------------------------- reading the dicts
def _rle(seg, height: int, width: int) -> dict:
    """pycocotools RLE of a validated segmentation (fast path for compressed string counts)."""
    if isinstance(seg, dict) and isinstance(seg.get("counts"), str):
        return {"size": [int(s) for s in seg["size"]], "counts": seg["counts"].encode("ascii")}
    from streamvis.data.masks import segmentation_to_rle

    return segmentation_to_rle(seg, height, width)


def video_name(video: dict) -> str:
    """TrackEval's YouTube-VIS sequence name: the folder part of ``file_names[0]`` (else the id)."""
    names = video.get("file_names") or []
    if names and isinstance(names[0], str) and "/" in names[0]:
        return names[0].split("/")[0]
    return str(video["id"])


def _frames_of_video(video: dict, gt_tracks: list, dt_tracks: list, ignore_segs: list) -> list[_Frame]:
    """Per frame: the present dets of both sides (GT rows in annotation order) and their IoUs.

    Args:
        video: the video dict (``length``, ``height``, ``width``).
        gt_tracks / dt_tracks: ``[(track index, class id, segmentations)]`` in file order.
        ignore_segs: segmentations lists of the ignore-region annotations (MOTS), united per frame.
    """
    height, width, length = video["height"], video["width"], video["length"]
    frames = []
    for t in range(length):
        gt = [(i, c, _rle(s[t], height, width)) for i, c, s in gt_tracks if s[t] is not None]
        dt = [(i, c, _rle(s[t], height, width)) for i, c, s in dt_tracks if s[t] is not None]
        if gt and dt:
            iou = np.asarray(
                mask_util.iou([g[2] for g in gt], [d[2] for d in dt], [0] * len(dt)), dtype=float
            ).reshape(len(gt), len(dt))  # (G, K)
        else:
            iou = np.zeros((len(gt), len(dt)))
        regions = [_rle(s[t], height, width) for s in ignore_segs if s[t] is not None]
        ignore = None
        if regions:
            ignore = mask_util.merge(regions, intersect=False) if len(regions) > 1 else regions[0]
        frames.append(
            _Frame(
                gt_track=np.array([g[0] for g in gt], dtype=np.int64),
                gt_class=np.array([g[1] for g in gt], dtype=np.int64),
                dt_track=np.array([d[0] for d in dt], dtype=np.int64),
                dt_class=np.array([d[1] for d in dt], dtype=np.int64),
                iou=iou,
                dt_rles=[d[2] for d in dt],
                ignore=ignore,
            )
        )
    return frames


def _mots_removed(similarity: np.ndarray, dt_rles: list, ignore: dict | None) -> np.ndarray:
    """Indices of a class's tracker dets that TrackEval's MOTS preprocessing removes in one frame.

    Unmatched dets (Hungarian on IoU, pairs below 0.5 - eps forbidden) whose intersection over their
    own area with the ignore region exceeds 0.5 + eps are removed; matched dets are kept.
    """
    num_gt, num_dt = similarity.shape
    unmatched = np.arange(num_dt)
    if ignore is None or num_dt == 0:
        return unmatched[:0]
    if num_gt > 0:
        from scipy.optimize import linear_sum_assignment

        scores = similarity.copy()
        scores[scores < MOTS_MATCH_IOU - hota.EPS] = -10000  # TrackEval's value for "cannot match"
        rows, cols = linear_sum_assignment(-scores)
        matched = cols[scores[rows, cols] > 0 + hota.EPS]
        unmatched = np.delete(unmatched, matched)
    if len(unmatched) == 0:
        return unmatched
    ioa = np.asarray(mask_util.iou([dt_rles[i] for i in unmatched], [ignore], [1]), dtype=float).reshape(-1)
    return unmatched[ioa > IGNORE_REGION_IOA + hota.EPS]


def _relabel(ids: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    present = [i for i in ids if len(i)]
    if not present:
        return ids, 0
    unique = np.unique(np.concatenate(present))
    return [np.searchsorted(unique, i) if len(i) else i for i in ids], len(unique)


def _sequence(frames: list[_Frame], class_id: int, mots: bool) -> SequenceData:
    """Cut one class's `SequenceData` from a video's frames (MOTS: after the ignore-region removal)."""
    gt_ids, dt_ids, sims = [], [], []
    for frame in frames:
        g = frame.gt_class == class_id
        d = frame.dt_class == class_id
        similarity = frame.iou[g][:, d]
        tracks = frame.dt_track[d]
        if mots and d.any():
            rles = [r for r, keep in zip(frame.dt_rles, d) if keep]
            removed = _mots_removed(similarity, rles, frame.ignore)
            if len(removed):
                tracks = np.delete(tracks, removed)
                similarity = np.delete(similarity, removed, axis=1)
        gt_ids.append(frame.gt_track[g])
        dt_ids.append(tracks)
        sims.append(similarity)
    seq = SequenceData(len(frames), gt_ids, dt_ids, sims)
    seq.num_gt_dets = sum(len(i) for i in gt_ids)
    seq.num_tracker_dets = sum(len(i) for i in dt_ids)
    seq.gt_ids, seq.num_gt_ids = _relabel(gt_ids)
    seq.tracker_ids, seq.num_tracker_ids = _relabel(dt_ids)
    return seq


def _one_sided(gt_tracks: list, dt_tracks: list, class_id: int, length: int) -> SequenceData:
    """Counts of a class with dets on one side only (every metric returns early on it: no frames needed)."""

    def count(tracks) -> tuple[int, int]:
        per_track = [sum(s is not None for s in segs) for _, c, segs in tracks if c == class_id]
        return sum(per_track), sum(n > 0 for n in per_track)  # a track without any det does not exist

    gt_dets, gt_ids = count(gt_tracks)
    dt_dets, dt_ids = count(dt_tracks)
    return SequenceData(length, [], [], [], gt_ids, dt_ids, gt_dets, dt_dets)


def _video_names(videos: list[dict]) -> list[str]:
    names = [video_name(v) for v in videos]
    if len(set(names)) < len(names):  # TrackEval would merge them: keep them apart by id instead
        names = [f"{n}#{v['id']}" if names.count(n) > 1 else n for n, v in zip(names, videos)]
    return names


def _tracks_by_video(gt: dict, results: list[dict], class_ids: list[int], mots: bool):
    """GT tracks, predicted tracks and ignore regions per video id (file order kept)."""
    wanted = set(class_ids)
    gt_tracks = {v["id"]: [] for v in gt["videos"]}
    ignore = {v["id"]: [] for v in gt["videos"]}
    for index, ann in enumerate(gt.get("annotations") or []):
        if mots and ann.get("iscrowd"):
            ignore[ann["video_id"]].append(ann["segmentations"])
        elif ann["category_id"] in wanted:
            gt_tracks[ann["video_id"]].append((index, ann["category_id"], ann["segmentations"]))
    dt_tracks = {v["id"]: [] for v in gt["videos"]}
    for index, entry in enumerate(results):
        if entry["category_id"] in wanted and entry["video_id"] in dt_tracks:
            dt_tracks[entry["video_id"]].append((index, entry["category_id"], entry["segmentations"]))
    return gt_tracks, dt_tracks, ignore


def evaluate_tracking(
    gt: dict,
    results: list[dict],
    *,
    families: tuple[str, ...] = FAMILIES,
    mots: bool = False,
    class_ids: list[int] | None = None,
) -> TrackingResult:
    """HOTA, CLEAR, Identity and Count of `results` against `gt`, per class and combined.

    Args:
        gt: a validated YouTube-VIS dict (``videos``, ``categories``, ``annotations``).
        results: validated results entries ``{video_id, category_id, score, segmentations}``.
        families: which of `FAMILIES` to compute (Count always).
        mots: TrackEval's MOTS reading (crowd annotations are ignore regions); see the module doc.
        class_ids: the classes to evaluate (default: every category of `gt`, in file order).

    Returns:
        A `TrackingResult`.

    Raises:
        StreamvisError: an unknown metric family.
    """
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise StreamvisError(f"unknown tracking metric(s) {unknown}; choose from {list(FAMILIES)}")
    families = tuple(f for f in FAMILIES if f in families)
    names = {c["id"]: c["name"] for c in gt["categories"]}
    class_ids = list(names) if class_ids is None else list(class_ids)
    gt_tracks, dt_tracks, ignore = _tracks_by_video(gt, results, class_ids, mots)
    per_video: dict[str, dict[int, dict]] = {}
    by_class: dict[int, list[dict]] = {c: [] for c in class_ids}
    video_names, video_frames = {}, {}
    for video, name in zip(gt["videos"], _video_names(gt["videos"])):
        vid = video["id"]
        video_names[name], video_frames[name] = vid, video["length"]
        per_video[name] = {}
        gt_classes = {c for _, c, _ in gt_tracks[vid]}
        dt_classes = {c for _, c, _ in dt_tracks[vid]}
        # classes whose dets must be looked at frame by frame: dets on both sides, or (MOTS)
        # predictions that an ignore region may remove; the others are counted without any IoU
        framed = gt_classes & dt_classes if not (mots and ignore[vid]) else dt_classes
        frames = None
        if framed:
            frames = _frames_of_video(
                video,
                [t for t in gt_tracks[vid] if t[1] in framed],
                [t for t in dt_tracks[vid] if t[1] in framed],
                ignore[vid],
            )
        for class_id in class_ids:
            if class_id in framed:
                seq = _sequence(frames, class_id, mots)
            elif class_id in gt_classes or class_id in dt_classes:
                seq = _one_sided(gt_tracks[vid], dt_tracks[vid], class_id, video["length"])
            else:
                continue
            if seq.num_gt_dets == 0 and seq.num_tracker_dets == 0:
                continue  # every det of the class was removed, or all its tracks are null
            rows = _sequence_rows(seq, families)
            per_video[name][class_id] = rows
            by_class[class_id].append(rows)
    per_class = {c: _combine(rows or [_empty_rows(families)], "sequences") for c, rows in by_class.items()}
    class_rows = [per_class[c] for c in class_ids] or [_empty_rows(families)]
    return TrackingResult(
        class_ids=class_ids,
        class_names={c: names.get(c, str(c)) for c in class_ids},
        per_class=per_class,
        cls_comb_cls_av=_combine(class_rows, "cls_av"),
        cls_comb_det_av=_combine(class_rows, "sequences"),
        per_video=per_video,
        video_names=video_names,
        video_frames=video_frames,
        families=families,
    )


# ------------------------------------------------------------------------------------------ the table
def _cell(row: dict, family: str, field: str) -> str:
    if family not in row:
        return "-"
    value = row[family][field]
    return f"{float(np.mean(value)):.4f}"


def format_tracking_table(
    result: TrackingResult,
    *,
    ap: dict[str, float] | None = None,
    per_class: bool = False,
    mots: bool = False,
) -> str:
    """HOTA, DetA, AssA, IDF1 and MOTA (MOTS: MOTSA) of the combined rows (and classes), AP beside.

    Args:
        result: a `TrackingResult`.
        ap: ``{"all": overall AP, str(category id): per-category AP}`` (-1: no GT) when AP was computed.
        per_class: add one line per class.
        mots: name the CLEAR column MOTSA.

    Returns:
        The table as one string (no trailing newline); "-" marks a family not computed.
    """
    columns = [("HOTA", "HOTA"), ("HOTA", "DetA"), ("HOTA", "AssA"), ("Identity", "IDF1"), ("CLEAR", "MOTA")]
    headers = (
        [f for _, f in columns[:-1]] + ["MOTSA" if mots else "MOTA"] + (["AP"] if ap is not None else [])
    )
    rows = [
        ("class-averaged", result.cls_comb_cls_av, ap.get("all") if ap else None),
        ("detection-averaged", result.cls_comb_det_av, None),
    ]
    if per_class:
        rows += [
            (f"{c} {result.class_names[c]}", result.per_class[c], ap.get(str(c)) if ap else None)
            for c in result.class_ids
        ]
    title = "tracking (TrackEval 1.3.0)"
    width = max([len(title)] + [len(name) for name, _, _ in rows])
    lines = [f" {title:<{width}}  " + "  ".join(f"{h:>7}" for h in headers)]
    for name, row, ap_value in rows:
        cells = [_cell(row, family, field) for family, field in columns]
        if ap is not None:
            cells.append("-" if ap_value is None or ap_value < 0 else f"{ap_value:.4f}")
        lines.append(f" {name:<{width}}  " + "  ".join(f"{c:>7}" for c in cells))
    return "\n".join(lines)
