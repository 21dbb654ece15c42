"""The ONE owner of the streamvis weights-file format: save, load, inspect, export.

A weights file and a training checkpoint are both a plain dict saved with `torch.save` and read
only with ``torch.load(weights_only=True)`` (a file never runs code)::

    {"format": "streamvis-weights", "format_version": 2, "method": "crossvis",
     "model": state_dict, "config": the method config as a dict (`streamvis.config.to_dict`),
     "meta": {"source": ..., "iteration": ..., ...}}

A training checkpoint (`streamvis.engine.checkpoint`) has the same header plus ``experiment``,
``optimizer``, ``scheduler``, ``scaler``, ``iteration``, ``world_size`` and ``rng``.

Format versions (`FORMAT_VERSION` is the newest this streamvis writes and reads):

- 0: training checkpoints before the header existed (``model`` + ``config``, no ``meta``);
- 1: weights files with ``meta.format == "streamvis-weights-v1"`` (the bundled model);
- 2: the header above; the config records ``method`` (0 and 1 stored ``architecture`` or nothing,
  which reads as ``method: crossvis``).

A file from a newer streamvis (a larger ``format_version``) is refused with an error that says so.
"""

from __future__ import annotations

import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from streamvis.errors import ConfigError, DataFormatError

FORMAT_NAME = "streamvis-weights"
FORMAT_VERSION = 2
LEGACY_FORMAT_NAME = "streamvis-weights-v1"  # meta.format of version-1 files
CHECKPOINT_KEYS = ("optimizer", "scheduler", "iteration")  # what only a training checkpoint has


class NewerFormatError(DataFormatError):
    """The file was written by a newer streamvis (a larger format version than `FORMAT_VERSION`)."""


@dataclass
class WeightsFile:
    """A read weights file or checkpoint, upgraded to the current format.

    Attributes:
        path: where it was read from.
        format_version: the version the file was written with (0, 1 or 2).
        kind: "weights" or "checkpoint" (a training checkpoint: optimizer state, RNG, ...).
        method: the `streamvis.models.build.METHODS` key.
        config: the typed method config (e.g. `CrossVISConfig`).
        model_state: the model's state dict.
        meta: plain values (``source``, ``iteration``, ``synthetic``, ``experiment``...).
        data: the whole dict as stored (a checkpoint's optimizer state etc.).
    """

    path: Path | None
    format_version: int
    kind: str
    method: str
    config: Any
    model_state: dict[str, torch.Tensor]
    meta: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict, repr=False)


def file_header(config) -> dict:
    """The header entries of a file holding a model of `config` (weights file or checkpoint)."""
    from streamvis.config import to_dict

    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "method": config.method,
            "config": to_dict(config)}


def torch_load_safely(path, *, what: str = "weights or checkpoint file") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, every failure one clear paragraph.

    The one guarded ``torch.load`` of streamvis (weights files, checkpoints, official and
    torchvision checkpoints): a file never runs code, and a refusal never passes torch's
    multi-paragraph text on (which advises ``weights_only=False``, i.e. running the file's code).

    Args:
        path: the file to read.
        what: what the file should be, for the message (e.g. ``"official checkpoint"``).

    Returns:
        whatever the file holds (tensors, plain containers and values).

    Raises:
        DataFormatError: missing, empty, truncated or not a torch file, or a pickle that names
            anything other than tensors and plain values (the message says what it named).
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"no such {what}", path=path)
    try:
        with warnings.catch_warnings():  # torch warns before refusing a plain (non-torch) pickle
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if _WEIGHTS_ONLY_REFUSAL not in str(err):
            raise DataFormatError(f"not a readable {what}: {_first_paragraph(err)}", path=path) from None
        raise DataFormatError(
            f"refused: this {what} holds something other than tensors and plain values "
            f"({_refusal_reason(err)}); streamvis reads these files with torch.load(weights_only=True) "
            "and never runs code from a file", path=path) from None
    except Exception as err:  # noqa: BLE001 (any unreadable file is a format error for the user)
        looks = _looks_like(path)
        raise DataFormatError(f"not a readable {what}{looks} (empty, truncated or not written by "
                              f"torch.save): {_first_paragraph(err)}. {_WHAT_TO_PASS}", path=path) from None


