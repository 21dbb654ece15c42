"""Synthetic video instance segmentation dataset in YouTube-VIS format (the embedded default data).

Each video has a textured background seen through a panning camera with slow lighting drift, and
0-5 textured objects (one shape family and texture family per category, any colour) that move
with changing speed, turn, grow and shrink, enter and leave the frame and occlude each other in
depth order. Frames are written as RGB JPEGs in ``DIR/JPEGImages/<video>/<frame>.jpg`` and the
annotations as ``DIR/instances.json`` (the YouTube-VIS 2021 layout): compressed RLE masks that are
exactly the visible rendered pixels (null where an object is hidden or outside), tight boxes and
areas. Every video has its own random generator derived from (seed, split, video index), so videos
are rendered in parallel and the output is byte-identical whatever the number of workers.

Example::

    json_path = generate_dataset("data/synth_train", num_videos=400, seed=0)
"""

from __future__ import annotations

import io
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from streamvis.data.masks import encode_masks, mask_to_bbox
from streamvis.data.synthetic_scene import SynthVideo, VideoPlan, plan_video, render_video
from streamvis.data.synthetic_shapes import FAMILIES
from streamvis.errors import ConfigError

__all__ = [
    "FAMILIES",
    "SPLITS",
    "SynthConfig",
    "SynthVideo",
    "category_list",
    "generate_dataset",
    "gt_to_results",
    "plan_synthetic_video",
    "render_synthetic_video",
    "video_name",
    "write_dataset",
]

