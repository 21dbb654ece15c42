"""Export the CrossVIS per-frame network to ONNX, and the metadata that says what an ONNX file holds.

The exported graph is `FrameNetwork`: one normalized, zero-padded BGR image (1, 3, Hp, Wp) in,
Hp and Wp dynamic (multiples of 32, `streamvis.ops.image.normalize_and_pad`), and the model's raw
dense outputs out, one tensor per FCOS field and FPN level plus the mask features::

    cls_logits_p3 .. cls_logits_p7   (1, C, Hp/s, Wp/s)   raw class logits
    bbox_reg_p3 .. bbox_reg_p7       (1, 4, Hp/s, Wp/s)   l, t, r, b in stride units
    ctrness_p3 .. ctrness_p7         (1, 1, Hp/s, Wp/s)   raw centerness logits
    controller_params_p3 .. _p7      (1, P, Hp/s, Wp/s)   controller output (P = 169)
    reid_feats_p3 .. reid_feats_p7   (1, D, Hp/s, Wp/s)   re-ID embeddings
    mask_feats                       (1, 8, Hp/8, Wp/8)   mask-branch output

`unflatten_outputs` turns them back into the model's `HeadOutputs`, which `CrossVIS.postprocess`
takes, so the post-processing is the same code for both backends. The file's ``metadata_props``
record the export format, the streamvis version, the method and the model config
(`OnnxMetadata`); `parse_metadata` refuses a file from another format or model with a
one-paragraph error instead of producing wrong detections.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import streamvis
from streamvis.config import from_dict, to_dict
from streamvis.errors import ConfigError, DataFormatError, StreamvisError
from streamvis.models.build import method_spec
from streamvis.models.crossvis.config import CrossVISConfig
from streamvis.models.crossvis.fcos import HeadOutputs
from streamvis.models.crossvis.model import CrossVIS
from streamvis.ops.misc import compute_locations
from streamvis.utils.io import atomic_write_bytes

# Bump when the graph's inputs/outputs or the meaning of a metadata entry change: a file of another
# format is refused (re-export it), a file of another streamvis version with this format is accepted.
# v1: outputs top_feats_p*; v2: the controller outputs are named controller_params_p* (issue 9's
# one name per concept) and the config entry holds the config of model.method.
FORMAT_VERSION = "streamvis-onnx-v2"
SUPPORTED_METHODS = ("crossvis",)
PRECISIONS = ("float32", "int8")
INPUT_NAME = "images"
# the per-level fields of HeadOutputs, in output order
FIELDS = ("cls_logits", "bbox_reg", "ctrness", "controller_params", "reid_feats")
MASK_FEATS_NAME = "mask_feats"
# ONNX opset 17: the first with LayerNormalization; everything here (Conv, Resize, GroupNorm as
# InstanceNorm+Mul+Add, Pad) exists since 13, and ONNX Runtime >= 1.14 supports 17.
OPSET = 17
EXPORT_SAMPLE_SIZE = (384, 640)  # traced input size (360x640 frames padded to 32); the axes are dynamic
SIZE_DIVISIBILITY = 32  # official: the padded input is a multiple of the largest backbone stride
INSTALL_HINT = "pip install streamvis[onnx]"

KEY_FORMAT = "streamvis.format"
KEY_VERSION = "streamvis.version"
KEY_METHOD = "streamvis.method"
KEY_PRECISION = "streamvis.precision"
KEY_STRIDES = "streamvis.strides"
KEY_CONFIG = "streamvis.config"


class MissingExtraError(StreamvisError, ImportError):
    """An optional dependency (onnx, onnxruntime) is not installed; the message says how to install it."""


def import_optional(name: str, purpose: str):
    """Import `name` (onnx, onnxruntime, ...) or raise `MissingExtraError` naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise MissingExtraError(
            f"{purpose} needs the Python package '{name}', which is not installed here ({err}). "
            f"It is part of streamvis' optional extra 'onnx': install it with `{INSTALL_HINT}` "
            f"(or `pip install onnx onnxruntime`), or use the default PyTorch backend (--backend torch)."
        ) from None


