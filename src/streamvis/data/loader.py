"""Training data: `YTVISDataset` (frame pairs of YouTube-VIS-format videos), collation and loaders.

One dataset item is a *pair* of frames of one video: a key frame with at least one non-crowd
instance and a reference frame drawn within ``reference_range`` frames of it (facts.md, s.9).
Both frames get the same resize and flip. Images stay unpadded uint8 BGR; the model pads them to
a multiple of ``size_divisibility`` (32) after normalization, in `transforms.normalize_and_pad`,
exactly as the official ``ImageList.from_tensors`` does.

Two ways to iterate:
- `build_train_loader`: an infinite stream over iteration numbers; the batch of iteration t on rank
  r is a pure function of (seed, t, r), so resuming at ``start_iter`` replays the same batches.
- the classic epoch path: ``DataLoader(dataset, sampler=DistributedSampler(dataset, seed=...),
  collate_fn=collate_pairs)`` with ``dataset.set_epoch(e)`` beside ``sampler.set_epoch(e)``
  (or `SeededSampler`, which carries the epoch to persistent workers too).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from streamvis.data.masks import decode_rles, segmentation_to_rle
from streamvis.data.sampling import (
    IterationBatchSampler,
    PairChoice,
    SampleRequest,
    VideoRecord,
    epoch_rng_key,
    index_videos,
    sample_pair_choice,
    sample_rng,
)
from streamvis.data.transforms import augment_frame, boxes_from_masks
from streamvis.errors import ConfigError, DataFormatError
from streamvis.structures import FrameBatch, Instances, PairBatch

__all__ = [
    "DataConfig",
    "FrameSample",
    "PairSample",
    "SeededSampler",
    "YTVISDataset",
    "build_train_dataset",
    "build_train_loader",
    "collate_pairs",
]


@dataclass(frozen=True)
class DataConfig:
    """Datasets and the training-pair sampling/augmentation.

    The defaults suit the synthetic data (frames 192 pixels high): frames keep their size, and
    the pair sampling is the official one. For YouTube-VIS use the official
    ``short_sides: [360], max_size: 640`` (configs/CrossVIS/R_50_1x.yaml INPUT.MIN_SIZE_TRAIN).

    Args:
        train_json, train_images: the training annotations (YouTube-VIS json) and frame folder.
        valid_json, valid_images: the validation split (None: no evaluation during training).
        short_sides: training short sides; each pair draws one uniformly (multi-scale "choice").
        max_size: the long side after resizing is at most this.
        test_short_side, test_max_size: the single inference resize.
        flip_prob: probability of a horizontal flip (the same for both frames of a pair).
        reference_range: the reference frame is at most this many frames from the key frame.
        num_workers: DataLoader worker processes.
        size_divisibility: the model pads images to a multiple of this (normalize_and_pad).
    """

    train_json: str = ""
    train_images: str = ""
    valid_json: str | None = None
    valid_images: str | None = None
    short_sides: tuple[int, ...] = (192,)  # synthetic frame height; official: (360,)
    max_size: int = 320  # official: 640 (INPUT.MAX_SIZE_TRAIN)
    test_short_side: int = 192  # official: 360 (INPUT.MIN_SIZE_TEST)
    test_max_size: int = 320  # official: 640 (INPUT.MAX_SIZE_TEST)
    flip_prob: float = 0.5  # official: detectron2 RandomFlip default
    reference_range: int = 20  # official: MODEL.CROSSVIS.CROSSOVER.SAMPLE_REGION
    num_workers: int = 2
    size_divisibility: int = 32  # official: backbone size_divisibility (ImageList padding)

    def __post_init__(self):
        object.__setattr__(self, "short_sides", tuple(int(s) for s in self.short_sides))
        if not self.short_sides or min(self.short_sides) < 1:
            raise ConfigError(f"data.short_sides must be a non-empty list of sizes >= 1, got "
                              f"{list(self.short_sides)}")
        if min(self.max_size, self.test_short_side, self.test_max_size, self.size_divisibility) < 1:
            raise ConfigError("data.max_size, test_short_side, test_max_size, size_divisibility must be >= 1")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ConfigError(f"data.flip_prob must be in [0, 1], got {self.flip_prob}")
        if self.reference_range < 0 or self.num_workers < 0:
            raise ConfigError("data.reference_range and data.num_workers must be >= 0")


@dataclass
class FrameSample:
    """One augmented training frame.

    Args:
        image: (3, H, W) uint8 BGR, resized and flipped, not padded.
        instances: ``gt_boxes`` (K, 4) float32 xyxy, ``gt_classes`` (K,) int64, ``gt_masks``
            (K, H, W) bool, ``gt_ids`` (K,) int64 global identity ids (1-based), in annotation order.
        video_id: the json video id.
        frame_index: the frame's index in the video.
    """

    image: torch.Tensor
    instances: Instances
    video_id: int
    frame_index: int


@dataclass
class PairSample:
    """A dataset item: a key and a reference frame of one video, augmented alike."""

    key: FrameSample
    reference: FrameSample
    short_side: int
    flip: bool


class YTVISDataset(Dataset):
    """Frame pairs of a YouTube-VIS-format dataset (json + frame folder), map-style.

    Item i is the i-th key frame: videos in json order, annotated frames in frame order. A key
    frame has at least one non-crowd annotation with a non-null segmentation; the reference frame
    is drawn among the video's other such frames within `reference_range` (the key frame itself
    when there is none). Crowd annotations never become targets; instances whose mask is empty
    after augmentation are left out (detectron2 ``filter_empty_instances``).

    Identities: every non-crowd annotation (one track) gets a global id 1..num_identities in json
    order. Classes: categories sorted by id become 0..num_classes-1.

    Args:
        annotation_json: the YouTube-VIS json.
        image_root: the folder the videos' ``file_names`` are relative to.
        short_sides, max_size, flip_prob, reference_range: see `DataConfig`.
        seed: seeds the random choices of integer indexing (the epoch path; see `set_epoch`).
    """

    def __init__(
        self, annotation_json, image_root, *, short_sides: Sequence[int] = (192,), max_size: int = 320,
        flip_prob: float = 0.5, reference_range: int = 20, seed: int = 0,
    ):
        self.annotation_json = str(annotation_json)
        self.image_root = str(image_root)
        self.short_sides = tuple(int(s) for s in short_sides)
        self.max_size = int(max_size)
        self.flip_prob = float(flip_prob)
        self.reference_range = int(reference_range)
        self.seed = int(seed)
        self.epoch = 0
        index = index_videos(self.annotation_json)
        self.category_ids: tuple[int, ...] = index.category_ids
        self.class_names: tuple[str, ...] = index.class_names
        self.num_identities: int = index.num_identities
        self.videos: tuple[VideoRecord, ...] = index.videos
        # (position in self.videos, frame index) of every key frame
        self._keys = [(v, f) for v, video in enumerate(self.videos) for f in video.annotated_frames]

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def __len__(self) -> int:
        return len(self._keys)

    def set_epoch(self, epoch: int) -> None:
        """Make integer indexing draw the choices of `epoch` (call it with ``sampler.set_epoch``)."""
        self.epoch = int(epoch)

    def key_frame(self, index: int) -> tuple[int, int]:
        """(json video id, frame index) of item `index`'s key frame."""
        video, frame = self._keys[index]
        return self.videos[video].video_id, frame

    def __getitem__(self, item: int | SampleRequest) -> PairSample:
        """Item `item`: an int (choices keyed by seed, epoch, index) or a `SampleRequest`."""
        if not isinstance(item, SampleRequest):
            index = int(item)
            item = SampleRequest(index, epoch_rng_key(self.seed, self.epoch, index % max(len(self), 1)))
        if not -len(self) <= item.index < len(self):
            raise IndexError(f"index {item.index} out of range for {len(self)} key frames")
        video_pos, key = self._keys[item.index]
        choice = sample_pair_choice(
            sample_rng(item.rng_key), annotated_frames=self.videos[video_pos].annotated_frames,
            key_frame=key, reference_range=self.reference_range, short_sides=self.short_sides,
            flip_prob=self.flip_prob,
        )
        return self.pair(item.index, choice)

    def pair(self, index: int, choice: PairChoice) -> PairSample:
        """Item `index` with the given reference frame, short side and flip (no randomness)."""
        video_pos, key = self._keys[index]
        video_id = self.videos[video_pos].video_id
        opts = {"short_side": choice.short_side, "max_size": self.max_size, "flip": choice.flip}
        return PairSample(
            key=FrameSample(*self._load_frame(video_pos, key, **opts), video_id, key),
            reference=FrameSample(*self._load_frame(video_pos, choice.reference_frame, **opts), video_id,
                                  choice.reference_frame),
            short_side=choice.short_side, flip=choice.flip,
        )

    def _load_frame(self, video_pos: int, frame: int, *, short_side: int, max_size: int, flip: bool):
        """Read, augment and filter one frame: (image (3, H', W') uint8 BGR, `Instances`)."""
        video = self.videos[video_pos]
        path = os.path.join(self.image_root, video.file_names[frame])
        where = f"video {video.video_id} frame {frame}"
        # resize/flip act on each channel alike, so they run on RGB; BGR comes with the final CHW copy
        image = read_rgb_image(path, where=where, expected_size=(video.height, video.width))
        records = video.frame_annotations.get(frame, ())
        masks, boxes = _frame_masks_and_boxes(video, frame, records, self.annotation_json)
        image, masks, boxes = augment_frame(image, masks, boxes, short_side=short_side, max_size=max_size,
                                            flip=flip)
        # official: detectron2 filter_empty_instances (box side > 1e-5 and a non-empty mask)
        box_sides = boxes[:, 2:] - boxes[:, :2]  # (N, 2) width, height
        keep = masks.any(axis=(1, 2)) & (box_sides > 1e-5).all(axis=1)
        instances = Instances(
            image.shape[:2],
            gt_boxes=torch.from_numpy(boxes[keep]),  # (K, 4) float32 xyxy
            gt_classes=torch.tensor([r.class_index for r in records], dtype=torch.int64)[keep],
            gt_masks=torch.from_numpy(np.ascontiguousarray(masks[keep])),  # (K, H', W') bool
            gt_ids=torch.tensor([r.identity for r in records], dtype=torch.int64)[keep],
        )
        chw_bgr = np.ascontiguousarray(image.transpose(2, 0, 1)[::-1])  # (3, H', W') BGR
        return torch.from_numpy(chw_bgr), instances


