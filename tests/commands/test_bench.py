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


@pytest.mark.parametrize("name", ["e2e", "memory", "trackers", "methods"])
def test_bench_scripts_start(name):
    """Each script parses its arguments (a broken import or option fails here, without a long run)."""
    assert main(["bench", name, "--help"]) == 0
