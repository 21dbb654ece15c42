"""streamvis.models: the method table, the weights-file format, shared parts, one package per method.

- ``build.py``: `METHODS` (``model.method`` -> `MethodSpec`), `build_model(config)`, `preset(name)`,
  and the method contract (its module docstring).
- ``weights.py``: the weights / checkpoint file format: `save_weights`, `load`, `load_model`,
  `inspect`, `export_weights`.
- shared parts: ``backbone.py`` (ResNet), ``fpn.py`` (FPN), ``losses.py`` (focal, IoU, dice),
  ``imagenet_weights.py`` (ImageNet backbone files).
- ``crossvis/``: CrossVIS (config, fcos, condinst, embedding, targets, crossover, criterion,
  model, convert, rule_weights).

The entry points are re-exported lazily (importing this package imports no method):
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "METHODS": "build", "MethodSpec": "build", "build_model": "build", "preset": "build",
    "load_model": "weights", "save_weights": "weights", "inspect": "weights",
    "CrossVIS": "crossvis.model", "CrossVISConfig": "crossvis.config",
    "optimize_for_inference": "crossvis.model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"streamvis.models.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'streamvis.models' has no attribute {name!r}")
