"""ResNet-18/34/50/101 in detectron2's MSRA layout, with a norm after every conv.

The norm is FrozenBatchNorm (official, for ImageNet-initialised training), BatchNorm or GroupNorm
(for training from scratch, where FrozenBN is the identity), under the same module names. Names
follow detectron2 (``stem.conv1``, ``res2.0.conv1``, ``res2.0.conv1.norm``, ``res2.0.shortcut``) so
that official and ImageNet checkpoints map onto it by renaming prefixes (see models/crossvis/convert.py).
Reference facts.md, section 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("FrozenBN", "BN", "GN")  # official: detectron2 get_norm names
GROUP_NORM_GROUPS = 32  # official: detectron2 "GN" is GroupNorm(32, C)
_NORM_FIELDS = ("weight", "bias", "running_mean", "running_var")  # of FrozenBN / BN

# official: detectron2 stage depths; (block type, blocks per stage res2..res5)
RESNET_SPECS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (all buffers, never trained).

    y = x * scale + shift, scale = weight / sqrt(running_var + eps), shift = bias - running_mean * scale.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps  # official: detectron2 FrozenBatchNorm2d eps 1e-5
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=self.eps)

    def scale_and_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The equivalent per-channel affine map: (scale (C,), shift (C,))."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
        """A FrozenBN with `bn`'s current affine parameters and running statistics."""
        frozen = cls(bn.num_features, eps=bn.eps).to(bn.running_mean.device)
        with torch.no_grad():
            for name in _NORM_FIELDS:
                getattr(frozen, name).copy_(getattr(bn, name))
        return frozen


def make_norm(norm: str, channels: int) -> nn.Module:
    """The norm layer named `norm` (one of `NORMS`) for `channels` channels."""
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if norm == "BN":
        return nn.BatchNorm2d(channels)  # official: torch defaults (eps 1e-5, momentum 0.1)
    if norm == "GN":
        return nn.GroupNorm(GROUP_NORM_GROUPS, channels)
    raise ValueError(f"unknown norm {norm!r}; choose one of {list(NORMS)}")


class ConvNorm(nn.Conv2d):
    """A bias-free conv followed by its norm (detectron2 ``Conv2d(norm=...)``); norm: see `make_norm`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, *, norm: str = "FrozenBN"):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.norm = make_norm(norm, out_channels)
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")  # detectron2 c2_msra_fill

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


class BasicStem(nn.Module):
    """conv 7x7/2 (3->64) + norm + ReLU + max-pool 3x3/2: stride 4."""

    def __init__(self, out_channels: int = 64, *, norm: str = "FrozenBN"):
        super().__init__()
        self.conv1 = ConvNorm(3, out_channels, kernel_size=7, stride=2, padding=3, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class ChannelsLastStem(nn.Module):
    """Inference-only stem: same function as `BasicStem`, with the 7x7 conv and the max-pool in
    channels_last memory format (several times faster on CPU for these 3- and 64-channel maps).

    Args:
        stem: a `BasicStem`, its norm folded into a plain `nn.Conv2d` where it can be (see
            `fold_frozen_batchnorm`; a GroupNorm stem keeps its `ConvNorm`).
    """

    def __init__(self, stem: BasicStem):
        super().__init__()
        self.conv1 = stem.conv1.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x.contiguous(memory_format=torch.channels_last)))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1).contiguous()


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 -> 1x1 with a projection shortcut when the channel count changes.

    Args:
        stride_in_1x1: official MSRA weights put the stride in the first 1x1 conv (True);
            torchvision weights put it in the 3x3 conv (False).
        norm: see `make_norm`.
    """

    def __init__(self, in_channels: int, out_channels: int, *, bottleneck_channels: int, stride: int,
                 stride_in_1x1: bool = True, norm: str = "FrozenBN"):
        super().__init__()
        self.shortcut = None
        if in_channels != out_channels:
            self.shortcut = ConvNorm(in_channels, out_channels, kernel_size=1, stride=stride, norm=norm)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNorm(in_channels, bottleneck_channels, kernel_size=1, stride=stride_1x1, norm=norm)
        self.conv2 = ConvNorm(bottleneck_channels, bottleneck_channels, kernel_size=3, stride=stride_3x3,
                              padding=1, norm=norm)
        self.conv3 = ConvNorm(bottleneck_channels, out_channels, kernel_size=1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        out = self.conv3(out)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + shortcut)


