"""A second method, defined here in a few lines, runs through the CLI by adding one METHODS entry.

Nothing of the CLI, the trainer or the predictor is touched: `streamvis train` builds it from
``model.method: toy``, `export` shrinks its checkpoint, `inspect` reads it, `predict` tracks its
detections with its default tracker and `evaluate` scores the results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
import yaml
from torch import nn

from streamvis.cli import main
from streamvis.models import build
from streamvis.structures import Instances


@dataclass(frozen=True)
class ToyConfig:
    """The method-contract fields (models/build.py) and one of its own."""

    method: str = "toy"
    num_classes: int = 8
    class_names: tuple[str, ...] | None = None
    category_ids: tuple[int, ...] | None = None
    test_short_side: int = 32
    test_max_size: int = 48
    box_fraction: float = 0.5


class ToyMethod(nn.Module):
    """One detection per frame: a centred box of `box_fraction` of the frame, class 0."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.brightness = nn.Parameter(torch.zeros(()))

    def loss(self, batch) -> dict[str, torch.Tensor]:
        mean = torch.stack([image.float().mean() / 255 for image in batch.frames[0].images]).mean()
        return {"loss_brightness": (self.brightness - mean) ** 2}

    def predict(self, images, output_sizes=None) -> list[Instances]:
        sizes = output_sizes or [tuple(image.shape[-2:]) for image in images]
        results = []
        for height, width in sizes:
            margin_y, margin_x = (int(s * (1 - self.config.box_fraction) / 2) for s in (height, width))
            masks = torch.zeros(1, height, width, dtype=torch.bool)
            masks[0, margin_y : height - margin_y, margin_x : width - margin_x] = True
            box = torch.tensor([[margin_x, margin_y, width - margin_x, height - margin_y]]).float()
            results.append(Instances((height, width), boxes=box, scores=torch.tensor([0.9]),
                                     classes=torch.tensor([0]), masks=masks, embeddings=torch.ones(1, 4)))
        return results


@pytest.fixture
def toy_method(monkeypatch):
    spec = build.MethodSpec(config_class=ToyConfig, build_model=ToyMethod, default_tracker="crossvis")
    monkeypatch.setitem(build.METHODS, "toy", spec)
    return spec


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    from streamvis.data.synthetic import SynthConfig, write_dataset

    out = tmp_path_factory.mktemp("synth")
    config = SynthConfig(num_videos=2, seed=0, size=(32, 48), frames=(3, 3), num_classes=8)
    return write_dataset(config, out, workers=1)


def test_the_toy_method_follows_the_contract(toy_method):
    build.check_method_config(ToyConfig)
    assert isinstance(build.model_config_from_dict({"method": "toy", "box_fraction": 0.25}), ToyConfig)


def test_a_second_method_trains_exports_predicts_and_evaluates(toy_method, tiny_synth, tmp_path, capsys):
    images = tiny_synth.parent / "JPEGImages"
    config = {
        "model": {"method": "toy", "num_classes": 8, "box_fraction": 0.5},
        "data": {"train_json": str(tiny_synth), "train_images": str(images), "valid_json": None,
                 "valid_images": None, "num_workers": 0, "short_sides": [32], "max_size": 48},
        "solver": {"base_lr": 0.5, "max_iter": 4, "ims_per_batch": 2, "warmup_iters": 0, "steps": []},
        "train": {"checkpoint_period": 2, "log_period": 1, "progress_bar": False, "plot_loss_curve": False,
                  "device": "cpu", "amp": False},
        "output_dir": str(tmp_path / "run"),
    }
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "toy.yaml")]) == 0
    checkpoint = torch.load(tmp_path / "run" / "model_final.pth", weights_only=True)
    assert checkpoint["method"] == "toy" and checkpoint["config"]["box_fraction"] == 0.5
    assert checkpoint["config"]["class_names"]  # filled from the training json, as for any method
    assert checkpoint["model"]["brightness"].item() != 0.0  # it trained
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["model"]["method"] == "toy"

    assert main(["export", "--checkpoint", str(tmp_path / "run" / "model_final.pth"),
                 "--out", str(tmp_path / "toy.pth")]) == 0
    assert main(["inspect", str(tmp_path / "toy.pth")]) == 0
    assert "method:         toy" in capsys.readouterr().out

    assert main(["predict", "--weights", str(tmp_path / "toy.pth"), "--input", str(tiny_synth),
                 "--images", str(images), "--out", str(tmp_path / "pred"), "--no-progress"]) == 0
    results = json.loads((tmp_path / "pred" / "results.json").read_text())
    # the method's default tracker (the official rule) joins the centred box of every frame
    assert [r["video_id"] for r in results] == [1, 2]
    assert all(r["score"] == pytest.approx(0.9) for r in results)
    assert all(len(r["segmentations"]) == 3 and None not in r["segmentations"] for r in results)
    results_path = tmp_path / "pred" / "results.json"
    assert main(["evaluate", "--gt", str(tiny_synth), "--results", str(results_path)]) == 0
    assert "AP" in capsys.readouterr().out
