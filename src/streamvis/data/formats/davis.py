"""DAVIS-style indexed-palette PNG folders (class-agnostic instance ids).

Layout (DAVIS 2017 ``Annotations/480p``)::

    ROOT/<video>/00000.png  00001.png ...     one PNG per frame, mode "P" (or "L"), pixel = object id

Pixel value 0 is background and 1..254 are objects; 255 is DAVIS's "void" border value and is not
an object (`void_value`). The frames of a video are its PNGs in natural file-name order and must all
have the same size. DAVIS has no classes: every object gets the category `category` (default
``"object"``); a round trip keeps masks and ids, not class names. `ROOT` may also be one video's
folder of PNGs.

Written PNGs use the DAVIS palette (the PASCAL VOC colour map, as in davis2017-evaluation's
``_pascal_color_map``). Ground-truth masks that overlap cannot be written (one id per pixel);
results are painted by increasing score, so the higher-scored object wins shared pixels.
"""

from __future__ import annotations

from pathlib import Path

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
from streamvis.errors import DataFormatError, StreamvisError

VOID_VALUE = 255  # official DAVIS: 255 marks "void" pixels (object borders in DAVIS 2016)
MAX_OBJECTS = 254  # ids 1..254 fit an 8-bit palette image next to 0 (background) and 255 (void)


def davis_palette() -> list[int]:
    """The 256-colour PASCAL VOC / DAVIS palette as PIL's flat ``[r0, g0, b0, r1, ...]`` list."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):  # spread the index's bits over the high bits of r, g, b
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette.extend((r, g, b))
    return palette


def _video_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise StreamvisError(f"{root}: not a folder (DAVIS annotations are folders of PNGs)")
    if any(p.suffix.lower() == ".png" for p in root.iterdir()):
        return [root]
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name))
    if not folders:
        raise StreamvisError(f"{root}: holds neither PNG frames nor video folders")
    return folders


def _read_video(folder: Path, *, image_ext: str, category: str, void_value: int | None) -> Video:
    pngs = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() == ".png"), key=lambda p: natural_key(p.name)
    )
    if not pngs:
        raise DataFormatError("a video folder without PNG frames", path=folder)
    tracks: dict[int, Track] = {}
    size = None
    for frame, png in enumerate(pngs):
        ids = read_png(png, modes=("P", "L"), what="a DAVIS annotation")
        check_frame_size(png, ids.shape, size, pngs[0])
        size = ids.shape
        ignore = (0,) if void_value is None else (0, void_value)
        for object_id, rle in id_map_to_rles(ids, ignore).items():
            tracks.setdefault(object_id, Track(track_id=object_id, category=category)).segmentations[
                frame
            ] = rle
    return Video(
        name=folder.name,
        height=int(size[0]),
        width=int(size[1]),
        file_names=[f"{folder.name}/{p.stem}{image_ext}" for p in pngs],
        tracks=[tracks[k] for k in sorted(tracks)],
    )


def read_gt(
    path, *, image_ext: str = ".jpg", category: str = "object", void_value: int | None = VOID_VALUE
) -> dict:
    """Read DAVIS annotation folders into a YouTube-VIS dict.

    Args:
        path: a folder of video folders (``Annotations/480p``) or one video's folder of PNGs.
        image_ext: suffix of the frame images named in ``file_names`` (``<video>/<stem><ext>``).
        category: the one category every object gets.
        void_value: pixel value that is not an object (None: every non-zero value is an object).

    Returns:
        The YouTube-VIS dict; ``track_id`` = the DAVIS object id.

    Raises:
        DataFormatError: a PNG that is not indexed / grey, unreadable, or whose size changes mid-video.
    """
    videos = [
        _read_video(folder, image_ext=image_ext, category=category, void_value=void_value)
        for folder in _video_folders(Path(path))
    ]
    return build_dataset(videos, [category], info={"source": "davis"})


def read_results(
    path, *, dataset: dict, image_ext: str = ".jpg", void_value: int | None = VOID_VALUE
) -> list[dict]:
    """Read per-frame instance PNGs of a method as results of `dataset`'s videos (score 1).

    Every object gets `dataset`'s first category (DAVIS is class-agnostic).
    """
    category = dataset["categories"][0]["name"]
    videos = [
        _read_video(folder, image_ext=image_ext, category=category, void_value=void_value)
        for folder in _video_folders(Path(path))
    ]
    return build_results(videos, dataset)


def _write_videos(videos: list[Video], out_path, *, overlap: str, overwrite: bool) -> None:
    palette = davis_palette()
    with atomic_output_dir(out_path, overwrite=overwrite) as tmp:
        for video in videos:
            ids = [t.track_id for t in video.tracks]
            if ids and max(ids) > MAX_OBJECTS:
                raise StreamvisError(
                    f"video {video.name!r}: object id {max(ids)} does not fit a DAVIS PNG "
                    f"(ids 1..{MAX_OBJECTS})"
                )
            folder = tmp / video.name
            folder.mkdir(parents=True, exist_ok=True)
            for frame, file_name in enumerate(video.file_names):
                where = f"video {video.name!r}, frame {frame} ({file_name})"
                id_map = paint_id_map(
                    video.tracks, ids, frame, video.height, video.width, overlap=overlap, where=where
                )
                image = Image.fromarray(id_map, mode="P")
                image.putpalette(palette)
                image.save(folder / f"{Path(file_name).stem}.png")


def write_gt(dataset: dict, out_path, *, overlap: str = "error", overwrite: bool = False) -> None:
    """Write `dataset` as DAVIS palette PNGs, ``out_path/<video>/<frame stem>.png`` (atomic folder).

    Object ids are the annotations' ``track_id`` (else 1..N per video). Categories are not stored.
    ``overlap="later"`` lets later annotations win shared pixels instead of refusing overlaps.

    Raises:
        DataFormatError: two objects overlap in a frame (naming the video, frame and objects).
        StreamvisError: more than 254 objects in a video.
    """
    _write_videos(dataset_videos(dataset), out_path, overlap=overlap, overwrite=overwrite)


def write_results(
    results: list[dict], dataset: dict, out_path, *, score_threshold: float = 0.0, overwrite: bool = False
) -> None:
    """Write results as per-frame instance PNGs (the higher score wins overlapping pixels).

    Object ids are the entries' ``track_id`` (else 1..N per video in file order); entries scored
    below `score_threshold` are left out (at most 254 objects per video fit).
    """
    videos = results_videos(results, dataset, score_threshold)
    _write_videos(videos, out_path, overlap="score", overwrite=overwrite)
