"""labelme per-frame json folders (one json per frame; polygons, rectangles, circles and masks).

Layout::

    ROOT/<video>/<frame>.json    {"version", "shapes": [{"label", "points": [[x, y], ...],
                                  "group_id": int | null, "shape_type", "mask"?}],
                                  "imagePath", "imageHeight", "imageWidth", ...}

(`ROOT` may also be one video's folder of jsons.) The frames of a video are its jsons in natural
file-name order; all must state the same ``imageHeight`` / ``imageWidth``. An object is identified
by (``label``, ``group_id``) as in labelme's own ``labelme_export_json``: shapes of one frame with
the same pair are parts of one object (their masks are united), and the same pair in other frames
is the same object. A shape without ``group_id`` is an object of its own, present in that frame
only. ``polygon`` (>= 3 points) is rasterized as COCO does (pycocotools), ``rectangle`` and
``circle`` fill their region, ``mask`` is a base64 PNG over the inclusive box
``points = [[x1, y1], [x2, y2]]`` (labelme >= 5.3); lines and points are not regions and are skipped.

The writer writes one json per frame (frames without objects too) with ``mask`` shapes, so masks
round-trip exactly; ``group_id`` = the object id, ``imagePath`` = the frame's file name.
"""

from __future__ import annotations

import base64
import io
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
    dataset_videos,
    natural_key,
)
from streamvis.data.masks import decode_rle, encode_mask
from streamvis.data.ytvis import read_json
from streamvis.errors import DataFormatError, StreamvisError

LABELME_VERSION = "5.5.0"  # the version the writer states; mask shapes need labelme >= 5.3
SKIPPED_SHAPES = ("line", "linestrip", "point", "points")


def _video_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise StreamvisError(f"{root}: not a folder (labelme annotations are folders of per-frame jsons)")
    if any(p.suffix.lower() == ".json" for p in root.iterdir()):
        return [root]
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name))
    if not folders:
        raise StreamvisError(f"{root}: holds neither labelme jsons nor video folders")
    return folders


def _points(shape: dict, *, path, where: str, minimum: int) -> np.ndarray:
    try:
        points = np.asarray(shape.get("points"), dtype=np.float64)
    except (TypeError, ValueError):
        points = np.zeros((0,))
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < minimum or not np.isfinite(points).all():
        raise DataFormatError(
            f"a {shape.get('shape_type', 'polygon')} needs at least {minimum} finite [x, y] points",
            path=path,
            where=where,
            field="points",
        )
    return points


def _decode_mask_png(data: str, *, path, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            return np.asarray(image.convert("L")) > 0
    except (OSError, ValueError, TypeError) as err:
        raise DataFormatError(
            f"'mask' is not a base64 PNG: {err}", path=path, where=where, field="mask"
        ) from err


def _shape_mask(shape: dict, height: int, width: int, *, path, where: str) -> np.ndarray | None:
    """(H, W) uint8 mask of one shape, or None for a shape that is not a region."""
    kind = shape.get("shape_type") or "polygon"
    if kind in SKIPPED_SHAPES:
        return None
    if kind == "polygon":
        points = _points(shape, path=path, where=where, minimum=3)
        rle = mask_util.frPyObjects([points.reshape(-1).tolist()], height, width)[0]
        return mask_util.decode(rle)
    if kind in ("rectangle", "circle", "mask"):
        points = _points(shape, path=path, where=where, minimum=2)
    mask = np.zeros((height, width), np.uint8)
    if kind == "rectangle":
        (x1, y1), (x2, y2) = np.sort(points[:2], axis=0)
        mask[int(round(y1)) : int(round(y2)) + 1, int(round(x1)) : int(round(x2)) + 1] = 1
        return mask
    if kind == "circle":
        (cx, cy), edge = points[0], points[1]
        ys, xs = np.mgrid[0:height, 0:width]
        mask[(xs - cx) ** 2 + (ys - cy) ** 2 <= ((edge - points[0]) ** 2).sum()] = 1
        return mask
    if kind == "mask":
        if not isinstance(shape.get("mask"), str):
            raise DataFormatError(
                "a mask shape needs a base64 PNG 'mask'", path=path, where=where, field="mask"
            )
        crop = _decode_mask_png(shape["mask"], path=path, where=where)
        x1, y1 = (int(round(v)) for v in points[0])
        x2, y2 = (int(round(v)) for v in points[1])
        if crop.shape != (y2 - y1 + 1, x2 - x1 + 1) or x1 < 0 or y1 < 0 or x2 >= width or y2 >= height:
            raise DataFormatError(
                f"the mask PNG is {crop.shape[0]}x{crop.shape[1]} but its box [{x1}, {y1}]-[{x2}, {y2}] "
                f"(inclusive) does not match it inside the {height}x{width} image",
                path=path,
                where=where,
                field="points",
            )
        mask[y1 : y2 + 1, x1 : x2 + 1] = crop
        return mask
    raise DataFormatError(f"unknown shape_type {kind!r}", path=path, where=where, field="shape_type")


def _frame_size(data: dict, path) -> tuple[int, int]:
    size = []
    for key in ("imageHeight", "imageWidth"):
        value = data.get(key)
        if type(value) is not int or value <= 0:
            raise DataFormatError(f"must be a positive integer, got {value!r}", path=path, field=key)
        size.append(value)
    return size[0], size[1]


def _read_video(folder: Path, image_ext: str | None) -> Video:
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() == ".json"), key=lambda p: natural_key(p.name)
    )
    if not files:
        raise DataFormatError("a video folder without labelme jsons", path=folder)
    tracks: dict[tuple, Track] = {}
    size = None
    file_names = []
    for frame, file in enumerate(files):
        data = read_json(file)
        if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
            raise DataFormatError(
                "a labelme file is a json object with a 'shapes' list", path=file, field="shapes"
            )
        frame_size = _frame_size(data, file)
        if size is not None and frame_size != size:
            raise DataFormatError(
                f"the frame is {frame_size[0]}x{frame_size[1]} but the video's first frame "
                f"{files[0].name} is "
                f"{size[0]}x{size[1]}: a frame size cannot change within a video",
                path=file,
                field="imageHeight",
            )
        size = frame_size
        # labelme on Windows writes imagePath with backslashes (e.g. "..\\images\\0001.jpg")
        image_name = Path(str(data.get("imagePath") or file.stem).replace("\\", "/")).name
        if image_ext is not None:
            image_name = f"{Path(image_name).stem}{image_ext}"
        file_names.append(f"{folder.name}/{image_name}")
        _read_shapes(data["shapes"], file, frame, size, tracks)
    return Video(
        name=folder.name, height=size[0], width=size[1], file_names=file_names, tracks=list(tracks.values())
    )


