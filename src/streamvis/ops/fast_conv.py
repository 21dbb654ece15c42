"""Inference-only convolution replacements that compute the same function with less work on CPU.

- `WinogradConv2d`: 3x3 / stride 1 / padding 1 convolutions with Winograd's minimal filtering
  F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016):
  each 2x2 output tile costs 16 instead of 36 multiplies per input/output channel pair; the
  tile transforms are small matrix products and the bulk is 16 batched GEMMs.
Results equal `nn.Conv2d`'s up to float32 rounding (the transforms only use 0, +-1 and 1/2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# F(2x2, 3x3) transforms (Lavin & Gray 2016, section 4.1)
_BT = torch.tensor([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=torch.float32)
_G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float32)
_AT = torch.tensor([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=torch.float32)
# below these the input transform costs more than the multiplies it saves (measured on CPU)
MIN_OUT_CHANNELS = 64
MIN_TILES = 64


class WinogradConv2d(nn.Module):
    """A 3x3, stride-1, padding-1 (optionally grouped) `nn.Conv2d`, evaluated with F(2x2, 3x3).

    Args:
        conv: the convolution to replace (its weights are transformed once, here).
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if not is_winograd_compatible(conv):
            raise ValueError(f"WinogradConv2d needs a 3x3 stride-1 padding-1 conv, got {conv}")
        self.groups, self.out_channels = conv.groups, conv.out_channels
        self.conv = conv  # used directly on small inputs, where the tile transforms do not pay off
        weight = conv.weight.detach().float()  # (Cout, Cin/g, 3, 3)
        transformed = torch.einsum("ak,oikl,bl->aboi", _G, weight, _G)  # (4, 4, Cout, Cin/g)
        out_per_group = self.out_channels // self.groups
        shape = (16, self.groups, out_per_group, weight.shape[1])
        self.register_buffer("weight_t", transformed.reshape(shape).contiguous())  # U: (16, g, Cout/g, Cin/g)
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())
        self.register_buffer("output_t", torch.kron(_AT, _AT))  # (4, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        num, channels, height, width = x.shape
        tiles_h, tiles_w = (height + 1) // 2, (width + 1) // 2
        if num * tiles_h * tiles_w < MIN_TILES:
            return self.conv(x)
        padded = F.pad(x, (1, 1 + 2 * tiles_w - width, 1, 1 + 2 * tiles_h - height))
        inputs = self.transform_input(padded, tiles_h, tiles_w)  # (4, 4, C, N, th, tw)
        inputs = inputs.view(16, self.groups, channels // self.groups, num * tiles_h * tiles_w)
        products = torch.matmul(self.weight_t, inputs).view(16, -1)  # (16, Cout*P)
        out = (self.output_t @ products).view(2, 2, self.out_channels, num, tiles_h, tiles_w)
        out = out.permute(3, 2, 4, 0, 5, 1).reshape(num, self.out_channels, 2 * tiles_h, 2 * tiles_w)
        out = out[:, :, :height, :width]
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out.contiguous()

    @staticmethod
    def transform_input(padded: torch.Tensor, tiles_h: int, tiles_w: int) -> torch.Tensor:
        """B^T d B for every overlapping 4x4 tile d (stride 2), with additions on strided views.

        Args:
            padded: (N, C, 2*th+2, 2*tw+2).

        Returns:
            (4, 4, C, N, th, tw).
        """
        num, channels = padded.shape[:2]
        rows = [padded[:, :, k : k + 2 * tiles_h : 2] for k in range(4)]  # row 2i+k of tile row i
        row_t = (rows[0] - rows[2], rows[1] + rows[2], rows[2] - rows[1], rows[1] - rows[3])
        out = padded.new_empty((4, 4, channels, num, tiles_h, tiles_w))
        for a, t in enumerate(row_t):
            cols = [t[..., k : k + 2 * tiles_w : 2] for k in range(4)]
            torch.sub(cols[0], cols[2], out=out[a, 0].transpose(0, 1))
            torch.add(cols[1], cols[2], out=out[a, 1].transpose(0, 1))
            torch.sub(cols[2], cols[1], out=out[a, 2].transpose(0, 1))
            torch.sub(cols[1], cols[3], out=out[a, 3].transpose(0, 1))
        return out


def is_winograd_compatible(conv: nn.Module) -> bool:
    """True for a 3x3, stride-1, padding-1, dilation-1 `nn.Conv2d` with >= MIN_OUT_CHANNELS per group."""
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.padding_mode == "zeros"
            and conv.out_channels // conv.groups >= MIN_OUT_CHANNELS)


def winograd_convs(module: nn.Module, keep: tuple[nn.Module, ...] = ()) -> nn.Module:
    """Swap (in place) every 3x3 stride-1 `nn.Conv2d` under `module` for a `WinogradConv2d`.

    Args:
        module: the module tree to change.
        keep: modules to leave as they are (e.g. a conv evaluated sparsely through its weight).

    Returns:
        `module`.
    """
    for name, child in module.named_children():
        if any(child is k for k in keep):
            continue
        if is_winograd_compatible(child):
            setattr(module, name, WinogradConv2d(child))
        else:
            winograd_convs(child, keep)
    return module
