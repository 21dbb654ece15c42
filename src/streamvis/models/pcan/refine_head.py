"""PCAN's instance-level prototypical cross-attention: the refine head ``EMMatchHeadPlus``.

Official source: ``pcan/models/roi_heads/refine_heads/em_match_head.py`` and the wrapper
``QuasiDenseSegRoIHeadRefine._refine_forward`` / ``._refine_forward_train`` (reference/pcan/facts.md 3).

Inputs per instance r: the **reference** (the tracklet's last matched frame) RoI features a and
mask-head logits, the **key** (current frame) RoI features b and logits, both 14x14 / 28x28.

1. Logits 28 -> 14 by bilinear resize; binary masks ``sigmoid >= 0.5``.
2. ``gap``: masked mean of the reference feature, ``sum(a m_a) / (sum(m_a) + 1e-5)``.
3. Masked EM (no gradient), 6 iterations of ``z = softmax(20 x^T mu) over K; z *= m;
   z = l1norm(z) over N; mu = l2norm(x z) over C`` (K = 10 fg + 10 bg prototypes):
   fg/bg of the reference from the global ``pos_mu``/``neg_mu``, then fg/bg of the key continuing
   from the reference's.
4. The global ``pos_mu``/``neg_mu`` (1, C, 10) move by momentum 0.95 to the batch mean of the key
   prototypes on **every** forward, training and inference (official; never reset per video).
5. Attention ``softmax(mu^T b)`` over the 20 prototypes; ``pos_z`` / ``neg_z`` = sums of the fg / bg
   columns; the input is cat[b, pos_z, neg_z, key logits at 14x14] (259 channels).
6. conv1 3x3 (259 -> 256, no activation) + conv2 1x1 (gap, 256 -> 256, broadcast), 3 x [conv3x3 +
   ReLU], ConvTranspose2d 2x2 stride 2 + ReLU, conv 1x1 -> one class-agnostic logit map (R, 1, 28, 28).

Official oddity with an opt-in fix: because the global prototypes keep moving at inference and
are never reset, a video's masks depend on the videos processed before it (and on the order and
split of the data across GPUs). ``freeze_prototypes_at_inference=True`` (off by default) leaves
them unchanged in eval mode, so each video's output depends only on that video.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamvis.errors import StreamvisError

NUM_POS_PROTOTYPES = 10  # official config: pos_proto_num=10
NUM_NEG_PROTOTYPES = 10  # official config: neg_proto_num=10
EM_ITERATIONS = 6  # official config: stage_num=6
EM_KAPPA = 20.0  # official _em_iter: softmax(20 * z)
NORM_EPS = 1e-6  # official _l1norm / _l2norm
GAP_EPS = 1e-5  # official compute_context eps
PROTOTYPE_MOMENTUM = 0.95  # official: self.momentum = 0.95 (hard-coded)
MASK_THRESHOLD = 0.5  # official forward: (sigmoid(mask) >= 0.5)
ROI_SIZE = 14  # mask RoI size (official mask_roi_extractor out_size 14)


class ConvBlock(nn.Module):
    """mmcv ``ConvModule`` without norm: a biased conv (kept under the name ``conv``), optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, relu: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2)
        self.activation = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """(R, C_in, H, W) -> (R, C_out, H, W)."""
        return self.activation(self.conv(x))


def _l1norm(x: Tensor, dim: int) -> Tensor:
    return x / (NORM_EPS + x.sum(dim=dim, keepdim=True))


def _l2norm(x: Tensor, dim: int) -> Tensor:
    return x / (NORM_EPS + x.norm(dim=dim, keepdim=True))


