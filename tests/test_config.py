"""Typed configs: YAML + dotted overrides, coercion, unknown keys with suggestions, round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from streamvis.config import (
    ExperimentConfig,
    SolverConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    load_config,
    save_config,
    to_dict,
)
from streamvis.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@dataclass(frozen=True)
class Inner:
    size: tuple[int, int] = (2, 3)
    scale: float = 1.0
    name: str | None = None


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    steps: tuple[int, ...] = ()
    flag: bool = False
    count: int = 1


def test_from_dict_coerces_values():
    cfg = from_dict(Outer, {"inner": {"size": [4, 5], "scale": 2, "name": "x"}, "steps": [1, 2.0],
                            "count": "1e3", "flag": True})
    assert cfg == Outer(inner=Inner(size=(4, 5), scale=2.0, name="x"), steps=(1, 2), flag=True, count=1000)
    assert isinstance(cfg.inner.scale, float) and isinstance(cfg.count, int)
    assert from_dict(Outer, None) == Outer()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"count": 1.5}, "config 'count' must be int, got float 1.5"),
        ({"count": True}, "config 'count' must be int"),
        ({"flag": 1}, "config 'flag' must be bool"),
        ({"inner": {"size": [1, 2, 3]}}, "config 'inner.size' must be a list of 2 values, got 3"),
        ({"inner": {"name": 3}}, "config 'inner.name' must be str"),
        ({"inner": 4}, "config 'inner' must be a mapping"),
        ({"steps": "12"}, "config 'steps' must be a list"),
    ],
)
def test_wrong_types_are_config_errors(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        from_dict(Outer, data)


def test_unknown_key_suggests_nearest_name():
    with pytest.raises(ConfigError, match=r"unknown config key 'inner\.scal'; did you mean 'inner\.scale'\?"):
        from_dict(Outer, {"inner": {"scal": 1}})
    with pytest.raises(ConfigError, match=r"key 'zzz'; valid keys are: inner, steps, flag, count"):
        from_dict(Outer, {"zzz": 1})


def test_overrides_parse_yaml_values_and_create_sections():
    data = apply_overrides({"a": {"b": 1}}, ["a.b=0.5", "a.c=[1, 2]", "d.e=null", "f=true", "g=text"])
    assert data == {"a": {"b": 0.5, "c": [1, 2]}, "d": {"e": None}, "f": True, "g": "text"}
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigError, match="'a.b' is not a section"):
        apply_overrides({"a": {"b": 1}}, ["a.b.c=2"])


def test_solver_and_train_checks():
    assert SolverConfig().steps == (15000, 21000) and SolverConfig().max_iter == 23000
    with pytest.raises(ConfigError, match="steps must be increasing"):
        from_dict(SolverConfig, {"steps": [20, 10]})
    with pytest.raises(ConfigError, match=r"config 'device' must be one of \['auto', 'cpu', 'cuda'\]"):
        from_dict(TrainConfig, {"device": "tpu"}, prefix="")


def test_load_yaml_with_overrides_and_round_trip(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("solver:\n  base_lr: 0.02\n  steps: [10, 20]\ntrain:\n  device: cpu\nseed: 5\n")
    cfg = load_config(path, ["solver.max_iter=30", "train.keep_last=1"])
    assert (cfg.solver.base_lr, cfg.solver.steps, cfg.solver.max_iter) == (0.02, (10, 20), 30)
    assert (cfg.train.device, cfg.train.keep_last, cfg.seed) == ("cpu", 1, 5)
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == cfg
    with pytest.raises(ConfigError, match=r"key 'solver\.base_lrr'; did you mean 'solver\.base_lr'"):
        load_config(path, ["solver.base_lrr=1"])


def test_missing_or_bad_yaml_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_shipped_configs_load():
    official = load_config(CONFIGS / "crossvis_r50_ytvis19.yaml")
    assert official.model.depth == 50 and official.model.num_classes == 40
    assert official.solver == SolverConfig()  # the defaults in code are the official schedule
    assert (official.data.short_sides, official.data.max_size) == ((360,), 640)
    synthetic = load_config(CONFIGS / "synthetic_r18.yaml", ["solver.max_iter=10"])
    assert synthetic.model.depth == 18 and synthetic.model.fpn_channels == 64  # from the preset
    assert synthetic.model.freeze_at == 0 and synthetic.solver.max_iter == 10
    assert synthetic.train.device == "cpu" and synthetic.solver.ims_per_batch == 4


def test_model_preset_expands_and_resolved_config_round_trips(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("model:\n  preset: crossvis_r18_small\n  num_classes: 3\n  loss:\n    max_proposals: 7\n")
    cfg = load_config(path)
    assert (cfg.model.depth, cfg.model.num_classes, cfg.model.loss.max_proposals) == (18, 3, 7)
    save_config(cfg, tmp_path / "resolved.yaml")
    assert "preset" not in (tmp_path / "resolved.yaml").read_text()
    assert load_config(tmp_path / "resolved.yaml") == cfg
    assert to_dict(cfg)["model"]["loss"]["max_proposals"] == 7
    with pytest.raises(ConfigError, match="unknown model preset 'nope'"):
        load_config(None, ["model.preset=nope"])


def test_experiment_defaults_are_official():
    cfg = ExperimentConfig()
    assert cfg.model.depth == 50 and cfg.solver.base_lr == 0.005 and cfg.solver.ims_per_batch == 16


def test_model_method_picks_the_config_class(tmp_path):
    from streamvis.models.crossvis.config import CrossVISConfig

    assert isinstance(ExperimentConfig().model, CrossVISConfig)  # no model.method: crossvis
    old = tmp_path / "old.yaml"
    old.write_text("model:\n  architecture: crossvis\n  depth: 18\n")  # before model.method existed
    cfg = load_config(old)
    assert isinstance(cfg.model, CrossVISConfig) and cfg.model.depth == 18 and cfg.model.method == "crossvis"
    save_config(cfg, tmp_path / "saved.yaml")
    assert "method: crossvis" in (tmp_path / "saved.yaml").read_text()
    assert load_config(tmp_path / "saved.yaml") == cfg
    with pytest.raises(ConfigError, match="unknown model.method 'nomethod'; choose one of: crossvis"):
        load_config(old, ["model.method=nomethod", "model.architecture=nomethod"])
    with pytest.raises(ConfigError, match="did you mean 'model.depth'"):
        load_config(old, ["model.deph=50"])
