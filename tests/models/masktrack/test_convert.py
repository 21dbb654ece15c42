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
