"""Official MaskTrack R-CNN checkpoints: recognised, checked against the config, track head loaded."""

from __future__ import annotations

import pytest
import torch

from streamvis.config import from_dict
from streamvis.errors import DataFormatError
from streamvis.models.masktrack.config import MaskTrackConfig
from streamvis.models.masktrack.convert import check_official_state, official_state_dict, track_head_state
from streamvis.models.masktrack.track_head import TrackHead

CONFIG = from_dict(MaskTrackConfig, {"num_classes": 2, "class_names": ["a", "b"],
                                     "roi": {"fc_out_channels": 16}, "track": {"fc_out_channels": 8},
                                     "backbone": {"fpn_channels": 4}})


def official_like(num_classes: int = 3, channels: int = 4) -> dict[str, torch.Tensor]:
    """A tiny state dict with the official key layout (facts.md s.1 prefixes)."""
    return {
        "backbone.conv1.weight": torch.zeros(8, 3, 7, 7),
        "neck.lateral_convs.0.conv.weight": torch.zeros(channels, 8, 1, 1),
        "rpn_head.rpn_cls.weight": torch.zeros(3, channels, 1, 1),
        "bbox_head.fc_cls.weight": torch.zeros(num_classes, 16),
        "bbox_head.fc_reg.weight": torch.zeros(4 * num_classes, 16),
        "mask_head.conv_logits.weight": torch.zeros(num_classes, channels, 1, 1),
        "track_head.fcs.0.weight": torch.arange(8 * channels * 49, dtype=torch.float32).reshape(8, -1),
        "track_head.fcs.0.bias": torch.ones(8),
        "track_head.fcs.1.weight": torch.eye(8),
        "track_head.fcs.1.bias": torch.zeros(8),
    }


def test_mmcv_checkpoint_is_unwrapped_checked_and_loaded():
    wrapped = {"meta": {"epoch": 12}, "state_dict": {f"module.{k}": v for k, v in official_like().items()}}
    state = official_state_dict(wrapped, path="ckpt.pth")
    check_official_state(state, CONFIG, path="ckpt.pth")
    head = TrackHead(in_channels=4, fc_out_channels=8)
    head.load_state_dict(track_head_state(state))
    assert torch.equal(head.fcs[1].weight, torch.eye(8))
    assert torch.equal(head.fcs[0].weight, official_like()["track_head.fcs.0.weight"])


@pytest.mark.parametrize("edit, message, key", [
    (lambda s: s.update({"proposal_generator.fcos_head.cls_logits.weight": torch.zeros(1)}),
     "CrossVIS", "proposal_generator.fcos_head.cls_logits.weight"),
    (lambda s: [s.pop(k) for k in list(s) if k.startswith("track_head")],
     "without a tracking head", "track_head.fcs.0.weight"),
    (lambda s: s.update({"bbox_head.fc_cls.weight": torch.zeros(41, 16)}),
     "background included", "bbox_head.fc_cls.weight"),
    (lambda s: s.update({"roi_extractor.x": torch.zeros(1)}), "unexpected key", "roi_extractor.x"),
    (lambda s: s.update({"track_head.fcs.2.weight": torch.zeros(8, 8)}),
     "more than", "track_head.fcs.2.weight"),
])
def test_bad_checkpoints_name_the_file_and_the_key(edit, message, key):
    state = official_like()
    edit(state)
    with pytest.raises(DataFormatError, match=message) as err:
        check_official_state(state, CONFIG, path="bad.pth")
    assert "bad.pth" in str(err.value) and key in str(err.value)


def test_not_a_state_dict():
    with pytest.raises(DataFormatError, match="state_dict"):
        official_state_dict([1, 2], path="x.pth")
    with pytest.raises(DataFormatError, match="not a tensor"):
        official_state_dict({"state_dict": {"a": 1}}, path="x.pth")


# ------------------------------------------------------------------------------------------------
# streamvis convert --official with a synthetic official-layout checkpoint (golden.md weight rule)
# ------------------------------------------------------------------------------------------------

SMALL = {"method": "masktrack", "num_classes": 3, "class_names": None,
         "backbone": {"depth": 18, "frozen_stages": -1, "norm_eval": False, "fpn_channels": 16},
         "roi": {"fc_out_channels": 32, "mask_channels": 16}, "track": {"fc_out_channels": 8}}
