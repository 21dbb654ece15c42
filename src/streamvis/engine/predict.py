"""Inference: a streaming per-frame predictor, and batch prediction of a whole dataset.

`VideoPredictor` takes one BGR frame at a time: resize (data/transforms.py), `model.predict`,
`tracker.update`. Memory stays bounded however long the video: each track keeps one box, one
or two embeddings and compressed RLE masks (one per frame it appears in); dense masks live
only while their frame is processed. `predict_dataset` runs it over every video of a
YouTube-VIS-format dataset and returns the official results entries; `predict_dataset_video` is
one video of it, which engine/shard.py runs over torchrun ranks (``streamvis predict`` on a dataset).
With ``prefetch=N`` they decode and resize frames N ahead in a background thread
(`VideoPredictor.prepare`, data/prefetch.py); how the network itself runs (precision, compile) is
engine/inference.py's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streamvis.data.prefetch import prefetched
from streamvis.data.transforms import resize_image, shortest_edge_size
from streamvis.data.video import read_image
from streamvis.errors import DataFormatError
from streamvis.tracking import Track, Tracker, build_tracker, track_results


def _model_device(model) -> torch.device:
    parameters = getattr(model, "parameters", None)
    if parameters is None:
        return torch.device("cpu")
    first = next(iter(parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def preprocess_frame(frame_bgr: np.ndarray, config) -> torch.Tensor:
    """Resize a (H, W, 3) uint8 BGR frame to the model's test size; returns (3, h, w) uint8.

    Args:
        frame_bgr: (H, W, 3) uint8 BGR.
        config: the model's method config (``test_short_side``, ``test_max_size``: the method
            contract, models/build.py).
    """
    size = shortest_edge_size(frame_bgr.shape[0], frame_bgr.shape[1], config.test_short_side,
                              config.test_max_size)
    resized = resize_image(np.ascontiguousarray(frame_bgr), size)  # (h, w, 3)
    return torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))


def category_ids_for(config, categories: Sequence[dict] | None = None) -> list[int] | None:
    """0-based class -> dataset category id, or None for the official ``class + 1``.

    Uses, in order: ``config.category_ids``; the dataset `categories` matched by
    ``config.class_names``; the dataset categories sorted by id when there is one per class
    (the training convention, data/sampling.py); otherwise None.

    Args:
        config: a method config (``category_ids``, ``class_names``, ``num_classes``: the method
            contract, models/build.py).
        categories: the dataset's ``categories`` entries, if known.
    """
    if config.category_ids:
        return [int(i) for i in config.category_ids]
    if not categories:
        return None
    by_name = {str(c["name"]): int(c["id"]) for c in categories}
    names = config.class_names
    if names and all(str(n) in by_name for n in names):
        return [by_name[str(n)] for n in names]
    if config.num_classes == len(categories):
        return sorted(int(c["id"]) for c in categories)
    return None


def class_names_for(config, categories=None, category_ids=None) -> list[str] | None:
    """0-based class -> display name: the model's class names, else the dataset's category names."""
    if config.class_names:
        return [str(n) for n in config.class_names]
    if categories and category_ids:
        by_id = {int(c["id"]): str(c["name"]) for c in categories}
        return [by_id.get(int(i), f"class {i}") for i in category_ids]
    return None


def default_tracker_name(model) -> str:
    """The tracker the model's method names (`streamvis.models.build.MethodSpec.default_tracker`)."""
    from streamvis.models.build import method_spec

    return method_spec(model.config.method).default_tracker


@dataclass
class PreparedFrame:
    """A frame and its network input, made ahead of `VideoPredictor.update` (`VideoPredictor.prepare`).

    Attributes:
        frame_bgr: (H, W, 3) uint8 BGR at its original size (results are at this size).
        image: (3, h, w) uint8 resized to the test size; in pinned memory when the model is on CUDA,
            so that its upload is asynchronous.
    """

    frame_bgr: np.ndarray
    image: torch.Tensor


class VideoPredictor:
    """Segment and track the instances of one video, one frame at a time.

    Args:
        model: a method's model (models/build.py: ``predict(images, output_sizes) -> list[Instances]``
            and ``config`` with the test sizes).
        tracker: a `streamvis.tracking.base.Tracker`, a `streamvis.tracking.TRACKERS` name, or None
            for the method's default tracker.
        video_id: the id written into results entries.
        category_ids: 0-based class -> category id for results (None: ``class + 1``).
    """

    def __init__(
        self, model, tracker: Tracker | str | None = None, *, video_id: int = 1,
        category_ids: Sequence[int] | None = None,
    ):
        self.model = model
        if tracker is None:
            tracker = default_tracker_name(model)
        self.tracker = build_tracker(tracker) if isinstance(tracker, str) else tracker
        self.video_id = video_id
        self.category_ids = category_ids
        self.device = _model_device(model)
        self.num_frames = 0
        start_video = getattr(model, "start_video", None)
        if callable(start_video):  # stateful methods (PCAN's frame memory): a new video begins
            start_video()

    def prepare(self, frame_bgr: np.ndarray) -> PreparedFrame:
        """Resize a frame for the model on the host (thread-safe: `predict_video` runs it in its
        prefetch thread); pinned when the model is on CUDA."""
        frame_bgr = np.asarray(frame_bgr)
        if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) BGR frame, got shape {frame_bgr.shape}")
        image = preprocess_frame(frame_bgr, self.model.config)
        if self.device.type == "cuda":
            image = image.pin_memory()
        return PreparedFrame(frame_bgr, image)

    def update(self, frame_bgr: np.ndarray | PreparedFrame) -> list[Track]:
        """Process the next frame.

        Args:
            frame_bgr: (H, W, 3) uint8 BGR frame at its original size, or a `PreparedFrame` of it.

        Returns:
            The tracks with a member in this frame; ``track.masks[frame_index]`` holds its RLE.
        """
        frame = frame_bgr if isinstance(frame_bgr, PreparedFrame) else self.prepare(frame_bgr)
        image = frame.image.to(self.device, non_blocking=self.device.type == "cuda")
        with torch.inference_mode():
            (instances,) = self.model.predict([image], output_sizes=[tuple(frame.frame_bgr.shape[:2])])
        tracks = self.tracker.update(instances, self.num_frames)
        self.num_frames += 1
        return tracks

    @property
    def frame_index(self) -> int:
        """Index of the last processed frame (-1 before the first)."""
        return self.num_frames - 1

    def finalize(self) -> list[dict]:
        """Official results entries of all tracks: ``{video_id, score, category_id, segmentations}``.

        A track with class hypotheses (the default tracker) gives one entry per class, sharing masks.
        """
        return [
            entry
            for t in self.tracker.finalize()
            for entry in track_results(
                t, video_id=self.video_id, num_frames=self.num_frames, category_ids=self.category_ids
            )
        ]