SPLITS = {"train": 0, "valid": 1}  # split -> seed stream: train and valid never share a video
JSON_NAME = "instances.json"  # as YouTube-VIS 2021: DIR/instances.json beside DIR/JPEGImages
IMAGE_DIR = "JPEGImages"


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of a synthetic dataset; the same values always give the same bytes.

    Args:
        num_videos: number of videos.
        seed: non-negative base seed.
        split: "train" or "valid" (different random streams for the same seed).
        size: (H, W) frame size in pixels.
        frames: (min, max) number of frames per video, both inclusive.
        num_classes: categories used, the first `num_classes` of `FAMILIES`.
        jpeg_quality: PIL JPEG quality of the frames.
    """

    num_videos: int
    seed: int = 0
    split: str = "train"
    size: tuple[int, int] = (192, 320)  # small enough for a CPU
    frames: tuple[int, int] = (12, 36)  # about 24 frames on average
    num_classes: int = 8
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        names = ", ".join(f.name for f in FAMILIES)
        checks = [
            (self.num_videos >= 0, f"num_videos must be >= 0, got {self.num_videos}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (self.split in SPLITS, f"split must be one of {sorted(SPLITS)}, got {self.split!r}"),
            (min(self.size) >= 16, f"size (H, W) must be at least 16x16 pixels, got {self.size}"),
            (0 < self.frames[0] <= self.frames[1], f"frames (min, max) need 0 < min <= max: {self.frames}"),
            (1 <= self.num_classes <= len(FAMILIES),
             f"num_classes must be 1..{len(FAMILIES)} (one per shape family: {names}): {self.num_classes}"),
            (1 <= self.jpeg_quality <= 100, f"jpeg_quality must be 1..100, got {self.jpeg_quality}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


def category_list(num_classes: int) -> list[dict]:
    """The json ``categories``: ids 1..num_classes named after their shape family."""
    return [{"id": k + 1, "name": FAMILIES[k].name, "supercategory": "shape"} for k in range(num_classes)]


def video_name(config: SynthConfig, index: int) -> str:
    """Folder name of video `index` (0-based), e.g. ``video_0001``."""
    return f"video_{index + 1:0{max(4, len(str(config.num_videos)))}d}"


def _video_rng(config: SynthConfig, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([config.seed, SPLITS[config.split], index]))


def plan_synthetic_video(config: SynthConfig, index: int) -> VideoPlan:
    """Everything random about video `index` (0-based) of the dataset `config` describes."""
    rng = _video_rng(config, index)
    num_frames = int(rng.integers(config.frames[0], config.frames[1] + 1))
    height, width = config.size
    return plan_video(rng, height=height, width=width, num_frames=num_frames, num_classes=config.num_classes)


def render_synthetic_video(config: SynthConfig, index: int) -> SynthVideo:
    """Render video `index` (0-based) of the dataset `config` describes, in memory.

    Returns:
        `SynthVideo` with frames (T, H, W, 3) uint8 BGR, label maps (T, H, W), amodal areas (T, N)
        and category ids (N,); object k is annotated iff it is visible in some frame.
    """
    return render_video(plan_synthetic_video(config, index))


def _jpeg_bytes(frame_bgr: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    rgb = Image.fromarray(np.ascontiguousarray(frame_bgr[..., ::-1]))  # files are RGB, memory is BGR
    rgb.save(buffer, format="JPEG", quality=quality, subsampling=0)  # 4:4:4: colour edges stay on the masks
    return buffer.getvalue()


def _write_frame(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically (temporary file + rename) but without fsync.

    An fsync per frame (`utils.io.atomic_write_bytes`) cost more than rendering the frame on a busy
    disk (5 ms against 3 ms). A process that dies mid-way leaves no partial frame; the json,
    written last with fsync by `write_ytvis`, commits the dataset. (After a power cut, regenerate.)
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _annotations(video: SynthVideo, video_id: int) -> list[dict]:
    """Annotations (without ids) of the objects visible in at least one frame, in object order."""
    num_frames, height, width = video.labels.shape
    areas = video.visible_areas  # (T, N)
    annotations = []
    for k, category_id in enumerate(video.category_ids):
        if not areas[:, k].any():
            continue  # never visible: not annotated, as in YouTube-VIS
        masks = video.masks(k)  # (T, H, W)
        rles = encode_masks(masks)
        visible = areas[:, k] > 0
        annotations.append({
            "video_id": video_id,
            "category_id": int(category_id),
            "iscrowd": 0,
            "segmentations": [rle if v else None for rle, v in zip(rles, visible)],
            "bboxes": [mask_to_bbox(m) if v else None for m, v in zip(masks, visible)],
            "areas": [int(a) if v else None for a, v in zip(areas[:, k], visible)],
            "width": width,
            "height": height,
            "length": num_frames,
        })
    return annotations


def _write_video(job: tuple[SynthConfig, int, str]) -> tuple[dict, list[dict]]:
    """Render one video, write its JPEG frames; return its json video entry and annotations."""
    config, index, out_dir = job
    video = render_synthetic_video(config, index)
    name = video_name(config, index)
    file_names = [f"{name}/{t:05d}.jpg" for t in range(len(video.frames))]
    Path(out_dir, IMAGE_DIR, name).mkdir(parents=True, exist_ok=True)
    for file_name, frame in zip(file_names, video.frames):
        _write_frame(Path(out_dir, IMAGE_DIR, file_name), _jpeg_bytes(frame, config.jpeg_quality))
    height, width = config.size
    entry = {"id": index + 1, "width": width, "height": height, "length": len(file_names),
             "file_names": file_names}
    return entry, _annotations(video, index + 1)


def _default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _run_jobs(jobs: list, workers: int, progress: bool):
    """Yield `_write_video(job)` in job order (one process, or a pool of `workers`)."""
    from tqdm import tqdm

    bar = dict(total=len(jobs), desc="synth", unit="video", disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        yield from tqdm(map(_write_video, jobs), **bar)
        return
    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        yield from tqdm(pool.imap(_write_video, jobs, chunksize=1), **bar)


def write_dataset(config: SynthConfig, out_dir, *, workers: int | None = None,
                  progress: bool = False) -> Path:
    """Write the dataset `config` describes into `out_dir`.

    Args:
        config: the generation parameters.
        out_dir: output folder (created); frames go to ``out_dir/JPEGImages``.
        workers: processes rendering videos (default min(2, CPU count)); never changes the output.
        progress: show a progress bar.

    Returns:
        Path of the YouTube-VIS json (``out_dir/instances.json``).
    """
    from streamvis.data.ytvis import write_ytvis

    out_dir = Path(out_dir)
    jobs = [(config, index, str(out_dir)) for index in range(config.num_videos)]
    videos, annotations = [], []
    for entry, video_annotations in _run_jobs(jobs, workers or _default_workers(), progress):
        videos.append(entry)
        for ann in video_annotations:
            annotations.append({"id": len(annotations) + 1, **ann})
    info = {"description": "streamvis synthetic video instance segmentation dataset", "version": "1.0",
            "contributor": "streamvis", "generator": {**asdict(config), "module": __name__}}
    data = {"info": info, "licenses": [], "videos": videos, "categories": category_list(config.num_classes),
            "annotations": annotations}
    json_path = out_dir / JSON_NAME
    write_ytvis(json_path, data)  # drawn by viz.write_dataset_preview (streamvis synth --preview)
    return json_path


def generate_dataset(out_dir, *, num_videos: int, seed: int, split: str = "train",
                     size: tuple[int, int] = (192, 320), frames: tuple[int, int] = (12, 36),
                     num_classes: int = 8, workers: int | None = None) -> Path:
    """Generate a synthetic YouTube-VIS dataset (see `SynthConfig` for the arguments).

    Returns:
        Path of the json (``out_dir/instances.json``); frames are in ``out_dir/JPEGImages``.
    """
    config = SynthConfig(num_videos=num_videos, seed=seed, split=split, size=tuple(size),
                         frames=tuple(frames), num_classes=num_classes)
    return write_dataset(config, out_dir, workers=workers)


def gt_to_results(gt: dict) -> list[dict]:
    """Perfect results for a ground truth: one entry per annotation, score 1.0, the same masks.

    Args:
        gt: a YouTube-VIS dataset dict.

    Returns:
        Results entries ``{video_id, category_id, score, segmentations}`` (evaluate to AP 1.0).
    """
    return [
        {"video_id": ann["video_id"], "category_id": ann["category_id"], "score": 1.0,
         "segmentations": list(ann["segmentations"])}
        for ann in gt["annotations"]
    ]


def synthetic_stream(num_frames: int, *, size=(192, 320), num_classes: int = 8, seed: int = 0
                     ) -> Iterator[np.ndarray]:
    """`num_frames` BGR frames (H, W, 3) uint8: synthetic valid videos 0, 1, 2, ... back to back.

    A long "video" for streaming tests and benchmarks (benchmarks/bench_memory.py); only one short
    video (<= 36 frames) is in memory at a time.
    """
    config = SynthConfig(num_videos=num_frames, seed=seed, split="valid", size=tuple(size),
                         num_classes=num_classes)
    produced, index = 0, 0
    while produced < num_frames:
        video_frames = render_synthetic_video(config, index).frames[: num_frames - produced]  # (T, H, W, 3)
        yield from video_frames
        produced += len(video_frames)
        index += 1
