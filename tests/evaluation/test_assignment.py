"""`streamvis.evaluation.assignment`: scipy's answers, ties included, without importing scipy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_solver

from streamvis.evaluation import assignment
from streamvis.evaluation.assignment import SMALL_SIZE, linear_sum_assignment, solve_in_python

CASES = Path(__file__).resolve().parents[1] / "data" / "ytvis_eval"


def _matrices(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for trial in range(count):
        rows, cols = int(rng.integers(1, 11)), int(rng.integers(1, 11))
        kind = trial % 4
        if kind == 0:
            yield rng.random((rows, cols))
        elif kind == 1:  # many exact ties
            yield rng.integers(0, 3, (rows, cols)).astype(float)
        elif kind == 2:  # duplicate columns, as exact duplicate predictions make
            base = -rng.random((rows, (cols + 1) // 2))
            yield np.repeat(base, 2, axis=1)[:, :cols]
        else:  # IoU-like values on a coarse grid, negated as HOTA/CLEAR do
            yield -(rng.integers(0, 2, (rows, cols)) * rng.choice([0.25, 0.5, 0.75], (rows, cols)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_answer_as_scipy(seed):
    for matrix in _matrices(seed, 1500):
        expected, got = scipy_solver(matrix), solve_in_python(matrix)
        assert np.array_equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]), matrix


def test_shapes_and_large_matrices():
    rows, cols = linear_sum_assignment(np.zeros((0, 3)))
    assert rows.shape == cols.shape == (0,)
    rows, cols = solve_in_python(np.array([[1.0], [0.0], [2.0]]))  # tall: solved transposed
    assert rows.tolist() == [1] and cols.tolist() == [0]
    big = np.random.default_rng(3).random((11, 11))
    assert big.size > SMALL_SIZE
    assert [a.tolist() for a in linear_sum_assignment(big)] == [a.tolist() for a in scipy_solver(big)]


def test_python_solves_are_budgeted(monkeypatch):
    """Many matchings: scipy's import is then the cheaper way on (the answers are the same)."""
    monkeypatch.setattr(assignment, "_scipy_imported", lambda: False)  # as if nobody had imported it yet
    monkeypatch.setattr(assignment, "_python_calls", 0)
    monkeypatch.setattr(assignment, "PYTHON_CALL_BUDGET", 2)
    calls = []
    monkeypatch.setattr(assignment, "solve_in_python", lambda m: calls.append(m) or scipy_solver(m))
    for _ in range(4):
        linear_sum_assignment(np.eye(2))
    assert len(calls) == 2


def test_tie_dependent_golden_case_runs_without_scipy():
    """Case 012's HOTA depends on scipy's tie-breaking; it passes (test_tracking_golden) without scipy."""
    code = (
        "import json, sys\n"
        "from streamvis.evaluation.tracking import evaluate_tracking\n"
        f"folder = {str(CASES / 'case_012')!r}\n"
        "gt = json.load(open(folder + '/gt.json')); res = json.load(open(folder + '/results.json'))\n"
        "got = evaluate_tracking(gt, res).to_json()['per_video']['video_00002']['2']['HOTA']['HOTA']\n"
        "exp = json.load(open(folder + '/expected_trackeval.json'))['metrics']['per_video']\n"
        "assert abs(got - exp['video_00002']['2']['HOTA']['HOTA']) <= 1e-9\n"
        "assert 'scipy' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert json.loads((CASES / "case_012" / "expected_trackeval.json").read_text())


@pytest.mark.parametrize("seed", [0, 1])
def test_single_rows_and_columns_take_scipy_s_choice_among_ties(monkeypatch, seed):
    """The vector shortcut (no solver at all) against scipy, on tie-heavy rows and columns."""
    monkeypatch.setattr(assignment, "_scipy_imported", lambda: False)
    monkeypatch.setattr(assignment, "solve_in_python", lambda m: pytest.fail("vector sent to the solver"))
    rng = np.random.default_rng(seed)
    for trial in range(2000):
        n = int(rng.integers(1, 12))
        values = rng.integers(0, 3, n).astype(float) if trial % 2 else -rng.choice([0.0, -0.0, 0.5], n)
        for matrix in (values[None, :], values[:, None]):
            expected, got = scipy_solver(matrix), linear_sum_assignment(matrix)
            assert [a.tolist() for a in got] == [a.tolist() for a in expected], matrix
