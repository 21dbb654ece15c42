"""`streamvis bench`: lists the scripts of benchmarks/ and runs them (the library parts they use are
tested where they live, e.g. tracking/compare.py, data/synthetic.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamvis.cli import main

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


# ----------------------------------------------------------------------------- streamvis bench
def test_bench_lists_the_scripts(capsys):
    assert main(["bench"]) == 0
    out = capsys.readouterr().out
    for name in ("trackers", "e2e", "memory", "eval"):
        assert f"  {name} " in out
    assert "ID switches" in out


def test_bench_runs_a_script_with_its_arguments(tmp_path, capsys):
    script = tmp_path / "bench_echo.py"
    script.write_text('"""Echo."""\nimport sys\nopen(sys.argv[1], "w").write(" ".join(sys.argv[2:]))\n'
                      "sys.exit(3)\n")
    record = tmp_path / "argv.txt"
    assert main(["bench", "--dir", str(tmp_path), "echo", str(record), "--frames", "5"]) == 3
    assert record.read_text() == "--frames 5"
    assert main(["bench", "--dir", str(tmp_path), "nope"]) == 2
    assert "unknown benchmark 'nope'; choose one of: echo" in capsys.readouterr().err
    assert main(["bench", "--dir", str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize("name", ["e2e", "memory", "trackers", "methods", "int8_ceiling"])
def test_bench_scripts_start(name):
    """Each script parses its arguments (a broken import or option fails here, without a long run)."""
    assert main(["bench", name, "--help"]) == 0


def test_int8_ceiling_prints_every_variant_against_float32(capsys):
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_int8_ceiling
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert bench_int8_ceiling.main(["--blocks", "1", "--repeat", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "CPU: " in out and "torch fp32 (optimize_for_inference)" in out and " 1.00x" in out
    assert "torch int8 (FX, x86 engine)" in out
    pytest.importorskip("onnxruntime")
    assert "ort int8 (QDQ, per-channel)" in out
