"""Official PCAN checkpoint (mmdet 2.x ``EMQuasiDenseMaskRCNNRefine``) -> streamvis weights.

The official state dict (397 entries for the released R-50 model; reference/pcan/pcan_state_dict_keys.tsv)
maps one-to-one onto `streamvis.models.pcan.model.PCAN`: every key keeps its name except the frame-level
prototype buffers ``mu0..mu4``, which live under ``frame_attention.`` here. The architecture (depth,
classes, widths) is read from the tensor shapes. ``streamvis convert --official ckpt.pth --out w.pth``
calls `convert_official` through `streamvis.models.build.METHODS`.

Bad input raises `streamvis.errors.DataFormatError` naming the file and the key: a checkpoint that is
not PCAN's (no refine head / frame prototypes), a missing key, an unknown key, a shape that does not fit.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from streamvis.errors import DataFormatError
from streamvis.models.pcan.config import BDD100K_CLASSES, PCANConfig

FRAME_BUFFERS = tuple(f"mu{i}" for i in range(5))  # official top-level buffers of the frame-level PCAM
# keys whose presence identifies a PCAN checkpoint
SIGNATURE_KEYS = ("mu0", "roi_head.refine_head.conv_logits.weight", "roi_head.track_head.fc_embed.weight")
# mmdet ResNet blocks in layer3 -> depth
LAYER3_BLOCKS = {("basic", 2): 18, ("basic", 6): 34, ("bottleneck", 6): 50, ("bottleneck", 23): 101}


def official_state_dict(checkpoint, path=None) -> dict[str, torch.Tensor]:
    """The tensors of an mmcv checkpoint (``{"state_dict": ...}``) or of a bare state dict."""
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping):
        raise DataFormatError("an official PCAN checkpoint is a dict of tensors, got "
                              f"{type(checkpoint).__name__}", path=path)
    state = {}
    for key, value in checkpoint.items():
        name = str(key)
        if name.startswith("module."):  # saved from a (Distributed)DataParallel wrapper
            name = name[len("module."):]
        if not isinstance(value, torch.Tensor):
            raise DataFormatError(f"entry is a {type(value).__name__}, not a tensor", path=path, field=name)
        state[name] = value
    return state


def to_streamvis_key(key: str) -> str:
    """Official state-dict key -> streamvis key (only ``mu{i}`` move, under ``frame_attention.``)."""
    return f"frame_attention.{key}" if key in FRAME_BUFFERS else key


def infer_config(state: Mapping[str, torch.Tensor], path=None, **overrides) -> PCANConfig:
    """The `PCANConfig` whose model has the shapes of `state` (official key names)."""
    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise DataFormatError("the official PCAN checkpoint lacks this key", path=path, field=key)
        return tuple(state[key].shape)

    block = "bottleneck" if "backbone.layer1.0.conv3.weight" in state else "basic"
    blocks = len({k.split(".")[2] for k in state if k.startswith("backbone.layer3.")})
    depth = LAYER3_BLOCKS.get((block, blocks))
    if depth is None:
        raise DataFormatError(f"unknown backbone layout: {blocks} {block} blocks in layer3 "
                              "(ResNet 18/34/50/101 expected)", path=path, field="backbone.layer3")
    num_classes = shape("roi_head.bbox_head.fc_cls.weight")[0] - 1
    settings = dict(
        depth=depth, num_classes=num_classes,
        class_names=BDD100K_CLASSES if num_classes == len(BDD100K_CLASSES) else None,
        fpn_channels=shape("neck.fpn_convs.0.conv.weight")[0],
        fc_channels=shape("roi_head.bbox_head.shared_fcs.0.weight")[0],
        embed_channels=shape("roi_head.track_head.fc_embed.weight")[0],
        mask_conv_channels=shape("roi_head.mask_head.convs.0.conv.weight")[0],
    )
    settings.update(overrides)
    return PCANConfig(**settings)


def convert_official(checkpoint, path=None, **overrides) -> tuple[dict[str, torch.Tensor], PCANConfig]:
    """(streamvis state dict, `PCANConfig`) of an official PCAN checkpoint.

    Args:
        checkpoint: the loaded checkpoint (mmcv ``{"state_dict", "meta"}`` or a bare state dict).
        path: the file, for error messages.
        overrides: config fields to set (e.g. ``class_names``).

    Raises:
        DataFormatError: not a PCAN checkpoint, a missing / unknown key or a wrong shape (naming the
            file and the key).
    """
    from streamvis.models.pcan.model import PCAN
    from streamvis.models.weights import is_streamvis_file

    if is_streamvis_file(checkpoint):
        raise DataFormatError(f"this is already a streamvis weights file (method "
                              f"{checkpoint.get('method', 'crossvis')!r}), not an official checkpoint: "
                              "use it directly (e.g. streamvis predict --weights)", path=path, field="format")
    state = official_state_dict(checkpoint, path)
    absent = [key for key in SIGNATURE_KEYS if key not in state]
    if absent:
        raise DataFormatError(
            f"not an official PCAN (EMQuasiDenseMaskRCNNRefine) checkpoint: it has no {absent[0]!r} "
            "(the frame prototypes mu0..mu4 and roi_head.refine_head / track_head identify one)",
            path=path, field=absent[0])
    config = infer_config(state, path, **overrides)
    expected = PCAN(config).state_dict()
    official_names = {to_streamvis_key(k): k for k in state}
    unknown = [k for k in state if to_streamvis_key(k) not in expected]
    if unknown:
        raise DataFormatError(f"unknown key for a PCAN checkpoint ({len(unknown)} in all; an unknown layout)",
                              path=path, field=unknown[0])
    converted = {}
    for key, value in expected.items():
        if key not in official_names:
            official = next((name for name, ours in ((k, to_streamvis_key(k)) for k in FRAME_BUFFERS)
                             if ours == key), key)
            raise DataFormatError("the official PCAN checkpoint lacks this key", path=path, field=official)
        tensor = state[official_names[key]]
        if tuple(tensor.shape) != tuple(value.shape):
            raise DataFormatError(f"shape {tuple(tensor.shape)} does not fit the model's "
                                  f"{tuple(value.shape)}", path=path, field=official_names[key])
        converted[key] = tensor.detach().clone().to(value.dtype)
    return converted, config
