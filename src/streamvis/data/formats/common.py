"""Shared pieces of the format modules: the per-video track table, the YouTube-VIS dict built from it
and taken apart into it, PNG reading, id maps (painting with an overlap rule), atomic output folders.

Every format converts to and from the YouTube-VIS dict (``videos`` / ``categories`` /
``annotations`` exactly as `streamvis.data.ytvis` writes it, compressed-RLE segmentations). A reader
first fills `Video` objects (one `Track` per object, its masks as compressed RLE keyed by frame
index), then `build_dataset` numbers videos, categories and annotations. A writer calls
`dataset_videos` (or `results_videos`) to get the same table back. Each annotation keeps the
format's own object id in the extra key ``"track_id"`` so that a round trip returns the same ids;
writers reuse it when it is unique within its video (`object_ids`). No torch here.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from streamvis.data.masks import (
    rle_area,
    rle_to_bbox,
    rle_to_json,
    segmentation_to_rle,
)
from streamvis.errors import DataFormatError, StreamvisError

__all__ = [
    "Track",
    "Video",
    "atomic_output_dir",
    "build_dataset",
    "dataset_videos",
    "id_map_to_rles",
    "natural_key",
    "object_ids",
    "paint_id_map",
    "read_png",
    "results_videos",
]


@dataclass
class Track:
    """One object of one video, as a format sees it.

    Args:
        track_id: the format's object id within its video (DAVIS palette index, CVAT track id, ...).
        category: the category name.
        segmentations: frame index -> json-ready compressed RLE ``{"size": [H, W], "counts": str}``.
        iscrowd: 0, or 1 for a crowd / ignore region.
        score: the confidence of a results entry (None for ground truth).
        extra: further annotation keys to keep (e.g. BDD100K's per-frame attribute bits).
    """

    track_id: int
    category: str
    segmentations: dict[int, dict] = field(default_factory=dict)
    iscrowd: int = 0
    score: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Video:
    """One video: its name, frame size, frame file names (relative) and its tracks."""

    name: str
    height: int
    width: int
    file_names: list[str]
    tracks: list[Track] = field(default_factory=list)
    video_id: int | None = None

    @property
    def length(self) -> int:
        return len(self.file_names)


def natural_key(name: str) -> list:
    """Sort key that orders ``frame2`` before ``frame10`` (digit runs compare as numbers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(name))]


# --------------------------------------------------------------------------- building the dict
def build_dataset(
    videos: list[Video], categories: list[str] | None = None, *, info: dict | None = None
) -> dict:
    """Number videos, categories and annotations into a YouTube-VIS dict.

    Args:
        videos: the videos (in output order); a video's ``video_id`` is kept when set.
        categories: category names in id order (ids 1..K); default: the names used by the tracks,
            in order of first appearance.
        info: optional ``info`` object to store.

    Returns:
        ``{"videos", "categories", "annotations"}`` with per-frame compressed RLE (None where the
        object is absent), ``bboxes``, ``areas``, ``iscrowd`` and the extra key ``track_id``.
    """
    names = list(categories) if categories is not None else []
    if categories is None:
        for video in videos:
            for track in video.tracks:
                if track.category not in names:
                    names.append(track.category)
    category_ids = {name: i for i, name in enumerate(names, start=1)}
    dataset = {
        "info": dict(info or {}),
        "videos": [],
        "categories": [{"id": i, "name": n} for n, i in category_ids.items()],
        "annotations": [],
    }
    next_video_id = max((v.video_id or 0 for v in videos), default=0) + 1
    for video in videos:
        if video.video_id is None:
            video.video_id, next_video_id = next_video_id, next_video_id + 1
        dataset["videos"].append(
            {
                "id": video.video_id,
                "name": video.name,
                "width": video.width,
                "height": video.height,
                "length": video.length,
                "file_names": list(video.file_names),
            }
        )
        for track in video.tracks:
            if track.category not in category_ids:
                raise StreamvisError(
                    f"video {video.name!r}: object {track.track_id} has category {track.category!r}, "
                    f"which is not among the categories {names}"
                )
            dataset["annotations"].append(_annotation(track, video, category_ids[track.category]))
    for ann_id, ann in enumerate(dataset["annotations"], start=1):
        ann["id"] = ann_id
    return dataset


def _annotation(track: Track, video: Video, category_id: int) -> dict:
    segmentations = [track.segmentations.get(f) for f in range(video.length)]
    ann = {
        "id": None,
        "video_id": video.video_id,
        "category_id": category_id,
        "iscrowd": int(track.iscrowd),
        "track_id": int(track.track_id),
        "segmentations": segmentations,
        "bboxes": [None if s is None else rle_to_bbox(s) for s in segmentations],
        "areas": [None if s is None else rle_area(s) for s in segmentations],
    }
    ann.update(track.extra)
    return ann


