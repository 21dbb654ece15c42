"""int8 static quantization: it runs, keeps its metadata, and finds the float32 detections."""

from __future__ import annotations

import pytest
import torch
from tests.export.conftest import require_onnxruntime

from streamvis.engine.predict import preprocess_frame

SCORE_FLOOR = 0.3  # compare the detections a user would look at (the bundled model's viz threshold)


@pytest.fixture(scope="module")
def int8_model(onnx_exports, bundled_model, tmp_path_factory):
    require_onnxruntime()
    from streamvis.export.backend import OnnxFrameModel
    from streamvis.export.quantize import calibration_frames, quantize_onnx

    frames = calibration_frames(bundled_model.config, 4)
    path = quantize_onnx(onnx_exports["bundled"], tmp_path_factory.mktemp("int8") / "int8.onnx", frames)
    return OnnxFrameModel(path, threads=1)


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return (a & b).sum().item() / union if union else 0.0


def test_calibration_frames_are_training_frames_at_the_test_size(bundled_model):
    from streamvis.export.quantize import calibration_frames

    frames = calibration_frames(bundled_model.config, 3)
    assert len(frames) == 3 and all(f.shape == (3, 192, 320) and f.dtype == torch.uint8 for f in frames)
    assert not torch.equal(frames[0], frames[1])  # one frame per video
    assert all(torch.equal(a, b) for a, b in zip(frames, calibration_frames(bundled_model.config, 3)))


def test_int8_file_is_quantized_and_says_so(int8_model, onnx_exports):
    import onnx

    assert int8_model.precision == "int8" and int8_model.metadata.strides == (8, 16, 32, 64, 128)
    ops = {node.op_type for node in onnx.load(str(int8_model.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert int8_model.path.stat().st_size < 0.5 * onnx_exports["bundled"].stat().st_size  # int8 weights


def test_prediction_layers_stay_float(onnx_exports):
    import onnx

    from streamvis.export.quantize import prediction_nodes

    names = prediction_nodes(onnx.load(str(onnx_exports["bundled"])).graph)
    convs = [n for n in names if n.endswith("/Conv")]
    assert len(convs) == 5 * 5 + 1  # 5 fields x 5 levels + the mask branch's last conv
    assert any("controller" in n for n in convs) and any("mask_branch" in n for n in convs)


def test_int8_detections_overlap_float32(int8_model, bundled_model, valid_frames):
    """Most float32 detections (score >= 0.3) have an int8 one of the same class with mask IoU > 0.5."""
    matched = total = 0
    for video in valid_frames:
        for frame in video[::2]:
            image = preprocess_frame(frame, bundled_model.config)
            (ref,) = bundled_model.predict([image])
            (got,) = int8_model.predict([image])
            for index in torch.nonzero(ref.scores >= SCORE_FLOOR).flatten().tolist():
                same_class = torch.nonzero(got.classes == ref.classes[index]).flatten().tolist()
                ious = [_mask_iou(ref.masks[index], got.masks[j]) for j in same_class]
                total += 1
                matched += max(ious, default=0.0) > 0.5
    print(f"int8 vs float32: {matched} of {total} detections matched")
    assert total >= 10
    assert matched >= 0.8 * total, f"{matched} of {total} float32 detections found in int8"


def test_load_frame_model_quantizes_a_weights_file_on_the_fly(bundled_model, valid_frames):
    require_onnxruntime()
    from streamvis.assets import default_weights_path
    from streamvis.export.backend import OnnxFrameModel, load_frame_model

    model = load_frame_model(default_weights_path(), "onnxruntime", "int8", threads=1, calibration_frames=2)
    assert isinstance(model, OnnxFrameModel) and model.precision == "int8"
    assert not model.path.exists()  # the temporary export is gone; the session holds the graph
    image = preprocess_frame(valid_frames[0][0], bundled_model.config)
    (got,) = model.predict([image])
    (ref,) = bundled_model.predict([image])
    strongest = int(ref.classes[ref.scores.argmax()])
    assert strongest in got.classes[got.scores >= SCORE_FLOOR].tolist()
