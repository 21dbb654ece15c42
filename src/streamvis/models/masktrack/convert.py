"""Official MaskTrack R-CNN checkpoints: reading, checking against a config, the tracking head's part.

An official checkpoint is an mmcv v0.2 file ``{"meta": ..., "state_dict": ..., "optimizer": ...}``
(or a bare state dict) whose keys start with the module names of the official detector
(`OFFICIAL_MODULE_PREFIXES`, facts.md s.1). `check_official_state` recognises one, refuses a
checkpoint of another method or layout and one whose class count or head widths do not match a
`MaskTrackConfig`, with an error naming the file and the key. `convert_official` (``streamvis
convert --official``, `streamvis.models.build.METHODS`) reads the architecture off the shapes
(`infer_config`) and renames the keys to the model's (`rename_official_key`: the box and mask
heads move under ``roi_head.``; backbone, FPN, RPN and tracking-head names are the official ones).
"""

from __future__ import annotations

import torch

from streamvis.errors import ConfigError, DataFormatError
from streamvis.models.backbone import RESNET_SPECS
from streamvis.models.masktrack.config import YTVIS19_CLASS_NAMES, MaskTrackConfig

# official module prefixes (youtubevos/MaskTrackRCNN, MaskRCNN / TwoStageDetector attributes)
OFFICIAL_MODULE_PREFIXES = ("backbone.", "neck.", "rpn_head.", "bbox_head.", "track_head.", "mask_head.")
# keys every official MaskTrack R-CNN checkpoint has; the first one distinguishes it from Mask R-CNN
REQUIRED_OFFICIAL_KEYS = (
    "track_head.fcs.0.weight",
    "bbox_head.fc_cls.weight",
    "bbox_head.fc_reg.weight",
    "mask_head.conv_logits.weight",
    "rpn_head.rpn_cls.weight",
    "neck.lateral_convs.0.conv.weight",
)
# official prefix -> the model's (models/masktrack/model.py); keys under other prefixes keep their name
RENAMED_PREFIXES = (("bbox_head.", "roi_head.bbox_head."), ("mask_head.", "roi_head.mask_head."))
# a key that marks a checkpoint of another method, and that method's name
OTHER_METHOD_MARKERS = (("proposal_generator.fcos_head.", "CrossVIS (detectron2/AdelaiDet)"),
                        ("roi_head.", "mmdetection 2.x (e.g. PCAN / QDTrack)"))


def official_state_dict(checkpoint, path=None) -> dict[str, torch.Tensor]:
    """The model state dict of an official checkpoint (mmcv ``{"state_dict": ...}`` or bare).

    Args:
        checkpoint: what ``torch.load`` returned.
        path: the file, for error messages.

    Returns:
        Key -> tensor, with a ``module.`` prefix (DataParallel) removed.

    Raises:
        DataFormatError: the object is not a state dict of tensors.
    """
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state, dict) or not state:
        raise DataFormatError(f"expected an mmcv checkpoint with a 'state_dict' or a state dict, got "
                              f"{type(checkpoint).__name__}", path=path)
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise DataFormatError("a state-dict entry is not a tensor", path=path, field=str(key))
        out[key[len("module."):] if key.startswith("module.") else key] = value
    return out


def _expect_shape(state, key: str, shape: tuple[int, ...], what: str, path) -> None:
    got = tuple(state[key].shape)
    if got != shape:
        raise DataFormatError(f"shape {got} does not match the config ({what}: expected {shape})",
                              path=path, field=key)


