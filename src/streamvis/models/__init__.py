"""streamvis.models: CrossVIS and its parts.

The main entry points are re-exported lazily (importing this package does not import the
training criterion or the builder until they are used):

- `ModelConfig`, `build_model(cfg)`, `preset(name)` (models/build.py)
- `CrossVIS`, `optimize_for_inference(model)` (models/crossvis.py)
- `HeadOutputs` (models/fcos.py)
- `load_model(weights_path)`, `convert_official(checkpoint)` (models/convert.py)
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ModelConfig": "build", "build_model": "build", "preset": "build", "PRESETS": "build",
    "CrossVIS": "crossvis", "optimize_for_inference": "crossvis",
    "HeadOutputs": "fcos",
    "load_model": "convert", "convert_official": "convert",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"streamvis.models.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'streamvis.models' has no attribute {name!r}")
