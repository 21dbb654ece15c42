"""`streamvis train` with MaskTrack R-CNN (configs/synthetic_masktrack_r18.yaml) on a tiny generated
dataset: two iterations, and the same two iterations split by a ``--resume``, give identical losses and
weights; a class count that does not fit the data is refused."""

from __future__ import annotations

import pytest
import torch
from tests.conftest import REPO

from streamvis.cli import main
from streamvis.engine.checkpoint import load_checkpoint
from streamvis.engine.hooks import read_metrics

LOSS_KEYS = {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "loss_mask", "loss_match"}


def _argv(synth, out_dir, *extra) -> list[str]:
    overrides = [
        f"data.train_json={synth / 'instances.json'}", f"data.train_images={synth / 'JPEGImages'}",
        "data.valid_json=null", "data.valid_images=null", "data.num_workers=0", "data.short_sides=[64]",
        "data.max_size=96", "model.test_short_side=64", "model.test_max_size=96",
        "model.backbone.fpn_channels=16", "model.roi.fc_out_channels=32", "model.roi.mask_channels=16",
        "model.roi.rois_per_image=16", "model.track.fc_out_channels=8", "solver.ims_per_batch=2",
        "solver.warmup_iters=1", "train.checkpoint_period=1", "train.log_period=1",
        "train.progress_bar=false", "train.plot_loss_curve=false",
    ]
    argv = ["train", "--config", "configs/synthetic_masktrack_r18.yaml", "--output-dir", str(out_dir)]
    for item in overrides:
        argv += ["--set", item]
    return argv + list(extra)


@pytest.mark.slow  # three training runs through the CLI
def test_train_two_iterations_then_resume_exactly(tiny_synth, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    torch.set_num_threads(1)
    assert main(_argv(tiny_synth, tmp_path / "full", "--set", "solver.max_iter=2")) == 0
    assert main(_argv(tiny_synth, tmp_path / "part", "--set", "solver.max_iter=1")) == 0
    assert main(_argv(tiny_synth, tmp_path / "part", "--set", "solver.max_iter=2", "--resume")) == 0
    full = [r for r in read_metrics(tmp_path / "full" / "metrics.jsonl") if "total_loss" in r]
    part = [r for r in read_metrics(tmp_path / "part" / "metrics.jsonl") if "total_loss" in r]
    assert LOSS_KEYS <= set(full[0]) and [r["iteration"] for r in part] == [1, 2]
    assert all(r[k] > 0 for r in full for k in LOSS_KEYS)
    assert [{k: r[k] for k in LOSS_KEYS} for r in full] == [{k: r[k] for k in LOSS_KEYS} for r in part]
    a = load_checkpoint(tmp_path / "full" / "model_final.pth")
    b = load_checkpoint(tmp_path / "part" / "model_final.pth")["model"]
    assert all(torch.equal(a["model"][k], b[k]) for k in a["model"])
    assert a["method"] == "masktrack" and a["config"]["num_classes"] == 8

    from streamvis.models.weights import load_model

    model = load_model(tmp_path / "full" / "model_final.pth")
    assert model.config.method == "masktrack" and model.config.class_names is not None  # from the json
    assert torch.equal(model.track_head.fcs[0].weight, a["model"]["track_head.fcs.0.weight"])


def test_class_count_must_fit_the_data(tiny_synth, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(_argv(tiny_synth, tmp_path / "a", "--set", "model.num_classes=5")) == 2
    err = capsys.readouterr().err
    assert "has 8 categories but model.num_classes is 5; set --set model.num_classes=8" in err
    assert main(_argv(tiny_synth, tmp_path / "b", "--set", "model.num_classes=9",
                      "--set", "model.class_names=[a,b,c,d,e,f,g,h]")) == 2
    assert "lists 8 classes but 'model.num_classes' is 9" in capsys.readouterr().err
