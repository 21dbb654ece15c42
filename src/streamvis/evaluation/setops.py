"""Set operations on integer key arrays by sorting, for the evaluation's flat tables.

numpy 2's ``np.unique`` (and so ``intersect1d``, ``union1d`` and ``isin`` on large ranges) imports
``numpy.ma`` on first use, about 20 ms of a ``streamvis evaluate`` run; these sort-based versions
give the same results for 1-D integer arrays without it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["find", "intersect", "isin", "union", "unique", "unique_inverse"]


def unique(values: np.ndarray) -> np.ndarray:
    """(U,) sorted distinct values of the 1-D array `values` (as ``np.unique``)."""
    ordered = np.sort(np.asarray(values), kind="stable")
    if ordered.size == 0:
        return ordered
    return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]


def unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and, for each input value, its index among them (as ``np.unique``)."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    first = np.concatenate([[True], ordered[1:] != ordered[:-1]]) if ordered.size else np.zeros(0, bool)
    inverse = np.empty(values.size, dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    return ordered[first], inverse


def find(table: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, found): where each of `values` sits in the sorted distinct `table`, and whether it is there."""
    values = np.asarray(values)
    if table.size == 0:
        return np.zeros(values.shape, np.int64), np.zeros(values.shape, dtype=bool)
    index = np.minimum(np.searchsorted(table, values), table.size - 1)
    return index, table[index] == values


def isin(values: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(N,) bool: each of `values` occurs in `candidates` (as ``np.isin``)."""
    return find(unique(candidates), values)[1]


def intersect(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Sorted distinct values present in both arrays (as ``np.intersect1d``)."""
    left = unique(first)
    return left[isin(left, second)]


def union(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Sorted distinct values present in either array (as ``np.union1d``)."""
    return unique(np.concatenate([np.asarray(first), np.asarray(second)]))