# the model's prefix -> the official one (facts.md s.1 module names; written apart from convert.py)
TO_OFFICIAL = (("roi_head.bbox_head.", "bbox_head."), ("roi_head.mask_head.", "mask_head."))


def _official_name(key: str) -> str:
    for ours, theirs in TO_OFFICIAL:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    return key


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory):
    """An mmcv-style checkpoint with the official key layout: track and box heads from golden.md's
    weight rule (keyed by the official names), the rest from a seeded model; no num_batches_tracked
    (torch 0.4.1 BatchNorm may lack it)."""
    from streamvis.models.build import build_model, model_config_from_dict
    from streamvis.models.masktrack.rule_weights import rule_array

    torch.manual_seed(0)
    model = build_model(model_config_from_dict(SMALL))
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        name = _official_name(key)
        if name.startswith(("track_head.", "bbox_head.")):
            value = torch.from_numpy(rule_array(name, tuple(value.shape)))
        state[name] = value.clone()
    path = tmp_path_factory.mktemp("official") / "masktrack_official.pth"
    torch.save({"meta": {"epoch": 12}, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return path, state


def test_cli_convert_official_then_load(official_checkpoint, tmp_path, capsys):
    from streamvis.cli import main
    from streamvis.models.masktrack.rule_weights import rule_array
    from streamvis.models.weights import load, load_model

    path, official = official_checkpoint
    out = tmp_path / "masktrack.pth"
    assert main(["convert", "--official", str(path), "--out", str(out), "--class-names", "a,b,c"]) == 0
    assert "masktrack, 3 classes" in capsys.readouterr().out
    weights = load(out)
    assert weights.method == "masktrack" and weights.config.class_names == ("a", "b", "c")
    assert weights.config.backbone.depth == 18 and weights.config.track.fc_out_channels == 8
    assert weights.config.roi.fc_out_channels == 32 and weights.config.backbone.fpn_channels == 16
    state = weights.model_state
    assert torch.equal(state["track_head.fcs.1.weight"],
                       torch.from_numpy(rule_array("track_head.fcs.1.weight", (8, 8))))
    assert torch.equal(state["roi_head.bbox_head.fc_cls.weight"], official["bbox_head.fc_cls.weight"])
    for ours, theirs in (("roi_head.mask_head.conv_logits.weight", "mask_head.conv_logits.weight"),
                         ("neck.lateral_convs.0.conv.weight", "neck.lateral_convs.0.conv.weight")):
        assert torch.equal(state[ours], official[theirs])
    assert not any(k.startswith(("bbox_head.", "mask_head.")) for k in state)
    model = load_model(out)
    assert model.roi_head.bbox_head.fc_cls.weight.shape == (4, 32)  # background first + 3 classes
    assert torch.equal(model.backbone.layer1[0].conv1.weight, official["backbone.layer1.0.conv1.weight"])


@pytest.mark.parametrize("edit, extra, message, key", [
    (lambda s: s.update({"bbox_head.fc_reg.weight": torch.zeros(4 * 5, 32)}), [],
     "4 x \\(model.num_classes \\+ 1\\)", "bbox_head.fc_reg.weight"),
    (lambda s: s.pop("mask_head.upsample.weight"), [], "missing key", "mask_head.upsample.weight"),
    (lambda s: s.update({"roi_head.bbox_head.fc_cls.weight": torch.zeros(4, 32)}), [],
     "mmdetection 2.x", "roi_head.bbox_head.fc_cls.weight"),
    (lambda s: None, ["--class-names", "a,b"], "has 3 classes", "bbox_head.fc_cls.weight"),
])
def test_cli_refuses_with_file_and_key_and_writes_nothing(official_checkpoint, tmp_path, capsys, edit, extra,
                                                          message, key):
    from streamvis.cli import main

    _, official = official_checkpoint
    state = dict(official)
    edit(state)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, path)
    out = tmp_path / "w.pth"
    assert main(["convert", "--official", str(path), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and key in err and "masktrack" in err
    assert len(err.strip().splitlines()) == 1
    import re

    assert re.search(message, err)
    assert not out.exists() and list(tmp_path.iterdir()) == [path]
