"""Untrusted weights files: every unreadable or ill-formed file is one clear DataFormatError paragraph.

`streamvis.models.weights.torch_load_safely` is the one guarded ``torch.load``; the fuzz corpus
(tests/fuzz) covers the entry points end to end, these tests pin the messages.
"""

from __future__ import annotations

import pytest
import torch

from streamvis.errors import ConfigError, DataFormatError
from streamvis.models.weights import inspect, load, load_model, torch_load_safely


def _one_paragraph(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "weights_only=False" not in text and "weights_only` set to" not in text, text
    return text


@pytest.fixture
def tiny_file(tmp_path):
    """A streamvis-format dict with one tensor and a default CrossVIS config (no model is built)."""
    from streamvis.config import to_dict
    from streamvis.models.crossvis.config import CrossVISConfig

    def write(model=None, **header):
        data = {"format": "streamvis-weights", "format_version": 2, "method": "crossvis",
                "config": to_dict(CrossVISConfig()), "model": model or {"w": torch.zeros(2)}, **header}
        path = tmp_path / "w.pth"
        torch.save(data, path)
        return path

    return write


def test_a_truncated_file_names_the_file_and_torchs_first_sentence(tiny_file):
    path = tiny_file()
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataFormatError) as err:
        torch_load_safely(path)
    text = _one_paragraph(err)
    assert text.startswith(f"{path}: not a readable weights or checkpoint file (empty, truncated")
    assert "This is an internal miniz error" not in text  # torch's advice after the first sentence


def test_an_empty_file_and_a_missing_file(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(DataFormatError, match="empty.pth: not a readable official checkpoint .*EOFError"):
        torch_load_safely(tmp_path / "empty.pth", what="official checkpoint")
    with pytest.raises(DataFormatError, match="nothing.pth: no such weights or checkpoint file"):
        torch_load_safely(tmp_path / "nothing.pth")


def test_a_pickled_class_is_refused_with_its_name(tmp_path):
    path = tmp_path / "class.pth"
    torch.save({"model": {}, "config": {"x": ValueError("boom")}}, path)
    with pytest.raises(DataFormatError) as err:
        load(path)
    text = _one_paragraph(err)
    assert "refused" in text and "(its pickle asks for exceptions.ValueError)" in text
    assert "never runs code" in text


def test_a_tensor_instead_of_a_dict(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "t.pth")
    with pytest.raises(DataFormatError, match="a Tensor, not a dict"):
        load(tmp_path / "t.pth")


@pytest.mark.parametrize("version", [True, -1, "2", 2.0])
def test_a_bad_format_version_names_the_file_and_field(tiny_file, version):
    path = tiny_file(format_version=version)
    with pytest.raises(DataFormatError) as err:
        load(path)
    assert err.value.path == str(path) and err.value.field == "format_version"


@pytest.mark.parametrize("value", [[1.0, 2.0], None, "x", {"a": torch.zeros(1)}])
def test_a_non_tensor_in_the_state_dict_is_refused_by_load_inspect_and_load_model(tiny_file, value):
    path = tiny_file(model={"w": torch.zeros(2), "v": value})
    for reader in (load, inspect, load_model):
        with pytest.raises(DataFormatError) as err:
            reader(path)
        assert err.value.field == "model['v']", reader
        assert f"holds a {type(value).__name__}" in str(err.value)


def test_check_state_dict_refuses_a_non_tensor_value():
    from streamvis.models.weights import check_state_dict

    model = torch.nn.Linear(2, 1)
    with pytest.raises(DataFormatError, match=r"field 'model\['bias'\]'.*holds a int"):
        check_state_dict(model, {"weight": torch.zeros(1, 2), "bias": 3})


def test_a_torchvision_file_with_an_odd_stage_name(tmp_path):
    from streamvis.models.imagenet_weights import load_torchvision_resnet

    torch.save({"conv1.weight": torch.zeros(1, 3, 1, 1), "layerX.0.conv1.weight": torch.zeros(1)},
               tmp_path / "r.pth")
    with pytest.raises(DataFormatError, match="field 'layerX.0.conv1.weight'"):
        load_torchvision_resnet(tmp_path / "r.pth")


def test_config_integers_past_pythons_limit_and_non_utf8_yaml(tmp_path):
    from streamvis.config import load_config

    with pytest.raises(ConfigError, match="override 'seed=9999.*more than 4300 digits") as err:
        load_config(None, ["seed=" + "9" * 5000])
    assert len(str(err.value)) < 300  # the override is quoted cut short
    (tmp_path / "latin1.yaml").write_bytes("seed: 1 # caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not UTF-8 text \(invalid continuation byte"):
        load_config(tmp_path / "latin1.yaml")


def test_init_weights_with_a_non_tensor_is_a_clean_error():
    """train.init_weights copies a file's tensors: a non-tensor entry is named, not an AttributeError."""
    from streamvis.engine.builders import load_full_model_weights

    model = torch.nn.Linear(2, 1)
    with pytest.raises(DataFormatError, match=r"init.pth: field 'model\['weight'\]'.*holds a str"):
        load_full_model_weights(model, {"weight": "x", "bias": torch.zeros(1)}, "init.pth")


def test_a_stored_config_too_large_to_build_is_the_files_error(tiny_file):
    from streamvis.config import to_dict
    from streamvis.models.crossvis.config import CrossVISConfig

    path = tiny_file(config={**to_dict(CrossVISConfig()), "reid_dim": 10**30})
    with pytest.raises(DataFormatError) as err:
        load_model(path)
    text = _one_paragraph(err)
    assert text.startswith(f"{path}: the stored crossvis config cannot build a model: TypeError")
    assert "Exception raised from" not in text  # torch's C++ stack is left out
