"""benchmarks/bench_eval.py on a small case: AP and the four metric families run and are printed, and the
references (TrackEval, the official toolkit) are measured in the same run or skipped with a message."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
TRACKEVAL_PYTHON_VARIABLE = "STREAMVIS_TRACKEVAL_PYTHON"  # a python that imports trackeval 1.3.0


def _run_script(script, args, tmp_path):
    """Run a benchmark script as a user would (a subprocess; benchmarks are not imported by tests)."""
    env = dict(os.environ, PYTHONPATH=str(Path(script).resolve().parents[1] / "src"))
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def _python_without_site_packages(tmp_path) -> str:
    """An interpreter that imports neither trackeval nor pycocotools.ytvos (``-S``: no site-packages)."""
    wrapper = tmp_path / "bare_python"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def _trackeval_python() -> str | None:
    """$STREAMVIS_TRACKEVAL_PYTHON, else this interpreter, if it imports trackeval."""
    for python in (os.environ.get(TRACKEVAL_PYTHON_VARIABLE), sys.executable):
        if python and subprocess.run([python, "-c", "import trackeval"], capture_output=True).returncode == 0:
            return python
    return None


def test_bench_eval_small_case_references_absent(tmp_path):
    bare = _python_without_site_packages(tmp_path)
    args = ["--videos", "2", "--repeat", "1", "--workdir", str(tmp_path),
            "--trackeval-python", bare, "--official-python", str(tmp_path / "no_such_python")]
    printed = _run_script(BENCHMARKS / "bench_eval.py", args, tmp_path)
    assert "--metrics all: AP + HOTA + CLEAR + Identity" in printed
    assert "peak RSS of the --metrics all process" in printed
    assert "evaluate_tracking() on loaded dicts" in printed and "a reduced case" in printed
    gt = json.loads(next(tmp_path.glob("*_2videos_gt.json")).read_text())
    assert len(gt["videos"]) == 2
    # the references are skipped cleanly: a message saying why and how to get them, no traceback
    assert f"TrackEval: reference skipped: {bare} cannot import trackeval" in printed
    assert "pip install trackeval==1.3.0" in printed
    assert "official toolkit: NOT measured in this run" in printed and "cannot be run" in printed
    assert "documented figure of an earlier run on the full case (not this run)" in printed
    assert "ratio" not in printed and not list(tmp_path.glob("*_trackeval"))


def test_bench_eval_measures_trackeval_in_the_same_run(tmp_path):
    python = _trackeval_python()
    if python is None:
        pytest.skip(f"trackeval is not importable here; set {TRACKEVAL_PYTHON_VARIABLE} to a python that "
                    "imports it (python3 -m venv te-venv && te-venv/bin/pip install trackeval==1.3.0 "
                    "pycocotools)")
    args = ["--videos", "3", "--repeat", "1", "--workdir", str(tmp_path), "--trackeval-python", python]
    printed = _run_script(BENCHMARKS / "bench_eval.py", args, tmp_path)
    ratio = re.search(r"ratio TrackEval .* / streamvis evaluate --metrics all, whole process, same run: "
                      r"([0-9.]+)x wall, ([0-9.]+)x CPU", printed)
    assert ratio and float(ratio.group(1)) > 0 and float(ratio.group(2)) > 0, printed
    timing = r"TrackEval \(HOTA \+ CLEAR \+ Identity\), whole process, median of 1: [0-9.]+ s wall"
    assert re.search(timing, printed), printed
    assert re.search(r"cls_comb_cls_av HOTA\.HOTA: streamvis 0\.\d+  TrackEval 0\.\d+", printed)
    assert "fields of 42 rows (both combined rows, every category) agree within 1e-9" in printed, printed
    assert "DIFFER" not in printed
    gt_dir = next(tmp_path.glob("*_trackeval")) / "gt" / "youtube_vis_bench"
    frames = [s for ann in json.loads((gt_dir / "gt.json").read_text())["annotations"]
              for s in ann["segmentations"] if s is not None]
    assert frames and all(isinstance(s["counts"], list) for s in frames)  # uncompressed RLE for TrackEval
