"""`streamvis bench` and the helpers of benchmarks/bench_e2e.py and bench_memory.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from streamvis.cli import main
from streamvis.structures import Instances

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}_under_test", BENCHMARKS / f"bench_{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their string annotations through it
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------- e2e, memory
def test_e2e_time_video_counts_frames_and_detections(tmp_path):
    e2e = load_script("e2e")
    video = e2e.synthetic_mp4(tmp_path, (32, 48), 3)
    assert e2e.synthetic_mp4(tmp_path, (32, 48), 3) == video  # cached
    model = _two_detection_model()
    frames, seconds, detections = e2e.time_video(model, video)
    assert (frames, detections) == (3, 6) and seconds > 0


def _two_detection_model():
    """A model stand-in that finds the same two objects in every frame."""
    model = SimpleNamespace(config=SimpleNamespace(test_short_side=32, test_max_size=48),
                            parameters=lambda: iter(()))
    model.predict = lambda images, output_sizes: [_two_detections(output_sizes[0])]
    return model


def _two_detections(size):
    masks = torch.zeros(2, *size, dtype=torch.bool)
    masks[0, :4, :4] = masks[1, -4:, -4:] = True
    return Instances(tuple(size), boxes=torch.tensor([[0, 0, 4, 4], [44, 28, 48, 32]], dtype=torch.float32),
                     scores=torch.tensor([0.9, 0.8]), classes=torch.tensor([0, 1]),
                     embeddings=torch.eye(2, 8), masks=masks)


def test_memory_stream_and_checkpoints():
    memory = load_script("memory")
    from streamvis.data.synthetic import SynthConfig, render_synthetic_video

    frames = list(memory.long_stream(50, size=(32, 48), num_classes=2, seed=0))
    assert len(frames) == 50 and frames[0].shape == (32, 48, 3) and frames[0].dtype == np.uint8
    first = render_synthetic_video(SynthConfig(num_videos=50, seed=0, split="valid", size=(32, 48),
                                               num_classes=2), 0).frames
    assert len(first) < 50  # the stream crosses into the next video
    assert np.array_equal(np.stack(frames[: len(first)]), first)
    rss, peak = memory.memory_mb()
    assert 0 < rss <= peak
    model = _two_detection_model()
    rows = memory.run_stream(model, iter(frames[:6]), [2, 6])
    assert [r["frame"] for r in rows] == [2, 6] and rows[1]["tracks"] == 2
    assert rows[0]["peak_mb"] <= rows[1]["peak_mb"]


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
