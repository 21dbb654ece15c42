"""Read, validate and write YouTube-VIS 2019/2021 and OVIS json files (annotations and results; no torch).

Validation never decodes masks: it checks types, ids, list lengths, RLE sizes and uncompressed
counts from the dicts, so a 302-video 720p set with thousands of result tracks validates in well
under a second. Every error is a `DataFormatError` naming the file, the item (``videos[3] (id 7)``,
``annotations[12] (id 40)``, ``results[5]``) and the field. Loaded dicts are returned unchanged
(extra keys are kept).
"""

from __future__ import annotations

import json
import math
import mmap
import os
from collections import defaultdict
from numbers import Real
from pathlib import Path

import numpy as np

from streamvis.data.masks import check_segmentation
from streamvis.errors import DataFormatError, StreamvisError
from streamvis.utils.io import atomic_open

try:  # optional speed-up; results equal json's (both parse floats correctly rounded)
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a declared dependency
    _orjson = None

__all__ = [
    "annotations_by_video",
    "categories_by_id",
    "load_results",
    "load_ytvis",
    "read_json",
    "results_by_video",
    "validate_results",
    "validate_ytvis",
    "videos_by_id",
    "write_results",
    "write_ytvis",
]

VIDEO_KEYS = ("id", "width", "height", "length", "file_names")
CATEGORY_KEYS = ("id", "name")
ANNOTATION_KEYS = ("id", "video_id", "category_id", "segmentations")
RESULT_KEYS = ("video_id", "category_id", "score", "segmentations")


# ----------------------------------------------------------------------------------------- reading
def read_json(path):
    """Parse a json file (with orjson, straight from a memory map, when orjson is installed).

    What orjson rejects (NaN / Infinity literals, a BOM, lone surrogates) json reads, as before;
    integers past 64 bits come back as floats (an id that large is reported as not an integer).

    Raises:
        StreamvisError: the file does not exist or is not a regular file.
        DataFormatError: malformed json (with line and column) or text that is not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise StreamvisError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    if _orjson is not None:
        try:
            return _orjson_load(path)
        except _orjson.JSONDecodeError:
            pass  # orjson is stricter (NaN, Infinity, BOM, 1e400): json decides, with its messages
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        message = f"malformed json: {e.msg} at line {e.lineno}, column {e.colno}"
        raise DataFormatError(message, path=path) from e
    except UnicodeDecodeError as e:
        raise DataFormatError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=path) from e


def _orjson_load(path: Path):
    """orjson on a read-only memory map of `path` (no copy of a large file; mmap needs a non-empty one)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return _orjson.loads(b"")  # raises JSONDecodeError
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as view:
            return _orjson.loads(view)


def load_ytvis(path) -> dict:
    """Read and validate a YouTube-VIS 2019/2021 or OVIS annotation json.

    Args:
        path: the json file (``annotations`` may be absent or null for valid/test splits).

    Returns:
        The parsed dict, unchanged.
    """
    data = read_json(path)
    validate_ytvis(data, path=path)
    return data


def load_results(path_or_list, gt: dict, *, path=None) -> list[dict]:
    """Read (when given a path) and validate a results list against the ground truth `gt`.

    Args:
        path_or_list: a results json file, or an already-loaded list.
        gt: the ground-truth dict (as returned by `load_ytvis`).
        path: the file to name in errors when `path_or_list` is a list.

    Returns:
        The results list: ``[{video_id, category_id, score, segmentations: [RLE | None] * length}]``.
    """
    if isinstance(path_or_list, (str, Path)):
        path = path_or_list
        path_or_list = read_json(path)
    validate_results(path_or_list, gt, path=path)
    return path_or_list


# -------------------------------------------------------------------------------------- validation
def _is_int(value) -> bool:
    return type(value) is int or (isinstance(value, (int, np.integer)) and not isinstance(value, bool))


def _is_number(value) -> bool:
    kind = type(value)  # exact float/int first: the abstract `Real` check is slow
    return kind is float or kind is int or (isinstance(value, Real) and not isinstance(value, bool))


def _finite_plain_numbers(values: list) -> bool:
    """Fast path: plain floats/ints (no bool) with a finite sum; False means: check one by one."""
    try:
        return all(type(v) in (float, int) for v in values) and math.isfinite(sum(values))
    except OverflowError:  # an int too large for a float
        return False


def _where(kind: str, index: int, item) -> str:
    item_id = item.get("id") if isinstance(item, dict) else None
    return f"{kind}[{index}]" if item_id is None else f"{kind}[{index}] (id {item_id})"


def _require_list(container: dict, key: str, *, path, where=None, optional=False) -> list:
    value = container.get(key)
    if value is None and optional:
        return []
    if key not in container:
        raise DataFormatError(f"missing required key '{key}'", path=path, where=where, field=key)
    if not isinstance(value, list):
        raise DataFormatError(
            f"'{key}' must be a list, got {type(value).__name__}", path=path, where=where, field=key
        )
    return value


