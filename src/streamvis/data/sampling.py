"""Which frame pairs a training step sees: the frame index, key/reference choice, resumable streams.

`index_videos` reads a YouTube-VIS json once and lists, per video, the frames that can be key or
reference frames and the annotations present on each frame.

Everything random here is drawn from a `numpy.random.Generator` seeded by a tuple of integers, so a
sample is a pure function of its key: ``(seed, iteration, rank, slot)`` on the iteration-based
stream (`IterationBatchSampler`) and ``(seed, epoch, index)`` on the classic epoch path. Workers,
restarts and resumes therefore reproduce the same pairs, scales and flips.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Sampler

from streamvis.data.ytvis import load_ytvis

# Seed-sequence tags keep the two stream kinds apart: an epoch key never equals an iteration key.
_ITERATION_STREAM = 1
_EPOCH_STREAM = 2


@dataclass(frozen=True)
class AnnotationRecord:
    """What the loader needs of one non-crowd annotation (the lists are the json's own, not copies).

    Args:
        annotation_id: the json annotation id.
        class_index: 0-based contiguous class (position of the category id in sorted order).
        identity: global identity id, 1..num_identities.
        segmentations: per-frame segmentations (RLE / polygons / None).
        bboxes: per-frame ``[x, y, w, h]`` or None, or None when the json has no ``bboxes``.
    """

    annotation_id: int
    class_index: int
    identity: int
    segmentations: list
    bboxes: list | None


@dataclass(frozen=True)
class VideoRecord:
    """One video: its frames and, per annotated frame, the annotations present on it (json order).

    Args:
        video_id: the json video id.
        height, width: the frame size the json declares.
        file_names: frame paths relative to the image root.
        annotated_frames: sorted indices of frames with at least one present non-crowd annotation.
        frame_annotations: frame index -> the `AnnotationRecord` present on it.
    """

    video_id: int
    height: int
    width: int
    file_names: tuple[str, ...]
    annotated_frames: tuple[int, ...]
    frame_annotations: dict[int, tuple[AnnotationRecord, ...]]


@dataclass(frozen=True)
class DatasetIndex:
    """The indexed dataset: categories (sorted by id), the number of identities and the videos."""

    category_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    num_identities: int
    videos: tuple[VideoRecord, ...]


def _present(record: AnnotationRecord, areas: list | None, frame: int) -> bool:
    """Whether the annotation has a (non-empty, as far as ``areas`` tells) mask on `frame`."""
    if record.segmentations[frame] is None:
        return False
    return not (areas is not None and areas[frame] is not None and areas[frame] <= 0)


def index_videos(annotation_json) -> DatasetIndex:
    """Read and validate a YouTube-VIS json once and index (video, frame) -> annotations.

    Identities are numbered 1.. over the non-crowd annotations in json order; crowd annotations
    are dropped. A frame is annotated when a non-crowd annotation has a segmentation there whose
    ``areas`` entry (if any) is not 0.
    """
    data = load_ytvis(annotation_json)
    categories = sorted(data["categories"], key=lambda c: c["id"])
    class_of = {c["id"]: i for i, c in enumerate(categories)}
    per_video: dict[int, list[tuple[AnnotationRecord, list | None]]] = {v["id"]: [] for v in data["videos"]}
    identity = 0
    for ann in data.get("annotations") or []:
        if ann.get("iscrowd", 0):
            continue
        identity += 1
        record = AnnotationRecord(ann["id"], class_of[ann["category_id"]], identity, ann["segmentations"],
                                  ann.get("bboxes"))
        per_video[ann["video_id"]].append((record, ann.get("areas")))
    videos = tuple(_video_record(v, per_video[v["id"]]) for v in data["videos"])
    return DatasetIndex(
        category_ids=tuple(c["id"] for c in categories),
        class_names=tuple(str(c["name"]) for c in categories), num_identities=identity, videos=videos,
    )


def _video_record(video: dict, annotations: list[tuple[AnnotationRecord, list | None]]) -> VideoRecord:
    frames: dict[int, list[AnnotationRecord]] = {}
    for record, areas in annotations:
        for frame in range(video["length"]):
            if _present(record, areas, frame):
                frames.setdefault(frame, []).append(record)
    return VideoRecord(
        video_id=video["id"], height=video["height"], width=video["width"],
        file_names=tuple(video["file_names"]), annotated_frames=tuple(sorted(frames)),
        frame_annotations={f: tuple(records) for f, records in frames.items()},
    )


@dataclass(frozen=True)
class SampleRequest:
    """One item asked of `YTVISDataset`: which key frame, and the key of its random choices.

    Args:
        index: position of the key frame in the dataset (0 <= index < len(dataset)).
        rng_key: non-negative integers seeding ``numpy.random.default_rng`` for this sample's
            reference frame, short side and flip.
    """

    index: int
    rng_key: tuple[int, ...]


@dataclass(frozen=True)
class PairChoice:
    """The random decisions of one training pair; both frames share `short_side` and `flip`."""

    reference_frame: int
    short_side: int
    flip: bool


def sample_rng(rng_key: Sequence[int]) -> np.random.Generator:
    """A generator seeded by a tuple of non-negative integers (numpy SeedSequence entropy)."""
    key = [int(k) for k in rng_key]
    if any(k < 0 for k in key):
        raise ValueError(f"rng key entries must be non-negative, got {tuple(key)}")
    return np.random.default_rng(key)


def epoch_rng_key(seed: int, epoch: int, index: int) -> tuple[int, ...]:
    """The rng key of dataset item `index` on the epoch path (map-style indexing with an int)."""
    return (_EPOCH_STREAM, int(seed), int(epoch), int(index))


def iteration_rng_key(seed: int, iteration: int, rank: int, slot: int) -> tuple[int, ...]:
    """The rng key of batch slot `slot` of iteration `iteration` on rank `rank`."""
    return (_ITERATION_STREAM, int(seed), int(iteration), int(rank), int(slot))


def reference_candidates(annotated_frames: Sequence[int], key_frame: int, reference_range: int) -> list[int]:
    """Annotated frames other than `key_frame` with ``|frame - key_frame| <= reference_range``.

    Args:
        annotated_frames: sorted frame indices of one video that have a non-crowd instance.
        key_frame: the key frame's index.
        reference_range: the largest allowed distance (official: SAMPLE_REGION 20).
    """
    lo = bisect.bisect_left(annotated_frames, key_frame - reference_range)
    hi = bisect.bisect_right(annotated_frames, key_frame + reference_range)
    return [f for f in annotated_frames[lo:hi] if f != key_frame]


def sample_pair_choice(
    rng: np.random.Generator,
    *,
    annotated_frames: Sequence[int],
    key_frame: int,
    reference_range: int,
    short_sides: Sequence[int],
    flip_prob: float,
) -> PairChoice:
    """Draw the reference frame, the short side and the flip of one pair (always in this order).

    The reference frame is uniform over `reference_candidates`; when there is none the key frame
    itself is the reference (official CrossVIS). The short side is a uniform choice among
    `short_sides` (detectron2 ResizeShortestEdge "choice"); the flip happens with `flip_prob`.

    Returns:
        The `PairChoice`.
    """
    candidates = reference_candidates(annotated_frames, key_frame, reference_range)
    reference = int(candidates[rng.integers(len(candidates))]) if candidates else int(key_frame)
    short_side = int(short_sides[rng.integers(len(short_sides))])
    flip = bool(rng.random() < flip_prob)
    return PairChoice(reference_frame=reference, short_side=short_side, flip=flip)


class _EpochPermutations:
    """``permutation(epoch)`` of range(n) seeded by (seed, epoch); the last few are cached."""

    def __init__(self, num_samples: int, seed: int, cache_size: int = 2):
        self.num_samples = num_samples
        self.seed = seed
        self.cache_size = cache_size
        self._cache: dict[int, np.ndarray] = {}

    def __call__(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            rng = sample_rng((_ITERATION_STREAM, self.seed, epoch))
            self._cache[epoch] = rng.permutation(self.num_samples)
        return self._cache[epoch]


def iteration_sample_indices(
    num_samples: int,
    *,
    batch_size: int,
    seed: int,
    iteration: int,
    rank: int = 0,
    world_size: int = 1,
    permutations: _EpochPermutations | None = None,
) -> list[int]:
    """Dataset indices of the batch of `iteration` on `rank`: a pure function of its arguments.

    All ranks read one global stream: the concatenation of per-"epoch" permutations of
    range(num_samples), each seeded by (seed, epoch). Iteration t on rank r takes the positions
    ``(t * world_size + r) * batch_size + k`` for k < batch_size, so every key frame is seen once
    per pass over the data, over all ranks together, and no two ranks share a position.

    Returns:
        `batch_size` indices into the dataset.
    """
    if num_samples <= 0:
        raise ValueError("cannot sample from an empty dataset")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    permutations = permutations or _EpochPermutations(num_samples, seed)
    first = (iteration * world_size + rank) * batch_size
    indices = []
    for position in range(first, first + batch_size):
        epoch, offset = divmod(position, num_samples)
        indices.append(int(permutations(epoch)[offset]))
    return indices


class IterationBatchSampler(Sampler):
    """An infinite batch sampler over iteration numbers, for ``DataLoader(batch_sampler=...)``.

    Batch t (t = start_iter, start_iter + 1, ...) is the list of `SampleRequest` whose indices come
    from `iteration_sample_indices` and whose rng keys are ``iteration_rng_key(seed, t, rank, k)``:
    resuming at `start_iter` yields exactly the batches an uninterrupted run yields from there.

    Args:
        num_samples: len(dataset).
        batch_size: pairs per batch on this rank.
        seed: the experiment seed (>= 0).
        rank, world_size: this process's place among the data-parallel processes.
        start_iter: the first iteration to yield.
    """

    def __init__(
        self, num_samples: int, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
        start_iter: int = 0,
    ):
        if batch_size <= 0 or seed < 0 or start_iter < 0:
            raise ValueError(f"need batch_size > 0, seed >= 0, start_iter >= 0; got {batch_size}, {seed}, "
                             f"{start_iter}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_iter = start_iter
        self._permutations = _EpochPermutations(num_samples, seed)

    def batch(self, iteration: int) -> list[SampleRequest]:
        """The requests of one iteration's batch on this rank."""
        indices = iteration_sample_indices(
            self.num_samples, batch_size=self.batch_size, seed=self.seed, iteration=iteration,
            rank=self.rank, world_size=self.world_size, permutations=self._permutations,
        )
        return [
            SampleRequest(index, iteration_rng_key(self.seed, iteration, self.rank, slot))
            for slot, index in enumerate(indices)
        ]

    def __iter__(self) -> Iterator[list[SampleRequest]]:
        for iteration in itertools.count(self.start_iter):
            yield self.batch(iteration)
