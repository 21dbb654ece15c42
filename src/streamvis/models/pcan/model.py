"""The whole PCAN model (official ``EMQuasiDenseMaskRCNNRefine``, reference/pcan/facts.md 1 and 1.1).

backbone (ResNet, pytorch style) + FPN (P2..P6) -> [test only] frame-level PCAM on P2/P3 -> RPN ->
R-CNN box head (score > 0.5, NMS 0.5, <= 100, rescaled to the original frame) -> mask head on the
14x14 RoIs -> embedding head on the 7x7 RoIs -> quasi-dense association (references for the refine
head) -> refine head -> refined masks.

State-dict names are the official ones (``backbone.*``, ``neck.*``, ``rpn_head.*``,
``roi_head.{bbox,mask,track,refine}_head.*``) except the frame-level prototype buffers, which live
under ``frame_attention.mu{i}`` (official: top-level ``mu{i}``; models/pcan/convert.py maps them).

Video state: the frame-level memory and the association state that picks each detection's refine
reference belong to one video. `start_video` begins a new one (``VideoPredictor`` calls it); `predict`
treats its images as the next frames of the current video. The refine head's global prototypes keep
moving at inference across videos, as official (``freeze_prototypes_at_inference`` fixes that).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamvis.errors import StreamvisError
from streamvis.models.backbone import MMDetResNet
from streamvis.models.fpn import MMDetFPN
from streamvis.models.pcan.association import FrameDetections, TrackedFrame, associate_and_refine
from streamvis.models.pcan.config import FREEZABLE, PCANConfig
from streamvis.models.pcan.embed_head import QuasiDenseEmbedHead
from streamvis.models.pcan.frame_attention import FrameAttention
from streamvis.models.pcan.losses import ImagePairs, refine_loss, refine_pairs, track_losses
from streamvis.models.pcan.refine_head import EMMatchHeadPlus, select_training_pairs
from streamvis.models.two_stage.assigners import MaxIoUAssigner
from streamvis.models.two_stage.mask_ops import mask_targets as build_mask_targets
from streamvis.models.two_stage.mask_ops import paste_masks
from streamvis.models.two_stage.roi_heads import (
    BoxTestConfig,
    FCNMaskHead,
    MaskPrediction,
    RCNNDetections,
    RoIHeads,
    Shared2FCBBoxHead,
)
from streamvis.models.two_stage.rpn import ProposalConfig, RPNHead
from streamvis.models.two_stage.samplers import CombinedSampler, SamplingResult
from streamvis.ops.boxes import boxes_to_rois
from streamvis.ops.roi_align import MultiLevelRoIExtractor
from streamvis.structures import Instances, PairBatch
from streamvis.tracking.quasi_dense import QuasiDenseTracker

SIZE_DIVISOR = 32  # official: Pad size_divisor=32
# official train_cfg.embed (facts.md 4.2): MaxIoUAssigner(0.7, 0.3, min_pos_iou 0.5, no low-quality),
# CombinedSampler(256, 0.5, neg_pos_ub 3, GT added; instance-balanced pos, IoU-balanced neg)
EMBED_ASSIGNER = MaxIoUAssigner(0.7, 0.3, min_pos_iou=0.5, match_low_quality=False)
EMBED_SAMPLER = CombinedSampler(256, 0.5, neg_pos_ub=3, add_gt_as_proposals=True)


class PCANRoIHeads(RoIHeads):
    """The official ``QuasiDenseSegRoIHeadRefine``: the box and mask branches of the two-stage core plus
    the embedding head (``track_head``, 7x7 RoIs) and the refine head (``refine_head``)."""

    def __init__(self, *, track_head: QuasiDenseEmbedHead, refine_head: EMMatchHeadPlus, **kwargs):
        super().__init__(**kwargs)
        self.track_head = track_head
        self.refine_head = refine_head
        self.track_roi_extractor = MultiLevelRoIExtractor(output_size=7)  # official track_roi_extractor

    def embed(self, features: list[Tensor], boxes_per_image: list[Tensor]) -> Tensor:
        """Embeddings (sum n_i, D) of boxes (n_i, >=4) given per image in network-input pixels."""
        rois = boxes_to_rois(boxes_per_image).to(features[0])
        return self.track_head(self.track_roi_extractor(features, rois))


@dataclass
class PCANFrameOutput:
    """Everything one test frame computes (official test path; for tests and inspection).

    Attributes:
        pyramid: raw FPN levels P2..P6, each (1, C, H_l, W_l).
        features: the levels the heads saw (P2/P3 fused by the frame attention when on).
        proposals: (K, 5) RPN proposals in network-input pixels.
        detections: R-CNN detections in original-frame pixels.
        mask: mask-head results (features, all-class logits, label logits, pasted masks).
        embeds: (n, D) embeddings of the detections.
        tracked: association + refinement result (None without detections or with refine off).
        refined_masks: (M, H, W) bool refined masks of ``tracked``'s kept detections (its order).
        masks: (n, H, W) bool final mask per detection in detector order (refined where kept).
        track_ids: (n,) int64 association ids per detection (-1: none or dropped as duplicate).
    """

    pyramid: list[Tensor]
    features: list[Tensor]
    proposals: Tensor
    detections: RCNNDetections
    mask: MaskPrediction
    embeds: Tensor
    tracked: TrackedFrame | None
    refined_masks: Tensor
    masks: Tensor
    track_ids: Tensor


class PCAN(nn.Module):
    """PCAN (see the module docstring).

    Args:
        config: the `PCANConfig`.
    """

    @property
    def config(self) -> PCANConfig:
        return self._config

    @config.setter
    def config(self, config: PCANConfig) -> None:
        """Replacing the config (e.g. ``model.config = model.config.replace(score_threshold=0.3)``)
        also moves the test-time settings the heads were built with: R-CNN score / NMS / detections
        per frame, the mask threshold and the refine head's prototype freeze."""
        self._config = config
        roi_head = self.__dict__.get("_modules", {}).get("roi_head")
        if roi_head is not None:
            roi_head.test_config = dataclasses.replace(
                roi_head.test_config, score_threshold=config.score_threshold,
                nms_iou_threshold=config.nms_threshold, max_per_image=config.detections_per_frame)
            roi_head.mask_threshold = config.mask_threshold
            roi_head.refine_head.freeze_prototypes_at_inference = config.freeze_prototypes_at_inference

    def __init__(self, config: PCANConfig):
        super().__init__()
        self.config = config
        channels = config.fpn_channels
        self.backbone = MMDetResNet(depth=config.depth, frozen_stages=config.frozen_stages,
                                    norm_eval=config.norm_eval)
        self.neck = MMDetFPN(in_channels=self.backbone.out_channels, out_channels=channels)
        self.rpn_head = RPNHead(in_channels=channels, feat_channels=channels,
                                proposal_config=ProposalConfig(pre_nms_topk=config.rpn_pre_nms_topk,
                                                               max_proposals=config.rpn_max_proposals))
        self.roi_head = PCANRoIHeads(
            bbox_head=Shared2FCBBoxHead(num_classes=config.num_classes, in_channels=channels,
                                        fc_channels=config.fc_channels),
            mask_head=FCNMaskHead(num_classes=config.num_classes, in_channels=channels,
                                  conv_channels=config.mask_conv_channels),
            track_head=QuasiDenseEmbedHead(in_channels=channels, conv_channels=channels,
                                           fc_channels=config.fc_channels,
                                           embed_channels=config.embed_channels),
            refine_head=EMMatchHeadPlus(in_channels=channels, conv_channels=config.mask_conv_channels,
                                        freeze_prototypes_at_inference=config.freeze_prototypes_at_inference),
            test_config=BoxTestConfig(score_threshold=config.score_threshold,
                                      nms_iou_threshold=config.nms_threshold,
                                      max_per_image=config.detections_per_frame),
            mask_threshold=config.mask_threshold,
        )
        self.frame_attention = FrameAttention(channels=channels)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(3, 1, 1), persistent=False)
        self._tracker: QuasiDenseTracker | None = None
        self._next_frame = 0
        self._video_shape: tuple[int, ...] | None = None  # padded input shape of the current video
        self._apply_stage()

    # ------------------------------------------------------------------ parts and stages
    def part(self, name: str) -> nn.Module:
        """The module of a part name of `FREEZABLE` (e.g. ``"mask_head"`` -> ``roi_head.mask_head``)."""
        if name in ("backbone", "neck", "rpn_head"):
            return getattr(self, name)
        return getattr(self.roi_head, name)

    def _apply_stage(self) -> None:
        """requires_grad False on every part the training stage does not train (official fix_modules)."""
        trainable = set(self.config.trainable_modules)
        for name in FREEZABLE:
            if name not in trainable:
                self.part(name).requires_grad_(False)
        if "backbone" in trainable:
            self.backbone.train(self.training)  # re-applies frozen_stages

    # ------------------------------------------------------------------ input
    def normalize(self, images: list[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        """BGR uint8 (3, h, w) frames -> (N, 3, Hp, Wp) RGB-normalised batch padded to a multiple of 32
        (official: ``imnormalize(img, mean, std, to_rgb=True)``, zero padding at the bottom/right)."""
        if not images:
            raise StreamvisError("PCAN needs at least one image")
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        height = -(-max(h for h, _ in sizes) // SIZE_DIVISOR) * SIZE_DIVISOR
        width = -(-max(w for _, w in sizes) // SIZE_DIVISOR) * SIZE_DIVISOR
        batch = torch.zeros((len(images), 3, height, width), device=self.pixel_mean.device)
        for index, image in enumerate(images):
            if image.dim() != 3 or image.shape[0] != 3:
                raise StreamvisError(f"PCAN expects (3, H, W) BGR images, got shape {tuple(image.shape)}")
            rgb = image.to(batch.device).flip(0).float()
            h, w = sizes[index]
            batch[index, :, :h, :w] = (rgb - self.pixel_mean) * (1.0 / self.pixel_std)
        return batch, sizes

    def extract_features(self, images: Tensor) -> list[Tensor]:
        """(N, 3, H, W) normalised batch -> [P2, ..., P6]."""
        return self.neck(self.backbone(images))

    # ------------------------------------------------------------------ inference
    def start_video(self) -> None:
        """Begin a new video: the next frame is frame 0 (frame memory and association state reset)."""
        self._next_frame = 0
        self._tracker = None
        self._video_shape = None
        self.frame_attention.reset()

    @torch.no_grad()
    def forward_frame(self, image: Tensor, image_hw: tuple[int, int], scale_factor: Tensor,
                      original_hw: tuple[int, int], frame_index: int) -> PCANFrameOutput:
        """The official test path of one frame (facts.md 1.1, steps 1-11).

        Args:
            image: (1, 3, Hp, Wp) normalised, padded network input.
            image_hw: its unpadded (h, w).
            scale_factor: (4,) float32 [w, h, w, h] network input / original frame.
            original_hw: (H, W) of the original frame (masks are pasted there).
            frame_index: 0-based index in the video; 0 resets the video state.
        """
        if frame_index == 0:
            self._tracker = QuasiDenseTracker()
            self.frame_attention.reset()
        elif self._tracker is None:
            raise StreamvisError(f"PCAN got frame {frame_index} before frame 0 of a video; call "
                                 "start_video() and feed the frames in order")
        pyramid = self.extract_features(image)
        features = self.frame_attention(pyramid, frame_index) if self.config.frame_attention else pyramid
        scale = scale_factor.to(image)
        proposals = self.rpn_head.proposals(self.rpn_head(features), [image_hw])
        detections = self.roi_head.predict_boxes(features, proposals, [image_hw], [scale])[0]
        mask = self.roi_head.predict_masks(features, [detections], [original_hw], [scale])[0]
        # official: track RoIs are the rescaled detections times scale_factor
        embeds = self.roi_head.embed(features, [detections.boxes * scale])
        masks = mask.masks.clone()
        track_ids = torch.full((len(detections),), -1, dtype=torch.int64)
        tracked, refined = None, masks.new_zeros((0, *original_hw))
        if self.config.refine:
            tracked = associate_and_refine(
                self._tracker, self.roi_head.refine_head,
                FrameDetections(detections.boxes_with_scores, detections.labels, mask.mask_logits,
                                mask.mask_feats, embeds), frame_index)
        if tracked is not None:
            # official get_seg_masks: paste at (boxes * sf) / sf, sigmoid, >= 0.5
            paste_boxes = (tracked.boxes[:, :4] * scale) / scale
            refined = paste_masks(tracked.refine_logits[:, 0].sigmoid(), paste_boxes, original_hw,
                                  threshold=self.config.mask_threshold)
            kept = tracked.kept_indices.to(masks.device)
            masks[kept] = refined
            track_ids[kept.cpu()] = tracked.ids.cpu()
        return PCANFrameOutput(pyramid, features, proposals[0], detections, mask, embeds, tracked, refined,
                               masks, track_ids)

    @torch.no_grad()
    def predict(self, images: list[Tensor], output_sizes: list[tuple[int, int]] | None = None
                ) -> list[Instances]:
        """Detect, segment, embed and refine the next frame(s) of the current video (eval behaviour).

        Args:
            images: each (3, h_i, w_i) uint8 BGR, already resized; consecutive frames of one video
                (`start_video` begins a new one; so does a frame whose padded size differs from the
                video's, since the frame-level memory needs one size).
            output_sizes: (H, W) of each original frame (default: the input sizes).

        Returns:
            One `Instances` per image at its output size, in detector order: ``boxes`` (K, 4),
            ``scores`` (K,), ``classes`` (K,), ``masks`` (K, H, W) bool (refined for the detections the
            association kept), ``embeddings`` (K, D) raw, ``track_ids`` (K,) the model's association ids.
        """
        was_training = self.training
        self.eval()
        try:
            results = []
            for index, image in enumerate(images):
                batch, (image_hw,) = self.normalize([image])
                if self._next_frame > 0 and tuple(batch.shape) != self._video_shape:
                    self.start_video()  # a frame of another size cannot continue the video: a new one
                self._video_shape = tuple(batch.shape)
                original_hw = tuple(output_sizes[index]) if output_sizes is not None else image_hw
                scale = torch.tensor([image_hw[1] / original_hw[1], image_hw[0] / original_hw[0]] * 2,
                                     dtype=torch.float32)
                out = self.forward_frame(batch, image_hw, scale, original_hw, self._next_frame)
                self._next_frame += 1
                det = out.detections
                results.append(Instances(original_hw, boxes=det.boxes, scores=det.scores, classes=det.labels,
                                         masks=out.masks, embeddings=out.embeds, track_ids=out.track_ids))
            return results
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------ training
    def loss(self, batch: PairBatch) -> dict[str, Tensor]:
        """Training losses of key/reference frame pairs for the configured ``train_stage``.

        Returns:
            ``track``: loss_rpn_cls, loss_rpn_bbox, loss_cls, loss_bbox, loss_track, loss_track_aux;
            ``mask``: loss_mask; ``refine``: loss_refine; ``joint``: all of them.
        """
        stage = self.config.train_stage
        key, ref = batch.frames
        key_images, key_sizes = self.normalize(key.images)
        ref_images, ref_sizes = self.normalize(ref.images)
        key_gt = _targets(key.instances, tuple(key_images.shape[-2:]), key_images.device)
        ref_gt = _targets(ref.instances, tuple(ref_images.shape[-2:]), ref_images.device)
        match_indices = [_match_indices(k.gt_ids, r.gt_ids) for k, r in zip(key.instances, ref.instances)]
        x = self.extract_features(key_images)  # official: no frame attention in training
        rpn_output = self.rpn_head(x)
        losses: dict[str, Tensor] = {}
        if stage in ("track", "joint"):
            losses.update(self.rpn_head.loss(rpn_output, key_gt.boxes, key_sizes,
                                             tuple(key_images.shape[-2:])))
        proposals = self.rpn_head.proposals(rpn_output, key_sizes)
        samples = self.roi_head.sample(proposals, key_gt.boxes, key_gt.labels)
        if stage in ("track", "joint"):
            with_mask = stage == "joint"
            rcnn = self.roi_head.loss(x, samples, key_gt.masks if with_mask else None)
            losses.update(rcnn)
        if stage == "mask":
            losses["loss_mask"] = self._mask_loss(x, samples, key_gt.masks)
        need_ref = stage in ("track", "joint", "refine")
        if not need_ref:
            return losses
        ref_x = self.extract_features(ref_images)
        with torch.no_grad():
            # official: simple_test_rpn (test-time proposals) on the reference frame
            ref_proposals = self.rpn_head.proposals(self.rpn_head(ref_x), ref_sizes)
        if stage in ("track", "joint"):
            losses.update(self._track_losses(x, ref_x, proposals, ref_proposals, key_gt, ref_gt,
                                             match_indices))
        if stage in ("refine", "joint"):
            ref_samples = self.roi_head.sample(ref_proposals, ref_gt.boxes, ref_gt.labels)
            losses["loss_refine"] = self._refine_loss(x, ref_x, samples, ref_samples, key_gt, match_indices)
        return losses

    def _mask_loss(self, features: list[Tensor], samples: list[SamplingResult],
                   gt_masks: list[Tensor]) -> Tensor:
        """mmdet 2.x mask loss of the positive R-CNN samples (mean BCE on the GT-class channel)."""
        feats, logits, targets = self._positive_masks(features, samples, gt_masks)
        labels = torch.cat([s.pos_gt_labels for s in samples])
        return self.roi_head.mask_head.loss(logits, targets, labels)

    def _positive_masks(self, features, samples, gt_masks) -> tuple[Tensor, Tensor, Tensor]:
        """(mask RoI features, all-class mask logits, 28x28 targets) of the positive samples."""
        rois = boxes_to_rois([s.pos_boxes for s in samples]).to(features[0])
        feats = self.roi_head.mask_roi_extractor(features, rois)
        logits = self.roi_head.mask_head(feats)
        targets = torch.cat([build_mask_targets(s.pos_boxes, s.pos_assigned_gt_inds, masks)
                             for s, masks in zip(samples, gt_masks)]).to(logits)
        return feats, logits, targets

    def _track_losses(self, x, ref_x, proposals, ref_proposals, key_gt, ref_gt,
                      match_indices) -> dict[str, Tensor]:
        """QDTrack ``loss_track`` / ``loss_track_aux`` (facts.md 4.2) over embed-sampled RoIs."""
        key_samples = [_embed_sample(p, b, c) for p, b, c in zip(proposals, key_gt.boxes, key_gt.labels)]
        ref_samples = [_embed_sample(p, b, c) for p, b, c in zip(ref_proposals, ref_gt.boxes, ref_gt.labels)]
        key_embeds = self.roi_head.embed(x, [s.pos_boxes for s in key_samples])
        ref_embeds = self.roi_head.embed(ref_x, [s.boxes for s in ref_samples])
        pairs, key_start, ref_start = [], 0, 0
        for k, r, match in zip(key_samples, ref_samples, match_indices):
            num_key, num_ref = len(k.pos_boxes), len(r.boxes)
            pairs.append(ImagePairs(key_embeds[key_start:key_start + num_key],
                                    ref_embeds[ref_start:ref_start + num_ref], k.pos_assigned_gt_inds,
                                    r.pos_assigned_gt_inds, match.to(k.pos_assigned_gt_inds)))
            key_start, ref_start = key_start + num_key, ref_start + num_ref
        return track_losses(pairs, skip_images_without_positives=self.config.skip_images_without_positives)

    def _refine_loss(self, x, ref_x, samples, ref_samples, key_gt, match_indices) -> Tensor:
        """``loss_refine`` (facts.md 3.3): key positives paired with same-instance reference positives.

        In the joint stage the refine head's inputs are detached, so the other parts learn only from
        their own losses, as in the staged official recipe.
        """
        key_feats, key_logits, key_targets = self._positive_masks(x, samples, key_gt.masks)
        ref_rois = boxes_to_rois([s.pos_boxes for s in ref_samples]).to(ref_x[0])
        ref_feats = self.roi_head.mask_roi_extractor(ref_x, ref_rois)
        ref_logits = self.roi_head.mask_head(ref_feats)
        key_embeds = self.roi_head.embed(x, [s.pos_boxes for s in samples])
        ref_embeds = self.roi_head.embed(ref_x, [s.pos_boxes for s in ref_samples])
        key_parts, ref_parts, valids, ref_indices = [], [], [], []
        key_start = ref_start = 0
        for k, r, match in zip(samples, ref_samples, match_indices):
            nk, nr = len(k.pos_boxes), len(r.pos_boxes)
            ks, rs = slice(key_start, key_start + nk), slice(ref_start, ref_start + nr)
            key_pids = match.to(k.pos_assigned_gt_inds)[k.pos_assigned_gt_inds]
            valid, ref_index = refine_pairs(key_embeds[ks], ref_embeds[rs], key_pids, r.pos_assigned_gt_inds)
            key_parts.append((key_feats[ks].detach(), key_logits[ks].detach(), key_targets[ks],
                              k.pos_gt_labels))
            ref_parts.append((ref_feats[rs].detach(), ref_logits[rs].detach()))
            valids.append(valid)
            ref_indices.append(ref_index)
            key_start, ref_start = key_start + nk, ref_start + nr
        pairs = select_training_pairs(key_parts, ref_parts, valids, ref_indices)
        if pairs.key_feats.shape[0] == 0:
            return sum(p.sum() for p in self.roi_head.refine_head.parameters()) * 0.0
        logits = self.roi_head.refine_head.refine(pairs.key_feats, pairs.key_mask_pred, pairs.labels,
                                                  pairs.ref_feats, pairs.ref_mask_pred)
        return refine_loss(logits, pairs.key_targets)


@dataclass
class _Targets:
    boxes: list[Tensor]
    labels: list[Tensor]
    masks: list[Tensor]


def _targets(instances: list[Instances], padded_hw: tuple[int, int], device) -> _Targets:
    """Per image GT boxes (G, 4), labels (G,) and masks (G, Hp, Wp) padded to the batch size."""
    boxes, labels, masks = [], [], []
    for inst in instances:
        boxes.append(inst.gt_boxes.float().to(device))
        labels.append(inst.gt_classes.long().to(device))
        gt = inst.gt_masks.to(device)
        padding = (0, padded_hw[1] - gt.shape[-1], 0, padded_hw[0] - gt.shape[-2])
        masks.append(F.pad(gt.to(torch.uint8), padding))
    return _Targets(boxes, labels, masks)


def _match_indices(key_ids: Tensor, ref_ids: Tensor) -> Tensor:
    """(G_key,) index of the reference GT with the same identity, or -1 (official ``_match_gts``)."""
    same = key_ids.reshape(-1, 1) == ref_ids.reshape(1, -1)
    found = same.any(dim=1)
    return torch.where(found, same.float().argmax(dim=1), torch.full_like(key_ids.reshape(-1), -1)).long()


def _embed_sample(proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> SamplingResult:
    assign = EMBED_ASSIGNER.assign(proposals[:, :4], gt_boxes, gt_labels)
    return EMBED_SAMPLER.sample(assign, proposals[:, :4], gt_boxes, gt_labels)


def build_pcan(config: PCANConfig) -> PCAN:
    """A fresh PCAN for `config` (random init as official; ImageNet weights come from ``init_weights``)."""
    return PCAN(config)
