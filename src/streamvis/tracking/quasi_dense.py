"""The quasi-dense tracker of PCAN / QDTrack, reproduced exactly (reference/pcan/facts.md 4.3-4.4).

Official source: ``QuasiDenseSegFeatEmbedTracker`` (``pcan/models/trackers/``), constants from the
merged released config. Per frame with at least one detection (frames without detections skip
the tracker, so nothing changes, not even track deletion):

``match``
1. Sort detections by score, descending.
2. Duplicate removal over the sorted list: detection i is dropped if its IoU with **any** earlier
   detection (dropped ones included, classes ignored) is > 0.7, or > 0.3 when its score < 0.3.
3. If there is at least one tracklet (backdrops alone do not count), compare with the memory
   columns (tracklets in insertion order, then backdrops newest first, id -1): raw dot products
   f = E_det E_mem^T, ``scores = (softmax over columns + softmax over detections) / 2``
   ("bisoftmax"), then times (label_det == label_mem) (after the softmaxes, as official).
4. Greedy over the sorted detections: best column k (first on ties) with conf > 0.5: if k is a
   tracklet and the score > 0.3 the detection takes its id and column k is zeroed in every other
   row; if the score is <= 0.3 it gets -2 (a suppressed weak duplicate). A backdrop column leaves -1.
5. Detections still at -1 with score > 0.7 start new ids (in sorted order).
   Each detection's **reference** for the refine head is the matched tracklet's stored payload
   (mask-head logits and RoI features of its last matched frame), else its own.

``update_memo``
1. Each id > -1 updates its tracklet: velocity (over all 5 box entries, score included, never used
   for matching) averaged over matches; box, label and payload replaced; ``embed = 0.2 old + 0.8 new``.
2. Detections with id -1 whose IoU with every earlier kept detection is <= 0.3 become this frame's
   backdrops (only the newest ``memo_backdrop_frames`` = 1 frame of backdrops is kept).
3. Tracklets not matched for ``memo_tracklet_frames`` = 10 frames are deleted.

`QuasiDenseTracker` is the algorithm over tensors (what the PCAN model drives: match, refine head,
update). `QuasiDenseVideoTracker` adapts it to streamvis' tracker protocol
(``update(instances, frame_index)`` / ``finalize()``).

Opt-in fix of an official oddity (off by default): ``mask_classes_before_softmax`` removes other
classes' columns/rows **before** the bi-softmax, so an object of another class with a similar
embedding no longer lowers a true match's score (official: the class mask is applied after).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from streamvis.errors import ConfigError, StreamvisError
from streamvis.structures import Instances
from streamvis.tracking.base import Track, encode_frame_masks, masks_numpy, to_host

MATCH_METRICS = ("bisoftmax", "softmax", "cosine")  # official QuasiDenseEmbedTracker.match_metric
IOU_UNION_EPS = 1e-6  # mmdet 2.x bbox_overlaps: union clamped at 1e-6


@dataclass(frozen=True)
class QuasiDenseOptions:
    """Options of the quasi-dense tracker; the defaults are the released PCAN config (facts.md 4.3).

    Attributes:
        init_score_threshold: an unmatched detection with a score above this starts a track (0.7).
        obj_score_threshold: a matched detection needs a score above this to take the id (0.3);
            below it, duplicate removal uses the backdrop IoU threshold.
        match_score_threshold: the best association score must exceed this (0.5).
        memo_tracklet_frames: a tracklet unmatched for this many frames is deleted (10).
        memo_backdrop_frames: frames of backdrops kept (1).
        memo_momentum: weight of the **new** embedding in the tracklet's running embedding (0.8).
        nms_conf_threshold: a weak (score <= obj threshold) match above this gets id -2 (0.5).
        nms_backdrop_iou_threshold: duplicate IoU for weak detections and backdrops (0.3).
        nms_class_iou_threshold: duplicate IoU for the other detections (0.7).
        with_cats: only same-class pairs can match (True).
        match_metric: ``"bisoftmax"`` (official config), ``"softmax"`` or ``"cosine"``.
        mask_classes_before_softmax: opt-in fix (off = official), see the module docstring.
    """

    init_score_threshold: float = 0.7
    obj_score_threshold: float = 0.3
    match_score_threshold: float = 0.5
    memo_tracklet_frames: int = 10
    memo_backdrop_frames: int = 1
    memo_momentum: float = 0.8
    nms_conf_threshold: float = 0.5
    nms_backdrop_iou_threshold: float = 0.3
    nms_class_iou_threshold: float = 0.7
    with_cats: bool = True
    match_metric: str = "bisoftmax"
    mask_classes_before_softmax: bool = False

    def __post_init__(self):
        if self.match_metric not in MATCH_METRICS:
            raise ConfigError(
                f"quasi_dense tracker: match_metric {self.match_metric!r} is not one of "
                f"{', '.join(MATCH_METRICS)}"
            )
        if self.memo_tracklet_frames < 1 or self.memo_backdrop_frames < 0:
            raise ConfigError(
                "quasi_dense tracker: memo_tracklet_frames must be >= 1 and memo_backdrop_frames >= 0, got "
                f"{self.memo_tracklet_frames} and {self.memo_backdrop_frames}"
            )


def box_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """(N, M) IoU of xyxy boxes as mmdet 2.x ``bbox_overlaps`` (no +1, union clamped at 1e-6)."""
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    top_left = torch.max(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = torch.min(boxes_a[:, None, 2:4], boxes_b[None, :, 2:4])
    size = (bottom_right - top_left).clamp(min=0)
    overlap = size[..., 0] * size[..., 1]
    union = (area_a[:, None] + area_b[None, :] - overlap).clamp(min=IOU_UNION_EPS)
    return overlap / union


@dataclass
class Tracklet:
    """One live track of the tracker's memory.

    Attributes:
        box: (5,) x1, y1, x2, y2, score of the last match.
        embed: (D,) running embedding.
        label: class of the last match.
        last_frame: frame index of the last match.
        velocity: (5,) mean per-frame change of `box` (official; unused for matching).
        acc_frame: number of matches after the first.
        payload: per-detection tensors of the last match (``mask_pred``, ``mask_feats``, ``refine_pred``).
    """

    box: Tensor
    embed: Tensor
    label: int
    last_frame: int
    velocity: Tensor
    acc_frame: int = 0
    payload: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Backdrops:
    """One frame's backdrops: unmatched, non-overlapping detections kept as negatives."""

    boxes: Tensor  # (B, 5)
    labels: Tensor  # (B,)
    embeds: Tensor  # (B, D)
    payload: dict[str, Tensor] = field(default_factory=dict)


