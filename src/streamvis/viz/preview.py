"""Dataset previews: the ground truth of a few videos as a contact sheet PNG and an MP4."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from streamvis.viz.draw import contact_sheet, overlay_instances

DATASET_PREVIEW_VIDEOS = 6  # rows of the contact sheet (videos that have objects first)
DATASET_PREVIEW_COLUMNS = 6  # frames per row, evenly spaced over the video
DATASET_PREVIEW_MP4_VIDEOS = 8  # videos played one after the other in the MP4
DATASET_PREVIEW_FPS = 8


def _overlaid_frame(data: dict, video: dict, t: int, image_root: Path) -> np.ndarray:
    """(H, W, 3) uint8 BGR frame `t` of `video` with its ground-truth masks, ids and class names."""
    from streamvis.data.masks import decode_rle
    from streamvis.data.video import read_image

    image = read_image(image_root / video["file_names"][t])
    names = {c["id"]: c["name"] for c in data["categories"]}
    masks, ids, labels = [], [], []
    for ann in data["annotations"]:
        seg = ann["segmentations"][t] if ann["video_id"] == video["id"] else None
        if seg is not None:
            masks.append(decode_rle(seg).astype(bool))
            ids.append(ann["id"])
            labels.append(names[ann["category_id"]])
    masks_array = np.stack(masks) if masks else np.zeros((0, *image.shape[:2]), bool)
    return overlay_instances(image, masks_array, ids, labels, alpha=0.35)


def _preview_videos(data: dict, count: int) -> list[dict]:
    """`count` videos, busiest first (3+ objects, then 2, 1, 0: more objects show more occlusion)."""
    from collections import Counter

    objects = Counter(ann["video_id"] for ann in data["annotations"])
    ordered = sorted(data["videos"], key=lambda v: (-min(objects[v["id"]], 3), v["id"]))
    return ordered[:count]


def write_dataset_preview(data: dict, out_dir) -> tuple[Path, Path]:
    """Write ``out_dir/preview.png`` (contact sheet) and ``out_dir/preview.mp4`` with the ground truth drawn.

    The frames are read back from disk and the json masks decoded, so the preview shows what a
    model will be trained on, not what the generator meant to write (``streamvis synth --preview``).

    Args:
        data: the YouTube-VIS dict written to ``out_dir/instances.json``.
        out_dir: the dataset folder (frames under ``out_dir/JPEGImages``).

    Returns:
        (png path, mp4 path).

    Raises:
        ValueError: the dataset has no videos.
    """
    import io

    from streamvis.data.video import write_video
    from streamvis.utils.io import atomic_write_bytes

    out_dir = Path(out_dir)
    image_root = out_dir / "JPEGImages"
    if not data["videos"]:
        raise ValueError("the dataset has no videos to preview")
    tiles = []
    for video in _preview_videos(data, DATASET_PREVIEW_VIDEOS):
        steps = np.linspace(0, video["length"] - 1, DATASET_PREVIEW_COLUMNS).round().astype(int)
        tiles += [_overlaid_frame(data, video, int(t), image_root) for t in steps]
    sheet = contact_sheet(tiles, DATASET_PREVIEW_COLUMNS)  # (rows * H, columns * W, 3) BGR
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(sheet[..., ::-1])).save(buffer, format="PNG")
    png_path, mp4_path = out_dir / "preview.png", out_dir / "preview.mp4"
    atomic_write_bytes(png_path, buffer.getvalue())
    frames = (
        _overlaid_frame(data, video, t, image_root)
        for video in _preview_videos(data, DATASET_PREVIEW_MP4_VIDEOS)
        for t in range(video["length"])
    )
    write_video(mp4_path, frames, fps=DATASET_PREVIEW_FPS)
    return png_path, mp4_path
