"""A Mask R-CNN-style composition of the two-stage core (backbone + FPN + RPN + RoI heads) that the
PCAN and MaskTrack R-CNN models reuse; module names match the official checkpoints
(``backbone.*``, ``neck.*``, ``rpn_head.*``, ``roi_head.bbox_head.*``, ``roi_head.mask_head.*``).

`TwoStageConfig()` gives the mmdetection 2.x conventions of PCAN; `TwoStageConfig.mmdet_v05()` the
mmdetection 0.5 conventions of MaskTrack R-CNN (masktrack facts.md section 7), as explicit options
of the same modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from streamvis.models.backbone import MMDetResNet
from streamvis.models.fpn import MMDetFPN
from streamvis.models.two_stage.assigners import MaxIoUAssigner
from streamvis.models.two_stage.roi_heads import (
    RCNN_BOX_STDS,
    BoxTestConfig,
    FCNMaskHead,
    MaskPrediction,
    RCNNDetections,
    RCNNTrainConfig,
    RoIHeads,
    Shared2FCBBoxHead,
)
from streamvis.models.two_stage.rpn import ProposalConfig, RPNHead, RPNTrainConfig
from streamvis.models.two_stage.samplers import RandomSampler
from streamvis.ops.anchors import AnchorGenerator
from streamvis.ops.boxes import DeltaXYWHBoxCoder
from streamvis.ops.roi_align import MultiLevelRoIExtractor


@dataclass(frozen=True)
class TwoStageConfig:
    """Everything that builds a `TwoStageDetector` (defaults: official PCAN, mmdet 2.x).

    Args:
        num_classes: foreground classes (PCAN 8; MaskTrack R-CNN 40).
        depth, frozen_stages: ResNet depth and frozen stages (official 50, 1).
        with_mask: build the FCN mask head.
        legacy: mmdet 0.5 conventions everywhere (+1 boxes, rounded anchors, old RoIAlign with 2
            samples per bin, background first, truncating paste, old mask targets).
        proposal, rpn_train, box_test, rcnn_train: per-stage settings.
        train_proposal: proposals for R-CNN training (mmdet 2.x ``train_cfg.rpn_proposal``); None uses
            `proposal`, as MaskTrack R-CNN does (masktrack facts.md section 5.2). PCAN's value is not
            in its facts.md; mmdet 2.x base configs use pre_nms_topk 2000, max_proposals 1000.
    """

    num_classes: int = 8
    depth: int = 50
    frozen_stages: int = 1
    with_mask: bool = True
    legacy: bool = False
    proposal: ProposalConfig = field(default_factory=ProposalConfig)
    rpn_train: RPNTrainConfig = field(default_factory=RPNTrainConfig)
    box_test: BoxTestConfig = field(default_factory=BoxTestConfig)
    rcnn_train: RCNNTrainConfig = field(default_factory=RCNNTrainConfig)
    train_proposal: ProposalConfig | None = None

    @classmethod
    def mmdet_v05(cls, num_classes: int = 40, **overrides) -> TwoStageConfig:
        """MaskTrack R-CNN's official settings (masktrack facts.md sections 1, 5, 7)."""
        settings = dict(
            num_classes=num_classes, legacy=True,
            proposal=ProposalConfig(pre_nms_topk=200, max_proposals=200, per_level_nms=True,
                                    post_nms_topk_per_level=200, nms_pixel_offset=1.0,
                                    nms_suppress_at_threshold=False),
            rpn_train=RPNTrainConfig(assigner=MaxIoUAssigner(0.7, 0.3, min_pos_iou=0.3, pixel_offset=1.0),
                                     sampler=RandomSampler(64, 0.5, add_gt_as_proposals=False),
                                     allowed_border=0),
            box_test=BoxTestConfig(score_threshold=0.05, max_per_image=10, legacy_order=True,
                                   nms_pixel_offset=1.0, nms_suppress_at_threshold=False),
            rcnn_train=RCNNTrainConfig(assigner=MaxIoUAssigner(0.5, 0.5, min_pos_iou=0.5, pixel_offset=1.0),
                                       sampler=RandomSampler(128, 0.25), legacy_mask_targets=True))
        settings.update(overrides)
        return cls(**settings)


@dataclass
class TwoStagePrediction:
    """One image's predictions.

    Attributes:
        proposals: (K, 5) RPN proposals [x1, y1, x2, y2, objectness] in network-input pixels.
        detections: boxes in original pixels when scale factors were given.
        masks: mask-head results, or None without a mask head or `with_masks`.
    """

    proposals: torch.Tensor
    detections: RCNNDetections
    masks: MaskPrediction | None = None


