"""The bundled default model: ``default_model.pth`` (a streamvis weights file) and its model card.

Both files ship inside the package (pyproject: ``[tool.setuptools.package-data] streamvis =
["assets/*"]``), so `streamvis demo` runs without any download. The model is a ResNet-18 CrossVIS
trained with ``streamvis train --config configs/synthetic_r18.yaml`` on the generated synthetic
videos; the card (``MODEL_CARD.md``) records its config, seed, iterations, wall time and metrics.

Example::

    from streamvis.assets import default_weights_path
    from streamvis.models.weights import load_model
    model = load_model(default_weights_path())
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from streamvis.errors import StreamvisError

__all__ = ["DEFAULT_WEIGHTS_NAME", "MODEL_CARD_NAME", "assets_dir", "default_weights_path", "model_card_path"]

DEFAULT_WEIGHTS_NAME = "default_model.pth"
MODEL_CARD_NAME = "MODEL_CARD.md"
TRAIN_COMMAND = "streamvis train --config configs/synthetic_r18.yaml"


def assets_dir() -> Path:
    """The folder holding the bundled files (this package's folder, installed or editable)."""
    try:
        folder = resources.files(__name__)
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - a zipped or odd install
        folder = None
    if isinstance(folder, Path):
        return folder
    return Path(__file__).resolve().parent


def default_weights_path(*, must_exist: bool = True) -> Path:
    """Path of the bundled default model (``streamvis/assets/default_model.pth``).

    Args:
        must_exist: raise when the file is absent (e.g. a source checkout before training).

    Returns:
        The weights file's path.

    Raises:
        StreamvisError: the file is absent; the message says how to make one or pass ``--weights``.
    """
    path = assets_dir() / DEFAULT_WEIGHTS_NAME
    if must_exist and not path.is_file():
        raise StreamvisError(
            f"{path}: the bundled model is missing; train one with `{TRAIN_COMMAND}` "
            "(then copy its weights here) or pass --weights W.pth"
        )
    return path


def model_card_path() -> Path:
    """Path of the bundled model's card (``streamvis/assets/MODEL_CARD.md``; may not exist yet)."""
    return assets_dir() / MODEL_CARD_NAME
