"""Read, validate and write YouTube-VIS 2019/2021 and OVIS json files (annotations and results; no torch).

Validation is `streamvis.data.validate` (the one validator, which ``check-dataset`` also uses):
loading raises its first error-level record. It never rasterises masks: it checks types, ids,
list lengths, RLE sizes, uncompressed counts and compressed RLE strings (decoded in bulk) from the
dicts. Every error is a `DataFormatError` naming the file, the item (``videos[3] (id 7)``,
``annotations[12] (id 40)``, ``results[5]``) and the field. Loaded dicts are returned unchanged
(extra keys are kept).

Untrusted input limits of `read_json`: files up to `MAX_JSON_BYTES` (4 GiB; the environment
variable ``STREAMVIS_MAX_JSON_BYTES`` changes it), nesting up to `MAX_JSON_DEPTH` (1024) levels,
numbers up to 4300 digits (Python's int limit); past them a `DataFormatError` says which.
"""

from __future__ import annotations

import json
import mmap
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from streamvis.data.validate import raise_first_error, results_problems, ytvis_problems
from streamvis.errors import DataFormatError, StreamvisError
from streamvis.utils.io import atomic_open

try:  # optional speed-up; results equal json's (both parse floats correctly rounded)
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a declared dependency
    _orjson = None

__all__ = [
    "annotations_by_video",
    "categories_by_id",
    "load_results",
    "load_ytvis",
    "max_json_bytes",
    "read_json",
    "results_by_video",
    "validate_results",
    "validate_ytvis",
    "videos_by_id",
    "write_results",
    "write_ytvis",
]

MAX_JSON_BYTES = 4 << 30  # 4 GiB: OVIS / YouTube-VIS 2021 train jsons are a few hundred MB
MAX_JSON_DEPTH = 1024  # orjson's fixed nesting limit; YouTube-VIS files nest 6 levels deep


# ----------------------------------------------------------------------------------------- reading
def read_json(path):
    """Parse a json file (with orjson, straight from a memory map, when orjson is installed).

    What orjson rejects (NaN / Infinity literals, a BOM, lone surrogates) json reads, as before;
    integers past 64 bits come back as floats (an id that large is reported as not an integer).

    Raises:
        StreamvisError: the file does not exist or is not a regular file.
        DataFormatError: malformed json (with line and column), text that is not UTF-8, or a file
            past the limits (size `max_json_bytes()`, nesting `MAX_JSON_DEPTH`, 4300-digit numbers).
    """
    path = Path(path)
    if not path.is_file():
        raise StreamvisError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    size, limit = path.stat().st_size, max_json_bytes()
    if size > limit:
        raise DataFormatError(
            f"the file is {size} bytes, more than the {limit}-byte limit for json input "
            "(set STREAMVIS_MAX_JSON_BYTES to raise it)", path=path)
    if _orjson is not None:
        try:
            return _orjson_load(path)
        except _orjson.JSONDecodeError as err:
            if "recursion" in str(err) or "depth" in str(err):
                raise _too_deep(path) from None
            # orjson is stricter (NaN, Infinity, BOM, 1e400): json decides, with its messages
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        message = f"malformed json: {e.msg} at line {e.lineno}, column {e.colno}"
        raise DataFormatError(message, path=path) from e
    except UnicodeDecodeError as e:
        raise DataFormatError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=path) from e
    except RecursionError:
        raise _too_deep(path) from None
    except ValueError as e:  # an integer literal past Python's 4300-digit conversion limit
        raise DataFormatError(f"malformed json: {e}", path=path) from None


def max_json_bytes() -> int:
    """The size limit of json input: ``STREAMVIS_MAX_JSON_BYTES`` when set, else `MAX_JSON_BYTES`."""
    value = os.environ.get("STREAMVIS_MAX_JSON_BYTES", "")
    try:
        return int(value) if value.strip() else MAX_JSON_BYTES
    except ValueError:
        raise StreamvisError(f"STREAMVIS_MAX_JSON_BYTES must be a number of bytes, got {value!r}") from None


def _too_deep(path) -> DataFormatError:
    return DataFormatError(
        f"json nested deeper than {MAX_JSON_DEPTH} levels (a YouTube-VIS file nests 6)", path=path)


