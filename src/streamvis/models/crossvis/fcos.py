"""FCOS head (cls / bbox / re-ID towers, CondInst controller), its typed outputs and FCOS inference.

Reference facts.md, section 4. Tower layers are indexed like the official ``nn.Sequential``
(conv at 0, 3, 6, 9; GroupNorm at 1, 4, 7, 10), so official keys map by prefix only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from streamvis.ops.nms import batched_nms

# official: MODEL.FCOS.PRIOR_PROB 0.01 initialises the classification bias
CLS_PRIOR_PROB = 0.01


@dataclass
class HeadOutputs:
    """Dense per-level outputs of one padded image batch (levels P3..P7).

    Attributes:
        cls_logits: per level (N, C, H_l, W_l) raw class logits.
        bbox_reg: per level (N, 4, H_l, W_l) relu(scale_l * bbox_pred): l, t, r, b in stride units.
        ctrness: per level (N, 1, H_l, W_l) raw centerness logits.
        controller_params: per level (N, P, H_l, W_l) dynamic mask-head parameters (controller
            output), or None when only the tower features were computed (fast inference).
        reid_feats: per level (N, D, H_l, W_l) re-ID embeddings (reid_pred_bn output), or None.
        mask_feats: (N, 8, Hp/8, Wp/8) mask-branch output (stride 8).
        locations: per level (H_l*W_l, 2) (x, y) image pixels, row-major.
        strides: stride of each level (8, 16, 32, 64, 128).
        image_sizes: (h, w) of each image before padding.
        bbox_towers: per level bbox tower outputs (N, C, H_l, W_l), only for sparse inference.
        fpn_features: the FPN levels, only for sparse inference (the re-ID tower then runs only on
            the levels and images that have detections).
    """

    cls_logits: list[torch.Tensor]
    bbox_reg: list[torch.Tensor]
    ctrness: list[torch.Tensor]
    controller_params: list[torch.Tensor] | None
    reid_feats: list[torch.Tensor] | None
    mask_feats: torch.Tensor
    locations: list[torch.Tensor]
    strides: tuple[int, ...]
    image_sizes: list[tuple[int, int]]
    bbox_towers: list[torch.Tensor] | None = None
    fpn_features: list[torch.Tensor] | None = None


@dataclass
class FCOSHeadOutputs:
    """What `FCOSHead.forward` returns: per-level lists, one (N, C_x, H_l, W_l) tensor per level.

    Attributes:
        cls_logits: (N, C, H_l, W_l) raw class logits.
        bbox_reg: (N, 4, H_l, W_l) relu(scale_l * bbox_pred), l, t, r, b in stride units.
        ctrness: (N, 1, H_l, W_l) raw centerness logits.
        controller_params: (N, P, H_l, W_l) controller output (dense), else None.
        reid_feats: (N, D, H_l, W_l) re-ID embeddings (dense), else None.
        bbox_towers: (N, C_t, H_l, W_l) bbox tower outputs (sparse: `dense=False`), else None.
    """

    cls_logits: list[torch.Tensor] = field(default_factory=list)
    bbox_reg: list[torch.Tensor] = field(default_factory=list)
    ctrness: list[torch.Tensor] = field(default_factory=list)
    controller_params: list[torch.Tensor] | None = None
    reid_feats: list[torch.Tensor] | None = None
    bbox_towers: list[torch.Tensor] | None = None

    @classmethod
    def empty(cls, dense: bool) -> FCOSHeadOutputs:
        """Empty lists for the outputs a dense (or sparse) forward fills."""
        if dense:
            return cls(controller_params=[], reid_feats=[])
        return cls(bbox_towers=[])


class Scale(nn.Module):
    """A learnable scalar multiplier (one per FPN level)."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([init_value], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def make_tower(in_channels: int, channels: int, num_convs: int, num_groups: int = 32) -> nn.Sequential:
    """num_convs x [conv3x3 (bias) + GroupNorm(num_groups) + ReLU] (official FCOS tower)."""
    layers: list[nn.Module] = []
    for index in range(num_convs):
        conv = nn.Conv2d(in_channels if index == 0 else channels, channels, 3, padding=1)
        layers += [conv, nn.GroupNorm(num_groups, channels), nn.ReLU()]
    return nn.Sequential(*layers)


