"""Writing MOTS txt (KITTI-MOTS / MOTSChallenge) from the YouTube-VIS dict and results entries.

The line format and its rules are in `streamvis.data.formats._mots_text`; here every sequence file is
rendered in memory and checked (an object id once per frame, no overlapping masks unless the caller
asks to give shared pixels to the higher score, classes of the format) before anything is written,
so a refused input writes nothing.
"""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_util

from streamvis.data.formats._mots_text import IGNORE_CLASS, IGNORE_ID
from streamvis.errors import DataFormatError


def _frame_rle(seg, height: int, width: int, where: str) -> dict:
    from streamvis.data.masks import segmentation_to_rle

    return segmentation_to_rle(seg, height, width, where=where, field="segmentations")


def _resolve_overlaps(frame_dets: list[tuple[float, int, int, dict]], height: int, width: int):
    """Give each pixel to the highest-scored det of the frame (stable for equal scores)."""
    order = sorted(range(len(frame_dets)), key=lambda k: -frame_dets[k][0])
    taken = np.zeros((height, width), dtype=bool)
    out = list(frame_dets)
    for k in order:
        score, object_id, class_id, rle = frame_dets[k]
        mask = mask_util.decode(rle).astype(bool) & ~taken
        taken |= mask
        out[k] = (score, object_id, class_id, mask_util.encode(np.asfortranarray(mask.astype(np.uint8))))
    return out


def render_lines(
    tracks: list[tuple[float, int, int, list]],
    video: dict,
    *,
    first_frame: int,
    where: str,
    resolve_overlaps: bool = False,
    is_gt: bool,
) -> str:
    """The text of one sequence file from ``[(score, object id, class id, segmentations)]``.

    Lines are ordered by frame, then track order. Masks of one frame must not overlap (GT: objects
    with the ignore region) unless `resolve_overlaps` gives shared pixels to the higher score.

    Raises:
        DataFormatError: an object id twice in one frame, or overlapping masks.
    """
    height, width = video["height"], video["width"]
    out = []
    for t in range(video["length"]):
        dets = [
            (score, oid, cls, _frame_rle(segs[t], height, width, f"{where}, frame {t}"))
            for score, oid, cls, segs in tracks
            if segs[t] is not None
        ]
        if resolve_overlaps:
            dets = _resolve_overlaps(dets, height, width)
        ids = [oid for _, oid, cls, _ in dets if not (is_gt and cls == IGNORE_CLASS)]
        if len(set(ids)) < len(ids):
            duplicate = next(i for i in ids if ids.count(i) > 1)
            raise DataFormatError(
                f"object id {duplicate} is used by two tracks in frame {t}", where=where, field="track_id"
            )
        objects = [d[3] for d in dets if not (is_gt and d[2] == IGNORE_CLASS)]
        ignore = [d[3] for d in dets if is_gt and d[2] == IGNORE_CLASS]
        masks = objects + ([mask_util.merge(ignore, intersect=False)] if ignore else [])
        if len(masks) > 1 and int(mask_util.area(mask_util.merge(masks, intersect=False))) != int(
            np.sum(mask_util.area(masks))
        ):
            raise DataFormatError(
                f"masks of frame {t} overlap; the MOTS formats forbid overlapping masks "
                "(results: pass resolve_overlaps=True to give shared pixels to the higher "
                "score)",
                where=where,
                field="segmentations",
            )
        for _, oid, cls, rle in dets:
            counts = rle["counts"].decode("ascii") if isinstance(rle["counts"], bytes) else rle["counts"]
            out.append(f"{t + first_frame} {oid} {cls} {height} {width} {counts}\n")
    return "".join(out)


# category names that have a MOTS class (lower case): KITTI-MOTS / MOTSChallenge class ids
CLASS_OF_NAME = {"car": 1, "pedestrian": 2, "person": 2, "ignore": IGNORE_CLASS, "dontcare": IGNORE_CLASS}


