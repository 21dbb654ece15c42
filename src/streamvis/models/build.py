"""Model configs and the builder: `ModelConfig` -> `CrossVIS`, through a plain name -> builder dict."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from streamvis.data.transforms import PIXEL_MEAN_BGR, PIXEL_STD_BGR
from streamvis.errors import ConfigError
from streamvis.models.backbone import NORMS, RESNET_SPECS, ResNet
from streamvis.models.condinst import MASK_HEAD_CHANNELS, DynamicMaskHead, MaskBranch, dynamic_param_count
from streamvis.models.criterion import CrossVISCriterion, LossConfig
from streamvis.models.crossvis import CrossVIS
from streamvis.models.fcos import FCOSHead
from streamvis.models.fpn import FPN

GROUP_NORM_GROUPS = 32  # official: FCOS towers use GroupNorm(32)
ARCHITECTURES = ("crossvis",)  # keys of MODEL_BUILDERS (defined below the builders)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and inference settings of a CrossVIS model (defaults: official R-50, YTVIS-2019).

    Attributes:
        architecture: key of `MODEL_BUILDERS`.
        depth: ResNet depth, 18/34/50/101.
        num_classes: foreground classes (official YTVIS-2019: 40).
        class_names: optional names, one per class.
        freeze_at: official FREEZE_AT 2 (stem + res2 frozen).
        stride_in_1x1: MSRA weights (True); torchvision ImageNet weights need False.
        backbone_norm: the norm after every backbone conv: "FrozenBN" (official, ImageNet init),
            "BN" or "GN" (trainable; for a backbone trained from scratch, where FrozenBN is the identity).
        fpn_channels, head_channels, head_num_convs: FPN width, FCOS tower width and depth.
        mask_branch_channels, mask_branch_num_convs, mask_out_channels: CondInst mask branch.
        category_ids: optional dataset category id of each class (results json ``category_id``);
            None means ``class + 1``.
        reid_dim: re-ID embedding width; num_identities: training identities (re-ID proxies);
            0 means "derive from the training data" (`streamvis train` fills it in).
        score_threshold, nms_threshold, pre_nms_topk, detections_per_frame, mask_threshold: inference.
        test_short_side, test_max_size: ResizeShortestEdge at test time.
        pixel_mean, pixel_std: BGR normalization.
        sparse_inference: evaluate the controller / re-ID prediction only at the detections.
        backbone_gradient_scale: gradient fraction into backbone + FPN (official 0.1, tuned for an
            ImageNet-initialised backbone; 1.0 suits training from scratch).
        loss: training-loss settings (models/criterion.py).
    """

    architecture: str = "crossvis"
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
    test_short_side: int = 360
    test_max_size: int = 640
    pixel_mean: tuple[float, float, float] = PIXEL_MEAN_BGR
    pixel_std: tuple[float, float, float] = PIXEL_STD_BGR
    sparse_inference: bool = False
    backbone_gradient_scale: float = 0.1  # official: features = 0.1*f + 0.9*f.detach()
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {self.architecture!r}; "
                              f"choose one of {list(ARCHITECTURES)}")
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

    def replace(self, **changes) -> ModelConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def build_crossvis(cfg: ModelConfig) -> CrossVIS:
    """Build a CrossVIS from its config (training init; load weights separately)."""
    backbone = ResNet(depth=cfg.depth, freeze_at=cfg.freeze_at, stride_in_1x1=cfg.stride_in_1x1,
                      norm=cfg.backbone_norm)
    fpn = FPN(in_channels=backbone.out_channels, out_channels=cfg.fpn_channels)
    num_params = dynamic_param_count(cfg.mask_out_channels, MASK_HEAD_CHANNELS)
    head = FCOSHead(in_channels=cfg.fpn_channels, channels=cfg.head_channels, num_classes=cfg.num_classes,
                    num_convs=cfg.head_num_convs, controller_params=num_params, reid_dim=cfg.reid_dim)
    mask_branch = MaskBranch(in_channels=cfg.fpn_channels, channels=cfg.mask_branch_channels,
                             out_channels=cfg.mask_out_channels, num_convs=cfg.mask_branch_num_convs)
    mask_head = DynamicMaskHead(in_channels=cfg.mask_out_channels)
    model = CrossVIS(backbone=backbone, fpn=fpn, head=head, mask_branch=mask_branch, mask_head=mask_head,
                     criterion=build_criterion(cfg), pixel_mean=cfg.pixel_mean, pixel_std=cfg.pixel_std,
                     score_threshold=cfg.score_threshold, nms_threshold=cfg.nms_threshold,
                     pre_nms_topk=cfg.pre_nms_topk, detections_per_frame=cfg.detections_per_frame,
                     mask_threshold=cfg.mask_threshold, sparse_inference=cfg.sparse_inference,
                     backbone_gradient_scale=cfg.backbone_gradient_scale)
    model.config = cfg
    return model


def build_criterion(cfg: ModelConfig) -> nn.Module:
    """The training criterion (models/criterion.py); it owns the identity proxies."""
    if cfg.num_identities == 0:
        raise ConfigError("model.num_identities is 0 (derive from the data): set it, or build the "
                          "model through `streamvis train`, which counts the training identities")
    return CrossVISCriterion(cfg.loss, num_classes=cfg.num_classes, num_identities=cfg.num_identities,
                             embedding_dim=cfg.reid_dim)


MODEL_BUILDERS: dict[str, Callable[[ModelConfig], nn.Module]] = {"crossvis": build_crossvis}


def build_model(cfg: ModelConfig) -> CrossVIS:
    """Build the model named by ``cfg.architecture`` (a fresh, training-initialised model)."""
    return MODEL_BUILDERS[cfg.architecture](cfg)


PRESETS: dict[str, ModelConfig] = {
    "crossvis_r50": ModelConfig(depth=50),
    "crossvis_r101": ModelConfig(depth=101),
    # CPU-trainable: narrow FPN / head / mask branch and 2 tower convs
    "crossvis_r18_small": ModelConfig(depth=18, fpn_channels=64, head_channels=64, head_num_convs=2,
                                      mask_branch_channels=64, mask_branch_num_convs=2, reid_dim=64),
}


def preset(name: str) -> ModelConfig:
    """The named preset config (see `PRESETS`)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
