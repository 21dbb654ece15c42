"""benchmarks/bench_shard.py runs end to end on a tiny setting and prints its table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_shard.py"


def _run_script(script, args, tmp_path):
    """Run a benchmark script as a user would (a subprocess; benchmarks are not imported by tests)."""
    env = dict(os.environ, PYTHONPATH=str(Path(script).resolve().parents[1] / "src"))
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow  # one plain and one torchrun `streamvis predict` subprocess
def test_bench_shard_tiny_run(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(SCRIPT.parents[1] / "src"))
    out = _run_script(SCRIPT, ["--videos", "2", "--frames", "1", "--workdir", str(tmp_path)], tmp_path)
    rows = {cells[0]: cells[1:] for cells in (line.split() for line in out.splitlines())
            if re.match(r"^(1x2|2x1) +\d", " ".join(cells))}
    assert rows["1x2"][:2] == ["1", "2"] and rows["2x1"][:2] == ["2", "1"]
    assert float(rows["1x2"][4]) == 1.0 and float(rows["2x1"][3]) > 0  # speed-up base, frames/s
    assert "2 videos, 2 frames" in out and "results.json identical across configs:" in out
    assert (tmp_path / "out_2x1" / "parts" / "1.json").is_file()
