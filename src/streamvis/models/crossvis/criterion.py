"""CrossVIS training criterion: FCOS, CondInst mask, crossover and embedding losses of a frame pair.

Faithful to the official `CrossVIS.forward_train` (hustvl/CrossVIS, reference golden_losses.md):
the key and the reference frame batches are two separate batches; their FCOS (cls, loc, ctr) and
mask losses are averaged, while the crossover and re-ID losses are computed once over both.
The FCOS targets are in targets.py, the crossover loss in crossover.py, the re-ID loss in
embedding.py; this module puts them together.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from streamvis.models.crossvis.config import LossConfig
from streamvis.models.crossvis.crossover import (
    CrossoverSampler,
    crossover_loss,
    crossover_pair,
    subsample_positives,
)
from streamvis.models.crossvis.embedding import GlobalEmbeddingLoss, PairwiseEmbeddingLoss
from streamvis.models.crossvis.fcos import HeadOutputs
from streamvis.models.crossvis.targets import (
    FCOSTargets,
    FramePositives,
    box_centers,
    fcos_targets,
    mask_centroids,
)
from streamvis.models.losses import (
    centerness_loss,
    centerness_targets,
    dice_loss,
    iou_loss,
    sigmoid_focal_loss,
)
from streamvis.ops.misc import aligned_bilinear
from streamvis.structures import FrameBatch, PairBatch

LOSS_KEYS = ("loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask", "loss_cross_over", "loss_reid")


class CrossVISCriterion(nn.Module):
    """All CrossVIS training losses of a `PairBatch`, given the head outputs of both frame batches.

    Args:
        cfg: `LossConfig`.
        num_classes: foreground classes C.
        num_identities: identity proxies nID (global embedding; ids are 1..nID).
        embedding_dim: re-ID embedding width D.

    The global embedding's Linear is `self.embedding.cls` (official checkpoint key `cls.*`).
    `self.crossover_sampler` draws the crossover positives; replace it to replay recorded draws.
    """

    def __init__(self, cfg: LossConfig, *, num_classes: int, num_identities: int, embedding_dim: int):
        super().__init__()
        self.cfg = cfg
        self.num_classes = num_classes
        if cfg.embedding == "global":
            self.embedding = GlobalEmbeddingLoss(
                num_identities=num_identities, embedding_dim=embedding_dim, loss_type=cfg.embedding_loss,
                alpha=cfg.focal_alpha, gamma=cfg.focal_gamma, prior_prob=cfg.identity_prior_prob)
        else:
            self.embedding = PairwiseEmbeddingLoss(temperature=cfg.pairwise_temperature)
        self.crossover_sampler = CrossoverSampler(cfg.crossover_sampling)

    def forward(self, outputs_key: HeadOutputs, outputs_ref: HeadOutputs, batch: PairBatch, *,
                mask_head) -> dict[str, torch.Tensor]:
        """Compute the losses.

        Args:
            outputs_key, outputs_ref: `HeadOutputs` of the key / reference frame batches (train mode).
            batch: the `PairBatch` whose frames produced them (targets in `instances`, not mutated).
            mask_head: callable (mask_feats, controller_params (K,169), locations (K,2), fpn_levels (K,),
                im_inds (K,)) -> mask logits (K, 1, Hp/8, Wp/8).

        Returns:
            dict with exactly the keys `LOSS_KEYS`, each a scalar tensor.
        """
        losses: dict[str, torch.Tensor] = {}
        positives = []
        for outputs, frame in zip((outputs_key, outputs_ref), batch.frames):
            frame_losses, frame_positives = self.frame_losses(outputs, frame, mask_head)
            positives.append(frame_positives)
            for key, value in frame_losses.items():
                losses[key] = losses[key] + value if key in losses else value
        losses = {key: value / 2.0 for key, value in losses.items()}  # official: mean of the 2 frames
        if self.cfg.crossover:
            losses["loss_cross_over"] = self.crossover_loss(positives[0], positives[1], mask_head)
        else:
            losses["loss_cross_over"] = positives[0].mask_feats.new_zeros(())
        losses["loss_reid"] = self.embedding_loss(positives[0], positives[1])
        return {key: losses[key] for key in LOSS_KEYS}

    def frame_losses(self, outputs: HeadOutputs, frame: FrameBatch, mask_head
                     ) -> tuple[dict[str, torch.Tensor], FramePositives]:
        """FCOS and mask losses of one frame batch, and its positives."""
        targets = self.targets(outputs, frame)
        losses = self.fcos_losses(outputs, targets)
        positives = self.positives(outputs, frame, targets)
        kept = subsample_positives(positives, self.cfg.max_proposals)
        losses["loss_mask"] = self.mask_loss(kept, mask_head)
        return losses, positives

    def targets(self, outputs: HeadOutputs, frame: FrameBatch) -> FCOSTargets:
        """FCOS targets of a frame batch (`targets.fcos_targets` with this config)."""
        insts = frame.instances
        if self.cfg.center_sampling_on == "mask":
            centers = [mask_centroids(inst.gt_masks) for inst in insts]
        else:
            centers = [box_centers(inst.gt_boxes) for inst in insts]
        return fcos_targets(
            outputs.locations, [inst.gt_boxes for inst in insts], [inst.gt_classes for inst in insts],
            centers, num_classes=self.num_classes, strides=tuple(outputs.strides),
            size_ranges=self.cfg.size_ranges, radius=self.cfg.center_sampling_radius)

    def fcos_losses(self, outputs: HeadOutputs, targets: FCOSTargets) -> dict[str, torch.Tensor]:
        """Focal classification, centerness-weighted GIoU and centerness BCE (official FCOSOutputs)."""
        logits = _flatten_levels(outputs.cls_logits)  # (L, C); float32 also under autocast
        reg_pred = _flatten_levels(outputs.bbox_reg)  # (L, 4) stride units
        ctr_pred = _flatten_levels(outputs.ctrness).reshape(-1)  # (L,)
        pos = targets.pos_inds
        labels = targets.labels
        num_pos_avg = max(_mean_over_processes(float(len(pos)), logits.device), 1.0)
        class_target = torch.zeros_like(logits)
        class_target[pos, labels[pos]] = 1
        loss_cls = sigmoid_focal_loss(logits, class_target, alpha=self.cfg.focal_alpha,
                                      gamma=self.cfg.focal_gamma, reduction="sum") / num_pos_avg
        reg_targets = targets.reg_targets[pos]
        ctr_targets = centerness_targets(reg_targets)
        loss_denorm = max(_mean_over_processes(ctr_targets.sum().item(), logits.device), 1e-6)
        loss_loc = iou_loss(reg_pred[pos], reg_targets, ctr_targets, self.cfg.box_loss) / loss_denorm
        loss_ctr = centerness_loss(ctr_pred[pos], ctr_targets) / num_pos_avg
        return {"loss_fcos_cls": loss_cls, "loss_fcos_loc": loss_loc, "loss_fcos_ctr": loss_ctr}

    def positives(self, outputs: HeadOutputs, frame: FrameBatch, targets: FCOSTargets) -> FramePositives:
        """Gather the positives' parameters, embeddings and bookkeeping of one frame batch."""
        pos = targets.pos_inds
        mask_feats = outputs.mask_feats
        stride = int(outputs.strides[0])  # official: the mask branch works at P3 (stride 8)
        padded = (mask_feats.shape[-2] * stride, mask_feats.shape[-1] * stride)
        insts = frame.instances
        return FramePositives(
            gt_inds=targets.gt_inds[pos], im_inds=targets.im_inds[pos], fpn_levels=targets.fpn_levels[pos],
            locations=targets.locations[pos],
            controller_params=_gather_levels(outputs.controller_params, targets, pos),
            embeddings=_gather_levels(outputs.reid_feats, targets, pos).float(),
            gt_ids=torch.cat([inst.gt_ids.long() for inst in insts]),
            gt_images=torch.cat([torch.full((len(inst),), i, dtype=torch.long, device=mask_feats.device)
                                 for i, inst in enumerate(insts)]),
            gt_bitmasks=torch.cat([_bitmasks(inst.gt_masks, padded, self.cfg.mask_out_stride, mask_feats)
                                   for inst in insts]),
            mask_feats=mask_feats, mask_feat_stride=stride)

    def mask_dice(self, positives: FramePositives, mask_head) -> torch.Tensor:
        """(K,) dice loss of the dynamic mask of each positive on its `mask_feats` vs its GT bitmask."""
        if len(positives) == 0:
            return positives.controller_params.new_zeros(0)
        logits = mask_head(positives.mask_feats, positives.controller_params, positives.locations,
                           positives.fpn_levels, positives.im_inds)  # (K, 1, Hp/8, Wp/8)
        factor = positives.mask_feat_stride // self.cfg.mask_out_stride
        scores = aligned_bilinear(logits.float(), factor).sigmoid()  # (K, 1, Hp/4, Wp/4)
        gt = positives.gt_bitmasks[positives.gt_inds].unsqueeze(1).to(scores.dtype)
        return dice_loss(scores, gt)

    def mask_loss(self, positives: FramePositives, mask_head) -> torch.Tensor:
        """Mean dice loss over `positives` (0, attached to the graph, when there are none)."""
        if len(positives) == 0:
            return positives.mask_feats.sum() * 0 + positives.controller_params.sum() * 0
        return self.mask_dice(positives, mask_head).mean()

    def crossover_instances(self, pos0: FramePositives, pos1: FramePositives
                            ) -> tuple[FramePositives, FramePositives]:
        """The crossover instances of both directions (`crossover.crossover_pair` with this config)."""
        return crossover_pair(pos0, pos1, self.crossover_sampler, self.cfg.max_proposals)

    def crossover_loss(self, pos0: FramePositives, pos1: FramePositives, mask_head) -> torch.Tensor:
        """``loss_cross_over`` (`crossover.crossover_loss`), scored with this criterion's mask loss."""
        return crossover_loss(pos0, pos1, sampler=self.crossover_sampler,
                              max_proposals=self.cfg.max_proposals,
                              mask_loss=partial(self.mask_loss, mask_head=mask_head))

    def embedding_loss(self, pos0: FramePositives, pos1: FramePositives) -> torch.Tensor:
        """Global (identity proxies over both frames' positives) or pairwise embedding loss."""
        ids0 = pos0.gt_ids[pos0.gt_inds]
        ids1 = pos1.gt_ids[pos1.gt_inds]
        if isinstance(self.embedding, PairwiseEmbeddingLoss):
            return self.embedding(pos0.embeddings, ids0, pos1.embeddings, ids1)
        return self.embedding(torch.cat([pos0.embeddings, pos1.embeddings]), torch.cat([ids0, ids1]))