def _check_items(items: list, kind: str, required: tuple[str, ...], *, path) -> dict:
    """Check that each item is a dict with the required keys and a unique integer id; index them."""
    by_id = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataFormatError(
                f"must be an object, got {type(item).__name__}", path=path, where=f"{kind}[{i}]"
            )
        missing = [k for k in required if k not in item]
        if missing:
            raise DataFormatError(
                f"missing required key(s) {missing}", path=path, where=_where(kind, i, item), field=missing[0]
            )
        if not _is_int(item["id"]):
            raise DataFormatError(
                f"id must be an integer, got {item['id']!r}", path=path, where=f"{kind}[{i}]", field="id"
            )
        if item["id"] in by_id:
            raise DataFormatError(
                f"duplicated id {item['id']} (also at {kind}[{by_id[item['id']][0]}])",
                path=path,
                where=_where(kind, i, item),
                field="id",
            )
        by_id[item["id"]] = (i, item)
    return by_id


def _check_video(video: dict, where: str, path) -> None:
    for key in ("width", "height"):
        if not _is_int(video[key]) or video[key] <= 0:
            raise DataFormatError(
                f"must be a positive integer, got {video[key]!r}", path=path, where=where, field=key
            )
    if not _is_int(video["length"]) or video["length"] < 0:
        raise DataFormatError(
            f"must be a non-negative integer, got {video['length']!r}", path=path, where=where, field="length"
        )
    names = video["file_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataFormatError("must be a list of strings", path=path, where=where, field="file_names")
    if len(names) != video["length"]:
        raise DataFormatError(
            f"has {len(names)} entries but the video's length is {video['length']}",
            path=path,
            where=where,
            field="file_names",
        )


def _check_per_frame_list(value, key: str, length: int, where: str, path) -> list:
    if not isinstance(value, list):
        raise DataFormatError(
            f"must be a list (one entry per frame), got {type(value).__name__}",
            path=path,
            where=where,
            field=key,
        )
    if len(value) != length:
        raise DataFormatError(
            f"has {len(value)} entries but the video's length is {length}", path=path, where=where, field=key
        )
    return value


def _check_segmentations(segs: list, video: dict, where: str, path, *, rle_only: bool) -> None:
    """Check per-frame segmentations without decoding; compressed RLE of the right size is the fast path."""
    height, width = video["height"], video["width"]
    size = [height, width]
    for f, seg in enumerate(segs):
        if seg is None:
            continue
        if type(seg) is dict and seg.get("size") == size and type(seg.get("counts")) in (str, bytes):
            continue
        if rle_only and not isinstance(seg, dict):
            raise DataFormatError(
                f"a result segmentation must be an RLE dict or null, got {type(seg).__name__}",
                path=path,
                where=where,
                field=f"segmentations[{f}]",
            )
        check_segmentation(seg, height, width, path=path, where=where, field=f"segmentations[{f}]")


def _check_boxes_and_areas(ann: dict, length: int, where: str, path) -> None:
    if "bboxes" in ann and ann["bboxes"] is not None:
        boxes = _check_per_frame_list(ann["bboxes"], "bboxes", length, where, path)
        fast = all(b is None or (type(b) is list and len(b) == 4 and _finite_plain_numbers(b)) for b in boxes)
        for f, box in enumerate(() if fast else boxes):
            if box is not None and not (
                isinstance(box, list)
                and len(box) == 4
                and all(_is_number(v) and math.isfinite(v) for v in box)
            ):
                raise DataFormatError(
                    f"must be null or [x, y, w, h] finite numbers, got {box!r}",
                    path=path,
                    where=where,
                    field=f"bboxes[{f}]",
                )
    if "areas" in ann and ann["areas"] is not None:
        areas = _check_per_frame_list(ann["areas"], "areas", length, where, path)
        present = [a for a in areas if a is not None]
        fast = _finite_plain_numbers(present) and min(present, default=0) >= 0
        for f, area in enumerate(() if fast else areas):
            if area is not None and not (_is_number(area) and math.isfinite(area) and area >= 0):
                raise DataFormatError(
                    f"must be null or a non-negative number, got {area!r}",
                    path=path,
                    where=where,
                    field=f"areas[{f}]",
                )


def _check_annotation(ann: dict, where: str, videos: dict, categories: dict, path) -> None:
    for key, known in (("video_id", videos), ("category_id", categories)):
        if not _is_int(ann[key]) or ann[key] not in known:
            raise DataFormatError(f"unknown {key} {ann[key]!r}", path=path, where=where, field=key)
    if ann.get("iscrowd", 0) not in (0, 1):
        raise DataFormatError(
            f"must be 0 or 1, got {ann['iscrowd']!r}", path=path, where=where, field="iscrowd"
        )
    video = videos[ann["video_id"]][1]
    segs = _check_per_frame_list(ann["segmentations"], "segmentations", video["length"], where, path)
    _check_segmentations(segs, video, where, path, rle_only=False)
    _check_boxes_and_areas(ann, video["length"], where, path)


def validate_ytvis(data: dict, path=None) -> None:
    """Validate a YouTube-VIS / OVIS annotation dict (both years' layouts; extra keys are allowed).

    Args:
        data: the parsed json.
        path: the file to name in errors.

    Raises:
        DataFormatError: the first problem found, naming the file, the item and the field.
    """
    if not isinstance(data, dict):
        raise DataFormatError(f"the top level must be a json object, got {type(data).__name__}", path=path)
    videos = _check_items(_require_list(data, "videos", path=path), "videos", VIDEO_KEYS, path=path)
    for i, video in videos.values():
        _check_video(video, _where("videos", i, video), path)
    categories = _check_items(
        _require_list(data, "categories", path=path), "categories", CATEGORY_KEYS, path=path
    )
    annotations = _require_list(data, "annotations", path=path, optional=True)
    for i, ann in _check_items(annotations, "annotations", ANNOTATION_KEYS, path=path).values():
        _check_annotation(ann, _where("annotations", i, ann), videos, categories, path)


def _check_result(entry, where: str, videos: dict | None, categories: dict | None, path) -> None:
    if not isinstance(entry, dict):
        raise DataFormatError(
            f"a result must be an object, got {type(entry).__name__}", path=path, where=where
        )
    missing = [k for k in RESULT_KEYS if k not in entry]
    if missing:
        raise DataFormatError(f"missing required key(s) {missing}", path=path, where=where, field=missing[0])
    for key, known in (("video_id", videos), ("category_id", categories)):
        if not _is_int(entry[key]) or (known is not None and entry[key] not in known):
            raise DataFormatError(f"unknown {key} {entry[key]!r}", path=path, where=where, field=key)
    score = entry["score"]
    if not _is_number(score) or not math.isfinite(score):
        raise DataFormatError(
            f"score must be a finite number, got {score!r}", path=path, where=where, field="score"
        )
    segs = entry["segmentations"]
    if videos is None:
        if not isinstance(segs, list):
            raise DataFormatError(
                "must be a list (one entry per frame)", path=path, where=where, field="segmentations"
            )
        for f, seg in enumerate(segs):
            if seg is not None and not isinstance(seg, dict):
                raise DataFormatError(
                    "a result segmentation must be an RLE dict or null",
                    path=path,
                    where=where,
                    field=f"segmentations[{f}]",
                )
        return
    video = videos[entry["video_id"]][1]
    _check_per_frame_list(segs, "segmentations", video["length"], where, path)
    _check_segmentations(segs, video, where, path, rle_only=True)


def validate_results(results, gt: dict | None, path=None) -> None:
    """Validate a results list (against `gt`'s videos and categories when given).

    Each entry needs ``video_id``, ``category_id`` (known to `gt`), a finite numeric ``score`` and
    ``segmentations``: one RLE dict (of the video's size) or null per frame of the video.

    Raises:
        DataFormatError: the first problem found, naming the file, ``results[i]`` and the field.
    """
    if not isinstance(results, list):
        raise DataFormatError(f"results must be a json list, got {type(results).__name__}", path=path)
    videos = categories = None
    if gt is not None:
        videos = {v["id"]: (i, v) for i, v in enumerate(gt["videos"])}
        categories = {c["id"]: (i, c) for i, c in enumerate(gt["categories"])}
    for i, entry in enumerate(results):
        _check_result(entry, f"results[{i}]", videos, categories, path)


# ----------------------------------------------------------------------------------------- writing
def _json_default(value):
    """Make what json cannot write natively writable: bytes RLE counts, numpy scalars and arrays."""
    if isinstance(value, bytes):
        return value.decode("ascii")
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not json serializable")


def _write_json(path, obj) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, allow_nan=False, default=_json_default, separators=(",", ":"))


