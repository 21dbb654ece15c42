"""Sharded dataset prediction (engine/shard.py): the split, the per-video parts, resume, and torchrun.

The multi-process tests run `streamvis predict` on a generated 5-video dataset (2-4 frames of
48x64) with a tiny CrossVIS, as 2 gloo processes, and compare results.json byte for byte with
the single-process output.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tests.tiny_weights import write_tiny_crossvis

from streamvis.cli import main
from streamvis.engine.shard import (
    PART_FORMAT,
    balanced_shards,
    part_path,
    read_part,
    run_fingerprint,
    write_part,
)

REPO = Path(__file__).resolve().parents[2]
FRAME_COUNTS = [2, 3, 2, 4, 2]  # generate_dataset(seed=2, frames=(2, 4)) below


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(weights, dataset json, single-process results.json bytes) for the tests of this module."""
    from streamvis.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("shard")
    weights = write_tiny_crossvis(root / "tiny.pth")
    dataset = generate_dataset(root / "valid", num_videos=5, seed=2, split="valid", size=(48, 64),
                               frames=(2, 4), num_classes=3, workers=1)
    assert [len(v["file_names"]) for v in json.loads(dataset.read_text())["videos"]] == FRAME_COUNTS
    assert _predict(weights, dataset, root / "single") == 0
    reference = (root / "single" / "results.json").read_bytes()
    assert len(json.loads(reference)) >= 5  # tracks in every video: the comparison means something
    return weights, dataset, reference


def _argv(weights, dataset, out, *extra) -> list[str]:
    return ["predict", "--weights", str(weights), "--input", str(dataset), "--out", str(out),
            "--no-progress", *extra]


def _predict(weights, dataset, out, *extra) -> int:
    return main(_argv(weights, dataset, out, *extra))


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
            "OMP_NUM_THREADS": "1"}


def _complete_parts(out: Path, dataset: Path) -> dict[int, bool]:
    """video id -> whether OUT/parts holds its part; asserts every file there is a complete part."""
    videos = {v["id"]: v for v in json.loads(dataset.read_text())["videos"]}
    names = sorted(p.name for p in (out / "parts").iterdir())
    assert all(not n.startswith(".") for n in names), names  # no temporary left behind
    for name in names:
        part = json.loads((out / "parts" / name).read_text())
        assert part["format"] == PART_FORMAT and len(part["results"]) >= 0
        assert part["num_frames"] == len(videos[part["video_id"]]["file_names"])
    return {vid: part_path(out, vid).is_file() for vid in videos}


# ------------------------------------------------------------------------------------ the split
def test_balanced_shards_longest_first_to_the_lightest_rank():
    # 4 -> r0; 3 -> r1; 2 (video 0) -> r1 (3 < 4); 2 (video 2) -> r0 (4 < 5); 2 (video 4) -> r1 (5 < 6)
    assert balanced_shards(FRAME_COUNTS, 2) == [[2, 3], [0, 1, 4]]
    assert balanced_shards([5, 3, 3, 2, 2, 1], 2) == [[0, 3, 5], [1, 2, 4]]  # 8 and 8 frames
    assert balanced_shards([5, 3, 3, 2, 2, 1], 1) == [[0, 1, 2, 3, 4, 5]]
    assert balanced_shards([7, 1], 3) == [[0], [1], []]  # more ranks than videos: idle ranks
    assert balanced_shards([], 2) == [[], []]
    with pytest.raises(ValueError, match="world_size"):
        balanced_shards([1], 0)


def test_balanced_shards_partition_and_balance():
    counts = [(i * 37) % 23 + 1 for i in range(50)]
    shards = balanced_shards(counts, 4)
    assert sorted(i for s in shards for i in s) == list(range(50))
    loads = [sum(counts[i] for i in s) for s in shards]
    assert max(loads) - min(loads) <= max(counts)  # LPT: within one video of each other
    assert shards == balanced_shards(list(counts), 4)  # deterministic


# ------------------------------------------------------------------------------------ the parts
def test_a_part_is_used_only_for_the_same_video_and_settings(tmp_path):
    video = {"id": 3, "file_names": ["a.jpg", "b.jpg"], "height": 4, "width": 4, "length": 2}
    entries = [{"video_id": 3, "category_id": 1, "score": 0.25, "segmentations": [None, None]}]
    fingerprint = run_fingerprint({"depth": 18}, "default", None, {"weights": "abc"})
    path = part_path(tmp_path, 3)
    assert read_part(path, video, fingerprint) == (None, "no part")
    write_part(path, video, entries, fingerprint)
    assert read_part(path, video, fingerprint) == (entries, "")
    other_run = run_fingerprint({"depth": 18}, "crossvis", None, {"weights": "abc"})
    assert read_part(path, video, other_run)[1] == "written with another model, backend or tracker"
    assert read_part(path, {**video, "file_names": ["a.jpg", "c.jpg"]}, fingerprint)[0] is None
    path.write_text(path.read_text()[:-5])  # what only an edit could do: writes are atomic
    assert read_part(path, video, fingerprint)[1].startswith("unreadable")
    assert fingerprint != run_fingerprint({"depth": 18}, "default", None, {"weights": "abd"})