class BasicBlock(nn.Module):
    """3x3 -> 3x3 (ResNet-18/34) with a projection shortcut when the channel count changes."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, norm: str = "FrozenBN"):
        super().__init__()
        self.shortcut = None
        if in_channels != out_channels:
            self.shortcut = ConvNorm(in_channels, out_channels, kernel_size=1, stride=stride, norm=norm)
        self.conv1 = ConvNorm(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, norm=norm)
        self.conv2 = ConvNorm(out_channels, out_channels, kernel_size=3, padding=1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + shortcut)


class ResNet(nn.Module):
    """ResNet bottom-up network returning res3, res4, res5 (strides 8, 16, 32).

    Args:
        depth: 18, 34, 50 or 101.
        freeze_at: 0 trains everything; 1 freezes the stem; 2 freezes stem + res2 (official), ...
        stride_in_1x1: see `BottleneckBlock` (ignored for basic blocks).
        norm: the norm after every conv: "FrozenBN" (official; from random init it is the identity),
            "BN" (trainable BatchNorm2d) or "GN" (GroupNorm(32, C)). Frozen stages get FrozenBN in
            place of BN (see `freeze`).
    """

    def __init__(self, *, depth: int, freeze_at: int = 2, stride_in_1x1: bool = True, norm: str = "FrozenBN"):
        super().__init__()
        if depth not in RESNET_SPECS:
            raise ValueError(f"unsupported ResNet depth {depth}; choose one of {sorted(RESNET_SPECS)}")
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose one of {list(NORMS)}")
        block_type, num_blocks = RESNET_SPECS[depth]
        self.depth = depth
        self.norm = norm
        self.stem = BasicStem(64, norm=norm)
        in_channels = 64
        out_channels = 256 if block_type == "bottleneck" else 64  # official: RES2_OUT_CHANNELS
        self.stage_names = ("res2", "res3", "res4", "res5")
        self.out_channels: list[int] = []
        for index, (name, count) in enumerate(zip(self.stage_names, num_blocks)):
            blocks = []
            for block_index in range(count):
                stride = 2 if (block_index == 0 and index > 0) else 1
                if block_type == "bottleneck":
                    block = BottleneckBlock(in_channels, out_channels, bottleneck_channels=out_channels // 4,
                                            stride=stride, stride_in_1x1=stride_in_1x1, norm=norm)
                else:
                    block = BasicBlock(in_channels, out_channels, stride=stride, norm=norm)
                blocks.append(block)
                in_channels = out_channels
            self.add_module(name, nn.Sequential(*blocks))
            self.out_channels.append(out_channels)
            out_channels *= 2
        self.out_channels = self.out_channels[1:]  # res3, res4, res5
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int) -> None:
        """Stop gradients to the stem (freeze_at >= 1) and to res2..res{freeze_at} (official FREEZE_AT).

        BatchNorm layers there become FrozenBatchNorm2d (official: detectron2 convert_frozen_batchnorm),
        so their statistics stay fixed in train mode too; GroupNorm has no statistics to freeze.
        """
        modules = [self.stem, self.res2, self.res3, self.res4, self.res5][: max(freeze_at, 0)]
        for module in modules:
            module.requires_grad_(False)
            _freeze_batchnorm(module)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Args: images (N, 3, H, W). Returns [res3 (N, C3, H/8, W/8), res4 (H/16), res5 (H/32)]."""
        x = self.res2(self.stem(images))
        c3 = self.res3(x)
        c4 = self.res4(c3)
        return [c3, c4, self.res5(c4)]


def _freeze_batchnorm(module: nn.Module) -> None:
    """Replace (in place) every nn.BatchNorm2d under `module` by an equal FrozenBatchNorm2d."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d.from_batchnorm(child))
        else:
            _freeze_batchnorm(child)


def _norm_scale_and_shift(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A norm's per-channel affine map (scale (C,), shift (C,)), or None when it has none
    (GroupNorm, or BatchNorm in train mode, which normalizes with the batch statistics)."""
    if isinstance(norm, FrozenBatchNorm2d):
        return norm.scale_and_shift()
    if isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.track_running_stats:
        scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
        return scale, norm.bias - norm.running_mean * scale
    return None


