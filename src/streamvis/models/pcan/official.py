"""Official PCAN checkpoint keys of the PCAN-specific parts, and a checked loader for each part.

Our modules keep the official state-dict names (reference/pcan/pcan_state_dict_keys.tsv), so a part
is the official keys under one prefix with the prefix removed:

- `FrameAttention`: the top-level buffers ``mu0`` .. ``mu4`` (prefix ``""``);
- `QuasiDenseEmbedHead`: ``roi_head.track_head.*``;
- `EMMatchHeadPlus`: ``roi_head.refine_head.*`` (parameters and the ``pos_mu``/``neg_mu`` buffers).

The converter of whole checkpoints (``streamvis convert --official``) composes these with the
two-stage core's parts.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from streamvis.errors import DataFormatError

# part name -> official key prefix
OFFICIAL_PREFIXES: dict[str, str] = {
    "frame_attention": "",
    "track_head": "roi_head.track_head.",
    "refine_head": "roi_head.refine_head.",
}


def part_state_dict(module: nn.Module, official: Mapping[str, torch.Tensor], prefix: str,
                    path=None) -> dict[str, torch.Tensor]:
    """The module's state dict taken from an official one (``prefix + our key``), checked.

    Args:
        module: the streamvis module (its state_dict names are the official ones without `prefix`).
        official: the official checkpoint's state dict.
        prefix: the official prefix of this part (see `OFFICIAL_PREFIXES`).
        path: the checkpoint file, for error messages.

    Raises:
        DataFormatError: a key is missing, an extra key sits under a non-empty `prefix`, or a shape
            differs; the message names the file and the official key.
    """
    expected = module.state_dict()
    missing = [prefix + key for key in expected if prefix + key not in official]
    if missing:
        raise DataFormatError(
            f"the official PCAN checkpoint lacks {len(missing)} key(s) of {type(module).__name__} "
            f"(first: {missing[0]!r}); is it a PCAN (EMQuasiDenseMaskRCNNRefine) checkpoint?",
            path=path, field=missing[0],
        )
    if prefix:
        unexpected = [k for k in official if k.startswith(prefix) and k[len(prefix):] not in expected]
        if unexpected:
            raise DataFormatError(
                f"unknown key under {prefix!r} for {type(module).__name__} (an unknown checkpoint layout)",
                path=path, field=unexpected[0],
            )
    state = {}
    for key, value in expected.items():
        tensor = torch.as_tensor(official[prefix + key])
        if tuple(tensor.shape) != tuple(value.shape):
            raise DataFormatError(
                f"shape {tuple(tensor.shape)} does not fit {type(module).__name__}'s {tuple(value.shape)}",
                path=path, field=prefix + key,
            )
        state[key] = tensor.detach().clone().to(value.dtype)
    return state


def load_official_part(module: nn.Module, official: Mapping[str, torch.Tensor], prefix: str,
                       path=None) -> nn.Module:
    """Load one part from an official state dict into `module` (strict, checked; in place)."""
    module.load_state_dict(part_state_dict(module, official, prefix, path), strict=True)
    return module
