"""The official CrossVIS association rule (hustvl/CrossVIS ``tools/test_vis.py``), reproduced exactly.

Per frame, every detection is compared with the **last member** of every track ever created
(tracks never end). The match score is cosine(raw re-ID features) + box IoU (union + 1e-5),
and -1 when the classes differ. A detection whose best score is below 0.4 (or that has no
track to compare with) starts a new track; otherwise it claims its best track (first one on
ties). When several detections claim one track, the one with the strictly higher match score
keeps it and the others are **dropped** (they do not start tracks). Frames without detections
leave the tracks untouched. Video score = mean member score; category = class of the first
member (all members share it); a track's mask in a frame is the average of its members there
thresholded at 0.5, and frames without a member give None. See reference facts.md, section 8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamvis.errors import ConfigError
from streamvis.structures import Instances
from streamvis.tracking.base import Track, box_iou, cosine_similarity, encode_frame_masks, unpack_instances

NEW_TRACK_THRESHOLD = 0.4  # official: `max(scores) < 0.4` starts a new track
CLASS_MISMATCH_SCORE = -1.0  # official: compute_scores returns -1. when the classes differ
IOU_EPS = 1e-5  # official: iou_of(..., eps=1e-5) adds eps to the union


@dataclass(frozen=True)
class CrossVISTrackerOptions:
    """Options of `CrossVISTracker` (``--tracker-set KEY=VALUE``); the default is the official rule.

    Attributes:
        new_track_threshold: best match score below which a detection starts a new track
            (official 0.4; scores lie in [-1, 2]).
    """

    new_track_threshold: float = NEW_TRACK_THRESHOLD

    def __post_init__(self):
        if not -1.0 <= self.new_track_threshold <= 2.0:
            raise ConfigError(f"new_track_threshold must lie in [-1, 2] (the range of the match score), "
                              f"got {self.new_track_threshold}")


class CrossVISTracker:
    """Online tracker with the official CrossVIS rule; state is one embedding and box per track.

    Args:
        options: `CrossVISTrackerOptions` (default: the official rule).
    """

    def __init__(self, options: CrossVISTrackerOptions | None = None):
        self.options = options if options is not None else CrossVISTrackerOptions()
        self.tracks: list[Track] = []

    def match_scores(self, boxes: np.ndarray, classes: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """(N, T) official match scores of N detections against the last member of T tracks."""
        if not self.tracks:
            return np.zeros((len(boxes), 0))
        track_boxes = np.stack([t.box for t in self.tracks])  # (T, 4)
        track_embeddings = np.stack([t.embedding for t in self.tracks])  # (T, D)
        track_classes = np.array([t.category for t in self.tracks])  # (T,)
        scores = cosine_similarity(embeddings, track_embeddings)
        scores = scores + box_iou(boxes, track_boxes, eps=IOU_EPS).astype(np.float64)
        return np.where(classes[:, None] == track_classes[None, :], scores, CLASS_MISMATCH_SCORE)

    def _resolve(self, scores: np.ndarray) -> tuple[dict[int, int], list[int]]:
        """Claims in detection order -> ({track index: detection}, [detections starting tracks])."""
        winners: dict[int, tuple[float, int]] = {}
        new_detections = []
        for det in range(scores.shape[0]):
            if scores.shape[1] == 0 or scores[det].max() < self.options.new_track_threshold:
                new_detections.append(det)
                continue
            best = int(np.argmax(scores[det]))  # first maximum, as list.index(max(...))
            if best not in winners or scores[det, best] > winners[best][0]:
                winners[best] = (float(scores[det, best]), det)  # a replaced claimant is dropped
        return {track: det for track, (_, det) in winners.items()}, new_detections

    def update(self, instances: Instances, frame_index: int) -> list[Track]:
        """Associate one frame's detections; returns the tracks that got a member in this frame.

        Args:
            instances: the frame's detections with ``boxes`` (N, 4), ``scores`` (N,), ``classes`` (N,),
                ``masks`` (N, H, W) and ``embeddings`` (N, D) (raw re-ID features).
            frame_index: 0-based index of the frame in the video.

        Returns:
            Matched and new tracks, in track-id order; their ``masks[frame_index]`` is set.
        """
        if len(instances) == 0:
            return []
        dets = unpack_instances(instances)
        claims, new_detections = self._resolve(self.match_scores(dets.boxes, dets.classes, dets.embeddings))
        members: dict[int, list[int]] = {track: [det] for track, det in claims.items()}
        for det in new_detections:
            members[len(self.tracks)] = [det]
            self.tracks.append(self._new_track(dets, det, frame_index))
        for track_index, det_indices in members.items():
            self._add_members(self.tracks[track_index], dets, det_indices, frame_index)
        return [self.tracks[i] for i in sorted(members)]

    def _new_track(self, dets, det: int, frame_index: int) -> Track:
        return Track(
            track_id=len(self.tracks) + 1,
            category=int(dets.classes[det]),
            box=dets.boxes[det].copy(),
            embedding=dets.embeddings[det].copy(),
            first_frame=frame_index,
            last_frame=frame_index,
        )

    @staticmethod
    def _add_members(track: Track, dets, det_indices: list[int], frame_index: int) -> None:
        """Append this frame's members; their dense masks are averaged, thresholded and RLE-encoded."""
        last = det_indices[-1]
        track.box, track.embedding = dets.boxes[last].copy(), dets.embeddings[last].copy()
        track.last_frame = frame_index
        track.scores.extend(float(dets.scores[d]) for d in det_indices)
        mean_mask = dets.masks[det_indices].mean(axis=0)  # (H, W); one member per frame under this rule
        track.masks[frame_index] = encode_frame_masks(mean_mask[None])[0]

    def finalize(self) -> list[Track]:
        """All tracks of the video, in creation order (the official tracker outputs every one)."""
        return list(self.tracks)