class TwoStageDetector(nn.Module):
    """backbone -> neck (P2..P6) -> RPN -> RoI heads. Inputs are normalised, padded image batches.

    Args:
        backbone: `MMDetResNet`; neck: `MMDetFPN`; rpn_head: `RPNHead`; roi_head: `RoIHeads`.
        train_proposal: proposal settings during `loss` (None: the RPN head's own).
    """

    def __init__(self, *, backbone: nn.Module, neck: nn.Module, rpn_head: RPNHead, roi_head: RoIHeads,
                 train_proposal: ProposalConfig | None = None):
        super().__init__()
        self.train_proposal = train_proposal
        self.backbone = backbone
        self.neck = neck
        self.rpn_head = rpn_head
        self.roi_head = roi_head

    def extract_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Args: images (N, 3, H, W). Returns [P2, ..., P6]."""
        return self.neck(self.backbone(images))

    def predict_from_features(self, features: list[torch.Tensor], image_sizes: list[tuple[int, int]],
                              scale_factors: list[torch.Tensor] | None = None,
                              original_sizes: list[tuple[int, int]] | None = None,
                              with_masks: bool = True) -> list[TwoStagePrediction]:
        """Predictions from given pyramid features (e.g. PCAN's attention-fused P2/P3).

        Args:
            features: [P2, ..., P6].
            image_sizes: per image the unpadded network-input (H, W).
            scale_factors: per image (4,) [w, h, w, h] input / original size, to rescale the outputs.
            original_sizes: per image (H, W) to paste masks into (default: `image_sizes`).
        """
        proposals = self.rpn_head.proposals(self.rpn_head(features), image_sizes)
        detections = self.roi_head.predict_boxes(features, proposals, image_sizes, scale_factors)
        masks: list[MaskPrediction | None] = [None] * len(detections)
        if with_masks and self.roi_head.mask_head is not None:
            masks = self.roi_head.predict_masks(features, detections, original_sizes or image_sizes,
                                                scale_factors)
        return [TwoStagePrediction(p, d, m) for p, d, m in zip(proposals, detections, masks)]

    @torch.no_grad()
    def predict(self, images: torch.Tensor, image_sizes: list[tuple[int, int]],
                scale_factors: list[torch.Tensor] | None = None,
                original_sizes: list[tuple[int, int]] | None = None,
                with_masks: bool = True) -> list[TwoStagePrediction]:
        """Inference on a batch (see `predict_from_features`)."""
        return self.predict_from_features(self.extract_features(images), image_sizes, scale_factors,
                                          original_sizes, with_masks)

    def loss(self, images: torch.Tensor, image_sizes: list[tuple[int, int]], gt_boxes: list[torch.Tensor],
             gt_labels: list[torch.Tensor], gt_masks: list[torch.Tensor] | None = None,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Training losses: loss_rpn_cls, loss_rpn_bbox, loss_cls, loss_bbox (+ loss_mask).

        Args:
            images: (N, 3, H, W) padded batch; image_sizes: unpadded (H, W) per image.
            gt_boxes: per image (G_i, 4) in input pixels; gt_labels: (G_i,) 0-based;
            gt_masks: per image (G_i, H, W) bitmaps at the padded size.
        """
        features = self.extract_features(images)
        rpn_output = self.rpn_head(features)
        losses = self.rpn_head.loss(rpn_output, gt_boxes, image_sizes, tuple(images.shape[-2:]), generator)
        # official (mmdet 2.x forward_train): proposals are made without gradient from the RPN outputs
        proposals = self.rpn_head.proposals(rpn_output, image_sizes, self.train_proposal)
        samples = self.roi_head.sample(proposals, gt_boxes, gt_labels, generator)
        losses.update(self.roi_head.loss(features, samples, gt_masks))
        return losses


def build_two_stage_detector(config: TwoStageConfig) -> TwoStageDetector:
    """The detector described by `config` (see `TwoStageConfig`)."""
    legacy, offset = config.legacy, 1.0 if config.legacy else 0.0
    backbone = MMDetResNet(depth=config.depth, frozen_stages=config.frozen_stages)
    neck = MMDetFPN(in_channels=backbone.out_channels)
    rpn_head = RPNHead(anchor_generator=AnchorGenerator(legacy=legacy),
                       box_coder=DeltaXYWHBoxCoder(pixel_offset=offset),
                       proposal_config=config.proposal, train_config=config.rpn_train)
    sampling = 2 if legacy else 0  # official: mmdet 0.5 sample_num 2; mmdet 2.x sampling_ratio 0
    extractors = {size: MultiLevelRoIExtractor(output_size=size, sampling_ratio=sampling, legacy=legacy)
                  for size in (7, 14)}
    bbox_head = Shared2FCBBoxHead(num_classes=config.num_classes, background_first=legacy,
                                  box_coder=DeltaXYWHBoxCoder(stds=RCNN_BOX_STDS, pixel_offset=offset))
    mask_head = None
    if config.with_mask:
        mask_head = FCNMaskHead(num_classes=config.num_classes, background_first=legacy)
    roi_head = RoIHeads(bbox_head=bbox_head, mask_head=mask_head, bbox_roi_extractor=extractors[7],
                        mask_roi_extractor=extractors[14], train_config=config.rcnn_train,
                        test_config=config.box_test, legacy_paste=legacy)
    return TwoStageDetector(backbone=backbone, neck=neck, rpn_head=rpn_head, roi_head=roi_head,
                            train_proposal=config.train_proposal)
