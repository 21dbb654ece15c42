"""benchmarks/bench_memory.py runs end to end on a tiny setting, in both predictors, and prints its figure."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_memory.py"


@pytest.mark.slow  # a subprocess that builds a model (and, for the dataset predictor, writes 2 videos)
@pytest.mark.parametrize("predictor", ["streaming", "dataset"])
def test_bench_memory_tiny_run(tmp_path, predictor):
    env = dict(os.environ, PYTHONPATH=str(SCRIPT.parents[1] / "src"), OMP_NUM_THREADS="1")
    args = ["--tiny", "--frames", "30", "--checkpoints", "10,30", "--threads", "1", "--tracker", "crossvis",
            "--predictor", predictor, "--dataset-dir", str(tmp_path / "data")]
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    frames = [int(line.split()[0]) for line in out.splitlines() if re.match(r"^ +\d+ +[\d.]+ +[\d.]+ ", line)]
    assert frames == [10, 30]
    assert f"30 frames 192x320, {predictor} predictor, tracker crossvis" in out
    assert re.search(r"peak RSS frame 30 / frame 30: 1\.000 \(flat within 3%\)", out)
    if predictor == "dataset":
        assert "after the merge into results.json" in out
        videos = json.loads((tmp_path / "data" / "stream.json").read_text())["videos"]
        assert sum(v["length"] for v in videos) == sum(len(v["file_names"]) for v in videos) == 30
