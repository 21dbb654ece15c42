"""The tracker protocol and what every tracker shares: `Track`, detection unpacking, similarities, results.

The protocol (`Tracker`): a tracker class is built from ONE frozen options dataclass
(``TrackerClass(options)``; the options are checked by the config system and their
``__post_init__``) and tracks one video:

- ``update(instances, frame_index) -> list[Track]``: associate one frame's model output
  (`streamvis.structures.Instances` with ``boxes``, ``scores``, ``classes``, ``masks``,
  ``embeddings``); returns the tracks that got a member in this frame, each with
  ``masks[frame_index]`` set (compressed RLE);
- ``finalize() -> list[Track]``: every track of the video, with its video-level ``score``;
  `track_to_result` turns one into an official results entry (the predictor knows the video id).

Trackers keep bounded state: per live track one box, one or two embeddings and the last mask as
RLE (a track's older RLEs, kept for the results, live in a temporary file: `TrackMasks`). Masks
are RLE-encoded before `update` returns, so no dense mask outlives its frame.
`streamvis.tracking.TRACKERS` maps each tracker's name to its (options class, tracker class).
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pycocotools.mask as mask_util

from streamvis.data.masks import encode_masks
from streamvis.structures import Instances
from streamvis.tracking.track_masks import TrackMasks


@dataclass(eq=False)
class Track:
    """One tracked object of one video.

    Attributes:
        track_id: 1-based id, unique within the video, in creation order.
        category: 0-based class of the track (how it is decided depends on the tracker).
        box: (4,) float32 xyxy box of the last member, in output pixels.
        embedding: (D,) float32 association embedding (last member's or a moving average).
        first_frame, last_frame: frame indices of the first and last member.
        scores: detection score of every member, in frame order.
        masks: frame index -> compressed RLE ``{"size": [H, W], "counts": str}`` of that frame; a
            `TrackMasks` mapping that keeps only the newest entry in memory (older ones go to a
            temporary file), so a track of a long video does not grow memory frame after frame.
        class_votes: class -> summed member score (used by trackers that vote on the class).
        video_score: when set (by a tracker's ``finalize``), the video-level score instead of the
            mean member score.
        hypotheses: other classes this one object may be: 0-based class -> video-level score of
            that hypothesis. `track_results` writes one extra results entry per hypothesis, with
            the track's masks (per-class AP keeps the recall of a second class guess while the
            object stays one track). Empty for trackers with one class per track.
    """

    track_id: int
    category: int
    box: np.ndarray
    embedding: np.ndarray
    first_frame: int
    last_frame: int
    scores: list[float] = field(default_factory=list)
    masks: MutableMapping[int, dict] = field(default_factory=TrackMasks)
    class_votes: dict[int, float] = field(default_factory=dict)
    video_score: float | None = None
    hypotheses: dict[int, float] = field(default_factory=dict)

    @property
    def mean_score(self) -> float:
        """The mean member score (0 without members)."""
        return float(sum(self.scores) / len(self.scores)) if self.scores else 0.0

    @property
    def score(self) -> float:
        """Video-level score: `video_score` if set, else the mean member score (official rule)."""
        return float(self.video_score) if self.video_score is not None else self.mean_score

    @property
    def last_mask(self) -> dict | None:
        """RLE of the last member's mask."""
        return self.masks.get(self.last_frame)

    def __repr__(self) -> str:
        return (
            f"Track(id={self.track_id}, category={self.category}, "
            f"frames={self.first_frame}..{self.last_frame}, members={len(self.scores)}, "
            f"score={self.score:.3f})"
        )


@runtime_checkable
class Tracker(Protocol):
    """What `streamvis.engine.predict.VideoPredictor` needs from a tracker (one video per tracker).

    Attributes:
        options: the frozen options dataclass the tracker was built from.
    """

    options: Any

    def update(self, instances: Instances, frame_index: int) -> list[Track]:
        """Associate one frame's detections; returns the tracks with a member in this frame."""
        ...

    def finalize(self) -> list[Track]:
        """All tracks of the video, in track-id order, with their final video-level score."""
        ...


@dataclass
class TrackerDetections:
    """One frame's detections as numpy arrays (N detections of an (H, W) frame), as trackers use them."""

    boxes: np.ndarray  # (N, 4) float32 xyxy
    scores: np.ndarray  # (N,) float32
    classes: np.ndarray  # (N,) int64, 0-based
    embeddings: np.ndarray  # (N, D) float32, raw
    masks: np.ndarray  # (N, H, W) bool bitmasks, or float32 probabilities in [0, 1]

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, indices: np.ndarray) -> TrackerDetections:
        """The detections at `indices` (a copy), in that order."""
        if len(indices) == len(self) and np.array_equal(indices, np.arange(len(self))):
            return self
        return TrackerDetections(
            *(getattr(self, f)[indices] for f in ("boxes", "scores", "classes", "embeddings", "masks"))
        )


