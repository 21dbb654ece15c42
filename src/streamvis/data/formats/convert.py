"""Convert annotations or results between formats through the YouTube-VIS dict (what
``streamvis convert-data`` runs).

Ground truth: ``read_gt`` of the source format -> optional category map -> the YouTube-VIS
validator (`streamvis.data.validate.ytvis_problems`; every error record is counted, the first
quoted) -> ``write_gt`` of the target format into a temporary folder that
replaces the output folder only when everything succeeded (nothing partial is ever left). A
YouTube-VIS output is read back with `load_ytvis`.

Results: the same with ``read_results`` / ``write_results``; results are always relative to a
ground-truth dataset (its videos, sizes and categories), given as a YouTube-VIS dict.
"""

from __future__ import annotations

import inspect
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from streamvis.data.formats import get_format
from streamvis.data.formats.common import atomic_output_dir
from streamvis.data.masks import rle_area
from streamvis.data.validate import raise_error_summary, results_problems, ytvis_problems
from streamvis.data.ytvis import load_results, load_ytvis
from streamvis.errors import DataFormatError, StreamvisError

__all__ = [
    "ConversionSummary",
    "apply_category_map",
    "convert",
    "format_summary",
    "parse_category_map",
    "parse_options",
    "summarize",
]


@dataclass
class ConversionSummary:
    """What a conversion wrote: the counts of `summarize` plus where and what."""

    source: str
    target: str
    kind: str
    out: str
    counts: dict = field(default_factory=dict)


def parse_options(items: list[str] | None) -> dict:
    """``["key=value", ...]`` -> ``{key: value}``; json values (numbers, lists) are parsed, else text."""
    options = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise StreamvisError(f"option {item!r} is not KEY=VALUE")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def _call(function, *args, options: dict, name: str, **extra):
    """Call a format function with `options` (and the `extra` keywords it accepts), naming bad options."""
    parameters = inspect.signature(function).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    accepted = {k: v for k, v in extra.items() if takes_any or k in parameters}
    unknown = [k for k in options if not takes_any and k not in parameters]
    if unknown:
        known = [
            k for k, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and k not in extra
        ]
        raise StreamvisError(f"{name} does not take the option(s) {unknown}; it takes {known or 'none'}")
    return function(*args, **accepted, **options)


def _read_gt(reader, source: str, input_path, category_map: dict | None, options: dict) -> dict:
    """The source's ground truth as a validated YouTube-VIS dict (category map applied)."""
    dataset = _call(reader.read_gt, input_path, options=options, name=f"{source} read_gt")
    if category_map:
        dataset = apply_category_map(dataset, category_map)
    raise_error_summary(ytvis_problems(dataset, path=f"{input_path} (converted)"),
                        f"the ground truth converted from {source}")
    return dataset


def _read_results(
    reader, source: str, input_path, gt, category_map, options: dict
) -> tuple[dict, list[dict]]:
    """The source's results as validated YouTube-VIS entries of `gt` (category map applied to both)."""
    if gt is None:
        raise StreamvisError("converting results needs the ground truth they refer to (--gt GT.json)")
    if not hasattr(reader, "read_results"):
        raise StreamvisError(f"format {source!r} has no results form")
    entries = _call(
        reader.read_results, input_path, options=options, name=f"{source} read_results", dataset=gt
    )
    dataset = gt
    if category_map:
        dataset, entries = apply_category_map(gt, category_map, entries)
    raise_error_summary(results_problems(entries, dataset, path=f"{input_path} (converted)"),
                        f"the results converted from {source}")
    return dataset, entries


def convert(
    source: str,
    input_path,
    target: str,
    out_dir,
    *,
    results: bool = False,
    gt: dict | None = None,
    category_map: dict | None = None,
    read_options: dict | None = None,
    write_options: dict | None = None,
    overwrite: bool = False,
) -> ConversionSummary:
    """Convert `input_path` (format `source`) into the folder `out_dir` (format `target`).

    Args:
        source, target: format names (keys of `streamvis.data.formats.FORMATS`).
        input_path: the source file or folder.
        out_dir: the output folder (created atomically; an existing non-empty one needs `overwrite`).
        results: convert results (needs `gt`) instead of ground truth.
        gt: the ground-truth YouTube-VIS dict the results refer to.
        category_map: ``{source name: target name | None}`` (see `apply_category_map`).
        read_options, write_options: keyword options of the source reader / target writer.

    Returns:
        The `ConversionSummary` (videos, frames, tracks, masks, classes of what was written).

    Raises:
        StreamvisError / DataFormatError: unreadable or invalid input, invalid output, bad options.
    """
    reader, writer = get_format(source), get_format(target)
    if results and not hasattr(writer, "write_results"):
        raise StreamvisError(f"format {target!r} has no results form")
    if results:
        dataset, entries = _read_results(reader, source, input_path, gt, category_map, read_options or {})
    else:
        dataset, entries = _read_gt(reader, source, input_path, category_map, read_options or {}), None
    with atomic_output_dir(out_dir, overwrite=overwrite) as tmp:
        if results:
            _call(
                writer.write_results,
                entries,
                dataset,
                tmp,
                options=write_options or {},
                name=f"{target} write_results",
            )
        else:
            _call(writer.write_gt, dataset, tmp, options=write_options or {}, name=f"{target} write_gt")
        if target == "ytvis":  # read the written file back with the YouTube-VIS loader
            if results:
                load_results(Path(tmp) / writer.RESULTS_FILE, dataset)
            else:
                load_ytvis(Path(tmp) / writer.GT_FILE)
    counts = summarize(dataset, entries)
    return ConversionSummary(source, target, "results" if results else "ground truth", str(out_dir), counts)


