"""`streamvis bench` and the helpers of benchmarks/bench_trackers.py, bench_e2e.py, bench_memory.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from streamvis.cli import main
from streamvis.data.masks import decode_rle, encode_masks
from streamvis.structures import Instances

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}_under_test", BENCHMARKS / f"bench_{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their string annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trackers_bench():
    return load_script("trackers")


def _square(top: int, left: int, size: int = 4, shape=(10, 10)) -> dict:
    mask = np.zeros((1, *shape), dtype=bool)
    mask[0, top : top + size, left : left + size] = True
    return encode_masks(mask)[0]


# --------------------------------------------------------------------------- cached detections
def test_frame_detections_round_trip(trackers_bench):
    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    masks[1, 4:, :] = True
    inst = Instances((6, 8), boxes=torch.rand(2, 4), scores=torch.tensor([0.9, 0.2]),
                     classes=torch.tensor([1, 0]), embeddings=torch.rand(2, 5), masks=masks,
                     global_mask_probs=torch.rand(2, 2, 2))
    back = trackers_bench.FrameDetections.from_instances(inst).to_instances()
    assert back.image_size == (6, 8) and not back.has("global_mask_probs")
    for name in ("boxes", "scores", "classes", "embeddings", "masks"):
        assert torch.equal(back.get(name), inst.get(name)), name
    empty = trackers_bench.FrameDetections.from_instances(inst[torch.zeros(2, dtype=torch.bool)])
    assert empty.to_instances().masks.shape == (0, 6, 8)


class OracleModel:
    """Stands in for a model: returns the ground-truth objects of each frame, in dataset order."""

    def __init__(self, gt):
        self.config = SimpleNamespace(num_classes=len(gt["categories"]), class_names=None,
                                      test_short_side=32, test_max_size=48)
        self.frames = [(v, t) for v in gt["videos"] for t in range(v["length"])]
        self.annotations = gt["annotations"]
        self.calls = 0

    def predict(self, images, output_sizes):
        video, t = self.frames[self.calls]
        self.calls += 1
        anns = [a for a in self.annotations if a["video_id"] == video["id"] and a["segmentations"][t]]
        masks = torch.zeros((len(anns), *output_sizes[0]), dtype=torch.bool)
        for i, a in enumerate(anns):
            masks[i] = torch.from_numpy(decode_rle(a["segmentations"][t])).bool()
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bboxes"][t] for a in anns)],
                             dtype=torch.float32).reshape(-1, 4)
        embeddings = torch.nn.functional.one_hot(torch.tensor([a["id"] for a in anns], dtype=torch.long),
                                                 64).float().reshape(-1, 64)
        return [Instances(tuple(output_sizes[0]), boxes=boxes, scores=torch.full((len(anns),), 0.9),
                          classes=torch.tensor([a["category_id"] - 1 for a in anns], dtype=torch.long),
                          embeddings=embeddings, masks=masks)]


def test_compare_trackers_on_oracle_detections(trackers_bench, tmp_path):
    from streamvis.data.synthetic import generate_dataset
    from streamvis.data.ytvis import load_ytvis

    json_path = generate_dataset(tmp_path / "valid", num_videos=2, seed=1, split="valid", size=(32, 48),
                                 frames=(4, 5), num_classes=3, workers=1)
    gt = load_ytvis(json_path)
    assert gt["annotations"], "the case needs objects"
    model = OracleModel(gt)
    rows = trackers_bench.compare_trackers(model, gt, json_path.parent / "JPEGImages", progress=False)
    assert model.calls == sum(v["length"] for v in gt["videos"])  # the model ran once per frame
    assert [r["tracker"] for r in rows] == ["default", "crossvis"]
    visible = sum(s is not None for a in gt["annotations"] for s in a["segmentations"])
    for row in rows:
        assert row["AP"] == pytest.approx(1.0) and row["AP50"] == pytest.approx(1.0), row
        assert (row["id_switches"], row["matched_frames"], row["gt_frames"]) == (0, visible, visible)
        assert row["tracks"] == len(gt["annotations"])
    assert "default" in trackers_bench.format_rows(rows)


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
