"""Typed configuration of MaskTrack R-CNN; the defaults are the released official model's.

Source: youtubevos/MaskTrackRCNN @ 10e5d7d, ``configs/masktrack_rcnn_r50_fpn_1x_youtubevos.py``
(read in ../shared/reference/masktrack/facts.md, sections 1, 4, 5 and 7). Class index 0 is the
background (mmdet v0.5), so the released model's ``num_classes = 41`` = 40 YouTube-VIS 2019
classes + background; here ``num_classes`` is the foreground count (40, the method contract's)
and detections carry 0-based foreground labels (official ``index - 1``).

`MaskTrackConfig` describes the model (``model.method: masktrack`` in an experiment YAML, e.g.
``configs/masktrack_r50_ytvis19.yaml``; `streamvis.models.build.METHODS`), `MaskTrackSchedule` the
official training schedule in epochs (8 images per iteration); `official_solver_values` turns it
into the trainer's iteration-based ``solver:`` section for a given training set.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from streamvis.categories import YTVIS_2019_CATEGORIES
from streamvis.errors import ConfigError

YTVIS19_CLASS_NAMES = tuple(c["name"] for c in YTVIS_2019_CATEGORIES)  # official YTVOSDataset.CLASSES


@dataclass(frozen=True)
class MaskTrackInputConfig:
    """Input pipeline (official ``img_norm_cfg``, ``img_scale``, ``size_divisor``, ``flip_ratio``).

    Args:
        image_scale: (long, short) keep-ratio rescale bound: ``sf = min(long/long_edge, short/short_edge)``.
        size_divisor: pad (bottom/right, with 0 after normalisation) to a multiple of this.
        pixel_mean, pixel_std: RGB normalisation (the BGR file is converted to RGB first).
        flip_ratio: horizontal flip probability in training (key and reference frame together).
    """

    image_scale: tuple[int, int] = (640, 360)  # official img_scale=(640, 360), keep_ratio=True
    size_divisor: int = 32  # official size_divisor=32
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)  # official img_norm_cfg
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)  # official img_norm_cfg
    flip_ratio: float = 0.5  # official flip_ratio=0.5

    def __post_init__(self):
        if min(self.image_scale) < 1 or self.size_divisor < 1 or not 0 <= self.flip_ratio <= 1:
            raise ConfigError("model.input: need image_scale >= 1, size_divisor >= 1, 0 <= flip_ratio <= 1")


@dataclass(frozen=True)
class MaskTrackBackboneConfig:
    """ResNet + FPN (official ``ResNet(style='pytorch')`` and ``FPN(num_outs=5)``: P2..P6).

    Args:
        depth: ResNet depth.
        frozen_stages: stem and the first `frozen_stages` stages get no gradient (-1: none).
        norm_eval: every BN layer stays in eval mode in training (frozen running statistics).
        fpn_channels: FPN output channels.
    """

    depth: Literal[18, 34, 50, 101] = 50
    style: Literal["pytorch", "caffe"] = "pytorch"  # official: stride 2 in the 3x3 conv
    frozen_stages: int = 1  # official frozen_stages=1
    norm_eval: bool = True  # official norm_eval=True
    fpn_channels: int = 256  # official FPN out_channels=256
    fpn_levels: tuple[int, ...] = (2, 3, 4, 5, 6)  # official num_outs=5; P6 = max_pool2d(P5, 1, 2)


@dataclass(frozen=True)
class MaskTrackRPNConfig:
    """RPN anchors, proposals (used for training **and** test, official) and training targets."""

    anchor_scales: tuple[float, ...] = (8.0,)  # official anchor_scales=[8]
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # official anchor_ratios
    anchor_strides: tuple[int, ...] = (4, 8, 16, 32, 64)  # official anchor_strides
    pre_nms_topk_per_level: int = 200  # official test_cfg.rpn.nms_pre=200 (per level)
    post_nms_topk_per_level: int = 200  # official nms_post=200
    proposals_per_image: int = 200  # official max_num=200
    nms_threshold: float = 0.7  # official nms_thr=0.7
    positive_iou: float = 0.7  # official train_cfg.rpn.assigner pos_iou_thr
    negative_iou: float = 0.3  # official neg_iou_thr
    min_positive_iou: float = 0.3  # official min_pos_iou
    anchors_per_image: int = 64  # official sampler num=64
    positive_fraction: float = 0.5  # official pos_fraction=0.5
    smooth_l1_beta: float = 1.0 / 9.0  # official smoothl1_beta=1/9


@dataclass(frozen=True)
class MaskTrackRoIConfig:
    """Box and mask heads (official ``SharedFCBBoxHead``, ``FCNMaskHead``, ``rcnn`` train/test cfg)."""

    roi_feat_size: int = 7  # official bbox_roi_extractor out_size=7 (also the track head's)
    mask_roi_feat_size: int = 14  # official mask_roi_extractor out_size=14
    sampling_ratio: int = 2  # official RoIAlign sample_num=2 (legacy variant, facts.md s.7.4)
    finest_scale: int = 56  # official SingleRoIExtractor finest_scale=56
    roi_strides: tuple[int, ...] = (4, 8, 16, 32)  # official featmap_strides (P2..P5)
    fc_out_channels: int = 1024  # official SharedFCBBoxHead fc_out_channels
    box_delta_stds: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)  # official target_stds
    mask_convs: int = 4  # official FCNMaskHead num_convs=4
    mask_channels: int = 256  # official conv_out_channels=256
    positive_iou: float = 0.5  # official train_cfg.rcnn.assigner pos_iou_thr
    negative_iou: float = 0.5  # official neg_iou_thr
    min_positive_iou: float = 0.5  # official min_pos_iou
    rois_per_image: int = 128  # official sampler num=128
    positive_fraction: float = 0.25  # official pos_fraction=0.25
    add_gt_as_proposals: bool = True  # official add_gt_as_proposals=True
    score_threshold: float = 0.05  # official test_cfg.rcnn.score_thr (strictly greater)
    nms_threshold: float = 0.5  # official per-class nms iou_thr=0.5
    detections_per_image: int = 10  # official max_per_img=10
    mask_threshold: float = 0.5  # official mask_thr_binary=0.5 (strictly greater)


@dataclass(frozen=True)
class MaskTrackTrackConfig:
    """Tracking head and association (official ``TrackHead`` config, facts.md s.2-3)."""

    num_fcs: int = 2  # official num_fcs=2
    fc_out_channels: int = 1024  # official fc_out_channels=1024 (embedding size)
    match_coeff: tuple[float, float, float] = (1.0, 2.0, 10.0)  # official match_coeff=[1.0, 2.0, 10]
    bbox_dummy_iou: float = 0.0  # official default bbox_dummy_iou=0
    skip_single_positive: bool = True  # official loss quirk (facts.md s.8.3)
    loss_weight: float = 1.0  # official: loss_match summed with weight 1


@dataclass(frozen=True)
class MaskTrackConfig:
    """MaskTrack R-CNN model configuration (defaults: the released YouTube-VIS 2019 model).

    Follows the method contract of `streamvis.models.build` (``method``, ``num_classes``,
    ``class_names``, ``category_ids``, ``test_short_side``, ``test_max_size``).

    Args:
        method: the method name the builder dispatches on.
        num_classes: **foreground** classes C (the method contract's count: detections carry the
            0-based labels 0..C-1). The classifier has C + 1 outputs; with `legacy_conventions`
            the background is output 0 (official ``num_classes=41`` = 40 classes + background).
        class_names: names of the C classes (None: unnamed, or filled from the training json).
        category_ids: results-json category id of each class (None: ``class + 1``, official).
        test_short_side, test_max_size: inference resize (official ``img_scale=(640, 360)``,
            keep ratio: ``sf = min(640 / long, 360 / short)``; `streamvis.engine.predict`).
        legacy_conventions: mmdet v0.5 conventions in the two-stage core (+1 pixel boxes, rounded
            anchors, RoIAlign with 2 samples per bin, truncating mask paste, per-level proposal
            NMS, background first; facts.md s.7). False: mmdet 2.x conventions.
    """

    method: Literal["masktrack"] = "masktrack"
    num_classes: int = 40  # official num_classes=41 counts the background (index 0) too
    class_names: tuple[str, ...] | None = YTVIS19_CLASS_NAMES
    category_ids: tuple[int, ...] | None = None  # official results2json: category_id = label + 1
    test_short_side: int = 360  # official test img_scale=(640, 360)
    test_max_size: int = 640
    legacy_conventions: bool = True
    input: MaskTrackInputConfig = field(default_factory=MaskTrackInputConfig)
    backbone: MaskTrackBackboneConfig = field(default_factory=MaskTrackBackboneConfig)
    rpn: MaskTrackRPNConfig = field(default_factory=MaskTrackRPNConfig)
    roi: MaskTrackRoIConfig = field(default_factory=MaskTrackRoIConfig)
    track: MaskTrackTrackConfig = field(default_factory=MaskTrackTrackConfig)

    def __post_init__(self):
        if self.num_classes < 1:
            raise ConfigError(f"config 'model.num_classes' (foreground classes, without the background) "
                              f"must be >= 1, got {self.num_classes}")
        if self.class_names is not None and len(self.class_names) == 0:
            object.__setattr__(self, "class_names", None)
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            off_by_one = len(self.class_names) == self.num_classes - 1
            hint = (" (model.num_classes counts the foreground classes only: the official 41 is 40 "
                    "classes + background, write 40)" if off_by_one else "")
            raise ConfigError(f"config 'model.class_names' lists {len(self.class_names)} classes but "
                              f"'model.num_classes' is {self.num_classes}; give {self.num_classes} names or "
                              f"none (null){hint}")
        if self.category_ids is not None and len(self.category_ids) != self.num_classes:
            raise ConfigError(f"config 'model.category_ids' lists {len(self.category_ids)} ids but "
                              f"'model.num_classes' is {self.num_classes}")
        if min(self.test_short_side, self.test_max_size) < 1:
            raise ConfigError("config 'model.test_short_side' and 'model.test_max_size' must be >= 1")

    @property
    def num_classifier_outputs(self) -> int:
        """Softmax outputs of the box head: the classes + background (official 41)."""
        return self.num_classes + 1

    def replace(self, **changes) -> MaskTrackConfig:
        """A copy with `changes` applied (the config is frozen)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class MaskTrackSchedule:
    """Official training schedule (``mmdet/apis/train.py``, config ``optimizer``/``lr_config``).

    One epoch visits every training frame with >= 1 valid GT once, each with one random reference
    frame of the same video (any other frame with GT; no temporal window).
    """

    base_lr: float = 0.005  # official optimizer lr=0.005
    momentum: float = 0.9
    weight_decay: float = 1e-4  # official: on all parameters
    clip_grad_norm: float = 35.0  # official grad_clip max_norm=35, norm_type=2
    warmup_iters: int = 500  # official warmup='linear', warmup_iters=500
    warmup_ratio: float = 1.0 / 3.0  # official warmup_ratio=1/3
    step_epochs: tuple[int, ...] = (8, 11)  # official lr_config step=[8, 11], x0.1
    gamma: float = 0.1
    max_epochs: int = 12  # official total_epochs=12
    images_per_batch: int = 8  # official imgs_per_gpu=8 on 1 GPU (tools/train.py default)

    def __post_init__(self):
        if self.max_epochs < 1 or self.images_per_batch < 1 or self.base_lr <= 0:
            raise ConfigError("schedule: need max_epochs >= 1, images_per_batch >= 1 and base_lr > 0")
        if list(self.step_epochs) != sorted(self.step_epochs):
            raise ConfigError(f"config 'schedule.step_epochs' must be increasing, "
                              f"got {list(self.step_epochs)}")

    def iterations(self, num_training_frames: int) -> tuple[int, tuple[int, ...]]:
        """(max_iter, lr steps in iterations) for a training set of `num_training_frames` frames."""
        per_epoch = -(-num_training_frames // self.images_per_batch)  # ceil: groups are padded
        return per_epoch * self.max_epochs, tuple(per_epoch * e for e in self.step_epochs)


def official_solver_values(num_training_frames: int, schedule: MaskTrackSchedule | None = None) -> dict:
    """``solver:`` values (`streamvis.config.SolverConfig`) of the official schedule for a training
    set of `num_training_frames` frames with >= 1 GT box (12 epochs of 8 frames, steps at 8 and 11).

    mmcv v0.2.8 linear warm-up ``lr * (1 - (1 - it / 500) * (1 - 1/3))`` is the trainer's
    ``warmup_factor`` 1/3 ramp; weight decay applies to every parameter (norm layers too).
    """
    schedule = schedule or MaskTrackSchedule()
    max_iter, steps = schedule.iterations(num_training_frames)
    return {"base_lr": schedule.base_lr, "momentum": schedule.momentum, "weight_decay": schedule.weight_decay,
            "weight_decay_norm": schedule.weight_decay, "steps": list(steps), "gamma": schedule.gamma,
            "warmup_iters": schedule.warmup_iters, "warmup_factor": schedule.warmup_ratio,
            "max_iter": max_iter, "ims_per_batch": schedule.images_per_batch,
            "clip_grad_norm": schedule.clip_grad_norm}