@dataclass(frozen=True)
class OnnxMetadata:
    """What a streamvis ONNX file holds (stored as its ``metadata_props``).

    Attributes:
        format: `FORMAT_VERSION` of the exporter that wrote it.
        streamvis_version: ``streamvis.__version__`` of that exporter.
        method: the model's ``model.method`` (`streamvis.models.build.METHODS` key; ``crossvis``).
        precision: "float32" or "int8" (static quantization, export/quantize.py).
        strides: stride of each FPN level of the outputs (8, 16, 32, 64, 128).
        config: the model config (inference settings, classes, widths) the network was built from.
    """

    format: str
    streamvis_version: str
    method: str
    precision: str
    strides: tuple[int, ...]
    config: CrossVISConfig

    @property
    def output_names(self) -> tuple[str, ...]:
        """Graph output names, in order (see the module docstring)."""
        return output_names(self.strides)

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` entries (all strings)."""
        return {
            KEY_FORMAT: self.format, KEY_VERSION: self.streamvis_version, KEY_METHOD: self.method,
            KEY_PRECISION: self.precision, KEY_STRIDES: json.dumps(list(self.strides)),
            KEY_CONFIG: json.dumps(to_dict(self.config), sort_keys=True),
        }

    def replace(self, **changes) -> OnnxMetadata:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def level_name(stride: int) -> str:
    """FPN level name of a stride: 8 -> "p3" (P_l has stride 2**l)."""
    return f"p{int(round(math.log2(stride)))}"


def output_names(strides: Sequence[int]) -> tuple[str, ...]:
    """Graph output names for FPN levels of `strides`: per field, per level, then mask_feats."""
    return tuple(f"{field}_{level_name(s)}" for field in FIELDS for s in strides) + (MASK_FEATS_NAME,)


class UnsupportedMethodError(StreamvisError, ValueError):
    """The model's method (``model.method``) has no exported network yet (only CrossVIS has)."""


def check_exportable(method: str, source=None) -> None:
    """Raise `UnsupportedMethodError` unless ``model.method`` `method` can be exported to ONNX.

    Args:
        method: a `streamvis.models.build.METHODS` key (``config.method``).
        source: the weights file it comes from, named in the message (optional).
    """
    if method in SUPPORTED_METHODS:
        return
    where = f"{source}: " if source is not None else ""
    raise UnsupportedMethodError(
        f"{where}ONNX export and the ONNX Runtime backend support model.method "
        f"{' / '.join(repr(m) for m in SUPPORTED_METHODS)} only, and this model is a {method!r}. Its "
        "per-frame network and Python post-processing have not been split into an exportable graph "
        "and a step API yet, so exporting it would not keep the tracker working; run it with the "
        "PyTorch backend (`streamvis predict --backend torch --weights W.pth`).")


class FrameNetwork(nn.Module):
    """The exportable per-frame network: a `CrossVIS`'s dense forward with a flat tuple of outputs.

    It calls the model's own `forward_features` (dense: controller and re-ID outputs at every
    location), so the exported graph is exactly the PyTorch network; the location grids that
    `forward_features` also builds do not reach an output and are dropped from the graph.

    Args:
        model: a `CrossVIS` (faithful or `optimize_for_inference` copy) in eval mode.
    """

    def __init__(self, model: CrossVIS):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Args: images (1, 3, Hp, Wp) normalized, padded. Returns the outputs named by `output_names`."""
        outputs = self.model.forward_features(images, dense=True)
        flat = [tensor for field in FIELDS for tensor in getattr(outputs, field)]
        return (*flat, outputs.mask_feats)


def unflatten_outputs(arrays: Sequence, strides: Sequence[int], image_size: tuple[int, int]) -> HeadOutputs:
    """The graph's outputs (in `output_names` order) as the model's `HeadOutputs` of one image.

    Args:
        arrays: numpy arrays or tensors, ``len(FIELDS) * len(strides) + 1`` of them.
        strides: stride of each level (from `OnnxMetadata`).
        image_size: (h, w) of the image before padding.

    Returns:
        `HeadOutputs` with float32 CPU tensors, location grids and `image_sizes = [image_size]`.
    """
    levels = len(strides)
    if len(arrays) != len(FIELDS) * levels + 1:
        raise ValueError(f"expected {len(FIELDS) * levels + 1} network outputs, got {len(arrays)}")
    tensors = [torch.as_tensor(a, dtype=torch.float32) for a in arrays]
    per_field = {field: tensors[i * levels : (i + 1) * levels] for i, field in enumerate(FIELDS)}
    locations = [compute_locations(t.shape[-2], t.shape[-1], s)
                 for t, s in zip(per_field["cls_logits"], strides)]
    return HeadOutputs(per_field["cls_logits"], per_field["bbox_reg"], per_field["ctrness"],
                       per_field["controller_params"], per_field["reid_feats"], tensors[-1], locations,
                       tuple(int(s) for s in strides), [tuple(image_size)])


def _sample_input(size: tuple[int, int]) -> torch.Tensor:
    """A fixed pseudo-random traced input (the values do not matter, only the graph)."""
    height, width = size
    if height % SIZE_DIVISIBILITY or width % SIZE_DIVISIBILITY:
        raise ValueError(f"sample_size must be multiples of {SIZE_DIVISIBILITY}, got {size}")
    generator = torch.Generator().manual_seed(0)
    return torch.randn((1, 3, height, width), generator=generator) * 50.0  # (1, 3, H, W) ~ normalized pixels


def model_metadata(model: CrossVIS, strides: Sequence[int], precision: str = "float32") -> OnnxMetadata:
    """The `OnnxMetadata` of an export of `model` (its ``config`` must be set, as `build_model` does)."""
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError("the model has no .config (build it with build_model or load_model)")
    return OnnxMetadata(FORMAT_VERSION, streamvis.__version__, config.method, precision,
                        tuple(int(s) for s in strides), config)


def export_onnx(model: CrossVIS, path, *, opset: int = OPSET,
                sample_size: tuple[int, int] = EXPORT_SAMPLE_SIZE) -> OnnxMetadata:
    """Write `model`'s per-frame network to the ONNX file `path` (atomically) with its metadata.

    Args:
        model: a `CrossVIS` with ``config`` set; it is exported in eval mode and left as it was.
        path: the ``.onnx`` file to write.
        opset: ONNX opset version.
        sample_size: (Hp, Wp) of the traced input; any multiple of 32 (height and width are dynamic).

    Returns:
        The `OnnxMetadata` stored in the file.

    Raises:
        UnsupportedMethodError: ``model.config.method`` is not in `SUPPORTED_METHODS`.
        MissingExtraError: onnx is not installed.
    """
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError("the model has no .config (build it with build_model or load_model)")
    check_exportable(config.method)
    onnx = import_optional("onnx", "exporting to ONNX")
    sample = _sample_input(sample_size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            strides = model.forward_features(sample, dense=True).strides
        metadata = model_metadata(model, strides)
        proto = _traced_proto(onnx, FrameNetwork(model), sample, metadata.output_names, opset)
    finally:
        model.train(was_training)
    write_with_metadata(onnx, proto, metadata, path)
    return metadata


def export_weights_file(weights, onnx_path, *, precision: str = "float32", calibration_frames: int = 8,
                        calibration_data=None, calibration_images=None) -> OnnxMetadata:
    """``streamvis export --weights W.pth --onnx OUT.onnx [--precision int8]``: the whole command.

    Args:
        weights: a streamvis weights file.
        onnx_path: the ONNX file to write.
        precision: "float32", or "int8" (static quantization, export/quantize.py).
        calibration_frames: int8 calibration frame count.
        calibration_data: a YouTube-VIS json whose frames calibrate int8 (e.g. the model's training
            split); None: frames of the generated synthetic training split.
        calibration_images: the frame folder of `calibration_data` (default: its usual layout).

    Returns:
        The `OnnxMetadata` written into `onnx_path`.

    Raises:
        DataFormatError: `weights` is not a readable streamvis weights file.
        UnsupportedMethodError: its ``model.method`` cannot be exported (checked before any work).
        MissingExtraError: onnx (or, for int8, onnxruntime) is not installed.
    """
    from streamvis.models.weights import build_from_file, load

    if precision not in PRECISIONS:
        raise StreamvisError(f"--precision {precision!r}: choose one of {list(PRECISIONS)}")
    stored = load(weights)
    check_exportable(stored.method, weights)  # before building the model or any export work
    model = build_from_file(stored).eval()
    if precision == "float32":
        return export_onnx(model, onnx_path)
    from streamvis.export import quantize

    import_optional("onnxruntime", "int8 quantization (--precision int8)")
    if calibration_data is not None:
        frames = quantize.dataset_calibration_frames(calibration_data, calibration_images, model.config,
                                                     calibration_frames)
    else:
        frames = quantize.calibration_frames(model.config, calibration_frames)
    with tempfile.TemporaryDirectory(prefix="streamvis-export-") as tmp:
        float_path = Path(tmp) / "float32.onnx"
        metadata = export_onnx(model, float_path)
        quantize.quantize_onnx(float_path, onnx_path, frames)
    return metadata.replace(precision="int8")


def _traced_proto(onnx, network: nn.Module, sample: torch.Tensor, names: Sequence[str], opset: int):
    """Trace `network` (TorchScript-based exporter: no extra dependency) and load the ModelProto."""
    dynamic_axes = {INPUT_NAME: {2: "height", 3: "width"}}
    dynamic_axes.update({name: {2: f"{name}_height", 3: f"{name}_width"} for name in names})
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # tracer warnings about Python ints from shapes: the traced graph keeps them symbolic
        # (checked by tests/export: the same file runs at several input sizes)
        warnings.simplefilter("ignore")
        target = Path(tmp) / "network.onnx"
        torch.onnx.export(network, (sample,), str(target), dynamo=False, input_names=[INPUT_NAME],
                          output_names=list(names), dynamic_axes=dynamic_axes, opset_version=opset,
                          do_constant_folding=True)
        return onnx.load(str(target))


def write_with_metadata(onnx, proto, metadata: OnnxMetadata, path) -> Path:
    """Replace `proto`'s streamvis metadata entries by `metadata`'s, check it, write it atomically."""
    kept = [(p.key, p.value) for p in proto.metadata_props if not p.key.startswith("streamvis.")]
    del proto.metadata_props[:]
    for key, value in [*kept, *metadata.to_props().items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name, proto.producer_version = "streamvis", metadata.streamvis_version
    onnx.checker.check_model(proto)
    atomic_write_bytes(path, proto.SerializeToString())
    return Path(path)


def _reexport_hint(path) -> str:
    return f"`streamvis export --weights W.pth --onnx {Path(path).name}` (add --precision int8 for int8)"


def parse_metadata(props: Mapping[str, str], path=None) -> OnnxMetadata:
    """Read and check a file's ``metadata_props`` (as ONNX Runtime's ``custom_metadata_map`` gives them).

    Raises:
        DataFormatError: not a streamvis export, another export format, another method, or an
            unreadable config; one paragraph that names the file, the entry and what to do.
    """
    if KEY_FORMAT not in props:
        raise DataFormatError(
            f"this ONNX file has no '{KEY_FORMAT}' metadata entry, so it was not written by "
            f"`streamvis export` (found entries: {sorted(props) or 'none'}). streamvis runs only ONNX "
            "files it exported itself, because its Python post-processing must match the network's "
            f"outputs exactly; export one from a streamvis weights file with {_reexport_hint(path)}.",
            path=path, field=KEY_FORMAT)
    found, version = props[KEY_FORMAT], props.get(KEY_VERSION, "unknown")
    if found != FORMAT_VERSION:
        raise DataFormatError(
            f"this ONNX file was written by streamvis {version} in the export format {found!r}, but "
            f"this streamvis ({streamvis.__version__}) reads only {FORMAT_VERSION!r}. The network's "
            "outputs or their metadata differ between formats, so running it would give wrong "
            f"detections; re-export it from its weights file with this version: {_reexport_hint(path)}.",
            path=path, field=KEY_FORMAT)
    method = props.get(KEY_METHOD, "")
    if method not in SUPPORTED_METHODS:
        raise DataFormatError(
            f"this ONNX file holds a {method!r} network (streamvis {version}), but the ONNX Runtime "
            f"backend runs only {list(SUPPORTED_METHODS)}; predict with the PyTorch backend "
            "(--backend torch) and the model's weights file instead.", path=path, field=KEY_METHOD)
    precision = props.get(KEY_PRECISION, "")
    if precision not in PRECISIONS:
        raise DataFormatError(f"unknown precision {precision!r} (expected one of {list(PRECISIONS)}); "
                              f"re-export the file with {_reexport_hint(path)}.",
                              path=path, field=KEY_PRECISION)
    try:
        strides = tuple(int(s) for s in json.loads(props[KEY_STRIDES]))
        config_dict = json.loads(props[KEY_CONFIG])
        if not isinstance(config_dict, dict):
            raise ValueError(f"config is a {type(config_dict).__name__}, not a mapping")
        if config_dict.get("method", method) != method:
            raise ValueError(f"config method {config_dict['method']!r} differs from {KEY_METHOD} {method!r}")
        config = from_dict(method_spec(method).config_class, {**config_dict, "method": method},
                           prefix="config")
    except (KeyError, ValueError, TypeError, ConfigError) as err:
        raise DataFormatError(
            f"the streamvis metadata of this ONNX file (streamvis {version}) cannot be read: {err}. "
            f"The file was edited or comes from an incompatible streamvis; re-export it with "
            f"{_reexport_hint(path)}.", path=path, field=KEY_CONFIG if "config" in str(err) else KEY_STRIDES
        ) from None
    return OnnxMetadata(found, version, method, precision, strides, config)


def expected_channels(metadata: OnnxMetadata) -> dict[str, int]:
    """Output name -> channel count implied by the config (to check a graph against its metadata)."""
    cfg = metadata.config
    # controller_params (the controller's dynamic parameter count) is checked by the mask head at run time
    per_field = {"cls_logits": cfg.num_classes, "bbox_reg": 4, "ctrness": 1, "reid_feats": cfg.reid_dim}
    channels = {f"{field}_{level_name(s)}": per_field[field]
                for field in FIELDS if field in per_field for s in metadata.strides}
    channels[MASK_FEATS_NAME] = cfg.mask_out_channels
    return channels


def check_graph_outputs(metadata: OnnxMetadata, outputs: Mapping[str, Sequence], path=None) -> None:
    """Check the graph's output names and channel counts against its metadata.

    Args:
        outputs: output name -> shape (ints or symbolic names), in graph order.

    Raises:
        DataFormatError: they differ (the metadata was copied from another model, or the graph edited).
    """
    expected = expected_channels(metadata)
    problems = []
    if tuple(outputs) != metadata.output_names:
        problems.append(f"outputs {list(outputs)[:4]}... instead of {list(metadata.output_names)[:4]}...")
    for name, shape in outputs.items():
        want = expected.get(name)
        channel = shape[1] if len(shape) == 4 else None
        if want is not None and isinstance(channel, int) and channel != want:
            problems.append(f"{name} has {channel} channels, the config says {want}")
    if problems:
        raise DataFormatError(
            f"this ONNX file's network does not match its own streamvis metadata "
            f"({'; '.join(problems[:3])}). It was edited or its metadata belongs to another model, "
            f"so its detections cannot be trusted; re-export it with {_reexport_hint(path)}.",
            path=path, field=KEY_CONFIG)
