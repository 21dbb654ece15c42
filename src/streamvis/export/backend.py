"""The ONNX Runtime frame model, and `load_frame_model`: the model ``streamvis predict`` runs.

`OnnxFrameModel` has the call the streaming predictor uses (``predict(images, output_sizes) ->
list[Instances]`` and ``config``), so `engine.predict.VideoPredictor`, `predict_dataset` and
both trackers run on it unchanged. One frame is one step:

    batch, sizes = normalize_and_pad([image])        # Python (torch, ops/image.py), as CrossVIS.predict
    outputs = frame_model.forward_features(batch, sizes)   # ONNX Runtime: the exported network
    instances = frame_model.postprocess(outputs, output_sizes)   # Python: CrossVIS.postprocess
    tracks = tracker.update(instances[0], frame_index)   # Python: the tracker

`postprocess` is the model's own `CrossVIS.postprocess` (threshold, top-k, NMS, post-NMS cap,
dynamic mask head per detection, mask upsampling), on a CrossVIS built from the config stored in
the ONNX file whose network parts are dropped, so both backends share the post-processing code.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from streamvis.errors import DataFormatError, StreamvisError
from streamvis.export.onnx import (
    INPUT_NAME,
    OnnxMetadata,
    check_exportable,
    check_graph_outputs,
    export_onnx,
    import_optional,
    parse_metadata,
    unflatten_outputs,
)
from streamvis.models.build import build_model
from streamvis.models.crossvis.fcos import HeadOutputs
from streamvis.models.crossvis.model import CrossVIS
from streamvis.models.weights import build_from_file, load, load_model
from streamvis.ops.image import normalize_and_pad
from streamvis.structures import Instances

BACKENDS = ("torch", "onnxruntime")


def build_postprocessor(config) -> CrossVIS:
    """A `CrossVIS` of `config` that can only post-process: backbone, FPN and mask branch dropped.

    `CrossVIS.postprocess` reads the inference thresholds, the dynamic mask head (which has no
    parameters of its own) and the re-ID width off the model, never the network's weights.
    """
    if getattr(config, "num_identities", None) == 0:  # "derive from the data": the criterion needs a count
        config = config.replace(num_identities=3)  # any valid count: the criterion is dropped below
    model = build_model(config)  # training init; the parts with weights that postprocess ignores go
    model.backbone = model.fpn = model.mask_branch = model.criterion = None
    return model.eval().requires_grad_(False)


class OnnxFrameModel:
    """CrossVIS inference whose per-frame network runs in ONNX Runtime (CPU by default).

    Args:
        path: an ONNX file written by `export_onnx` (or `quantize_onnx`).
        threads: ONNX Runtime intra-op threads (default: ``torch.get_num_threads()``, so both
            backends use the same number of cores).
        providers: ONNX Runtime execution providers (default: CPU).

    Raises:
        MissingExtraError: onnxruntime is not installed (the message says ``pip install streamvis[onnx]``).
        DataFormatError: the file is missing, not ONNX, or not a compatible streamvis export.
    """

    def __init__(self, path, *, threads: int | None = None, providers: Sequence[str] | None = None):
        ort = import_optional("onnxruntime", "the ONNX Runtime backend (--backend onnxruntime)")
        self.path = Path(path)
        if not self.path.is_file():
            raise DataFormatError("no such ONNX file", path=self.path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as err:  # noqa: BLE001 (ORT raises its own classes for any unreadable file)
            raise DataFormatError(f"ONNX Runtime cannot load this file as an ONNX model ({err}); is it "
                                  "an ONNX file written by `streamvis export`?", path=self.path) from None
        props = self.session.get_modelmeta().custom_metadata_map
        self.metadata: OnnxMetadata = parse_metadata(props, self.path)
        check_graph_outputs(self.metadata, {o.name: o.shape for o in self.session.get_outputs()}, self.path)
        self.config = self.metadata.config
        self.precision = self.metadata.precision
        self.postprocessor = build_postprocessor(self.config)

    def raw_outputs(self, images: torch.Tensor) -> list:
        """Run the exported network on (1, 3, Hp, Wp) normalized, padded images.

        Returns:
            numpy float32 arrays in `OnnxMetadata.output_names` order.
        """
        if images.dim() != 4 or images.shape[0] != 1:
            raise ValueError(f"the exported network takes one image (1, 3, Hp, Wp), "
                             f"got {tuple(images.shape)}")
        feed = {INPUT_NAME: images.detach().to("cpu", torch.float32).contiguous().numpy()}
        return self.session.run(None, feed)

    def forward_features(self, images: torch.Tensor, image_sizes: list[tuple[int, int]]) -> HeadOutputs:
        """`CrossVIS.forward_features` (dense, eval) of one image, computed by ONNX Runtime.

        Args:
            images: (1, 3, Hp, Wp) from `normalize_and_pad`.
            image_sizes: [(h, w)] the image's size before padding.
        """
        return unflatten_outputs(self.raw_outputs(images), self.metadata.strides, tuple(image_sizes[0]))

    def postprocess(self, outputs: HeadOutputs, output_sizes: list[tuple[int, int]] | None = None
                    ) -> list[Instances]:
        """The model's own post-processing (`CrossVIS.postprocess`) of `forward_features` outputs."""
        return self.postprocessor.postprocess(outputs, output_sizes)

    @torch.no_grad()
    def predict(self, images: list[torch.Tensor], output_sizes: list[tuple[int, int]] | None = None
                ) -> list[Instances]:
        """Detect, segment and embed instances, as `CrossVIS.predict` (one image per network run).

        Args:
            images: each (3, h_i, w_i) uint8 BGR, already resized to the test size.
            output_sizes: (height, width) to return each result at (default: the input size).

        Returns:
            One `Instances` per image, with the fields `CrossVIS.predict` documents.
        """
        model = self.postprocessor
        results = []
        for index, image in enumerate(images):
            batch, sizes = normalize_and_pad([image.cpu()], model.pixel_mean, model.pixel_std)
            wanted = None if output_sizes is None else [tuple(output_sizes[index])]
            results.extend(self.postprocess(self.forward_features(batch, sizes), wanted))
        return results


