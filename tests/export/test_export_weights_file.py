"""`export_weights_file`: what `streamvis export --weights W.pth --onnx OUT.onnx [--precision int8]` runs."""

from __future__ import annotations

import pytest
import torch
from tests.export.conftest import require_onnxruntime

from streamvis.errors import StreamvisError


@pytest.fixture(scope="module")
def tiny_train_split(tmp_path_factory):
    """A generated 3-video synthetic training split (2 frames per video) at the bundled model's size."""
    from streamvis.data.synthetic import generate_dataset

    return generate_dataset(tmp_path_factory.mktemp("train"), num_videos=3, seed=4, split="train",
                            frames=(2, 2), workers=1)


def test_dataset_calibration_frames_spread_over_videos(tiny_train_split, bundled_model):
    from streamvis.export.quantize import dataset_calibration_frames

    frames = dataset_calibration_frames(tiny_train_split, None, bundled_model.config, 2)
    assert len(frames) == 2 and all(f.shape == (3, 192, 320) and f.dtype == torch.uint8 for f in frames)
    assert not torch.equal(frames[0], frames[1])  # two different videos
    assert len(dataset_calibration_frames(tiny_train_split, None, bundled_model.config, 10)) == 3


def test_export_float32_and_int8_from_a_weights_file(tiny_train_split, tmp_path):
    require_onnxruntime()
    from streamvis.assets import default_weights_path
    from streamvis.export.backend import load_frame_model
    from streamvis.export.onnx import export_weights_file

    weights = default_weights_path()
    meta = export_weights_file(weights, tmp_path / "fp32.onnx")
    assert meta.precision == "float32" and (tmp_path / "fp32.onnx").is_file()
    meta = export_weights_file(weights, tmp_path / "int8.onnx", precision="int8", calibration_frames=2,
                               calibration_data=tiny_train_split)
    assert meta.precision == "int8"
    model = load_frame_model(tmp_path / "int8.onnx", "onnxruntime", threads=1)
    assert model.precision == "int8" and model.config == meta.config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp32.onnx", "int8.onnx"]  # no temporary left
    with pytest.raises(StreamvisError, match="choose one of"):
        export_weights_file(weights, tmp_path / "x.onnx", precision="int4")
