"""R-CNN heads of the two-stage core: the Shared2FC box head with its post-processing, the FCN mask
head, and `RoIHeads` that pools RoIs for them, trains them and predicts detections and masks.

Class-index conventions (``background_first``): mmdet 2.x puts background **last** (``fc_cls``
row C, ``fc_reg`` 4C rows, mask ``conv_logits`` C channels); mmdet 0.5 (MaskTrack R-CNN, masktrack
facts.md section 1) puts it **first** (``fc_cls`` row 0, ``fc_reg`` 4(C+1) rows with an unused
background slot, mask channel c+1 for class c). Labels returned and accepted here are always the
0-based foreground classes 0..C-1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from streamvis.models.two_stage.assigners import MaxIoUAssigner
from streamvis.models.two_stage.losses import smooth_l1_loss
from streamvis.models.two_stage.mask_ops import mask_targets as build_mask_targets
from streamvis.models.two_stage.mask_ops import paste_masks
from streamvis.models.two_stage.samplers import RandomSampler, SamplingResult
from streamvis.ops.boxes import DeltaXYWHBoxCoder, boxes_to_rois
from streamvis.ops.nms import mmdet_batched_nms, mmdet_nms
from streamvis.ops.roi_align import MultiLevelRoIExtractor

# official (mmdet 2.x and 0.5 R-CNN configs): class-specific deltas normalised by these stds
RCNN_BOX_STDS = (0.1, 0.1, 0.2, 0.2)


@dataclass(frozen=True)
class BoxTestConfig:
    """Detection post-processing (defaults: official PCAN ``test_cfg.rcnn``).

    Args:
        score_threshold: (proposal, class) candidates need a score strictly above this (PCAN 0.5;
            MaskTrack R-CNN 0.05).
        nms_iou_threshold: per-class NMS (official 0.5).
        max_per_image: official PCAN 100, MaskTrack R-CNN 10.
        legacy_order: mmdet 0.5 ``multiclass_nms``: NMS class by class and keep the class-major
            order unless more than `max_per_image` remain (then sort by score); mmdet 2.x always
            sorts by score.
        nms_pixel_offset, nms_suppress_at_threshold: see `ops.nms.mmdet_nms`.
    """

    score_threshold: float = 0.5
    nms_iou_threshold: float = 0.5
    max_per_image: int = 100
    legacy_order: bool = False
    nms_pixel_offset: float = 0.0
    nms_suppress_at_threshold: bool = True


@dataclass
class BoxHeadOutput:
    """Raw box-head outputs: cls_logits (K, C+1), box_deltas (K, 4C) (mmdet 0.5: 4(C+1))."""

    cls_logits: torch.Tensor
    box_deltas: torch.Tensor


@dataclass
class RCNNDetections:
    """Detections of one image, by the post-processing's order.

    Attributes:
        boxes: (n, 4) xyxy, in original-image pixels when rescaled.
        scores: (n,); labels: (n,) int64 0-based classes.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.boxes.shape[0]

    @property
    def boxes_with_scores(self) -> torch.Tensor:
        """(n, 5) [x1, y1, x2, y2, score] (mmdet ``det_bboxes``)."""
        return torch.cat((self.boxes, self.scores[:, None]), dim=1)


