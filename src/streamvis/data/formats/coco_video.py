"""COCO instance-segmentation json whose images carry video and frame fields (the "CocoVID" layout).

Several tools export video annotations frame by frame in COCO form (mmtracking's CocoVID,
BDD100K's ``to_coco`` for seg_track, TAO)::

    {"videos": [{"id", "name"}, ...],                                   (optional)
     "images": [{"id", "video_id", "frame_id" | "frame_index", "file_name", "height", "width"}],
     "annotations": [{"id", "image_id", "category_id", "instance_id" | "track_id",
                      "segmentation": RLE | polygons, "iscrowd"?}],
     "categories": [{"id", "name"}]}

A video's frames are its images ordered by frame number (numbers must be unique within a video;
gaps are allowed: the frames are the images present). Objects are identified within a video by
``instance_id`` (mmtracking, BDD100K) or ``track_id`` (TAO); `track_key` picks one explicitly.
Category ids are kept. The writer uses the CocoVID names (``frame_id`` from 0, ``instance_id``) and
compressed RLE segmentations.
"""

from __future__ import annotations

import json

from streamvis.data.formats.common import Track, Video, build_dataset, dataset_videos
from streamvis.data.masks import rle_area, rle_to_bbox, rle_to_json, segmentation_to_rle
from streamvis.data.ytvis import read_json
from streamvis.errors import DataFormatError
from streamvis.utils.io import atomic_open

FRAME_KEYS = ("frame_id", "frame_index", "frame")
TRACK_KEYS = ("instance_id", "track_id")
OUTPUT_FILE = "annotations.json"


def _list(data: dict, key: str, path) -> list:
    value = data.get(key)
    if not isinstance(value, list):
        raise DataFormatError(f"needs a '{key}' list", path=path, field=key)
    return value


def _pick_key(item: dict, keys: tuple[str, ...], chosen: str | None) -> str | None:
    if chosen is not None:
        return chosen if chosen in item else None
    return next((k for k in keys if k in item), None)


def _int_field(item: dict, key: str | None, keys: tuple[str, ...], *, path, where: str) -> int:
    if key is None:
        raise DataFormatError(f"needs one of the keys {list(keys)}", path=path, where=where, field=keys[0])
    value = item[key]
    if type(value) is not int:
        raise DataFormatError(f"must be an integer, got {value!r}", path=path, where=where, field=key)
    return value


def _read_images(data: dict, path, frame_key: str | None) -> dict[int, list[tuple[int, dict]]]:
    """``{video_id: [(frame number, image), ...] sorted}``, checking ids, sizes and frame numbers."""
    by_video: dict[int, list[tuple[int, dict]]] = {}
    seen_ids = set()
    for i, image in enumerate(_list(data, "images", path)):
        where = f"images[{i}]"
        if not isinstance(image, dict):
            raise DataFormatError("must be an object", path=path, where=where)
        for key in ("id", "video_id", "height", "width"):
            _int_field(image, key if key in image else None, (key,), path=path, where=where)
        if not isinstance(image.get("file_name"), str):
            raise DataFormatError("needs a 'file_name' string", path=path, where=where, field="file_name")
        if image["id"] in seen_ids:
            raise DataFormatError(f"duplicated image id {image['id']}", path=path, where=where, field="id")
        seen_ids.add(image["id"])
        frame = _int_field(image, _pick_key(image, FRAME_KEYS, frame_key), FRAME_KEYS, path=path, where=where)
        by_video.setdefault(image["video_id"], []).append((frame, i, image))
    out = {}
    for video_id, frames in by_video.items():
        frames.sort(key=lambda item: item[0])
        first = frames[0][2]
        for (frame, i, image), previous in zip(frames[1:], frames):
            where = f"images[{i}] (id {image['id']})"
            if frame == previous[0]:
                raise DataFormatError(
                    f"video {video_id} has two images with frame number {frame} "
                    f"(the other is images[{previous[1]}])",
                    path=path,
                    where=where,
                )
            if (image["height"], image["width"]) != (first["height"], first["width"]):
                raise DataFormatError(
                    f"the image is {image['height']}x{image['width']} but video {video_id}'s first frame is "
                    f"{first['height']}x{first['width']}: a frame size cannot change within a video",
                    path=path,
                    where=where,
                    field="height",
                )
        out[video_id] = [(frame, image) for frame, _, image in frames]
    return out