def build_results(videos: list[Video], dataset: dict) -> list[dict]:
    """Results entries (``video_id``, ``category_id``, ``score``, ``segmentations``) of scored tracks.

    Videos are matched to `dataset`'s by ``video_id`` when set, else by name; categories by name.
    """
    by_name = {v.get("name", str(v["id"])): v for v in dataset["videos"]}
    by_id = {v["id"]: v for v in dataset["videos"]}
    category_ids = {c["name"]: c["id"] for c in dataset["categories"]}
    results = []
    for video in videos:
        gt_video = by_id.get(video.video_id) if video.video_id is not None else by_name.get(video.name)
        if gt_video is None:
            raise StreamvisError(f"results video {video.name!r} is not a video of the ground truth")
        for track in video.tracks:
            if track.category not in category_ids:
                raise StreamvisError(
                    f"results video {video.name!r}: category {track.category!r} is not in the ground truth"
                )
            results.append(
                {
                    "video_id": gt_video["id"],
                    "category_id": category_ids[track.category],
                    "score": 1.0 if track.score is None else float(track.score),
                    "track_id": int(track.track_id),
                    "segmentations": [track.segmentations.get(f) for f in range(gt_video["length"])],
                }
            )
    return results


# --------------------------------------------------------------------------- taking it apart
def object_ids(entries: list[dict]) -> list[int]:
    """Object ids for the annotations (or results) of one video.

    The entries' ``track_id`` values when every entry has a positive integer one and they are
    unique; else 1..N in the given order.
    """
    ids = [e.get("track_id") for e in entries]
    if all(type(i) is int and i > 0 for i in ids) and len(set(ids)) == len(ids):
        return ids
    return list(range(1, len(entries) + 1))


def _video_name(video: dict) -> str:
    if video.get("name"):
        return str(video["name"])
    names = video.get("file_names") or []
    if names and "/" in names[0]:
        return names[0].rsplit("/", 1)[0]
    return f"video_{video['id']}"


def _track_from_entry(entry: dict, track_id: int, video: dict, category: str, where: str) -> Track:
    segmentations = {}
    for f, seg in enumerate(entry["segmentations"]):
        if seg is None:
            continue
        rle = segmentation_to_rle(
            seg, video["height"], video["width"], where=where, field=f"segmentations[{f}]"
        )
        segmentations[f] = rle_to_json(rle)
    extra = {k: v for k, v in entry.items() if k.startswith("bdd_")}  # BDD100K attribute bits, label ids
    return Track(
        track_id=track_id,
        category=category,
        segmentations=segmentations,
        iscrowd=int(entry.get("iscrowd", 0) or 0),
        score=entry.get("score"),
        extra=extra,
    )


def dataset_videos(dataset: dict) -> list[Video]:
    """The track table of a (validated) YouTube-VIS dict: one `Video` per video, in file order.

    Track ids come from `object_ids`; masks become json-ready compressed RLE.
    """
    names = {c["id"]: c["name"] for c in dataset["categories"]}
    grouped: dict[int, list[tuple[int, dict]]] = {v["id"]: [] for v in dataset["videos"]}
    for i, ann in enumerate(dataset.get("annotations") or []):
        grouped[ann["video_id"]].append((i, ann))
    return [_video_from(video, grouped[video["id"]], names, "annotations") for video in dataset["videos"]]


def results_videos(results: list[dict], dataset: dict, score_threshold: float = 0.0) -> list[Video]:
    """The track table of a results list (against its ground-truth `dataset`); scores are kept.

    Entries scored below `score_threshold` are left out (before object ids are numbered).
    """
    names = {c["id"]: c["name"] for c in dataset["categories"]}
    grouped: dict[int, list[tuple[int, dict]]] = {v["id"]: [] for v in dataset["videos"]}
    for i, entry in enumerate(results):
        if entry["score"] >= score_threshold:
            grouped[entry["video_id"]].append((i, entry))
    return [_video_from(video, grouped[video["id"]], names, "results") for video in dataset["videos"]]


def _video_from(video: dict, entries: list[tuple[int, dict]], names: dict, kind: str) -> Video:
    ids = object_ids([e for _, e in entries])
    tracks = [
        _track_from_entry(entry, track_id, video, names[entry["category_id"]], f"{kind}[{i}]")
        for track_id, (i, entry) in zip(ids, entries)
    ]
    return Video(
        name=_video_name(video),
        height=video["height"],
        width=video["width"],
        file_names=list(video["file_names"]),
        tracks=tracks,
        video_id=video["id"],
    )


# --------------------------------------------------------------------------- masks and id maps
def read_png(path: Path, *, modes: tuple[str, ...], what: str) -> np.ndarray:
    """Read a PNG as a numpy array, requiring one of the PIL `modes`.

    Raises:
        DataFormatError: unreadable file, or a mode not in `modes` (naming `what` the format needs).
    """
    try:
        with Image.open(path) as image:
            if image.mode not in modes:
                raise DataFormatError(
                    f"{what} must be a PNG of mode {'/'.join(modes)}, this one is mode {image.mode}",
                    path=path,
                )
            return np.asarray(image)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        if isinstance(err, DataFormatError):
            raise
        raise DataFormatError(f"cannot read the image: {err}", path=path) from err


