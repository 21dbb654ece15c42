"""MaskTrack R-CNN configuration: official defaults, YAML files, bad input."""

from __future__ import annotations

import dataclasses

import pytest
from tests.conftest import REPO

from streamvis.config import from_dict, read_yaml
from streamvis.data.loader import DataConfig
from streamvis.errors import ConfigError
from streamvis.models.masktrack.config import (
    YTVIS19_CLASS_NAMES,
    MaskTrackConfig,
    MaskTrackSchedule,
    read_masktrack_yaml,
)


def test_official_defaults():
    config = MaskTrackConfig()
    assert config.num_classes == 41 and config.num_foreground_classes == 40
    assert YTVIS19_CLASS_NAMES[0] == "person" and YTVIS19_CLASS_NAMES[-1] == "tennis_racket"
    assert config.input.image_scale == (640, 360)
    assert config.roi.detections_per_image == 10 and config.rpn.proposals_per_image == 200
    assert config.track.match_coeff == (1.0, 2.0, 10.0)
    schedule = MaskTrackSchedule()
    assert (schedule.base_lr, schedule.step_epochs, schedule.max_epochs) == (0.005, (8, 11), 12)
    assert schedule.iterations(61) == (8 * 12, (8 * 8, 8 * 11))  # ceil(61 / 8) = 8 per epoch
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_classes = 9  # type: ignore[misc]


def test_official_yaml_equals_the_defaults_in_code():
    path = REPO / "configs" / "masktrack_r50_ytvis19.yaml"
    model, schedule = read_masktrack_yaml(path)
    assert model == MaskTrackConfig()
    assert schedule == MaskTrackSchedule()
    data = from_dict(DataConfig, read_yaml(path)["data"], prefix="data")
    assert (data.short_sides, data.max_size, data.flip_prob) == ((360,), 640, 0.5)
    assert data.reference_range >= 100000  # official: no temporal window


def test_synthetic_yaml():
    path = REPO / "configs" / "synthetic_masktrack_r18.yaml"
    model, schedule = read_masktrack_yaml(path)
    assert model.num_classes == 9 and model.class_names == ()
    assert model.backbone.depth == 18 and model.track.fc_out_channels == 256
    assert schedule.max_epochs == 1
    from_dict(DataConfig, read_yaml(path)["data"], prefix="data")


def test_class_count_mismatch_and_unknown_keys():
    with pytest.raises(ConfigError, match="lists 40 classes but 'model.num_classes' is 9"):
        MaskTrackConfig(num_classes=9)
    with pytest.raises(ConfigError, match="did you mean 'model.track.match_coeff'"):
        from_dict(MaskTrackConfig, {"track": {"match_coef": [1, 2, 10]}}, prefix="model")
    with pytest.raises(ConfigError, match="must be one of"):
        from_dict(MaskTrackConfig, {"method": "crossvis"}, prefix="model")


def test_unknown_top_level_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {num_classes: 41}\nshedule: {max_epochs: 3}\n")
    with pytest.raises(ConfigError, match="shedule"):
        read_masktrack_yaml(path)
