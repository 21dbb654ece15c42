"""The method table: ``model.method`` in a config -> the method's config class, model builder and tools.

A *method* (CrossVIS today; PCAN and MaskTrack R-CNN next) is a package under ``models/`` that a
newcomer can read alone (``models/crossvis/``: config, heads, crossover, criterion, targets,
model, convert). Adding one means writing that package and adding ONE entry to `METHODS`; the
commands (``train``, ``predict``, ``evaluate``, ``demo``, ``export``, ``convert``, ``inspect``)
then work for it without new flags.

The method contract (what the rest of streamvis relies on)
-----------------------------------------------------------
Config: a frozen dataclass (``models/<method>/config.py``) with defaults in code, loaded by
`streamvis.config.from_dict` (unknown keys are errors). It must have these fields, which the
predictor, the trainer and the weights file read:

- ``method: str`` (the `METHODS` key; its default is that key);
- ``num_classes: int``, ``class_names: tuple[str, ...] | None``, ``category_ids: tuple[int, ...] | None``
  (0-based class -> name / results-json category id; None -> ``class + 1``);
- ``test_short_side: int``, ``test_max_size: int`` (the predictor resizes each frame with
  `streamvis.data.transforms.shortest_edge_size` before ``predict``).

Model: an ``nn.Module`` built by ``MethodSpec.build_model(config)``, whose constructor takes the
typed config (and stores it as ``model.config``; nothing sets it afterwards), with

- ``loss(batch: streamvis.structures.PairBatch) -> dict[str, Tensor]``: scalar losses named
  ``loss_*``; the trainer sums them (train mode; called through DDP when distributed);
- ``predict(images: list[Tensor], output_sizes: list[tuple[int, int]] | None = None)
  -> list[streamvis.structures.Instances]``: ``images`` are (3, h, w) uint8 BGR frames, already
  resized (`streamvis.ops.image` states the input contract); one `Instances` per image at its
  output size with ``boxes`` (K, 4) xyxy, ``scores`` (K,), ``classes`` (K,) int64 0-based,
  ``masks`` (K, H, W) bool or probabilities, ``embeddings`` (K, D) (what the trackers read).
  ``predict`` behaves as in eval mode whatever the module's mode.
- optional ``start_video() -> None``: a method whose ``predict`` keeps per-video state (PCAN's
  frame-level memory) resets it here; ``VideoPredictor`` calls it before each video's first frame
  and then feeds that video's frames in order.

Tracker: ``MethodSpec.default_tracker`` names an entry of `streamvis.tracking.TRACKERS` (the
association rule ``streamvis predict`` uses unless ``--tracker`` says otherwise).

Weights: `streamvis.models.weights` writes ``{"model": state_dict, "config": to_dict(config),
"method": name, ...}``; state-dict keys under ``MethodSpec.training_only_prefixes`` may be absent
from an inference-only weights file (``streamvis export`` leaves them out).

Official checkpoints: ``MethodSpec.convert_official(checkpoint, path) -> (state_dict, config)``
raises `streamvis.errors.DataFormatError` for a checkpoint that is not this method's;
``streamvis convert`` tries every method that has a converter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from torch import nn

from streamvis.errors import ConfigError
from streamvis.models.crossvis.config import PRESETS as CROSSVIS_PRESETS
from streamvis.models.crossvis.config import CrossVISConfig
from streamvis.models.crossvis.convert import convert_official as convert_official_crossvis
from streamvis.models.crossvis.model import build_crossvis
from streamvis.models.masktrack.config import MaskTrackConfig
from streamvis.models.masktrack.convert import convert_official as convert_official_masktrack
from streamvis.models.masktrack.model import build_masktrack
from streamvis.models.pcan.config import PRESETS as PCAN_PRESETS
from streamvis.models.pcan.config import PCANConfig
from streamvis.models.pcan.convert import convert_official as convert_official_pcan
from streamvis.models.pcan.model import build_pcan

DEFAULT_METHOD = "crossvis"  # what a config or weights file without ``model.method`` means
# the fields every method config has (see the module docstring)
REQUIRED_CONFIG_FIELDS = ("method", "num_classes", "class_names", "category_ids", "test_short_side",
                          "test_max_size")


@dataclass(frozen=True)
class MethodSpec:
    """Everything streamvis needs to know about one method.

    Attributes:
        config_class: the method's frozen config dataclass (has the `REQUIRED_CONFIG_FIELDS`).
        build_model: config -> a fresh, training-initialised model (see the module docstring).
        default_tracker: name in `streamvis.tracking.TRACKERS` used by ``predict`` / ``demo``.
        convert_official: (loaded official checkpoint, path) -> (state dict, config), or None
            when the method has no official checkpoints to convert.
        presets: named configs, usable as ``model: {preset: NAME}`` in a YAML.
        training_only_prefixes: state-dict prefixes that inference does not need (left out by
            ``streamvis export``; may be absent when a weights file is loaded).
        fill_from_data: (config, `streamvis.data.sampling.DatasetIndex` of the training json) ->
            the config with data-derived fields filled (``streamvis train``), or None.
    """

    config_class: type
    build_model: Callable[[Any], nn.Module]
    default_tracker: str = "default"
    convert_official: Callable[..., tuple[dict, Any]] | None = None
    presets: Mapping[str, Any] = field(default_factory=dict)
    training_only_prefixes: tuple[str, ...] = ()
    fill_from_data: Callable[[Any, Any], Any] | None = None


def _fill_crossvis_from_data(config: CrossVISConfig, index) -> CrossVISConfig:
    """``num_identities: 0`` -> the identity count of the training json (the re-ID proxies)."""
    if config.num_identities != 0:
        return config
    return config.replace(num_identities=max(index.num_identities, 3))  # sqrt(2)*log(nID-1) needs 3


METHODS: dict[str, MethodSpec] = {
    "crossvis": MethodSpec(
        config_class=CrossVISConfig,
        build_model=build_crossvis,
        default_tracker="default",
        convert_official=convert_official_crossvis,
        presets=CROSSVIS_PRESETS,
        training_only_prefixes=("criterion.",),  # the identity proxies of the re-ID loss
        fill_from_data=_fill_crossvis_from_data,
    ),
    "masktrack": MethodSpec(
        config_class=MaskTrackConfig,
        build_model=build_masktrack,
        default_tracker="masktrack",  # the official association (tracking/masktrack.py)
        convert_official=convert_official_masktrack,
    ),
    "pcan": MethodSpec(
        config_class=PCANConfig,
        build_model=build_pcan,
        default_tracker="quasi_dense",
        convert_official=convert_official_pcan,
        presets=PCAN_PRESETS,
    ),
}


def method_spec(name: str) -> MethodSpec:
    """The `MethodSpec` of method `name`.

    Raises:
        ConfigError: an unknown method (the message lists the known ones).
    """
    if name not in METHODS:
        raise ConfigError(f"unknown model.method {name!r}; choose one of: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def method_of(config) -> str:
    """The method name of a method config."""
    return config.method


def check_method_config(config_class: type) -> None:
    """Raise `ConfigError` when `config_class` lacks a field of the method contract."""
    if not is_dataclass(config_class):
        raise ConfigError(f"{config_class.__name__} is not a dataclass")
    names = {f.name for f in fields(config_class)}
    missing = [name for name in REQUIRED_CONFIG_FIELDS if name not in names]
    if missing:
        raise ConfigError(f"{config_class.__name__} lacks the method-contract fields {missing} "
                          "(streamvis.models.build)")


def upgrade_model_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    """A model-config mapping with the current key names: the old ``architecture`` becomes ``method``.

    Configs and weights files written before ``model.method`` existed named the method
    ``architecture``; a mapping without either key means `DEFAULT_METHOD`.
    """
    data = dict(data)
    if "architecture" in data:
        old = data.pop("architecture")
        if "method" in data and data["method"] != old:
            raise ConfigError(f"model.architecture {old!r} (an old name of model.method) and "
                              f"model.method {data['method']!r} disagree; keep only model.method")
        data["method"] = old
    data.setdefault("method", DEFAULT_METHOD)
    return data


def model_config_from_dict(data: Mapping[str, Any] | None, *, prefix: str = "model"):
    """The typed config of the method that ``data["method"]`` names (default `DEFAULT_METHOD`).

    Raises:
        ConfigError: an unknown method, key or value (`streamvis.config.from_dict`).
    """
    from streamvis.config import from_dict

    if data is not None and not isinstance(data, Mapping):
        raise ConfigError(f"config '{prefix}' must be a mapping, got {type(data).__name__}")
    data = upgrade_model_dict(data or {})
    return from_dict(method_spec(str(data["method"])).config_class, data, prefix=prefix)


def build_model(config) -> nn.Module:
    """Build the model of ``config.method`` (a fresh, training-initialised model)."""
    return method_spec(config.method).build_model(config)


def all_presets() -> dict[str, Any]:
    """Every method's presets by name (names are unique across methods)."""
    merged: dict[str, Any] = {}
    for spec in METHODS.values():
        merged.update(spec.presets)
    return merged


def preset(name: str):
    """The named preset config of any method (e.g. ``crossvis_r18_small``)."""
    presets = all_presets()
    if name not in presets:
        raise ConfigError(f"unknown model preset {name!r}; choose one of {sorted(presets)}")
    return presets[name]