_WEIGHTS_ONLY_REFUSAL = "Weights only load failed"  # how torch's weights_only unpickler starts its refusal


def _refusal_reason(err: Exception) -> str:
    """What the pickle asked for, from torch's weights_only refusal (without torch's advice).

    torch's text (2.6+) starts "Weights only load failed. ... Re-running `torch.load` with
    `weights_only` set to `False` will likely succeed ..." and names the reason in one of two
    shapes: "... unsupported GLOBAL posix.system whose module posix is blocked" / "Unsupported
    global: GLOBAL exceptions.ValueError was not an allowed global ...", or "WeightsUnpickler
    error: Unsupported operand 149" (a plain pickle, not a torch file). Only the reason is kept.
    """
    text = str(err)
    named = re.search(r"GLOBAL ([\w.]+)", text)
    if named:
        return f"its pickle asks for {named[1]}"
    reason = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\.\s|\n|$)", text)
    return " ".join(reason[1].split())[:200] if reason else "the unpickler refused it"


def _first_paragraph(err: Exception) -> str:
    """An exception's first sentence (of its first line; at most 300 characters), or its class name.

    torch's reader errors go on with advice after the first sentence ("PytorchStreamReader failed
    reading zip archive: not a ZIP archive. This is an internal miniz error. If you ...").
    """
    lines = str(err).strip().splitlines()  # torch's C++ errors go on with stack frames, a line each
    text = " ".join(lines[0].split()).split(". ")[0].rstrip(".") if lines else ""
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


def read_file(path) -> dict:
    """Read a weights file or checkpoint with `torch_load_safely`, with the version checked.

    Raises:
        DataFormatError: missing or unreadable file (see `torch_load_safely`), or not a dict.
        NewerFormatError: a file from a newer streamvis.
    """
    path = Path(path)
    data = torch_load_safely(path)
    if not isinstance(data, dict):
        raise DataFormatError(f"not a streamvis weights file: a {type(data).__name__}, not a dict", path=path)
    try:
        version = format_version(data)
    except DataFormatError as err:
        raise DataFormatError(err.reason, path=path, field=err.field) from None
    if version > FORMAT_VERSION:
        raise NewerFormatError(
            f"written by a newer streamvis (weights format version {version}; this streamvis reads "
            f"versions up to {FORMAT_VERSION}): upgrade streamvis to load it", path=path)
    return data


_WHAT_TO_PASS = ("Pass a file written by `streamvis train`, `streamvis export` or `streamvis convert` "
                 "(official checkpoints are converted with `streamvis convert`), or 'default' for the "
                 "bundled model; a truncated download also gives this error")


