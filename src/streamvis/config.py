"""Typed, frozen dataclass configs: YAML in, dotted ``--set a.b=c`` overrides, YAML out.

Every config is a frozen dataclass with its defaults in code. `from_dict` builds one from a
(nested) mapping, checking and coercing each value against the field's annotation; an unknown
key is a `ConfigError` that suggests the nearest valid name. `load_config` reads a YAML file,
applies ``--set`` overrides (values parsed with ``yaml.safe_load``) and returns an
`ExperimentConfig`; `save_config` writes the resolved config back as YAML.

The model and data configs live beside their code: each method has its own config class, chosen
by ``model.method`` through `streamvis.models.build.METHODS` (e.g. `CrossVISConfig` in
models/crossvis/config.py; the old key ``model.architecture`` still reads as ``model.method``),
and the data config is `streamvis.data.loader.DataConfig`. They are imported lazily, so this
module does not import torch until an `ExperimentConfig` is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import reprlib
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from streamvis.errors import ConfigError

# values quoted in error messages are cut short (a 4000-digit integer or a long string stays one line)
_short = reprlib.Repr()
_short.maxstring, _short.maxlong, _short.maxother, _short.maxlist, _short.maxdict = 80, 40, 80, 8, 6


def _cut(value: Any) -> str:
    """``repr(value)`` cut short for an error message."""
    return _short.repr(value)

# ------------------------------------------------------------------------------------------------
# Generic machinery
# ------------------------------------------------------------------------------------------------


def _lazy_namespace() -> dict[str, type]:
    """Config classes defined in other modules, resolved only when a hint needs them."""
    from streamvis.data.loader import DataConfig

    return {"DataConfig": DataConfig}


def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except NameError:
        return typing.get_type_hints(cls, localns=_lazy_namespace())


def _suggest(name: str, valid: Sequence[str], prefix: str) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    if close:
        return f"; did you mean '{_join(prefix, close[0])}'?"
    return f"; valid keys{' of ' + repr(prefix) if prefix else ''} are: {', '.join(valid)}"


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def from_dict(cls: type, data: Mapping[str, Any] | None, *, prefix: str = "") -> Any:
    """Build the frozen dataclass `cls` from a nested mapping, checking every key and value.

    Args:
        cls: a dataclass type; nested dataclass fields take nested mappings.
        data: the values; missing keys keep the defaults in code. None means "all defaults".
        prefix: dotted path of `cls` inside the whole config, used in error messages.

    Returns:
        An instance of `cls`.

    Raises:
        ConfigError: an unknown key (with the nearest valid name), a value of the wrong type,
            or a value the class's own checks refuse.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config '{prefix or '<root>'}' must be a mapping, got {type(data).__name__}")
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    names = list(fields)
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            hint = _suggest(str(key), names, prefix)
            raise ConfigError(f"unknown config key '{_join(prefix, str(key))}'{hint}")
        build = fields[key].metadata.get("from_dict")  # a field whose class depends on its value
        if build is not None and not dataclasses.is_dataclass(value):
            kwargs[key] = build(value, prefix=_join(prefix, key))
        else:
            kwargs[key] = coerce(value, hints[key], _join(prefix, key))
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config '{prefix or cls.__name__}': {err}") from err


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against the type annotation `hint` and convert it where that is lossless.

    Supported: bool, int, float, str, Literal, Optional/Union, tuple[X, ...], tuple[X, Y],
    nested dataclasses and Any. Lists become tuples (configs are immutable). An int becomes a
    float; an integral float or a numeric string ("1e-3", as YAML 1.1 reads it) a number.
    """
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is Union or origin is types.UnionType:
        return _coerce_union(value, typing.get_args(hint), where)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"config '{where}' must be one of {list(typing.get_args(hint))}, "
                              f"got {_cut(value)}")
        return value
    if origin is tuple:
        return _coerce_tuple(value, typing.get_args(hint), where)
    if dataclasses.is_dataclass(hint):
        if dataclasses.is_dataclass(value) and isinstance(value, hint):
            return value
        return from_dict(hint, value, prefix=where)
    if hint in (bool, int, float, str):
        return _coerce_scalar(value, hint, where)
    raise ConfigError(f"config '{where}': unsupported annotation {hint!r}")


def _coerce_union(value: Any, options: tuple, where: str) -> Any:
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"config '{where}' must not be null")
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return coerce(value, option, where)
        except ConfigError as err:
            errors.append(str(err))
    raise ConfigError(errors[0] if len(errors) == 1 else f"config '{where}': no type fits {_cut(value)}")


def _coerce_tuple(value: Any, args: tuple, where: str) -> tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(f"config '{where}' must be a list, got {_cut(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if not args:
        return tuple(value)
    if len(value) != len(args):
        raise ConfigError(f"config '{where}' must be a list of {len(args)} values, got {len(value)}")
    return tuple(coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))


def _coerce_scalar(value: Any, hint: type, where: str) -> Any:
    wrong = ConfigError(f"config '{where}' must be {hint.__name__}, got {type(value).__name__} "
                        f"{_cut(value)}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise wrong
    if hint is str:
        if isinstance(value, str):
            return value
        raise wrong
    if isinstance(value, bool):
        raise wrong
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise wrong from None
    if hint is float and isinstance(value, (int, float)):
        return float(value)
    if hint is int and isinstance(value, int):
        return value
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    raise wrong


def to_dict(config: Any) -> Any:
    """A config (nested dataclasses) as plain dicts/lists/scalars, ready for YAML or a checkpoint."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, Mapping):
        return {k: to_dict(v) for k, v in config.items()}
    return config


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply dotted ``key.sub=value`` overrides to a nested dict (a copy is returned).

    Each value is parsed with ``yaml.safe_load`` ("0.01" -> float, "[1, 2]" -> list,
    "null" -> None). Unknown keys are reported later by `from_dict`.
    """
    out = _deep_copy(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {_cut(item)} must look like key.sub=value")
        value = _parse_yaml(text, f"override {_cut(item)}") if text.strip() else ""
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {_cut(item)}: '{'.'.join(parts[: i + 1])}' is not a section")
            node = child
        node[parts[-1]] = value
    return out


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def _parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load(text)``; any failure is a ConfigError "WHERE: not valid YAML: ...".

    Besides `yaml.YAMLError`, PyYAML lets Python's own limits through: an integer past 4300 digits
    raises ValueError (``sys.get_int_max_str_digits``, Python 3.11+), very deep nesting RecursionError.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(err).split())}") from None
    except ValueError as err:  # the int-conversion limit
        if "digits" in str(err):
            limit = sys.get_int_max_str_digits()
            raise ConfigError(f"{where}: an integer has more than {limit} digits (Python's limit for "
                              "reading an integer); no streamvis setting needs one that long") from None
        raise ConfigError(f"{where}: not valid YAML for streamvis: {err}") from None
    except RecursionError:
        raise ConfigError(f"{where}: not valid YAML for streamvis: nested too deeply") from None


def read_yaml(path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or bad YAML is a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    data = _parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(path=None, overrides: Sequence[str] = (), *, cls: type | None = None) -> Any:
    """Read a YAML config, apply ``--set`` overrides and build the typed config.

    For an `ExperimentConfig`, ``model.preset`` names a model preset (`expand_model_preset`).

    Args:
        path: the YAML file (None: start from the defaults in code).
        overrides: ``["solver.base_lr=0.01", "train.device=cpu", ...]``.
        cls: the config class (default `ExperimentConfig`).

    Returns:
        A frozen config instance.
    """
    written = read_yaml(path) if path is not None else {}
    data = apply_overrides(written, overrides)
    cls = cls or ExperimentConfig
    if cls is ExperimentConfig:
        data = _pin_schedule_length(written, expand_model_preset(data))
    return from_dict(cls, data)


def _pin_schedule_length(written: Mapping[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """With ``solver.scale_schedule`` on, record the file's own max_iter as ``schedule_max_iter``.

    The steps and warm-up of a config file are written for its ``max_iter``; a ``--set
    solver.max_iter=N`` override must scale them from that length, so it is kept before the
    override replaces it (and saved in the run's config.yaml, so a resume scales alike).
    """
    solver = data.get("solver")
    if not isinstance(solver, Mapping) or solver.get("scale_schedule") is not True:
        return data
    if solver.get("schedule_max_iter") is not None:
        return data
    file_solver = written.get("solver") if isinstance(written.get("solver"), Mapping) else {}
    length = file_solver.get("max_iter", solver.get("max_iter", SolverConfig.max_iter))
    return {**data, "solver": {**solver, "schedule_max_iter": length}}


def expand_model_preset(data: Mapping[str, Any]) -> dict[str, Any]:
    """``model: {preset: NAME, key: value}`` -> the preset's fields, then the given keys on top.

    Presets are every method's `MethodSpec.presets` (`streamvis.models.build.preset`, e.g.
    ``crossvis_r18_small``); the saved config.yaml lists every resolved field instead of the
    preset name.
    """
    model = data.get("model")
    if not isinstance(model, Mapping) or "preset" not in model:
        return dict(data)
    from streamvis.models.build import preset

    name = model["preset"]
    if not isinstance(name, str):
        raise ConfigError(f"config 'model.preset' must be a preset name, got {_cut(name)}")
    merged = _deep_merge(to_dict(preset(name)), {k: v for k, v in model.items() if k != "preset"})
    return {**data, "model": merged}


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def save_config(config: Any, path) -> None:
    """Write the resolved config as YAML (atomically); `load_config` reads it back identically."""
    from streamvis.utils.io import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(to_dict(config), f, sort_keys=False, default_flow_style=None)


# ------------------------------------------------------------------------------------------------
# The experiment: solver and training-loop settings (model/data configs live beside their code)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SolverConfig:
    """SGD with a linear warm-up and step decay (defaults: official CrossVIS R_50_1x, facts.md s.9).

    Args:
        base_lr: learning rate after warm-up, for `ims_per_batch` pairs (scale it with the batch).
        momentum, weight_decay: SGD settings; `weight_decay_norm` applies to norm-layer parameters.
        steps: iterations at which the learning rate is multiplied by `gamma`.
        warmup_iters, warmup_factor: the factor goes linearly from `warmup_factor` to 1.
        max_iter: number of training iterations.
        ims_per_batch: frame pairs per iteration over all processes (each gets a share).
        clip_grad_norm: clip the global gradient L2 norm to this value (None: no clipping).
        scale_schedule: scale `steps` and `warmup_iters` by ``max_iter / schedule_max_iter``, so
            that ``--set solver.max_iter=240`` on a 2400-iteration config keeps the schedule's
            shape (steps [1900, 2200] -> [190, 220]). Off: they stay as written, and steps or a
            warm-up that do not fit in `max_iter` are reported when training starts.
        schedule_max_iter: the run length `steps` and `warmup_iters` were written for (null: the
            config file's own ``max_iter``, recorded by `load_config` before ``--set`` overrides).
    """

    base_lr: float = 0.005  # official: SOLVER.BASE_LR
    momentum: float = 0.9  # official: SOLVER.MOMENTUM
    weight_decay: float = 1e-4  # official: SOLVER.WEIGHT_DECAY
    weight_decay_norm: float = 0.0  # official: SOLVER.WEIGHT_DECAY_NORM
    steps: tuple[int, ...] = (15000, 21000)  # official: SOLVER.STEPS
    gamma: float = 0.1  # official: SOLVER.GAMMA
    warmup_iters: int = 1000  # official: SOLVER.WARMUP_ITERS
    warmup_factor: float = 0.001  # official: SOLVER.WARMUP_FACTOR
    max_iter: int = 23000  # official: SOLVER.MAX_ITER
    ims_per_batch: int = 16  # official: SOLVER.IMS_PER_BATCH (frame pairs)
    clip_grad_norm: float | None = None  # official: clipping disabled
    scale_schedule: bool = False
    schedule_max_iter: int | None = None

    def __post_init__(self):
        if self.max_iter < 1 or self.ims_per_batch < 1:
            raise ConfigError("solver.max_iter and solver.ims_per_batch must be >= 1")
        if self.base_lr <= 0 or self.warmup_iters < 0 or not 0 < self.warmup_factor <= 1:
            raise ConfigError("solver: need base_lr > 0, warmup_iters >= 0 and 0 < warmup_factor <= 1")
        if list(self.steps) != sorted(self.steps):
            raise ConfigError(f"solver.steps must be increasing, got {list(self.steps)}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ConfigError("solver.clip_grad_norm must be > 0 or null")
        if self.schedule_max_iter is not None and self.schedule_max_iter < 1:
            raise ConfigError("solver.schedule_max_iter must be >= 1 or null")


@dataclass(frozen=True)
class TrainConfig:
    """Training-loop settings.

    Args:
        checkpoint_period: save a checkpoint every this many iterations (and always at the end).
        keep_last: how many periodic checkpoints to keep (model_final.pth is always kept).
        log_period: write a metrics line (losses averaged over the period) this often.
        eval_period: evaluate on the valid split this often (0: only at the end; ``never``: no
            evaluation at all, and the valid split need not exist; without a valid split in the
            data config no evaluation runs either).
        amp: mixed precision (float16 autocast + gradient scaling); used on CUDA only.
        device: "cpu", "cuda" or "auto" (CUDA when available).
        init_weights: loaded before training (None: random init). A streamvis checkpoint or
            weights file (``model_final.pth``, ``streamvis export`` output) initialises the whole
            model (fine-tuning; tensors of another shape keep their init, with a warning); an
            ImageNet file (torchvision ``.pth`` or detectron2 ``.pkl``) only the backbone.
        find_unused_parameters: passed to DistributedDataParallel.
        progress_bar: show a tqdm bar with ETA and losses on rank 0.
        plot_loss_curve: draw loss_curve.png from metrics.jsonl (at the end, and every ~30 s of
            training at logging/checkpoint steps).
        deterministic: train with ``torch.use_deterministic_algorithms(True, warn_only=True)``.
            On CPU with more than one thread, the backward pass of advanced indexing
            (``index_put_`` with accumulation, e.g. ``feats[indices]``) otherwise adds with atomic
            float adds in a thread-timing-dependent order, so two runs with the same seed drift
            apart in the last bits from the first iteration on; with it, runs and resumes are
            bitwise equal at a fixed thread count. An op without a deterministic version warns.
    """

    checkpoint_period: int = 1900  # official: SOLVER.CHECKPOINT_PERIOD
    keep_last: int = 3
    log_period: int = 20  # official: detectron2 PeriodicWriter(period=20)
    eval_period: int | Literal["never"] = 0
    amp: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    init_weights: str | None = None
    find_unused_parameters: bool = False
    progress_bar: bool = True
    plot_loss_curve: bool = True
    deterministic: bool = True

    def __post_init__(self):
        if self.checkpoint_period < 1 or self.log_period < 1 or self.keep_last < 1:
            raise ConfigError("train.checkpoint_period, train.log_period and train.keep_last must be >= 1")
        if self.eval_period != "never" and self.eval_period < 0:
            raise ConfigError("train.eval_period must be >= 0 (0: only at the end) or 'never'")


def _default_model_config():
    from streamvis.models.build import model_config_from_dict

    return model_config_from_dict({})


def _model_config_from_dict(data, *, prefix: str):
    """The config class of ``data["method"]`` (`streamvis.models.build.METHODS`), built from `data`."""
    from streamvis.models.build import model_config_from_dict

    return model_config_from_dict(data, prefix=prefix)


def _default_data_config():
    return _lazy_namespace()["DataConfig"]()


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one training run needs; saved as ``config.yaml`` in its output folder.

    Args:
        model: the method's config, chosen by ``model.method`` (default ``crossvis``:
            `streamvis.models.crossvis.config.CrossVISConfig`; `streamvis.models.build.METHODS`).
        data: datasets and sampling/augmentation (`streamvis.data.loader.DataConfig`).
        solver: optimizer and schedule.
        train: loop settings (checkpoints, logging, evaluation, device, AMP).
        seed: seeds the model init (same on every process) and the data order/augmentation.
        output_dir: where checkpoints, metrics.jsonl, loss_curve.png and config.yaml go.
    """

    model: Any = field(default_factory=_default_model_config, metadata={"from_dict": _model_config_from_dict})
    data: DataConfig = field(default_factory=_default_data_config)  # noqa: F821
    solver: SolverConfig = field(default_factory=SolverConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0
    output_dir: str = "outputs/run"