FrameCallback = Callable[[dict, int, np.ndarray, list[Track]], None]


def _load_dataset(gt_json_or_dict) -> tuple[dict, Path | None]:
    if isinstance(gt_json_or_dict, dict):
        return gt_json_or_dict, None
    from streamvis.data.ytvis import load_ytvis

    return load_ytvis(gt_json_or_dict), Path(gt_json_or_dict)


def predict_video(
    predictor: VideoPredictor, frames, *, on_frame=None, video: dict | None = None, prefetch: int = 0,
    name: str = "",
) -> list[dict]:
    """Feed `frames` (an iterable of BGR frames) to `predictor`; returns its results entries.

    Args:
        on_frame: called as ``on_frame(video, frame_index, frame_bgr, tracks)`` after each frame.
        prefetch: frames decoded and prepared ahead in a background thread
            (`streamvis.data.prefetch.FramePrefetcher`); 0 reads them in this thread. The results
            do not depend on it.
        name: the input, named when the prefetch thread fails.
    """
    items = prefetched(frames, prefetch, transform=predictor.prepare, name=name)
    try:
        for item in items:
            tracks = predictor.update(item)
            if on_frame is not None:
                frame = item.frame_bgr if isinstance(item, PreparedFrame) else item
                on_frame(video, predictor.frame_index, frame, tracks)
    finally:
        close = getattr(items, "close", None)  # the prefetch thread stops with the loop
        if prefetch > 0 and callable(close):
            close()
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
    tracker: str | None = None,
    tracker_options=None,
    progress: bool = True,
    on_frame: FrameCallback | None = None,
    prefetch: int = 0,
) -> list[dict]:
    """Predict every video of a YouTube-VIS-format dataset into official results entries.

    Args:
        model: as for `VideoPredictor`.
        gt_json_or_dict: the dataset json (path, validated) or its loaded dict; annotations unused.
        image_root: folder that the videos' ``file_names`` are relative to.
        tracker: tracker name (None: the method's default); a fresh tracker is built per video.
        tracker_options: its options dataclass or a mapping of option values (None: defaults).
        progress: show a tqdm bar over all frames.
        on_frame: optional per-frame callback (see `predict_video`), e.g. to draw overlays.
        prefetch: frames read ahead in a background thread (see `predict_video`; 0: none).

    Returns:
        One entry per track: ``{video_id, score, category_id, segmentations: [RLE | None] * length}``.
    """
    from tqdm import tqdm

    data, path = _load_dataset(gt_json_or_dict)
    category_ids = category_ids_for(model.config, data.get("categories"))
    tracker = tracker or default_tracker_name(model)
    total = sum(len(v["file_names"]) for v in data["videos"])
    results: list[dict] = []
    with tqdm(total=total, desc="predict", unit="frame", disable=not progress) as bar:
        for video in data["videos"]:
            results.extend(predict_dataset_video(
                model, video, image_root, tracker=tracker, tracker_options=tracker_options,
                category_ids=category_ids, dataset_path=path, progress_bar=bar, on_frame=on_frame,
                prefetch=prefetch))
    return results


def predict_dataset_video(
    model,
    video: dict,
    image_root,
    *,
    tracker: str,
    tracker_options=None,
    category_ids: Sequence[int] | None = None,
    dataset_path=None,
    progress_bar=None,
    on_frame: FrameCallback | None = None,
    prefetch: int = 0,
) -> list[dict]:
    """Predict one video of a dataset with a fresh tracker (what `predict_dataset` does per video).

    The result depends only on the model, the tracker and this video's frames, so videos can be
    predicted in any order or by different processes (engine/shard.py) with the same output.

    Args:
        model: as for `VideoPredictor`.
        video: a YouTube-VIS video entry (``id``, ``file_names``, ``height``, ``width``).
        image_root: folder its ``file_names`` are relative to.
        tracker: tracker name; tracker_options: its options (None: defaults).
        category_ids: 0-based class -> category id (`category_ids_for`).
        dataset_path: the dataset json, named in errors.
        progress_bar: a tqdm bar advanced once per frame, or None.
        on_frame: optional per-frame callback (see `predict_video`).
        prefetch: frames read ahead in a background thread (see `predict_video`; 0: none).

    Returns:
        The video's results entries, in track order.
    """
    predictor = VideoPredictor(model, build_tracker(tracker, tracker_options), video_id=video["id"],
                               category_ids=category_ids)
    frames = _video_frames(video, Path(image_root), dataset_path, progress_bar)
    return predict_video(predictor, frames, on_frame=on_frame, video=video, prefetch=prefetch,
                         name=f"video id {video['id']}")
