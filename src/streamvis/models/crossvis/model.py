"""CrossVIS meta-architecture: ResNet + FPN + FCOS head + CondInst mask parts + re-ID head.

`predict` reproduces the official inference (reference facts.md, sections 1-8); `loss` runs the
key and reference frame batches separately and hands both outputs to the criterion
(models/crossvis/criterion.py). `build_crossvis(config)` is the builder that
`streamvis.models.build.METHODS["crossvis"]` names.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from streamvis.errors import ConfigError
from streamvis.models.backbone import ChannelsLastStem, ResNet, fold_frozen_batchnorm
from streamvis.models.crossvis.condinst import (
    MASK_HEAD_CHANNELS,
    DynamicMaskHead,
    MaskBranch,
    dynamic_param_count,
    mask_probs_at_out_stride,
    masks_to_output,
)
from streamvis.models.crossvis.config import CrossVISConfig
from streamvis.models.crossvis.criterion import CrossVISCriterion
from streamvis.models.crossvis.fcos import FCOSDetections, FCOSHead, FusedTowersHead, HeadOutputs, detect
from streamvis.models.fpn import FPN
from streamvis.ops.fast_conv import winograd_convs
from streamvis.ops.image import normalize_and_pad
from streamvis.ops.misc import compute_locations
from streamvis.structures import Instances, PairBatch

MASK_CHUNK = 16  # instances per pass through the mask head and mask upsampling at inference


class CrossVIS(nn.Module):
    """CrossVIS (Yang et al., ICCV 2021) as in the official implementation.

    Args:
        config: the `CrossVISConfig` it was built from (inference settings are read from it;
            `build_crossvis` builds the parts below from the same config).
        backbone: images (N, 3, H, W) -> [res3, res4, res5].
        fpn: [res3, res4, res5] -> [P3..P7].
        head: `FCOSHead` (with the controller and the re-ID prediction).
        mask_branch: `MaskBranch`, [P3..P7] -> mask_feats (N, 8, H/8, W/8).
        mask_head: `DynamicMaskHead`.
        criterion: training losses, called as ``criterion(outputs_key, outputs_ref, batch,
            mask_head=...)``; None for an inference-only model.

    The inference settings (``score_threshold``, ``nms_threshold``, ``pre_nms_topk``,
    ``detections_per_frame``, ``mask_threshold``, ``sparse_inference``) and the training
    setting ``backbone_gradient_scale`` (official 0.1) are copied from `config` into attributes,
    so that `optimize_for_inference` can switch ``sparse_inference`` on a copy.
    """

    def __init__(self, config: CrossVISConfig, *, backbone: nn.Module, fpn: nn.Module, head: nn.Module,
                 mask_branch: nn.Module, mask_head: nn.Module, criterion: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.backbone, self.fpn, self.head = backbone, fpn, head
        self.mask_branch, self.mask_head, self.criterion = mask_branch, mask_head, criterion
        self.pixel_mean, self.pixel_std = tuple(config.pixel_mean), tuple(config.pixel_std)
        self.score_threshold, self.nms_threshold = config.score_threshold, config.nms_threshold
        self.pre_nms_topk, self.detections_per_frame = config.pre_nms_topk, config.detections_per_frame
        self.mask_threshold = config.mask_threshold
        self.sparse_inference = config.sparse_inference
        self.backbone_gradient_scale = config.backbone_gradient_scale
        self.channels_last = False

    def forward_features(self, images: torch.Tensor, image_sizes: list[tuple[int, int]] | None = None,
                         dense: bool = True) -> HeadOutputs:
        """Run the network on a normalized, padded batch.

        Args:
            images: (N, 3, Hp, Wp) normalized and padded (`normalize_and_pad`).
            image_sizes: (h, w) of each image before padding (default: the padded size).
            dense: see `FCOSHead.forward`; False leaves controller_params/reid_feats None.

        Returns:
            `HeadOutputs`. In training mode every FPN level passes `backbone_gradient_scale` of the
            gradient (official: 0.1x).
        """
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        features = self.fpn(self.backbone(images))  # [P3..P7], (N, C, Hp/s, Wp/s)
        if self.training and self.backbone_gradient_scale != 1.0:
            scale = self.backbone_gradient_scale
            features = [f * scale + f.detach() * (1.0 - scale) for f in features]
        head = self.head(features, dense=dense)
        mask_feats = self.mask_branch(features)  # (N, 8, Hp/8, Wp/8)
        strides = tuple(self.fpn.strides[: len(features)])
        locations = [compute_locations(f.shape[-2], f.shape[-1], s, device=f.device)
                     for f, s in zip(features, strides)]
        if image_sizes is None:
            image_sizes = [tuple(images.shape[-2:])] * images.shape[0]
        return HeadOutputs(cls_logits=head.cls_logits, bbox_reg=head.bbox_reg, ctrness=head.ctrness,
                           controller_params=head.controller_params, reid_feats=head.reid_feats,
                           mask_feats=mask_feats, locations=locations, strides=strides,
                           image_sizes=list(image_sizes), bbox_towers=head.bbox_towers,
                           fpn_features=None if dense else features)

    def loss(self, batch: PairBatch) -> dict[str, torch.Tensor]:
        """Training losses of a `PairBatch` (key frames and reference frames run as two batches).

        Returns:
            dict of named ``loss_*`` scalars from the criterion.
        """
        if self.criterion is None:
            raise RuntimeError("this CrossVIS was built without a criterion (inference only)")
        outputs = []
        for frames in batch.frames:
            images, sizes = normalize_and_pad(frames.images, self.pixel_mean, self.pixel_std)
            outputs.append(self.forward_features(images, image_sizes=sizes))
        return self.criterion(outputs[0], outputs[1], batch, mask_head=self.mask_head)

    @torch.no_grad()
    def predict(self, images: list[torch.Tensor], output_sizes: list[tuple[int, int]] | None = None
                ) -> list[Instances]:
        """Detect, segment and embed instances in already-resized frames (eval behaviour always).

        Images of different sizes are padded together; the official tool runs one image per call,
        and only same-size batches give its exact numbers (GroupNorm sees the padding).

        Args:
            images: each (3, h_i, w_i) uint8 BGR, already resized (e.g. short side 360).
            output_sizes: (height, width) to return each result at (default: the input size).

        Returns:
            One `Instances` per image (image_size = output size) with boxes (K, 4) float32 xyxy
            clipped, scores (K,), classes (K,) int64 0-based, masks (K, H, W) bool, embeddings
            (K, D) raw re-ID features, locations (K, 2), fpn_levels (K,), controller_params (K, P)
            and global_mask_probs (K, Hp/4, Wp/4) (mask probabilities at stride 4 of the padded input).
        """
        was_training = self.training
        self.eval()
        try:
            batch, sizes = normalize_and_pad(images, self.pixel_mean, self.pixel_std)
            outputs = self.forward_features(batch, image_sizes=sizes, dense=not self.sparse_inference)
            return self.postprocess(outputs, output_sizes)
        finally:
            self.train(was_training)

    @torch.no_grad()
    def postprocess(self, outputs: HeadOutputs, output_sizes: list[tuple[int, int]] | None = None
                    ) -> list[Instances]:
        """Detections, masks and embeddings of every image of `outputs` (the second half of `predict`).

        Args:
            outputs: `forward_features` outputs of an eval-mode forward.
            output_sizes: (height, width) per image (default: the unpadded input sizes).

        Returns:
            One `Instances` per image, as `predict`.
        """
        output_sizes = output_sizes if output_sizes is not None else outputs.image_sizes
        return [self._image_result(outputs, i, tuple(output_sizes[i])) for i in range(len(output_sizes))]

    def _image_result(self, outputs: HeadOutputs, index: int, output_size: tuple[int, int]) -> Instances:
        det = detect(outputs, index, score_threshold=self.score_threshold, pre_nms_topk=self.pre_nms_topk,
                     nms_threshold=self.nms_threshold, detections_per_frame=self.detections_per_frame)
        params, embeddings = self._gather_instance_feats(outputs, index, det)  # (K, P), (K, D)
        boxes, keep = scale_and_clip_boxes(det.boxes, outputs.image_sizes[index], output_size)
        keep = keep.nonzero().squeeze(1)  # one host synchronisation; indexing by it needs none
        params, locations, levels = params[keep], det.locations[keep], det.fpn_levels[keep]
        stride = self.mask_head.mask_feat_stride
        padded_size = (outputs.mask_feats.shape[-2] * stride, outputs.mask_feats.shape[-1] * stride)
        # Each instance's mask depends only on its own parameters, so the instances go through the
        # mask head and the upsampling in chunks: the float intermediates (K x padded H x W) stay
        # small however many detections a frame has, and peak memory does not depend on it.
        global_probs, masks = [], []
        for start in range(0, max(len(params), 1), MASK_CHUNK):
            part = slice(start, start + MASK_CHUNK)
            logits = self.mask_head(outputs.mask_feats[index : index + 1], params[part], locations[part],
                                    levels[part], torch.zeros_like(levels[part]))  # (k, 1, Hp/8, Wp/8)
            probs = mask_probs_at_out_stride(logits, stride)  # (k, 1, Hp/4, Wp/4)
            global_probs.append(probs)
            masks.append(masks_to_output(probs, padded_size, outputs.image_sizes[index], output_size,
                                         self.mask_threshold))
        global_probs, masks = torch.cat(global_probs), torch.cat(masks)
        return Instances(output_size, boxes=boxes[keep], scores=det.scores[keep], classes=det.classes[keep],
                         masks=masks, embeddings=embeddings[keep], locations=locations,
                         fpn_levels=levels, controller_params=params,
                         global_mask_probs=global_probs[:, 0])

    def _gather_instance_feats(self, outputs: HeadOutputs, index: int, det: FCOSDetections
                               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Controller params (K, P) and re-ID embeddings (K, D) at the detections' cells."""
        if outputs.controller_params is not None:  # dense outputs: one gather over all levels
            return (_gather_cells(outputs.controller_params, index, det),
                    _gather_cells(outputs.reid_feats, index, det))
        reid_dim = self.head.reid_pred.out_channels
        params = det.boxes.new_zeros((len(det.cells), self.mask_head.num_controller_params))
        embeddings = det.boxes.new_zeros((len(det.cells), reid_dim))
        for level in det.fpn_levels.unique().tolist():
            chosen = det.fpn_levels == level
            cells = det.cells[chosen]
            width = outputs.cls_logits[level].shape[-1]
            ys, xs, first = cells // width, cells % width, torch.zeros_like(cells)
            bbox_tower = outputs.bbox_towers[level][index : index + 1]
            params[chosen] = self.head.sparse_controller_params(bbox_tower, first, ys, xs)
            # the re-ID tower (GroupNorm: needs the whole map) runs only where there are detections
            reid_tower = self.head.reid_tower(outputs.fpn_features[level][index : index + 1])
            embeddings[chosen] = self.head.sparse_reid_feats(reid_tower, first, ys, xs)
        return params, embeddings