def _read_shapes(shapes: list, file: Path, frame: int, size: tuple[int, int], tracks: dict) -> None:
    for k, shape in enumerate(shapes):
        where = f"shapes[{k}]"
        if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
            raise DataFormatError("a shape needs a 'label' string", path=file, where=where, field="label")
        group = shape.get("group_id")
        if group is not None and type(group) is not int:
            raise DataFormatError(
                f"must be an integer or null, got {group!r}", path=file, where=where, field="group_id"
            )
        mask = _shape_mask(shape, *size, path=file, where=f"{where} (label {shape['label']!r})")
        if mask is None:
            continue
        key = (shape["label"], group) if group is not None else (shape["label"], None, frame, k)
        if key not in tracks:
            used = {t.track_id for t in tracks.values()}
            track_id = (
                group if group is not None and group > 0 and group not in used else max(used, default=0) + 1
            )
            tracks[key] = Track(track_id=track_id, category=shape["label"])
        track = tracks[key]
        previous = track.segmentations.get(frame)
        if previous is not None:
            mask = np.maximum(mask, decode_rle(previous))  # parts of one object are united
        track.segmentations[frame] = encode_mask(mask)


def read_gt(path, *, image_ext: str | None = None) -> dict:
    """Read labelme json folders into a YouTube-VIS dict.

    Args:
        path: a folder of video folders, or one video's folder of per-frame jsons.
        image_ext: replace the frame images' suffix in ``file_names`` (default: keep ``imagePath``'s).

    Returns:
        The YouTube-VIS dict; categories in order of first appearance; ``track_id`` = ``group_id``
        where it is a free positive integer.

    Raises:
        DataFormatError: a file without ``shapes``, a missing or changing image size, a polygon with
            fewer than 3 points, a mask PNG that does not fit its box, an unknown shape type.
    """
    videos = [_read_video(folder, image_ext) for folder in _video_folders(Path(path))]
    return build_dataset(videos, None, info={"source": "labelme"})


def _mask_shape(track: Track, frame: int) -> dict:
    mask = decode_rle(track.segmentations[frame])
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y1, y2, x1, x2 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    buffer = io.BytesIO()
    Image.fromarray(mask[y1 : y2 + 1, x1 : x2 + 1] * np.uint8(255), mode="L").save(buffer, format="PNG")
    return {
        "label": track.category,
        "points": [[float(x1), float(y1)], [float(x2), float(y2)]],
        "group_id": track.track_id,
        "description": "",
        "shape_type": "mask",
        "flags": {},
        "mask": base64.b64encode(buffer.getvalue()).decode("ascii"),
    }


def write_gt(dataset: dict, out_path, *, overwrite: bool = False) -> None:
    """Write ``out_path/<video>/<frame stem>.json`` labelme files with mask shapes (atomic folder).

    Empty masks are left out (labelme has no empty shape).
    """
    with atomic_output_dir(out_path, overwrite=overwrite) as tmp:
        for video in dataset_videos(dataset):
            folder = tmp / video.name
            folder.mkdir(parents=True, exist_ok=True)
            for frame, file_name in enumerate(video.file_names):
                shapes = [
                    _mask_shape(t, frame)
                    for t in video.tracks
                    if frame in t.segmentations and decode_rle(t.segmentations[frame]).any()
                ]
                data = {
                    "version": LABELME_VERSION,
                    "flags": {},
                    "shapes": shapes,
                    "imagePath": Path(file_name).name,
                    "imageData": None,
                    "imageHeight": video.height,
                    "imageWidth": video.width,
                }
                (folder / f"{Path(file_name).stem}.json").write_text(
                    json.dumps(data, indent=1), encoding="utf-8"
                )
