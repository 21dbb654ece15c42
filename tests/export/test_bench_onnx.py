"""benchmarks/bench_onnx.py runs end to end on a tiny setting and prints its side-by-side table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.export.conftest import require_onnxruntime

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_onnx.py"


def _run_script(script, args, tmp_path):
    """Run a benchmark script as a user would (a subprocess; benchmarks are not imported by tests)."""
    env = dict(os.environ, PYTHONPATH=str(Path(script).resolve().parents[1] / "src"))
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_bench_onnx_tiny_run(capsys, tmp_path):
    require_onnxruntime()
    args = ["--variants", "fast,ort_int8", "--frames", "1", "--warmup", "0", "--threads", "1",
            "--calibration-frames", "1", "--valid-videos", "1", "--valid-frames", "2",
            "--workdir", str(tmp_path)]
    out = _run_script(SCRIPT, args, tmp_path)
    table = [line.split() for line in out.splitlines() if re.match(r"^(fast|ort_int8) ", line)]
    rows = {cells[0]: cells[1:] for cells in table}
    assert set(rows) == {"fast", "ort_int8"}
    assert float(rows["fast"][2]) == 1.0  # "vs fast" of the baseline itself
    assert all(float(value) > 0 for value in rows["ort_int8"][:2])  # frames/s and ms/frame
    assert 0.0 <= float(rows["ort_int8"][4]) <= 1.0  # AP
    assert (tmp_path / "model_int8.onnx").is_file() and (tmp_path / "valid" / "instances.json").is_file()
