"""YouTube-VIS / OVIS json in the format-module interface (the neutral form; `data.ytvis` does the work).

``write_gt(dataset, out)`` writes ``out`` as a json file, or ``out/annotations.json`` when `out` is
a folder (no ``.json`` suffix); ``write_results`` likewise ``out/results.json``.
"""

from __future__ import annotations

from pathlib import Path

from streamvis.data.ytvis import load_results, load_ytvis, write_ytvis
from streamvis.data.ytvis import write_results as _write_results

GT_FILE = "annotations.json"
RESULTS_FILE = "results.json"


def _target(out_path, name: str) -> Path:
    out_path = Path(out_path)
    return out_path if out_path.suffix == ".json" else out_path / name


def read_gt(path, **options) -> dict:
    """Read and validate a YouTube-VIS annotation json (no options)."""
    _no_options(options)
    return load_ytvis(path)


def write_gt(dataset: dict, out_path, **options) -> None:
    """Validate and write `dataset` atomically (compressed RLE counts as strings)."""
    _no_options(options)
    write_ytvis(_target(out_path, GT_FILE), dataset)


def read_results(path, *, dataset: dict | None = None, **options) -> list[dict]:
    """Read a results json; validated against `dataset` when given."""
    _no_options(options)
    if dataset is None:
        from streamvis.data.ytvis import read_json, validate_results

        results = read_json(path)
        validate_results(results, None, path=path)
        return results
    return load_results(path, dataset)


def write_results(results: list[dict], dataset: dict, out_path, **options) -> None:
    """Validate `results` against `dataset` and write them atomically."""
    _no_options(options)
    _write_results(_target(out_path, RESULTS_FILE), results, dataset)


def _no_options(options: dict) -> None:
    if options:
        from streamvis.errors import StreamvisError

        raise StreamvisError(f"the ytvis format takes no options, got {sorted(options)}")
