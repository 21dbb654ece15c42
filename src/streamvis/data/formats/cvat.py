"""CVAT "CVAT for video 1.1" XML: tracks of polygons and masks, with keyframe / outside flags.

Schema (CVAT docs, "XML annotation format", version 1.1, interpolation mode)::

    <annotations><version>1.1</version>
      <meta><task><name>..</name><size>N</size><labels><label><name>car</name>...</label></labels>
                  <original_size><width>W</width><height>H</height></original_size></task></meta>
      <track id="0" label="car" source="manual">
        <polygon frame="0" keyframe="1" outside="0" occluded="0" points="x0,y0;x1,y1;..." z_order="0"/>
        <mask frame="3" keyframe="1" outside="0" occluded="0" rle="n0, n1, ..." left="L" top="T"
              width="w" height="h" z_order="0"/>
      </track>
    </annotations>

A project export holds several ``<task>`` elements (``meta/project/tasks``) and tracks name theirs
with ``task_id``; each task becomes one video. Frame numbers are 0-based within the task.

Track semantics (as CVAT plays a track back): the state at frame f is the track's last element at
or before f; ``outside="1"`` means the object is absent from that frame on, and a track without a
closing outside element lasts to the task's last frame. CVAT's own exports list every frame of a
track (interpolated frames with ``keyframe="0"``), so nothing needs interpolating there; for files
that list keyframes only, the vertices of two visible polygons with the same number of points are
interpolated linearly, vertex by vertex (CVAT resamples the contours instead, so in-between frames
can differ slightly); otherwise, and for masks (CVAT does not interpolate masks), the earlier shape
is repeated. Mask ``rle`` is CVAT's: run lengths over the ``width`` x ``height`` box at (left, top),
row-major, starting with a background run (cvat_sdk ``masks.encode_mask``). Boxes, polylines,
points, ellipses and skeletons carry no region mask and are skipped.

Polygons are rasterized as COCO does (pycocotools), which can differ from CVAT's own drawing by
boundary pixels. The writer emits one mask element per visible frame (``keyframe="1"``) and an
``outside="1"`` element where a visible run ends, so reading it back gives the same masks and ids.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pycocotools.mask as mask_util

from streamvis.data.formats.common import (
    Track,
    Video,
    atomic_output_dir,
    build_dataset,
    dataset_videos,
    natural_key,
)
from streamvis.data.masks import decode_rle, encode_mask
from streamvis.errors import DataFormatError, StreamvisError
from streamvis.utils.io import atomic_open

REGION_SHAPES = ("polygon", "mask")
OTHER_SHAPES = ("box", "polyline", "points", "ellipse", "cuboid", "skeleton", "tag")


# ----------------------------------------------------------------------------------- reading
def _text(element, tag: str, *, path, where: str, required: bool = True) -> str | None:
    found = element.find(tag)
    if found is None or found.text is None or not found.text.strip():
        if required:
            raise DataFormatError(f"missing <{tag}>", path=path, where=where, field=tag)
        return None
    return found.text.strip()


def _int_text(element, tag: str, *, path, where: str) -> int:
    value = _text(element, tag, path=path, where=where)
    try:
        return int(value)
    except ValueError:
        raise DataFormatError(
            f"<{tag}> must be an integer, got {value!r}", path=path, where=where, field=tag
        ) from None


def _tasks(root, path) -> tuple[list[dict], list[str]]:
    meta = root.find("meta")
    if meta is None:
        raise DataFormatError(
            "missing <meta> (is this a 'CVAT for video 1.1' export?)", path=path, where="<annotations>"
        )
    elements = meta.findall("task") or meta.findall("project/tasks/task") or meta.findall("job")
    if not elements:
        raise DataFormatError("<meta> holds no <task> (or project tasks)", path=path, where="<meta>")
    labels = [_text(label, "name", path=path, where="<labels>") for label in meta.iter("label")]
    tasks = []
    for k, task in enumerate(elements):
        where = f"<meta> task {k}"
        size = _int_text(task, "size", path=path, where=where)
        original = task.find("original_size")
        if original is None:
            raise DataFormatError(
                "missing <original_size> (the frame size of a video task)",
                path=path,
                where=where,
                field="original_size",
            )
        tasks.append(
            {
                "id": _text(task, "id", path=path, where=where, required=False) or str(k),
                "name": _text(task, "name", path=path, where=where, required=False) or f"task_{k}",
                "size": size,
                "height": _int_text(original, "height", path=path, where=where),
                "width": _int_text(original, "width", path=path, where=where),
            }
        )
    return tasks, list(dict.fromkeys(labels))


def _flag(element, name: str) -> bool:
    return element.get(name, "0").strip().lower() in ("1", "true")


def _polygon_points(element, *, path, where: str) -> np.ndarray:
    try:
        points = [
            [float(v) for v in pair.split(",")]
            for pair in element.get("points", "").split(";")
            if pair.strip()
        ]
        array = np.asarray(points, dtype=np.float64)
    except ValueError:
        raise DataFormatError(
            "'points' must be 'x0,y0;x1,y1;...'", path=path, where=where, field="points"
        ) from None
    if array.ndim != 2 or array.shape[1] != 2 or len(array) < 3 or not np.isfinite(array).all():
        raise DataFormatError(
            "a polygon needs at least 3 finite 'x,y' points", path=path, where=where, field="points"
        )
    return array  # (P, 2)


def _mask_from_rle(element, height: int, width: int, *, path, where: str) -> np.ndarray:
    try:
        counts = [int(v) for v in element.get("rle", "").split(",") if v.strip()]
        left, top = int(element.get("left")), int(element.get("top"))
        box_w, box_h = int(element.get("width")), int(element.get("height"))
    except (TypeError, ValueError):
        raise DataFormatError(
            "a mask needs integer 'rle' runs and 'left', 'top', 'width', 'height'",
            path=path,
            where=where,
            field="rle",
        ) from None
    if box_w <= 0 or box_h <= 0 or left < 0 or top < 0 or left + box_w > width or top + box_h > height:
        raise DataFormatError(
            f"the mask box (left {left}, top {top}, {box_w}x{box_h}) is not inside the "
            f"{width}x{height} frame",
            path=path,
            where=where,
            field="left",
        )
    if any(c < 0 for c in counts) or sum(counts) != box_w * box_h:
        raise DataFormatError(
            f"the rle runs sum to {sum(counts)}, not width*height = {box_w * box_h}",
            path=path,
            where=where,
            field="rle",
        )
    values = np.zeros(len(counts), np.uint8)
    values[1::2] = 1  # runs alternate background, foreground
    crop = np.repeat(values, counts).reshape(box_h, box_w)  # row-major over the box
    mask = np.zeros((height, width), np.uint8)
    mask[top : top + box_h, left : left + box_w] = crop
    return mask


def _rasterize(points: np.ndarray, height: int, width: int) -> dict:
    rle = mask_util.frPyObjects([points.reshape(-1).tolist()], height, width)[0]
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def _track_states(track, task: dict, *, path, where: str) -> list[tuple[int, object]]:
    """The track's elements as (frame, element) sorted by frame, checked for duplicates and range."""
    states = []
    frames = set()
    for element in track:
        if element.tag not in REGION_SHAPES:
            if element.tag not in OTHER_SHAPES and element.tag != "attribute":
                raise DataFormatError(f"unknown shape <{element.tag}>", path=path, where=where)
            continue
        try:
            frame = int(element.get("frame"))
        except (TypeError, ValueError):
            raise DataFormatError(
                f"<{element.tag}> needs an integer 'frame'", path=path, where=where, field="frame"
            ) from None
        if not 0 <= frame < task["size"]:
            raise DataFormatError(
                f"frame {frame} is outside the task's {task['size']} frames",
                path=path,
                where=where,
                field="frame",
            )
        if frame in frames:
            raise DataFormatError(
                f"two shapes at frame {frame}: one object cannot be in two places in one frame",
                path=path,
                where=where,
                field="frame",
            )
        frames.add(frame)
        states.append((frame, element))
    return sorted(states, key=lambda state: state[0])


