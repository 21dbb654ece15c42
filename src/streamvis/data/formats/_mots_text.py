"""The MOTS txt line format of KITTI-MOTS and MOTSChallenge: reading and checking (writing: `_mots_write`).

One line per object per frame, fields separated by whitespace, no header::

    <frame> <object id> <class id> <image height> <image width> <rle>

``<rle>`` is a COCO *compressed* RLE string (pycocotools ``encode`` of the column-major mask). Class
``10`` marks ignore regions in GT files (KITTI-MOTS's DontCare; all ignore lines of a frame are
united). The checks are the format's rules (and TrackEval's refusals), each reported with the file,
the line number and the field: 6 fields of the right types, a class of the format, a frame inside
the sequence, an RLE made of the characters ``0``-``o`` whose runs add up to height x width, one
image size per sequence, an object id at most once per frame, and no two masks of a frame sharing
a pixel (GT objects with the ignore region, tracker masks among themselves). Blank lines are
skipped, so a file holding only a newline has no lines (TrackEval refuses such a file).

The neutral form is the YouTube-VIS dict: one annotation (or results entry) per (object id, class),
in order of first appearance, with the original id kept as ``track_id``; the ignore regions of a
sequence are one ``iscrowd: 1`` annotation of category `IGNORE_CLASS` ("ignore"; listed in
``categories`` only when the data has ignore regions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util

from streamvis.errors import DataFormatError, StreamvisError

IGNORE_CLASS = 10  # KITTI-MOTS / MOTSChallenge class id of ignore regions
IGNORE_ID = 10000  # the object id KITTI-MOTS gives ignore lines
CATEGORIES = {
    1: {"id": 1, "name": "car", "supercategory": "vehicle"},
    2: {"id": 2, "name": "pedestrian", "supercategory": "person"},
    IGNORE_CLASS: {"id": IGNORE_CLASS, "name": "ignore", "supercategory": "ignore"},
}
_FIELDS = ("frame", "object id", "class id", "image height", "image width", "rle")
_RLE_FIRST, _RLE_LAST = 48, 111  # pycocotools' compressed RLE alphabet: '0' .. 'o'


@dataclass(frozen=True)
class MotsLine:
    """One parsed line; ``frame`` is the 0-based frame index inside the sequence."""

    frame: int
    object_id: int
    class_id: int
    height: int
    width: int
    rle: str
    line_number: int


def rle_total(counts: str) -> int | None:
    """Sum of the runs of a compressed RLE string, None if malformed (vectorised ``rleFrString``).

    Each run is a little-endian group of 5-bit digits (character - 48, bit 0x20: another digit
    follows, bit 0x10 of the last digit: negative); runs after the third are stored as the
    difference to the run two places earlier (pycocotools ``maskApi.c``).
    """
    if not counts:
        return 0
    try:
        digits = np.frombuffer(counts.encode("ascii"), dtype=np.uint8).astype(np.int64) - _RLE_FIRST
    except UnicodeEncodeError:
        return None
    if digits.min() < 0 or digits.max() > _RLE_LAST - _RLE_FIRST:
        return None
    ends = np.flatnonzero((digits & 0x20) == 0)
    if len(ends) == 0 or ends[-1] != len(digits) - 1:
        return None  # the last run is cut off
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 12:
        return None  # more than 60 bits: no real run
    place = np.arange(len(digits)) - np.repeat(starts, lengths)
    values = np.add.reduceat((digits & 0x1F) << (5 * place), starts)
    values = np.where(digits[ends] & 0x10, values - (1 << (5 * lengths)), values)
    runs = np.concatenate((values[:1], np.cumsum(values[1::2]), np.cumsum(values[2::2])))
    if runs.min() < 0:
        return None
    return int(runs.sum())


def _fail(path, line_number: int, message: str, field: str | None = None):
    raise DataFormatError(message, path=path, where=f"line {line_number}", field=field)


def _parse_line(text: str, line_number: int, path, first_frame: int) -> MotsLine:
    fields = text.split()
    if len(fields) != 6:
        _fail(
            path,
            line_number,
            f"a MOTS line has 6 space-separated fields ({', '.join(_FIELDS)}), "
            f"this one has {len(fields)}: {text.strip()[:80]!r}",
        )
    numbers = []
    for name, value in zip(_FIELDS[:5], fields[:5]):
        try:
            numbers.append(int(value))
        except ValueError:
            _fail(path, line_number, f"must be an integer, got {value!r}", name)
    frame, object_id, class_id, height, width = numbers
    if height <= 0 or width <= 0:
        _fail(
            path,
            line_number,
            f"the image size must be positive, got {height} x {width}",
            "image height" if height <= 0 else "image width",
        )
    total = rle_total(fields[5])
    if total is None:
        _fail(
            path, line_number, "not a compressed COCO RLE string (characters '0'-'o', complete runs)", "rle"
        )
    if total != height * width:
        _fail(
            path,
            line_number,
            f"the RLE covers {total} pixels but the line's size {height} x {width} has {height * width}",
            "rle",
        )
    return MotsLine(frame - first_frame, object_id, class_id, height, width, fields[5], line_number)


def read_lines(
    path,
    *,
    first_frame: int,
    num_frames: int | None,
    classes: tuple[int, ...],
    size: tuple[int, int] | None = None,
) -> list[MotsLine]:
    """Parse and check the lines of one sequence file (line-level checks only).

    Args:
        path: the txt file (an empty file has no lines).
        first_frame: the number of the sequence's first frame (KITTI-MOTS 0, MOTSChallenge 1).
        num_frames: the sequence length (frames outside it are an error); None: unchecked.
        classes: the class ids allowed in this file.
        size: the sequence's (height, width) if known; every line must then have it.

    Returns:
        The lines in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise StreamvisError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    try:
        text = path.read_text(encoding="ascii")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"not ASCII text (byte {e.start})", path=path) from e
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        line = _parse_line(raw, number, path, first_frame)
        if line.class_id not in classes:
            _fail(
                path,
                number,
                f"class {line.class_id} is not one of this format's classes {list(classes)}",
                "class id",
            )
        if line.frame < 0 or (num_frames is not None and line.frame >= num_frames):
            last = first_frame + (num_frames or 0) - 1
            _fail(
                path,
                number,
                f"frame {line.frame + first_frame} is outside the sequence (frames {first_frame}..{last})",
                "frame",
            )
        if size is None:
            size = (line.height, line.width)
        elif (line.height, line.width) != size:
            _fail(
                path,
                number,
                f"image size {line.height} x {line.width} differs from the sequence's {size[0]} x {size[1]}",
                "image height",
            )
        lines.append(line)
    return lines