def _flatten_levels(per_level: list[torch.Tensor]) -> torch.Tensor:
    """Per-level (N, C, H, W) -> (sum N*H*W, C), level -> image -> row-major (official order)."""
    return torch.cat([x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).float() for x in per_level], dim=0)


def _gather_levels(per_level: list[torch.Tensor], targets: FCOSTargets, pos: torch.Tensor) -> torch.Tensor:
    """(P, C) values of a dense per-level output at the positives, without flattening every level."""
    out, start = [], 0
    for x in per_level:
        n, c, h, w = x.shape
        end = start + n * h * w
        in_level = pos[(pos >= start) & (pos < end)] - start
        out.append(x.flatten(2)[in_level // (h * w), :, in_level % (h * w)])  # (P_l, C)
        start = end
    return torch.cat(out, dim=0)


def _bitmasks(masks: torch.Tensor, padded: tuple[int, int], stride: int, like: torch.Tensor) -> torch.Tensor:
    """(K, H, W) masks -> (K, Hp/stride, Wp/stride) float, zero-padded, sampled at offset stride//2."""
    h, w = masks.shape[-2:]
    full = F.pad(masks.to(like.dtype), (0, padded[1] - w, 0, padded[0] - h))
    start = stride // 2
    return full[:, start::stride, start::stride]


def _mean_over_processes(value: float, device) -> float:
    """Mean of a number over the distributed processes (official reduce_mean); `value` alone otherwise."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return value
    tensor = torch.tensor([value], dtype=torch.float32, device=device)
    dist.all_reduce(tensor)
    return tensor.item() / dist.get_world_size()
