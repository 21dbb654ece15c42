"""Kill -9 `streamvis predict` over a dataset: no partial results.json; `--resume` (to come) continues.

Child processes on a tiny synthetic set and a tiny random model; marked slow (~20 s here).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import pytest
from tests.fuzz.corpus import tiny_weights_file
from tests.reliability import kill9

pytestmark = pytest.mark.slow


def _predict(workdir, out, *extra):
    return kill9._streamvis(
        "predict",
        "--weights",
        str(workdir / "tiny.pth"),
        "--input",
        str(workdir / "data" / "instances.json"),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill9_predict")
    kill9.prepare(folder)
    tiny_weights_file(folder / "tiny.pth")
    started = time.monotonic()
    done = subprocess.run(
        _predict(folder, folder / "reference"), capture_output=True, text=True, env=kill9._env(),
        timeout=kill9.PROCESS_TIME_LIMIT_S
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return folder, time.monotonic() - started


@pytest.mark.parametrize("seed", [0, 1])
def test_a_killed_predict_leaves_no_partial_results_file(workdir, seed):
    folder, duration = workdir
    out = folder / f"killed_{seed}"
    process = subprocess.Popen(
        _predict(folder, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=kill9._env()
    )
    time.sleep(random.Random(seed).uniform(0.5, duration))
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    results = out / "results.json"
    if results.exists():  # the kill came after the one atomic write: the file is complete
        assert json.loads(results.read_text()) == json.loads(
            (folder / "reference" / "results.json").read_text()
        )
    assert not [p for p in out.rglob("*") if p.name == "results.json" and p != results]


def test_predict_resume_after_a_kill_equals_an_uninterrupted_run(workdir):
    folder, duration = workdir
    out = folder / "resumed"
    process = subprocess.Popen(
        _predict(folder, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=kill9._env()
    )
    time.sleep(duration / 2)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = subprocess.run(
        _predict(folder, out, "--resume"), capture_output=True, text=True, env=kill9._env(),
        timeout=kill9.PROCESS_TIME_LIMIT_S
    )
    assert done.returncode == 0, done.stderr[-1500:]
    assert json.loads((out / "results.json").read_text()) == json.loads(
        (folder / "reference" / "results.json").read_text()
    )
