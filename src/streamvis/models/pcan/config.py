"""The typed config of PCAN: `PCANConfig` (architecture, inference and the training stage).

``model.method: pcan`` in an experiment YAML selects it (models/build.py). The defaults are the
released official model (reference/pcan/facts.md section 1:
``segtrack-frcnn_r50_fpn_12e_bdd10k_fixed_pcan.py`` merged with its bases): ResNet-50 pytorch-style,
FPN P2-P6 with 256 channels, 8 BDD100K classes,
test resize (1296, 720) keep-ratio, RGB normalisation.

Training stages (facts.md section 5; ``train_stage``):

- ``"track"``: official stage 1 (QDTrack Faster R-CNN): RPN, box head and embedding head train
  (backbone stem + res2 frozen); losses ``loss_rpn_*``, ``loss_cls``, ``loss_bbox``, ``loss_track``,
  ``loss_track_aux``.
- ``"mask"``: official stage 2 (``_fixed``): only the mask head trains (``loss_mask``). The
  official stage raises KeyError (``loss_dice``, facts.md 5); we train what it intends.
- ``"refine"``: official stage 3 (PCAN): only the refine head trains (``loss_refine``).
- ``"joint"`` (ours, for small CPU recipes): everything trains at once, all losses above.

Losses of frozen parts are not computed (the official code computes the RPN loss in the refine
stage and logs it without gradient). ``frozen_modules`` freezes more parts by name in any stage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from streamvis.errors import ConfigError
from streamvis.models.backbone import RESNET_SPECS

# official: pcan/datasets/bdd_video_dataset.py CLASSES (labels 0..7)
BDD100K_CLASSES = ("pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
# official img_norm_cfg: RGB mean / std (to_rgb=True)
PIXEL_MEAN_RGB = (123.675, 116.28, 103.53)
PIXEL_STD_RGB = (58.395, 57.12, 57.375)
TRAIN_STAGES = ("track", "mask", "refine", "joint")
# the parts a config may freeze by name (``frozen_modules``); official names of the model's children
FREEZABLE = ("backbone", "neck", "rpn_head", "bbox_head", "mask_head", "track_head", "refine_head")
# trainable parts per stage (facts.md 3.3 and 5; `EMQuasiDenseMaskRCNNRefine.fix_modules`,
# `QuasiDenseMaskRCNN.fix_modules`)
STAGE_TRAINABLE = {
    "track": ("backbone", "neck", "rpn_head", "bbox_head", "track_head"),
    "mask": ("mask_head",),
    "refine": ("refine_head",),
    "joint": FREEZABLE,
}


@dataclass(frozen=True)
class PCANConfig:
    """Architecture, inference and training-stage settings of PCAN (defaults: official R-50, BDD100K).

    Attributes:
        method: always "pcan" (the key of `streamvis.models.build.METHODS`).
        num_classes: foreground classes (official BDD100K MOTS: 8).
        class_names: optional names, one per class (None: the training data's category names;
            the official BDD100K model's are `BDD100K_CLASSES`).
        category_ids: optional results-json category id of each class (None: ``class + 1``).
        depth: ResNet depth (official 50; 18/34 for CPU recipes).
        frozen_stages: ResNet stages without gradient (official 1: stem + res2; -1: none).
        norm_eval: BatchNorm running statistics frozen in training (official True).
        fpn_channels: FPN / RoI feature channels (official 256; a multiple of 32, GroupNorm(32)).
        fc_channels: hidden width of the box and embedding heads' fcs (official 1024).
        embed_channels: embedding size (official 256).
        mask_conv_channels: channels of the mask head and refine head convs (official 256).
        rpn_pre_nms_topk, rpn_max_proposals: test-time proposals (official 1000 / 1000).
        score_threshold, nms_threshold, detections_per_frame: R-CNN post-processing (official 0.5,
            0.5, 100).
        mask_threshold: binarisation of pasted masks (official 0.5).
        test_short_side, test_max_size: test resize (official img_scale (1296, 720) keep ratio).
        pixel_mean, pixel_std: RGB normalisation (official img_norm_cfg).
        frame_attention: frame-level PCAM on P2/P3 at test time (official True; off = ablation).
        refine: refine head at test time (official True; off = mask-head masks, ablation).
        freeze_prototypes_at_inference: opt-in fix (official False): the refine head's global
            prototypes stay fixed in eval mode (see `EMMatchHeadPlus`).
        train_stage: "track", "mask", "refine" (official stages 1-3) or "joint" (see the module doc).
        frozen_modules: extra parts (names in `FREEZABLE`) to freeze whatever the stage.
        skip_images_without_positives: an image without any positive key/reference pair counts 0
            in the association losses (official: division by zero; the official dataset skips such
            pairs before they reach the loss, streamvis' loader does not, hence True).
    """

    method: str = "pcan"
    num_classes: int = 8
    class_names: tuple[str, ...] | None = None
    category_ids: tuple[int, ...] | None = None
    depth: int = 50
    frozen_stages: int = 1
    norm_eval: bool = True
    fpn_channels: int = 256
    fc_channels: int = 1024
    embed_channels: int = 256
    mask_conv_channels: int = 256
    rpn_pre_nms_topk: int = 1000
    rpn_max_proposals: int = 1000
    score_threshold: float = 0.5
    nms_threshold: float = 0.5
    detections_per_frame: int = 100
    mask_threshold: float = 0.5
    test_short_side: int = 720
    test_max_size: int = 1296
    pixel_mean: tuple[float, float, float] = PIXEL_MEAN_RGB
    pixel_std: tuple[float, float, float] = PIXEL_STD_RGB
    frame_attention: bool = True
    refine: bool = True
    freeze_prototypes_at_inference: bool = False
    train_stage: str = "refine"
    frozen_modules: tuple[str, ...] = ()
    skip_images_without_positives: bool = True

    def __post_init__(self):
        if self.method != "pcan":
            raise ConfigError(f"PCANConfig.method must be 'pcan', got {self.method!r}")
        if self.depth not in RESNET_SPECS:
            raise ConfigError(f"model.depth must be one of {sorted(RESNET_SPECS)}, got {self.depth}")
        if self.train_stage not in TRAIN_STAGES:
            raise ConfigError(f"model.train_stage is {self.train_stage!r}; expected one of {TRAIN_STAGES}")
        unknown = [name for name in self.frozen_modules if name not in FREEZABLE]
        if unknown:
            raise ConfigError(f"model.frozen_modules has unknown part(s) {unknown}; choose from {FREEZABLE}")
        for name in ("num_classes", "fpn_channels", "fc_channels", "embed_channels", "mask_conv_channels",
                     "rpn_pre_nms_topk", "rpn_max_proposals", "detections_per_frame", "test_short_side",
                     "test_max_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be positive, got {getattr(self, name)}")
        for name in ("fpn_channels", "mask_conv_channels"):
            if getattr(self, name) % 32:
                raise ConfigError(f"model.{name} must be a multiple of 32 (GroupNorm(32) of the "
                                  f"embedding head), got {getattr(self, name)}")
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise ConfigError(f"model.class_names has {len(self.class_names)} names but num_classes is "
                              f"{self.num_classes} (set class_names: null for unnamed classes)")
        if self.category_ids is not None and len(self.category_ids) != self.num_classes:
            raise ConfigError(f"model.category_ids has {len(self.category_ids)} ids but num_classes is "
                              f"{self.num_classes}")
        for name in ("score_threshold", "nms_threshold", "mask_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"model.{name} must be in [0, 1], got {getattr(self, name)}")

    @property
    def trainable_modules(self) -> tuple[str, ...]:
        """The parts that get gradients in `train_stage` minus `frozen_modules`."""
        return tuple(name for name in STAGE_TRAINABLE[self.train_stage] if name not in self.frozen_modules)

    def replace(self, **changes) -> PCANConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, PCANConfig] = {
    "pcan_r50": PCANConfig(class_names=BDD100K_CLASSES),
    # CPU-trainable: ResNet-18, narrow FPN and heads (weights ~ 20 MB in float32)
    "pcan_r18_small": PCANConfig(depth=18, frozen_stages=-1, fpn_channels=64, fc_channels=256,
                                 embed_channels=128, mask_conv_channels=64, rpn_pre_nms_topk=300,
                                 rpn_max_proposals=300, train_stage="joint"),
}
