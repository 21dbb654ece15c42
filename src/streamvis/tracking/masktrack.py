"""The official MaskTrack R-CNN association (``TwoStageDetector.simple_test_bboxes`` of
youtubevos/MaskTrackRCNN @ 10e5d7d), reproduced exactly; facts.md s.3 in ../shared/reference/masktrack.

Per frame, with n detections (in the detector's output order) and M tracks in memory:

- ``S = [0 | E_det . E_memᵀ]`` (n, 1+M): the tracking head's raw dot products of the detection
  embeddings with the memory embeddings, after a constant "new object" logit 0 (column 0).
- ``comp = log_softmax(S) + 1.0*log(score) + 2.0*[0 | IoU] + 10*[1 | same label]``: IoU with the
  +1 pixel convention against each track's last box, "same label" against the label **stored at
  the track's creation**; the new column always gets the +10 (official ``add_bbox_dummy=True``).
- each detection picks ``argmax(comp)`` (ties: the first column), all scores computed before any
  memory update. Column 0 starts a new track (ids consecutive in detection order, never reused).
  Track j is claimed greedily in detection order: a claim is accepted when its comp is strictly
  higher than the best accepted so far (initially -100); the accepted detection overwrites the
  track's box and embedding. Net effect: per track, the claimant with the highest comp wins
  (ties: the first); every other claimant is **dropped** (official oddity: it does not start a
  track). The stored label is **never updated** (official oddity).
- tracks never expire; an empty frame leaves the memory untouched (the first frame of a video
  resets it).

Results (official ``results2json_videoseg``): one entry per track; score = float32 mean of the
scores of the detections it output; category = majority vote of their labels (``np.bincount``
argmax: ties go to the smallest label).

`MaskTrackAssociation` is the rule over tensors (self-contained, what the golden tests drive);
`MaskTrackTracker` adapts it to the tracker protocol (``update(instances, frame_index)`` /
``finalize()``, `streamvis.tracking.base.Track`).

Registered as ``"masktrack"`` in `streamvis.tracking.TRACKERS` (``--tracker masktrack``, the default of
the ``masktrack`` method; options ``--tracker-set KEY=VALUE``). The model
(`streamvis.models.masktrack.model.MaskTrackRCNN.predict`) gives, per frame and in the detector's
output order (class-major for <= 10 detections, facts.md s.7.6): boxes in original-image pixels,
0-based classes, scores, masks pasted to the original size, and ``embeddings`` = ``TrackHead.embed``
of the 7x7 RoI features of the detection boxes scaled back to network-input pixels
(``boxes * scale_factor``, official commit 4e92e86).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from streamvis.errors import ConfigError
from streamvis.ops.boxes import box_iou
from streamvis.structures import Instances
from streamvis.tracking.base import Track, encode_frame_masks, track_to_result, unpack_instances

MATCH_COEFF = (1.0, 2.0, 10.0)  # official config: track_head match_coeff=[1.0, 2.0, 10]
BBOX_DUMMY_IOU = 0.0  # official TrackHead default bbox_dummy_iou=0 (IoU of the "new" column)
INITIAL_BEST_SCORE = -100.0  # official: best_match_scores = np.ones(M) * (-100)


@dataclass(frozen=True)
class MaskTrackOptions:
    """Options of the MaskTrack R-CNN association; the defaults reproduce the official code.

    Args:
        match_coeff: weights of (log detection score, IoU, same label) in the comp score.
        bbox_dummy_iou: IoU given to the "new object" column.
        box_plus_one: IoU with widths ``x2 - x1 + 1`` (official mmdet v0.5); False: ``x2 - x1``.
        update_label: fix: a matched track's stored label becomes the detection's label (official:
            the label of the detection that created the track, forever).
        losers_start_tracks: fix: a detection that loses a conflict for a track (or whose comp is
            <= -100) starts a new track (official: it is dropped from the output).
    """

    match_coeff: tuple[float, float, float] = MATCH_COEFF
    bbox_dummy_iou: float = BBOX_DUMMY_IOU
    box_plus_one: bool = True
    update_label: bool = False
    losers_start_tracks: bool = False

    def __post_init__(self):
        if len(self.match_coeff) != 3:
            raise ConfigError(f"tracker option 'match_coeff' needs 3 weights (log score, IoU, same label), "
                              f"got {list(self.match_coeff)}")
        object.__setattr__(self, "match_coeff", tuple(float(c) for c in self.match_coeff))

    @classmethod
    def from_kwargs(cls, **kwargs) -> MaskTrackOptions:
        """Options from keyword arguments; an unknown name is a `ConfigError` listing the valid ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(kwargs) - set(names))
        if unknown:
            raise ConfigError(f"tracker 'masktrack' has no option {', '.join(unknown)}; its options: "
                              f"{', '.join(names)}")
        return cls(**kwargs)


