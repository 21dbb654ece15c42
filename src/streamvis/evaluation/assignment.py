"""Minimum-cost assignment with scipy's exact tie-breaking, without importing scipy for small matrices.

TrackEval solves every matching with ``scipy.optimize.linear_sum_assignment``, and three YouTube-VIS
golden rows depend on how it breaks ties between exact duplicate predictions. scipy implements the
shortest augmenting path method of Crouse (IEEE TAES 52(4), 2016, pp. 1685-1686): rows are added one
at a time, each by a Dijkstra-like search over the columns; scipy scans the unvisited columns in a
list that starts in reverse column order and is shrunk by moving its last entry into the visited
slot, takes the first strictly lower reduced cost or, on an equal cost, a column that is still free,
and solves a tall matrix transposed (results sorted by row). `linear_sum_assignment` follows those
rules in plain Python for the small matrices of per-frame matching, and a single row or column
(the commonest case) is scipy's first lowest cost without any search (importing scipy.optimize costs
about 0.7 s of CPU, more than the whole evaluation of a small dataset) and hands larger ones to scipy,
so the answer is scipy's either way (tests compare the two on random and tie-heavy matrices). Once
scipy is imported (a large matrix, many matchings, or anyone else imported it), scipy solves all:
a Python solve costs 20-100 us against scipy's few, so `PYTHON_CALL_BUDGET` bounds what the
import saving may cost.
"""

from __future__ import annotations

import math
import sys

import numpy as np

__all__ = ["PYTHON_CALL_BUDGET", "SMALL_SIZE", "linear_sum_assignment", "solve_in_python"]

# matrices with at most this many entries are solved here; larger ones by scipy (C++)
SMALL_SIZE = 100
# after this many Python solves in one process, importing scipy is the cheaper way on
PYTHON_CALL_BUDGET = 5000
_python_calls = 0


def _augmenting_path(cost, u, v, path, row4col, shortest, row, visited_rows, visited_cols):
    """Shortest augmenting path from free `row`; returns (sink column, its path cost)."""
    num_cols = len(v)
    remaining = list(range(num_cols - 1, -1, -1))  # scipy fills it in reverse order
    for j in range(num_cols):
        shortest[j] = math.inf
    min_value, sink, i = 0.0, -1, row
    while sink == -1:
        visited_rows[i] = True
        lowest, index = math.inf, -1
        cost_i, u_i = cost[i], u[i]
        for position, j in enumerate(remaining):
            reduced = min_value + cost_i[j] - u_i - v[j]
            if reduced < shortest[j]:
                path[j] = i
                shortest[j] = reduced
            if shortest[j] < lowest or (shortest[j] == lowest and row4col[j] == -1):
                lowest, index = shortest[j], position
        min_value = lowest
        if min_value == math.inf:
            raise ValueError("cost matrix is infeasible")
        j = remaining[index]
        if row4col[j] == -1:
            sink = j
        else:
            i = row4col[j]
        visited_cols[j] = True
        remaining[index] = remaining[-1]
        remaining.pop()
    return sink, min_value


def _solve(cost: list[list[float]], num_rows: int, num_cols: int) -> list[int]:
    """Column of each row (num_rows <= num_cols) by successive shortest augmenting paths."""
    u, v = [0.0] * num_rows, [0.0] * num_cols
    shortest, path = [math.inf] * num_cols, [-1] * num_cols
    col4row, row4col = [-1] * num_rows, [-1] * num_cols
    for current in range(num_rows):
        visited_rows, visited_cols = [False] * num_rows, [False] * num_cols
        sink, min_value = _augmenting_path(
            cost, u, v, path, row4col, shortest, current, visited_rows, visited_cols
        )
        u[current] += min_value  # dual update
        for i in range(num_rows):
            if visited_rows[i] and i != current:
                u[i] += min_value - shortest[col4row[i]]
        for j in range(num_cols):
            if visited_cols[j]:
                v[j] -= min_value - shortest[j]
        j = sink  # augment along the path
        while True:
            i = path[j]
            row4col[j] = i
            col4row[i], j = j, col4row[i]
            if i == current:
                break
    return col4row


def _scipy_imported() -> bool:
    return "scipy.optimize" in sys.modules


def linear_sum_assignment(cost_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.optimize.linear_sum_assignment(cost_matrix)`` (minimisation), ties broken as scipy does.

    Args:
        cost_matrix: (R, C) finite costs.

    Returns:
        (row indices, column indices), each (min(R, C),) int64, sorted by row.
    """
    cost_matrix = np.asarray(cost_matrix, dtype=float)
    num_rows, num_cols = cost_matrix.shape
    if num_rows == 0 or num_cols == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    if (num_rows == 1 or num_cols == 1) and np.isfinite(cost_matrix).all():
        # one row (or column, solved transposed): scipy's scan takes the first of the lowest costs
        best = np.array([int(np.argmin(cost_matrix))], dtype=np.int64)
        zero = np.zeros(1, dtype=np.int64)
        return (zero, best) if num_rows == 1 else (best, zero)
    global _python_calls
    if num_rows * num_cols > SMALL_SIZE or _python_calls >= PYTHON_CALL_BUDGET or _scipy_imported():
        from scipy.optimize import linear_sum_assignment as scipy_solver

        return scipy_solver(cost_matrix)
    _python_calls += 1
    return solve_in_python(cost_matrix)


def solve_in_python(cost_matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The plain-Python solver behind `linear_sum_assignment` (any size; O(n^3) Python steps).

    Args:
        cost_matrix: (R, C) finite costs, R, C >= 1.

    Returns:
        (row indices, column indices) sorted by row, exactly as scipy returns them.
    """
    cost_matrix = np.asarray(cost_matrix, dtype=float)
    num_rows, num_cols = cost_matrix.shape
    transpose = num_cols < num_rows  # scipy solves a tall matrix transposed
    cost = (cost_matrix.T if transpose else cost_matrix).tolist()
    if transpose:
        num_rows, num_cols = num_cols, num_rows
    col4row = _solve(cost, num_rows, num_cols)
    if not transpose:
        return np.arange(num_rows, dtype=np.int64), np.asarray(col4row, dtype=np.int64)
    order = sorted(range(num_rows), key=col4row.__getitem__)  # by original row
    return np.asarray([col4row[k] for k in order], dtype=np.int64), np.asarray(order, dtype=np.int64)