def check_frame_size(
    path: Path, shape: tuple[int, int], expected: tuple[int, int] | None, first: Path
) -> None:
    """Fail when a frame's (H, W) differs from the video's first frame (sizes must not change mid-video)."""
    if expected is not None and tuple(shape) != tuple(expected):
        raise DataFormatError(
            f"the frame is {shape[0]}x{shape[1]} (HxW) but the video's first frame {first.name} is "
            f"{expected[0]}x{expected[1]}: a frame size cannot change within a video",
            path=path,
        )


def id_map_to_rles(id_map: np.ndarray, ignore: tuple[int, ...] = (0,)) -> dict[int, dict]:
    """Split an (H, W) integer map into one compressed RLE per id (ids in `ignore` are skipped).

    Returns:
        ``{id: {"size": [H, W], "counts": str}}`` in increasing id order.
    """
    ids = [int(i) for i in np.unique(id_map) if int(i) not in ignore]
    if not ids:
        return {}
    # build the (H, W, N) column-major stack pycocotools encodes from ONE transposed copy of the map
    # (comparing a C-ordered map into Fortran slices would transpose it once per id)
    id_map_f = np.asfortranarray(id_map)
    masks = np.empty((*id_map.shape, len(ids)), dtype=np.uint8, order="F")
    for k, object_id in enumerate(ids):
        np.equal(id_map_f, object_id, out=masks[:, :, k], casting="unsafe")
    return {
        object_id: {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
        for object_id, rle in zip(ids, mask_util.encode(masks))
    }


OVERLAP_RULES = ("error", "score", "later")


def paint_id_map(
    tracks: list[Track],
    values: list[int],
    frame: int,
    height: int,
    width: int,
    *,
    overlap: str,
    where: str,
    dtype=np.uint8,
) -> np.ndarray:
    """Paint the masks of `tracks` in `frame` into one (H, W) map of `values` (0 = background).

    Args:
        tracks: all tracks of the video (those absent in `frame` are skipped).
        values: the value painted for each track (same order as `tracks`).
        overlap: ``"error"``: overlapping masks raise (ground truth, where the format has one label
            per pixel); ``"score"``: higher-scored masks are painted last and win the shared pixels
            (results; the BDD100K converter's rule: "scores higher, rendering later");
            ``"later"``: tracks later in `tracks` win the shared pixels (an explicit user choice).
        where: names the video/frame in errors.

    Raises:
        DataFormatError: overlapping masks with ``overlap="error"``.
    """
    if overlap not in OVERLAP_RULES:
        raise StreamvisError(f"overlap must be one of {list(OVERLAP_RULES)}, got {overlap!r}")
    # work in column-major order, as pycocotools decodes, and make the result C-ordered once
    painted = np.zeros((height, width), dtype=dtype, order="F")
    present = [(t, v) for t, v in zip(tracks, values) if frame in t.segmentations]
    if overlap == "score":
        present.sort(key=lambda tv: -np.inf if tv[0].score is None else tv[0].score)
    owner = np.zeros((height, width), dtype=np.int64, order="F")  # index+1 of the owning track
    for k, (track, value) in enumerate(present, start=1):
        rle = track.segmentations[frame]
        mask = mask_util.decode({"size": rle["size"], "counts": _counts_bytes(rle["counts"])}).view(bool)
        if overlap == "error":
            clash = owner[mask]
            if clash.any():
                other = present[int(clash[clash > 0][0]) - 1][0]
                raise DataFormatError(
                    f"objects {other.track_id} and {track.track_id} overlap in {int((clash > 0).sum())} "
                    "pixels, but this format stores one object per pixel; make the masks disjoint first (or "
                    "let later objects win: --write-option overlap=later)",
                    where=where,
                )
        owner[mask] = k
        painted[mask] = value
    return np.ascontiguousarray(painted)


def _counts_bytes(counts) -> bytes:
    return counts.encode("ascii") if isinstance(counts, str) else counts


# --------------------------------------------------------------------------- output
@contextlib.contextmanager
def atomic_output_dir(path, *, overwrite: bool = False):
    """Build an output folder in a temporary sibling; it appears at `path` only if the block succeeds.

    Args:
        path: the final folder. An existing empty folder is replaced; a non-empty one only with
            `overwrite` (it is then removed after the new one is in place).

    Yields:
        The temporary folder (a `Path`) to write into.

    Raises:
        StreamvisError: `path` is a file, or a non-empty folder without `overwrite`.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StreamvisError(f"{path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise StreamvisError(f"{path}: the output folder exists and is not empty (choose another --out)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old.{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
