"""How TrackEval combines metric rows: counts summed, ratios averaged over classes.

Shared by `hota`, `clear` and `identity` (each adds its own recomputation of the ratios).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["class_averaged", "summed"]


def summed(rows: list[dict], fields: Iterable[str]) -> dict:
    """``{field: sum over rows}`` (arrays summed elementwise), in Python's summation order."""
    return {field: sum(r[field] for r in rows) for field in fields}


def class_averaged(rows: list[dict], count_fields: Iterable[str], ratio_fields: Iterable[str],
                   array_fields: Iterable[str] = ()) -> dict:
    """TrackEval's ``cls_comb_cls_av``: counts summed, each ratio a plain mean over the rows.

    `ratio_fields` become floats, `array_fields` stay per-alpha arrays (HOTA).
    """
    combined = summed(rows, count_fields)
    for field in array_fields:
        combined[field] = np.mean([r[field] for r in rows], axis=0)
    for field in ratio_fields:
        combined[field] = float(np.mean([r[field] for r in rows], axis=0))
    return combined