class Shared2FCBBoxHead(nn.Module):
    """mmdet ``Shared2FCBBoxHead``: flatten (C * 7 * 7) -> fc 1024 + ReLU -> fc 1024 + ReLU ->
    ``fc_cls`` (C+1 softmax logits) and ``fc_reg`` (class-specific deltas).

    Args:
        num_classes: foreground classes C (PCAN 8; MaskTrack R-CNN 40).
        in_channels, roi_size, fc_channels: official 256, 7, 1024.
        background_first: mmdet 0.5 layout (see the module docstring).
        box_coder: official means 0, stds (0.1, 0.1, 0.2, 0.2) (+1 convention for mmdet 0.5).
    """

    def __init__(self, *, num_classes: int, in_channels: int = 256, roi_size: int = 7,
                 fc_channels: int = 1024,
                 background_first: bool = False, box_coder: DeltaXYWHBoxCoder | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.background_first = background_first
        self.box_coder = box_coder or DeltaXYWHBoxCoder(stds=RCNN_BOX_STDS)
        self.shared_fcs = nn.ModuleList([nn.Linear(in_channels * roi_size * roi_size, fc_channels),
                                         nn.Linear(fc_channels, fc_channels)])
        self.fc_cls = nn.Linear(fc_channels, num_classes + 1)
        self.fc_reg = nn.Linear(fc_channels, 4 * (num_classes + 1 if background_first else num_classes))
        for fc in self.shared_fcs:
            nn.init.xavier_uniform_(fc.weight)  # official: ConvFCBBoxHead.init_weights xavier (uniform)
            nn.init.zeros_(fc.bias)
        nn.init.normal_(self.fc_cls.weight, std=0.01)  # official: BBoxHead.init_weights
        nn.init.normal_(self.fc_reg.weight, std=0.001)
        nn.init.zeros_(self.fc_cls.bias)
        nn.init.zeros_(self.fc_reg.bias)

    def forward(self, roi_feats: torch.Tensor) -> BoxHeadOutput:
        """Args: roi_feats (K, C, 7, 7). Returns `BoxHeadOutput`."""
        x = roi_feats.flatten(1)
        for fc in self.shared_fcs:
            x = F.relu(fc(x))
        return BoxHeadOutput(self.fc_cls(x), self.fc_reg(x))

    def foreground_scores(self, cls_logits: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities of the foreground classes -> (K, C), class c in column c."""
        probs = F.softmax(cls_logits, dim=1)
        return probs[:, 1:] if self.background_first else probs[:, :-1]

    def foreground_deltas(self, box_deltas: torch.Tensor) -> torch.Tensor:
        """Class-specific deltas without the mmdet 0.5 background slot -> (K, 4C)."""
        return box_deltas[:, 4:] if self.background_first else box_deltas

    def cls_targets(self, labels: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        """Softmax targets: a positive's class index, the background index for the others."""
        if self.background_first:
            return torch.where(positive, labels + 1, torch.zeros_like(labels))
        return torch.where(positive, labels, torch.full_like(labels, self.num_classes))

    def predict(self, rois: torch.Tensor, output: BoxHeadOutput, image_hw: tuple[int, int],
                scale_factor: torch.Tensor | None, config: BoxTestConfig) -> RCNNDetections:
        """Post-processing of one image (mmdet ``BBoxHead.get_bboxes`` + ``multiclass_nms``).

        Softmax; class-specific decode clipped to the unpadded input; divided by `scale_factor`
        (rescale to the original image) **before** NMS, as official; candidates (proposal, class)
        with score > threshold; per-class NMS; at most `max_per_image`.

        Args:
            rois: (K, 5) [image index, x1, y1, x2, y2] of this image.
            image_hw: unpadded network-input (H, W).
            scale_factor: (4,) [w, h, w, h] input / original, or None to stay in input pixels.
        """
        scores = self.foreground_scores(output.cls_logits)  # (K, C)
        deltas = self.foreground_deltas(output.box_deltas)
        boxes = self.box_coder.decode(rois[:, 1:], deltas, max_shape=image_hw)
        boxes = boxes.view(boxes.shape[0], self.num_classes, 4)  # (K, C, 4)
        if scale_factor is not None and boxes.shape[0] > 0:
            boxes = boxes / scale_factor.to(boxes)
        return multiclass_nms(boxes, scores, config)


def multiclass_nms(boxes: torch.Tensor, scores: torch.Tensor, config: BoxTestConfig) -> RCNNDetections:
    """Per-class NMS of class-specific boxes (K, C, 4) with scores (K, C) (see `BoxTestConfig`)."""
    num_classes = scores.shape[1]
    nms_options = dict(pixel_offset=config.nms_pixel_offset,
                       suppress_at_threshold=config.nms_suppress_at_threshold)
    if config.legacy_order:
        kept_boxes, kept_scores, kept_labels = [], [], []
        for label in range(num_classes):  # official mmdet 0.5: class by class
            candidates = scores[:, label] > config.score_threshold
            class_boxes, class_scores = boxes[candidates, label], scores[candidates, label]
            keep = mmdet_nms(class_boxes, class_scores, config.nms_iou_threshold, **nms_options)
            kept_boxes.append(class_boxes[keep])
            kept_scores.append(class_scores[keep])
            kept_labels.append(torch.full_like(keep, label))
        det_boxes, det_scores = torch.cat(kept_boxes), torch.cat(kept_scores)
        det_labels = torch.cat(kept_labels)
        if det_boxes.shape[0] > config.max_per_image:
            order = torch.sort(det_scores, descending=True, stable=True).indices[: config.max_per_image]
            det_boxes, det_scores, det_labels = det_boxes[order], det_scores[order], det_labels[order]
        return RCNNDetections(det_boxes, det_scores, det_labels)
    labels = torch.arange(num_classes, device=scores.device).expand_as(scores)
    flat_boxes, flat_scores, flat_labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
    candidates = torch.nonzero(flat_scores > config.score_threshold).squeeze(1)  # proposal-major order
    flat_boxes, flat_scores = flat_boxes[candidates], flat_scores[candidates]
    flat_labels = flat_labels[candidates]
    keep = mmdet_batched_nms(flat_boxes, flat_scores, flat_labels, config.nms_iou_threshold, **nms_options)
    keep = keep[: config.max_per_image]
    return RCNNDetections(flat_boxes[keep], flat_scores[keep], flat_labels[keep])


class ConvReLU(nn.Module):
    """3x3 conv with bias + ReLU under mmcv ``ConvModule``'s name ``conv``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")  # mmcv ConvModule init
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class FCNMaskHead(nn.Module):
    """mmdet ``FCNMaskHead``: 4 x [conv3x3 + ReLU] -> ConvTranspose2d 2x2/2 + ReLU -> conv1x1 logits,
    14 x 14 RoIs -> 28 x 28 class-specific logits.

    Args:
        num_classes: foreground classes C.
        background_first: mmdet 0.5: C + 1 output channels, class c in channel c + 1.
    """

    def __init__(self, *, num_classes: int, in_channels: int = 256, conv_channels: int = 256,
                 num_convs: int = 4,
                 background_first: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.background_first = background_first
        self.convs = nn.ModuleList(ConvReLU(in_channels if i == 0 else conv_channels, conv_channels)
                                   for i in range(num_convs))
        self.upsample = nn.ConvTranspose2d(conv_channels, conv_channels, 2, stride=2)
        self.conv_logits = nn.Conv2d(conv_channels, num_classes + int(background_first), 1)
        for module in (self.upsample, self.conv_logits):
            # official: FCNMaskHead.init_weights
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)

    def forward(self, mask_feats: torch.Tensor) -> torch.Tensor:
        """Args: mask_feats (K, C_in, 14, 14). Returns (K, C (+1), 28, 28) logits."""
        x = mask_feats
        for conv in self.convs:
            x = conv(x)
        return self.conv_logits(F.relu(self.upsample(x)))

    def class_logits(self, mask_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The channel of each instance's 0-based class -> (K, 28, 28)."""
        channels = labels + int(self.background_first)
        return mask_logits[torch.arange(mask_logits.shape[0], device=mask_logits.device), channels]

    def loss(self, mask_logits: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """mmdet ``mask_cross_entropy``: mean BCE-with-logits over P x 28 x 28 of the label channel
        (0 without positives)."""
        if mask_logits.shape[0] == 0:
            return mask_logits.sum()
        return F.binary_cross_entropy_with_logits(self.class_logits(mask_logits, labels), targets)


@dataclass(frozen=True)
class RCNNTrainConfig:
    """R-CNN targets (defaults: official PCAN / mmdet 2.x ``train_cfg.rcnn``).

    Args:
        assigner: official MaxIoUAssigner(0.5, 0.5, min_pos_iou 0.5, match_low_quality False)
            (mmdet 0.5: low-quality matches on, +1 IoU).
        sampler: official RandomSampler(512, 0.25, GT added) (MaskTrack R-CNN: 128).
        smooth_l1_beta: official 1.0.
        mask_size: official 28.
        legacy_mask_targets: mmdet 0.5 crop-and-resize targets (see `mask_ops.mask_targets`).
    """

    assigner: MaxIoUAssigner = field(
        default_factory=lambda: MaxIoUAssigner(0.5, 0.5, min_pos_iou=0.5, match_low_quality=False))
    sampler: RandomSampler = field(default_factory=lambda: RandomSampler(512, 0.25))
    smooth_l1_beta: float = 1.0
    mask_size: int = 28
    legacy_mask_targets: bool = False


@dataclass
class MaskPrediction:
    """Mask-head results for the detections of one image.

    Attributes:
        mask_feats: (n, 256, 14, 14) the mask RoI features (PCAN's refine head reads them).
        mask_logits: (n, C (+1), 28, 28) all class channels.
        label_logits: (n, 28, 28) the channel of each detection's class.
        masks: (n, H, W) bool pasted at the original image size.
    """

    mask_feats: torch.Tensor
    mask_logits: torch.Tensor
    label_logits: torch.Tensor
    masks: torch.Tensor


class RoIHeads(nn.Module):
    """The box and mask branches over pyramid RoIs (mmdet ``StandardRoIHead``; the detector's
    ``roi_head``, so parameters are ``roi_head.bbox_head.*`` / ``roi_head.mask_head.*`` as official).

    Args:
        bbox_head: a `Shared2FCBBoxHead`.
        mask_head: an `FCNMaskHead`, or None for boxes only.
        bbox_roi_extractor, mask_roi_extractor: 7x7 and 14x14 `MultiLevelRoIExtractor`s over P2..P5.
        train_config, test_config: `RCNNTrainConfig`, `BoxTestConfig`.
        legacy_paste: mmdet 0.5 truncating paste with ``> 0.5`` (see `mask_ops.paste_masks`).
        mask_threshold: official 0.5.
    """

    def __init__(self, *, bbox_head: Shared2FCBBoxHead, mask_head: FCNMaskHead | None = None,
                 bbox_roi_extractor: MultiLevelRoIExtractor | None = None,
                 mask_roi_extractor: MultiLevelRoIExtractor | None = None,
                 train_config: RCNNTrainConfig | None = None, test_config: BoxTestConfig | None = None,
                 legacy_paste: bool = False, mask_threshold: float = 0.5):
        super().__init__()
        self.bbox_head = bbox_head
        self.mask_head = mask_head
        self.bbox_roi_extractor = bbox_roi_extractor or MultiLevelRoIExtractor(output_size=7)
        self.mask_roi_extractor = mask_roi_extractor or MultiLevelRoIExtractor(output_size=14)
        self.train_config = train_config or RCNNTrainConfig()
        self.test_config = test_config or BoxTestConfig()
        self.legacy_paste = legacy_paste
        self.mask_threshold = mask_threshold

    def box_forward(self, features: list[torch.Tensor],
                    rois: torch.Tensor) -> tuple[torch.Tensor, BoxHeadOutput]:
        """Args: features P2.. (N, C, H_l, W_l); rois (K, 5). Returns 7x7 RoI features and head outputs."""
        roi_feats = self.bbox_roi_extractor(features, rois)
        return roi_feats, self.bbox_head(roi_feats)

    def predict_boxes(self, features: list[torch.Tensor], proposals: list[torch.Tensor],
                      image_sizes: list[tuple[int, int]],
                      scale_factors: list[torch.Tensor] | None = None) -> list[RCNNDetections]:
        """Detections per image (boxes in original pixels when `scale_factors` are given)."""
        rois = boxes_to_rois(proposals).to(features[0])
        _, output = self.box_forward(features, rois)
        detections = []
        for image, image_hw in enumerate(image_sizes):
            rows = rois[:, 0] == image
            scale = None if scale_factors is None else scale_factors[image]
            image_output = BoxHeadOutput(output.cls_logits[rows], output.box_deltas[rows])
            detections.append(
                self.bbox_head.predict(rois[rows], image_output, image_hw, scale, self.test_config))
        return detections

    def predict_masks(self, features: list[torch.Tensor], detections: list[RCNNDetections],
                      output_sizes: list[tuple[int, int]],
                      scale_factors: list[torch.Tensor] | None = None) -> list[MaskPrediction]:
        """Masks of the detections (official ``simple_test_mask``): RoIs at ``boxes * scale_factor``
        (a float32 round trip of the rescaled boxes), pasted at ``(boxes * sf) / sf`` into `output_sizes`."""
        if self.mask_head is None:
            raise ValueError("this RoIHeads has no mask head")
        input_boxes, paste_boxes = [], []
        for image, found in enumerate(detections):
            scale = None if scale_factors is None else scale_factors[image].to(found.boxes)
            boxes = found.boxes if scale is None else found.boxes * scale
            input_boxes.append(boxes)
            paste_boxes.append(boxes if scale is None else boxes / scale)
        rois = boxes_to_rois(input_boxes).to(features[0])
        mask_feats = self.mask_roi_extractor(features, rois)
        mask_logits = self.mask_head(mask_feats)
        results = []
        for image, found in enumerate(detections):
            rows = rois[:, 0] == image
            label_logits = self.mask_head.class_logits(mask_logits[rows], found.labels)
            masks = paste_masks(label_logits.sigmoid(), paste_boxes[image], output_sizes[image],
                                threshold=self.mask_threshold, legacy=self.legacy_paste)
            results.append(MaskPrediction(mask_feats[rows], mask_logits[rows], label_logits, masks))
        return results

    def sample(self, proposals: list[torch.Tensor], gt_boxes: list[torch.Tensor],
               gt_labels: list[torch.Tensor],
               generator: torch.Generator | None = None) -> list[SamplingResult]:
        """Assign and sample the proposals (+ ground truths) of each image."""
        cfg = self.train_config
        samples = []
        for boxes, gts, labels in zip(proposals, gt_boxes, gt_labels):
            assign = cfg.assigner.assign(boxes[:, :4], gts, labels)
            samples.append(cfg.sampler.sample(assign, boxes[:, :4], gts, labels, generator=generator))
        return samples

    def loss(self, features: list[torch.Tensor], samples: list[SamplingResult],
             gt_masks: list[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """R-CNN losses (mmdet 2.x ``BBoxHead.loss`` / ``FCNMaskHead.loss``): softmax CE averaged over
        all sampled RoIs; smooth L1 of the positives' class deltas divided by the number of sampled
        RoIs; mask BCE averaged over positives x 28 x 28 on the GT-class channel.

        Args:
            samples: `sample`'s output; gt_masks: per image (G_i, H, W) bitmaps at the padded input size.

        Returns:
            {"loss_cls", "loss_bbox"} (+ "loss_mask" with a mask head and `gt_masks`).
        """
        cfg = self.train_config
        rois = boxes_to_rois([s.boxes for s in samples]).to(features[0])
        _, output = self.box_forward(features, rois)
        positive = torch.cat([torch.arange(len(s.boxes)) < len(s.pos_boxes) for s in samples]).to(rois.device)
        labels = torch.cat([torch.cat((s.pos_gt_labels, s.neg_inds.new_zeros(len(s.neg_inds))))
                            for s in samples])
        targets = self.bbox_head.cls_targets(labels.to(rois.device), positive)
        losses = {"loss_cls": F.cross_entropy(output.cls_logits, targets)}
        deltas = self.bbox_head.foreground_deltas(output.box_deltas).view(rois.shape[0], -1, 4)
        pos_rows = torch.nonzero(positive).squeeze(1)
        pos_deltas = deltas[pos_rows, labels[pos_rows]]
        box_targets = self.bbox_head.box_coder.encode(torch.cat([s.pos_boxes for s in samples]),
                                                      torch.cat([s.pos_gt_boxes for s in samples]))
        box_loss = smooth_l1_loss(pos_deltas, box_targets.to(pos_deltas), cfg.smooth_l1_beta)
        losses["loss_bbox"] = box_loss.sum() / max(rois.shape[0], 1)  # official avg_factor: all sampled RoIs
        if self.mask_head is not None and gt_masks is not None:
            pos_rois = boxes_to_rois([s.pos_boxes for s in samples]).to(features[0])
            mask_logits = self.mask_head(self.mask_roi_extractor(features, pos_rois))
            mask_targets = torch.cat([
                build_mask_targets(s.pos_boxes, s.pos_assigned_gt_inds, masks, cfg.mask_size,
                                   legacy=cfg.legacy_mask_targets) for s, masks in zip(samples, gt_masks)])
            pos_labels = torch.cat([s.pos_gt_labels for s in samples])
            losses["loss_mask"] = self.mask_head.loss(mask_logits, mask_targets.to(mask_logits), pos_labels)
        return losses