# ------------------------------------------------------------------------ one process, --resume
def test_resume_predicts_only_the_missing_videos(setup, tmp_path, capsys):
    weights, dataset, reference = setup
    out = tmp_path / "out"
    assert _predict(weights, dataset, out) == 0
    assert (out / "results.json").read_bytes() == reference  # the parts path = the old single output
    assert all(_complete_parts(out, dataset).values())
    kept = part_path(out, 1).stat().st_mtime_ns
    part_path(out, 4).unlink()
    (out / "parts" / ".5.json.x1y2.tmp").write_text('{"trunc')  # what a SIGKILL mid-write leaves
    capsys.readouterr()
    assert _predict(weights, dataset, out, "--resume") == 0
    assert "(1 videos predicted, 4 kept from OUT/parts (--resume))" in capsys.readouterr().out
    assert (out / "results.json").read_bytes() == reference
    assert part_path(out, 1).stat().st_mtime_ns == kept  # not predicted again
    assert all(_complete_parts(out, dataset).values())  # and the temporary is gone


def test_resume_with_another_tracker_predicts_again(setup, tmp_path, capsys):
    weights, dataset, _ = setup
    out = tmp_path / "out"
    assert _predict(weights, dataset, out) == 0
    capsys.readouterr()
    assert _predict(weights, dataset, out, "--resume", "--tracker", "crossvis") == 0
    assert "kept" not in capsys.readouterr().out  # the default tracker's parts do not count
    # every part was rewritten with the crossvis tracker's fingerprint: resuming the default one redoes all
    assert _predict(weights, dataset, out, "--resume") == 0
    assert "kept" not in capsys.readouterr().out


def test_a_failed_run_leaves_no_results_json(setup, tmp_path, capsys):
    weights, dataset, _ = setup
    out = tmp_path / "out"
    assert _predict(weights, dataset, out) == 0
    frame = dataset.parent / "JPEGImages" / json.loads(dataset.read_text())["videos"][3]["file_names"][1]
    original = frame.read_bytes()
    try:
        frame.write_bytes(b"not a jpeg")
        assert _predict(weights, dataset, out) == 2
    finally:
        frame.write_bytes(original)
    assert frame.name in capsys.readouterr().err
    assert not (out / "results.json").exists()  # the old one is gone: it was not this run's
    parts = _complete_parts(out, dataset)
    assert parts[1] and parts[2] and parts[3]  # videos before the bad frame are kept


def test_one_video_under_torchrun_is_refused(setup, tmp_path, monkeypatch, capsys):
    weights, dataset, _ = setup
    frames = dataset.parent / "JPEGImages" / json.loads(dataset.read_text())["videos"][0]["file_names"][0]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert _predict(weights, frames.parent, tmp_path / "out") == 2
    assert "2 processes (torchrun) split the videos of a dataset json" in capsys.readouterr().err


# ------------------------------------------------------------------------------ two processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # torchrun with 2 gloo processes: ~15-50 s on a shared 2-core machine
def test_torchrun_two_processes_write_the_single_process_bytes(setup, tmp_path):
    weights, dataset, reference = setup
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "streamvis", *_argv(weights, dataset, out)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "results.json").read_bytes() == reference
    assert "2 videos predicted by rank 0 of 2" in proc.stdout  # video ids 3 and 4 (6 frames)
    assert "3 videos predicted by rank 1 of 2" in proc.stdout  # video ids 1, 2 and 5 (7 frames)
    assert all(_complete_parts(out, dataset).values())


# rank 1 dies (SIGKILL) right after writing its first part; rank 0 must stop with a clear message
DYING_WORKER = textwrap.dedent(
    """
    import os, signal, sys
    import streamvis.engine.shard as shard
    from streamvis.cli import main

    write_part = shard.write_part

    def write_then_die(*args, **kwargs):
        write_part(*args, **kwargs)
        if os.environ["RANK"] == "1":
            os.kill(os.getpid(), signal.SIGKILL)

    shard.write_part = write_then_die
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.slow  # 2 gloo processes and a resume: ~15-50 s on a shared 2-core machine
def test_a_rank_that_dies_stops_the_others_and_resume_completes(setup, tmp_path, capsys):
    weights, dataset, reference = setup
    script = tmp_path / "worker.py"
    script.write_text(DYING_WORKER)
    out = tmp_path / "out"
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {**_env(), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        cmd = [sys.executable, str(script), *_argv(weights, dataset, out)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    assert procs[1].returncode == -9  # killed
    assert procs[0].returncode == 2, outputs[0]
    err = outputs[0][1]
    assert "streamvis predict: error: rank 0 of 2: another prediction process stopped before finishing" in err
    assert "--resume" in err and "Traceback" not in err
    assert not (out / "results.json").exists()
    parts = _complete_parts(out, dataset)
    assert parts[3] and parts[4]  # rank 0's share finished
    assert parts[1] and not parts[2] and not parts[5]  # rank 1 died after its first video
    assert _predict(weights, dataset, out, "--resume") == 0  # one process finishes the job
    assert "(2 videos predicted, 3 kept from OUT/parts (--resume))" in capsys.readouterr().out
    assert (out / "results.json").read_bytes() == reference


def test_sigterm_becomes_a_clear_error_and_the_handler_is_restored():
    import signal
    import time

    from streamvis.engine.shard import PredictionStopped, _sigterm_raises

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(PredictionStopped, match="stopped by SIGTERM .* --resume"), _sigterm_raises():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # not reached: Python runs the handler (which raises) right after os.kill
    assert signal.getsignal(signal.SIGTERM) is before
