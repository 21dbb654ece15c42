"""How the per-frame network runs: the precision each backend offers, autocast, and ``torch.compile``.

``streamvis predict --precision P --backend B``: each backend has its own precisions
(`BACKEND_PRECISIONS`); any other combination is an error that names the valid ones.

- ``--backend torch``: ``float32`` (default), ``float16`` / ``bfloat16`` (aliases ``fp16`` /
  ``bf16``): the network runs under ``torch.autocast`` (`AutocastModel`), weights stay float32 and
  post-processing sees autocast's outputs (detections, NMS and masks are computed in float32 where
  autocast says so). ``float16`` needs CUDA: on a CPU it is an error (CPU float16 kernels are slow
  and not all ops have them), ``bfloat16`` runs on both.
- ``--backend onnxruntime``: ``float32`` or ``int8`` (static quantization, streamvis/export/).

``--compile`` (`compile_network`): ``torch.compile`` of the model's fixed-size network modules
(backbone, FPN, dense heads), compiled in place so the state dict keeps its keys. The
data-dependent post-processing (NMS, dynamic mask head per detection) and the tracker stay eager.

Host synchronisations per frame (a GPU waits for the host, or the host for the GPU). A frame's
results leave the device once (`streamvis.tracking.base.to_host`: boxes, scores, classes,
embeddings and the thresholded bool masks copied together; RLE is encoded on the host). The
others are data-dependent shapes that the next step needs on the host. In CrossVIS's faithful
(dense) path they are:

- one ``nonzero`` per FPN level (the candidates above the score threshold: 5), fcos.level_candidates;
- one copy of the NMS suppression matrix (ops/nms.py `greedy_keep`: the greedy walk runs on the host);
  above 1,000 candidate boxes class-aware NMS runs per class (torchvision's rule), one more per class;
- one ``nonzero`` for the post-NMS cap when there are more detections than ``detections_per_frame``;
- one ``nonzero`` for the boxes that stay non-empty after clipping (crossvis/model.py).

Where the old code synchronised, it now needs none: it read the kthvalue threshold with
``.cpu()``/``.item()``, walked NMS with one ``nonzero`` per kept box, gathered controller parameters
per level with boolean indexing, indexed by boolean masks seven times, and copied to the host once
per field. What was not changed: `optimize_for_inference` (sparse) loops over the levels that have
detections (``unique().tolist()``) because it runs the re-ID tower only there; the two-stage methods
(PCAN, MaskTrack R-CNN) still index by boolean masks per level or class in the RPN and RoI heads.
`ops/roi_align.py` plans its chunks on the host (two small copies per call). PCAN writes track ids
through CPU tensors (its quasi-dense tracker runs on the CPU), and the MaskTrack association runs on
the host.
"""

from __future__ import annotations

import contextlib
import sys

import torch

from streamvis.errors import StreamvisError

BACKEND_PRECISIONS = {"torch": ("float32", "float16", "bfloat16"), "onnxruntime": ("float32", "int8")}
PRECISION_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
# every value ``--precision`` accepts (canonical names and their aliases)
PRECISION_CHOICES = ("float32", "fp32", "float16", "fp16", "bfloat16", "bf16", "int8")
AUTOCAST_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
# the fixed-size network modules `compile_network` compiles, by attribute name, when a model has them
NETWORK_MODULES = ("backbone", "fpn", "head", "mask_branch")


def canonical_precision(precision: str | None) -> str | None:
    """``fp16`` -> ``float16``, ``bf16`` -> ``bfloat16``, ``fp32`` -> ``float32``; others unchanged."""
    return None if precision is None else PRECISION_ALIASES.get(precision, precision)


def check_precision(backend: str, precision: str | None, device="cpu") -> str | None:
    """Validate a backend/precision/device combination; returns the canonical precision (None: default).

    Raises:
        StreamvisError: a precision the backend does not have (int8 with torch, float16 with
            onnxruntime, ...), or float16 on a device other than CUDA.
    """
    precision = canonical_precision(precision)
    if precision is None:
        return None
    valid = BACKEND_PRECISIONS.get(backend)
    if valid is None:
        raise StreamvisError(f"--backend {backend!r}: choose one of {list(BACKEND_PRECISIONS)}")
    if precision not in valid:
        others = [b for b, names in BACKEND_PRECISIONS.items() if precision in names]
        if not others:
            raise StreamvisError(f"--precision {precision!r}: choose one of {list(PRECISION_CHOICES)}")
        raise StreamvisError(f"--precision {precision} runs only on --backend {others[0]}; --backend "
                             f"{backend} has {', '.join(valid)}")
    if precision == "float16" and torch.device(device).type != "cuda":
        raise StreamvisError(f"--precision float16 needs a CUDA device (got --device {device}): CPU float16 "
                             "autocast is slow and incomplete; use --precision bfloat16 on a CPU")
    return precision


