"""benchmarks/bench_eval.py on a 2-video case: AP and the four metric families run and are printed."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_bench_eval_small_case(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_eval_under_test", BENCHMARKS / "bench_eval.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.main(["--videos", "2", "--repeat", "1", "--workdir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "--metrics all: AP + HOTA + CLEAR + Identity" in printed
    assert "peak RSS of the --metrics all process" in printed
    assert "evaluate_tracking() on loaded dicts" in printed and "a reduced case" in printed
    gt = json.loads(next(tmp_path.glob("*_2videos_gt.json")).read_text())
    assert len(gt["videos"]) == 2