class MatchResult(NamedTuple):
    """The output of `QuasiDenseTracker.match` (everything after sorting and duplicate removal).

    Attributes:
        boxes: (M, 5) kept detections, score-descending.
        labels: (M,) their classes.
        embeds: (M, D) their embeddings.
        ids: (M,) int64: >= 0 track id, -1 unmatched (not started), -2 suppressed weak duplicate.
        payload: the kept detections' payload tensors, same order.
        references: for each payload key, the matched tracklet's stored tensor or the detection's own.
        sort_indices: (N,) the score-descending permutation of the input.
        valids: (N,) bool, kept after duplicate removal, over the sorted list.
        memo_ids: (K,) id of each memory column (-1 = backdrop); empty when nothing was compared.
        scores: (M, K) association scores after the class mask, before any column zeroing.
        matched: (M,) bool, True where the detection continues an existing tracklet (its
            `references` are that tracklet's stored tensors, not its own).
    """

    boxes: Tensor
    labels: Tensor
    embeds: Tensor
    ids: Tensor
    payload: dict[str, Tensor]
    references: dict[str, Tensor]
    sort_indices: Tensor
    valids: Tensor
    memo_ids: Tensor
    scores: Tensor
    matched: Tensor

    @property
    def kept_input_indices(self) -> Tensor:
        """(M,) input index of each kept detection, in output order."""
        return self.sort_indices[self.valids]


