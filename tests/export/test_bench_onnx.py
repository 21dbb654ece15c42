"""benchmarks/bench_onnx.py runs end to end on a tiny setting and prints its side-by-side table."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from tests.export.conftest import require_onnxruntime

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_onnx.py"


@pytest.mark.slow
def test_bench_onnx_tiny_run(capsys, tmp_path):
    require_onnxruntime()
    spec = importlib.util.spec_from_file_location("bench_onnx_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    status = module.main(["--variants", "fast,ort_int8", "--frames", "1", "--warmup", "0", "--threads", "1",
                          "--calibration-frames", "1", "--valid-videos", "1", "--valid-frames", "2",
                          "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0
    table = [line.split() for line in out.splitlines() if re.match(r"^(fast|ort_int8) ", line)]
    rows = {cells[0]: cells[1:] for cells in table}
    assert set(rows) == {"fast", "ort_int8"}
    assert float(rows["fast"][2]) == 1.0  # "vs fast" of the baseline itself
    assert all(float(value) > 0 for value in rows["ort_int8"][:2])  # frames/s and ms/frame
    assert 0.0 <= float(rows["ort_int8"][4]) <= 1.0  # AP
    assert (tmp_path / "model_int8.onnx").is_file() and (tmp_path / "valid" / "instances.json").is_file()
