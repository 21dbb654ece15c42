"""MaskTrack R-CNN's tracking head (official ``mmdet/models/track_heads/track_head.py``, facts.md s.2).

Two fully connected layers embed the 256x7x7 RoI feature of a box (the same 7x7 features the
box head reads): flatten (C-major: ``c*49 + y*7 + x``) -> ``fcs.0`` Linear 12544->1024 -> ReLU ->
``fcs.1`` Linear 1024->1024, with **no** ReLU, normalisation or dropout after the last layer.
The match score of a current RoI against reference object ``k`` is the raw dot product of their
embeddings (no scale, no temperature); column 0 is a constant 0 logit, the "new object" column.

Parameter names follow the official module, so with the head stored as ``track_head`` the
state-dict keys are the official checkpoint's ``track_head.fcs.{0,1}.{weight,bias}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

NEW_OBJECT_LOGIT = 0.0  # official: TrackHead.forward prepends torch.zeros(m, 1) (dynamic=True)
INIT_STD = 0.01  # official: TrackHead.init_weights, normal_(fc.weight, 0, 0.01), bias 0


class TrackHead(nn.Module):
    """Embeds RoI features and scores current RoIs against reference objects.

    Args:
        in_channels: channels of the RoI feature (official 256).
        roi_feat_size: side of the square RoI feature (official 7).
        fc_out_channels: width of both fully connected layers = embedding size (official 1024).
        num_fcs: number of fully connected layers (official 2); ReLU between them, none after.
    """

    def __init__(self, *, in_channels: int = 256, roi_feat_size: int = 7, fc_out_channels: int = 1024,
                 num_fcs: int = 2):
        super().__init__()
        if num_fcs < 1:
            raise ValueError(f"TrackHead needs at least one fully connected layer, got num_fcs={num_fcs}")
        self.in_channels = in_channels
        self.roi_feat_size = roi_feat_size
        self.embedding_dim = fc_out_channels
        widths = [in_channels * roi_feat_size * roi_feat_size] + [fc_out_channels] * num_fcs
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official init: weights N(0, 0.01), biases 0 (the head is not in the COCO checkpoint)."""
        for fc in self.fcs:
            nn.init.normal_(fc.weight, 0.0, INIT_STD)
            nn.init.zeros_(fc.bias)

    def embed(self, roi_feats: Tensor) -> Tensor:
        """Embeddings of RoI features.

        Args:
            roi_feats: (N, C, S, S) RoI features (S = roi_feat_size).

        Returns:
            (N, D) embeddings (D = fc_out_channels), the output of the last fc (no ReLU).
        """
        expected = (self.in_channels, self.roi_feat_size, self.roi_feat_size)
        if roi_feats.dim() != 4 or tuple(roi_feats.shape[1:]) != expected:
            raise ValueError(f"TrackHead.embed expects (N, {expected[0]}, {expected[1]}, {expected[2]}) "
                             f"RoI features, got shape {tuple(roi_feats.shape)}")
        x = roi_feats.flatten(1)  # (N, C*S*S), C-major as the official .view(N, -1)
        for index, fc in enumerate(self.fcs):
            x = fc(x)
            if index < len(self.fcs) - 1:
                x = torch.relu(x)
        return x

    @staticmethod
    def match_scores(embeddings: Tensor, ref_embeddings: Tensor) -> Tensor:
        """Match logits of one image: the constant "new object" column, then raw dot products.

        Args:
            embeddings: (m, D) embeddings of the current RoIs.
            ref_embeddings: (k, D) embeddings of the reference objects (or tracker memory).

        Returns:
            (m, 1 + k) logits; column 0 is `NEW_OBJECT_LOGIT`, column 1 + j is ``<e_i, ref_j>``.
        """
        dots = embeddings @ ref_embeddings.t()  # (m, k)
        new_column = dots.new_full((dots.shape[0], 1), NEW_OBJECT_LOGIT)
        return torch.cat([new_column, dots], dim=1)

    def forward(self, roi_feats: Tensor, ref_roi_feats: Tensor, counts: Sequence[int],
                ref_counts: Sequence[int]) -> list[Tensor]:
        """Per-image match logits of current RoIs against reference objects (official forward).

        Args:
            roi_feats: (sum(counts), C, S, S) current-frame RoI features, image after image.
            ref_roi_feats: (sum(ref_counts), C, S, S) reference-frame RoI features.
            counts: RoIs per image.
            ref_counts: reference objects per image.

        Returns:
            One (counts[i], 1 + ref_counts[i]) tensor per image (see `match_scores`).
        """
        counts, ref_counts = [int(c) for c in counts], [int(c) for c in ref_counts]
        if len(counts) != len(ref_counts):
            raise ValueError(f"TrackHead: {len(counts)} images of RoIs but {len(ref_counts)} of references")
        if sum(counts) != roi_feats.shape[0] or sum(ref_counts) != ref_roi_feats.shape[0]:
            raise ValueError(f"TrackHead: counts {counts} / {ref_counts} do not add up to the "
                             f"{roi_feats.shape[0]} / {ref_roi_feats.shape[0]} RoI features given")
        embeddings = self.embed(roi_feats).split(counts)
        ref_embeddings = self.embed(ref_roi_feats).split(ref_counts)
        return [self.match_scores(e, r) for e, r in zip(embeddings, ref_embeddings)]
