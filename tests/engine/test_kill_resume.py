"""Kill -9 at random moments (one while a checkpoint is written), resume: bitwise the same run.

Drives benchmarks/bench_kill_resume.py (which the README quotes at 5 moments) at 2 moments.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_kill_resume.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_kill_resume", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # five `streamvis train` processes on CPU
def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    bench = _bench()
    reports, problems, log = bench.kill_resume_experiment(tmp_path, moments=2, max_iter=5, seed=0, threads=2,
                                                          verbose=False)
    assert len(reports) == 2, reports
    assert problems == []  # final weights and every per-iteration loss/lr equal to the uninterrupted run
    assert "writing the checkpoint" in reports[1].moment
    # kill 1 (seed 0: 2 checkpoints recorded) was followed by truncating the newest checkpoint: the
    # resume named it and the previous complete one it used instead
    truncated = reports[0].truncated
    assert truncated is not None
    assert f"{truncated} is " in log and "were written (truncated or torn); resuming from the previous " \
        "complete checkpoint" in log
    assert "Traceback" not in log
