"""Bad input to the ONNX backend: files from another format, model or tool, and missing onnxruntime."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import pytest
import torch
from tests.export.conftest import require_onnxruntime

from streamvis.errors import DataFormatError, StreamvisError
from streamvis.export.onnx import (
    FORMAT_VERSION,
    KEY_CONFIG,
    KEY_FORMAT,
    KEY_METHOD,
    KEY_VERSION,
    MissingExtraError,
    parse_metadata,
)


def _rewrite_metadata(source, target, **changes):
    """Copy an ONNX file with some metadata_props values replaced (None removes the entry)."""
    import onnx

    proto = onnx.load(str(source))
    props = {p.key: p.value for p in proto.metadata_props}
    props.update(changes)
    del proto.metadata_props[:]
    for key, value in props.items():
        if value is not None:
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(proto, str(target))
    return target


def _load(path):
    from streamvis.export.backend import OnnxFrameModel

    return OnnxFrameModel(path, threads=1)


def test_metadata_records_format_version_method_and_config(onnx_exports, rule_model):
    model = _load(onnx_exports["rule_r18"])
    meta = model.metadata
    assert meta.format == FORMAT_VERSION and meta.method == "crossvis" and meta.precision == "float32"
    assert meta.strides == (8, 16, 32, 64, 128)
    assert model.config == rule_model.config  # the whole config round-trips through the json entry
    assert meta.output_names[0] == "cls_logits_p3" and meta.output_names[-1] == "mask_feats"


def test_a_file_from_another_format_version_is_refused(onnx_exports, tmp_path):
    old = _rewrite_metadata(onnx_exports["rule_r18"], tmp_path / "old.onnx",
                            **{KEY_FORMAT: "streamvis-onnx-v0", KEY_VERSION: "0.0.9"})
    with pytest.raises(DataFormatError) as info:
        _load(old)
    message = str(info.value)
    assert "old.onnx" in message and "streamvis 0.0.9" in message and "'streamvis-onnx-v0'" in message
    assert FORMAT_VERSION in message and "streamvis export --weights" in message and "\n" not in message


def test_an_onnx_file_not_written_by_streamvis_is_refused(tmp_path):
    require_onnxruntime()
    from onnx import TensorProto, helper, save

    path = tmp_path / "other.onnx"
    tensor = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "other", tensor[:1], tensor[1:])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(DataFormatError) as info:
        _load(path)
    assert KEY_FORMAT in str(info.value) and "was not written by `streamvis export`" in str(info.value)


def test_metadata_of_another_model_is_refused(onnx_exports, tmp_path):
    """The metadata says 3 classes and 32-d re-ID features; the graph has 8 and 64."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(onnx_exports["bundled"])).metadata_props}
    config = json.loads(props[KEY_CONFIG])
    config.update(num_classes=3, class_names=None, category_ids=None, reid_dim=32)
    edited = _rewrite_metadata(onnx_exports["bundled"], tmp_path / "edited.onnx",
                               **{KEY_CONFIG: json.dumps(config)})
    with pytest.raises(DataFormatError) as info:
        _load(edited)
    assert "cls_logits_p3 has 8 channels, the config says 3" in str(info.value)
    assert "does not match its own streamvis metadata" in str(info.value)


def test_another_method_and_a_broken_config_are_refused(onnx_exports):
    import onnx

    props = {p.key: p.value for p in onnx.load(str(onnx_exports["rule_r18"])).metadata_props}
    with pytest.raises(DataFormatError, match="holds a 'pcan' network"):
        parse_metadata({**props, KEY_METHOD: "pcan"}, "x.onnx")
    with pytest.raises(DataFormatError, match="cannot be read.*score_treshold"):
        parse_metadata({**props, KEY_CONFIG: json.dumps({"score_treshold": 0.1})}, "x.onnx")
    with pytest.raises(DataFormatError, match="cannot be read"):
        parse_metadata({**props, KEY_CONFIG: "{not json"}, "x.onnx")


def test_a_file_that_is_not_onnx_is_refused(tmp_path):
    require_onnxruntime()
    path = tmp_path / "weights.onnx"
    path.write_bytes(b"definitely not a protobuf")
    with pytest.raises(DataFormatError, match="cannot load this file as an ONNX model"):
        _load(path)
    with pytest.raises(DataFormatError, match="no such ONNX file"):
        _load(tmp_path / "missing.onnx")


