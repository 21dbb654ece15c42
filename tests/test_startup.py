"""Start-up (issue 15 part 8): help and the light commands never import torch; the benchmark runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASE = REPO / "tests" / "data" / "ytvis_eval" / "case_001"

CHECK = f"""
import sys
from streamvis.cli import main

def run(argv):
    try:
        return main(argv)
    except SystemExit as stop:  # --help exits
        return stop.code

for argv in (["--help"], ["evaluate", "--help"], ["check-dataset", "--help"], ["package", "--help"],
             ["convert-data", "--help"],
             ["evaluate", "--gt", {str(CASE / "gt.json")!r}, "--results", {str(CASE / "results.json")!r}]):
    code = run(argv)
    assert code in (0, None), (argv, code)
    assert "torch" not in sys.modules, argv
for argv in (["predict", "--help"], ["render", "--help"]):  # their parsers need neither torch nor PyAV
    run(argv)
    assert "torch" not in sys.modules and "av" not in sys.modules, argv
print("no torch")
"""


def test_help_and_light_commands_do_not_import_torch():
    proc = subprocess.run([sys.executable, "-c", CHECK], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("no torch")


def test_arguments_default_fps_matches_viz():
    from streamvis.commands.arguments import DEFAULT_FPS
    from streamvis.viz import DEFAULT_FPS as VIZ_DEFAULT_FPS

    assert DEFAULT_FPS == VIZ_DEFAULT_FPS


def test_bench_startup_runs_the_help_group(tmp_path):
    """The benchmark script runs as a script (its figures are not asserted: the machine is shared)."""
    script = str(REPO / "benchmarks" / "bench_startup.py")
    argv = [sys.executable, script, "--repeat", "1", "--only", "help", "--workdir", str(tmp_path)]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["command", "wall", "s"]
    assert [line.split()[0] for line in lines[1:]] == ["--help", "evaluate", "check-dataset", "package",
                                                       "convert-data", "predict", "render"]
    assert all(line.rstrip().endswith("< 1 s") for line in lines[1:])  # no "exit code" failures
    assert (tmp_path / "tiny.json").is_file() and (tmp_path / "one_frame.mp4").is_file()


def test_warnings_print_one_line_without_source(capsys, monkeypatch):
    import warnings

    from streamvis import cli

    class Module:
        @staticmethod
        def add_arguments(parser):
            pass

        @staticmethod
        def run(args):
            warnings.warn("something odd", UserWarning, stacklevel=1)
            return 0

    monkeypatch.setattr(cli, "_load", lambda name: Module)
    assert cli.main(["bench"]) == 0
    err = capsys.readouterr().err
    assert err == "streamvis bench: warning: something odd\n"  # no "warnings.warn(...)" source line