def _read_track(track, task: dict, label: str, *, path, where: str) -> dict[int, dict]:
    """Frame -> json-ready RLE of one track, playing keyframes / outside flags back like CVAT."""
    height, width, size = task["height"], task["width"], task["size"]
    states = _track_states(track, task, path=path, where=where)
    segmentations = {}
    for k, (frame, element) in enumerate(states):
        if _flag(element, "outside"):
            continue
        end = states[k + 1][0] if k + 1 < len(states) else size  # the state holds until the next element
        shape_where = f"{where}, <{element.tag} frame={frame}>"
        if element.tag == "mask":
            rle = encode_mask(_mask_from_rle(element, height, width, path=path, where=shape_where))
            for f in range(frame, end):
                segmentations[f] = rle
            continue
        points = _polygon_points(element, path=path, where=shape_where)
        following = states[k + 1][1] if k + 1 < len(states) else None
        interpolate = following is not None and following.tag == "polygon" and not _flag(following, "outside")
        target = _polygon_points(following, path=path, where=shape_where) if interpolate else None
        if target is not None and target.shape != points.shape:
            target = None
        for f in range(frame, end):
            shape = points if target is None else points + (target - points) * (f - frame) / (end - frame)
            segmentations[f] = _rasterize(shape, height, width)
    return segmentations


