"""CrossVIS training criterion: FCOS, CondInst mask, crossover and embedding losses of a frame pair.

Faithful to the official `CrossVIS.forward_train` (hustvl/CrossVIS, reference golden_losses.md):
the key and the reference frame batches are two separate batches; their FCOS (cls, loc, ctr) and
mask losses are averaged, while the crossover and re-ID losses are computed once over both.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from streamvis.errors import ConfigError
from streamvis.models.embedding import GlobalEmbeddingLoss, PairwiseEmbeddingLoss
from streamvis.models.losses import (
    FOCAL_ALPHA,
    FOCAL_GAMMA,
    centerness_loss,
    centerness_targets,
    dice_loss,
    iou_loss,
    sigmoid_focal_loss,
)
from streamvis.models.targets import (
    CENTER_SAMPLING_RADIUS,
    SIZE_RANGES,
    CrossoverSampler,
    FCOSTargets,
    box_centers,
    counterparts,
    crossover_assignment,
    fcos_targets,
    mask_centroids,
)
from streamvis.ops.misc import aligned_bilinear
from streamvis.structures import FrameBatch, PairBatch

LOSS_KEYS = ("loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask", "loss_cross_over", "loss_reid")


@dataclass(frozen=True)
class LossConfig:
    """Loss settings; the defaults are the official CrossVIS R-50 values.

    Attributes:
        focal_alpha, focal_gamma: sigmoid focal loss of the classification and re-ID heads.
        center_sampling_radius: in strides (official POS_RADIUS 1.5).
        center_sampling_on: "mask" (official: the mask centroid) or "box" (the box centre).
        size_ranges: per level [min, max] of max(l, t, r, b) in pixels, inclusive.
        box_loss: "giou" (official), "iou" or "linear_iou".
        mask_out_stride: stride of the supervised masks (official MASK_OUT_STRIDE 4).
        max_proposals: random subsample of the positives fed to the mask head (official 500; -1 off).
        crossover: compute loss_cross_over (else it is 0).
        crossover_sampling: how the counterpart's positive is drawn (`targets.CrossoverSampler`):
            "random" (training; torch RNG, vectorized), "python" (official: Python's `random`),
            "first" / "last" (deterministic). Recorded draws: `CrossoverSampler.replay`.
        embedding: "global" (official identity proxies) or "pairwise" (contrast key vs reference).
        embedding_loss: "focal" (official) or "ce" for the global embedding.
        pairwise_temperature: temperature of the pairwise embedding loss.
        identity_prior_prob: initial prior of the identity proxies' bias (official 0.01).
    """

    focal_alpha: float = FOCAL_ALPHA
    focal_gamma: float = FOCAL_GAMMA
    center_sampling_radius: float = CENTER_SAMPLING_RADIUS
    center_sampling_on: str = "mask"
    size_ranges: tuple[tuple[float, float], ...] = SIZE_RANGES
    box_loss: str = "giou"
    mask_out_stride: int = 4
    max_proposals: int = 500
    crossover: bool = True
    crossover_sampling: str = "random"
    embedding: str = "global"
    embedding_loss: str = "focal"
    pairwise_temperature: float = 0.1
    identity_prior_prob: float = 0.01

    def __post_init__(self):
        choices = {
            "center_sampling_on": ("mask", "box"),
            "box_loss": ("giou", "iou", "linear_iou"),
            "crossover_sampling": ("random", "python", "first", "last"),
            "embedding": ("global", "pairwise"),
            "embedding_loss": ("focal", "ce"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"loss.{name} is {getattr(self, name)!r}; expected one of {allowed}")


@dataclass
class FramePositives:
    """The positive locations of one frame batch (official order) and that batch's GTs.

    Attributes:
        gt_inds, im_inds, fpn_levels: (P,) int64; locations: (P, 2) float32 pixels.
        params: (P, 169) dynamic mask-head parameters; embeddings: (P, D) re-ID features.
        gt_ids: (K,) identity ids of the batch's GTs; gt_images: (K,) their image index.
        gt_bitmasks: (K, Hp/s, Wp/s) float GT masks sampled at the mask output stride s.
        mask_feats: (N, 8, Hp/8, Wp/8); mask_feat_stride: 8.
    """

    gt_inds: torch.Tensor
    im_inds: torch.Tensor
    fpn_levels: torch.Tensor
    locations: torch.Tensor
    params: torch.Tensor
    embeddings: torch.Tensor
    gt_ids: torch.Tensor
    gt_images: torch.Tensor
    gt_bitmasks: torch.Tensor
    mask_feats: torch.Tensor
    mask_feat_stride: int

    def __len__(self) -> int:
        return len(self.gt_inds)

    def select(self, keep: torch.Tensor) -> FramePositives:
        """The positives `keep` (index tensor), same GTs."""
        fields = {k: getattr(self, k)[keep] for k in ("gt_inds", "im_inds", "fpn_levels", "locations",
                                                      "params", "embeddings")}
        return FramePositives(**fields, gt_ids=self.gt_ids, gt_images=self.gt_images,
                              gt_bitmasks=self.gt_bitmasks, mask_feats=self.mask_feats,
                              mask_feat_stride=self.mask_feat_stride)


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

    def forward(self, outputs_key, outputs_ref, batch: PairBatch, *, mask_head) -> dict[str, torch.Tensor]:
        """Compute the losses.

        Args:
            outputs_key, outputs_ref: `HeadOutputs` of the key / reference frame batches (train mode).
            batch: the `PairBatch` whose frames produced them (targets in `instances`, not mutated).
            mask_head: callable (mask_feats, params (K,169), locations (K,2), fpn_levels (K,),
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

    def frame_losses(self, outputs, frame: FrameBatch, mask_head) -> tuple[dict[str, torch.Tensor],
                                                                            FramePositives]:
        """FCOS and mask losses of one frame batch, and its positives."""
        targets = self.targets(outputs, frame)
        losses = self.fcos_losses(outputs, targets)
        positives = self.positives(outputs, frame, targets)
        keep = _subsample(len(positives), self.cfg.max_proposals, positives.mask_feats.device)
        losses["loss_mask"] = self.mask_loss(positives if keep is None else positives.select(keep), mask_head)
        return losses, positives

    def targets(self, outputs, frame: FrameBatch) -> FCOSTargets:
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

    def fcos_losses(self, outputs, targets: FCOSTargets) -> dict[str, torch.Tensor]:
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

    def positives(self, outputs, frame: FrameBatch, targets: FCOSTargets) -> FramePositives:
        """Gather the positives' parameters, embeddings and bookkeeping of one frame batch."""
        pos = targets.pos_inds
        mask_feats = outputs.mask_feats
        stride = int(outputs.strides[0])  # official: the mask branch works at P3 (stride 8)
        padded = (mask_feats.shape[-2] * stride, mask_feats.shape[-1] * stride)
        insts = frame.instances
        return FramePositives(
            gt_inds=targets.gt_inds[pos], im_inds=targets.im_inds[pos], fpn_levels=targets.fpn_levels[pos],
            locations=targets.locations[pos], params=_gather_levels(outputs.top_feats, targets, pos),
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
            return positives.params.new_zeros(0)
        logits = mask_head(positives.mask_feats, positives.params, positives.locations,
                           positives.fpn_levels, positives.im_inds)  # (K, 1, Hp/8, Wp/8)
        factor = positives.mask_feat_stride // self.cfg.mask_out_stride
        scores = aligned_bilinear(logits.float(), factor).sigmoid()  # (K, 1, Hp/4, Wp/4)
        gt = positives.gt_bitmasks[positives.gt_inds].unsqueeze(1).to(scores.dtype)
        return dice_loss(scores, gt)

    def mask_loss(self, positives: FramePositives, mask_head) -> torch.Tensor:
        """Mean dice loss over `positives` (0, attached to the graph, when there are none)."""
        if len(positives) == 0:
            return positives.mask_feats.sum() * 0 + positives.params.sum() * 0
        return self.mask_dice(positives, mask_head).mean()

    def crossover_instances(self, pos0: FramePositives, pos1: FramePositives
                            ) -> tuple[FramePositives, FramePositives]:
        """The crossover instances (official cross_over), each subsampled to `max_proposals` first.

        Returns:
            on_frame0: frame-1 params with frame-0 locations/levels/GTs/mask features (official inst_1);
            on_frame1: frame-0 params on frame 1 (inst_0). The sampler draws for frame-0 instances first.
        """
        for_pos0 = _subsample(len(pos0), self.cfg.max_proposals, pos0.mask_feats.device)
        for_pos1 = _subsample(len(pos1), self.cfg.max_proposals, pos1.mask_feats.device)
        pos0 = pos0 if for_pos0 is None else pos0.select(for_pos0)
        pos1 = pos1 if for_pos1 is None else pos1.select(for_pos1)
        on_frame1 = _crossover_instances(pos0, pos1, self.crossover_sampler)
        on_frame0 = _crossover_instances(pos1, pos0, self.crossover_sampler)
        return on_frame0, on_frame1

    def crossover_loss(self, pos0: FramePositives, pos1: FramePositives, mask_head) -> torch.Tensor:
        """0.5 * (mean dice of frame-1 params on frame-0 features + frame-0 params on frame-1 features)."""
        on_frame0, on_frame1 = self.crossover_instances(pos0, pos1)
        return (self.mask_loss(on_frame0, mask_head) + self.mask_loss(on_frame1, mask_head)) * 0.5

    def embedding_loss(self, pos0: FramePositives, pos1: FramePositives) -> torch.Tensor:
        """Global (identity proxies over both frames' positives) or pairwise embedding loss."""
        ids0 = pos0.gt_ids[pos0.gt_inds]
        ids1 = pos1.gt_ids[pos1.gt_inds]
        if isinstance(self.embedding, PairwiseEmbeddingLoss):
            return self.embedding(pos0.embeddings, ids0, pos1.embeddings, ids1)
        return self.embedding(torch.cat([pos0.embeddings, pos1.embeddings]), torch.cat([ids0, ids1]))


def _crossover_instances(src: FramePositives, dst: FramePositives,
                         sampler: CrossoverSampler) -> FramePositives:
    """`src` positives with a counterpart in `dst`, carrying their own params but the location, level,
    image and GT of one drawn `dst` positive of the counterpart (official cross_over)."""
    rel = counterparts(src.gt_ids, src.gt_images, dst.gt_ids, dst.gt_images)  # (K_src,)
    keep, dst_gt, chosen = crossover_assignment(src.gt_inds, rel, dst.gt_inds, len(dst.gt_ids), sampler)
    return FramePositives(
        gt_inds=dst_gt, im_inds=dst.gt_images[dst_gt], fpn_levels=dst.fpn_levels[chosen],
        locations=dst.locations[chosen], params=src.params[keep], embeddings=src.embeddings[keep],
        gt_ids=dst.gt_ids, gt_images=dst.gt_images, gt_bitmasks=dst.gt_bitmasks,
        mask_feats=dst.mask_feats, mask_feat_stride=dst.mask_feat_stride)


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


def _subsample(count: int, max_count: int, device) -> torch.Tensor | None:
    """Random `max_count` of `count` items (official torch.randperm), or None when all are kept."""
    if max_count < 0 or count <= max_count:
        return None
    return torch.randperm(count, device=device)[:max_count]


def _mean_over_processes(value: float, device) -> float:
    """Mean of a number over the distributed processes (official reduce_mean); `value` alone otherwise."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return value
    tensor = torch.tensor([value], dtype=torch.float32, device=device)
    dist.all_reduce(tensor)
    return tensor.item() / dist.get_world_size()
