"""PCAN through `streamvis train`: a tiny config trains 2 iterations from frame pairs with identity
ids (all training stages' losses), checkpoints and resumes; the shipped configs load; stages freeze."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from streamvis.cli import main
from streamvis.config import load_config
from streamvis.models.build import build_model, preset
from streamvis.models.pcan.config import PCANConfig

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
TINY = {"depth": 18, "frozen_stages": -1, "fpn_channels": 32, "fc_channels": 64, "embed_channels": 32,
        "mask_conv_channels": 32, "rpn_pre_nms_topk": 100, "rpn_max_proposals": 100}


@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    from streamvis.data.synthetic import SynthConfig, write_dataset

    out = tmp_path_factory.mktemp("synth")
    config = SynthConfig(num_videos=2, seed=0, size=(64, 96), frames=(4, 4), num_classes=8)
    return write_dataset(config, out, workers=1)


def _config(tiny_synth, output_dir: Path, max_iter: int, stage: str = "joint") -> dict:
    return {
        "model": {"method": "pcan", "num_classes": 8, "train_stage": stage, "test_short_side": 64,
                  "test_max_size": 96, **TINY},
        "data": {"train_json": str(tiny_synth), "train_images": str(tiny_synth.parent / "JPEGImages"),
                 "valid_json": None, "valid_images": None, "num_workers": 0, "short_sides": [64],
                 "max_size": 96, "reference_range": 3},
        "solver": {"base_lr": 0.01, "max_iter": max_iter, "ims_per_batch": 2, "warmup_iters": 0, "steps": [],
                   "clip_grad_norm": 10.0},
        "train": {"checkpoint_period": 1, "log_period": 1, "progress_bar": False, "plot_loss_curve": False,
                  "device": "cpu", "amp": False},
        "output_dir": str(output_dir),
    }


@pytest.mark.slow
def test_tiny_pcan_trains_two_iterations_and_resumes(tiny_synth, tmp_path):
    run = tmp_path / "run"
    path = tmp_path / "pcan.yaml"
    path.write_text(yaml.safe_dump(_config(tiny_synth, run, max_iter=1)))
    assert main(["train", "--config", str(path)]) == 0
    first = torch.load(run / "model_final.pth", weights_only=True)
    assert first["method"] == "pcan" and first["iteration"] == 1
    path.write_text(yaml.safe_dump(_config(tiny_synth, run, max_iter=2)))
    assert main(["train", "--config", str(path), "--resume"]) == 0
    second = torch.load(run / "model_final.pth", weights_only=True)
    assert second["iteration"] == 2
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [line for line in lines if "loss_track" in line]
    assert [line["iteration"] for line in losses][-2:] == [1, 2]  # the resumed run continued at 2
    expected = {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_mask", "loss_track",
                "loss_track_aux", "loss_refine"}
    assert expected <= set(losses[-1]), set(losses[-1])
    assert all(torch.isfinite(torch.tensor(line[k])) for line in losses for k in expected)
    changed = [k for k, v in second["model"].items()
               if v.is_floating_point() and not torch.equal(v, first["model"][k])]
    assert any(k.startswith("roi_head.refine_head.") for k in changed)
    assert any(k.startswith("roi_head.track_head.") for k in changed)


@pytest.mark.parametrize("stage, trainable", [
    ("track", {"backbone", "neck", "rpn_head", "roi_head.bbox_head", "roi_head.track_head"}),
    ("mask", {"roi_head.mask_head"}),
    ("refine", {"roi_head.refine_head"}),
])
def test_stages_freeze_the_official_parts(stage, trainable):
    model = build_model(PCANConfig(train_stage=stage, **TINY))
    heads = {name.split(".")[0] if not name.startswith("roi_head.") else ".".join(name.split(".")[:2])
             for name, p in model.named_parameters() if p.requires_grad}
    assert heads == trainable


def test_frozen_modules_and_bad_stage():
    from streamvis.errors import ConfigError

    model = build_model(PCANConfig(train_stage="joint", frozen_modules=("backbone",), **TINY))
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.roi_head.refine_head.parameters())
    with pytest.raises(ConfigError, match="train_stage"):
        PCANConfig(train_stage="everything")
    with pytest.raises(ConfigError, match="frozen_modules"):
        PCANConfig(frozen_modules=("head",))


@pytest.mark.parametrize("name", ["synthetic_pcan_r18.yaml", "pcan_r50_bdd100k_1_track.yaml",
                                  "pcan_r50_bdd100k_2_mask.yaml", "pcan_r50_bdd100k_3_refine.yaml",
                                  "pcan_r50_ytvis19.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(CONFIGS / name)
    assert isinstance(cfg.model, PCANConfig)
    if name.startswith("synthetic"):
        assert cfg.model == preset("pcan_r18_small").replace(num_classes=8, test_short_side=192,
                                                              test_max_size=320)
        assert cfg.data.reference_range == 3