class QuasiDenseTracker:
    """The quasi-dense association of one video over tensors (official ``match`` / ``update_memo``).

    Args:
        options: the tracker's options (official values by default).
    """

    def __init__(self, options: QuasiDenseOptions | None = None):
        self.options = options or QuasiDenseOptions()
        self.tracklets: dict[int, Tracklet] = {}
        self.backdrops: list[Backdrops] = []  # newest first
        self.num_tracklets = 0  # the next new id

    @property
    def empty(self) -> bool:
        """True without tracklets (backdrops alone do not count, as official)."""
        return not self.tracklets

    def _remove_duplicates(self, boxes: Tensor) -> Tensor:
        """(N,) bool kept flags over score-sorted boxes (any earlier box counts, kept or not)."""
        opts = self.options
        ious = box_iou(boxes[:, :4], boxes[:, :4])
        valids = torch.ones(boxes.shape[0], dtype=torch.bool)
        for i in range(1, boxes.shape[0]):
            weak = bool(boxes[i, 4] < opts.obj_score_threshold)
            threshold = opts.nms_backdrop_iou_threshold if weak else opts.nms_class_iou_threshold
            if bool((ious[i, :i] > threshold).any()):
                valids[i] = False
        return valids

    def memory(self) -> tuple[Tensor, Tensor, Tensor, dict[str, list[Tensor]]]:
        """Memory columns: (labels (K,), embeds (K, D), ids (K,), payload rows per key)."""
        labels, embeds, ids = [], [], []
        payload: dict[str, list[Tensor]] = {}
        for track_id, tracklet in self.tracklets.items():
            labels.append(torch.tensor([tracklet.label]))
            embeds.append(tracklet.embed[None])
            ids.append(torch.tensor([track_id]))
            for key, value in tracklet.payload.items():
                payload.setdefault(key, []).append(value)
        for backdrop in self.backdrops:
            labels.append(backdrop.labels.long())
            embeds.append(backdrop.embeds)
            ids.append(torch.full((backdrop.labels.shape[0],), -1, dtype=torch.long))
        return torch.cat(labels), torch.cat(embeds), torch.cat(ids), payload

    def _scores(self, embeds: Tensor, labels: Tensor, memo_embeds: Tensor, memo_labels: Tensor) -> Tensor:
        """(M, K) association scores (facts.md 4.4 step 4)."""
        opts = self.options
        same = (labels[:, None] == memo_labels[None, :]) if opts.with_cats else None
        if opts.match_metric == "cosine":
            scores = F.normalize(embeds, p=2, dim=1) @ F.normalize(memo_embeds, p=2, dim=1).t()
            return scores * same.to(scores.dtype) if same is not None else scores
        feats = embeds @ memo_embeds.t()
        if same is not None and opts.mask_classes_before_softmax:
            feats = feats.masked_fill(~same, float("-inf"))
        scores = feats.softmax(dim=1)
        if opts.match_metric == "bisoftmax":
            scores = (scores + feats.softmax(dim=0)) / 2
        scores = torch.nan_to_num(scores, nan=0.0)  # rows/columns without a same-class partner
        if same is not None:
            scores = scores * same.to(scores.dtype)  # official: after the softmaxes
        return scores

    def match(self, boxes: Tensor, labels: Tensor, embeds: Tensor, frame_index: int,
              payload: Mapping[str, Tensor] | None = None) -> MatchResult:
        """Sort, de-duplicate and associate one frame's detections (assigns new ids; no memory update).

        Args:
            boxes: (N, 5) x1, y1, x2, y2, score.
            labels: (N,) int64 classes.
            embeds: (N, D) raw embeddings.
            frame_index: 0-based frame index (unused by the rule; kept for symmetry with the official call).
            payload: optional per-detection tensors (first dim N) stored with tracklets, e.g. the
                mask-head logits ``mask_pred`` and RoI features ``mask_feats`` of the refine head.

        Returns:
            The `MatchResult`.
        """
        del frame_index
        payload = dict(payload or {})
        self._check_inputs(boxes, labels, embeds, payload)
        sort_indices = torch.sort(boxes[:, 4], descending=True, stable=True).indices
        sorted_boxes = boxes[sort_indices]
        valids = self._remove_duplicates(sorted_boxes)
        keep = sort_indices[valids]
        boxes, labels, embeds = boxes[keep], labels[keep], embeds[keep]
        payload = {key: value[keep] for key, value in payload.items()}
        references = {key: value.clone() for key, value in payload.items()}
        ids = torch.full((boxes.shape[0],), -1, dtype=torch.long)
        memo_ids = torch.zeros(0, dtype=torch.long)
        scores = embeds.new_zeros((boxes.shape[0], 0))
        if boxes.shape[0] > 0 and not self.empty:
            memo_labels, memo_embeds, memo_ids, memo_payload = self.memory()
            scores = self._scores(embeds, labels, memo_embeds, memo_labels)
            self._assign(boxes, scores.clone(), memo_ids, memo_payload, ids, references)
        matched = ids > -1
        new = (ids == -1) & (boxes[:, 4] > self.options.init_score_threshold)
        count = int(new.sum())
        ids[new] = torch.arange(self.num_tracklets, self.num_tracklets + count, dtype=torch.long)
        self.num_tracklets += count
        return MatchResult(boxes, labels, embeds, ids, payload, references, sort_indices, valids, memo_ids,
                           scores, matched)

    def _assign(self, boxes: Tensor, scores: Tensor, memo_ids: Tensor, memo_payload: dict[str, list[Tensor]],
                ids: Tensor, references: dict[str, Tensor]) -> None:
        """The greedy pass of facts.md 4.4 step 4 (writes `ids` and `references` in place)."""
        opts = self.options
        for i in range(boxes.shape[0]):
            conf, column = torch.max(scores[i], dim=0)
            track_id = int(memo_ids[column])
            if not (float(conf) > opts.match_score_threshold and track_id > -1):
                continue
            if float(boxes[i, 4]) > opts.obj_score_threshold:
                ids[i] = track_id
                scores[:i, column] = 0
                scores[i + 1 :, column] = 0
                for key in references:
                    if key in memo_payload:
                        references[key][i] = memo_payload[key][int(column)]
            elif float(conf) > opts.nms_conf_threshold:
                ids[i] = -2

    def update_memo(self, result: MatchResult, frame_index: int,
                    payload: Mapping[str, Tensor] | None = None) -> None:
        """Store one frame's outcome (official ``update_memo``), after the refine head ran.

        Args:
            result: this frame's `match` output.
            frame_index: 0-based frame index.
            payload: the tensors to store per kept detection (default: ``result.payload``); the
                PCAN model adds ``refine_pred`` here.

        A frame without detections changes nothing (no deletion either): the official model does
        not call the tracker then.
        """
        opts = self.options
        payload = dict(result.payload if payload is None else payload)
        ids, boxes = result.ids, result.boxes
        if boxes.shape[0] == 0:
            return  # official forward_test skips the tracker on frames without detections
        for i in torch.nonzero(ids > -1).flatten().tolist():
            track_id, box, embed = int(ids[i]), boxes[i], result.embeds[i]
            rows = {key: value[i] for key, value in payload.items()}
            tracklet = self.tracklets.get(track_id)
            if tracklet is None:
                self.tracklets[track_id] = Tracklet(box, embed, int(result.labels[i]), frame_index,
                                                    torch.zeros_like(box), 0, rows)
                continue
            velocity = (box - tracklet.box) / (frame_index - tracklet.last_frame)
            tracklet.box, tracklet.payload, tracklet.label = box, rows, int(result.labels[i])
            tracklet.embed = (1 - opts.memo_momentum) * tracklet.embed + opts.memo_momentum * embed
            tracklet.last_frame = frame_index
            tracklet.velocity = (tracklet.velocity * tracklet.acc_frame + velocity) / (tracklet.acc_frame + 1)
            tracklet.acc_frame += 1
        self._store_backdrops(result, payload)
        horizon = opts.memo_tracklet_frames
        for track_id in [k for k, t in self.tracklets.items() if frame_index - t.last_frame >= horizon]:
            del self.tracklets[track_id]
        while len(self.backdrops) > opts.memo_backdrop_frames:
            self.backdrops.pop()

    def _store_backdrops(self, result: MatchResult, payload: dict[str, Tensor]) -> None:
        candidates = torch.nonzero(result.ids == -1).flatten()
        ious = box_iou(result.boxes[candidates, :4], result.boxes[:, :4])
        keep = [int(i) for row, i in enumerate(candidates.tolist())
                if not bool((ious[row, :i] > self.options.nms_backdrop_iou_threshold).any())]
        index = torch.tensor(keep, dtype=torch.long)
        self.backdrops.insert(0, Backdrops(result.boxes[index], result.labels[index], result.embeds[index],
                                           {key: value[index] for key, value in payload.items()}))

    @staticmethod
    def _check_inputs(boxes: Tensor, labels: Tensor, embeds: Tensor, payload: dict[str, Tensor]) -> None:
        num = boxes.shape[0] if boxes.dim() == 2 else -1
        problems = []
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            problems.append(f"boxes must be (N, 5) x1, y1, x2, y2, score, got {tuple(boxes.shape)}")
        if labels.shape != (num,):
            problems.append(f"labels must be (N,) = ({num},), got {tuple(labels.shape)}")
        if embeds.dim() != 2 or embeds.shape[0] != num:
            problems.append(f"embeds must be (N, D) with N = {num}, got {tuple(embeds.shape)}")
        problems += [f"payload {key!r} has {value.shape[0]} rows, not {num}"
                     for key, value in payload.items() if value.shape[0] != num]
        if problems:
            raise StreamvisError("quasi_dense tracker: " + "; ".join(problems))


