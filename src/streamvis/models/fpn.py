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
