"""Readable text tables of an `EvalResult`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from streamvis.evaluation.accumulate import SUMMARY_SETTINGS

__all__ = ["format_table"]


def _category_names(categories) -> dict[str, str]:
    """``str(id) -> name`` from a list of category dicts, a mapping id -> name, or None."""
    if categories is None:
        return {}
    if isinstance(categories, Mapping):
        return {str(k): str(v) for k, v in categories.items()}
    if isinstance(categories, Iterable):
        return {str(c["id"]): str(c.get("name", c["id"])) for c in categories}
    raise TypeError(f"categories must be a list of dicts or a mapping, got {type(categories).__name__}")


def _summary_line(name: str, is_ap: bool, iou_thr, area: str, max_det: int, value: float) -> str:
    title = "Average Precision  (AP)" if is_ap else "Average Recall     (AR)"
    iou = "0.50:0.95" if iou_thr is None else f"{iou_thr:0.2f}"
    return f" {title} @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_det:>3d} ] = {value:7.4f}   {name}"


def format_table(result, categories=None, per_class: bool = False) -> str:
    """The 12 summary numbers as the official toolkit prints them, optionally per-category AP/AR.

    Args:
        result: an `EvalResult`.
        categories: category dicts (``id``, ``name``) or a mapping id -> name, for per-class names.
        per_class: also list AP and AR (IoU .50:.95, area all, maxDets 100) per category; "-" marks a
            category without non-crowd ground truth.

    Returns:
        The table as one string (no trailing newline).
    """
    lines = [
        _summary_line(name, is_ap, iou_thr, area, max_det, result.stats_named[name])
        for name, is_ap, iou_thr, area, max_det in SUMMARY_SETTINGS
    ]
    if per_class:
        names = _category_names(categories)
        width = max([len("category")] + [len(names.get(k, "")) for k in result.per_category_AP])
        lines += ["", f" {'id':>5}  {'category':<{width}}  {'AP':>7}  {'AR':>7}"]
        for key, ap in result.per_category_AP.items():
            ar = result.per_category_AR[key]
            ap_text = "-" if ap < 0 else f"{ap:.4f}"
            ar_text = "-" if ar < 0 else f"{ar:.4f}"
            lines.append(f" {key:>5}  {names.get(key, ''):<{width}}  {ap_text:>7}  {ar_text:>7}")
        if any(v < 0 for v in result.per_category_AP.values()):
            lines.append(" (-: no non-crowd ground truth; AP and AR at IoU .50:.95, area all, maxDets 100)")
    return "\n".join(lines)
