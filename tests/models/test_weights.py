"""models/weights.py, the one owner of the weights-file format: versions, save/load, inspect, export."""

from __future__ import annotations

import json

import pytest
import torch

from streamvis.assets import default_weights_path
from streamvis.cli import main
from streamvis.config import to_dict
from streamvis.errors import DataFormatError
from streamvis.models.build import build_model, preset
from streamvis.models.crossvis.config import CrossVISConfig
from streamvis.models.weights import (
    FORMAT_VERSION,
    NewerFormatError,
    export_weights,
    format_inspection,
    inspect,
    load,
    load_model,
    read_file,
    save_weights,
)


@pytest.fixture(scope="module")
def tiny():
    cfg = preset("crossvis_r18_small").replace(num_classes=2, num_identities=5, class_names=("a", "b"),
                                               category_ids=(3, 9))
    torch.manual_seed(0)
    return cfg, build_model(cfg)


def test_the_bundled_model_is_format_version_1_and_loads():
    weights = load(default_weights_path())
    assert weights.format_version == 1 and weights.kind == "weights" and weights.method == "crossvis"
    assert isinstance(weights.config, CrossVISConfig) and weights.config.num_classes == 8
    assert weights.meta["iteration"] == 4500 and "format" not in weights.meta
    model = load_model(default_weights_path())
    assert not model.training and model.config == weights.config
    assert not any(k.startswith("criterion.") for k in weights.model_state)  # inference-only file


def test_save_then_load_round_trips(tmp_path, tiny):
    cfg, model = tiny
    path = save_weights(tmp_path / "w.pth", model.state_dict(), cfg, source="unit test", iteration=7)
    data = torch.load(path, weights_only=True)
    assert (data["format"], data["format_version"], data["method"]) == ("streamvis-weights", FORMAT_VERSION,
                                                                        "crossvis")
    loaded = load(path)
    assert loaded.config == cfg and loaded.meta == {"source": "unit test", "iteration": 7}
    again = load_model(path)
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write


def test_old_layouts_read_as_crossvis(tmp_path, tiny):
    cfg, model = tiny
    old_config = {"architecture": "crossvis", **{k: v for k, v in to_dict(cfg).items() if k != "method"}}
    torch.save({"model": model.state_dict(), "config": old_config, "optimizer": {}, "scheduler": {},
                "iteration": 3}, tmp_path / "v0.pth")  # a training checkpoint before the header existed
    weights = load(tmp_path / "v0.pth")
    assert (weights.format_version, weights.kind, weights.method) == (0, "checkpoint", "crossvis")
    assert weights.config == cfg and weights.meta["iteration"] == 3
    no_key = {k: v for k, v in old_config.items() if k != "architecture"}
    torch.save({"model": model.state_dict(), "config": no_key}, tmp_path / "bare.pth")
    assert load(tmp_path / "bare.pth").method == "crossvis"


def test_errors_name_the_problem(tmp_path, tiny):
    cfg, model = tiny
    torch.save({"model": {}, "config": {}, "format_version": FORMAT_VERSION + 1}, tmp_path / "new.pth")
    with pytest.raises(NewerFormatError, match=f"new.pth: written by a newer streamvis .*version "
                                               f"{FORMAT_VERSION + 1}.*up to {FORMAT_VERSION}"):
        load(tmp_path / "new.pth")
    torch.save({"model": {}, "config": {"method": "nope"}}, tmp_path / "method.pth")
    with pytest.raises(DataFormatError, match="unknown model.method 'nope'"):
        load(tmp_path / "method.pth")
    torch.save({"model": {}, "config": {"method": "crossvis"}, "method": "pcan"}, tmp_path / "clash.pth")
    with pytest.raises(DataFormatError, match="says method 'pcan' but its config says 'crossvis'"):
        load(tmp_path / "clash.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(DataFormatError, match="not a dict"):
        read_file(tmp_path / "list.pth")
    state = dict(model.state_dict())
    state.pop("head.cls_logits.weight")
    save_weights(tmp_path / "short.pth", state, cfg)
    with pytest.raises(DataFormatError, match=r"missing \['head.cls_logits.weight'\]"):
        load_model(tmp_path / "short.pth")


def test_export_drops_training_tensors_and_keeps_meta(tmp_path, tiny):
    cfg, model = tiny
    torch.save({**{"format": "streamvis-weights", "format_version": 2, "method": "crossvis"},
                "config": to_dict(cfg), "model": model.state_dict(), "optimizer": {}, "scheduler": {},
                "iteration": 11, "experiment": {"seed": 4}}, tmp_path / "ckpt.pth")
    out = export_weights(tmp_path / "ckpt.pth", tmp_path / "w.pth", half=True, inference_only=True, note="x")
    weights = load(out)
    assert weights.kind == "weights" and not any(k.startswith("criterion.") for k in weights.model_state)
    assert weights.model_state["head.cls_logits.weight"].dtype == torch.float16
    assert weights.meta == {"source": "ckpt.pth", "iteration": 11, "experiment": {"seed": 4}, "note": "x"}


def test_inspect_and_the_command(tmp_path, tiny, capsys):
    cfg, model = tiny
    path = save_weights(tmp_path / "w.pth", model.state_dict(), cfg, source="unit test")
    info = inspect(path)
    assert (info["kind"], info["format_version"], info["method"]) == ("weights", FORMAT_VERSION, "crossvis")
    assert info["class_names"] == ["a", "b"] and info["category_ids"] == [3, 9]
    assert info["source"] == "unit test" and info["iteration"] is None
    assert info["tensors"] == len(model.state_dict()) and info["dtypes"] == ["float32", "int64"]
    assert info["config"]["depth"] == 18
    text = format_inspection(info)
    assert "method:         crossvis" in text and "classes:        2 (a, b)" in text
    assert main(["inspect", str(path)]) == 0
    assert "format version 2" in capsys.readouterr().out
    assert main(["inspect", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "crossvis"
    assert main(["inspect", str(tmp_path / "missing.pth")]) == 2
    assert "missing.pth: no such weights or checkpoint file" in capsys.readouterr().err