def read_gt(path, *, frame_name: str = "{task}/frame_{frame:06d}.png") -> dict:
    """Read a "CVAT for video 1.1" XML into a YouTube-VIS dict (one video per task).

    Args:
        path: the ``annotations.xml``, CVAT's export zip (``annotations.xml`` + ``images/``), or a
            folder of ``.xml`` files (one or more videos each).
        frame_name: pattern of the ``file_names`` (CVAT's export zip holds ``images/frame_000000.png``).

    Returns:
        The YouTube-VIS dict; categories are the meta labels in order; ``track_id`` = the CVAT track id.

    Raises:
        DataFormatError: malformed XML, a missing task size / frame size, an unknown label, a track
            with no frames, two shapes of one track in one frame, a mask rle that does not fill its box.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.xml"), key=lambda p: natural_key(p.name))
        if not files:
            raise StreamvisError(f"{path}: a folder without .xml files")
        videos, labels = [], []
        for file in files:
            file_videos, file_labels = _read_file(file, frame_name)
            videos.extend(file_videos)
            labels.extend(name for name in file_labels if name not in labels)
        return build_dataset(videos, labels, info={"source": "cvat"})
    videos, labels = _read_file(path, frame_name)
    return build_dataset(videos, labels, info={"source": "cvat"})


def _parse(path: Path):
    """The XML root of `path`: an ``.xml`` file, or CVAT's export ``.zip`` holding ``annotations.xml``."""
    if path.suffix.lower() != ".zip":
        return ElementTree.parse(path).getroot()
    try:
        with zipfile.ZipFile(path) as archive, archive.open("annotations.xml") as f:
            return ElementTree.parse(f).getroot()
    except KeyError:
        raise DataFormatError("the zip has no annotations.xml at its root", path=path) from None
    except zipfile.BadZipFile as err:
        raise DataFormatError(f"not a readable zip: {err}", path=path) from err


def _read_file(path: Path, frame_name: str) -> tuple[list[Video], list[str]]:
    try:
        root = _parse(path)
    except ElementTree.ParseError as err:
        raise DataFormatError(f"malformed XML: {err}", path=path) from err
    except OSError as err:
        raise StreamvisError(f"{path}: {err.strerror or err}") from err
    tasks, labels = _tasks(root, path)
    task_by_id = {t["id"]: t for t in tasks}
    videos = {
        t["id"]: Video(
            name=t["name"],
            height=t["height"],
            width=t["width"],
            file_names=[frame_name.format(task=t["name"], frame=f) for f in range(t["size"])],
        )
        for t in tasks
    }
    for k, track in enumerate(root.findall("track")):
        where = f"<track id={track.get('id')!r} label={track.get('label')!r}> (track {k})"
        _add_track(track, where, path, tasks, task_by_id, labels, videos)
    return list(videos.values()), labels


def _add_track(track, where, path, tasks, task_by_id, labels, videos) -> None:
    label = track.get("label")
    if label not in labels:
        raise DataFormatError(
            f"label {label!r} is not among the task labels {labels}", path=path, where=where, field="label"
        )
    task_id = track.get("task_id", tasks[0]["id"] if len(tasks) == 1 else None)
    if task_id not in task_by_id:
        raise DataFormatError(f"unknown task_id {task_id!r}", path=path, where=where, field="task_id")
    try:
        track_id = int(track.get("id"))
    except (TypeError, ValueError):
        raise DataFormatError("needs an integer 'id'", path=path, where=where, field="id") from None
    if not len(track):
        raise DataFormatError("the track has no frames (no shape elements)", path=path, where=where)
    video = videos[task_id]
    if any(t.track_id == track_id + 1 for t in video.tracks):
        raise DataFormatError(f"duplicated track id {track_id}", path=path, where=where, field="id")
    segmentations = _read_track(track, task_by_id[task_id], label, path=path, where=where)
    if segmentations:
        # CVAT numbers tracks from 0; streamvis object ids start at 1 (id + 1, undone by the writer)
        video.tracks.append(Track(track_id=track_id + 1, category=label, segmentations=segmentations))


