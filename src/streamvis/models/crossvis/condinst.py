"""CondInst parts: the mask branch (shared mask features) and the dynamic mask head.

Reference facts.md, sections 6-8.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from streamvis.ops.misc import aligned_bilinear, compute_locations

# official: MODEL.CONDINST.MASK_HEAD.* (3 layers, 8 channels) and MASK_OUT_STRIDE 4
MASK_HEAD_CHANNELS = 8
MASK_HEAD_LAYERS = 3
MASK_OUT_STRIDE = 4
# official: FCOS SIZES_OF_INTEREST [64, 128, 256, 512] plus 2x the last, per FPN level
SIZES_OF_INTEREST = (64, 128, 256, 512, 1024)


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """conv3x3 (no bias) + BatchNorm2d + ReLU, kaiming-uniform(a=1) init (official conv_with_kaiming...)."""
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    nn.init.kaiming_uniform_(conv.weight, a=1)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU())


class MaskBranch(nn.Module):
    """P3/P4/P5 -> refine -> sum at stride 8 -> 4-conv tower -> 1x1 to `out_channels` mask features.

    Args:
        in_channels: FPN width.
        channels: branch width (official 128).
        out_channels: mask feature channels (official 8).
        num_convs: tower convs (official 4).
    """

    def __init__(self, *, in_channels: int, channels: int = 128, out_channels: int = 8, num_convs: int = 4):
        super().__init__()
        self.out_channels = out_channels
        self.refine = nn.ModuleList([conv_bn_relu(in_channels, channels) for _ in range(3)])
        tower: list[nn.Module] = [conv_bn_relu(channels, channels) for _ in range(num_convs)]
        final = nn.Conv2d(channels, out_channels, 1)
        nn.init.kaiming_uniform_(final.weight, a=1)
        nn.init.zeros_(final.bias)
        self.tower = nn.Sequential(*tower, final)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Args: [P3, P4, P5, ...]. Returns mask_feats (N, out_channels, H/8, W/8)."""
        x = self.refine[0](features[0])
        for refine, feature in zip(self.refine[1:], features[1:3]):
            part = refine(feature)
            factor = x.shape[-2] // part.shape[-2]
            x = x + aligned_bilinear(part, factor)
        return self.tower(x)


def dynamic_param_count(in_channels: int = MASK_HEAD_CHANNELS, channels: int = MASK_HEAD_CHANNELS,
                        num_layers: int = MASK_HEAD_LAYERS) -> int:
    """Parameters per instance of the dynamic head with rel-coords ((8+2)*8+8*8+8*1 + 8+8+1 = 169)."""
    weights = (in_channels + 2) * channels + channels * channels * (num_layers - 2) + channels
    return weights + channels * (num_layers - 1) + 1