def to_host(*values) -> list:
    """Copy tensors to the host with one synchronisation: where a frame's results leave the device.

    GPU tensors are copied asynchronously (into pinned memory) and the host waits once for all of
    them, instead of once per tensor; CPU tensors are detached; other values pass unchanged.

    Returns:
        The values in order, tensors on the CPU.
    """
    tensors = [hasattr(v, "detach") for v in values]  # (torch is imported only when a tensor comes)
    devices = {v.device for v, is_tensor in zip(values, tensors) if is_tensor and v.device.type == "cuda"}
    copies = [v.detach().to("cpu", non_blocking=bool(devices)) if is_tensor else v
              for v, is_tensor in zip(values, tensors)]
    if devices:
        import torch

        for device in devices:
            torch.cuda.current_stream(device).synchronize()
    return copies


def _numpy(value, dtype) -> np.ndarray:
    if hasattr(value, "numpy"):  # (half-precision outputs are float32 again: engine.inference.AutocastModel)
        value = value.numpy()
    return np.asarray(value, dtype=dtype)


def masks_numpy(masks) -> np.ndarray:
    """Bitmasks stay bool (no 4x float copy of the frame's masks); anything else becomes float32."""
    if hasattr(masks, "numpy"):
        masks = masks.numpy()
    masks = np.asarray(masks)
    return masks if masks.dtype == np.bool_ else masks.astype(np.float32, copy=False)


def unpack_instances(instances: Instances) -> TrackerDetections:
    """Copy the fields a tracker needs out of model `Instances` (any device) into numpy (`to_host`:
    one synchronisation for all of them; the masks are already thresholded, bool)."""
    height, width = instances.image_size
    count = len(instances)
    boxes, scores, classes, embeddings, masks = to_host(
        instances.boxes, instances.scores, instances.classes, instances.embeddings, instances.masks)
    return TrackerDetections(
        boxes=_numpy(boxes, np.float32).reshape(count, 4),
        scores=_numpy(scores, np.float32).reshape(count),
        classes=_numpy(classes, np.int64).reshape(count),
        embeddings=_numpy(embeddings, np.float32).reshape(count, -1 if count else 0),
        masks=masks_numpy(masks).reshape(count, height, width),
    )


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """(N, M) IoU of xyxy boxes; areas are (x2-x1)*(y2-y1), clamped at 0.

    Args:
        eps: added to the union, as the official tracker does (1e-5) to avoid 0/0.
    """
    boxes_a = np.asarray(boxes_a, dtype=np.float32).reshape(-1, 4)[:, None]  # (N, 1, 4)
    boxes_b = np.asarray(boxes_b, dtype=np.float32).reshape(-1, 4)[None]  # (1, M, 4)
    top_left = np.maximum(boxes_a[..., :2], boxes_b[..., :2])
    bottom_right = np.minimum(boxes_a[..., 2:], boxes_b[..., 2:])
    overlap = np.clip(bottom_right - top_left, 0, None).prod(-1)
    area_a = np.clip(boxes_a[..., 2:] - boxes_a[..., :2], 0, None).prod(-1)
    area_b = np.clip(boxes_b[..., 2:] - boxes_b[..., :2], 0, None).prod(-1)
    union = area_a + area_b - overlap
    if eps:
        return overlap / (union + np.float32(eps))
    return np.where(union > 0, overlap / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) cosine similarity of rows of `a` (N, D) and `b` (M, D); 0 for a zero vector."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    norm_a = np.linalg.norm(a, axis=1).astype(np.float64)[:, None]
    norm_b = np.linalg.norm(b, axis=1).astype(np.float64)[None, :]
    dots = (a @ b.T).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = dots / norm_a / norm_b
    return np.nan_to_num(cosine, nan=0.0, posinf=0.0, neginf=0.0)


def _pycoco(rles: Sequence[dict]) -> list[dict]:
    return [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles]


def mask_iou(rles_a: Sequence[dict], rles_b: Sequence[dict]) -> np.ndarray:
    """(N, M) IoU of compressed RLE masks (pycocotools; no dense decode)."""
    if not rles_a or not rles_b:
        return np.zeros((len(rles_a), len(rles_b)), dtype=np.float64)
    ious = mask_util.iou(_pycoco(rles_a), _pycoco(rles_b), [0] * len(rles_b))
    return np.asarray(ious, dtype=np.float64).reshape(len(rles_a), len(rles_b))


