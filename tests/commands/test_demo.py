"""`streamvis demo` end to end with a tiny random-init model, and the bundled-model resolver."""

from __future__ import annotations

import json

import pytest
import torch

from streamvis.cli import main
from streamvis.data.ytvis import load_results, load_ytvis
from streamvis.errors import StreamvisError

SUMMARY_KEYS = {"AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100",
                "AR_small", "AR_medium", "AR_large"}


def save_tiny_model(path, *, num_classes=3, size=(64, 96), meta=None):
    """A random-init crossvis_r18_small saved as a streamvis weights file (the format load_model reads)."""
    from streamvis.models.build import build_model, preset
    from streamvis.models.weights import save_weights

    cfg = preset("crossvis_r18_small").replace(num_classes=num_classes, num_identities=10,
                                               test_short_side=size[0], test_max_size=size[1],
                                               detections_per_frame=5)
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        model.head.cls_logits.bias[0] = 4.0  # untrained: make class 0 fire, so tracks exist
        model.head.controller.bias[-1] = 8.0  # last dynamic-conv bias: non-empty masks
    save_weights(path, model.state_dict(), cfg, **(meta or {}))
    return path


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("weights") / "tiny.pth")


def test_demo_writes_all_outputs(tiny_weights, tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--weights", str(tiny_weights), "--out", str(out), "--videos", "2", "--seed", "49",
            "--overlays", "1", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    gt = load_ytvis(out / "valid" / "instances.json")
    assert len(gt["videos"]) == 2 and len(gt["categories"]) == 3  # the model's class count
    assert gt["annotations"], "the case needs ground-truth objects"
    assert (gt["videos"][0]["height"], gt["videos"][0]["width"]) == (64, 96)  # the model's test size
    results = load_results(out / "results.json", gt)  # validates against the ground truth
    assert len(results) > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["stats_named"]) == SUMMARY_KEYS
    assert {"stats", "per_category_AP", "per_category_AR", "gt", "results", "video_ids"} <= set(metrics)
    assert metrics["video_ids"] == [1, 2]
    assert all(0.0 <= v <= 1.0 or v == -1 for v in metrics["stats"])
    assert (out / "per_class_ap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    overlay = out / "videos" / "1" / "overlay.mp4"
    assert overlay.stat().st_size > 0 and not (out / "videos" / "2").exists()
    assert "Average Precision" in printed and str(out / "metrics.json") in printed
    assert "HOTA" in printed and "IDF1" in printed  # the tracking table beside AP
    tracking = metrics["tracking"]
    assert set(tracking["cls_comb_cls_av"]) >= {"HOTA", "CLEAR", "Identity"}
    assert 0.0 <= tracking["cls_comb_cls_av"]["HOTA"]["HOTA"] <= 1.0
    assert "generated 2 valid videos (64x96, 3 classes, seed 49)" in printed

    # a second run with the same parameters reuses the split; --no-video draws nothing new
    (out / "videos" / "1" / "overlay.mp4").unlink()
    assert main(argv + ["--no-video", "--tracker", "crossvis"]) == 0
    assert "reused 2 valid videos" in capsys.readouterr().out
    assert not overlay.exists()
    assert json.loads((out / "metrics.json").read_text())["video_ids"] == [1, 2]


def test_prepare_split_regenerates_on_other_parameters(tmp_path):
    from streamvis.demo import prepare_split

    folder = tmp_path / "valid"
    path, reused = prepare_split(folder, num_videos=1, seed=0, size=(32, 48), num_classes=2,
                                 frames=(2, 3), progress=False)
    assert not reused
    assert prepare_split(folder, num_videos=1, seed=0, size=(32, 48), num_classes=2, frames=(2, 3),
                         progress=False) == (path, True)
    path, reused = prepare_split(folder, num_videos=1, seed=1, size=(32, 48), num_classes=2,
                                 frames=(2, 3), progress=False)
    assert not reused and json.loads(path.read_text())["info"]["generator"]["seed"] == 1
    first = load_ytvis(path)["videos"][0]["file_names"][0]
    (folder / "JPEGImages" / first).unlink()  # a missing frame invalidates the cache
    assert prepare_split(folder, num_videos=1, seed=1, size=(32, 48), num_classes=2, frames=(2, 3),
                         progress=False)[1] is False


def test_split_settings_reads_meta_and_refuses_non_synthetic_models(tmp_path):
    from streamvis.demo import split_settings
    from streamvis.models.crossvis.config import CrossVISConfig

    path = save_tiny_model(tmp_path / "m.pth", meta={"synthetic": {"size": [48, 80], "num_classes": 2}})
    cfg = CrossVISConfig(depth=18, num_classes=3, test_short_side=64, test_max_size=96)
    assert split_settings(path, cfg) == ((48, 80), 2)
    plain = save_tiny_model(tmp_path / "plain.pth")
    assert split_settings(plain, cfg) == ((64, 96), 3)
    with pytest.raises(StreamvisError, match="synthetic videos have at most"):
        split_settings(plain, CrossVISConfig(depth=18, num_classes=40))


def test_missing_bundled_model_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import streamvis.assets as assets

    monkeypatch.setattr(assets, "assets_dir", lambda: tmp_path)
    with pytest.raises(StreamvisError, match="bundled model is missing.*--weights"):
        assets.default_weights_path()
    assert assets.default_weights_path(must_exist=False) == tmp_path / "default_model.pth"
    assert main(["demo", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "streamvis train --config configs/synthetic_r18.yaml" in capsys.readouterr().err


def test_assets_dir_is_the_package_folder():
    import streamvis.assets as assets

    assert assets.assets_dir() == __import__("pathlib").Path(assets.__file__).resolve().parent
    assert assets.model_card_path().parent == assets.assets_dir()
