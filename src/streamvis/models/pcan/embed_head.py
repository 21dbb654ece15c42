"""The QDTrack embedding head of PCAN (official ``QuasiDenseEmbedHead``; reference/pcan/facts.md 1, 4.1).

4 x [conv3x3 256 (no bias), GroupNorm(32), ReLU] on 7x7 RoI features, flatten (256 * 49 = 12544),
fc 12544 -> 1024 + ReLU, fc 1024 -> 256 (``fc_embed``, no activation and no normalisation).
Parameter names follow the official state_dict (``convs.{i}.conv``, ``convs.{i}.gn``, ``fcs.0``,
``fc_embed``), so ``roi_head.track_head.<name>`` maps one-to-one.
"""

from __future__ import annotations

from torch import Tensor, nn

from streamvis.errors import StreamvisError

NUM_CONVS = 4  # official config: track_head num_convs=4
NUM_GROUPS = 32  # official config: norm_cfg=dict(type='GN', num_groups=32)
GN_EPS = 1e-5  # torch / mmcv GroupNorm default


class ConvGNReLU(nn.Module):
    """mmcv ``ConvModule`` with GroupNorm: conv (bias disabled because a norm follows) -> GN -> ReLU.

    Args:
        in_channels, out_channels: channels.
        num_groups: GroupNorm groups.
    """

    def __init__(self, in_channels: int, out_channels: int, *, num_groups: int = NUM_GROUPS):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.gn = nn.GroupNorm(num_groups, out_channels, eps=GN_EPS)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """(R, C_in, H, W) -> (R, C_out, H, W)."""
        return self.activation(self.gn(self.conv(x)))


class QuasiDenseEmbedHead(nn.Module):
    """Embedding head: 7x7 RoI features -> one raw (unnormalised) embedding per RoI.

    Args:
        in_channels: RoI feature channels (256).
        conv_channels: channels of the 4 convs (256).
        roi_size: RoI side (7).
        fc_channels: hidden fc width (1024).
        embed_channels: embedding size (256).
    """

    def __init__(self, *, in_channels: int = 256, conv_channels: int = 256, roi_size: int = 7,
                 fc_channels: int = 1024, embed_channels: int = 256):
        super().__init__()
        self.in_channels = in_channels
        self.roi_size = roi_size
        self.convs = nn.ModuleList(
            ConvGNReLU(in_channels if i == 0 else conv_channels, conv_channels) for i in range(NUM_CONVS)
        )
        self.fcs = nn.ModuleList([nn.Linear(conv_channels * roi_size * roi_size, fc_channels)])
        self.fc_embed = nn.Linear(fc_channels, embed_channels)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, roi_feats: Tensor) -> Tensor:
        """Embeddings of RoIs.

        Args:
            roi_feats: (R, C, 7, 7) RoIAlign features of the boxes (R may be 0).

        Returns:
            (R, embed_channels) raw embeddings (the tracker and the losses use dot products of these).
        """
        expected = (self.in_channels, self.roi_size, self.roi_size)
        if roi_feats.dim() != 4 or tuple(roi_feats.shape[1:]) != expected:
            raise StreamvisError(
                f"embedding head: RoI features must have shape (R, {expected[0]}, {expected[1]}, "
                f"{expected[2]}), got {tuple(roi_feats.shape)}"
            )
        x = roi_feats
        for conv in self.convs:
            x = conv(x)
        x = x.flatten(1)  # (R, 256 * 49)
        for fc in self.fcs:
            x = self.activation(fc(x))
        return self.fc_embed(x)
