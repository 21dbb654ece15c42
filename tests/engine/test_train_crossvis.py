"""`streamvis train` end to end with the real CrossVIS on a tiny generated dataset (CPU).

The exact-resume check here also covers the real DataLoader (creating its iterator draws from
the global RNG) and the model's own random draws (crossover sampling, proposal subsampling).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamvis.cli import main
from streamvis.engine.checkpoint import load_checkpoint
from streamvis.engine.hooks import read_metrics
from streamvis.models.weights import export_weights

REPO = Path(__file__).resolve().parents[2]
LOSS_KEYS = {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask", "loss_cross_over", "loss_reid"}


def _argv(synth, out_dir, *extra) -> list[str]:
    overrides = [
        f"data.train_json={synth / 'instances.json'}", f"data.train_images={synth / 'JPEGImages'}",
        "data.valid_json=null", "data.valid_images=null", "data.num_workers=0", "data.short_sides=[64]",
        "data.max_size=96", "model.num_identities=16", "solver.ims_per_batch=2", "solver.warmup_iters=1",
        "train.checkpoint_period=2", "train.log_period=1", "train.progress_bar=false",
        "train.plot_loss_curve=false",
    ]
    argv = ["train", "--config", "configs/synthetic_r18.yaml", "--output-dir", str(out_dir)]
    for item in overrides:
        argv += ["--set", item]
    return argv + list(extra)


@pytest.mark.slow  # three CrossVIS training runs through the CLI
def test_train_then_resume_exactly_with_crossvis(tiny_synth, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    torch.set_num_threads(1)
    assert main(_argv(tiny_synth, tmp_path / "full", "--set", "solver.max_iter=2")) == 0
    assert main(_argv(tiny_synth, tmp_path / "part", "--set", "solver.max_iter=1")) == 0
    assert main(_argv(tiny_synth, tmp_path / "part", "--set", "solver.max_iter=2", "--resume")) == 0
    full = [r for r in read_metrics(tmp_path / "full" / "metrics.jsonl") if "total_loss" in r]
    part = [r for r in read_metrics(tmp_path / "part" / "metrics.jsonl") if "total_loss" in r]
    assert LOSS_KEYS <= set(full[0]) and [r["iteration"] for r in part] == [1, 2]
    assert [{k: r[k] for k in LOSS_KEYS} for r in full] == [{k: r[k] for k in LOSS_KEYS} for r in part]
    a = load_checkpoint(tmp_path / "full" / "model_final.pth")["model"]
    b = load_checkpoint(tmp_path / "part" / "model_final.pth")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)

    from streamvis.models.weights import load_model  # what `streamvis predict --weights` uses

    model = load_model(tmp_path / "full" / "model_final.pth")
    assert model.config.depth == 18 and model.config.num_identities == 16
    assert torch.equal(model.state_dict()["head.cls_logits.weight"], a["head.cls_logits.weight"])
    exported = export_weights(tmp_path / "full" / "model_final.pth", tmp_path / "w.pth", note="tiny")
    data = torch.load(exported, weights_only=True)
    assert set(data) == {"format", "format_version", "method", "model", "config", "meta"}
    assert data["method"] == "crossvis" and data["meta"]["iteration"] == 2
    assert data["meta"]["source"] == "model_final.pth"
    assert data["meta"]["note"] == "tiny" and data["meta"]["experiment"]["solver"]["max_iter"] == 2
    reloaded = load_model(exported).state_dict()
    assert torch.equal(reloaded["head.cls_logits.weight"], a["head.cls_logits.weight"])

    # the compact export for shipping: float16, no identity proxies; it still loads and predicts alike
    assert main(["export", "--checkpoint", str(tmp_path / "full" / "model_final.pth"),
                 "--out", str(tmp_path / "half.pth"), "--half"]) == 0
    half = torch.load(tmp_path / "half.pth", weights_only=True)["model"]
    assert not any(k.startswith("criterion.") for k in half)
    assert half["head.cls_logits.weight"].dtype == torch.float16
    assert all(v.dtype == torch.int64 for k, v in half.items() if k.endswith("num_batches_tracked"))
    small = load_model(tmp_path / "half.pth")
    assert small.state_dict()["head.cls_logits.weight"].dtype == torch.float32
    weight = small.state_dict()["head.cls_logits.weight"]
    assert torch.allclose(weight, a["head.cls_logits.weight"], atol=1e-3)
    assert main(["export", "--checkpoint", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "x.pth")]) == 2


def test_missing_data_names_the_synth_command(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    missing = f"data.train_json={tmp_path}/x/i.json"
    code = main(["train", "--config", "configs/synthetic_r18.yaml", "--set", missing])
    err = capsys.readouterr().err
    assert code == 2
    assert f"data.train_json = {tmp_path}/x/i.json does not exist" in err
    assert f"streamvis synth --out {tmp_path}/x --videos 400 --seed 0 --split train" in err
    assert main(["train", "--config", "configs/synthetic_r18.yaml", "--set", "solver.base_lrr=1"]) == 2
    assert "did you mean 'solver.base_lr'" in capsys.readouterr().err


def test_model_must_fit_the_dataset(tiny_synth, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(_argv(tiny_synth, tmp_path / "a", "--set", "model.num_classes=5")) == 2
    err = capsys.readouterr().err
    assert "has 8 categories but model.num_classes is 5; set --set model.num_classes=8" in err
    assert main(_argv(tiny_synth, tmp_path / "b", "--set", "model.num_identities=3")) == 2
    assert "instance identities but model.num_identities is 3" in capsys.readouterr().err