def _rle_boxes(rles: Sequence[dict]) -> np.ndarray:
    """(N, 4) xyxy tight pixel boxes of RLE masks (pycocotools toBbox; empty masks give 0-size boxes)."""
    xywh = mask_util.toBbox(_pycoco(rles)).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def overlapping_mask_iou(rles_a: Sequence[dict], rles_b: Sequence[dict]) -> np.ndarray:
    """Exact (N, M) `mask_iou`, computed only for masks whose tight boxes intersect (the rest is 0).

    Model boxes are not used: CondInst masks may reach outside their detection box.
    """
    out = np.zeros((len(rles_a), len(rles_b)), dtype=np.float64)
    if not rles_a or not rles_b:
        return out
    boxes_a, boxes_b = _rle_boxes(rles_a)[:, None], _rle_boxes(rles_b)[None]  # (N, 1, 4), (1, M, 4)
    size = np.minimum(boxes_a[..., 2:], boxes_b[..., 2:]) - np.maximum(boxes_a[..., :2], boxes_b[..., :2])
    touching = (size > 0).all(axis=-1)  # (N, M)
    rows, cols = np.flatnonzero(touching.any(axis=1)), np.flatnonzero(touching.any(axis=0))
    if rows.size and cols.size:
        out[np.ix_(rows, cols)] = mask_iou([rles_a[i] for i in rows], [rles_b[j] for j in cols])
    return out


def coarse_mask_iou(masks: np.ndarray, grid_rows: int = 96) -> np.ndarray:
    """(N, N) IoU of one frame's masks on a grid of every s-th pixel (fast, approximate).

    Args:
        masks: (N, H, W) bool bitmasks or probabilities (> 0.5 is foreground).
        grid_rows: s is chosen so that the short side keeps at least this many samples
            (s = 4 for 360x640 frames; small frames are compared pixel by pixel).
    """
    stride = max(1, min(masks.shape[1:]) // grid_rows)
    grid = (
        (np.asarray(masks)[:, ::stride, ::stride] > 0.5).reshape(len(masks), -1).astype(np.float32)
    )  # (N, P)
    inter = grid @ grid.T  # (N, N)
    areas = grid.sum(axis=1)
    union = areas[:, None] + areas[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)


def encode_frame_masks(masks: np.ndarray) -> list[dict]:
    """RLE of (N, H, W) bitmasks, or of probabilities thresholded at > 0.5 (official)."""
    masks = np.asarray(masks)
    return encode_masks(masks if masks.dtype == np.bool_ else masks > 0.5)


def track_to_result(
    track: Track, *, video_id: int, num_frames: int, category_ids: Sequence[int] | None = None
) -> dict:
    """One official results entry for a track.

    Args:
        video_id: the video's id in the dataset.
        num_frames: frames in the video; ``segmentations`` has one entry per frame (None where the
            track has no member, as the official tracker writes).
        category_ids: 0-based class -> dataset category id; None means ``class + 1`` (official).
    """
    category_id = track.category + 1 if category_ids is None else int(category_ids[track.category])
    segmentations: list[dict | None] = [None] * num_frames
    for frame, rle in track.masks.items():  # one pass in frame order (spilled masks read back once)
        if 0 <= frame < num_frames:
            segmentations[frame] = rle
    return {
        "video_id": int(video_id),
        "score": track.score,
        "category_id": int(category_id),
        "segmentations": segmentations,
    }


def track_results(
    track: Track, *, video_id: int, num_frames: int, category_ids: Sequence[int] | None = None
) -> list[dict]:
    """The official results entries of a track: `track_to_result`, then one per class hypothesis.

    The hypothesis entries (``track.hypotheses``, highest score first, ties by class) share the
    primary entry's ``segmentations`` list (the same object: no copy of the masks).

    Args:
        video_id, num_frames, category_ids: as for `track_to_result`.
    """
    primary = track_to_result(track, video_id=video_id, num_frames=num_frames, category_ids=category_ids)
    entries = [primary]
    for cls, score in sorted(track.hypotheses.items(), key=lambda item: (-item[1], item[0])):
        if cls == track.category:
            continue
        category_id = cls + 1 if category_ids is None else int(category_ids[cls])
        entries.append({"video_id": primary["video_id"], "score": float(score),
                        "category_id": int(category_id), "segmentations": primary["segmentations"]})
    return entries


class SpilledTracks:
    """Tracks that can no longer change, kept in an anonymous temporary file instead of memory.

    A finished track holds one RLE per frame it lived, so keeping every finished track in memory
    would make memory grow with the length of the video. They are pickled to a temporary file
    (written and read only by this object, never a user file) and read back once, by `finalize`.
    """

    def __init__(self):
        self._file = None
        self._count = 0

    def extend(self, tracks) -> None:
        """Append finished tracks."""
        import pickle
        import tempfile

        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="streamvis-tracks-")
        for track in tracks:
            pickle.dump(track, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._count += 1

    def __len__(self) -> int:
        return self._count

    def __iter__(self):
        """The stored tracks, in the order they were added."""
        import pickle

        if self._file is None:
            return
        self._file.seek(0)
        for _ in range(self._count):
            yield pickle.load(self._file)  # noqa: S301 (our own temporary file)
        self._file.seek(0, 2)  # back to the end: more tracks may still be appended