def class_table(dataset: dict, class_map: dict | None) -> dict[int, int]:
    """``{category id: MOTS class}``: `class_map` first (keys: category ids or names), then the name.

    Categories named car / pedestrian (or person) / ignore (or dontcare) get their MOTS class; others
    need `class_map`, else writing them fails in `check_classes`.

    Raises:
        DataFormatError: a `class_map` key that is no category of `dataset`, or a non-integer class.
    """
    by_name = {str(c["name"]): c["id"] for c in dataset["categories"]}
    ids = {c["id"] for c in dataset["categories"]}
    table = {
        c["id"]: CLASS_OF_NAME[str(c["name"]).lower()]
        for c in dataset["categories"]
        if str(c["name"]).lower() in CLASS_OF_NAME
    }
    for key, value in (class_map or {}).items():
        category = by_name.get(str(key), int(key) if str(key).lstrip("-").isdigit() else None)
        if category not in ids:
            raise DataFormatError(
                f"class_map key {key!r} is not a category (id or name) of the dataset", field="class_map"
            )
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataFormatError(
                f"class_map value for {key!r} must be an integer class id, got {value!r}", field="class_map"
            )
        table[category] = value
    return table


def object_id(value, where: str) -> int:
    """A ``track_id`` as a MOTS object id (a non-negative integer), else a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise DataFormatError(
            f"a MOTS object id must be a non-negative integer, got {value!r}", where=where, field="track_id"
        )
    return int(value)


def gt_tracks_of_video(dataset: dict, video_id: int, classes: dict[int, int]) -> list:
    """``[(1.0, object id, class id, segmentations)]`` of a video's annotations for `render_lines`."""
    tracks, next_index = [], {}
    for ann in dataset.get("annotations") or []:
        if ann["video_id"] != video_id:
            continue
        cls = IGNORE_CLASS if ann.get("iscrowd") else classes.get(ann["category_id"], -1)
        if "track_id" in ann:
            oid = object_id(ann["track_id"], f"annotation {ann.get('id')}")
        elif cls == IGNORE_CLASS:
            oid = IGNORE_ID
        else:  # KITTI-MOTS convention: class * 1000 + instance number
            next_index[cls] = next_index.get(cls, 0) + 1
            oid = cls * 1000 + next_index[cls]
        tracks.append((1.0, oid, cls, ann["segmentations"]))
    return tracks


def check_classes(tracks: list, allowed: tuple[int, ...], where: str) -> None:
    """Every class written must be one of the format's (-1: a category without a MOTS class)."""
    for _, _, cls, _ in tracks:
        if cls not in allowed:
            what = "has no MOTS class" if cls == -1 else f"maps to class {cls}, not one of {list(allowed)}"
            raise DataFormatError(
                f"a category {what} (car, pedestrian and ignore have one by name); "
                "pass class_map={category id or name: class id}",
                where=where,
                field="category_id",
            )


def results_texts(results: list[dict], dataset: dict, sequences: list[tuple[str, dict]], *,
                  allowed: tuple[int, ...], first_frame: int, class_map: dict | None,
                  resolve_overlaps: bool) -> dict[str, str]:
    """The tracker-file text of every sequence (KITTI-MOTS and MOTSChallenge results writers).

    Args:
        results: YouTube-VIS results entries; the object id is ``track_id`` when present, else the
            entry's position + 1.
        dataset: the GT dict naming the videos; sequences: (sequence name, video) pairs to write.
        allowed: the classes the format accepts; first_frame: its first frame number.
        class_map, resolve_overlaps: as the writers' arguments.

    Returns:
        Sequence name -> file text (nothing is written: an error leaves no file behind).
    """
    classes = class_table(dataset, class_map)
    by_video: dict[int, list] = {}
    for index, entry in enumerate(results):
        oid = object_id(entry.get("track_id", index + 1), f"results[{index}]")
        by_video.setdefault(entry["video_id"], []).append(
            (float(entry["score"]), oid, classes.get(entry["category_id"], -1), entry["segmentations"]))
    texts = {}
    for name, video in sequences:
        where = f"results of video {video['id']} (sequence {name})"
        tracks = by_video.get(video["id"], [])
        check_classes(tracks, allowed, where)
        texts[name] = render_lines(tracks, video, first_frame=first_frame, where=where,
                                   resolve_overlaps=resolve_overlaps, is_gt=False)
    return texts