class FCOSHead(nn.Module):
    """Shared FCOS head: classification, box, centerness, controller and re-ID predictions.

    Args:
        in_channels: FPN width (official 256).
        channels: tower width (official 256, = in_channels).
        num_classes: foreground classes.
        num_convs: convs per tower (official 4).
        num_levels: FPN levels (5).
        num_controller_params: dynamic mask-head parameters per instance (official 169).
        reid_dim: re-ID embedding width (official 256).
    """

    def __init__(self, *, in_channels: int, num_classes: int, channels: int | None = None, num_convs: int = 4,
                 num_levels: int = 5, num_controller_params: int = 169, reid_dim: int = 256):
        super().__init__()
        self.num_classes = num_classes
        channels = in_channels if channels is None else channels
        if num_convs == 0 and channels != in_channels:
            raise ValueError("a head without tower convs needs channels == in_channels")
        self.cls_tower = make_tower(in_channels, channels, num_convs)
        self.bbox_tower = make_tower(in_channels, channels, num_convs)
        self.reid_tower = make_tower(in_channels, channels, num_convs)
        in_channels = channels  # the predictions read the tower outputs
        self.cls_logits = nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.ctrness = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.controller = nn.Conv2d(in_channels, num_controller_params, 3, padding=1)
        self.reid_pred = nn.Conv2d(in_channels, reid_dim, 1)
        self.reid_pred_bn = nn.BatchNorm2d(reid_dim)
        self.scales = nn.ModuleList([Scale(1.0) for _ in range(num_levels)])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official training init: convs N(0, 0.01) with zero bias; cls bias from the 0.01 prior."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - CLS_PRIOR_PROB) / CLS_PRIOR_PROB))

    def forward(self, features: list[torch.Tensor], dense: bool = True) -> FCOSHeadOutputs:
        """Run the head on every level.

        Args:
            features: FPN levels, each (N, C, H_l, W_l).
            dense: compute the controller and re-ID outputs at every location (official). When
                False, skip them and the re-ID tower and return the bbox tower outputs, so that they
                can be evaluated at the detections only (`sparse_controller_params`, `sparse_reid_feats`).

        Returns:
            `FCOSHeadOutputs` with cls_logits, bbox_reg, ctrness and either controller_params +
            reid_feats (dense) or bbox_towers.
        """
        out = FCOSHeadOutputs.empty(dense)
        for level, feature in enumerate(features):
            cls_tower = self.cls_tower(feature)
            bbox_tower = self.bbox_tower(feature)
            out.cls_logits.append(self.cls_logits(cls_tower))
            out.ctrness.append(self.ctrness(bbox_tower))
            out.bbox_reg.append(F.relu(self.scales[level](self.bbox_pred(bbox_tower))))
            _append_instance_outputs(self, out, feature, bbox_tower)
        return out

    def sparse_controller_params(self, bbox_tower: torch.Tensor, im_inds: torch.Tensor, ys: torch.Tensor,
                                 xs: torch.Tensor) -> torch.Tensor:
        """Controller output at K cells of one level: gathers each 3x3 neighbourhood (zero-padded).

        Args:
            bbox_tower: (N, C, H, W); im_inds, ys, xs: (K,) int64 cell coordinates.

        Returns:
            (K, P), equal to ``controller(bbox_tower)[im_inds, :, ys, xs]`` up to float rounding.
        """
        padded = F.pad(bbox_tower, (1, 1, 1, 1))
        offsets = torch.arange(3, device=ys.device)
        rows = (ys[:, None] + offsets[None, :])[:, :, None].expand(-1, 3, 3)  # (K, 3, 3)
        cols = (xs[:, None] + offsets[None, :])[:, None, :].expand(-1, 3, 3)
        patches = padded[im_inds[:, None, None], :, rows, cols]  # (K, 3, 3, C)
        patches = patches.permute(0, 3, 1, 2).reshape(len(ys), -1)  # (K, C*9), (c, ky, kx) order
        weight = self.controller.weight.reshape(self.controller.out_channels, -1)
        return torch.addmm(self.controller.bias, patches, weight.t())

    def sparse_reid_feats(self, reid_tower: torch.Tensor, im_inds: torch.Tensor, ys: torch.Tensor,
                          xs: torch.Tensor) -> torch.Tensor:
        """reid_pred + reid_pred_bn (eval statistics) at K cells of one level -> (K, D)."""
        if self.reid_pred_bn.training:
            raise RuntimeError("sparse re-ID features need reid_pred_bn in eval mode")
        cells = reid_tower[im_inds, :, ys, xs]  # (K, C)
        weight = self.reid_pred.weight.reshape(self.reid_pred.out_channels, -1)
        emb = torch.addmm(self.reid_pred.bias, cells, weight.t())
        bn = self.reid_pred_bn
        return F.batch_norm(emb, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


@dataclass
class FCOSDetections:
    """FCOS detections of one image after NMS and the post-NMS cap (official order).

    Attributes:
        boxes: (K, 4) xyxy input pixels, not clipped.
        scores: (K,) sqrt(cls_prob * ctr_prob).
        classes: (K,) int64 0-based.
        locations: (K, 2) (x, y) of the FCOS location.
        fpn_levels: (K,) int64 level 0..4.
        cells: (K,) int64 row-major index of the location within its level.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor
    locations: torch.Tensor
    fpn_levels: torch.Tensor
    cells: torch.Tensor

    def select(self, keep: torch.Tensor) -> FCOSDetections:
        """The detections `keep` (index or bool tensor)."""
        return FCOSDetections(*(getattr(self, f)[keep] for f in self.__dataclass_fields__))


def level_candidates(cls_logits: torch.Tensor, bbox_reg: torch.Tensor, ctrness: torch.Tensor,
                     locations: torch.Tensor, stride: int, level: int, *, score_threshold: float,
                     pre_nms_topk: int) -> FCOSDetections:
    """Candidates of one image at one level (official FCOSOutputs.forward_for_single_feature_map).

    Args:
        cls_logits: (C, H, W); bbox_reg: (4, H, W) stride units; ctrness: (1, H, W);
        locations: (H*W, 2).

    Returns:
        FCOSDetections (before NMS) with score_map = cls_prob*ctr_prob > score_threshold, at most
        pre_nms_topk of them (torch.topk, unsorted), in (location, class) row-major order otherwise.
    """
    num_classes = cls_logits.shape[0]
    cls_prob = cls_logits.permute(1, 2, 0).reshape(-1, num_classes).sigmoid()  # (HW, C)
    ctr_prob = ctrness.reshape(-1).sigmoid()  # (HW,)
    score_map = cls_prob * ctr_prob[:, None]  # official THRESH_WITH_CTR: threshold the product
    # one nonzero (one host synchronisation on a GPU): the scores are gathered at its indices, in
    # the same row-major order as boolean indexing
    cells, classes = (score_map > score_threshold).nonzero().unbind(1)
    scores = score_map[cells, classes]
    if scores.numel() > pre_nms_topk:
        scores, top = scores.topk(pre_nms_topk, sorted=False)
        cells, classes = cells[top], classes[top]
    reg = (bbox_reg * stride).permute(1, 2, 0).reshape(-1, 4)[cells]  # (K, 4) pixels
    where = locations[cells]
    boxes = torch.stack([where[:, 0] - reg[:, 0], where[:, 1] - reg[:, 1],
                         where[:, 0] + reg[:, 2], where[:, 1] + reg[:, 3]], dim=1)
    levels = torch.full_like(cells, level)
    return FCOSDetections(boxes, torch.sqrt(scores), classes, where, levels, cells)


def detect(outputs: HeadOutputs, image_index: int, *, score_threshold: float, pre_nms_topk: int,
           nms_threshold: float, detections_per_frame: int) -> FCOSDetections:
    """FCOS inference for one image: per-level candidates, class-aware NMS, post-NMS cap with ties.

    Reference facts.md, section 5.
    """
    per_level = [
        level_candidates(outputs.cls_logits[lv][image_index], outputs.bbox_reg[lv][image_index],
                         outputs.ctrness[lv][image_index], outputs.locations[lv], outputs.strides[lv], lv,
                         score_threshold=score_threshold, pre_nms_topk=pre_nms_topk)
        for lv in range(len(outputs.cls_logits))
    ]
    fields = FCOSDetections.__dataclass_fields__
    merged = FCOSDetections(*(torch.cat([getattr(d, f) for d in per_level]) for f in fields))
    merged = merged.select(batched_nms(merged.boxes, merged.scores, merged.classes, nms_threshold))
    count = merged.scores.numel()
    if count > detections_per_frame > 0:
        # official: kthvalue threshold; every detection scoring >= it survives (ties may keep more).
        # The official code runs kthvalue on the CPU (old CUDA builds lacked it); its value is the
        # same on any device, so it stays where the scores are (no copy, no .item())
        threshold, _ = torch.kthvalue(merged.scores, count - detections_per_frame + 1)
        merged = merged.select(torch.nonzero(merged.scores >= threshold).squeeze(1))
    return merged


class FusedTowersHead(nn.Module):
    """Inference-only `FCOSHead` running the cls and bbox towers as one conv stack (same outputs).

    The first tower convs share their input, so they become one conv C -> 2C; the later ones
    become one grouped conv (groups=2), and GroupNorm(2*32) over 2C channels equals the two
    GroupNorm(32) (its groups are the same consecutive channel blocks). bbox_pred and ctrness read
    the same tower and become one conv. The re-ID tower stays separate (sparse inference runs it
    only on levels with detections). Fewer, larger convolutions; whether that is faster depends on
    the CPU's conv kernels (benchmarks/bench_forward.py compares `fast` and `fast_unfused`).

    Args:
        head: a trained `FCOSHead` (its prediction layers are shared, its towers copied).
    """

    def __init__(self, head: FCOSHead):
        super().__init__()
        towers = (head.cls_tower, head.bbox_tower)
        convs = [[m for m in t if isinstance(m, nn.Conv2d)] for t in towers]
        norms = [[m for m in t if isinstance(m, nn.GroupNorm)] for t in towers]
        if not convs[0]:
            raise ValueError("FusedTowersHead needs at least one tower conv")
        self.cls_logits, self.scales = head.cls_logits, head.scales
        self.controller, self.reid_pred = head.controller, head.reid_pred
        self.reid_pred_bn, self.reid_tower = head.reid_pred_bn, head.reid_tower
        self.convs, self.norms = nn.ModuleList(), nn.ModuleList()
        for index, (layer_convs, layer_norms) in enumerate(zip(zip(*convs), zip(*norms))):
            conv, norm = _fuse_tower_layer(layer_convs, layer_norms, shared_input=index == 0)
            self.convs.append(conv)
            self.norms.append(norm)
        self.box_ctr = nn.Conv2d(head.bbox_pred.in_channels, 5, 3, padding=1)
        with torch.no_grad():
            self.box_ctr.weight.copy_(torch.cat([head.bbox_pred.weight, head.ctrness.weight]))
            self.box_ctr.bias.copy_(torch.cat([head.bbox_pred.bias, head.ctrness.bias]))
        self.requires_grad_(False)

    sparse_controller_params = FCOSHead.sparse_controller_params
    sparse_reid_feats = FCOSHead.sparse_reid_feats

    def forward(self, features: list[torch.Tensor], dense: bool = True) -> FCOSHeadOutputs:
        """Same contract as `FCOSHead.forward`."""
        out = FCOSHeadOutputs.empty(dense)
        for level, feature in enumerate(features):
            x = feature
            for conv, norm in zip(self.convs, self.norms):
                x = F.relu(norm(conv(x)))  # (N, 2C, H, W): cls | bbox towers
            cls_tower, bbox_tower = x.chunk(2, dim=1)
            box_ctr = self.box_ctr(bbox_tower)  # (N, 5, H, W)
            out.cls_logits.append(self.cls_logits(cls_tower))
            out.bbox_reg.append(F.relu(self.scales[level](box_ctr[:, :4])))
            out.ctrness.append(box_ctr[:, 4:])
            _append_instance_outputs(self, out, feature, bbox_tower)
        return out


def _append_instance_outputs(head, out: FCOSHeadOutputs, feature: torch.Tensor,
                             bbox_tower: torch.Tensor) -> None:
    """One level's controller and re-ID outputs (dense), or its bbox tower (sparse inference)."""
    if out.bbox_towers is None:
        out.controller_params.append(head.controller(bbox_tower))
        # official: one reid_pred_bn call per level (per-level batch statistics in training)
        out.reid_feats.append(head.reid_pred_bn(head.reid_pred(head.reid_tower(feature))))
    else:
        out.bbox_towers.append(bbox_tower)


def _fuse_tower_layer(convs, norms, shared_input: bool) -> tuple[nn.Conv2d, nn.GroupNorm]:
    """One layer of T towers as one conv (C -> T*C if the input is shared, else groups=T) and one
    GroupNorm over the T*C channels."""
    first, count = convs[0], len(convs)
    conv = nn.Conv2d(first.in_channels * (1 if shared_input else count), count * first.out_channels, 3,
                     padding=1, groups=1 if shared_input else count)
    norm = nn.GroupNorm(count * norms[0].num_groups, count * first.out_channels, eps=norms[0].eps)
    with torch.no_grad():
        conv.weight.copy_(torch.cat([c.weight for c in convs]))
        conv.bias.copy_(torch.cat([c.bias for c in convs]))
        norm.weight.copy_(torch.cat([n.weight for n in norms]))
        norm.bias.copy_(torch.cat([n.bias for n in norms]))
    return conv, norm
