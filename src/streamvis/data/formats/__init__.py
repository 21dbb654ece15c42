"""Outside annotation and results formats, one module per format, all converting to/from the
YouTube-VIS dict (the neutral form; see `streamvis.data.formats.common`).

Every module exposes plain functions (no torch import):

- ``read_gt(path, **options) -> dict`` and ``write_gt(dataset, out_path, **options) -> None``;
- for formats that carry results, ``read_results(path, **options) -> list[dict]`` (YouTube-VIS
  results entries; ``dataset=`` the ground-truth dict to match videos and categories) and
  ``write_results(results, dataset, out_path, **options) -> None``.

`FORMATS` is a plain table of names to modules; `get_format` imports one by name, so reading a
CVAT file never imports the PNG formats.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from streamvis.errors import StreamvisError

__all__ = ["FORMATS", "get_format"]

# format name (as on the command line) -> module (imported on first use)
FORMATS: dict[str, str] = {
    "ytvis": "streamvis.data.formats.ytvis",
    "kitti-mots": "streamvis.data.formats.kitti_mots",
    "mots-challenge": "streamvis.data.formats.mots_challenge",
    "bdd-mots": "streamvis.data.formats.bdd_mots",
    "davis": "streamvis.data.formats.davis",
    "coco-video": "streamvis.data.formats.coco_video",
    "cvat": "streamvis.data.formats.cvat",
    "labelme": "streamvis.data.formats.labelme",
}


def get_format(name: str) -> ModuleType:
    """Import the module of format `name` (a key of `FORMATS`).

    Raises:
        StreamvisError: an unknown name (listing the known ones), or a module that is not installed.
    """
    if name not in FORMATS:
        raise StreamvisError(f"unknown format {name!r}; known formats: {', '.join(FORMATS)}")
    try:
        return importlib.import_module(FORMATS[name])
    except ModuleNotFoundError as err:
        if err.name != FORMATS[name]:
            raise
        raise StreamvisError(f"format {name!r} ({FORMATS[name]}) is not available in this install") from err