class QuasiDenseVideoTracker:
    """The quasi-dense tracker behind streamvis' tracker protocol (``update`` / ``finalize``).

    Thin adapter (the protocol of ``tracking/base.py`` is being finalised): it feeds each frame's
    `Instances` (``boxes``, ``scores``, ``classes``, ``embeddings``, ``masks``) to `QuasiDenseTracker`
    and records every detection that gets an id >= 0 as a member of that track. Official ids start at
    0; `Track.track_id` is id + 1. Video score = mean member score; category = the track's class
    (constant under ``with_cats``; the first member's otherwise).

    Args:
        options: a `QuasiDenseOptions`; or its fields as keyword arguments.
    """

    def __init__(self, options: QuasiDenseOptions | None = None, **overrides):
        base = options or QuasiDenseOptions()
        names = {f.name for f in dataclasses.fields(QuasiDenseOptions)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"tracker 'quasi_dense' has no option {', '.join(unknown)}; its options: "
                              f"{', '.join(sorted(names))}")
        self.options = dataclasses.replace(base, **overrides)
        self.core = QuasiDenseTracker(self.options)
        self.tracks: dict[int, Track] = {}

    def update(self, instances: Instances, frame_index: int) -> list[Track]:
        """Associate one frame; returns the tracks with a member in this frame, in id order.

        Args:
            instances: the frame's detections (``boxes`` (N, 4), ``scores`` (N,), ``classes`` (N,),
                ``embeddings`` (N, D), ``masks`` (N, H, W) probabilities or bitmasks).
            frame_index: 0-based index of the frame in the video.
        """
        if len(instances) == 0:
            return []  # official: frames without detections skip the tracker
        scores = instances.scores.float().reshape(-1, 1)
        boxes = torch.cat([instances.boxes.float().reshape(-1, 4), scores], dim=1)  # (N, 5)
        embeds = instances.embeddings.float().reshape(len(instances), -1)
        # the frame's results leave the device here, in one synchronisation (masks: thresholded or
        # probabilities, as the model gives them)
        boxes, classes, embeds, masks = to_host(boxes, instances.classes.long(), embeds, instances.masks)
        result = self.core.match(boxes, classes, embeds, frame_index,
                                 payload={"index": torch.arange(len(instances))})
        self.core.update_memo(result, frame_index)
        masks = masks_numpy(masks)
        members = []
        for row in torch.nonzero(result.ids >= 0).flatten().tolist():
            det = int(result.payload["index"][row])
            mask = masks[det]
            members.append(self._record(int(result.ids[row]), result, row, mask, frame_index))
        return sorted(members, key=lambda t: t.track_id)

    def _record(self, track_id: int, result: MatchResult, row: int, mask: np.ndarray,
                frame_index: int) -> Track:
        track = self.tracks.get(track_id)
        box = result.boxes[row, :4].numpy().astype(np.float32)
        embed = result.embeds[row].numpy().astype(np.float32)
        if track is None:
            track = Track(track_id=track_id + 1, category=int(result.labels[row]), box=box, embedding=embed,
                          first_frame=frame_index, last_frame=frame_index)
            self.tracks[track_id] = track
        track.box, track.embedding, track.last_frame = box, embed, frame_index
        track.scores.append(float(result.boxes[row, 4]))
        track.masks[frame_index] = encode_frame_masks(mask[None])[0]
        return track

    def finalize(self) -> list[Track]:
        """All tracks of the video, in id order."""
        return [self.tracks[k] for k in sorted(self.tracks)]


# the tracker registry reads keyword-only constructor options: expose the dataclass fields
QuasiDenseVideoTracker.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default)
     for f in dataclasses.fields(QuasiDenseOptions)]
)
