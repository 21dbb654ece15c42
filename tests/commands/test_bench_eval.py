"""benchmarks/bench_eval.py on a 2-video case: AP and the four metric families run and are printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _run_script(script, args, tmp_path):
    """Run a benchmark script as a user would (a subprocess; benchmarks are not imported by tests)."""
    env = dict(os.environ, PYTHONPATH=str(Path(script).resolve().parents[1] / "src"))
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_bench_eval_small_case(tmp_path, capsys):
    args = ["--videos", "2", "--repeat", "1", "--workdir", str(tmp_path)]
    printed = _run_script(BENCHMARKS / "bench_eval.py", args, tmp_path)
    assert "--metrics all: AP + HOTA + CLEAR + Identity" in printed
    assert "peak RSS of the --metrics all process" in printed
    assert "evaluate_tracking() on loaded dicts" in printed and "a reduced case" in printed
    gt = json.loads(next(tmp_path.glob("*_2videos_gt.json")).read_text())
    assert len(gt["videos"]) == 2
