"""PCAN's per-frame association and mask refinement after detection (facts.md 1.1, steps 7-11).

Official ``EMQuasiDenseMaskRCNNRefine.forward_test``, after the detector, mask head and embedding
head ran on the frame:

7. No detections: neither the tracker nor the refine head is called (nothing changes).
8. ``tracker.match`` sorts and de-duplicates the detections, assigns ids and gives each detection
   a reference: the matched tracklet's stored mask-head logits (all classes) and 14x14 RoI features
   of its last matched frame, or the detection's own.
9. The refine head refines each kept detection against its reference (class channel = its label).
10. ``tracker.update_memo`` stores the mask-head logits, RoI features and refined logits.
11. Outputs: kept detections with refined logits (tracked ones, id > -1, form ``track_result``);
    detections dropped by the duplicate removal keep their mask-head logits in ``segm_result``.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

from streamvis.models.pcan.refine_head import EMMatchHeadPlus
from streamvis.tracking.quasi_dense import QuasiDenseTracker


class FrameDetections(NamedTuple):
    """One frame's detections and their head outputs (N detections, in detector order).

    Attributes:
        boxes: (N, 5) x1, y1, x2, y2, score in original-frame pixels.
        labels: (N,) int64 classes.
        mask_pred: (N, num_classes, 28, 28) mask-head logits.
        mask_feats: (N, C, 14, 14) mask RoI features (from the fused FPN).
        embeds: (N, D) embedding-head outputs.
    """

    boxes: Tensor
    labels: Tensor
    mask_pred: Tensor
    mask_feats: Tensor
    embeds: Tensor


class TrackedFrame(NamedTuple):
    """The frame after association and refinement.

    Attributes:
        boxes, labels: (M, 5), (M,) kept detections in the tracker's (score-descending) order.
        ids: (M,) int64 track ids (>= 0), -1 (not tracked) or -2 (suppressed weak duplicate).
        refine_logits: (M, 1, 28, 28) refined class-agnostic logits of the kept detections.
        kept_indices: (M,) input index of each kept detection.
        dropped_indices: (N - M,) input indices removed as duplicates (they keep the mask-head mask).
        reference_is_self: (M,) bool, True where the refine reference was the detection itself.
    """

    boxes: Tensor
    labels: Tensor
    ids: Tensor
    refine_logits: Tensor
    kept_indices: Tensor
    dropped_indices: Tensor
    reference_is_self: Tensor


def associate_and_refine(tracker: QuasiDenseTracker, refine_head: EMMatchHeadPlus,
                         detections: FrameDetections, frame_index: int) -> TrackedFrame | None:
    """Steps 7-10 of the official test flow for one frame.

    Args:
        tracker: the video's tracker (a new one at frame 0).
        refine_head: the refine head (its global prototypes update here, as official, unless frozen).
        detections: the frame's `FrameDetections`.
        frame_index: 0-based frame index.

    Returns:
        The `TrackedFrame`, or None when there are no detections (nothing was called).
    """
    if detections.boxes.shape[0] == 0:
        return None
    result = tracker.match(
        detections.boxes, detections.labels, detections.embeds, frame_index,
        payload={"mask_pred": detections.mask_pred, "mask_feats": detections.mask_feats},
    )
    references = result.references
    refine_logits = refine_head.refine(result.payload["mask_feats"], result.payload["mask_pred"],
                                       result.labels, references["mask_feats"], references["mask_pred"])
    stored = {"mask_pred": result.payload["mask_pred"], "mask_feats": result.payload["mask_feats"],
              "refine_pred": refine_logits}
    tracker.update_memo(result, frame_index, stored)
    kept = result.kept_input_indices
    dropped = result.sort_indices[~result.valids]
    return TrackedFrame(result.boxes, result.labels, result.ids, refine_logits, kept, dropped,
                        ~result.matched)
