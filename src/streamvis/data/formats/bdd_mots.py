"""BDD100K MOTS (segmentation tracking, ``seg_track_20``): RGBA bitmask PNGs and the Scalabel json.

Bitmasks (official BDD100K ``doc/format.rst`` and ``label/to_mask.py``)::

    ROOT/<video name>/<frame name>.png     one RGBA PNG per frame, one object per pixel
    R = category id (1..8, 0 = background)
    G = (truncated << 3) + (occluded << 2) + (crowd << 1) + ignore
    B, A = instance id = (B << 8) + A, numbered 1, 2, ... per video

The category ids are the seg_track leaf categories in ``configs/seg_track.toml`` order:
pedestrian 1, rider 2, car 3, truck 4, bus 5, train 6, motorcycle 7, bicycle 8 (`categories`
overrides them for other label sets). An object's G value is kept per frame in the annotation's
extra key ``bdd_attributes`` (so a round trip writes the same bits); ``iscrowd`` is 1 when any of
its frames has the crowd or ignore bit (the BDD100K evaluation does not score those).

Scalabel json (``*.json``): a list of frames (or ``{"frames": [...], "config": ...}``), each
``{"name", "videoName", "frameIndex", "labels": [{"id", "category", "attributes", "rle" |
"poly2d", "score"?}]}``; ``rle`` is ``{"counts": <COCO compressed string>, "size": [H, W]}``.
``poly2d`` is read when every vertex is a line vertex (``types`` all ``"L"``); Bezier curves
(``"C"``) are refused, use the bitmasks for those. Frame sizes come from an RLE, the frame's
``size``, the config's ``imageSize``, or BDD100K's 720x1280.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from streamvis.data.formats.common import (
    Track,
    Video,
    atomic_output_dir,
    build_dataset,
    build_results,
    check_frame_size,
    dataset_videos,
    id_map_to_rles,
    natural_key,
    paint_id_map,
    read_png,
    results_videos,
)
from streamvis.data.masks import check_rle_dict
from streamvis.data.ytvis import read_json
from streamvis.errors import DataFormatError, StreamvisError
from streamvis.utils.io import atomic_open

# official: leaf categories of bdd100k/configs/seg_track.toml, id = index + 1 (label/to_mask.py)
SEG_TRACK_CATEGORIES = ("pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
# official: configs/seg_track.toml [image_size]
DEFAULT_SIZE = (720, 1280)
# official: G channel bits (doc/format.rst)
TRUNCATED, OCCLUDED, CROWD, IGNORE = 8, 4, 2, 1
MAX_INSTANCES = 65535  # (B << 8) + A


# ----------------------------------------------------------------------------------- bitmasks
def _video_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise StreamvisError(
            f"{root}: not a folder or a .json file (BDD100K MOTS bitmasks are per-video folders)"
        )
    if any(p.suffix.lower() == ".png" for p in root.iterdir()):
        return [root]
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name))
    if not folders:
        raise StreamvisError(f"{root}: holds neither PNG bitmasks nor video folders")
    return folders


def _split_bitmask(png: Path, rgba: np.ndarray) -> tuple[np.ndarray, dict[int, tuple[int, int]]]:
    """The (H, W) instance-id map of one bitmask and ``{instance id: (category id, attribute bits)}``.

    Raises:
        DataFormatError: an instance with several R (category) or G (attribute) values, or R = 0.
    """
    rgba = rgba.astype(np.int64)
    instance_map = (rgba[..., 2] << 8) + rgba[..., 3]  # (H, W)
    foreground = instance_map > 0
    # one sort over (instance, R, G) of the foreground pixels instead of one pass per instance
    keys = np.unique(
        (instance_map[foreground] << 16) + (rgba[..., 0][foreground] << 8) + rgba[..., 1][foreground]
    )
    instances, categories, attributes = keys >> 16, (keys >> 8) & 255, keys & 255
    labels = {}
    for k, instance_id in enumerate(instances.tolist()):
        if instance_id in labels:
            rows = instances == instance_id
            raise DataFormatError(
                f"instance {instance_id} has several (category R, attributes G) values "
                f"{list(zip(categories[rows].tolist(), attributes[rows].tolist()))}; a BDD100K bitmask "
                "gives one category and one attribute value per instance",
                path=png,
            )
        if categories[k] == 0:
            raise DataFormatError(
                f"instance {instance_id} has category 0 (background) in the R channel", path=png
            )
        labels[instance_id] = (int(categories[k]), int(attributes[k]))
    return instance_map, labels


def _read_bitmask_video(folder: Path, categories: tuple[str, ...], image_ext: str) -> Video:
    pngs = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() == ".png"), key=lambda p: natural_key(p.name)
    )
    if not pngs:
        raise DataFormatError("a video folder without PNG bitmasks", path=folder)
    tracks: dict[int, Track] = {}
    size = None
    for frame, png in enumerate(pngs):
        rgba = read_png(png, modes=("RGBA",), what="a BDD100K bitmask")
        check_frame_size(png, rgba.shape[:2], size, pngs[0])
        size = rgba.shape[:2]
        instance_map, labels = _split_bitmask(png, rgba)
        for instance_id, rle in id_map_to_rles(instance_map).items():
            category_id, attributes = labels[instance_id]
            if category_id > len(categories):
                raise DataFormatError(
                    f"instance {instance_id} has category id {category_id}, but only {len(categories)} "
                    f"categories are known ({', '.join(categories)}); pass categories=[...]",
                    path=png,
                )
            name = categories[category_id - 1]
            track = tracks.setdefault(instance_id, Track(track_id=instance_id, category=name))
            if track.category != name:
                raise DataFormatError(
                    f"instance {instance_id} is {track.category!r} in earlier frames but {name!r} here",
                    path=png,
                )
            track.segmentations[frame] = rle
            track.extra.setdefault("bdd_attributes", {})[frame] = attributes
    for track in tracks.values():
        bits = track.extra.pop("bdd_attributes")
        track.extra["bdd_attributes"] = [bits.get(f) for f in range(len(pngs))]
        track.iscrowd = int(any(b & (CROWD | IGNORE) for b in bits.values()))
    return Video(
        name=folder.name,
        height=int(size[0]),
        width=int(size[1]),
        file_names=[f"{folder.name}/{p.stem}{image_ext}" for p in pngs],
        tracks=[tracks[k] for k in sorted(tracks)],
    )


def _attribute_bits(track: Track, frame: int) -> int:
    bits = track.extra.get("bdd_attributes")
    if isinstance(bits, list) and frame < len(bits) and isinstance(bits[frame], int):
        return bits[frame]
    return CROWD if track.iscrowd else 0


def _write_bitmasks(videos: list[Video], out_path, categories, *, overlap: str, overwrite: bool) -> None:
    with atomic_output_dir(out_path, overwrite=overwrite) as tmp:
        for video in videos:
            ids = [t.track_id for t in video.tracks]
            if ids and max(ids) > MAX_INSTANCES:
                raise StreamvisError(f"video {video.name!r}: instance id {max(ids)} > {MAX_INSTANCES}")
            category_ids = [_category_id(t.category, categories, video) for t in video.tracks]
            folder = tmp / video.name
            folder.mkdir(parents=True, exist_ok=True)
            for frame, file_name in enumerate(video.file_names):
                where = f"video {video.name!r}, frame {frame} ({file_name})"
                order = list(range(1, len(video.tracks) + 1))  # which track owns each pixel (0 = none)
                owner = paint_id_map(
                    video.tracks,
                    order,
                    frame,
                    video.height,
                    video.width,
                    overlap=overlap,
                    where=where,
                    dtype=np.int32,
                )
                colors = np.zeros((len(video.tracks) + 1, 4), np.uint8)  # row 0: background
                for k, track in enumerate(video.tracks, start=1):
                    bits = _attribute_bits(track, frame)
                    colors[k] = (category_ids[k - 1], bits, track.track_id >> 8, track.track_id & 255)
                rgba = colors[owner]  # (H, W, 4)
                Image.fromarray(rgba, mode="RGBA").save(folder / f"{Path(file_name).stem}.png")


def _category_id(name: str, categories: tuple[str, ...], video: Video) -> int:
    if name not in categories:
        raise StreamvisError(
            f"video {video.name!r}: category {name!r} is not a BDD100K MOTS category "
            f"({', '.join(categories)}); "
            "map it with --category-map (e.g. person=pedestrian) or pass categories=[...]"
        )
    return categories.index(name) + 1


# ----------------------------------------------------------------------------------- scalabel json
def _frames_of(data, path) -> tuple[list, dict]:
    if isinstance(data, dict) and isinstance(data.get("frames"), list):
        return data["frames"], data.get("config") or {}
    if isinstance(data, list):
        return data, {}
    raise DataFormatError("a Scalabel file is a list of frames or an object with a 'frames' list", path=path)


def _label_mask(label: dict, height: int, width: int, *, path, where: str) -> dict:
    """Compressed RLE of a Scalabel label (``rle`` or straight-line ``poly2d``)."""
    if label.get("rle") is not None:
        rle = label["rle"]
        if not isinstance(rle, dict):
            raise DataFormatError(
                "'rle' must be an object {counts, size}", path=path, where=where, field="rle"
            )
        check_rle_dict(rle, height, width, path=path, where=where, field="rle")
        counts = rle["counts"]
        if isinstance(counts, list):
            counts = mask_util.frPyObjects({"size": [height, width], "counts": counts}, height, width)[
                "counts"
            ]
        return {
            "size": [height, width],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
        }
    polys = label.get("poly2d")
    if not isinstance(polys, list) or not polys:
        raise DataFormatError(
            "a label needs an 'rle' or a 'poly2d' mask", path=path, where=where, field="rle"
        )
    flat = []
    for k, poly in enumerate(polys):
        field = f"poly2d[{k}]"
        vertices = poly.get("vertices") if isinstance(poly, dict) else None
        if not isinstance(vertices, list) or len(vertices) < 3:
            raise DataFormatError(
                "needs 'vertices' with at least 3 points", path=path, where=where, field=field
            )
        if set(str(poly.get("types", "L" * len(vertices)))) - {"L"}:
            raise DataFormatError(
                "Bezier vertices ('C' in 'types') are not supported; convert the BDD100K bitmasks instead",
                path=path,
                where=where,
                field=f"{field}.types",
            )
        flat.append([float(c) for xy in vertices for c in xy])
    merged = mask_util.merge(mask_util.frPyObjects(flat, height, width))
    return {"size": [height, width], "counts": merged["counts"].decode("ascii")}


def _frame_size(frame: dict, config: dict, image_size) -> tuple[int, int]:
    for label in frame.get("labels") or []:
        if isinstance(label, dict) and isinstance(label.get("rle"), dict):
            size = label["rle"].get("size")
            if isinstance(size, list) and len(size) == 2:
                return int(size[0]), int(size[1])
    for size in (frame.get("size"), config.get("imageSize")):
        if isinstance(size, dict) and "height" in size and "width" in size:
            return int(size["height"]), int(size["width"])
    return tuple(image_size)


def _read_scalabel(path: Path, *, image_size, scored: bool) -> tuple[list[Video], list[str]]:
    frames, config = _frames_of(read_json(path), path)
    by_video: dict[str, list[tuple[int, dict]]] = {}
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or not isinstance(frame.get("name"), str):
            raise DataFormatError(
                "a frame must be an object with a 'name'", path=path, where=f"frames[{i}]", field="name"
            )
        by_video.setdefault(str(frame.get("videoName") or path.stem), []).append((i, frame))
    categories: list[str] = []
    videos = []
    for video_name, items in by_video.items():
        items.sort(key=lambda item: (item[1].get("frameIndex", item[0]), natural_key(item[1]["name"])))
        videos.append(_scalabel_video(path, video_name, items, config, image_size, categories, scored))
    return videos, categories


def _scalabel_video(path, video_name, items, config, image_size, categories, scored) -> Video:
    tracks: dict[str, Track] = {}
    size = None
    file_names = []
    for frame_index, (i, frame) in enumerate(items):
        where = f"frames[{i}] ({frame['name']})"
        frame_size = _frame_size(frame, config, image_size)
        if size is not None and frame_size != size:
            raise DataFormatError(
                f"the frame is {frame_size[0]}x{frame_size[1]} but the video's first frame is "
                f"{size[0]}x{size[1]}: a frame size cannot change within a video",
                path=path,
                where=where,
            )
        size = frame_size
        file_names.append(f"{video_name}/{frame['name']}" if video_name else frame["name"])
        seen = set()
        for j, label in enumerate(frame.get("labels") or []):
            label_where = f"{where}, labels[{j}]"
            if not isinstance(label, dict) or "id" not in label or not isinstance(label.get("category"), str):
                raise DataFormatError(
                    "a label needs an 'id' and a 'category'", path=path, where=label_where, field="id"
                )
            key = str(label["id"])
            if key in seen:
                raise DataFormatError(
                    f"object id {key!r} appears twice in this frame", path=path, where=label_where, field="id"
                )
            seen.add(key)
            track = tracks.get(key)
            if track is None:
                track = tracks[key] = Track(track_id=_numeric_id(key, tracks), category=label["category"])
                track.extra["bdd_label_id"] = key
            elif track.category != label["category"]:
                raise DataFormatError(
                    f"object {key!r} is {track.category!r} in earlier frames but {label['category']!r} here",
                    path=path,
                    where=label_where,
                    field="category",
                )
            if label["category"] not in categories:
                categories.append(label["category"])
            track.segmentations[frame_index] = _label_mask(label, *size, path=path, where=label_where)
            attributes = label.get("attributes") or {}
            bits = (
                TRUNCATED * bool(attributes.get("truncated"))
                + OCCLUDED * bool(attributes.get("occluded"))
                + CROWD * bool(attributes.get("crowd"))
                + IGNORE * bool(attributes.get("ignored", attributes.get("ignore")))
            )
            track.extra.setdefault("bdd_attributes", {})[frame_index] = bits
            if scored and label.get("score") is not None:
                track.score = float(label["score"])
    for track in tracks.values():
        bits = track.extra.pop("bdd_attributes")
        track.extra["bdd_attributes"] = [bits.get(f) for f in range(len(items))]
        track.iscrowd = int(any(b & (CROWD | IGNORE) for b in bits.values()))
    return Video(
        name=video_name, height=size[0], width=size[1], file_names=file_names, tracks=list(tracks.values())
    )


def _numeric_id(key: str, tracks: dict[str, Track]) -> int:
    """The label id as an integer when it is a new positive decimal one, else the next unused integer."""
    used = {t.track_id for t in tracks.values()}
    if key.isdigit() and int(key) > 0 and int(key) not in used:
        return int(key)
    return max(used, default=0) + 1


def _write_scalabel(videos: list[Video], out_path) -> None:
    frames = []
    for video in videos:
        for frame_index, file_name in enumerate(video.file_names):
            labels = []
            for track in video.tracks:
                if frame_index not in track.segmentations:
                    continue
                bits = _attribute_bits(track, frame_index)
                label = {
                    "id": str(track.extra.get("bdd_label_id", track.track_id)),
                    "category": track.category,
                    "attributes": {
                        "truncated": bool(bits & TRUNCATED),
                        "occluded": bool(bits & OCCLUDED),
                        "crowd": bool(bits & CROWD),
                        "ignored": bool(bits & IGNORE),
                    },
                    "rle": dict(track.segmentations[frame_index]),
                }
                if track.score is not None:
                    label["score"] = float(track.score)
                labels.append(label)
            frames.append(
                {
                    "name": Path(file_name).name,
                    "videoName": video.name,
                    "frameIndex": frame_index,
                    "size": {"width": video.width, "height": video.height},
                    "labels": labels,
                }
            )
    with atomic_open(out_path, "w", encoding="utf-8") as f:
        json.dump(frames, f, separators=(",", ":"))


# ----------------------------------------------------------------------------------- interface
def _is_json(path) -> bool:
    return Path(path).suffix.lower() == ".json"


def read_gt(
    path,
    *,
    categories: tuple[str, ...] = SEG_TRACK_CATEGORIES,
    image_ext: str = ".jpg",
    image_size=DEFAULT_SIZE,
) -> dict:
    """Read BDD100K MOTS bitmask folders (or a Scalabel ``.json``) into a YouTube-VIS dict.

    Args:
        path: ``bitmasks/seg_track_20/<split>`` (video folders), one video's folder, or a Scalabel json.
        categories: category names by R value - 1 (bitmasks only).
        image_ext: suffix of the frame images named in ``file_names`` (bitmasks only).
        image_size: (H, W) of Scalabel frames that state no size.

    Returns:
        The YouTube-VIS dict (``track_id`` = the instance id; ``bdd_attributes`` = per-frame G bits).

    Raises:
        DataFormatError: a non-RGBA PNG, a size change mid-video, an instance with mixed
            category/attributes, an unknown category id, a duplicate label id in a frame, ...
    """
    if _is_json(path):
        videos, names = _read_scalabel(Path(path), image_size=image_size, scored=False)
        return build_dataset(videos, names, info={"source": "bdd-mots"})
    videos = [
        _read_bitmask_video(folder, tuple(categories), image_ext) for folder in _video_folders(Path(path))
    ]
    return build_dataset(videos, list(categories), info={"source": "bdd-mots"})


def read_results(
    path,
    *,
    dataset: dict,
    categories: tuple[str, ...] = SEG_TRACK_CATEGORIES,
    image_ext: str = ".jpg",
    image_size=DEFAULT_SIZE,
) -> list[dict]:
    """Read BDD100K MOTS predictions (bitmasks: score 1; Scalabel json: the labels' ``score``)."""
    if _is_json(path):
        videos, _ = _read_scalabel(Path(path), image_size=image_size, scored=True)
    else:
        videos = [_read_bitmask_video(f, tuple(categories), image_ext) for f in _video_folders(Path(path))]
    return build_results(videos, dataset)


def write_gt(
    dataset: dict,
    out_path,
    *,
    categories: tuple[str, ...] = SEG_TRACK_CATEGORIES,
    overlap: str = "error",
    overwrite: bool = False,
) -> None:
    """Write `dataset` as bitmask folders ``out_path/<video>/<frame>.png``, or as Scalabel json if
    `out_path` ends in ``.json`` (both atomic). ``overlap="later"`` lets later annotations win
    shared pixels instead of refusing overlaps.

    Raises:
        DataFormatError: overlapping masks in a frame (bitmasks hold one object per pixel).
        StreamvisError: a category outside `categories`, an instance id above 65535.
    """
    videos = dataset_videos(dataset)
    if _is_json(out_path):
        _write_scalabel(videos, out_path)
    else:
        _write_bitmasks(videos, out_path, tuple(categories), overlap=overlap, overwrite=overwrite)


def write_results(
    results: list[dict],
    dataset: dict,
    out_path,
    *,
    categories: tuple[str, ...] = SEG_TRACK_CATEGORIES,
    score_threshold: float = 0.0,
    overwrite: bool = False,
) -> None:
    """Write results as bitmasks (higher score wins shared pixels) or Scalabel json (with scores);
    entries scored below `score_threshold` are left out."""
    videos = results_videos(results, dataset, score_threshold)
    if _is_json(out_path):
        _write_scalabel(videos, out_path)
    else:
        _write_bitmasks(videos, out_path, tuple(categories), overlap="score", overwrite=overwrite)