def read_gt(path, *, frame_key: str | None = None, track_key: str | None = None) -> dict:
    """Read a CocoVID-style json into a YouTube-VIS dict.

    Args:
        path: the json file.
        frame_key: the images' frame-number key (default: the first of ``frame_id``,
            ``frame_index``, ``frame``).
        track_key: the annotations' object-id key (default: ``instance_id``, else ``track_id``).

    Returns:
        The YouTube-VIS dict (video and category ids kept; ``track_id`` = the object id).

    Raises:
        DataFormatError: missing keys, an unknown image/category id, a duplicate object id in one
            image, two frames with one number, a frame size change within a video, a bad segmentation.
    """
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataFormatError("the top level must be a json object", path=path)
    frames_of = _read_images(data, path, frame_key)
    position = {
        image["id"]: (video_id, f)
        for video_id, frames in frames_of.items()
        for f, (_, image) in enumerate(frames)
    }
    categories = {}
    for i, category in enumerate(_list(data, "categories", path)):
        if (
            not isinstance(category, dict)
            or type(category.get("id")) is not int
            or not isinstance(category.get("name"), str)
        ):
            raise DataFormatError("needs an integer 'id' and a 'name'", path=path, where=f"categories[{i}]")
        categories[category["id"]] = category["name"]
    names = {v.get("id"): v.get("name") for v in data.get("videos") or [] if isinstance(v, dict)}
    videos = {
        video_id: Video(
            name=str(names.get(video_id) or f"video_{video_id}"),
            height=frames[0][1]["height"],
            width=frames[0][1]["width"],
            file_names=[image["file_name"] for _, image in frames],
            video_id=video_id,
        )
        for video_id, frames in frames_of.items()
    }
    tracks: dict[tuple[int, int], Track] = {}
    for i, ann in enumerate(_list(data, "annotations", path)):
        _add_annotation(ann, f"annotations[{i}]", path, position, categories, videos, tracks, track_key)
    for (video_id, _), track in sorted(tracks.items()):
        videos[video_id].tracks.append(track)
    dataset = build_dataset(list(videos.values()), None, info={"source": "coco-video"})
    return _keep_category_ids(dataset, categories)


def _add_annotation(ann, where, path, position, categories, videos, tracks, track_key) -> None:
    if not isinstance(ann, dict):
        raise DataFormatError("must be an object", path=path, where=where)
    if "id" in ann:
        where = f"{where} (id {ann['id']})"
    image_id = ann.get("image_id")
    if image_id not in position:
        raise DataFormatError(f"unknown image_id {image_id!r}", path=path, where=where, field="image_id")
    if ann.get("category_id") not in categories:
        raise DataFormatError(
            f"unknown category_id {ann.get('category_id')!r}", path=path, where=where, field="category_id"
        )
    object_id = _int_field(ann, _pick_key(ann, TRACK_KEYS, track_key), TRACK_KEYS, path=path, where=where)
    video_id, frame = position[image_id]
    video = videos[video_id]
    if "segmentation" not in ann:
        raise DataFormatError("missing 'segmentation'", path=path, where=where, field="segmentation")
    rle = segmentation_to_rle(
        ann["segmentation"], video.height, video.width, path=path, where=where, field="segmentation"
    )
    name = categories[ann["category_id"]]
    track = tracks.setdefault((video_id, object_id), Track(track_id=object_id, category=name))
    if frame in track.segmentations:
        raise DataFormatError(
            f"object id {object_id} appears twice in image {image_id} (video {video_id}, frame {frame})",
            path=path,
            where=where,
            field=_pick_key(ann, TRACK_KEYS, track_key),
        )
    if track.category != name:
        raise DataFormatError(
            f"object {object_id} of video {video_id} is {track.category!r} in other frames but {name!r} here",
            path=path,
            where=where,
            field="category_id",
        )
    track.segmentations[frame] = rle_to_json(rle)
    track.iscrowd = max(track.iscrowd, int(ann.get("iscrowd", 0) or 0))


def _keep_category_ids(dataset: dict, categories: dict[int, str]) -> dict:
    """Give the built dataset the file's category ids (all of them, in id order)."""
    new_of_name = {name: cid for cid, name in categories.items()}
    old_to_new = {c["id"]: new_of_name[c["name"]] for c in dataset["categories"]}
    dataset["categories"] = [{"id": cid, "name": name} for cid, name in sorted(categories.items())]
    for ann in dataset["annotations"]:
        ann["category_id"] = old_to_new[ann["category_id"]]
    return dataset


def write_gt(dataset: dict, out_path, **options) -> None:
    """Write `dataset` as a CocoVID json (compressed RLE, ``frame_id`` from 0, ``instance_id``).

    The file is written atomically: ``out_path`` if it ends in ``.json``, else ``out_path/annotations.json``.
    """
    if options:
        raise DataFormatError(f"coco-video writing takes no options, got {sorted(options)}")
    names = {c["name"]: c["id"] for c in dataset["categories"]}
    out = {
        "videos": [],
        "images": [],
        "annotations": [],
        "categories": [dict(c) for c in dataset["categories"]],
    }
    for video in dataset_videos(dataset):
        out["videos"].append({"id": video.video_id, "name": video.name})
        first_image = len(out["images"]) + 1
        for frame, file_name in enumerate(video.file_names):
            out["images"].append(
                {
                    "id": first_image + frame,
                    "video_id": video.video_id,
                    "frame_id": frame,
                    "file_name": file_name,
                    "height": video.height,
                    "width": video.width,
                }
            )
        for track in video.tracks:
            for frame, rle in sorted(track.segmentations.items()):
                out["annotations"].append(
                    {
                        "id": len(out["annotations"]) + 1,
                        "image_id": first_image + frame,
                        "video_id": video.video_id,
                        "category_id": names[track.category],
                        "instance_id": track.track_id,
                        "segmentation": rle,
                        "area": rle_area(rle),
                        "bbox": rle_to_bbox(rle),
                        "iscrowd": track.iscrowd,
                    }
                )
    target = out_path if str(out_path).endswith(".json") else f"{out_path}/{OUTPUT_FILE}"
    with atomic_open(target, "w", encoding="utf-8") as f:
        json.dump(out, f, separators=(",", ":"))