def autocast_context(device, precision: str | None):
    """``torch.autocast`` for a half precision on `device`'s type, else a no-op context."""
    dtype = AUTOCAST_DTYPES.get(canonical_precision(precision) or "float32")
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


class AutocastModel:
    """A frame model whose ``predict`` runs under ``torch.autocast`` (float16 or bfloat16).

    Everything else (``config``, ``parameters``, ``start_video``, ...) is the wrapped model's, so
    `engine.predict.VideoPredictor`, the dataset predictors and the shard runner take it as is.
    Outputs are cast back to float32 where autocast left a half-precision float tensor, so the
    trackers and the results writer see the same dtypes as in float32.

    Args:
        model: a frame model (``predict(images, output_sizes) -> list[Instances]``).
        precision: "float16" or "bfloat16" (aliases fp16 / bf16).
    """

    def __init__(self, model, precision: str):
        precision = canonical_precision(precision)
        if precision not in AUTOCAST_DTYPES:
            raise ValueError(f"AutocastModel runs float16 or bfloat16, not {precision!r}")
        self.model, self.precision = model, precision

    def __getattr__(self, name):  # only called for names not found on the wrapper itself
        return getattr(self.__dict__["model"], name)

    def predict(self, images, output_sizes=None):
        """The wrapped ``predict`` under autocast; floating outputs come back as float32."""
        device = images[0].device if len(images) else torch.device("cpu")
        with autocast_context(device, self.precision):
            results = self.model.predict(images, output_sizes=output_sizes)
        return [_float32_fields(instances) for instances in results]


def _float32_fields(instances):
    for name, value in list(instances.get_fields().items()):
        if isinstance(value, torch.Tensor) and value.dtype in (torch.float16, torch.bfloat16):
            instances.set(name, value.float())
    return instances


def compile_network(model, *, mode: str | None = None):
    """``torch.compile`` the model's fixed-size network modules (`NETWORK_MODULES`) in place.

    Args:
        model: a PyTorch frame model (an `AutocastModel` is unwrapped).
        mode: torch.compile mode (None: the default; "reduce-overhead" adds CUDA graphs).

    Returns:
        The names of the compiled modules.

    Raises:
        StreamvisError: this PyTorch has no ``torch.compile``, or the model has none of the modules.
    """
    inner = model.model if isinstance(model, AutocastModel) else model
    if not hasattr(torch, "compile") or not hasattr(torch.nn.Module, "compile"):
        raise StreamvisError(f"--compile needs torch.compile (PyTorch >= 2.2); this is {torch.__version__}")
    if sys.version_info >= (3, 14) and not torch.compiler.is_dynamo_supported():  # pragma: no cover
        raise StreamvisError("--compile: torch.compile is not supported on this Python version")
    names = [n for n in NETWORK_MODULES if isinstance(getattr(inner, n, None), torch.nn.Module)]
    if not names:
        raise StreamvisError(f"--compile: {type(inner).__name__} has none of the network modules "
                             f"{list(NETWORK_MODULES)} (is it an ONNX Runtime model? use --backend torch)")
    for name in names:
        getattr(inner, name).compile(mode=mode)
    return names


def check_compile(backend: str, compile: bool) -> None:
    """``--compile`` is for the PyTorch backend only.

    Raises:
        StreamvisError: --compile with another backend.
    """
    if compile and backend != "torch":
        raise StreamvisError(f"--compile compiles the PyTorch network; --backend {backend} runs its own "
                             "graph optimizations: drop --compile")


def prepare_frame_model(model, *, backend: str, precision: str | None, device="cpu", compile: bool = False):
    """Apply ``--precision`` and ``--compile`` to a loaded frame model (`export.backend.load_frame_model`).

    Returns:
        `model`, compiled in place when asked, wrapped in `AutocastModel` for a half precision.

    Raises:
        StreamvisError: an invalid backend/precision/device combination, or --compile with onnxruntime.
    """
    precision = check_precision(backend, precision, device)
    check_compile(backend, compile)
    if compile:
        compile_network(model)
    if precision in AUTOCAST_DTYPES:
        return AutocastModel(model, precision)
    return model
