"""ImageNet backbone weights from local files: torchvision state dicts and detectron2 / Caffe2 MSRA pickles.

Nothing is downloaded: the user gives the path. Pickles are read with a numpy-only unpickler, so a
weights file never runs code.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import torch

from streamvis.errors import DataFormatError
from streamvis.models.backbone import ResNet

# torchvision ImageNet models take RGB/255 normalized by these; with the stem's input channels
# reversed (see `load_torchvision_resnet`) they take our BGR 0..255 input with these statistics
TORCHVISION_PIXEL_MEAN_BGR = (103.53, 116.28, 123.675)  # 255 * (0.406, 0.456, 0.485)
TORCHVISION_PIXEL_STD_BGR = (57.375, 57.12, 58.395)  # 255 * (0.225, 0.224, 0.229)



def _rename_torchvision(key: str) -> str | None:
    parts = key.split(".")
    if parts[0] == "fc" or parts[-1] == "num_batches_tracked":
        return None
    if parts[0] == "conv1":
        return "stem.conv1." + ".".join(parts[1:])
    if parts[0] == "bn1":
        return "stem.conv1.norm." + ".".join(parts[1:])
    if parts[0].startswith("layer") and len(parts) >= 4:
        stage = f"res{int(parts[0][5:]) + 1}.{parts[1]}"
        if parts[2] == "downsample":
            return f"{stage}.shortcut." + ("norm." if parts[3] == "1" else "") + parts[-1]
        if parts[2].startswith("bn"):
            return f"{stage}.conv{parts[2][2:]}.norm.{parts[-1]}"
        return f"{stage}.{parts[2]}.{parts[-1]}"
    raise KeyError(key)


def load_torchvision_resnet(path) -> dict[str, torch.Tensor]:
    """Read a torchvision ``resnet*.pth`` state dict and rename it to our backbone keys.

    The stem's input channels are reversed so that the network takes BGR input; use
    TORCHVISION_PIXEL_MEAN_BGR / _STD_BGR and, for ResNet-50/101, ``stride_in_1x1=False``.

    Returns:
        state dict for `ResNet.load_state_dict`.

    Raises:
        DataFormatError: unreadable (see `streamvis.models.weights.torch_load_safely`), or not a
            torchvision ResNet state dict.
    """
    from streamvis.models.weights import check_tensors, torch_load_safely

    state = torch_load_safely(path, what="torchvision ResNet state dict")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise DataFormatError("not a torchvision ResNet state dict (no 'conv1.weight')", path=path)
    check_tensors(state, path, prefix="state_dict")
    out = {}
    for key, value in state.items():
        try:
            new_key = _rename_torchvision(key)
        except (KeyError, ValueError):  # ValueError: a stage that is not a number ("layerX")
            raise DataFormatError("unexpected key in a torchvision ResNet state dict", path=path,
                                  field=key) from None
        if new_key is not None:
            out[new_key] = value
    out["stem.conv1.weight"] = out["stem.conv1.weight"].flip(1)  # RGB -> BGR input channels
    return out


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only; any other global is refused (never run code)."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load '{module}.{name}': only numpy arrays are allowed")


def read_numpy_pickle(path):
    """Unpickle a file that may only contain numpy arrays and plain containers (never runs code).

    Raises:
        DataFormatError: unreadable, or it names any other global (the message says which).
    """
    with open(path, "rb") as f:
        try:
            return _NumpyOnlyUnpickler(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
            raise DataFormatError(f"cannot read the pickle: {err}", path=path) from None


def _rename_caffe2(key: str) -> str | None:
    """detectron2's Caffe2 ResNet renaming: ``res2_0_branch2a_bn_s`` -> ``res2.0.conv1.norm.weight``."""
    if key.startswith("fc") or key.endswith("_momentum"):
        return None
    if key.startswith("backbone.bottom_up."):
        return key[len("backbone.bottom_up."):]
    if key.startswith(("stem.", "res2.", "res3.", "res4.", "res5.")):
        return key
    suffixes = {"_bn_s": ".norm.weight", "_bn_b": ".norm.bias", "_bn_rm": ".norm.running_mean",
                "_bn_riv": ".norm.running_var", "_w": ".weight", "_b": ".bias"}
    matches = [suffix for suffix in suffixes if key.endswith(suffix)]
    if not matches:
        raise KeyError(key)
    stem, new = key[: -len(matches[0])], suffixes[matches[0]]
    if stem in ("conv1", "res_conv1"):
        return "stem.conv1" + new
    stage, block, branch = stem.split("_", 2)
    branch = {"branch1": "shortcut", "branch2a": "conv1", "branch2b": "conv2", "branch2c": "conv3"}[branch]
    return f"{stage}.{block}.{branch}{new}"