# ----------------------------------------------------------------------------------- writing
def _mask_element(mask: np.ndarray, frame: int) -> str:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, left = int(rows[0]), int(cols[0])
    crop = mask[top : rows[-1] + 1, left : cols[-1] + 1].reshape(-1).astype(np.int8)  # row-major
    changes = np.flatnonzero(np.diff(crop)) + 1
    bounds = np.concatenate([[0], changes, [crop.size]])
    runs = np.diff(bounds).tolist()
    if crop[0]:
        runs = [0] + runs  # CVAT's runs start with background
    return (
        f'    <mask frame="{frame}" keyframe="1" outside="0" occluded="0" rle="{", ".join(map(str, runs))}" '
        f'left="{left}" top="{top}" width="{cols[-1] + 1 - left}" height="{rows[-1] + 1 - top}" '
        'z_order="0">\n'
        "    </mask>\n"
    )


def _outside_element(frame: int) -> str:
    return (
        f'    <mask frame="{frame}" keyframe="1" outside="1" occluded="0" rle="1" left="0" top="0" '
        'width="1" height="1" z_order="0">\n    </mask>\n'
    )


def _video_xml(video: Video, labels: list[str]) -> str:
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n',
        "  <meta>\n    <task>\n",
        f"      <id>{video.video_id}</id>\n      <name>{_escape(video.name)}</name>\n",
        f"      <size>{video.length}</size>\n      <mode>interpolation</mode>\n",
        "      <start_frame>0</start_frame>\n",
        f"      <stop_frame>{max(video.length - 1, 0)}</stop_frame>\n      <labels>\n",
        *(
            f"        <label>\n          <name>{_escape(n)}</name>\n"
            "          <type>mask</type>\n        </label>\n"
            for n in labels
        ),
        "      </labels>\n      <original_size>\n",
        f"        <width>{video.width}</width>\n        <height>{video.height}</height>\n",
        "      </original_size>\n    </task>\n  </meta>\n",
    ]
    for track in video.tracks:
        if not track.segmentations:
            continue  # CVAT has no track without a shape
        parts.append(
            f'  <track id="{track.track_id - 1}" label={quoteattr(track.category)} source="manual">\n'
        )
        for frame in sorted(track.segmentations):
            parts.append(_mask_element(decode_rle(track.segmentations[frame]).astype(bool), frame))
            if frame + 1 < video.length and frame + 1 not in track.segmentations:
                parts.append(_outside_element(frame + 1))
        parts.append("  </track>\n")
    parts.append("</annotations>\n")
    return "".join(parts)


def _escape(text: str) -> str:
    return quoteattr(text)[1:-1]


def write_gt(dataset: dict, out_path, *, overwrite: bool = False) -> None:
    """Write one "CVAT for video 1.1" XML per video: ``out_path/<video>.xml`` (atomic folder), or
    ``out_path`` itself when it ends in ``.xml`` and the dataset has one video.

    Object ids: CVAT track id = ``track_id - 1`` (the reader adds 1). Empty masks are left out.
    """
    labels = [c["name"] for c in dataset["categories"]]
    videos = dataset_videos(dataset)
    for video in videos:
        for track in video.tracks:
            track.segmentations = {f: s for f, s in track.segmentations.items() if decode_rle(s).any()}
    if str(out_path).endswith(".xml"):
        if len(videos) != 1:
            raise StreamvisError(
                f"{out_path}: one .xml holds one video, the dataset has {len(videos)}; give a folder"
            )
        with atomic_open(out_path, "w", encoding="utf-8") as f:
            f.write(_video_xml(videos[0], labels))
        return
    with atomic_output_dir(out_path, overwrite=overwrite) as tmp:
        for video in videos:
            (tmp / f"{video.name}.xml").write_text(_video_xml(video, labels), encoding="utf-8")
