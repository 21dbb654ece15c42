"""PCAN through `streamvis predict` / `streamvis demo`: a tiny random-weights PCAN on a short MP4."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from streamvis.cli import main
from streamvis.data.masks import decode_rle
from streamvis.data.video import probe, read_frames, write_video
from streamvis.engine.predict import VideoPredictor
from streamvis.models.build import build_model
from streamvis.models.pcan.config import PCANConfig
from streamvis.models.weights import save_weights

pytestmark = pytest.mark.slow

HEIGHT, WIDTH = 60, 80
TINY = dict(depth=18, num_classes=3, class_names=("cat", "dog", "fox"), fpn_channels=32, fc_channels=64,
            embed_channels=32, mask_conv_channels=32, rpn_pre_nms_topk=50, rpn_max_proposals=50,
            detections_per_frame=1, test_short_side=64, test_max_size=96)


@pytest.fixture(scope="module")
def model():
    """Untrained, with biases that make class 0 fire with masks on (mask head and refine head); one
    detection per frame, so the bi-softmax of untrained (alike) embeddings continues its track."""
    torch.manual_seed(0)
    pcan = build_model(PCANConfig(**TINY)).eval()
    with torch.no_grad():
        pcan.roi_head.bbox_head.fc_cls.bias.copy_(torch.tensor([6.0, 0.0, 0.0, 0.0]))  # background last
        pcan.roi_head.mask_head.conv_logits.bias.fill_(4.0)
        pcan.roi_head.refine_head.conv_logits.bias.fill_(4.0)
    return pcan


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory):
    return save_weights(tmp_path_factory.mktemp("w") / "pcan.pth", model.state_dict(), model.config)


def _clip(num=4):
    """The same textured frame with a little noise: the embeddings stay close, so tracks continue."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    return [np.clip(base.astype(int) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
            for _ in range(num)]


def test_predictor_resets_the_video_state(model):
    """`VideoPredictor` starts each video at frame 0: the second video repeats the first's output."""
    frames = _clip(3)
    outputs = []
    for _ in range(2):
        predictor = VideoPredictor(model)  # the method's default tracker: quasi_dense
        assert type(predictor.tracker).__name__ == "QuasiDenseVideoTracker"
        tracks = [predictor.update(frame) for frame in frames]
        outputs.append([[(t.track_id, t.masks[i]["counts"]) for t in frame_tracks]
                        for i, frame_tracks in enumerate(tracks)])
    assert outputs[0][0]  # tracks in the first frame
    # the refine head's global prototypes move at inference (official), so masks may differ; ids do not
    assert [[tid for tid, _ in f] for f in outputs[0]] == [[tid for tid, _ in f] for f in outputs[1]]
    assert model._next_frame == 3


def test_predict_mp4_with_viz(weights, tmp_path, capsys):
    frames = _clip()
    write_video(tmp_path / "clip.mp4", frames, fps=8)
    out = tmp_path / "out"
    assert main(["predict", "--weights", str(weights), "--input", str(tmp_path / "clip.mp4"),
                 "--out", str(out), "--viz", "--viz-score-threshold", "0", "--no-progress"]) == 0
    assert "tracks in 4 frames" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results and all(r["category_id"] == 1 for r in results)  # class 0 ("cat") -> id 1
    full = [r for r in results if all(s is not None for s in r["segmentations"])]
    assert len(results) == len(full) == 1, "the one detection per frame continues one track"
    mask = decode_rle(full[0]["segmentations"][0]) > 0
    assert mask.shape == (HEIGHT, WIDTH) and mask.any()
    assert probe(out / "overlay.mp4") == (4, HEIGHT, WIDTH, 8.0)
    # the overlay frame differs from the input inside the masks (coloured fill), hardly outside
    overlay = next(iter(read_frames(out / "overlay.mp4"))).astype(int)
    source = next(iter(read_frames(tmp_path / "clip.mp4"))).astype(int)
    changed = np.abs(overlay - source).sum(axis=2) > 40
    assert changed[mask].mean() > 0.5


def test_tracker_options_and_unknown_option(weights, tmp_path, capsys):
    write_video(tmp_path / "clip.mp4", _clip(2), fps=8)
    argv = ["predict", "--weights", str(weights), "--input", str(tmp_path / "clip.mp4"), "--out",
            str(tmp_path / "out"), "--tracker", "quasi_dense", "--no-progress"]
    assert main(argv + ["--tracker-set", "init_score_threshold=0.999999"]) == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == []  # no track may start
    assert main(argv + ["--tracker-set", "max_age=3"]) == 2
    err = capsys.readouterr().err
    assert "max_age" in err and "quasi_dense" in err


def test_demo_with_pcan_weights_and_method_checks(weights, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--weights", str(weights), "--method", "pcan", "--out", str(out), "--videos", "1",
                 "--no-video", "--no-progress"]) == 0
    assert "tracker: quasi_dense" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())
    assert main(["demo", "--weights", str(weights), "--method", "crossvis", "--out", str(out),
                 "--videos", "1", "--no-video", "--no-progress"]) == 2
    assert "holds a 'pcan' model" in capsys.readouterr().err
    assert main(["demo", "--method", "pcan", "--out", str(out), "--no-progress"]) == 2
    assert "no bundled pcan model" in capsys.readouterr().err


def test_replacing_the_config_moves_the_heads_test_settings():
    """``model.config = model.config.replace(...)`` reaches what the heads were built with (the
    R-CNN score threshold, NMS, detections per frame, mask threshold, prototype freeze)."""
    pcan = build_model(PCANConfig(**TINY)).eval()
    assert pcan.roi_head.test_config.score_threshold == 0.5
    pcan.config = pcan.config.replace(score_threshold=0.05, nms_threshold=0.6, detections_per_frame=7,
                                      mask_threshold=0.4, freeze_prototypes_at_inference=True)
    test = pcan.roi_head.test_config
    assert (test.score_threshold, test.nms_iou_threshold, test.max_per_image) == (0.05, 0.6, 7)
    assert pcan.roi_head.mask_threshold == 0.4
    assert pcan.roi_head.refine_head.freeze_prototypes_at_inference is True
    assert pcan.config.score_threshold == 0.05