def check_against_video(lines: list[MotsLine], video: dict, path, *, first_frame: int) -> None:
    """Lines read before their sequence's length and size were known must fit the video."""
    for line in lines:
        if (line.height, line.width) != (video["height"], video["width"]):
            _fail(
                path,
                line.line_number,
                f"image size {line.height} x {line.width} differs from the "
                f"sequence's {video['height']} x {video['width']}",
                "image height",
            )
        if line.frame >= video["length"]:
            _fail(
                path,
                line.line_number,
                f"frame {line.frame + first_frame} is outside the sequence "
                f"(frames {first_frame}..{first_frame + video['length'] - 1})",
                "frame",
            )


def _rle(line: MotsLine) -> dict:
    return {"size": [line.height, line.width], "counts": line.rle.encode("ascii")}


def check_frames(lines: list[MotsLine], path, *, is_gt: bool, first_frame: int) -> None:
    """Frame-level checks: unique object ids, no overlapping masks (GT: objects and ignore region)."""
    by_frame: dict[int, list[MotsLine]] = {}
    for line in lines:
        by_frame.setdefault(line.frame, []).append(line)
    for frame, frame_lines in by_frame.items():
        objects = [x for x in frame_lines if not (is_gt and x.class_id == IGNORE_CLASS)]
        seen: dict[int, int] = {}
        for x in objects:
            if x.object_id in seen:
                _fail(
                    path,
                    x.line_number,
                    f"object id {x.object_id} appears twice in frame "
                    f"{frame + first_frame} (also on line {seen[x.object_id]})",
                    "object id",
                )
            seen[x.object_id] = x.line_number
        masks = [_rle(x) for x in objects]
        owners = [x.line_number for x in objects]
        ignore = [_rle(x) for x in frame_lines if is_gt and x.class_id == IGNORE_CLASS]
        if ignore:
            masks.append(mask_util.merge(ignore, intersect=False) if len(ignore) > 1 else ignore[0])
            owners.append(None)
        _check_overlap(masks, owners, path, frame + first_frame)


