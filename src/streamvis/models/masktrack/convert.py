"""Official MaskTrack R-CNN checkpoints: reading, checking against a config, the tracking head's part.

An official checkpoint is an mmcv v0.2 file ``{"meta": ..., "state_dict": ..., "optimizer": ...}``
(or a bare state dict) whose keys start with the module names of the official detector
(`OFFICIAL_MODULE_PREFIXES`, facts.md s.1). `check_official_state` recognises one, refuses a
checkpoint of another method or layout and one whose class count or head widths do not match a
`MaskTrackConfig`, with an error naming the file and the key. `track_head_state` gives the
tracking head's tensors under `TrackHead`'s names (they are the official ones). The rename of the
backbone, FPN, RPN, box and mask heads belongs to the two-stage core's converter.
"""

from __future__ import annotations

import torch

from streamvis.errors import DataFormatError
from streamvis.models.masktrack.config import MaskTrackConfig

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
    classes = config.num_classes
    width = config.roi.fc_out_channels
    _expect_shape(state, "bbox_head.fc_cls.weight", (classes, width), "num_classes incl. background", path)
    _expect_shape(state, "bbox_head.fc_reg.weight", (4 * classes, width), "4 x num_classes", path)
    logits = state["mask_head.conv_logits.weight"]
    _expect_shape(state, "mask_head.conv_logits.weight", (classes, *logits.shape[1:]), "num_classes", path)
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
