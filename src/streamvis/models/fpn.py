"""Feature pyramid P3-P7 (detectron2 FPN + AdelaiDet's LastLevelP6P7 on P5). Reference facts.md, section 3."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def c2_xavier_fill(module: nn.Conv2d) -> None:
    """Caffe2 'XavierFill' (detectron2 FPN init): kaiming-uniform with a=1, zero bias."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


class FPN(nn.Module):
    """Top-down pyramid over res3-res5, plus P6 (3x3/2 on P5) and P7 (3x3/2 on relu(P6)).

    Args:
        in_channels: channels of (res3, res4, res5).
        out_channels: width of every pyramid level (official 256).
    """

    strides = (8, 16, 32, 64, 128)

    def __init__(self, *, in_channels: list[int] | tuple[int, int, int], out_channels: int = 256):
        super().__init__()
        self.out_channels = out_channels
        for level, channels in zip((3, 4, 5), in_channels):
            self.add_module(f"lateral{level}", nn.Conv2d(channels, out_channels, kernel_size=1))
            self.add_module(f"output{level}", nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1))
        # official: MODEL.FCOS.TOP_LEVELS 2 with in_features "p5" (P6 comes from the FPN output)
        self.p6 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=2, padding=1)
        self.p7 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=2, padding=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                c2_xavier_fill(module)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Args: [res3, res4, res5]. Returns [P3, P4, P5, P6, P7], each (N, out_channels, H/s, W/s)."""
        c3, c4, c5 = features
        inner5 = self.lateral5(c5)
        inner4 = self.lateral4(c4) + F.interpolate(inner5, scale_factor=2.0, mode="nearest")
        inner3 = self.lateral3(c3) + F.interpolate(inner4, scale_factor=2.0, mode="nearest")
        p5 = self.output5(inner5)
        p6 = self.p6(p5)
        p7 = self.p7(F.relu(p6))
        return [self.output3(inner3), self.output4(inner4), p5, p6, p7]


class ConvModule(nn.Module):
    """A conv with bias and no norm or activation, under mmcv ``ConvModule``'s name ``conv`` (so
    official ``neck.lateral_convs.0.conv.weight`` keys map one-to-one)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)
        nn.init.xavier_uniform_(self.conv.weight)  # official: mmdet FPN init_weights xavier (uniform)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class MMDetFPN(nn.Module):
    """mmdet ``FPN`` with ``num_outs=5`` and no extra convs: P2..P5 from C2..C5, P6 = max-pool
    (kernel 1, stride 2) of P5 (official PCAN and MaskTrack R-CNN necks, strides 4..64).

    Top-down: nearest upsampling to the finer lateral's size, added to it (mmdet 2.x
    ``F.interpolate(size=prev_shape)``; mmdet 0.5's ``scale_factor=2`` is the same on inputs padded
    to a multiple of 32). Lateral 1x1 and output 3x3 convs have biases, no norm, no activation.

    Args:
        in_channels: channels of C2..C5 (ResNet-50: 256, 512, 1024, 2048).
        out_channels: official 256.
        num_outs: pyramid levels returned (official 5; more levels are further stride-2 max-pools).
    """

    def __init__(self, *, in_channels: list[int] | tuple[int, ...], out_channels: int = 256,
                 num_outs: int = 5):
        super().__init__()
        if num_outs < len(in_channels):
            raise ValueError(f"num_outs {num_outs} must be >= the {len(in_channels)} input levels")
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.lateral_convs = nn.ModuleList(ConvModule(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1) for _ in in_channels)

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(4 * 2**i for i in range(self.num_outs))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Args: [C2, C3, C4, C5]. Returns [P2, ..., P6], each (N, out_channels, H/s, W/s)."""
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, features)]
        for index in range(len(laterals) - 1, 0, -1):
            laterals[index - 1] = laterals[index - 1] + F.interpolate(
                laterals[index], size=laterals[index - 1].shape[2:], mode="nearest")
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))  # official: P6 = max_pool2d(P5, 1, stride=2)
        return outs