class DynamicMaskHead(nn.Module):
    """Per-instance 1x1 conv stack whose weights come from the controller (no own parameters).

    Args:
        in_channels: mask feature channels (8).
        channels: hidden width (8).
        num_layers: conv layers (3).
        mask_feat_stride: stride of mask_feats (8).
        sizes_of_interest: rel-coords normaliser per FPN level.
    """

    def __init__(self, *, in_channels: int = MASK_HEAD_CHANNELS, channels: int = MASK_HEAD_CHANNELS,
                 num_layers: int = MASK_HEAD_LAYERS, mask_feat_stride: int = 8,
                 sizes_of_interest: tuple[int, ...] = SIZES_OF_INTEREST):
        super().__init__()
        if num_layers < 2:
            raise ValueError("the dynamic mask head needs at least 2 layers")
        self.in_channels, self.channels, self.num_layers = in_channels, channels, num_layers
        self.mask_feat_stride = mask_feat_stride
        self.register_buffer("sizes_of_interest", torch.tensor(sizes_of_interest, dtype=torch.float32),
                             persistent=False)
        dims = [in_channels + 2] + [channels] * (num_layers - 1) + [1]
        self.weight_shapes = [(dims[i + 1], dims[i]) for i in range(num_layers)]
        self.num_controller_params = dynamic_param_count(in_channels, channels, num_layers)

    def split_params(self, controller_params: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(K, 169) -> weights [(K, out, in)] and biases [(K, out)], official order w0, w1, w2, b0, b1, b2."""
        if controller_params.shape[1] != self.num_controller_params:
            raise ValueError(f"expected {self.num_controller_params} dynamic parameters, "
                             f"got {controller_params.shape[1]}")
        sizes = [o * i for o, i in self.weight_shapes] + [o for o, _ in self.weight_shapes]
        parts = torch.split(controller_params, sizes, dim=1)
        weights = [p.reshape(-1, o, i) for p, (o, i) in zip(parts[: self.num_layers], self.weight_shapes)]
        return weights, list(parts[self.num_layers :])

    def forward(self, mask_feats: torch.Tensor, controller_params: torch.Tensor, locations: torch.Tensor,
                fpn_levels: torch.Tensor, im_inds: torch.Tensor) -> torch.Tensor:
        """Mask logits of K instances at mask_feats resolution.

        Args:
            mask_feats: (N, 8, h, w) stride-8 mask features.
            controller_params: (K, 169) controller outputs, one row per instance.
            locations: (K, 2) (x, y) image pixels of each instance's FCOS location.
            fpn_levels: (K,) int64 level (0..4) of that location.
            im_inds: (K,) int64 image of each instance in the batch.

        Returns:
            (K, 1, h, w) mask logits.
        """
        num, _, height, width = mask_feats.shape
        pixels = compute_locations(height, width, self.mask_feat_stride, device=mask_feats.device)  # (hw, 2)
        rel = locations.reshape(-1, 2, 1) - pixels.t().reshape(1, 2, -1)  # (K, 2, hw): (dx, dy)
        rel = rel / self.sizes_of_interest[fpn_levels].reshape(-1, 1, 1)
        feats = mask_feats.reshape(num, self.in_channels, height * width)[im_inds]  # (K, 8, hw)
        x = torch.cat([rel.to(mask_feats.dtype), feats], dim=1)  # (K, 10, hw)
        weights, biases = self.split_params(controller_params)
        for layer, (weight, bias) in enumerate(zip(weights, biases)):
            x = torch.baddbmm(bias.unsqueeze(-1), weight, x)  # (K, out, hw)
            if layer < self.num_layers - 1:
                x = F.relu(x)
        return x.reshape(-1, 1, height, width)


def mask_probs_at_out_stride(mask_logits: torch.Tensor, mask_feat_stride: int = 8) -> torch.Tensor:
    """Official `pred_global_masks`: aligned upsampling of the logits to stride 4, then sigmoid.

    Args:
        mask_logits: (K, 1, h, w) at mask_feat_stride.

    Returns:
        (K, 1, h*f, w*f) probabilities, f = mask_feat_stride / 4 (stride 4 over the padded input).
    """
    return aligned_bilinear(mask_logits, mask_feat_stride // MASK_OUT_STRIDE).sigmoid()


def masks_to_output(global_mask_probs: torch.Tensor, padded_size: tuple[int, int],
                    resized_size: tuple[int, int], output_size: tuple[int, int],
                    threshold: float = 0.5) -> torch.Tensor:
    """Official CondInst postprocess of masks: stride 4 -> padded input -> crop -> output size -> bool.

    Args:
        global_mask_probs: (K, 1, Hp/4, Wp/4) probabilities.
        padded_size, resized_size, output_size: (h, w) of the padded input, the resized image
            (unpadded network input) and the wanted output.

    Returns:
        (K, out_h, out_w) bool masks (probability > threshold).
    """
    if global_mask_probs.shape[0] == 0:
        return torch.zeros((0, *output_size), dtype=torch.bool, device=global_mask_probs.device)
    factor = padded_size[0] // global_mask_probs.shape[-2]
    probs = aligned_bilinear(global_mask_probs, factor)[:, :, : resized_size[0], : resized_size[1]]
    if tuple(probs.shape[-2:]) != tuple(output_size):  # (same size: bilinear is the identity)
        probs = F.interpolate(probs, size=tuple(output_size), mode="bilinear", align_corners=False)
    return probs[:, 0] > threshold