def check_official_state(state: dict[str, torch.Tensor], config: MaskTrackConfig, path=None) -> None:
    """Refuse a state dict that is not an official MaskTrack R-CNN checkpoint fitting `config`.

    Checks: the method (tracking-head and two-stage keys present, no other method's keys), every
    key under an official module, the class count (``fc_cls`` rows, ``fc_reg`` rows = 4 x classes,
    ``conv_logits`` channels, background included) and the tracking head's widths.

    Raises:
        DataFormatError: naming `path` and the offending key.
    """
    for marker, method in OTHER_METHOD_MARKERS:
        hit = next((k for k in state if k.startswith(marker)), None)
        if hit is not None:
            raise DataFormatError(f"this is a {method} checkpoint, not an official MaskTrack R-CNN one",
                                  path=path, field=hit)
    for key in REQUIRED_OFFICIAL_KEYS:
        if key not in state:
            kind = "a Mask R-CNN checkpoint without a tracking head" if key.startswith("track_head") \
                else "not an official MaskTrack R-CNN (mmdet v0.5) checkpoint"
            raise DataFormatError(f"missing key: {kind}", path=path, field=key)
    stray = next((k for k in state if not k.startswith(OFFICIAL_MODULE_PREFIXES)), None)
    if stray is not None:
        raise DataFormatError(f"unexpected key (official modules are {', '.join(OFFICIAL_MODULE_PREFIXES)})",
                              path=path, field=stray)
    classes = config.num_classifier_outputs  # official: background first, class c at c + 1
    width = config.roi.fc_out_channels
    _expect_shape(state, "bbox_head.fc_cls.weight", (classes, width),
                  "model.num_classes + 1 rows, background included", path)
    _expect_shape(state, "bbox_head.fc_reg.weight", (4 * classes, width), "4 x (model.num_classes + 1)", path)
    logits = state["mask_head.conv_logits.weight"]
    _expect_shape(state, "mask_head.conv_logits.weight", (classes, *logits.shape[1:]),
                  "model.num_classes + 1 channels", path)
    track = config.track
    channels = state["neck.lateral_convs.0.conv.weight"].shape[0]
    in_features = channels * config.roi.roi_feat_size ** 2
    _expect_shape(state, "track_head.fcs.0.weight", (track.fc_out_channels, in_features),
                  "track.fc_out_channels x FPN channels * roi_feat_size^2", path)
    for index in range(1, track.num_fcs):
        key = f"track_head.fcs.{index}.weight"
        if key not in state:
            raise DataFormatError(f"missing key: the config has track.num_fcs={track.num_fcs}", path=path,
                                  field=key)
        _expect_shape(state, key, (track.fc_out_channels, track.fc_out_channels),
                      "track.fc_out_channels", path)
    extra = f"track_head.fcs.{track.num_fcs}.weight"
    if extra in state:
        raise DataFormatError(f"the checkpoint has more than track.num_fcs={track.num_fcs} fc layers",
                              path=path, field=extra)


def track_head_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tracking head's tensors under `TrackHead`'s names (``fcs.{i}.weight`` / ``.bias``)."""
    prefix = "track_head."
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def rename_official_key(key: str) -> str:
    """The model's name of an official state-dict key (`RENAMED_PREFIXES`; others unchanged)."""
    for old, new in RENAMED_PREFIXES:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def official_key(key: str) -> str:
    """The official name of a model state-dict key (inverse of `rename_official_key`)."""
    for old, new in RENAMED_PREFIXES:
        if key.startswith(new):
            return old + key[len(new):]
    return key


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    """Number of distinct ``prefix{i}.`` indices among the keys."""
    return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})