def format_summary(summary: ConversionSummary) -> str:
    """One line of counts and one of classes, e.g. ``cvat -> ytvis (ground truth): 2 videos, ...``."""
    c = summary.counts
    classes = ", ".join(f"{name} {n}" for name, n in c["classes"].items())
    text = (
        f"{summary.source} -> {summary.target} ({summary.kind}): {c['videos']} videos, {c['frames']} frames, "
        f"{c['tracks']} tracks, {c['masks']} masks, {len(c['classes'])} classes -> {summary.out}\n"
        f"  tracks per class: {classes or '(none)'}"
    )
    if c.get("empty_tracks") and summary.target != "ytvis":
        text += (
            f"\n  note: {c['empty_tracks']} tracks have no non-empty mask; {summary.target} stores objects "
            "frame by frame, so they are not in the output"
        )
    return text


# --------------------------------------------------------------------------- categories
def parse_category_map(text: str | None) -> dict[str, str | None]:
    """Parse ``--category-map``: a json file ``{"source": "target" | null}`` or ``"a=b,c=d,e="``.

    A null / empty target drops that category (and its objects).
    """
    if not text:
        return {}
    path = Path(text)
    if path.suffix == ".json" or path.is_file():
        from streamvis.data.ytvis import read_json

        mapping = read_json(path)
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in mapping.items()
        ):
            raise DataFormatError(
                'a category map must be a json object {"source name": "target name" | null}', path=path
            )
        return mapping
    mapping = {}
    for item in text.split(","):
        source, sep, target = item.partition("=")
        if not sep or not source.strip():
            raise StreamvisError(
                f"--category-map: {item!r} is not SOURCE=TARGET (use SOURCE= to drop a class)"
            )
        mapping[source.strip()] = target.strip() or None
    return mapping


def apply_category_map(dataset: dict, mapping: dict[str, str | None], results: list[dict] | None = None):
    """Rename, merge (two sources -> one target) or drop (target None) categories by name.

    Category ids are kept: a renamed category keeps its id, a merged one takes the id of its first
    source (in the dataset's order), so results written against the original ids still match.
    The key ``"*"`` applies to every category the map does not name (``"*": None`` keeps only the
    named ones). Annotations (and `results`, if given) of a dropped category are removed.

    Returns:
        The new dataset dict (and the new results list when `results` is given).

    Raises:
        StreamvisError: a source name that is not a category of the dataset (with the known names).
    """
    names = [c["name"] for c in dataset["categories"]]
    unknown = sorted(set(mapping) - set(names) - {"*"})
    if unknown:
        raise StreamvisError(f"--category-map names {unknown}, which are not categories here; known: {names}")
    target_ids: dict[str, int] = {}  # target name -> the id it keeps
    new_id_of_old: dict[int, int | None] = {}
    for category in dataset["categories"]:
        name = category["name"]
        target = mapping[name] if name in mapping else mapping.get("*", name)
        if target is None:
            new_id_of_old[category["id"]] = None
            continue
        target_ids.setdefault(target, category["id"])
        new_id_of_old[category["id"]] = target_ids[target]
    out = dict(dataset)
    out["categories"] = [{"id": i, "name": n} for n, i in target_ids.items()]
    out["annotations"] = [
        {**ann, "category_id": new_id_of_old[ann["category_id"]]}
        for ann in dataset.get("annotations") or []
        if new_id_of_old[ann["category_id"]] is not None
    ]
    if results is None:
        return out
    new_results = [
        {**e, "category_id": new_id_of_old[e["category_id"]]}
        for e in results
        if new_id_of_old.get(e["category_id"]) is not None
    ]
    return out, new_results


# --------------------------------------------------------------------------- summary
def summarize(dataset: dict, results: list[dict] | None = None) -> dict:
    """Counts of a dataset (or of `results` over its videos): videos, frames, tracks, masks, classes.

    ``classes`` maps each category name to its number of tracks; ``empty_tracks`` counts tracks
    without any non-empty mask (formats that store objects frame by frame cannot hold them).
    """
    entries = dataset.get("annotations") or [] if results is None else results
    names = {c["id"]: c["name"] for c in dataset["categories"]}
    per_class = Counter(names[e["category_id"]] for e in entries)
    return {
        "videos": len(dataset["videos"]),
        "frames": sum(v["length"] for v in dataset["videos"]),
        "tracks": len(entries),
        "masks": sum(sum(s is not None for s in e["segmentations"]) for e in entries),
        "classes": {c["name"]: per_class.get(c["name"], 0) for c in dataset["categories"]},
        "empty_tracks": sum(not any(_non_empty(s) for s in e["segmentations"]) for e in entries),
    }


def _non_empty(seg) -> bool:
    if seg is None:
        return False
    return rle_area(seg) > 0 if isinstance(seg, dict) else True  # a valid polygon has an area
