"""ResNet-18/34/50/101 in detectron2's MSRA layout, with a norm after every conv.

The norm is FrozenBatchNorm (official, for ImageNet-initialised training), BatchNorm or GroupNorm
(for training from scratch, where FrozenBN is the identity), under the same module names. Names
follow detectron2 (``stem.conv1``, ``res2.0.conv1``, ``res2.0.conv1.norm``, ``res2.0.shortcut``) so
that official and ImageNet checkpoints map onto it by renaming prefixes (see models/convert.py).
Reference facts.md, section 2.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamvis.errors import DataFormatError

NORMS = ("FrozenBN", "BN", "GN")  # official: detectron2 get_norm names
GROUP_NORM_GROUPS = 32  # official: detectron2 "GN" is GroupNorm(32, C)

# official: detectron2 stage depths; (block type, blocks per stage res2..res5)
RESNET_SPECS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters (all buffers, never trained).

    y = x * scale + shift, scale = weight / sqrt(running_var + eps), shift = bias - running_mean * scale.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps  # official: detectron2 FrozenBatchNorm2d eps 1e-5
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=self.eps)

    def scale_and_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The equivalent per-channel affine map: (scale (C,), shift (C,))."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
        """A FrozenBN with `bn`'s current affine parameters and running statistics."""
        frozen = cls(bn.num_features, eps=bn.eps).to(bn.running_mean.device)
        with torch.no_grad():
            for name in _NORM_FIELDS:
                getattr(frozen, name).copy_(getattr(bn, name))
        return frozen


def make_norm(norm: str, channels: int) -> nn.Module:
    """The norm layer named `norm` (one of `NORMS`) for `channels` channels."""
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if norm == "BN":
        return nn.BatchNorm2d(channels)  # official: torch defaults (eps 1e-5, momentum 0.1)
    if norm == "GN":
        return nn.GroupNorm(GROUP_NORM_GROUPS, channels)
    raise ValueError(f"unknown norm {norm!r}; choose one of {list(NORMS)}")


class ConvNorm(nn.Conv2d):
    """A bias-free conv followed by its norm (detectron2 ``Conv2d(norm=...)``); norm: see `make_norm`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, *, norm: str = "FrozenBN"):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.norm = make_norm(norm, out_channels)
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")  # detectron2 c2_msra_fill

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(super().forward(x))


class BasicStem(nn.Module):
    """conv 7x7/2 (3->64) + norm + ReLU + max-pool 3x3/2: stride 4."""

    def __init__(self, out_channels: int = 64, *, norm: str = "FrozenBN"):
        super().__init__()
        self.conv1 = ConvNorm(3, out_channels, kernel_size=7, stride=2, padding=3, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.conv1(x)), kernel_size=3, stride=2, padding=1)


class ChannelsLastStem(nn.Module):
    """Inference-only stem: same function as `BasicStem`, with the 7x7 conv and the max-pool in
    channels_last memory format (several times faster on CPU for these 3- and 64-channel maps).

    Args:
        stem: a `BasicStem`, its norm folded into a plain `nn.Conv2d` where it can be (see
            `fold_frozen_batchnorm`; a GroupNorm stem keeps its `ConvNorm`).
    """

    def __init__(self, stem: BasicStem):
        super().__init__()
        self.conv1 = stem.conv1.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x.contiguous(memory_format=torch.channels_last)))
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1).contiguous()


class BottleneckBlock(nn.Module):
    """1x1 -> 3x3 -> 1x1 with a projection shortcut when the channel count changes.

    Args:
        stride_in_1x1: official MSRA weights put the stride in the first 1x1 conv (True);
            torchvision weights put it in the 3x3 conv (False).
        norm: see `make_norm`.
    """

    def __init__(self, in_channels: int, out_channels: int, *, bottleneck_channels: int, stride: int,
                 stride_in_1x1: bool = True, norm: str = "FrozenBN"):
        super().__init__()
        self.shortcut = None
        if in_channels != out_channels:
            self.shortcut = ConvNorm(in_channels, out_channels, kernel_size=1, stride=stride, norm=norm)
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = ConvNorm(in_channels, bottleneck_channels, kernel_size=1, stride=stride_1x1, norm=norm)
        self.conv2 = ConvNorm(bottleneck_channels, bottleneck_channels, kernel_size=3, stride=stride_3x3,
                              padding=1, norm=norm)
        self.conv3 = ConvNorm(bottleneck_channels, out_channels, kernel_size=1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        out = self.conv3(out)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + shortcut)


class BasicBlock(nn.Module):
    """3x3 -> 3x3 (ResNet-18/34) with a projection shortcut when the channel count changes."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, norm: str = "FrozenBN"):
        super().__init__()
        self.shortcut = None
        if in_channels != out_channels:
            self.shortcut = ConvNorm(in_channels, out_channels, kernel_size=1, stride=stride, norm=norm)
        self.conv1 = ConvNorm(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, norm=norm)
        self.conv2 = ConvNorm(out_channels, out_channels, kernel_size=3, padding=1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + shortcut)


