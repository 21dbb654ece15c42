"""MaskTrack R-CNN configuration: official defaults, YAML files through the experiment loader, bad input."""

from __future__ import annotations

import dataclasses

import pytest
from tests.conftest import REPO

from streamvis.config import from_dict, load_config
from streamvis.errors import ConfigError
from streamvis.models.build import REQUIRED_CONFIG_FIELDS, check_method_config
from streamvis.models.masktrack.config import (
    YTVIS19_CLASS_NAMES,
    MaskTrackConfig,
    MaskTrackSchedule,
    official_solver_values,
)


def test_official_defaults():
    config = MaskTrackConfig()
    assert config.num_classes == 40 and config.num_classifier_outputs == 41  # official num_classes=41
    assert YTVIS19_CLASS_NAMES[0] == "person" and YTVIS19_CLASS_NAMES[-1] == "tennis_racket"
    assert config.input.image_scale == (640, 360)
    assert (config.test_short_side, config.test_max_size) == (360, 640)
    assert config.roi.detections_per_image == 10 and config.rpn.proposals_per_image == 200
    assert config.track.match_coeff == (1.0, 2.0, 10.0)
    schedule = MaskTrackSchedule()
    assert (schedule.base_lr, schedule.step_epochs, schedule.max_epochs) == (0.005, (8, 11), 12)
    assert schedule.iterations(61) == (8 * 12, (8 * 8, 8 * 11))  # ceil(61 / 8) = 8 per epoch
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.num_classes = 9  # type: ignore[misc]
    check_method_config(MaskTrackConfig)
    assert set(REQUIRED_CONFIG_FIELDS) <= {f.name for f in dataclasses.fields(MaskTrackConfig)}


def test_official_yaml_equals_the_defaults_in_code():
    cfg = load_config(REPO / "configs" / "masktrack_r50_ytvis19.yaml")
    assert cfg.model == MaskTrackConfig()
    assert (cfg.data.short_sides, cfg.data.max_size, cfg.data.flip_prob) == ((360,), 640, 0.5)
    assert cfg.data.reference_range >= 100000  # official: no temporal window
    solver = official_solver_values(8000)  # the F the YAML states
    for key, value in solver.items():
        got = getattr(cfg.solver, key)
        assert (list(got) if isinstance(got, tuple) else got) == pytest.approx(value), key


def test_synthetic_yaml():
    cfg = load_config(REPO / "configs" / "synthetic_masktrack_r18.yaml")
    model = cfg.model
    assert model.num_classes == 8 and model.class_names is None
    assert model.backbone.depth == 18 and model.track.fc_out_channels == 256
    assert (cfg.train.device, cfg.solver.ims_per_batch) == ("cpu", 4)


def test_class_count_mismatch_and_unknown_keys():
    with pytest.raises(ConfigError, match="lists 40 classes but 'model.num_classes' is 9"):
        MaskTrackConfig(num_classes=9)
    with pytest.raises(ConfigError, match="official 41 is 40 classes"):
        from_dict(MaskTrackConfig, {"num_classes": 41}, prefix="model")
    with pytest.raises(ConfigError, match="did you mean 'model.track.match_coeff'"):
        from_dict(MaskTrackConfig, {"track": {"match_coef": [1, 2, 10]}}, prefix="model")
    with pytest.raises(ConfigError, match="must be one of"):
        from_dict(MaskTrackConfig, {"method": "crossvis"}, prefix="model")
    with pytest.raises(ConfigError, match="category_ids' lists 2 ids"):
        MaskTrackConfig(num_classes=3, class_names=None, category_ids=(1, 2))


def test_unknown_key_in_an_experiment_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: {method: masktrack, num_classes: 40, trak: {num_fcs: 2}}\n")
    with pytest.raises(ConfigError, match="did you mean 'model.track'"):
        load_config(path)
