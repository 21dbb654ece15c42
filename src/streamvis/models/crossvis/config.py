"""The typed configs of CrossVIS: `CrossVISConfig` (architecture + inference) and `LossConfig` (training).

`model.method: crossvis` in an experiment YAML selects `CrossVISConfig` (models/build.py); the
defaults are the official R-50 YouTube-VIS 2019 model (reference facts.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from streamvis.errors import ConfigError
from streamvis.models.backbone import NORMS, RESNET_SPECS
from streamvis.models.crossvis.targets import CENTER_SAMPLING_RADIUS, SIZE_RANGES
from streamvis.models.losses import FOCAL_ALPHA, FOCAL_GAMMA
from streamvis.ops.image import PIXEL_MEAN_BGR, PIXEL_STD_BGR

GROUP_NORM_GROUPS = 32  # official: FCOS towers use GroupNorm(32)


@dataclass(frozen=True)
class LossConfig:
    """Loss settings; the defaults are the official CrossVIS R-50 values.

    Attributes:
        focal_alpha, focal_gamma: sigmoid focal loss of the classification and re-ID heads.
        center_sampling_radius: in strides (official POS_RADIUS 1.5).
        center_sampling_on: "mask" (official: the mask centroid) or "box" (the box centre).
        size_ranges: per level [min, max] of max(l, t, r, b) in pixels, inclusive.
        box_loss: "giou" (official), "iou" or "linear_iou".
        mask_out_stride: stride of the supervised masks (official MASK_OUT_STRIDE 4).
        max_proposals: random subsample of the positives fed to the mask head (official 500; -1 off).
        crossover: compute loss_cross_over (else it is 0).
        crossover_sampling: how the counterpart's positive is drawn (`crossover.CrossoverSampler`):
            "random" (training; torch RNG, vectorized), "python" (official: Python's `random`),
            "first" / "last" (deterministic). Recorded draws: `CrossoverSampler.replay`.
        embedding: "global" (official identity proxies) or "pairwise" (contrast key vs reference).
        embedding_loss: "focal" (official) or "ce" for the global embedding.
        pairwise_temperature: temperature of the pairwise embedding loss.
        identity_prior_prob: initial prior of the identity proxies' bias (official 0.01).
    """

    focal_alpha: float = FOCAL_ALPHA
    focal_gamma: float = FOCAL_GAMMA
    center_sampling_radius: float = CENTER_SAMPLING_RADIUS
    center_sampling_on: str = "mask"
    size_ranges: tuple[tuple[float, float], ...] = SIZE_RANGES
    box_loss: str = "giou"
    mask_out_stride: int = 4
    max_proposals: int = 500
    crossover: bool = True
    crossover_sampling: str = "random"
    embedding: str = "global"
    embedding_loss: str = "focal"
    pairwise_temperature: float = 0.1
    identity_prior_prob: float = 0.01

    def __post_init__(self):
        choices = {
            "center_sampling_on": ("mask", "box"),
            "box_loss": ("giou", "iou", "linear_iou"),
            "crossover_sampling": ("random", "python", "first", "last"),
            "embedding": ("global", "pairwise"),
            "embedding_loss": ("focal", "ce"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"loss.{name} is {getattr(self, name)!r}; expected one of {allowed}")


@dataclass(frozen=True)
class CrossVISConfig:
    """Architecture and inference settings of a CrossVIS model (defaults: official R-50, YTVIS-2019).

    Attributes:
        method: always "crossvis" (the key of `streamvis.models.build.METHODS`).
        depth: ResNet depth, 18/34/50/101.
        num_classes: foreground classes (official YTVIS-2019: 40).
        class_names: optional names, one per class.
        category_ids: optional dataset category id of each class (results json ``category_id``);
            None means ``class + 1``.
        freeze_at: official FREEZE_AT 2 (stem + res2 frozen).
        stride_in_1x1: MSRA weights (True); torchvision ImageNet weights need False.
        backbone_norm: the norm after every backbone conv: "FrozenBN" (official, ImageNet init),
            "BN" or "GN" (trainable; for a backbone trained from scratch, where FrozenBN is the identity).
        fpn_channels, head_channels, head_num_convs: FPN width, FCOS tower width and depth.
        mask_branch_channels, mask_branch_num_convs, mask_out_channels: CondInst mask branch.
        reid_dim: re-ID embedding width; num_identities: training identities (re-ID proxies);
            0 means "derive from the training data" (`streamvis train` fills it in).
        score_threshold, nms_threshold, pre_nms_topk, detections_per_frame, mask_threshold: inference.
        test_short_side, test_max_size: ResizeShortestEdge at test time.
        pixel_mean, pixel_std: BGR normalization (`streamvis.ops.image`).
        sparse_inference: evaluate the controller / re-ID prediction only at the detections.
        backbone_gradient_scale: gradient fraction into backbone + FPN (official 0.1, tuned for an
            ImageNet-initialised backbone; 1.0 suits training from scratch).
        loss: training-loss settings (`LossConfig`).
    """

    method: str = "crossvis"
    depth: int = 50
    num_classes: int = 40
    class_names: tuple[str, ...] | None = None
    category_ids: tuple[int, ...] | None = None
    freeze_at: int = 2
    stride_in_1x1: bool = True
    backbone_norm: str = "FrozenBN"
    fpn_channels: int = 256
    head_channels: int = 256
    head_num_convs: int = 4
    mask_branch_channels: int = 128
    mask_branch_num_convs: int = 4
    mask_out_channels: int = 8
    reid_dim: int = 256
    num_identities: int = 3774  # official: nID of YouTube-VIS 2019 train
    score_threshold: float = 0.05
    nms_threshold: float = 0.6
    pre_nms_topk: int = 1000
    detections_per_frame: int = 100
    mask_threshold: float = 0.5
    test_short_side: int = 360  # official: INPUT.MIN_SIZE_TEST
    test_max_size: int = 640  # official: INPUT.MAX_SIZE_TEST
    pixel_mean: tuple[float, float, float] = PIXEL_MEAN_BGR
    pixel_std: tuple[float, float, float] = PIXEL_STD_BGR
    sparse_inference: bool = False
    backbone_gradient_scale: float = 0.1  # official: features = 0.1*f + 0.9*f.detach()
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self):
        if self.method != "crossvis":
            raise ConfigError(f"CrossVISConfig.method must be 'crossvis', got {self.method!r}")
        if self.depth not in RESNET_SPECS:
            raise ConfigError(f"depth must be one of {sorted(RESNET_SPECS)}, got {self.depth}")
        if self.backbone_norm not in NORMS:
            raise ConfigError(f"backbone_norm must be one of {list(NORMS)}, got {self.backbone_norm!r}")
        if self.head_channels % GROUP_NORM_GROUPS:
            raise ConfigError(f"head_channels must be a multiple of {GROUP_NORM_GROUPS}, "
                              f"got {self.head_channels}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ConfigError(f"class_names has {len(self.class_names)} names "
                              f"but num_classes is {self.num_classes}")
        if self.category_ids is not None and len(self.category_ids) != self.num_classes:
            raise ConfigError(f"category_ids has {len(self.category_ids)} ids "
                              f"but num_classes is {self.num_classes}")
        for name in ("num_classes", "fpn_channels", "head_channels", "mask_branch_channels",
                     "mask_out_channels", "reid_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_identities != 0 and self.num_identities < 3:
            # emb_scale = sqrt(2) * log(nID - 1) needs nID >= 3 (official formula)
            raise ConfigError(f"num_identities must be 0 (derive from the data) or >= 3, "
                              f"got {self.num_identities}")

    def replace(self, **changes) -> CrossVISConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, CrossVISConfig] = {
    "crossvis_r50": CrossVISConfig(depth=50),
    "crossvis_r101": CrossVISConfig(depth=101),
    # CPU-trainable: narrow FPN / head / mask branch and 2 tower convs
    "crossvis_r18_small": CrossVISConfig(depth=18, fpn_channels=64, head_channels=64, head_num_convs=2,
                                         mask_branch_channels=64, mask_branch_num_convs=2, reid_dim=64),
}
