"""int8 for CPUs: ONNX Runtime static quantization of an exported network, calibrated on frames.

Weights are quantized per output channel to int8 and activations per tensor to uint8 (QDQ format,
min/max ranges observed on the calibration frames), which ONNX Runtime runs with its int8 conv
kernels. The last layer of each output (class logits, box regression, centerness, controller,
re-ID prediction, the mask branch's final 1x1 conv) stays float32: those values are thresholded,
compared across frames (re-ID) or become the dynamic mask head's weights, where one int8 step
would move detections, and they cost a small part of the compute.

Calibration frames (`calibration_frames`) are frames of the generated synthetic *training* split,
resized to the model's test size exactly as the predictor resizes them.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from streamvis.errors import StreamvisError
from streamvis.export.onnx import INPUT_NAME, import_optional, parse_metadata, write_with_metadata
from streamvis.ops.image import normalize_and_pad

CALIBRATION_FRAMES = 8  # frames of the synthetic training split (one per video)
CALIBRATION_SEED = 0


def calibration_frames(config, count: int = CALIBRATION_FRAMES, *, seed: int = CALIBRATION_SEED,
                       size: tuple[int, int] | None = None) -> list[torch.Tensor]:
    """Frames of the synthetic training split at the model's test size, for int8 calibration.

    Args:
        config: the model config (its ``test_short_side`` / ``test_max_size`` set the resize).
        count: number of frames (the middle frame of each of `count` videos).
        seed: dataset seed (the synthetic "train" split of that seed).
        size: rendered (H, W) before the resize (default: the test size, short side x max size).

    Returns:
        `count` tensors (3, h, w) uint8 BGR, as `engine.predict.preprocess_frame` makes them.
    """
    from streamvis.data.synthetic import SynthConfig, render_synthetic_video
    from streamvis.engine.predict import preprocess_frame

    size = size or (int(config.test_short_side), int(config.test_max_size))
    synth = SynthConfig(num_videos=count, seed=seed, split="train", size=tuple(size), frames=(3, 3),
                        num_classes=min(int(config.num_classes), 8))
    return [preprocess_frame(render_synthetic_video(synth, index).frames[1], config)
            for index in range(count)]


def dataset_calibration_frames(gt_json, image_root, config, count: int = CALIBRATION_FRAMES
                               ) -> list[torch.Tensor]:
    """Calibration frames from a YouTube-VIS-format dataset (e.g. the training split of the model).

    Takes the middle frame of `count` videos spread evenly over the dataset (all videos when it
    has fewer), resized as the predictor resizes.

    Args:
        gt_json: the dataset json (validated by `load_ytvis`).
        image_root: folder its ``file_names`` are relative to (default layout: see
            `data.video.default_image_root`).
        config: the model config (test size).
        count: number of frames.

    Returns:
        (3, h, w) uint8 BGR tensors.
    """
    from streamvis.data.video import default_image_root, read_image
    from streamvis.data.ytvis import load_ytvis
    from streamvis.engine.predict import preprocess_frame

    gt = load_ytvis(gt_json)
    root = Path(image_root) if image_root is not None else default_image_root(gt_json, gt)
    videos = [v for v in gt["videos"] if v["file_names"]]
    if not videos:
        raise StreamvisError(f"{gt_json}: no video with frames to calibrate int8 quantization on")
    step = max(len(videos) / max(count, 1), 1.0)
    chosen = [videos[int(i * step)] for i in range(min(count, len(videos)))]
    return [preprocess_frame(read_image(root / v["file_names"][len(v["file_names"]) // 2]), config)
            for v in chosen]


def prediction_nodes(graph) -> list[str]:
    """Names of the nodes computing each graph output from its last Conv (that Conv included).

    Walks back from every output through single-input element-wise nodes (Relu, Mul by a
    constant scale, ...) to the first Conv; these are left in float32.
    """
    producer = {out: node for node in graph.node for out in node.output}
    names = []
    for output in graph.output:
        node = producer.get(output.name)
        while node is not None:
            names.append(node.name)
            if node.op_type == "Conv":
                break
            node = producer.get(node.input[0])
    return sorted(set(names))


def quantize_onnx(float_path, out_path, frames: Sequence[torch.Tensor], *, per_channel: bool = True,
                  keep_prediction_layers_float: bool = True) -> Path:
    """Write an int8 (QDQ) copy of a float32 streamvis ONNX file, calibrated on `frames`.

    Args:
        float_path: an ONNX file from `export_onnx` (precision float32).
        out_path: the int8 file to write (atomically; metadata precision "int8").
        frames: calibration images, each (3, h, w) uint8 BGR at the test size (`calibration_frames`).
        per_channel: per-output-channel weight scales (better accuracy, same speed).
        keep_prediction_layers_float: leave each output's last conv in float32 (see the module doc).

    Returns:
        `out_path`.
    """
    onnx = import_optional("onnx", "int8 quantization")
    import_optional("onnxruntime", "int8 quantization")
    from onnxruntime import quantization as q

    if not frames:
        raise StreamvisError("int8 quantization needs at least one calibration frame")
    metadata = parse_metadata({p.key: p.value for p in onnx.load(str(float_path)).metadata_props}, float_path)
    if metadata.precision != "float32":
        raise StreamvisError(f"{float_path}: already {metadata.precision}; quantize the float32 export")
    cfg = metadata.config
    batches = [normalize_and_pad([f], cfg.pixel_mean, cfg.pixel_std)[0].numpy() for f in frames]

    class FrameReader(q.CalibrationDataReader):
        """Feeds the normalized, padded calibration frames one at a time."""

        def __init__(self):
            self._batches = iter(batches)

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory(prefix="streamvis-int8-") as tmp, _quiet_root_logger():
        prepared, target = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        # constant folding and graph fusions before quantization (ONNX Runtime's recommended step);
        # its symbolic shape inference cannot resolve the dynamic height/width, so it is skipped
        q.quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        excluded = prediction_nodes(onnx.load(str(prepared)).graph) if keep_prediction_layers_float else []
        q.quantize_static(str(prepared), str(target), FrameReader(), quant_format=q.QuantFormat.QDQ,
                          per_channel=per_channel, activation_type=q.QuantType.QUInt8,
                          weight_type=q.QuantType.QInt8, calibrate_method=q.CalibrationMethod.MinMax,
                          nodes_to_exclude=excluded)
        quantized = onnx.load(str(target))
    return write_with_metadata(onnx, quantized, metadata.replace(precision="int8"), out_path)


@contextlib.contextmanager
def _quiet_root_logger():
    """ONNX Runtime's quantizer logs notes on the root logger (e.g. biases computed by an Add that
    GroupNorm's export produces); keep them out of the user's output, restoring the level after."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