def load_detectron2_resnet(path) -> dict[str, torch.Tensor]:
    """Read a detectron2 / Caffe2 MSRA ImageNet pickle (e.g. ``R-50.pkl``) as our backbone keys.

    The pickle may be ``{"model": {...}}``, ``{"blobs": {...}}`` or a flat name -> ndarray dict.
    FrozenBN statistics absent from the file are 0 (mean) and 1 (variance), as in detectron2.
    """
    data = read_numpy_pickle(path)
    for wrapper in ("model", "blobs"):
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
    if not isinstance(data, dict):
        raise DataFormatError(f"expected a dict of arrays, got {type(data).__name__}", path=path)
    out = {}
    for key, value in data.items():
        if not isinstance(value, np.ndarray):
            continue
        try:
            new_key = _rename_caffe2(key)
        except (KeyError, ValueError):
            raise DataFormatError("unexpected key in a detectron2 ResNet pickle", path=path,
                                  field=key) from None
        if new_key is not None:
            out[new_key] = torch.from_numpy(np.ascontiguousarray(value))
    for key in [k for k in out if k.endswith(".norm.weight")]:
        prefix = key[: -len("weight")]
        out.setdefault(prefix + "running_mean", torch.zeros_like(out[key]))
        out.setdefault(prefix + "running_var", torch.ones_like(out[key]))
    return out


def _skip_batchnorm_for_groupnorm(backbone: ResNet, state: dict[str, torch.Tensor], path) -> dict:
    """For a GN backbone given BatchNorm weights: the state without its norm tensors (with a warning)."""
    if backbone.norm != "GN" or not any(k.endswith(".norm.running_mean") for k in state):
        return state
    skipped = [k for k in state if ".norm." in k]
    warnings.warn(f"{path or 'ImageNet weights'}: the backbone uses GroupNorm, so only the conv weights "
                  f"were loaded; the {len(skipped)} BatchNorm tensors (e.g. {skipped[0]}) were skipped "
                  "and the GroupNorm layers keep their init (weight 1, bias 0)", stacklevel=3)
    return {k: v for k, v in state.items() if ".norm." not in k}


def load_backbone_weights(backbone: ResNet, state: dict[str, torch.Tensor], path=None) -> None:
    """Load renamed ImageNet weights; a missing/unexpected key or a wrong shape is a DataFormatError.

    A BN backbone takes the FrozenBN statistics (its ``num_batches_tracked`` counters stay as they are).
    A GN backbone given BatchNorm weights (any ``.norm.running_mean``) loads the conv weights only and
    warns that the norm tensors were skipped: BatchNorm affine parameters do not carry over to GroupNorm.
    """
    state = _skip_batchnorm_for_groupnorm(backbone, state, path)
    expected = backbone.state_dict()
    optional = {k for k in expected if k.endswith(".num_batches_tracked")}
    if backbone.norm == "GN" and not any(".norm." in k for k in state):
        optional |= {k for k in expected if ".norm." in k}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise DataFormatError(f"ImageNet weights do not fit ResNet-{backbone.depth} ({backbone.norm}): "
                              f"missing {missing[:8]}, unexpected {unexpected[:8]}", path=path)
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise DataFormatError(f"shape {tuple(value.shape)} != {tuple(expected[key].shape)}", path=path,
                                  field=key)
    backbone.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=False)


def load_imagenet_backbone(backbone: ResNet, path) -> None:
    """Load ImageNet weights from a detectron2 ``.pkl`` or a torchvision ``.pth`` file into `backbone`."""
    reader = load_detectron2_resnet if str(path).endswith(".pkl") else load_torchvision_resnet
    load_backbone_weights(backbone, reader(path), path)