def _looks_like(path: Path) -> str:
    """`` (it looks like a json file)`` etc. for a file that is not a weights file, else ``""``."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return ""
    if head.lstrip()[:1] in (b"{", b"["):
        return " (it looks like a json file)"
    if head[4:8] == b"ftyp" or head[:4] == b"\x1aE\xdf\xa3":
        return " (it looks like a video)"
    if head[:8] == b"\x89PNG\r\n\x1a\n" or head[:3] == b"\xff\xd8\xff":
        return " (it looks like an image)"
    return ""


def format_version(data: dict) -> int:
    """The format version of a loaded file dict (0 and 1 are recognised by their layout)."""
    if "format_version" in data:
        version = data["format_version"]
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise DataFormatError(f"format_version must be a non-negative integer, got {repr(version)[:80]}",
                                  field="format_version")
        return version
    meta = data.get("meta")
    return 1 if isinstance(meta, dict) and meta.get("format") == LEGACY_FORMAT_NAME else 0


def is_streamvis_file(data: Any) -> bool:
    """True for a loaded dict with a model state and a config (any format version)."""
    if not isinstance(data, dict):
        return False
    return isinstance(data.get("model"), dict) and isinstance(data.get("config"), dict)


def load(path) -> WeightsFile:
    """Read a weights file or checkpoint (any format version up to `FORMAT_VERSION`).

    Raises:
        DataFormatError: see `read_file`; not a streamvis file (an official checkpoint gets a
            hint to run ``streamvis convert``); a config the method refuses.
    """
    from streamvis.models.build import model_config_from_dict, upgrade_model_dict

    path = Path(path)
    data = read_file(path)
    if not is_streamvis_file(data):
        hint = " (an official checkpoint? convert it with `streamvis convert`)" if "model" in data else ""
        raise DataFormatError(f"not a streamvis weights file: needs 'model' and 'config'{hint}", path=path)
    check_tensors(data["model"], path)
    try:
        config_dict = upgrade_model_dict(data["config"])
        if "method" in data and data["method"] != config_dict["method"]:
            raise DataFormatError(f"the file says method {data['method']!r} but its config says "
                                  f"{config_dict['method']!r}", path=path, field="method")
        config = model_config_from_dict(config_dict, prefix="config")
    except ConfigError as err:  # e.g. a method this streamvis does not have
        raise DataFormatError(f"the stored model config is not valid: {err}", path=path) from None
    meta = dict(data.get("meta") or {})
    meta.pop("format", None)
    for key in ("iteration", "experiment"):
        if key in data and key not in meta:
            meta[key] = data[key]
    kind = "checkpoint" if all(k in data for k in CHECKPOINT_KEYS) else "weights"
    return WeightsFile(path=path, format_version=format_version(data), kind=kind, method=config.method,
                       config=config, model_state=data["model"], meta=meta, data=data)


def save_weights(path, model_state: dict[str, torch.Tensor], config, **meta) -> Path:
    """Write a weights file atomically (the current format version).

    Args:
        path: the file to write.
        model_state: the model's state dict (tensors only).
        config: the model's typed method config.
        **meta: plain values stored under "meta", e.g. ``source="model_final.pth"``,
            ``iteration=4500``, ``synthetic={"size": [192, 320], "num_classes": 8}``.

    Returns:
        `path`.
    """
    from streamvis.utils.io import atomic_torch_save

    path = Path(path)
    atomic_torch_save({**file_header(config), "model": model_state, "meta": meta}, path)
    return path


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], path=None,
                     optional_prefixes: tuple[str, ...] = ()) -> None:
    """Raise DataFormatError naming missing/unexpected keys or wrong shapes (keys under
    `optional_prefixes` may be absent)."""
    expected = model.state_dict()
    check_tensors(state, path)
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


def check_tensors(state: dict, path=None, prefix: str = "model") -> None:
    """Raise DataFormatError unless `state` maps strings to tensors (a state dict).

    Args:
        state: what a file stores as a model's state dict.
        path: the file, for the message.
        prefix: where `state` sits in the file, for the field name (``"model"``).
    """
    if not isinstance(state, dict):
        raise DataFormatError(f"a state dict must map names to tensors, got a {type(state).__name__}",
                              path=path, field=prefix)
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise DataFormatError(f"a state dict must map names to tensors, this entry holds a "
                                  f"{type(value).__name__}", path=path, field=f"{prefix}[{key!r}]")


def build_from_file(weights: WeightsFile) -> nn.Module:
    """The model of a read weights file, its weights loaded (train mode, on CPU)."""
    from streamvis.models.build import method_spec

    spec = method_spec(weights.method)
    try:
        model = spec.build_model(weights.config)
    except (TypeError, ValueError, OverflowError, RuntimeError, MemoryError) as err:
        # a config that passed type checks can still be absurd (e.g. a 30-digit reid_dim: torch
        # cannot allocate the tensor); it came from the file, so it is the file's error
        raise DataFormatError(f"the stored {weights.method} config cannot build a model: "
                              f"{_first_paragraph(err)}", path=weights.path) from None
    check_state_dict(model, weights.model_state, weights.path, spec.training_only_prefixes)
    model.load_state_dict(weights.model_state, strict=False)
    return model


def load_model(path, device="cpu") -> nn.Module:
    """Build the model stored in a weights file or checkpoint (method and config are inside), in eval mode.

    Raises:
        DataFormatError: not a streamvis file, a newer format, or weights that do not fit.
    """
    return build_from_file(load(path)).to(device).eval()


def export_weights(checkpoint_path, out_path, *, half: bool = False, inference_only: bool = False,
                   **meta) -> Path:
    """Write a weights-only file (no optimizer/RNG state) from a training checkpoint.

    The result is about half the size of a checkpoint (SGD keeps one momentum tensor per parameter).

    Args:
        checkpoint_path: e.g. ``outputs/run/model_final.pth``.
        out_path: the weights file to write (atomically).
        half: store floating-point tensors as float16 (integer buffers stay int64); `load_model`
            copies them back into the float32 model.
        inference_only: leave out the method's training-only tensors
            (`MethodSpec.training_only_prefixes`, e.g. CrossVIS's identity proxies ``criterion.*``).
        **meta: extra plain values stored under "meta" (e.g. ``synthetic={"size": [192, 320]}``).

    Returns:
        `out_path`.
    """
    from streamvis.models.build import method_spec

    checkpoint = load(checkpoint_path)
    drop = method_spec(checkpoint.method).training_only_prefixes if inference_only else ()
    model = {
        key: value.half() if half and value.is_floating_point() else value
        for key, value in checkpoint.model_state.items()
        if not (drop and key.startswith(drop))
    }
    info = {"source": Path(checkpoint_path).name, **checkpoint.meta, **meta}
    info["iteration"] = int(info.get("iteration", 0))
    return save_weights(out_path, model, checkpoint.config, **info)


def inspect(path) -> dict:
    """What a weights file or checkpoint holds, as plain values (``streamvis inspect``).

    Returns:
        dict with ``path``, ``kind``, ``format_version``, ``method``, ``class_names``,
        ``category_ids``, ``source``, ``iteration``, ``tensors``, ``parameters`` (element count),
        ``dtypes`` and ``config`` (the whole method config as a dict).
    """
    from streamvis.config import to_dict

    weights = load(path)
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in weights.model_state.values()})
    return {
        "path": str(weights.path),
        "kind": weights.kind,
        "format_version": weights.format_version,
        "method": weights.method,
        "num_classes": weights.config.num_classes,
        "class_names": list(weights.config.class_names) if weights.config.class_names else None,
        "category_ids": list(weights.config.category_ids) if weights.config.category_ids else None,
        "source": weights.meta.get("source"),
        "iteration": weights.meta.get("iteration"),
        "tensors": len(weights.model_state),
        "parameters": int(sum(v.numel() for v in weights.model_state.values())),
        "dtypes": dtypes,
        "config": to_dict(weights.config),
    }


def format_inspection(info: dict) -> str:
    """`inspect` output as the lines ``streamvis inspect`` prints."""
    names = info["class_names"]
    lines = [
        f"file:           {info['path']} ({info['kind']}, format version {info['format_version']})",
        f"method:         {info['method']}",
        f"classes:        {info['num_classes']}" + (f" ({', '.join(names)})" if names else ""),
        f"category ids:   {info['category_ids'] if info['category_ids'] else 'class + 1'}",
        f"source:         {info['source'] or 'unknown'}",
        f"iteration:      {info['iteration'] if info['iteration'] is not None else 'unknown'}",
        f"tensors:        {info['tensors']} ({info['parameters']:,} values; {', '.join(info['dtypes'])})",
        "config:",
    ]
    lines += [f"  {key}: {value}" for key, value in info["config"].items()]
    return "\n".join(lines)
