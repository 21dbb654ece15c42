"""MaskTrack R-CNN (Yang et al., ICCV 2019) on the shared two-stage core, as the official code runs it.

A Mask R-CNN (ResNet + FPN P2..P6, RPN, 7x7 box head, 14x14 -> 28x28 mask head; the modules of
`streamvis.models.two_stage`) plus the tracking head (`TrackHead`) on the **same 7x7 RoI
features** as the box head (official ``TwoStageDetector`` of youtubevos/MaskTrackRCNN @ 10e5d7d;
facts.md s.1-3 in ../shared/reference/masktrack). With ``legacy_conventions`` (default) the core
runs with mmdet v0.5's conventions: background at class index 0, the +1 pixel box convention,
rounded anchors, the old RoIAlign with 2 samples per bin, per-level proposal NMS, class-major
detection order and the truncating mask paste (facts.md s.7).

- `MaskTrackRCNN.loss` (official ``forward_train``): key frames and reference frames go through
  the same backbone + FPN (both with gradient); RPN and R-CNN losses on the key frames (training
  proposals = the test RPN setting, s.5.2); the reference frames' GT boxes are pooled (7x7) and
  embedded, and every sampled key-frame RoI is scored against them (``loss_match``, s.2).
- `MaskTrackRCNN.predict` (official ``simple_test`` with ``rescale=True``): detections in
  original-image pixels, masks pasted at the original size, and the tracking-head embedding of
  each detection, pooled at ``boxes * scale_factor`` (official commit 4e92e86). The association
  itself is the tracker's (`streamvis.tracking.masktrack`, ``--tracker masktrack``).

Input contract (`streamvis.ops.image`): (3, h, w) uint8 **BGR** frames; the official pipeline
converts to RGB before normalising with the RGB statistics of the config (``to_rgb=True``).
State-dict names: ``backbone.*``, ``neck.*``, ``rpn_head.*``, ``roi_head.bbox_head.*``,
``roi_head.mask_head.*``, ``track_head.*`` (official checkpoints: `convert.convert_official`).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from streamvis.models.backbone import MMDetResNet
from streamvis.models.fpn import MMDetFPN
from streamvis.models.masktrack.config import MaskTrackConfig
from streamvis.models.masktrack.targets import reference_pids, track_loss
from streamvis.models.masktrack.track_head import TrackHead
from streamvis.models.two_stage.detector import TwoStageConfig
from streamvis.models.two_stage.roi_heads import FCNMaskHead, RCNNDetections, RoIHeads, Shared2FCBBoxHead
from streamvis.models.two_stage.rpn import RPNHead
from streamvis.ops.anchors import AnchorGenerator
from streamvis.ops.boxes import DeltaXYWHBoxCoder, boxes_to_rois
from streamvis.ops.image import normalize_and_pad
from streamvis.ops.roi_align import MultiLevelRoIExtractor
from streamvis.structures import FrameBatch, Instances, PairBatch


class MaskTrackRCNN(nn.Module):
    """Mask R-CNN + tracking head (see the module docstring).

    Args:
        config: the `MaskTrackConfig` the parts were built from (`build_masktrack`).
        backbone: `MMDetResNet`, images -> [C2..C5].
        neck: `MMDetFPN`, [C2..C5] -> [P2..P6].
        rpn_head: `RPNHead` (anchors, proposals, RPN loss).
        roi_head: `RoIHeads` (box and mask heads, their RoI extractors, sampling, losses).
        track_head: `TrackHead` on the box head's 7x7 RoI features.
    """

    def __init__(self, config: MaskTrackConfig, *, backbone: nn.Module, neck: nn.Module, rpn_head: RPNHead,
                 roi_head: RoIHeads, track_head: TrackHead):
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.neck = neck
        self.rpn_head = rpn_head
        self.roi_head = roi_head
        self.track_head = track_head
        self.legacy = config.legacy_conventions

    # -- shared pieces ---------------------------------------------------------------------------

    def preprocess(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """BGR uint8 frames -> (N, 3, Hp, Wp) normalised RGB batch padded to ``size_divisor``, sizes.

        Official ``img_norm_cfg``: BGR file -> RGB, ``(x - mean) / std``, then zero padding.
        """
        cfg = self.config.input
        rgb = [image.flip(0) for image in images]  # (3, h, w) BGR -> RGB
        return normalize_and_pad(rgb, cfg.pixel_mean, cfg.pixel_std, cfg.size_divisor)

    def extract_features(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """Args: batch (N, 3, Hp, Wp). Returns [P2, ..., P6] (strides 4..64)."""
        return self.neck(self.backbone(batch))

    def track_embeddings(self, features: list[torch.Tensor], boxes: list[torch.Tensor]) -> list[torch.Tensor]:
        """Tracking-head embeddings of boxes, pooled with the box head's 7x7 RoI extractor.

        Args:
            features: [P2, ...] of the batch.
            boxes: per image (n_i, >=4) boxes in network-input pixels.

        Returns:
            per image (n_i, D) embeddings (D = ``track.fc_out_channels``).
        """
        counts = [int(b.shape[0]) for b in boxes]
        rois = boxes_to_rois(boxes).to(features[0])  # (sum n_i, 5)
        roi_feats = self.roi_head.bbox_roi_extractor(features, rois)  # (sum n_i, C, 7, 7)
        return list(self.track_head.embed(roi_feats).split(counts))

    # -- training --------------------------------------------------------------------------------

    def training_boxes(self, frames: FrameBatch) -> list[torch.Tensor]:
        """GT boxes of a frame batch in the model's pixel convention.

        The data pipeline gives continuous xyxy boxes ``[x, y, x + w, y + h]``; mmdet v0.5 uses
        ``[x, y, x + w - 1, y + h - 1]`` (official ``YTVOSDataset._parse_ann_info``). The -1 is
        applied here, after the resize (official: before it, so x2 differs by ``1 - scale`` pixels
        when frames are resized; equal at scale 1, as on the synthetic data).
        """
        boxes = [inst.gt_boxes.float() for inst in frames.instances]
        if not self.legacy:
            return boxes
        out = []
        for box in boxes:
            box = box.clone()
            box[:, 2:] = torch.maximum(box[:, 2:] - 1.0, box[:, :2])  # (G, 4)
            out.append(box)
        return out

    def loss(self, batch: PairBatch) -> dict[str, torch.Tensor]:
        """Training losses of a `PairBatch` (official ``forward_train``).

        Returns:
            ``loss_rpn_cls``, ``loss_rpn_bbox`` (official ``loss_rpn_reg``), ``loss_cls``,
            ``loss_bbox`` (official ``loss_reg``), ``loss_mask``, ``loss_match``; scalars, all
            weight 1 (official), ``loss_match`` times ``track.loss_weight``.
        """
        key, reference = batch.frames
        images, sizes = self.preprocess(key.images)
        ref_images, _ = self.preprocess(reference.images)
        features = self.extract_features(images)
        ref_features = self.extract_features(ref_images)  # official: with gradient
        gt_boxes = self.training_boxes(key)
        ref_boxes = self.training_boxes(reference)
        gt_labels = [inst.gt_classes for inst in key.instances]
        gt_masks = [_pad_masks(inst.gt_masks, images.shape[-2:]) for inst in key.instances]
        gt_pids = [reference_pids(k.gt_ids, r.gt_ids) for k, r in zip(key.instances, reference.instances)]
        rpn_output = self.rpn_head(features)
        losses = self.rpn_head.loss(rpn_output, gt_boxes, sizes, tuple(images.shape[-2:]))
        proposals = self.rpn_head.proposals(rpn_output, sizes)  # official: test_cfg.rpn, no gradient
        losses.update(self.rcnn_losses(features, proposals, gt_boxes, gt_labels, gt_masks, ref_features,
                                       ref_boxes, gt_pids))
        return losses

    def rcnn_losses(self, features: list[torch.Tensor], proposals: list[torch.Tensor],
                    gt_boxes: list[torch.Tensor], gt_labels: list[torch.Tensor],
                    gt_masks: list[torch.Tensor] | None, ref_features: list[torch.Tensor],
                    ref_boxes: list[torch.Tensor], gt_pids: list[torch.Tensor],
                    generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """R-CNN, mask and match losses from proposals (the second half of `loss`).

        Args:
            features, ref_features: [P2, ...] of the key and reference frames.
            proposals: per image (K_i, >=4) proposals in input pixels.
            gt_boxes, gt_labels, gt_masks: key-frame targets per image ((G, 4), (G,) 0-based,
                (G, Hp, Wp) bitmaps at the padded size or None for no mask loss).
            ref_boxes: per image (R_i, 4) reference-frame GT boxes (all valid GT, annotation order).
            gt_pids: per image (G,) 1 + index of the object in the reference GT, 0 when absent.
            generator: random source of the RoI sampler.

        Returns:
            ``loss_cls``, ``loss_bbox`` (, ``loss_mask``), ``loss_match``.
        """
        samples = self.roi_head.sample(proposals, gt_boxes, gt_labels, generator)
        losses = self.roi_head.loss(features, samples, gt_masks)
        # official: the track head reads bbox_feats, the box head's 7x7 features of the sampled RoIs
        sampled = [s.boxes for s in samples]  # positives first, then negatives
        roi_feats = self.roi_head.bbox_roi_extractor(features, boxes_to_rois(sampled).to(features[0]))
        ref_feats = self.roi_head.bbox_roi_extractor(ref_features, boxes_to_rois(ref_boxes).to(features[0]))
        match = track_loss(self.track_head, roi_feats, [len(b) for b in sampled], ref_feats,
                           [len(b) for b in ref_boxes], [s.pos_assigned_gt_inds for s in samples],
                           [p.to(roi_feats.device) for p in gt_pids],
                           skip_single_positive=self.config.track.skip_single_positive)
        losses["loss_match"] = self.config.track.loss_weight * match["loss_match"]
        return losses

    # -- inference -------------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, images: list[torch.Tensor], output_sizes: list[tuple[int, int]] | None = None
                ) -> list[Instances]:
        """Detect, segment and embed the instances of already-resized frames (eval behaviour always).

        Args:
            images: each (3, h_i, w_i) uint8 BGR, resized (``test_short_side`` / ``test_max_size``).
            output_sizes: (H, W) of each original frame (default: the input sizes).

        Returns:
            One `Instances` per image at its output size, in the official detection order
            (class-major when <= ``detections_per_image``): ``boxes`` (K, 4) xyxy original pixels,
            ``scores`` (K,), ``classes`` (K,) int64 0-based, ``masks`` (K, H, W) bool,
            ``embeddings`` (K, D) tracking-head embeddings.
        """
        was_training = self.training
        self.eval()
        try:
            batch, sizes = self.preprocess(images)
            output_sizes = [tuple(s) for s in (output_sizes or sizes)]
            scale_factors = [self.scale_factor(size, out).to(batch) for size, out in zip(sizes, output_sizes)]
            features = self.extract_features(batch)
            proposals = self.rpn_head.proposals(self.rpn_head(features), sizes)
            detections = self.roi_head.predict_boxes(features, proposals, sizes, scale_factors)
            return self.instances_from_detections(features, detections, scale_factors, output_sizes)
        finally:
            self.train(was_training)

    def scale_factor(self, input_hw: tuple[int, int], output_hw: tuple[int, int]) -> torch.Tensor:
        """(4,) [w, h, w, h] input / original scale (official ``scale_factor``).

        The official pipeline keeps one scalar ``sf = min(max / long, short / short_side)`` with the
        input size ``int(side * sf + 0.5)``; when `input_hw` is that size the scalar is used for both
        axes, otherwise each axis gets its own ratio.
        """
        (h, w), (big_h, big_w) = input_hw, output_hw
        sf = min(self.config.test_max_size / max(big_h, big_w),
                 self.config.test_short_side / min(big_h, big_w))
        if (int(big_h * sf + 0.5), int(big_w * sf + 0.5)) == (h, w):
            return torch.tensor([sf, sf, sf, sf], dtype=torch.float32)
        return torch.tensor([w / big_w, h / big_h, w / big_w, h / big_h], dtype=torch.float32)

    def instances_from_detections(self, features: list[torch.Tensor], detections: list[RCNNDetections],
                                  scale_factors: list[torch.Tensor], output_sizes: list[tuple[int, int]]
                                  ) -> list[Instances]:
        """Masks and tracking embeddings of given detections (official ``simple_test_mask`` and the
        RoI features of ``simple_test_bboxes``).

        Args:
            features: [P2, ...] of the batch.
            detections: per image, boxes in original pixels (`RoIHeads.predict_boxes` order).
            scale_factors: per image (4,) input / original scale.
            output_sizes: per image (H, W) to paste the masks into.

        Returns:
            One `Instances` per image (see `predict`).
        """
        masks = self.roi_head.predict_masks(features, detections, output_sizes, scale_factors)
        input_boxes = [d.boxes * sf.to(d.boxes) for d, sf in zip(detections, scale_factors)]
        embeddings = self.track_embeddings(features, input_boxes)
        return [Instances(tuple(size), boxes=d.boxes.float(), scores=d.scores.float(),
                          classes=d.labels.long(),
                          masks=m.masks, embeddings=e)
                for d, m, e, size in zip(detections, masks, embeddings, output_sizes)]


def _pad_masks(masks: torch.Tensor, padded_hw) -> torch.Tensor:
    """(G, h, w) bitmaps -> (G, Hp, Wp) zero-padded at the bottom/right (official ``impad``)."""
    height, width = int(padded_hw[0]), int(padded_hw[1])
    return F.pad(masks.to(torch.uint8), (0, width - masks.shape[-1], 0, height - masks.shape[-2]))


def build_masktrack(config: MaskTrackConfig) -> MaskTrackRCNN:
    """Build MaskTrack R-CNN from its config (training init; official checkpoints: `convert`).

    The per-stage settings start from the two-stage core's presets (`TwoStageConfig.mmdet_v05` with
    ``legacy_conventions``, mmdet 2.x defaults otherwise) with the config's numbers put in.
    """
    legacy, channels = config.legacy_conventions, config.backbone.fpn_channels
    offset = 1.0 if legacy else 0.0
    base = (TwoStageConfig.mmdet_v05(config.num_classes) if legacy
            else TwoStageConfig(num_classes=config.num_classes))
    rpn, roi = config.rpn, config.roi
    proposal = dataclasses.replace(
        base.proposal, pre_nms_topk=rpn.pre_nms_topk_per_level, nms_iou_threshold=rpn.nms_threshold,
        max_proposals=rpn.proposals_per_image, post_nms_topk_per_level=rpn.post_nms_topk_per_level)
    rpn_train = dataclasses.replace(
        base.rpn_train,
        assigner=dataclasses.replace(base.rpn_train.assigner, pos_iou_threshold=rpn.positive_iou,
                                     neg_iou_threshold=rpn.negative_iou, min_pos_iou=rpn.min_positive_iou),
        sampler=dataclasses.replace(base.rpn_train.sampler, num=rpn.anchors_per_image,
                                    pos_fraction=rpn.positive_fraction),
        smooth_l1_beta=rpn.smooth_l1_beta)
    rcnn_train = dataclasses.replace(
        base.rcnn_train,
        assigner=dataclasses.replace(base.rcnn_train.assigner, pos_iou_threshold=roi.positive_iou,
                                     neg_iou_threshold=roi.negative_iou, min_pos_iou=roi.min_positive_iou),
        sampler=dataclasses.replace(base.rcnn_train.sampler, num=roi.rois_per_image,
                                    pos_fraction=roi.positive_fraction,
                                    add_gt_as_proposals=roi.add_gt_as_proposals))
    box_test = dataclasses.replace(base.box_test, score_threshold=roi.score_threshold,
                                   nms_iou_threshold=roi.nms_threshold,
                                   max_per_image=roi.detections_per_image)
    backbone = MMDetResNet(depth=config.backbone.depth, style=config.backbone.style,
                           frozen_stages=config.backbone.frozen_stages, norm_eval=config.backbone.norm_eval)
    neck = MMDetFPN(in_channels=backbone.out_channels, out_channels=channels,
                    num_outs=len(config.backbone.fpn_levels))
    anchors = AnchorGenerator(strides=tuple(rpn.anchor_strides), ratios=tuple(rpn.anchor_ratios),
                              scales=tuple(rpn.anchor_scales), legacy=legacy)
    rpn_head = RPNHead(in_channels=channels, feat_channels=channels, anchor_generator=anchors,
                       box_coder=DeltaXYWHBoxCoder(pixel_offset=offset), proposal_config=proposal,
                       train_config=rpn_train)
    # official mmdet 0.5: RoIAlign(sample_num=2), not aligned; mmdet 2.x: aligned, adaptive sampling
    sampling = roi.sampling_ratio if legacy else 0
    extractors = {size: MultiLevelRoIExtractor(output_size=size, strides=tuple(roi.roi_strides),
                                               sampling_ratio=sampling, aligned=not legacy, legacy=legacy,
                                               finest_scale=roi.finest_scale)
                  for size in (roi.roi_feat_size, roi.mask_roi_feat_size)}
    bbox_head = Shared2FCBBoxHead(num_classes=config.num_classes, in_channels=channels,
                                  roi_size=roi.roi_feat_size, fc_channels=roi.fc_out_channels,
                                  background_first=legacy,
                                  box_coder=DeltaXYWHBoxCoder(stds=tuple(roi.box_delta_stds),
                                                              pixel_offset=offset))
    mask_head = FCNMaskHead(num_classes=config.num_classes, in_channels=channels,
                            conv_channels=roi.mask_channels, num_convs=roi.mask_convs,
                            background_first=legacy)
    roi_head = RoIHeads(bbox_head=bbox_head, mask_head=mask_head,
                        bbox_roi_extractor=extractors[roi.roi_feat_size],
                        mask_roi_extractor=extractors[roi.mask_roi_feat_size], train_config=rcnn_train,
                        test_config=box_test, legacy_paste=legacy, mask_threshold=roi.mask_threshold)
    track_head = TrackHead(in_channels=channels, roi_feat_size=roi.roi_feat_size,
                           fc_out_channels=config.track.fc_out_channels, num_fcs=config.track.num_fcs)
    return MaskTrackRCNN(config, backbone=backbone, neck=neck, rpn_head=rpn_head, roi_head=roi_head,
                         track_head=track_head)
