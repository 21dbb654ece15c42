"""benchmarks/bench_shard.py runs end to end on a tiny setting and prints its table."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_shard.py"


@pytest.mark.slow  # one plain and one torchrun `streamvis predict` subprocess
def test_bench_shard_tiny_run(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(SCRIPT.parents[1] / "src"))
    spec = importlib.util.spec_from_file_location("bench_shard_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.main(["--videos", "2", "--frames", "1", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = {cells[0]: cells[1:] for cells in (line.split() for line in out.splitlines())
            if re.match(r"^(1x2|2x1) +\d", " ".join(cells))}
    assert rows["1x2"][:2] == ["1", "2"] and rows["2x1"][:2] == ["2", "1"]
    assert float(rows["1x2"][4]) == 1.0 and float(rows["2x1"][3]) > 0  # speed-up base, frames/s
    assert "2 videos, 2 frames" in out and "results.json identical across configs:" in out
    assert (tmp_path / "out_2x1" / "parts" / "1.json").is_file()
