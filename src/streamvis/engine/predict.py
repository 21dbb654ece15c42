"""Inference: a streaming per-frame predictor, and batch prediction of a whole dataset.

`VideoPredictor` takes one BGR frame at a time: resize (data/transforms.py), `model.predict`,
`tracker.update`. Memory stays bounded however long the video: each track keeps one box, one
or two embeddings and compressed RLE masks (one per frame it appears in); dense masks live
only while their frame is processed. `predict_dataset` runs it over every video of a
YouTube-VIS-format dataset and returns the official results entries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from streamvis.data.transforms import resize_image, shortest_edge_size
from streamvis.data.video import read_image
from streamvis.errors import DataFormatError
from streamvis.tracking import Track, build_tracker, track_to_result

DEFAULT_TEST_SHORT_SIDE = 360  # official: INPUT.MIN_SIZE_TEST of configs/CrossVIS
DEFAULT_TEST_MAX_SIZE = 640  # official: INPUT.MAX_SIZE_TEST


def _model_device(model) -> torch.device:
    parameters = getattr(model, "parameters", None)
    if parameters is None:
        return torch.device("cpu")
    first = next(iter(parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def preprocess_frame(frame_bgr: np.ndarray, config=None) -> torch.Tensor:
    """Resize a (H, W, 3) uint8 BGR frame to the model's test size; returns (3, h, w) uint8."""
    short_side = getattr(config, "test_short_side", DEFAULT_TEST_SHORT_SIDE)
    max_size = getattr(config, "test_max_size", DEFAULT_TEST_MAX_SIZE)
    size = shortest_edge_size(frame_bgr.shape[0], frame_bgr.shape[1], short_side, max_size)
    resized = resize_image(np.ascontiguousarray(frame_bgr), size)  # (h, w, 3)
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))


def category_ids_for(config, categories: Sequence[dict] | None = None) -> list[int] | None:
    """0-based class -> dataset category id, or None for the official ``class + 1``.

    Uses, in order: ``config.category_ids``; the dataset `categories` matched by
    ``config.class_names``; the dataset categories sorted by id when there is one per class
    (the training convention, data/sampling.py); otherwise None.
    """
    ids = getattr(config, "category_ids", None)
    if ids:
        return [int(i) for i in ids]
    if not categories:
        return None
    names = getattr(config, "class_names", None)
    by_name = {str(c["name"]): int(c["id"]) for c in categories}
    if names and all(str(n) in by_name for n in names):
        return [by_name[str(n)] for n in names]
    num_classes = getattr(config, "num_classes", None)
    if num_classes is None or num_classes == len(categories):
        return sorted(int(c["id"]) for c in categories)
    return None


class VideoPredictor:
    """Segment and track the instances of one video, one frame at a time.

    Args:
        model: has ``predict(images, output_sizes) -> list[Instances]`` and ``config`` (test sizes).
        tracker: a tracker object, or a name for `build_tracker` ("default", "crossvis").
        video_id: the id written into results entries.
        category_ids: 0-based class -> category id for results (None: ``class + 1``).
    """

    def __init__(
        self, model, tracker="default", *, video_id: int = 1, category_ids: Sequence[int] | None = None
    ):
        self.model = model
        self.tracker = build_tracker(tracker) if isinstance(tracker, str) else tracker
        self.video_id = video_id
        self.category_ids = category_ids
        self.device = _model_device(model)
        self.num_frames = 0

    def update(self, frame_bgr: np.ndarray) -> list[Track]:
        """Process the next frame.

        Args:
            frame_bgr: (H, W, 3) uint8 BGR frame at its original size.

        Returns:
            The tracks with a member in this frame; ``track.masks[frame_index]`` holds its RLE.
        """
        frame_bgr = np.asarray(frame_bgr)
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) BGR frame, got shape {frame_bgr.shape}")
        image = preprocess_frame(frame_bgr, getattr(self.model, "config", None)).to(self.device)
        with torch.inference_mode():
            (instances,) = self.model.predict([image], output_sizes=[tuple(frame_bgr.shape[:2])])
        tracks = self.tracker.update(instances, self.num_frames)
        self.num_frames += 1
        return tracks

    @property
    def frame_index(self) -> int:
        """Index of the last processed frame (-1 before the first)."""
        return self.num_frames - 1

    def finalize(self) -> list[dict]:
        """Official results entries of all tracks: ``{video_id, score, category_id, segmentations}``."""
        return [
            track_to_result(
                t, video_id=self.video_id, num_frames=self.num_frames, category_ids=self.category_ids
            )
            for t in self.tracker.finalize()
        ]


FrameCallback = Callable[[dict, int, np.ndarray, list[Track]], None]


def _load_dataset(gt_json_or_dict) -> tuple[dict, Path | None]:
    if isinstance(gt_json_or_dict, dict):
        return gt_json_or_dict, None
    from streamvis.data.ytvis import load_ytvis

    return load_ytvis(gt_json_or_dict), Path(gt_json_or_dict)


def predict_video(
    predictor: VideoPredictor, frames, *, on_frame=None, video: dict | None = None
) -> list[dict]:
    """Feed `frames` (an iterable of BGR frames) to `predictor`; returns its results entries.

    Args:
        on_frame: called as ``on_frame(video, frame_index, frame_bgr, tracks)`` after each frame.
    """
    for frame in frames:
        tracks = predictor.update(frame)
        if on_frame is not None:
            on_frame(video, predictor.frame_index, frame, tracks)
    return predictor.finalize()


def _video_frames(video: dict, image_root: Path, path, progress_bar):
    for index, file_name in enumerate(video["file_names"]):
        frame = read_image(image_root / file_name)
        if frame.shape[:2] != (video["height"], video["width"]):
            raise DataFormatError(
                f"frame {file_name} is {frame.shape[1]}x{frame.shape[0]}, the video says "
                f"{video['width']}x{video['height']}",
                path=path,
                where=f"video id {video['id']}",
                field=f"file_names[{index}]",
            )
        yield frame
        if progress_bar is not None:
            progress_bar.update(1)


def predict_dataset(
    model,
    gt_json_or_dict,
    image_root,
    *,
    tracker: str = "default",
    tracker_kwargs: dict | None = None,
    progress: bool = True,
    on_frame: FrameCallback | None = None,
) -> list[dict]:
    """Predict every video of a YouTube-VIS-format dataset into official results entries.

    Args:
        model: as for `VideoPredictor`.
        gt_json_or_dict: the dataset json (path, validated) or its loaded dict; annotations unused.
        image_root: folder that the videos' ``file_names`` are relative to.
        tracker: tracker name; a fresh tracker is built per video with `tracker_kwargs`.
        progress: show a tqdm bar over all frames.
        on_frame: optional per-frame callback (see `predict_video`), e.g. to draw overlays.

    Returns:
        One entry per track: ``{video_id, score, category_id, segmentations: [RLE | None] * length}``.
    """
    from tqdm import tqdm

    data, path = _load_dataset(gt_json_or_dict)
    category_ids = category_ids_for(getattr(model, "config", None), data.get("categories"))
    total = sum(len(v["file_names"]) for v in data["videos"])
    results: list[dict] = []
    with tqdm(total=total, desc="predict", unit="frame", disable=not progress) as bar:
        for video in data["videos"]:
            predictor = VideoPredictor(
                model,
                build_tracker(tracker, **(tracker_kwargs or {})),
                video_id=video["id"],
                category_ids=category_ids,
            )
            frames = _video_frames(video, Path(image_root), path, bar)
            results.extend(predict_video(predictor, frames, on_frame=on_frame, video=video))
    return results
