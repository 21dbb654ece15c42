"""`streamvis evaluate`: the table, --out json, --per-class, clean errors, and no heavy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamvis.cli import main

REPO = Path(__file__).resolve().parents[2]
_SHARED = Path(os.environ.get("STREAMVIS_SHARED", REPO.parent / "shared")) / "golden" / "ytvis_eval"
CASES = _SHARED if _SHARED.is_dir() else REPO / "tests" / "data" / "ytvis_eval"
CASE = CASES / "case_013"  # non-contiguous category and video ids, mixed GT formats


def test_prints_table_and_writes_metrics(tmp_path, capsys):
    out = tmp_path / "sub" / "metrics.json"
    code = main(
        [
            "evaluate",
            "--gt",
            str(CASE / "gt.json"),
            "--results",
            str(CASE / "results.json"),
            "--out",
            str(out),
            "--per-class",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    expected = json.loads((CASE / "expected.json").read_text())
    metrics = json.loads(out.read_text())
    for key in ("stats_named", "per_category_AP", "per_category_AR"):
        assert metrics[key] == pytest.approx(expected[key], abs=1e-9, rel=0)
    assert f"= {expected['stats'][0]:7.4f}" in printed.splitlines()[0]
    gt = json.loads((CASE / "gt.json").read_text())
    for category in gt["categories"]:
        assert any(
            line.split()[:2] == [str(category["id"]), category["name"]] for line in printed.splitlines()
        )
    assert not list(out.parent.glob(".*.tmp"))  # atomic write left no temporary file


def test_without_per_class_prints_twelve_lines(capsys):
    assert main(["evaluate", "--gt", str(CASE / "gt.json"), "--results", str(CASE / "results.json")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 12 and lines[6].startswith(" Average Recall")


def test_empty_results_warn_on_stderr(tmp_path, capsys):
    case = CASES / "case_008"
    assert main(["evaluate", "--gt", str(case / "gt.json"), "--results", str(case / "results.json")]) == 0
    captured = capsys.readouterr()
    assert "warning" in captured.err and "empty" in captured.err
    assert "=  0.0000" in captured.out.splitlines()[0]


def test_bad_results_exit_2_with_file_and_field(tmp_path, capsys):
    results = json.loads((CASE / "results.json").read_text())
    results[3]["score"] = "high"
    bad = tmp_path / "bad_results.json"
    bad.write_text(json.dumps(results))
    code = main(["evaluate", "--gt", str(CASE / "gt.json"), "--results", str(bad)])
    assert code == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "results[3]" in err and "score" in err
    assert "Traceback" not in err


def test_missing_gt_file_exit_2(tmp_path, capsys):
    code = main(["evaluate", "--gt", str(tmp_path / "nope.json"), "--results", str(CASE / "results.json")])
    assert code == 2
    assert "nope.json" in capsys.readouterr().err


def test_subprocess_bad_input(tmp_path):
    """`python -m streamvis evaluate` on bad input: exit code 2, the file and field named, no traceback
    (that evaluate imports nothing heavy is checked in tests/test_imports.py)."""
    bad = tmp_path / "gt.json"
    gt = json.loads((CASE / "gt.json").read_text())
    gt["videos"][0]["height"] = -1
    bad.write_text(json.dumps(gt))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamvis",
            "evaluate",
            "--gt",
            str(bad),
            "--results",
            str(CASE / "results.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "height" in proc.stderr and "Traceback" not in proc.stderr