def fold_frozen_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every `ConvNorm` under `module` (in place) whose norm is a FrozenBN (or an eval-mode
    BatchNorm2d) by a plain conv with the norm folded in; GroupNorm `ConvNorm`s are left as they are.

    An inference speed-up: the outputs equal the unfolded ones up to float rounding.
    Returns `module`.
    """
    for name, child in module.named_children():
        affine = _norm_scale_and_shift(child.norm) if isinstance(child, ConvNorm) else None
        if affine is not None:
            scale, shift = affine
            conv = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                             padding=child.padding, bias=True).to(child.weight.device)
            with torch.no_grad():
                conv.weight.copy_(child.weight * scale.view(-1, 1, 1, 1))
                conv.bias.copy_(shift)
            conv.requires_grad_(False)
            setattr(module, name, conv)
        else:
            fold_frozen_batchnorm(child)
    return module


# --------------------------------------------------------------------------------------------------
# mmdetection-layout ResNet (two-stage core: PCAN, MaskTrack R-CNN)
# --------------------------------------------------------------------------------------------------
class MMDetBottleneck(nn.Module):
    """mmdet ``Bottleneck``: conv1 1x1 -> conv2 3x3 -> conv3 1x1, each with BatchNorm (``bn1..3``),
    and ``downsample`` = (1x1 conv, BN) when the shape changes.

    Args:
        style: "pytorch" puts the stride in the 3x3 conv (mmdet ``style='pytorch'``, official PCAN
            and MaskTrack R-CNN); "caffe" puts it in the first 1x1. With "pytorch" the block is the
            same function as `BottleneckBlock(stride_in_1x1=False)` under other parameter names.
    """

    expansion = 4

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, style: str = "pytorch"):
        super().__init__()
        out_channels = planes * self.expansion
        stride_1x1, stride_3x3 = (1, stride) if style == "pytorch" else (stride, 1)
        self.conv1 = nn.Conv2d(in_channels, planes, 1, stride=stride_1x1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)  # official: mmdet BN eps 1e-5
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride_3x3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class MMDetBasicBlock(nn.Module):
    """mmdet ``BasicBlock`` (ResNet-18/34): conv1 3x3 (stride) -> conv2 3x3, ``bn1``/``bn2``."""

    expansion = 1

    def __init__(self, in_channels: int, planes: int, *, stride: int = 1, style: str = "pytorch"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_channels != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, planes, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class MMDetResNet(nn.Module):
    """mmdet ``ResNet`` returning C2..C5 (``out_indices=(0, 1, 2, 3)``), strides 4, 8, 16, 32.

    Parameter names are mmdet's / torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``,
    ``layer1.0.downsample.0``), so an official PCAN / MaskTrack R-CNN checkpoint's ``backbone.*``
    keys and torchvision ImageNet weights load without renaming.

    Args:
        depth: 18, 34, 50 or 101.
        style: "pytorch" (official PCAN / MaskTrack R-CNN) or "caffe"; see `MMDetBottleneck`.
        frozen_stages: official 1: the stem and layer1 get no gradient and stay in eval mode.
        norm_eval: official True: every BatchNorm stays in eval mode (running statistics frozen)
            when the model is put in train mode; its affine parameters still train.
    """

    def __init__(self, *, depth: int = 50, style: str = "pytorch", frozen_stages: int = 1,
                 norm_eval: bool = True):
        super().__init__()
        if depth not in RESNET_SPECS:
            raise ValueError(f"unsupported ResNet depth {depth}; choose one of {sorted(RESNET_SPECS)}")
        if style not in ("pytorch", "caffe"):
            raise ValueError(f"unknown ResNet style {style!r}; choose 'pytorch' or 'caffe'")
        block_type, num_blocks = RESNET_SPECS[depth]
        block_class = MMDetBottleneck if block_type == "bottleneck" else MMDetBasicBlock
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_channels = 64
        self.out_channels: list[int] = []
        for index, count in enumerate(num_blocks):
            planes = 64 * 2**index
            blocks = []
            for block_index in range(count):
                stride = 2 if (block_index == 0 and index > 0) else 1
                blocks.append(block_class(in_channels, planes, stride=stride, style=style))
                in_channels = planes * block_class.expansion
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            self.out_channels.append(in_channels)
        self._freeze_stages()

    def _frozen_modules(self) -> list[nn.Module]:
        stages = [nn.ModuleList([self.conv1, self.bn1])] if self.frozen_stages >= 0 else []
        return stages + [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            module.requires_grad_(False)

    def train(self, mode: bool = True) -> MMDetResNet:
        """As mmdet: frozen stages stay in eval mode; with `norm_eval` every BatchNorm does too."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Args: images (N, 3, H, W). Returns [C2 (N, 256, H/4, W/4), C3 (H/8), C4 (H/16), C5 (H/32)]
        (channels for ResNet-50; 64..512 for ResNet-18/34)."""
        x = F.relu(self.bn1(self.conv1(images)))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        outs = []
        for index in range(1, 5):
            x = getattr(self, f"layer{index}")(x)
            outs.append(x)
        return outs