def write_results(path, entries: list[dict], gt: dict | None = None) -> None:
    """Validate (against `gt` if given) and write a results json atomically.

    ``bytes`` RLE counts become strings and numpy scalars plain numbers, so the file is the one the
    official evaluation server accepts.
    """
    validate_results(entries, gt, path=path)
    _write_json(path, entries)


def write_ytvis(path, data: dict) -> None:
    """Validate and write a YouTube-VIS annotation json atomically (bytes counts become strings)."""
    validate_ytvis(data, path=path)
    _write_json(path, data)


# ---------------------------------------------------------------------------------------- indexing
def videos_by_id(gt: dict) -> dict[int, dict]:
    """``{video id: video dict}``."""
    return {v["id"]: v for v in gt["videos"]}


def categories_by_id(gt: dict) -> dict[int, dict]:
    """``{category id: category dict}``."""
    return {c["id"]: c for c in gt["categories"]}


def annotations_by_video(gt: dict) -> dict[int, list[dict]]:
    """``{video id: [annotation dicts in file order]}``; every video is a key (possibly empty list)."""
    grouped = {v["id"]: [] for v in gt["videos"]}
    for ann in gt.get("annotations") or []:
        grouped.setdefault(ann["video_id"], []).append(ann)
    return grouped


def results_by_video(results: list[dict]) -> dict[int, list[dict]]:
    """``{video id: [result entries in file order]}`` (only videos that have results)."""
    grouped = defaultdict(list)
    for entry in results:
        grouped[entry["video_id"]].append(entry)
    return dict(grouped)