class ResNet(nn.Module):
    """ResNet bottom-up network returning res3, res4, res5 (strides 8, 16, 32).

    Args:
        depth: 18, 34, 50 or 101.
        freeze_at: 0 trains everything; 1 freezes the stem; 2 freezes stem + res2 (official), ...
        stride_in_1x1: see `BottleneckBlock` (ignored for basic blocks).
        norm: the norm after every conv: "FrozenBN" (official; from random init it is the identity),
            "BN" (trainable BatchNorm2d) or "GN" (GroupNorm(32, C)). Frozen stages get FrozenBN in
            place of BN (see `freeze`).
    """

    def __init__(self, *, depth: int, freeze_at: int = 2, stride_in_1x1: bool = True, norm: str = "FrozenBN"):
        super().__init__()
        if depth not in RESNET_SPECS:
            raise ValueError(f"unsupported ResNet depth {depth}; choose one of {sorted(RESNET_SPECS)}")
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose one of {list(NORMS)}")
        block_type, num_blocks = RESNET_SPECS[depth]
        self.depth = depth
        self.norm = norm
        self.stem = BasicStem(64, norm=norm)
        in_channels = 64
        out_channels = 256 if block_type == "bottleneck" else 64  # official: RES2_OUT_CHANNELS
        self.stage_names = ("res2", "res3", "res4", "res5")
        self.out_channels: list[int] = []
        for index, (name, count) in enumerate(zip(self.stage_names, num_blocks)):
            blocks = []
            for block_index in range(count):
                stride = 2 if (block_index == 0 and index > 0) else 1
                if block_type == "bottleneck":
                    block = BottleneckBlock(in_channels, out_channels, bottleneck_channels=out_channels // 4,
                                            stride=stride, stride_in_1x1=stride_in_1x1, norm=norm)
                else:
                    block = BasicBlock(in_channels, out_channels, stride=stride, norm=norm)
                blocks.append(block)
                in_channels = out_channels
            self.add_module(name, nn.Sequential(*blocks))
            self.out_channels.append(out_channels)
            out_channels *= 2
        self.out_channels = self.out_channels[1:]  # res3, res4, res5
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int) -> None:
        """Stop gradients to the stem (freeze_at >= 1) and to res2..res{freeze_at} (official FREEZE_AT).

        BatchNorm layers there become FrozenBatchNorm2d (official: detectron2 convert_frozen_batchnorm),
        so their statistics stay fixed in train mode too; GroupNorm has no statistics to freeze.
        """
        modules = [self.stem, self.res2, self.res3, self.res4, self.res5][: max(freeze_at, 0)]
        for module in modules:
            module.requires_grad_(False)
            _freeze_batchnorm(module)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Args: images (N, 3, H, W). Returns [res3 (N, C3, H/8, W/8), res4 (H/16), res5 (H/32)]."""
        x = self.res2(self.stem(images))
        c3 = self.res3(x)
        c4 = self.res4(c3)
        return [c3, c4, self.res5(c4)]


def _freeze_batchnorm(module: nn.Module) -> None:
    """Replace (in place) every nn.BatchNorm2d under `module` by an equal FrozenBatchNorm2d."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d.from_batchnorm(child))
        else:
            _freeze_batchnorm(child)


def _norm_scale_and_shift(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A norm's per-channel affine map (scale (C,), shift (C,)), or None when it has none
    (GroupNorm, or BatchNorm in train mode, which normalizes with the batch statistics)."""
    if isinstance(norm, FrozenBatchNorm2d):
        return norm.scale_and_shift()
    if isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.track_running_stats:
        scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
        return scale, norm.bias - norm.running_mean * scale
    return None


def fold_frozen_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every `ConvNorm` under `module` (in place) whose norm is a FrozenBN (or an eval-mode
    BatchNorm2d) by a plain conv with the norm folded in; GroupNorm `ConvNorm`s are left as they are.

    An inference speed-up: the outputs equal the unfolded ones up to float rounding.
    Returns `module`.
    """
    for name, child in module.named_children():
        affine = _norm_scale_and_shift(child.norm) if isinstance(child, ConvNorm) else None
        if affine is not None:
            scale, shift = affine
            conv = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, stride=child.stride,
                             padding=child.padding, bias=True).to(child.weight.device)
            with torch.no_grad():
                conv.weight.copy_(child.weight * scale.view(-1, 1, 1, 1))
                conv.bias.copy_(shift)
            conv.requires_grad_(False)
            setattr(module, name, conv)
        else:
            fold_frozen_batchnorm(child)
    return module


# ------------------------------------------------------------------------------------------------
# ImageNet weights: torchvision state dicts and detectron2 / Caffe2 MSRA pickles
# ------------------------------------------------------------------------------------------------

# torchvision ImageNet models take RGB/255 normalized by these; with the stem's input channels
# reversed (see `load_torchvision_resnet`) they take our BGR 0..255 input with these statistics
TORCHVISION_PIXEL_MEAN_BGR = (103.53, 116.28, 123.675)  # 255 * (0.406, 0.456, 0.485)
TORCHVISION_PIXEL_STD_BGR = (57.375, 57.12, 58.395)  # 255 * (0.225, 0.224, 0.229)

_NORM_FIELDS = ("weight", "bias", "running_mean", "running_var")


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
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or "conv1.weight" not in state:
        raise DataFormatError("not a torchvision ResNet state dict (no 'conv1.weight')", path=path)
    out = {}
    for key, value in state.items():
        try:
            new_key = _rename_torchvision(key)
        except KeyError:
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