def test_missing_onnxruntime_says_how_to_install_it(monkeypatch, tmp_path):
    from streamvis.export.backend import load_frame_model

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    with pytest.raises(MissingExtraError) as info:
        load_frame_model(tmp_path / "model.onnx", backend="onnxruntime")
    assert "pip install streamvis[onnx]" in str(info.value) and "--backend torch" in str(info.value)
    assert isinstance(info.value, StreamvisError)  # the CLI prints it without a traceback


def test_missing_onnx_says_how_to_install_it(monkeypatch, rule_model, tmp_path):
    from streamvis.export.onnx import export_onnx

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingExtraError, match=r"pip install streamvis\[onnx\]"):
        export_onnx(rule_model, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_load_frame_model_refuses_impossible_combinations(onnx_exports, tmp_path):
    from streamvis.export.backend import OnnxFrameModel, load_frame_model

    with pytest.raises(StreamvisError, match="choose one of"):
        load_frame_model("w.pth", backend="tensorrt")
    with pytest.raises(StreamvisError, match="runs only on --backend onnxruntime"):
        load_frame_model("w.pth", backend="torch", precision="int8")
    with pytest.raises(StreamvisError, match="an ONNX file runs with --backend onnxruntime"):
        load_frame_model(onnx_exports["rule_r18"], backend="torch")
    with pytest.raises(StreamvisError, match="holds a float32 network, not int8"):
        load_frame_model(onnx_exports["rule_r18"], backend="onnxruntime", precision="int8")
    model = load_frame_model(onnx_exports["rule_r18"], backend="onnxruntime", threads=1)
    assert isinstance(model, OnnxFrameModel) and model.precision == "float32"


def test_metadata_stores_model_method_beside_the_config(onnx_exports):
    import onnx

    props = {p.key: p.value for p in onnx.load(str(onnx_exports["rule_r18"])).metadata_props}
    assert props[KEY_METHOD] == "crossvis" and json.loads(props[KEY_CONFIG])["method"] == "crossvis"
    with pytest.raises(DataFormatError, match="config method 'pcan' differs"):
        parse_metadata({**props, KEY_CONFIG: json.dumps({**json.loads(props[KEY_CONFIG]), "method": "pcan"})},
                       "x.onnx")


@dataclass(frozen=True)
class _ToyConfig:
    """A second method's config with the method-contract fields (models/build.py)."""

    method: str = "toy"
    num_classes: int = 2
    class_names: tuple[str, ...] | None = None
    category_ids: tuple[int, ...] | None = None
    test_short_side: int = 32
    test_max_size: int = 64


def _never_built(config):
    raise AssertionError("the model of an unsupported method must not be built")


def test_a_method_other_than_crossvis_is_refused_before_any_work(monkeypatch, tmp_path):
    from streamvis.export.backend import load_frame_model
    from streamvis.export.onnx import UnsupportedMethodError, export_onnx, export_weights_file
    from streamvis.models import build
    from streamvis.models.weights import save_weights

    toy = build.MethodSpec(config_class=_ToyConfig, build_model=_never_built)
    monkeypatch.setitem(build.METHODS, "toy", toy)
    weights = save_weights(tmp_path / "toy.pth", {"w": torch.zeros(2)}, _ToyConfig())
    for call in (lambda: export_weights_file(weights, tmp_path / "toy.onnx"),
                 lambda: export_weights_file(weights, tmp_path / "toy.onnx", precision="int8"),
                 lambda: load_frame_model(weights, backend="onnxruntime")):
        with pytest.raises(UnsupportedMethodError) as info:
            call()
        message = str(info.value)
        assert "toy.pth" in message and "'toy'" in message and "'crossvis'" in message
        assert "--backend torch" in message and "\n" not in message
        assert isinstance(info.value, StreamvisError)
    model = torch.nn.Linear(1, 1)
    model.config = _ToyConfig()
    with pytest.raises(UnsupportedMethodError, match="this model is a 'toy'"):
        export_onnx(model, tmp_path / "toy.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.pth"]