def _check_overlap(masks: list[dict], owners: list, path, frame_number: int) -> None:
    if len(masks) < 2:
        return
    union = mask_util.merge(masks, intersect=False)
    if int(mask_util.area(union)) == int(np.sum(mask_util.area(masks))):
        return
    merged = masks[0]
    for k in range(1, len(masks)):  # find the first line whose mask meets an earlier one
        if mask_util.area(mask_util.merge([merged, masks[k]], intersect=True)) > 0:
            what = "the frame's ignore region" if owners[k] is None else f"line {owners[k]}'s mask"
            line = owners[k] if owners[k] is not None else next(o for o in owners if o is not None)
            _fail(
                path,
                line,
                f"{what} overlaps an earlier mask of frame {frame_number}; masks of one "
                "frame must not overlap in MOTS files",
                "rle",
            )
        merged = mask_util.merge([merged, masks[k]], intersect=False)


# --------------------------------------------------------------------------------- to YouTube-VIS
def _empty_track(length: int) -> dict:
    return {"segmentations": [None] * length, "areas": [None] * length, "bboxes": [None] * length}


def _set_frame(track: dict, frame: int, rle: dict) -> None:
    counts = rle["counts"]
    track["segmentations"][frame] = {
        "size": list(rle["size"]),
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }
    track["areas"][frame] = int(mask_util.area(rle))
    track["bboxes"][frame] = [float(v) for v in mask_util.toBbox(rle)]


def sequence_tracks(lines: list[MotsLine], length: int, *, is_gt: bool) -> tuple[list[dict], dict | None]:
    """Group a sequence's lines into tracks (one per (object id, class)) and the united ignore regions.

    Returns:
        (tracks in order of first appearance: ``{track_id, category_id, segmentations, areas,
        bboxes}``, the ignore track or None).
    """
    tracks: dict[tuple[int, int], dict] = {}
    ignore_by_frame: dict[int, list[dict]] = {}
    for line in lines:
        if is_gt and line.class_id == IGNORE_CLASS:
            ignore_by_frame.setdefault(line.frame, []).append(_rle(line))
            continue
        key = (line.object_id, line.class_id)
        if key not in tracks:
            tracks[key] = {"track_id": line.object_id, "category_id": line.class_id, **_empty_track(length)}
        _set_frame(tracks[key], line.frame, _rle(line))
    ignore = None
    if ignore_by_frame:
        ignore = {"track_id": IGNORE_ID, "category_id": IGNORE_CLASS, **_empty_track(length)}
        for frame, regions in sorted(ignore_by_frame.items()):
            region = mask_util.merge(regions, intersect=False) if len(regions) > 1 else regions[0]
            _set_frame(ignore, frame, region)
    return list(tracks.values()), ignore


def video_entry(video_id: int, name: str, length: int, size: tuple[int, int], file_pattern: str) -> dict:
    """A YouTube-VIS video dict; ``file_names`` follow the format's image layout (folder = sequence)."""
    height, width = size
    return {
        "id": video_id,
        "width": width,
        "height": height,
        "length": length,
        "file_names": [file_pattern.format(seq=name, frame=t) for t in range(length)],
    }


def gt_dict(
    sequences: list[tuple[str, int, tuple[int, int], list[MotsLine]]],
    categories: list[int],
    file_pattern: str,
) -> dict:
    """The YouTube-VIS dict of GT sequences ``[(name, length, (height, width), lines)]``."""
    videos, annotations = [], []
    for video_id, (name, length, size, lines) in enumerate(sequences, start=1):
        videos.append(video_entry(video_id, name, length, size, file_pattern))
        tracks, ignore = sequence_tracks(lines, length, is_gt=True)
        for track in tracks + ([ignore] if ignore else []):
            crowd = int(track is ignore)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "video_id": video_id,
                    "iscrowd": crowd,
                    "height": size[0],
                    "width": size[1],
                    "length": length,
                    **track,
                }
            )
    return {
        "info": {"description": "converted from MOTS txt by streamvis"},
        "licenses": [],
        "videos": videos,
        # the ignore category only where ignore regions exist (it is no class to train or evaluate)
        "categories": [
            CATEGORIES[c] for c in categories if c != IGNORE_CLASS or any(a["iscrowd"] for a in annotations)
        ],
        "annotations": annotations,
    }


def results_list(sequences: list[tuple[int, int, list[MotsLine]]]) -> list[dict]:
    """YouTube-VIS results entries (score 1.0) of tracker sequences ``[(video id, length, lines)]``."""
    results = []
    for video_id, length, lines in sequences:
        tracks, _ = sequence_tracks(lines, length, is_gt=False)
        for track in tracks:
            results.append(
                {
                    "video_id": video_id,
                    "category_id": track["category_id"],
                    "score": 1.0,
                    "segmentations": track["segmentations"],
                    "track_id": track["track_id"],
                }
            )
    return results