def read_bgr_image(path, *, where: str = "", expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a frame with PIL into an (H, W, 3) uint8 BGR array (the official input order).

    Raises:
        DataFormatError: the file is missing, unreadable (e.g. truncated) or not `expected_size`.
    """
    return np.ascontiguousarray(read_rgb_image(path, where=where, expected_size=expected_size)[:, :, ::-1])


def read_rgb_image(path, *, where: str = "", expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a frame with PIL into an (H, W, 3) uint8 RGB array.

    Raises:
        DataFormatError: the file is missing, unreadable (e.g. truncated) or not `expected_size`.
    """
    try:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as err:  # missing, truncated or not an image
        raise DataFormatError(f"cannot read the frame: {err}", path=path, where=where or None) from err
    if expected_size is not None and rgb.shape[:2] != tuple(expected_size):
        raise DataFormatError(
            f"the frame is {rgb.shape[0]}x{rgb.shape[1]} (HxW) but the json says "
            f"{expected_size[0]}x{expected_size[1]}", path=path, where=where or None,
        )
    return rgb


def _frame_masks_and_boxes(video: VideoRecord, frame: int, records, annotation_json):
    """Masks (N, H, W) uint8 and xyxy boxes (N, 4) float32 of `records` on `frame`, original size.

    Boxes come from the json ``bboxes`` (XYWH -> XYXY) or, where null, from the mask.
    """
    rles = [
        segmentation_to_rle(r.segmentations[frame], video.height, video.width, path=annotation_json,
                            where=f"annotation id {r.annotation_id}", field=f"segmentations[{frame}]")
        for r in records
    ]
    masks = decode_rles(rles) if rles else np.zeros((0, video.height, video.width), dtype=np.uint8)
    boxes = boxes_from_masks(masks)
    for i, record in enumerate(records):
        box = record.bboxes[frame] if record.bboxes is not None else None
        if box is not None:
            boxes[i] = (box[0], box[1], box[0] + box[2], box[1] + box[3])
    return masks, boxes


def build_train_dataset(config: DataConfig, *, seed: int = 0) -> YTVISDataset:
    """The training `YTVISDataset` of a `DataConfig`."""
    if not config.train_json or not config.train_images:
        raise ConfigError("data.train_json and data.train_images must name the training json and frames")
    return YTVISDataset(
        config.train_json, config.train_images, short_sides=config.short_sides, max_size=config.max_size,
        flip_prob=config.flip_prob, reference_range=config.reference_range, seed=seed,
    )


def collate_pairs(samples: Sequence[PairSample]) -> PairBatch:
    """Batch B `PairSample` into a `PairBatch` (frames[0]: key frames, frames[1]: reference frames).

    Images keep their own sizes (3, H_i, W_i); the model pads them (`normalize_and_pad`).
    """
    key = FrameBatch([s.key.image for s in samples], [s.key.instances for s in samples])
    reference = FrameBatch([s.reference.image for s in samples], [s.reference.instances for s in samples])
    return PairBatch(key, reference)


def _worker_init(worker_id: int) -> None:
    torch.set_num_threads(1)  # decoding/resizing is numpy/PIL; avoid oversubscribing the cores
    # Ctrl-C reaches the whole process group: the main process finishes its iteration and saves a
    # checkpoint (engine/train.py), so a worker must not die first and fail that iteration's batch
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def build_train_loader(
    dataset: YTVISDataset, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
    start_iter: int = 0, num_workers: int = 0,
) -> Iterator[PairBatch]:
    """An infinite, resumable iterator of `PairBatch`, one per training iteration.

    The batch of iteration t on rank r is a pure function of (seed, t, r): its key frames (see
    `sampling.iteration_sample_indices`) and each pair's reference frame, short side and flip
    (rng keyed by (seed, t, r, slot)). Workers do not change it: the DataLoader keeps batch order.

    Args:
        dataset: the training dataset.
        batch_size: pairs per batch on this rank.
        seed: the experiment seed (>= 0).
        rank, world_size: this process among the data-parallel processes.
        start_iter: the first iteration's number (the resumed iteration).
        num_workers: DataLoader worker processes (0: load in this process).

    Returns:
        An iterator; ``next(it)`` is the batch of iteration start_iter, start_iter + 1, ...
    """
    if len(dataset) == 0:
        raise DataFormatError("no frame has a non-crowd instance: there is nothing to train on",
                              path=dataset.annotation_json)
    batch_sampler = IterationBatchSampler(
        len(dataset), batch_size=batch_size, seed=seed, rank=rank, world_size=world_size,
        start_iter=start_iter,
    )
    loader = DataLoader(
        dataset, batch_sampler=batch_sampler, collate_fn=collate_pairs, num_workers=num_workers,
        worker_init_fn=_worker_init if num_workers > 0 else None, persistent_workers=num_workers > 0,
    )
    return iter(loader)


class SeededSampler(Sampler):
    """Wrap an index sampler (e.g. `DistributedSampler`) so each index carries its epoch's rng key.

    ``SeededSampler(DistributedSampler(ds, seed=s), seed=s)`` yields ``SampleRequest(i, (s, epoch,
    i))``: the pairs are deterministic given seed, epoch and rank even with persistent workers
    (which never see a later ``dataset.set_epoch``). `set_epoch` is forwarded to the wrapped sampler.
    """

    def __init__(self, sampler: Sampler, *, seed: int):
        self.sampler = sampler
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[SampleRequest]:
        for index in self.sampler:
            yield SampleRequest(int(index), epoch_rng_key(self.seed, self.epoch, int(index)))
