"""Official CrossVIS checkpoints (hustvl/CrossVIS, detectron2 layout) -> our state dict and config.

Our module names follow the official ones closely, so the conversion is a prefix rename
(`OFFICIAL_PREFIXES`); depth, class and identity counts and layer widths are read off the shapes.
Writing the result is `streamvis.models.weights.save_weights`' job (`streamvis convert`).
"""

from __future__ import annotations

import torch

from streamvis.errors import DataFormatError
from streamvis.models.backbone import RESNET_SPECS
from streamvis.models.crossvis.condinst import SIZES_OF_INTEREST
from streamvis.models.crossvis.config import CrossVISConfig

# official key prefix -> ours (first match wins; order matters: longer prefixes first)
OFFICIAL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("backbone.bottom_up.", "backbone."),
    ("backbone.fpn_lateral", "fpn.lateral"),
    ("backbone.fpn_output", "fpn.output"),
    ("backbone.top_block.", "fpn."),
    ("proposal_generator.fcos_head.", "head."),
    ("controller.", "head.controller."),
    ("mask_branch.", "mask_branch."),
    ("cls.", "criterion.embedding.cls."),  # the identity proxies live in the criterion
)
# official buffers with no counterpart here (checked or ignored)
OFFICIAL_DROPPED = ("mask_head.sizes_of_interest", "mask_head._iter")
# keys any CrossVIS checkpoint must have; used to recognise one and to infer the config
REQUIRED_OFFICIAL_KEYS = (
    "backbone.bottom_up.stem.conv1.weight",
    "backbone.fpn_lateral3.weight",
    "proposal_generator.fcos_head.cls_logits.weight",
    "proposal_generator.fcos_head.cls_tower.0.weight",
    "proposal_generator.fcos_head.reid_pred.weight",
    "controller.weight",
    "mask_branch.refine.0.0.weight",
)


def rename_official_key(key: str) -> str | None:
    """Our name for an official state-dict key (None for buffers we do not keep)."""
    if key in OFFICIAL_DROPPED:
        return None
    for old, new in OFFICIAL_PREFIXES:
        if key.startswith(old):
            return new + key[len(old):]
    raise KeyError(key)


def official_state_dict(checkpoint, path=None) -> dict[str, torch.Tensor]:
    """The model state dict of an official checkpoint (a detectron2 dict with "model", or bare).

    Raises:
        DataFormatError: not a CrossVIS checkpoint; the message names the missing keys.
    """
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, dict):
        raise DataFormatError(f"expected a state dict, got {type(checkpoint).__name__}", path=path)
    missing = [k for k in REQUIRED_OFFICIAL_KEYS if k not in checkpoint]
    if missing:
        raise DataFormatError(
            f"not an official CrossVIS checkpoint: missing keys {missing} ({len(checkpoint)} keys present)",
            path=path)
    return {k: torch.as_tensor(v) for k, v in checkpoint.items()}


def infer_config(state: dict[str, torch.Tensor], path=None, **overrides) -> CrossVISConfig:
    """Read the architecture off an official state dict's shapes (depth, classes, identities, widths)."""
    bottleneck = "backbone.bottom_up.res2.0.conv3.weight" in state
    res4_blocks = len({k.split(".")[3] for k in state if k.startswith("backbone.bottom_up.res4.")})
    depths = [d for d, (kind, blocks) in RESNET_SPECS.items()
              if blocks[2] == res4_blocks and (kind == "bottleneck") == bottleneck]
    if not depths:
        raise DataFormatError(f"unsupported backbone: {res4_blocks} res4 blocks", path=path,
                              field="backbone.bottom_up.res4")
    head = "proposal_generator.fcos_head."
    tower_convs = [k for k in state if k.startswith(head + "cls_tower.") and state[k].dim() == 4]
    mask_tower = sorted(int(k.split(".")[2]) for k in state if k.startswith("mask_branch.tower."))
    values = dict(
        depth=depths[0],
        num_classes=int(state[head + "cls_logits.weight"].shape[0]),
        fpn_channels=int(state["backbone.fpn_lateral3.weight"].shape[0]),
        head_channels=int(state[head + "cls_tower.0.weight"].shape[0]),
        head_num_convs=len(tower_convs),
        mask_branch_channels=int(state["mask_branch.refine.0.0.weight"].shape[0]),
        mask_branch_num_convs=mask_tower[-1],
        mask_out_channels=int(state[f"mask_branch.tower.{mask_tower[-1]}.weight"].shape[0]),
        reid_dim=int(state[head + "reid_pred.weight"].shape[0]),
    )
    if "cls.weight" in state:
        values["num_identities"] = int(state["cls.weight"].shape[0])
    values.update(overrides)
    return CrossVISConfig(**values)


def convert_official(checkpoint, path=None, **config_overrides
                     ) -> tuple[dict[str, torch.Tensor], CrossVISConfig]:
    """Official checkpoint (loaded object) -> (our state dict, inferred `CrossVISConfig`).

    Raises:
        DataFormatError: not an official CrossVIS checkpoint, or one with unexpected keys/buffers.
    """
    state = official_state_dict(checkpoint, path)
    soi = state.get("mask_head.sizes_of_interest")
    if soi is not None and tuple(int(v) for v in soi.tolist()) != SIZES_OF_INTEREST:
        raise DataFormatError(f"sizes_of_interest {soi.tolist()} differs from {list(SIZES_OF_INTEREST)}",
                              path=path, field="mask_head.sizes_of_interest")
    converted = {}
    for key, value in state.items():
        try:
            new_key = rename_official_key(key)
        except KeyError:
            raise DataFormatError("unexpected key in a CrossVIS checkpoint", path=path, field=key) from None
        if new_key is not None:
            converted[new_key] = value.detach().clone()
    return converted, infer_config(state, path, **config_overrides)