@torch.no_grad()
def masked_em(feats: Tensor, mask: Tensor, prototypes: Tensor, iterations: int = EM_ITERATIONS) -> Tensor:
    """Prototypes of the masked region of each RoI (official ``EMMatchHeadPlus._em_iter``).

    Args:
        feats: (R, C, H, W) RoI features (not normalised).
        mask: (R, 1, H, W) binary region (an empty region gives all-zero prototypes).
        prototypes: (R, C, K) initial prototypes.
        iterations: EM iterations.

    Returns:
        (R, C, K) prototypes.
    """
    flat = feats.flatten(2)  # (R, C, N)
    weight = mask.flatten(2).transpose(1, 2)  # (R, N, 1)
    mu = prototypes
    for _ in range(iterations):
        z = F.softmax(EM_KAPPA * torch.bmm(flat.transpose(1, 2), mu), dim=2)  # (R, N, K)
        z = _l1norm(z * weight, dim=1)
        mu = _l2norm(torch.bmm(flat, z), dim=1)  # (R, C, K)
    return mu


class RefineDetails(NamedTuple):
    """Everything one refine forward computes (for tests and inspection).

    Attributes:
        logits: (R, 1, 28, 28) refined mask logits.
        ref_mask: (R, 1, 14, 14) binary reference mask; key_mask: the same for the key.
        key_logits14: (R, 1, 14, 14) key logits after the bilinear resize (the 259th input channel).
        gap: (R, C) masked mean of the reference features.
        pos_ref, neg_ref, pos_key, neg_key: (R, C, K) prototypes of the four EM calls.
        pos_assign, neg_assign: (R, K, 14, 14) attention weights of each prototype (softmax over all 2K).
        pos_z, neg_z: (R, 1, 14, 14) summed fg / bg attention.
    """

    logits: Tensor
    ref_mask: Tensor
    key_mask: Tensor
    key_logits14: Tensor
    gap: Tensor
    pos_ref: Tensor
    neg_ref: Tensor
    pos_key: Tensor
    neg_key: Tensor
    pos_assign: Tensor
    neg_assign: Tensor
    pos_z: Tensor
    neg_z: Tensor


