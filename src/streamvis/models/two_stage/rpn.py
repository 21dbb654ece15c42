"""Region proposal network of the two-stage core (mmdet ``RPNHead``): head, proposals, training loss.

Official (PCAN, mmdet 2.10 ``RPNHead._get_bboxes``), per image: per level, sigmoid objectness of the
(H, W, A)-ordered anchors, the top ``pre_nms_topk`` (1000) by score; decode (stds 1) and clip to the
unpadded image; NMS (IoU 0.7, mmcv ``>=``) over all levels at once with the **level as the class**,
so boxes of different levels never suppress each other; the first ``max_proposals`` (1000) by score.
Legacy (MaskTrack R-CNN, mmdet 0.5, masktrack facts.md section 7.5; ``per_level_nms=True``): per
level top 200, decode (+1), NMS (``>``, +1), keep 200 per level; concatenate; top 200 by score.
Training (both): max-IoU assignment (0.7 / 0.3 / min 0.3) of the anchors inside the image
(``allowed_border``: 2.x -1 = all valid anchors, 0.5 uses 0), random sampling (256 or 64, half
positive, no GT added), sigmoid cross-entropy and smooth L1 (beta 1/9) summed and divided by
sum over images of max(#pos, 1) + max(#neg, 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from streamvis.models.two_stage.assigners import MaxIoUAssigner
from streamvis.models.two_stage.losses import smooth_l1_loss
from streamvis.models.two_stage.samplers import RandomSampler
from streamvis.ops.anchors import AnchorGenerator, anchor_inside_flags
from streamvis.ops.boxes import DeltaXYWHBoxCoder
from streamvis.ops.nms import mmdet_batched_nms, mmdet_nms


@dataclass(frozen=True)
class ProposalConfig:
    """How proposals are made from the RPN outputs (defaults: official PCAN test config).

    Args:
        pre_nms_topk: proposals per level before NMS (official 1000; MaskTrack R-CNN 200).
        nms_iou_threshold: official 0.7.
        max_proposals: proposals per image after NMS (official 1000; MaskTrack R-CNN 200).
        min_box_size: drop proposals narrower or shorter than this (official 0: keep all).
        per_level_nms: mmdet 0.5: NMS per level and keep `post_nms_topk_per_level` of each before
            the final top-k (mmdet 2.x: one NMS grouped by level, no per-level cap).
        post_nms_topk_per_level: see `per_level_nms` (MaskTrack R-CNN 200).
        nms_pixel_offset, nms_suppress_at_threshold: see `ops.nms.mmdet_nms` (mmdet 0.5 GPU NMS: 1, False).
    """

    pre_nms_topk: int = 1000
    nms_iou_threshold: float = 0.7
    max_proposals: int = 1000
    min_box_size: float = 0.0
    per_level_nms: bool = False
    post_nms_topk_per_level: int = 1000
    nms_pixel_offset: float = 0.0
    nms_suppress_at_threshold: bool = True


@dataclass(frozen=True)
class RPNTrainConfig:
    """Anchor targets of the RPN loss (defaults: official PCAN / mmdet 2.x RPN train config)."""

    assigner: MaxIoUAssigner = field(default_factory=lambda: MaxIoUAssigner(0.7, 0.3, min_pos_iou=0.3))
    sampler: RandomSampler = field(default_factory=lambda: RandomSampler(256, 0.5, add_gt_as_proposals=False))
    allowed_border: float = -1
    smooth_l1_beta: float = 1.0 / 9.0
    loss_cls_weight: float = 1.0
    loss_bbox_weight: float = 1.0


@dataclass
class RPNOutput:
    """Raw RPN outputs per pyramid level.

    Attributes:
        objectness: per level (N, A, H, W) logits.
        deltas: per level (N, 4A, H, W), anchor a's deltas in channels 4a..4a+3.
    """

    objectness: list[torch.Tensor]
    deltas: list[torch.Tensor]

    def flat(self, image: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per level for one image: logits (H*W*A,) and deltas (H*W*A, 4) in anchor order."""
        logits = [o[image].permute(1, 2, 0).reshape(-1) for o in self.objectness]
        deltas = [d[image].permute(1, 2, 0).reshape(-1, 4) for d in self.deltas]
        return logits, deltas