def load_frame_model(weights, backend: str = "torch", precision: str | None = None, *, device="cpu",
                     threads: int | None = None, calibration_frames: int | None = None,
                     compile: bool = False):
    """The frame model ``streamvis predict`` runs: a `CrossVIS` or an `OnnxFrameModel`.

    Args:
        weights: a streamvis weights file (.pth) or, for backend "onnxruntime", an exported .onnx file.
        backend: "torch" (PyTorch) or "onnxruntime".
        precision: per backend (`streamvis.engine.inference.BACKEND_PRECISIONS`): torch "float32",
            "float16" (CUDA) or "bfloat16" (autocast, `AutocastModel`); onnxruntime "float32" or
            "int8"; aliases fp32 / fp16 / bf16. None: float32 for a weights file, whatever an .onnx
            file holds. A weights file run by onnxruntime is exported (and, for int8, quantized on
            synthetic calibration frames) into a temporary file first.
        device: torch device of the PyTorch backend; onnxruntime runs on the CPU.
        threads: ONNX Runtime intra-op threads (default: torch's).
        calibration_frames: int8 calibration frames when quantizing a weights file on the fly.
        compile: ``torch.compile`` the network modules (torch backend; `engine.inference.compile_network`).

    Returns:
        An object with ``predict(images, output_sizes) -> list[Instances]`` and ``config``.

    Raises:
        StreamvisError: an unknown backend or precision, or a combination that does not exist.
        MissingExtraError: onnxruntime is not installed.
        UnsupportedMethodError: backend "onnxruntime" for a method that cannot be exported yet.
    """
    from streamvis.engine.inference import check_compile, check_precision, prepare_frame_model

    if backend not in BACKENDS:
        raise StreamvisError(f"--backend {backend!r}: choose one of {list(BACKENDS)}")
    precision = check_precision(backend, precision, device)  # the combinations each backend has
    path = Path(weights)
    if backend == "torch":
        if path.suffix.lower() == ".onnx":
            raise StreamvisError(f"{path}: an ONNX file runs with --backend onnxruntime; the PyTorch "
                                 "backend needs a streamvis weights file (.pth)")
        return prepare_frame_model(load_model(path, device=device), backend=backend, precision=precision,
                                   device=device, compile=compile)
    check_compile(backend, compile)
    if torch.device(device).type != "cpu":
        raise StreamvisError(f"--backend onnxruntime runs on the CPU here; drop --device {device} "
                             "or use --backend torch for a GPU")
    # fail before any export work when onnxruntime is missing
    import_optional("onnxruntime", "the ONNX Runtime backend (--backend onnxruntime)")
    if path.suffix.lower() == ".onnx":
        model = OnnxFrameModel(path, threads=threads)
        if precision is not None and precision != model.precision:
            raise StreamvisError(
                f"{path} holds {'an' if model.precision == 'int8' else 'a'} {model.precision} network, "
                f"not {precision}: export a {precision} one "
                f"with `streamvis export --weights W.pth --onnx OUT.onnx --precision {precision}`, "
                "or drop --precision")
        return model
    return _export_and_load(path, precision or "float32", threads, calibration_frames)


def _export_and_load(weights: Path, precision: str, threads: int | None, calibration_frames: int | None):
    """Export a weights file to a temporary ONNX file (quantized for int8) and load it."""
    stored = load(weights)
    check_exportable(stored.method, weights)
    model = build_from_file(stored).eval()
    with tempfile.TemporaryDirectory(prefix="streamvis-onnx-") as tmp:
        float_path = Path(tmp) / "model.onnx"
        export_onnx(model, float_path)
        path = float_path
        if precision == "int8":
            from streamvis.export import quantize

            count = calibration_frames or quantize.CALIBRATION_FRAMES
            frames = quantize.calibration_frames(model.config, count)
            path = quantize.quantize_onnx(float_path, Path(tmp) / "model_int8.onnx", frames)
        return OnnxFrameModel(path, threads=threads)  # the session holds the graph; the file may go