@dataclass
class AssociationStep:
    """What one frame's association decided (n detections, M tracks in memory before the frame).

    Attributes:
        track_ids: (n,) int64 0-based track index of each detection, -1 for a dropped detection.
        official_ids: (n,) int64 the official ``det_obj_ids``: like `track_ids`, except that a
            claimant accepted first and beaten later keeps the track's index (a duplicate).
        outputs: (track index, detection index) pairs of the detections that are output, one per
            track, in the official result order (first occurrence in `official_ids`).
        new_tracks: indices of the tracks created in this frame.
        match_scores: (n, 1+M) tracking-head logits, None when no association ran.
        comp_scores: (n, 1+M) comp scores, None when no association ran.
    """

    track_ids: Tensor
    official_ids: Tensor
    outputs: list[tuple[int, int]]
    new_tracks: list[int]
    match_scores: Tensor | None = None
    comp_scores: Tensor | None = None


class MaskTrackAssociation:
    """The official association over tensors; the memory holds one row per track ever created.

    Memory rows: last box (4,), embedding (D,) and stored label of each track, in creation order.

    Args:
        options: the rule's options (official by default).
    """

    def __init__(self, options: MaskTrackOptions | None = None):
        self.options = options or MaskTrackOptions()
        self.reset()

    def reset(self) -> None:
        """Forget every track (the official code does this at the first frame of a video)."""
        self.boxes: Tensor | None = None  # (M, 4) float32
        self.embeddings: Tensor | None = None  # (M, D)
        self.labels: Tensor | None = None  # (M,) int64

    def __len__(self) -> int:
        return 0 if self.boxes is None else int(self.boxes.shape[0])

    def comp_scores(self, match_scores: Tensor, scores: Tensor, ious: Tensor, same_label: Tensor) -> Tensor:
        """The official ``compute_comp_scores(..., add_bbox_dummy=True)`` on (n, 1+M) logits.

        Args:
            match_scores: (n, 1+M) tracking-head logits (column 0 = new object).
            scores: (n,) detection scores.
            ious: (n, M) IoU of detections with the tracks' last boxes.
            same_label: (n, M) 1.0 where a detection's label equals the track's stored label.

        Returns:
            (n, 1+M) comp scores, summed in the official order.
        """
        score_coeff, iou_coeff, label_coeff = self.options.match_coeff
        n = match_scores.shape[0]
        ious = torch.cat([ious.new_full((n, 1), self.options.bbox_dummy_iou), ious], dim=1)
        same_label = torch.cat([same_label.new_ones((n, 1)), same_label], dim=1)
        log_prob = torch.log_softmax(match_scores, dim=1)
        # official: match_ll + c0 * log(score) + c1 * ious + c2 * label_delta, summed left to right
        return (log_prob + score_coeff * torch.log(scores[:, None]) + iou_coeff * ious
                + label_coeff * same_label)

    def step(self, boxes: Tensor, scores: Tensor, labels: Tensor, embeddings: Tensor, *,
             is_first: bool = False) -> AssociationStep:
        """Associate one frame's detections and update the memory.

        Args:
            boxes: (n, 4) xyxy boxes in original-image pixels (the official IoU space).
            scores: (n,) detection scores in (0, 1].
            labels: (n,) int64 0-based classes.
            embeddings: (n, D) tracking-head embeddings of the detections.
            is_first: the frame is the first of a video: the memory is reset first.

        Returns:
            The frame's `AssociationStep`.
        """
        n = int(boxes.shape[0])
        if is_first:
            self.reset()
        empty = torch.zeros(0, dtype=torch.int64)
        if n == 0:
            return AssociationStep(track_ids=empty, official_ids=empty, outputs=[], new_tracks=[])
        boxes, embeddings = boxes[:, :4].float(), embeddings.float()
        scores, labels = scores.float(), labels.long()
        if len(self) and embeddings.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"MaskTrackAssociation: embeddings of size {embeddings.shape[1]}, but the "
                             f"tracks in memory have embeddings of size {self.embeddings.shape[1]}")
        if len(self) == 0:
            ids = torch.arange(n, dtype=torch.int64)
            self.boxes, self.embeddings, self.labels = boxes.clone(), embeddings.clone(), labels.clone()
            return AssociationStep(track_ids=ids, official_ids=ids.clone(),
                                   outputs=[(i, i) for i in range(n)], new_tracks=list(range(n)))
        match = torch.cat([embeddings.new_zeros((n, 1)), embeddings @ self.embeddings.t()], dim=1)
        same_label = (self.labels[None, :] == labels[:, None]).float()  # (n, M)
        # official mmdet v0.5 bbox_overlaps: +1 widths, no clamp of the union
        ious = box_iou(boxes, self.boxes, pixel_offset=1.0 if self.options.box_plus_one else 0.0, eps=None)
        comp = self.comp_scores(match, scores, ious, same_label)
        step = self._resolve(comp)
        step.match_scores, step.comp_scores = match, comp
        self._update_memory(step, boxes, embeddings, labels)
        return step

    def _resolve(self, comp: Tensor) -> AssociationStep:
        """The greedy official loop over detections; returns ids, outputs and new tracks."""
        n, num_tracks = comp.shape[0], comp.shape[1] - 1
        choice = comp.argmax(dim=1).tolist()  # first maximum on ties, as torch.max on CPU
        best = [INITIAL_BEST_SCORE] * num_tracks
        holder = [-1] * num_tracks  # detection currently holding each track
        claimed = [False] * n  # accepted when it was met (maybe beaten later)
        for det, column in enumerate(choice):
            if column and float(comp[det, column]) > best[column - 1]:
                best[column - 1], holder[column - 1], claimed[det] = float(comp[det, column]), det, True
        track_ids, official_ids, new_tracks = [], [], []
        for det, column in enumerate(choice):
            if column and holder[column - 1] == det:
                track_ids.append(column - 1)
            elif column == 0 or self.options.losers_start_tracks:
                new_tracks.append(num_tracks + len(new_tracks))
                track_ids.append(new_tracks[-1])
            else:
                track_ids.append(-1)
            keeps_duplicate = claimed[det] and track_ids[-1] == -1
            official_ids.append(column - 1 if keeps_duplicate else track_ids[-1])
        outputs, seen = [], set()
        for track in official_ids:
            if track >= 0 and track not in seen:
                seen.add(track)
                winner = track_ids.index(track)
                outputs.append((track, winner))
        return AssociationStep(track_ids=torch.tensor(track_ids, dtype=torch.int64),
                               official_ids=torch.tensor(official_ids, dtype=torch.int64),
                               outputs=outputs, new_tracks=new_tracks)

    def _update_memory(self, step: AssociationStep, boxes: Tensor, embeddings: Tensor,
                       labels: Tensor) -> None:
        """Winners overwrite their track's box and embedding (label too if `update_label`); new rows
        are appended."""
        num_old = len(self)
        matched = [(track, det) for track, det in step.outputs if track < num_old]
        if matched:
            tracks = torch.tensor([t for t, _ in matched])
            dets = torch.tensor([d for _, d in matched])
            self.boxes[tracks] = boxes[dets]
            self.embeddings[tracks] = embeddings[dets]
            if self.options.update_label:
                self.labels[tracks] = labels[dets]
        if step.new_tracks:
            new_dets = torch.tensor([step.track_ids.tolist().index(t) for t in step.new_tracks])
            self.boxes = torch.cat([self.boxes, boxes[new_dets]])
            self.embeddings = torch.cat([self.embeddings, embeddings[new_dets]])
            self.labels = torch.cat([self.labels, labels[new_dets]])