class RPNHead(nn.Module):
    """conv 3x3 + ReLU shared over levels, then ``rpn_cls`` (A sigmoid logits) and ``rpn_reg`` (4A).

    Parameter names are the official ``rpn_head.rpn_conv / rpn_cls / rpn_reg`` (mmdet 2.x and 0.5).

    Args:
        in_channels, feat_channels: official 256, 256.
        anchor_generator: official `AnchorGenerator()` (legacy=True for MaskTrack R-CNN).
        box_coder: official `DeltaXYWHBoxCoder()` (means 0, stds 1; pixel_offset 1 for mmdet 0.5).
        proposal_config, train_config: see `ProposalConfig`, `RPNTrainConfig`.
    """

    def __init__(self, *, in_channels: int = 256, feat_channels: int = 256,
                 anchor_generator: AnchorGenerator | None = None, box_coder: DeltaXYWHBoxCoder | None = None,
                 proposal_config: ProposalConfig | None = None, train_config: RPNTrainConfig | None = None):
        super().__init__()
        self.anchor_generator = anchor_generator or AnchorGenerator()
        self.box_coder = box_coder or DeltaXYWHBoxCoder()
        self.proposal_config = proposal_config or ProposalConfig()
        self.train_config = train_config or RPNTrainConfig()
        num_anchors = self.anchor_generator.num_anchors_per_location
        self.rpn_conv = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(feat_channels, num_anchors, 1)
        self.rpn_reg = nn.Conv2d(feat_channels, num_anchors * 4, 1)
        for conv in (self.rpn_conv, self.rpn_cls, self.rpn_reg):
            nn.init.normal_(conv.weight, std=0.01)  # official: RPNHead.init_weights normal_init(std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, features: list[torch.Tensor]) -> RPNOutput:
        """Args: features, one (N, C, H_l, W_l) per anchor stride. Returns the raw `RPNOutput`."""
        objectness, deltas = [], []
        for feature in features:
            x = F.relu(self.rpn_conv(feature))
            objectness.append(self.rpn_cls(x))
            deltas.append(self.rpn_reg(x))
        return RPNOutput(objectness, deltas)

    def anchors(self, output: RPNOutput) -> list[torch.Tensor]:
        """Per level (H*W*A, 4) anchors matching `output`."""
        sizes = [tuple(o.shape[-2:]) for o in output.objectness]
        return self.anchor_generator.grid_anchors(sizes, device=output.objectness[0].device)

    def proposals(self, output: RPNOutput, image_sizes: list[tuple[int, int]],
                  config: ProposalConfig | None = None) -> list[torch.Tensor]:
        """Proposals per image.

        Args:
            output: `forward`'s output for N images.
            image_sizes: per image the unpadded (H, W) of the network input (boxes are clipped to it).
            config: overrides `proposal_config` (e.g. the training-time ``rpn_proposal`` settings).

        Returns:
            per image (K, 5) [x1, y1, x2, y2, objectness probability], by decreasing score.
        """
        anchors = self.anchors(output)
        results = []
        for image, image_hw in enumerate(image_sizes):
            logits, deltas = output.flat(image)
            with torch.no_grad():
                results.append(self._image_proposals(anchors, logits, deltas, image_hw,
                                                     config or self.proposal_config))
        return results

    def _image_proposals(self, anchors, logits, deltas, image_hw, cfg: ProposalConfig) -> torch.Tensor:
        nms_options = dict(pixel_offset=cfg.nms_pixel_offset,
                           suppress_at_threshold=cfg.nms_suppress_at_threshold)
        boxes, scores, levels = [], [], []
        for level, (level_anchors, level_logits, level_deltas) in enumerate(zip(anchors, logits, deltas)):
            level_scores = level_logits.sigmoid()
            if 0 < cfg.pre_nms_topk < level_scores.numel():
                level_scores, top = level_scores.sort(descending=True, stable=True)
                level_scores, top = level_scores[: cfg.pre_nms_topk], top[: cfg.pre_nms_topk]
                level_anchors, level_deltas = level_anchors[top], level_deltas[top]
            level_boxes = self.box_coder.decode(level_anchors, level_deltas, max_shape=image_hw)
            level_boxes, level_scores = self._drop_small(level_boxes, level_scores, cfg.min_box_size)
            if cfg.per_level_nms:
                keep = mmdet_nms(level_boxes, level_scores, cfg.nms_iou_threshold, **nms_options)
                keep = keep[: cfg.post_nms_topk_per_level]
                level_boxes, level_scores = level_boxes[keep], level_scores[keep]
            boxes.append(level_boxes)
            scores.append(level_scores)
            levels.append(torch.full_like(level_scores, level, dtype=torch.int64))
        boxes, scores, levels = torch.cat(boxes), torch.cat(scores), torch.cat(levels)
        if cfg.per_level_nms:
            order = torch.sort(scores, descending=True, stable=True).indices[: cfg.max_proposals]
        else:
            order = mmdet_batched_nms(boxes, scores, levels, cfg.nms_iou_threshold, **nms_options)
            order = order[: cfg.max_proposals]
        return torch.cat((boxes[order], scores[order, None]), dim=1)

    def _drop_small(self, boxes: torch.Tensor, scores: torch.Tensor,
                    min_size: float) -> tuple[torch.Tensor, torch.Tensor]:
        if min_size <= 0:
            return boxes, scores
        offset = self.box_coder.pixel_offset
        widths = boxes[:, 2] - boxes[:, 0] + offset
        heights = boxes[:, 3] - boxes[:, 1] + offset
        keep = (widths >= min_size) & (heights >= min_size)
        return boxes[keep], scores[keep]

    def loss(self, output: RPNOutput, gt_boxes: list[torch.Tensor], image_sizes: list[tuple[int, int]],
             pad_size: tuple[int, int], generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """RPN training loss.

        Args:
            output: `forward`'s output for N images.
            gt_boxes: per image (G_i, 4) ground-truth boxes in network-input pixels.
            image_sizes: per image the unpadded (H, W); pad_size: the padded batch (H, W).
            generator: random source of the anchor sampler.

        Returns:
            {"loss_rpn_cls": (), "loss_rpn_bbox": ()}.
        """
        cfg = self.train_config
        anchors_per_level = self.anchors(output)
        sizes = [tuple(o.shape[-2:]) for o in output.objectness]
        anchors = torch.cat(anchors_per_level)
        valid = torch.cat(self.anchor_generator.valid_flags(sizes, pad_size, device=anchors.device))
        logits_all, deltas_all, targets, weights, box_targets, box_weights = [], [], [], [], [], []
        num_pos = num_neg = 0
        for image, (boxes, image_hw) in enumerate(zip(gt_boxes, image_sizes)):
            logits, deltas = output.flat(image)
            logits_all.append(torch.cat(logits))
            deltas_all.append(torch.cat(deltas))
            inside = anchor_inside_flags(anchors, valid, image_hw, cfg.allowed_border)
            inside = torch.nonzero(inside).squeeze(1)
            assign = cfg.assigner.assign(anchors[inside], boxes)
            sample = cfg.sampler.sample(assign, anchors[inside], boxes, generator=generator)
            label = anchors.new_zeros(anchors.shape[0])
            weight = anchors.new_zeros(anchors.shape[0])
            box_target = anchors.new_zeros(anchors.shape)
            box_weight = anchors.new_zeros(anchors.shape)
            pos, neg = inside[sample.pos_inds], inside[sample.neg_inds]
            label[pos] = 1.0
            weight[pos] = 1.0
            weight[neg] = 1.0
            if pos.numel():
                box_target[pos] = self.box_coder.encode(sample.pos_boxes, sample.pos_gt_boxes)
                box_weight[pos] = 1.0
            targets.append(label)
            weights.append(weight)
            box_targets.append(box_target)
            box_weights.append(box_weight)
            num_pos += max(pos.numel(), 1)
            num_neg += max(neg.numel(), 1)
        avg_factor = float(num_pos + num_neg)
        logits, deltas = torch.cat(logits_all), torch.cat(deltas_all)
        loss_cls = F.binary_cross_entropy_with_logits(logits, torch.cat(targets), weight=torch.cat(weights),
                                                      reduction="sum") / avg_factor
        loss_bbox = (smooth_l1_loss(deltas, torch.cat(box_targets), cfg.smooth_l1_beta)
                     * torch.cat(box_weights)).sum() / avg_factor
        return {"loss_rpn_cls": cfg.loss_cls_weight * loss_cls,
                "loss_rpn_bbox": cfg.loss_bbox_weight * loss_bbox}