def _gather_cells(maps: list[torch.Tensor], index: int, det: FCOSDetections) -> torch.Tensor:
    """Rows of per-level dense maps at the detections' cells, without a host synchronisation.

    Args:
        maps: per level (N, C, H_l, W_l); index: the image; det: its detections (levels, cells).

    Returns:
        (K, C): the value copied from each detection's level and cell (the same as indexing per level).
    """
    # every level at every detection's cell (clamped: a cell of a finer level may not exist on a
    # coarser one), then each detection's own level: L*C*K values, not a copy of the maps
    picked = torch.stack([m[index].flatten(1)[:, det.cells.clamp(max=m.shape[-2] * m.shape[-1] - 1)]
                          for m in maps])  # (L, C, K)
    rows = torch.arange(len(det.cells), device=picked.device)
    return picked[det.fpn_levels, :, rows].to(det.boxes.dtype)  # (K, C)


def scale_and_clip_boxes(boxes: torch.Tensor, resized_size: tuple[int, int], output_size: tuple[int, int]
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Official postprocess of boxes: scale to the output size, clip, flag non-empty ones.

    Returns:
        boxes (K, 4) in output pixels and keep (K,) bool (width > 0 and height > 0).
    """
    boxes = boxes.clone()
    boxes[:, 0::2] *= output_size[1] / resized_size[1]
    boxes[:, 1::2] *= output_size[0] / resized_size[0]
    height, width = output_size
    boxes = torch.stack([boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
                         boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)], dim=1)
    keep = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
    return boxes, keep


def optimize_for_inference(model: CrossVIS, *, fuse_towers: bool = True, winograd: bool = False,
                           channels_last: bool = False) -> CrossVIS:
    """A faster inference-only copy of `model` (which is left untouched).

    - FrozenBN (backbone) and eval BatchNorm (mask branch) are folded into the preceding convs; the
      stem runs in channels_last (`ChannelsLastStem`).
    - The controller and the re-ID prediction run only at the detections, and the re-ID tower only
      on the levels (and images) that have detections (`sparse_inference`).
    - fuse_towers: the cls and bbox towers run as one grouped conv stack (`FusedTowersHead`).
    - winograd: 3x3 stride-1 convs use Winograd F(2x2, 3x3) (`ops.fast_conv`): 2.25x fewer multiplies,
      but on a 2-core CPU its batched GEMMs were not faster than oneDNN's direct conv (off by default).
    - channels_last: NHWC convolutions (only with winograd=False).

    The detections equal the faithful path's up to float rounding
    (tests/models/crossvis/test_golden_forward.py).
    The copy cannot be trained.
    """
    fast = copy.deepcopy(model, memo={id(model.criterion): None}).eval()  # the copy has no criterion
    fold_frozen_batchnorm(fast.backbone)
    if not channels_last:
        fast.backbone.stem = ChannelsLastStem(fast.backbone.stem)
    fold_batchnorm_sequentials(fast.mask_branch)
    fast.sparse_inference = True
    if fuse_towers and len(fast.head.cls_tower) > 0:
        fast.head = FusedTowersHead(fast.head)
    if winograd:
        for part in (fast.backbone, fast.fpn, fast.head, fast.mask_branch):
            winograd_convs(part, keep=(fast.head.controller,))  # the controller runs sparsely
    elif channels_last:
        fast.channels_last = True
        fast.to(memory_format=torch.channels_last)
    fast.requires_grad_(False)
    return fast


def fold_batchnorm_sequentials(module: nn.Module) -> nn.Module:
    """Fold each eval-mode BatchNorm2d that directly follows a conv inside an nn.Sequential (in place)."""
    for child in module.modules():
        if not isinstance(child, nn.Sequential):
            continue
        for index in range(len(child) - 1):
            conv, norm = child[index], child[index + 1]
            if type(conv) is nn.Conv2d and isinstance(norm, nn.BatchNorm2d):
                child[index], child[index + 1] = _fold_conv_bn(conv, norm), nn.Identity()
    return module


def _fold_conv_bn(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                       padding=conv.padding, groups=conv.groups, bias=True)
    with torch.no_grad():
        folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        folded.bias.copy_((bias - norm.running_mean) * scale + norm.bias)
    return folded


def build_crossvis(config: CrossVISConfig) -> CrossVIS:
    """Build a CrossVIS from its config (training init; load weights separately)."""
    backbone = ResNet(depth=config.depth, freeze_at=config.freeze_at, stride_in_1x1=config.stride_in_1x1,
                      norm=config.backbone_norm)
    fpn = FPN(in_channels=backbone.out_channels, out_channels=config.fpn_channels)
    head = FCOSHead(in_channels=config.fpn_channels, channels=config.head_channels,
                    num_classes=config.num_classes, num_convs=config.head_num_convs,
                    num_controller_params=dynamic_param_count(config.mask_out_channels, MASK_HEAD_CHANNELS),
                    reid_dim=config.reid_dim)
    mask_branch = MaskBranch(in_channels=config.fpn_channels, channels=config.mask_branch_channels,
                             out_channels=config.mask_out_channels, num_convs=config.mask_branch_num_convs)
    mask_head = DynamicMaskHead(in_channels=config.mask_out_channels)
    return CrossVIS(config, backbone=backbone, fpn=fpn, head=head, mask_branch=mask_branch,
                    mask_head=mask_head, criterion=build_criterion(config))


def build_criterion(config: CrossVISConfig) -> CrossVISCriterion:
    """The training criterion (models/crossvis/criterion.py); it owns the identity proxies."""
    if config.num_identities == 0:
        raise ConfigError("model.num_identities is 0 (derive from the data): set it, or build the "
                          "model through `streamvis train`, which counts the training identities")
    return CrossVISCriterion(config.loss, num_classes=config.num_classes,
                             num_identities=config.num_identities, embedding_dim=config.reid_dim)
