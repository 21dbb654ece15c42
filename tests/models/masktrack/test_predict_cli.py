"""`streamvis predict --weights <masktrack weights> --input clip.mp4 --viz` end to end with a tiny
randomly initialised MaskTrack R-CNN saved as a weights file (the method's own tracker by default)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from streamvis.cli import main
from streamvis.data.masks import decode_rle
from streamvis.data.video import probe, write_video

TINY = {"method": "masktrack", "num_classes": 3, "class_names": ["cat", "dog", "fox"],
        "test_short_side": 64, "test_max_size": 96,
        "backbone": {"depth": 18, "frozen_stages": -1, "norm_eval": False, "fpn_channels": 16},
        "roi": {"fc_out_channels": 32, "mask_channels": 16, "detections_per_image": 4},
        "track": {"fc_out_channels": 8}}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from streamvis.models.build import build_model, model_config_from_dict
    from streamvis.models.weights import save_weights

    torch.set_num_threads(1)
    config = model_config_from_dict(TINY)
    torch.manual_seed(0)
    model = build_model(config)
    with torch.no_grad():  # untrained: make class 0 ("cat", softmax row 1 after the background) win
        model.roi_head.bbox_head.fc_cls.bias[1] = 3.0
        model.roi_head.mask_head.conv_logits.bias[1] = 2.0  # masks on inside the boxes
    path = tmp_path_factory.mktemp("weights") / "masktrack_tiny.pth"
    save_weights(path, model.state_dict(), config)
    return path


def _clip(path, num=4, height=60, width=80):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(num)]
    write_video(path, frames, fps=8)


def test_predict_video_with_viz(tmp_path, weights, capsys):
    _clip(tmp_path / "clip.mp4")
    out = tmp_path / "out"
    argv = ["predict", "--weights", str(weights), "--input", str(tmp_path / "clip.mp4"), "--out", str(out),
            "--viz", "--viz-score-threshold", "0", "--no-progress"]
    assert main(argv) == 0
    assert "tracks in 4 frames" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results and {r["video_id"] for r in results} == {1}
    for entry in results:
        assert entry["category_id"] == 1 and 0 < entry["score"] <= 1  # class 0 -> official id 1
        assert len(entry["segmentations"]) == 4
        rles = [s for s in entry["segmentations"] if s is not None]
        assert rles and decode_rle(rles[0]).shape == (60, 80)
    assert len(results) <= 4 * 4  # at most detections_per_image new tracks per frame
    assert probe(out / "overlay.mp4") == (4, 60, 80, 8.0)
    pngs = sorted((out / "instance_ids").iterdir())
    assert [p.name for p in pngs] == ["00000.png", "00001.png", "00002.png", "00003.png"]
    for index, png in enumerate(pngs):  # track ids 1.. in results order (masktrack: creation order)
        ids = np.asarray(Image.open(png))
        expected = np.zeros((60, 80), np.uint16)
        for track_id, entry in enumerate(results, start=1):
            if entry["segmentations"][index] is not None:
                expected[decode_rle(entry["segmentations"][index]) > 0] = track_id
        assert np.array_equal(ids, expected)
    assert (ids > 0).any()


def test_predict_tracker_options_are_checked(tmp_path, weights, capsys):
    _clip(tmp_path / "clip.mp4", num=2)
    base = ["predict", "--weights", str(weights), "--input", str(tmp_path / "clip.mp4"), "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "bad"), "--tracker-set", "max_age=3"]) == 2
    err = capsys.readouterr().err
    assert "max_age" in err and "tracker 'masktrack' options" in err
    assert not (tmp_path / "bad" / "results.json").exists()
    assert main([*base, "--out", str(tmp_path / "fixed"), "--tracker-set", "losers_start_tracks=true"]) == 0
    assert json.loads((tmp_path / "fixed" / "results.json").read_text())
    # the embeddings fit the other trackers too
    assert main([*base, "--out", str(tmp_path / "ours"), "--tracker", "default"]) == 0