def infer_config(state: dict[str, torch.Tensor], path=None, **overrides) -> MaskTrackConfig:
    """The `MaskTrackConfig` of an official state dict: depth, classes and widths from the shapes,
    everything else the official defaults.

    Raises:
        DataFormatError: an unsupported backbone, or `overrides` (e.g. ``class_names``) that do not
            fit the checkpoint (naming the key that fixes the class count).
    """
    bottleneck = "backbone.layer1.0.conv3.weight" in state
    layer3 = _count(state, "backbone.layer3.")
    depths = [d for d, (kind, blocks) in RESNET_SPECS.items()
              if blocks[2] == layer3 and (kind == "bottleneck") == bottleneck]
    if not depths:
        raise DataFormatError(f"unsupported backbone: {layer3} layer3 blocks", path=path,
                              field="backbone.layer3")
    classes = int(state["bbox_head.fc_cls.weight"].shape[0]) - 1  # official: background first
    mask_convs = _count(state, "mask_head.convs.")
    values = dict(
        num_classes=classes,
        class_names=YTVIS19_CLASS_NAMES if classes == len(YTVIS19_CLASS_NAMES) else None,
        backbone=dict(depth=depths[0], fpn_channels=int(state["neck.lateral_convs.0.conv.weight"].shape[0]),
                      fpn_levels=(2, 3, 4, 5, 6)),
        roi=dict(fc_out_channels=int(state["bbox_head.fc_cls.weight"].shape[1]), mask_convs=mask_convs,
                 mask_channels=int(state["mask_head.convs.0.conv.weight"].shape[0]) if mask_convs else 256),
        track=dict(num_fcs=_count(state, "track_head.fcs."),
                   fc_out_channels=int(state["track_head.fcs.0.weight"].shape[0])),
    )
    values.update(overrides)
    from streamvis.config import from_dict

    try:
        return from_dict(MaskTrackConfig, values, prefix="model")
    except ConfigError as err:
        raise DataFormatError(f"the checkpoint has {classes} classes ({classes + 1} rows with the background "
                              f"first) and does not fit the given options: {err}", path=path,
                              field="bbox_head.fc_cls.weight") from None


def convert_official(checkpoint, path=None, **config_overrides
                     ) -> tuple[dict[str, torch.Tensor], MaskTrackConfig]:
    """Official MaskTrack R-CNN checkpoint (loaded object) -> (the model's state dict, its config).

    Args:
        checkpoint: what ``torch.load`` returned (mmcv ``{"state_dict": ...}`` or a bare state dict).
        path: the file, for error messages.
        **config_overrides: `MaskTrackConfig` fields, e.g. ``class_names``.

    Raises:
        DataFormatError: not a MaskTrack R-CNN checkpoint (another method or layout), a class count
            or width that does not fit, or keys the model does not have; naming `path` and the key.
    """
    from streamvis.models.masktrack.model import build_masktrack

    state = official_state_dict(checkpoint, path)
    for marker, method in OTHER_METHOD_MARKERS:  # before anything reads a MaskTrack key
        hit = next((k for k in state if k.startswith(marker)), None)
        if hit is not None:
            raise DataFormatError(f"this is a {method} checkpoint, not an official MaskTrack R-CNN one",
                                  path=path, field=hit)
    missing = next((k for k in REQUIRED_OFFICIAL_KEYS if k not in state), None)
    if missing is not None:
        check_official_state(state, MaskTrackConfig(), path)  # raises the specific message
    config = infer_config(state, path, **config_overrides)
    check_official_state(state, config, path)
    converted = {rename_official_key(k): v.detach().clone() for k, v in state.items()}
    expected = build_masktrack(config).state_dict()
    for key, value in expected.items():  # torch < 0.4.1 BatchNorm had no num_batches_tracked
        if key.endswith("num_batches_tracked") and key not in converted:
            converted[key] = torch.zeros_like(value)
    unknown = next((k for k in state if rename_official_key(k) not in expected), None)
    if unknown is not None:
        raise DataFormatError("this key has no counterpart in MaskTrack R-CNN with the inferred config "
                              f"(depth {config.backbone.depth}, {config.num_classes} classes)", path=path,
                              field=unknown)
    for key, value in expected.items():
        if key not in converted:
            raise DataFormatError("missing key: the checkpoint lacks a tensor of the model", path=path,
                                  field=official_key(key))
        if tuple(converted[key].shape) != tuple(value.shape):
            raise DataFormatError(f"shape {tuple(converted[key].shape)} does not fit the model's "
                                  f"{tuple(value.shape)}", path=path, field=official_key(key))
    return converted, config
