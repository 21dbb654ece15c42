"""Kill -9 at a random moment, resume, and get bitwise the uninterrupted run (see kill9.py).

Each test starts `streamvis train` as child processes on a tiny synthetic set (about 10 s each
on a 2-core CPU, most of it importing torch), so the file is marked slow.
"""

from __future__ import annotations

import shutil

import pytest
from tests.reliability import kill9

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill9")
    kill9.prepare(folder)
    done = kill9.train(folder / "tiny.yaml", folder / "reference")
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


def test_sigkill_at_a_random_moment_then_resume_is_bitwise_identical(workdir):
    report = kill9.run(workdir, kills=1, seed=3)
    assert report.restarts == 1, report
    assert report.weights_equal and report.losses_equal, report.differences


def test_a_torn_newest_checkpoint_falls_back_to_the_previous_one(workdir):
    run = workdir / "torn"
    shutil.copytree(workdir / "reference", run)
    (run / "model_final.pth").unlink()
    newest = run / f"model_{kill9.MAX_ITER - 1:07d}.pth"
    previous = run / f"model_{kill9.MAX_ITER - 2:07d}.pth"
    assert newest.exists() and previous.exists(), sorted(p.name for p in run.iterdir())
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # a torn write
    (run / "last_checkpoint").write_text(newest.name + "\n")
    done = kill9.train(workdir / "tiny.yaml", run)
    assert done.returncode == 0, done.stderr[-1500:]
    printed = done.stdout + done.stderr  # the training log line (stdout) that warns
    assert newest.name in printed and previous.name in printed and "torn" in printed  # it names both
    report = kill9.KillReport()
    kill9.compare(workdir / "reference", run, report)
    assert report.weights_equal and report.losses_equal, report.differences
