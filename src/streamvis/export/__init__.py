"""streamvis.export: the CrossVIS per-frame network as an ONNX file, run by ONNX Runtime.

Only the fixed-structure part of a frame's inference is exported: backbone + FPN + FCOS head
(classification, box, centerness, controller, re-ID) + mask branch, for one normalized, padded
image of any height and width (multiples of 32). Everything whose shapes depend on the data
(score threshold, top-k, NMS, the dynamic mask head of each detection, mask upsampling, the
tracker) stays in Python and is the model's own code (`CrossVIS.postprocess`), so the PyTorch
and the ONNX Runtime backends share it and the trackers work unchanged.

- `export_onnx(model, path)` (export/onnx.py): write the ONNX file with its streamvis metadata
  (format version, streamvis version, ``model.method``, precision, strides, the method config);
  methods other than CrossVIS are refused (`check_exportable`, `UnsupportedMethodError`);
  `export_weights_file(weights, path, precision=...)`: what ``streamvis export --onnx`` calls.
- `OnnxFrameModel(path)` (export/backend.py): ``predict(images, output_sizes)`` as `CrossVIS`.
- `load_frame_model(weights, backend, precision)` (export/backend.py): what ``predict`` calls.
- `quantize_onnx(float_path, out_path, frames)` (export/quantize.py): int8 static quantization.

onnx and onnxruntime are the optional extra ``pip install streamvis[onnx]``; importing this
package does not import them (nor torch).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "export_onnx": "onnx", "export_weights_file": "onnx", "parse_metadata": "onnx",
    "OnnxMetadata": "onnx", "FrameNetwork": "onnx", "MissingExtraError": "onnx",
    "UnsupportedMethodError": "onnx", "check_exportable": "onnx",
    "OnnxFrameModel": "backend", "load_frame_model": "backend",
    "quantize_onnx": "quantize", "calibration_frames": "quantize", "dataset_calibration_frames": "quantize",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"streamvis.export.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'streamvis.export' has no attribute {name!r}")
