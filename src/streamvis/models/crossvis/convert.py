"""Official CrossVIS checkpoints -> streamvis weights files, and streamvis weights -> models.

Our module names follow the official ones closely, so the conversion is a prefix rename
(`OFFICIAL_PREFIXES`); depth, class and identity counts and layer widths are read off the shapes.
A streamvis weights file is a plain dict ``{"model": state_dict, "config": ModelConfig as a dict,
"meta": {...}}`` read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from streamvis.config import from_dict, to_dict
from streamvis.errors import DataFormatError
from streamvis.models.backbone import RESNET_SPECS
from streamvis.models.build import ModelConfig, build_model
from streamvis.models.condinst import SIZES_OF_INTEREST
from streamvis.models.crossvis import CrossVIS

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
FORMAT_NAME = "streamvis-weights-v1"


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


def infer_config(state: dict[str, torch.Tensor], path=None, **overrides) -> ModelConfig:
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
    return ModelConfig(**values)


def convert_official(checkpoint, path=None, **config_overrides
                     ) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """Official checkpoint (loaded object) -> (our state dict, inferred ModelConfig)."""
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


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], path=None,
                     optional_prefixes: tuple[str, ...] = ("criterion.",)) -> None:
    """Raise DataFormatError naming missing/unexpected keys or wrong shapes (keys under
    `optional_prefixes` may be absent)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.startswith(optional_prefixes)]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise DataFormatError(f"weights do not fit the model: missing {missing[:10]}"
                              f"{' ...' if len(missing) > 10 else ''}, unexpected {unexpected[:10]}",
                              path=path)
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise DataFormatError(f"shape {tuple(value.shape)} does not fit the model's "
                                  f"{tuple(expected[key].shape)}", path=path, field=key)


def weights_file(model_state: dict[str, torch.Tensor], cfg: ModelConfig, **meta) -> dict:
    """The dict stored in a streamvis weights file."""
    return {"model": model_state, "config": to_dict(cfg), "meta": {"format": FORMAT_NAME, **meta}}


def load_model(weights_path, device="cpu") -> CrossVIS:
    """Build the model stored in a streamvis weights file (its config is inside), in eval mode.

    Raises:
        DataFormatError: the file is not a streamvis weights file or its weights do not fit.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise DataFormatError("no such weights file", path=path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (any unpickling failure is a format error for the user)
        raise DataFormatError(f"cannot read weights file: {err}", path=path) from None
    if not isinstance(data, dict) or "model" not in data or "config" not in data:
        hint = ""
        if isinstance(data, dict):
            hint = " (an official checkpoint? convert it with `streamvis convert`)"
        raise DataFormatError(f"not a streamvis weights file: needs 'model' and 'config'{hint}", path=path)
    cfg = from_dict(ModelConfig, data["config"], prefix="config")
    model = build_model(cfg)
    check_state_dict(model, data["model"], path)
    model.load_state_dict(data["model"], strict=False)
    return model.to(device).eval()