class MaskTrackTracker:
    """The official MaskTrack R-CNN rule behind the tracker protocol (one video per tracker).

    `update` needs `Instances` with ``boxes`` (N, 4) in original-image pixels, ``scores`` (N,),
    ``classes`` (N,) 0-based, ``masks`` (N, H, W) (bitmasks, or probabilities thresholded at > 0.5)
    and ``embeddings`` (N, D) from the MaskTrack tracking head, in the detector's output order.

    Args:
        options: the rule's options (official by default).
    """

    Options = MaskTrackOptions

    def __init__(self, options: MaskTrackOptions | None = None):
        self.association = MaskTrackAssociation(options)
        self.tracks: list[Track] = []
        self._labels: list[list[int]] = []  # per track: label of every detection it output
        self.last_step: AssociationStep | None = None

    @property
    def options(self) -> MaskTrackOptions:
        return self.association.options

    def update(self, instances: Instances, frame_index: int) -> list[Track]:
        """Associate one frame.

        Args:
            instances: the frame's detections (see the class docstring).
            frame_index: 0-based frame index; 0 resets the memory (official ``is_first``).

        Returns:
            The tracks that output a detection in this frame, in the official result order; their
            ``masks[frame_index]`` is set.
        """
        if frame_index == 0 and self.tracks:
            raise ValueError("MaskTrackTracker tracks one video: build a new tracker for the next one")
        if not instances.has("embeddings"):
            raise ValueError("MaskTrackTracker needs the 'embeddings' field, (N, D) outputs of the MaskTrack "
                             "tracking head for the detection boxes; the instances have fields "
                             f"{sorted(instances.get_fields())}")
        dets = unpack_instances(instances)
        step = self.association.step(torch.from_numpy(dets.boxes), torch.from_numpy(dets.scores),
                                     torch.from_numpy(dets.classes), torch.from_numpy(dets.embeddings),
                                     is_first=frame_index == 0)
        self.last_step = step
        winners = [det for _, det in step.outputs]
        rles = encode_frame_masks(dets.masks[winners]) if winners else []
        active = []
        for (track_index, det), rle in zip(step.outputs, rles):
            if track_index == len(self.tracks):
                self.tracks.append(Track(track_id=track_index + 1, category=int(dets.classes[det]),
                                         box=dets.boxes[det].copy(), embedding=dets.embeddings[det].copy(),
                                         first_frame=frame_index, last_frame=frame_index))
                self._labels.append([])
            track = self.tracks[track_index]
            track.box, track.embedding = dets.boxes[det].copy(), dets.embeddings[det].copy()
            track.last_frame = frame_index
            track.scores.append(float(dets.scores[det]))
            track.masks[frame_index] = rle
            self._labels[track_index].append(int(dets.classes[det]))
            track.category = majority_label(self._labels[track_index])
            active.append(track)
        return active

    def finalize(self) -> list[Track]:
        """Every track of the video in id order, with the official video score and category."""
        for track, labels in zip(self.tracks, self._labels):
            track.category = majority_label(labels)
            track.video_score = float(np.asarray(track.scores, dtype=np.float32).mean())
        return list(self.tracks)

    def results(self, *, video_id: int, num_frames: int) -> list[dict]:
        """The official results entries of this video (``finalize`` then `track_to_result`)."""
        return [track_to_result(t, video_id=video_id, num_frames=num_frames) for t in self.finalize()]


def majority_label(labels: list[int]) -> int:
    """The most frequent label; ties go to the smallest (official ``np.bincount(l).argmax()``)."""
    return int(np.bincount(np.asarray(labels, dtype=np.int64)).argmax())