def _orjson_load(path: Path):
    """orjson on a read-only memory map of `path` (no copy of a large file; mmap needs a non-empty one)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return _orjson.loads(b"")  # raises JSONDecodeError
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as view:
            return _orjson.loads(view)


def load_ytvis(path) -> dict:
    """Read and validate a YouTube-VIS 2019/2021 or OVIS annotation json.

    Args:
        path: the json file (``annotations`` may be absent or null for valid/test splits).

    Returns:
        The parsed dict, unchanged.
    """
    data = read_json(path)
    validate_ytvis(data, path=path)
    return data


def load_results(path_or_list, gt: dict, *, path=None) -> list[dict]:
    """Read (when given a path) and validate a results list against the ground truth `gt`.

    Args:
        path_or_list: a results json file, or an already-loaded list.
        gt: the ground-truth dict (as returned by `load_ytvis`).
        path: the file to name in errors when `path_or_list` is a list.

    Returns:
        The results list: ``[{video_id, category_id, score, segmentations: [RLE | None] * length}]``.
    """
    if isinstance(path_or_list, (str, Path)):
        path = path_or_list
        path_or_list = read_json(path)
    validate_results(path_or_list, gt, path=path)
    return path_or_list


# -------------------------------------------------------------------------------------- validation
def validate_ytvis(data: dict, path=None) -> None:
    """Validate a YouTube-VIS / OVIS annotation dict (both years' layouts; extra keys are allowed).

    The checks are `streamvis.data.validate.ytvis_problems`' (the one validator that
    ``check-dataset`` and ``package`` also use); this raises its first error-level record.

    Args:
        data: the parsed json.
        path: the file to name in errors.

    Raises:
        DataFormatError: the first problem found, naming the file, the item and the field.
    """
    raise_first_error(ytvis_problems(data, path=path))


def validate_results(results, gt: dict | None, path=None) -> None:
    """Validate a results list (against `gt`'s videos and categories when given).

    Each entry needs ``video_id``, ``category_id`` (known to `gt`), a finite numeric ``score`` and
    ``segmentations``: one RLE dict (of the video's size) or null per frame of the video. The checks
    are `streamvis.data.validate.results_problems`'; this raises its first error-level record.

    Raises:
        DataFormatError: the first problem found, naming the file, ``results[i]`` and the field.
    """
    raise_first_error(results_problems(results, gt, path=path))


# ----------------------------------------------------------------------------------------- writing
def json_default(value):
    """Make what json cannot write natively writable: bytes RLE counts, numpy scalars and arrays."""
    if isinstance(value, bytes):
        return value.decode("ascii")
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not json serializable")


def _write_json(path, obj) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, allow_nan=False, default=json_default, separators=(",", ":"))


def write_results(path, entries: list[dict], gt: dict | None = None) -> None:
    """Validate (against `gt` if given) and write a results json atomically.

    ``bytes`` RLE counts become strings and numpy scalars plain numbers, so the file is the one the
    official evaluation server accepts.
    """
    validate_results(entries, gt, path=path)
    _write_json(path, entries)


def write_ytvis(path, data: dict) -> None:
    """Validate and write a YouTube-VIS annotation json atomically (bytes counts become strings)."""
    validate_ytvis(data, path=path)
    _write_json(path, data)


# ---------------------------------------------------------------------------------------- indexing
def videos_by_id(gt: dict) -> dict[int, dict]:
    """``{video id: video dict}``."""
    return {v["id"]: v for v in gt["videos"]}


def categories_by_id(gt: dict) -> dict[int, dict]:
    """``{category id: category dict}``."""
    return {c["id"]: c for c in gt["categories"]}


def annotations_by_video(gt: dict) -> dict[int, list[dict]]:
    """``{video id: [annotation dicts in file order]}``; every video is a key (possibly empty list)."""
    grouped = {v["id"]: [] for v in gt["videos"]}
    for ann in gt.get("annotations") or []:
        grouped.setdefault(ann["video_id"], []).append(ann)
    return grouped


def results_by_video(results: list[dict]) -> dict[int, list[dict]]:
    """``{video id: [result entries in file order]}`` (only videos that have results)."""
    grouped = defaultdict(list)
    for entry in results:
        grouped[entry["video_id"]].append(entry)
    return dict(grouped)