class EMMatchHeadPlus(nn.Module):
    """The refine head: a reference RoI's fg/bg prototypes attend over the current RoI.

    Args:
        in_channels: RoI feature channels (256).
        conv_channels: channels of the convs (256).
        num_pos_prototypes, num_neg_prototypes: K of the fg / bg prototypes (10 each).
        freeze_prototypes_at_inference: opt-in fix (off = official): in eval mode the global
            prototypes ``pos_mu``/``neg_mu`` are not updated.

    State-dict names are the official ones (``conv1.conv``, ``conv2.conv``, ``convs.{0,1,2}.conv``,
    ``upsample``, ``conv_logits``, buffers ``pos_mu``/``neg_mu``), so ``roi_head.refine_head.<name>``
    maps one-to-one.
    """

    def __init__(self, *, in_channels: int = 256, conv_channels: int = 256,
                 num_pos_prototypes: int = NUM_POS_PROTOTYPES, num_neg_prototypes: int = NUM_NEG_PROTOTYPES,
                 freeze_prototypes_at_inference: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.num_pos_prototypes = num_pos_prototypes
        self.freeze_prototypes_at_inference = freeze_prototypes_at_inference
        # official with_mask_key=True, with_mask_ref=False: feat + pos_z + neg_z + key logits
        self.conv1 = ConvBlock(in_channels + 3, conv_channels, 3, relu=False)
        self.conv2 = ConvBlock(in_channels, conv_channels, 1, relu=False)
        self.convs = nn.ModuleList(ConvBlock(conv_channels, conv_channels, 3, relu=True) for _ in range(3))
        self.upsample = nn.ConvTranspose2d(conv_channels, conv_channels, 2, stride=2)
        self.conv_logits = nn.Conv2d(conv_channels, 1, 1)
        self.activation = nn.ReLU(inplace=True)
        for name, count in (("pos_mu", num_pos_prototypes), ("neg_mu", num_neg_prototypes)):
            init = torch.randn(1, in_channels, count) * math.sqrt(2.0 / count)  # official init_protos
            self.register_buffer(name, _l2norm(init, dim=1))

    def _check(self, name: str, tensor: Tensor, channels: int, size: int) -> None:
        if tensor.dim() != 4 or tuple(tensor.shape[1:]) != (channels, size, size):
            raise StreamvisError(
                f"refine head: {name} must have shape (R, {channels}, {size}, {size}), "
                f"got {tuple(tensor.shape)}"
            )

    def _update_global_prototypes(self, pos_key: Tensor, neg_key: Tensor) -> None:
        if not self.training and self.freeze_prototypes_at_inference:
            return
        with torch.no_grad():
            # official em_match: in place, `mu *= 0.95; mu += mean * (1 - 0.95)` (same float ops)
            for buffer, key in ((self.pos_mu, pos_key), (self.neg_mu, neg_key)):
                buffer.mul_(PROTOTYPE_MOMENTUM).add_(key.mean(dim=0, keepdim=True) * (1 - PROTOTYPE_MOMENTUM))

    def forward_details(self, ref_feats: Tensor, ref_logits: Tensor, key_feats: Tensor,
                        key_logits: Tensor) -> RefineDetails:
        """The refine forward with every intermediate (updates the global prototypes, see the class doc).

        Args:
            ref_feats: (R, C, 14, 14) reference RoI features.
            ref_logits: (R, 1, 28, 28) reference mask-head logits of the chosen class.
            key_feats: (R, C, 14, 14) current RoI features.
            key_logits: (R, 1, 28, 28) current mask-head logits of the chosen class.
        """
        for name, tensor, channels in (("ref_feats", ref_feats, self.in_channels),
                                       ("key_feats", key_feats, self.in_channels)):
            self._check(name, tensor, channels, ROI_SIZE)
        for name, tensor in (("ref_logits", ref_logits), ("key_logits", key_logits)):
            self._check(name, tensor, 1, 2 * ROI_SIZE)
        if not ref_feats.shape[0] == ref_logits.shape[0] == key_feats.shape[0] == key_logits.shape[0]:
            raise StreamvisError("refine head: reference and key inputs must have the same number of RoIs")
        num = key_feats.shape[0]
        ref14 = F.interpolate(ref_logits, size=ref_feats.shape[-2:], mode="bilinear", align_corners=False)
        key14 = F.interpolate(key_logits, size=key_feats.shape[-2:], mode="bilinear", align_corners=False)
        ref_mask = (ref14.sigmoid() >= MASK_THRESHOLD).to(ref_feats.dtype)  # (R, 1, 14, 14)
        key_mask = (key14.sigmoid() >= MASK_THRESHOLD).to(key_feats.dtype)
        area = ref_mask.flatten(2).sum(dim=2)  # (R, 1)
        gap = (ref_feats * ref_mask).flatten(2).sum(dim=2) / (area + GAP_EPS)  # (R, C)

        pos_ref = masked_em(ref_feats, ref_mask, self.pos_mu.expand(num, -1, -1))
        neg_ref = masked_em(ref_feats, 1 - ref_mask, self.neg_mu.expand(num, -1, -1))
        pos_key = masked_em(key_feats, key_mask, pos_ref)
        neg_key = masked_em(key_feats, 1 - key_mask, neg_ref)
        self._update_global_prototypes(pos_key, neg_key)

        height, width = key_feats.shape[-2:]
        prototypes = torch.cat([pos_key, neg_key], dim=2)  # (R, C, 2K)
        similarity = torch.bmm(prototypes.transpose(1, 2), key_feats.flatten(2))  # (R, 2K, N)
        attention = F.softmax(similarity, dim=1)  # over the 2K prototypes
        pos_assign = attention[:, : self.num_pos_prototypes].reshape(num, -1, height, width)
        neg_assign = attention[:, self.num_pos_prototypes :].reshape(num, -1, height, width)
        pos_z = pos_assign.sum(dim=1, keepdim=True)  # (R, 1, 14, 14)
        neg_z = neg_assign.sum(dim=1, keepdim=True)

        x = torch.cat([key_feats, pos_z, neg_z, key14], dim=1)  # (R, C + 3, 14, 14)
        x = self.conv1(x) + self.conv2(gap[:, :, None, None])
        for conv in self.convs:
            x = conv(x)
        logits = self.conv_logits(self.activation(self.upsample(x)))  # (R, 1, 28, 28)
        return RefineDetails(logits, ref_mask, key_mask, key14, gap, pos_ref, neg_ref, pos_key, neg_key,
                             pos_assign, neg_assign, pos_z, neg_z)

    def forward(self, ref_feats: Tensor, ref_logits: Tensor, key_feats: Tensor, key_logits: Tensor) -> Tensor:
        """Refined class-agnostic mask logits (R, 1, 28, 28); see `forward_details` for the arguments."""
        return self.forward_details(ref_feats, ref_logits, key_feats, key_logits).logits

    def refine(self, key_feats: Tensor, key_mask_pred: Tensor, labels: Tensor, ref_feats: Tensor,
               ref_mask_pred: Tensor) -> Tensor:
        """Refine detections with class-wise mask-head outputs (official ``_refine_forward``).

        The class channel ``labels[r]`` is picked from **both** key and reference logits.

        Args:
            key_feats: (R, C, 14, 14) current RoI features.
            key_mask_pred: (R, num_classes, 28, 28) current mask-head logits.
            labels: (R,) int64 class of each detection.
            ref_feats: (R, C, 14, 14) reference RoI features (the tracklet's, or the detection's own).
            ref_mask_pred: (R, num_classes, 28, 28) reference mask-head logits.

        Returns:
            (R, 1, 28, 28) refined logits ((0, 1, 28, 28) for no detections, without touching the state).
        """
        if key_feats.shape[0] == 0:
            return key_feats.new_zeros((0, 1, 2 * ROI_SIZE, 2 * ROI_SIZE))
        rows = torch.arange(key_mask_pred.shape[0], device=key_mask_pred.device)
        key_logits = key_mask_pred[rows, labels].unsqueeze(1)
        ref_logits = ref_mask_pred[rows, labels].unsqueeze(1)
        return self(ref_feats, ref_logits, key_feats, key_logits)


class TrainingPairs(NamedTuple):
    """Refine-head training inputs after pairing (see `select_training_pairs`)."""

    key_feats: Tensor  # (V, C, 14, 14)
    key_mask_pred: Tensor  # (V, num_classes, 28, 28)
    key_targets: Tensor  # (V, 28, 28)
    labels: Tensor  # (V,)
    ref_feats: Tensor  # (V, C, 14, 14)
    ref_mask_pred: Tensor  # (V, num_classes, 28, 28)


def select_training_pairs(key: list[tuple[Tensor, Tensor, Tensor, Tensor]], ref: list[tuple[Tensor, Tensor]],
                          valids: list[Tensor], ref_indices: list[Tensor]) -> TrainingPairs:
    """Keep the paired key RoIs of every image (official ``_refine_forward_train``).

    Args:
        key: per image (mask_feats (P, C, 14, 14), mask_pred (P, K, 28, 28), mask_targets (P, 28, 28),
            labels (P,)) of the key positive RoIs.
        ref: per image (mask_feats (Q, C, 14, 14), mask_pred (Q, K, 28, 28)) of the reference positives.
        valids, ref_indices: per image, from `streamvis.models.pcan.losses.refine_pairs`.

    Returns:
        The concatenated pairs. If no key RoI of the batch is paired, every key positive is used with
        **itself** (detached) as the reference, as official.
    """
    picked = [tuple(t[valid] for t in image) for image, valid in zip(key, valids)]
    feats, masks, targets, labels = (torch.cat([p[i] for p in picked]) for i in range(4))
    ref_feats = torch.cat([r[0][index] for r, index in zip(ref, ref_indices)])
    ref_masks = torch.cat([r[1][index] for r, index in zip(ref, ref_indices)])
    if masks.shape[0] == 0:
        feats, masks, targets, labels = (torch.cat([image[i] for image in key]) for i in range(4))
        ref_feats, ref_masks = feats.detach(), masks.detach()
    return TrainingPairs(feats, masks, targets, labels, ref_feats, ref_masks)
