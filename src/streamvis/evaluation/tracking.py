"""Tracking metrics of a results list: HOTA, CLEAR (MOTS), Identity and Count, as TrackEval 1.3.0.

One pass over the videos: per (video, class), the mask IoUs of every frame are computed once
(batched over all sequences in a few pycocotools calls, `sequences.frame_similarities`; MOTS
sequences with ignore regions one call per frame) and every metric family (`hota`,
`clear`, `identity`) reads them; a class with dets on one side only needs no IoU at all (every
metric returns early on it). Rows combine over videos per class, then over classes
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

No torch; scipy only for matchings too large for `streamvis.evaluation.assignment`'s own solver.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pycocotools.mask as mask_util

from streamvis.errors import StreamvisError
from streamvis.evaluation import clear, hota, identity
from streamvis.evaluation.sequences import (
    SequenceData,
    build_sequence,
    frame_similarities,
    one_sided_sequence,
    to_rle,
)

__all__ = [
    "FAMILIES",
    "SequenceData",
    "TrackingResult",
    "evaluate_tracking",
    "format_tracking_table",
    "row_to_json",
]

FAMILIES = ("hota", "clear", "identity")  # Count is always computed
TRACKEVAL_VERSION = "1.3.0"  # the version whose numbers these reproduce (golden cases)
_FAMILY_NAMES = {"hota": "HOTA", "clear": "CLEAR", "identity": "Identity"}


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
        self,
        *,
        key_by_name: bool = False,
        all_video_rows: bool = False,
        video_per_alpha: bool = False,
        dataset_class: str = "YouTubeVIS",
    ) -> dict:
        """The ``metrics`` object of ``expected_trackeval.json`` (numbers as plain floats/ints).

        Args:
            dataset_class: the TrackEval dataset class whose reading was reproduced ("YouTubeVIS",
                "KittiMOTS", "MOTSChallenge"), recorded with the TrackEval version.
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
            "trackeval_version": TRACKEVAL_VERSION,
            "dataset_class": dataset_class,
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


def _one_sided_rows(gt_segs: list, dt_segs: list, length: int, families, cache: dict) -> dict | None:
    """Rows of a sequence with dets on one side only (None when it has none), shared per counts."""
    gt_dets = [len(s) - s.count(None) for s in gt_segs]
    dt_dets = [len(s) - s.count(None) for s in dt_segs]
    key = (length, sum(gt_dets), sum(d > 0 for d in gt_dets), sum(dt_dets), sum(d > 0 for d in dt_dets))
    if key[1] == 0 and key[3] == 0:
        return None
    if key not in cache:
        cache[key] = _sequence_rows(one_sided_sequence(gt_segs, dt_segs, length), families)
    return cache[key]


def _empty_rows(families: tuple[str, ...], frames: int = 0) -> dict:
    """Rows of a (video, class) pair without any det (TrackEval evaluates it to early-return rows)."""
    return _sequence_rows(one_sided_sequence([], [], frames), families)


_COMBINE = {
    "HOTA": hota,
    "CLEAR": clear,
    "Identity": identity,
}


def _combine(rows: list[dict], how: str) -> dict:
    """Combine rows per family: ``how`` is 'sequences' (also TrackEval's ``cls_comb_det_av``) or
    'cls_av' (``cls_comb_cls_av``); Count always sums."""
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
def video_name(video: dict) -> str:
    """TrackEval's YouTube-VIS sequence name: the folder part of ``file_names[0]`` (else the id)."""
    names = video.get("file_names") or []
    if names and isinstance(names[0], str) and "/" in names[0]:
        return names[0].split("/")[0]
    return str(video["id"])


def _ignore_regions(video: dict, ignore_segs: list) -> list | None:
    """Per frame, the union of the ignore-region annotations (MOTS), or None where there is none."""
    if not ignore_segs:
        return None
    height, width = video["height"], video["width"]
    regions = []
    for t in range(video["length"]):
        rles = [to_rle(s[t], height, width) for s in ignore_segs if s[t] is not None]
        regions.append(
            None if not rles else mask_util.merge(rles, intersect=False) if len(rles) > 1 else rles[0]
        )
    return regions


def _video_names(videos: list[dict]) -> list[str]:
    names = [video_name(v) for v in videos]
    if len(set(names)) < len(names):  # TrackEval would merge them: keep them apart by id instead
        names = [f"{n}#{v['id']}" if names.count(n) > 1 else n for n, v in zip(names, videos)]
    return names


def _by_class(tracks: list) -> dict[int, list]:
    grouped: dict[int, list] = {}
    for class_id, segs in tracks:
        grouped.setdefault(class_id, []).append(segs)
    return grouped


def _tracks_by_video(gt: dict, results: list[dict], class_ids: list[int], mots: bool):
    """GT tracks, predicted tracks and ignore regions per video id (file order kept)."""
    wanted = set(class_ids)
    gt_tracks = {v["id"]: [] for v in gt["videos"]}
    ignore = {v["id"]: [] for v in gt["videos"]}
    for ann in gt.get("annotations") or []:
        if mots and ann.get("iscrowd"):
            ignore[ann["video_id"]].append(ann["segmentations"])
        elif ann["category_id"] in wanted:
            gt_tracks[ann["video_id"]].append((ann["category_id"], ann["segmentations"]))
    dt_tracks = {v["id"]: [] for v in gt["videos"]}
    for entry in results:
        if entry["category_id"] in wanted and entry["video_id"] in dt_tracks:
            dt_tracks[entry["video_id"]].append((entry["category_id"], entry["segmentations"]))
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
    pairs = []  # (name, class id, gt tracks, predicted tracks, video, ignore regions)
    for video, name in zip(gt["videos"], _video_names(gt["videos"])):
        vid = video["id"]
        video_names[name], video_frames[name] = vid, video["length"]
        per_video[name] = {}
        gt_by_class, dt_by_class = _by_class(gt_tracks[vid]), _by_class(dt_tracks[vid])
        regions = _ignore_regions(video, ignore[vid]) if mots else None
        for class_id in class_ids:
            gt_segs, dt_segs = gt_by_class.get(class_id, []), dt_by_class.get(class_id, [])
            if gt_segs or dt_segs:
                pairs.append((name, class_id, gt_segs, dt_segs, video, regions))
    # the per-frame IoUs of every sequence without ignore regions, in a few batched pycocotools calls
    batched = [p for p in pairs if p[2] and p[3] and not p[5]]
    similarities = dict(zip(
        [id(p) for p in batched], frame_similarities([(p[2], p[3], p[4]) for p in batched])
    ))
    one_sided: dict[tuple, dict] = {}  # their rows depend on the counts alone
    for pair in pairs:
        name, class_id, gt_segs, dt_segs, video, regions = pair
        if gt_segs and dt_segs or (dt_segs and regions):
            seq = build_sequence(gt_segs, dt_segs, video, regions, similarities.get(id(pair)))
            if seq.num_gt_dets == 0 and seq.num_tracker_dets == 0:
                continue  # every det of the class was removed, or all its tracks are null
            rows = _sequence_rows(seq, families)
        else:  # dets on one side only: counted, no IoU needed
            rows = _one_sided_rows(gt_segs, dt_segs, video["length"], families, one_sided)
            if rows is None:
                continue  # all its tracks are null
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
