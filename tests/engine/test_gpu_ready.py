"""The GPU-ready predictor's switches on the CPU (issue 13 part 3): --precision per backend, autocast,
--compile wiring, the frame prefetcher, one host copy per frame; CUDA-only checks skip without CUDA."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.tiny_weights import write_tiny_crossvis

from streamvis.cli import main
from streamvis.commands import arguments
from streamvis.data.prefetch import FramePrefetcher, prefetched
from streamvis.engine import inference
from streamvis.engine.inference import AutocastModel, check_precision, compile_network, prepare_frame_model
from streamvis.engine.predict import PreparedFrame, VideoPredictor, predict_dataset
from streamvis.errors import StreamvisError
from streamvis.export.backend import load_frame_model
from streamvis.tracking.base import to_host

REPO = Path(__file__).resolve().parents[2]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return write_tiny_crossvis(tmp_path_factory.mktemp("gpu_ready") / "tiny.pth")


def _frames(count=4, height=48, width=72, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(count):
        frame = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
        frame[10:34, 8 + 6 * t : 32 + 6 * t] = 220  # a bright square moving right
        frames.append(frame)
    return frames


def _write_dataset(root: Path, counts=(3, 2)) -> Path:
    videos = []
    for vid, count in enumerate(counts, start=1):
        (root / f"v{vid}").mkdir(parents=True, exist_ok=True)
        names = []
        for t, frame in enumerate(_frames(count, seed=vid)):
            name = f"v{vid}/{t:05d}.png"
            Image.fromarray(frame[:, :, ::-1]).save(root / name)
            names.append(name)
        videos.append({"id": vid, "file_names": names, "height": 48, "width": 72, "length": count})
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "fox"}]
    path = root / "gt.json"
    path.write_text(json.dumps({"videos": videos, "categories": categories, "annotations": []}))
    return path


# --- precision per backend -------------------------------------------------------------------------

def test_precision_aliases_and_defaults():
    assert check_precision("torch", None) is None
    assert check_precision("torch", "bf16", "cpu") == "bfloat16"
    assert check_precision("torch", "fp32") == "float32"
    assert check_precision("torch", "fp16", "cuda") == "float16"  # (checked, not run: no device is used)
    assert check_precision("onnxruntime", "int8") == "int8"


@pytest.mark.parametrize(("backend", "precision", "device", "message"), [
    ("torch", "int8", "cpu", "--precision int8 runs only on --backend onnxruntime"),
    ("onnxruntime", "bf16", "cpu", "--precision bfloat16 runs only on --backend torch"),
    ("onnxruntime", "float16", "cpu", "--backend onnxruntime has float32, int8"),
    ("torch", "fp16", "cpu", "--precision float16 needs a CUDA device"),
    ("torch", "int4", "cpu", "choose one of"),
])
def test_invalid_precision_combinations(backend, precision, device, message):
    with pytest.raises(StreamvisError, match=message.replace("-", r"\-")):
        check_precision(backend, precision, device)


def test_the_parser_offers_the_library_precisions():
    assert arguments.PRECISION_CHOICES == inference.PRECISION_CHOICES
    assert set(inference.BACKEND_PRECISIONS["torch"]) | set(inference.BACKEND_PRECISIONS["onnxruntime"]) == {
        inference.canonical_precision(p) for p in inference.PRECISION_CHOICES}


@pytest.mark.parametrize(("extra", "message"), [
    (["--precision", "fp16"], "--precision float16 needs a CUDA device"),
    (["--compile", "--backend", "onnxruntime"], "--compile compiles the PyTorch network"),
    (["--prefetch", "-1"], "--prefetch -1: give a number of frames >= 0"),
])
def test_cli_rejects_bad_switches(tiny_weights, tmp_path, capsys, extra, message):
    dataset = _write_dataset(tmp_path / "data", counts=(1,))
    code = main(["predict", "--weights", str(tiny_weights), "--input", str(dataset),
                 "--out", str(tmp_path / "o"), "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "o" / "results.json").exists()


def test_bf16_on_cpu_is_close_to_float32(tiny_weights):
    from streamvis.engine.inference import autocast_context
    from streamvis.ops.image import normalize_and_pad

    model = load_frame_model(tiny_weights, "torch", None)
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (3, 64, 96), dtype=np.uint8))
    batch, sizes = normalize_and_pad([image], model.pixel_mean, model.pixel_std)
    with torch.inference_mode():
        full = model.forward_features(batch, sizes)
        with autocast_context("cpu", "bf16"):
            low = model.forward_features(batch, sizes)
    assert low.cls_logits[0].dtype == torch.bfloat16  # the convolutions ran in bfloat16
    for name in ("cls_logits", "bbox_reg", "ctrness", "controller_params", "reid_feats"):
        for level, (want, got) in enumerate(zip(getattr(full, name), getattr(low, name))):
            error = (got.float() - want).abs().max().item()
            assert error <= 0.02 * want.abs().max().item() + 1e-3, (name, level, error)  # bf16: 8 bits
    assert (low.mask_feats.float() - full.mask_feats).abs().max() <= 0.02 * full.mask_feats.abs().max()


def test_bf16_predict_returns_float32_detections(tiny_weights):
    model = load_frame_model(tiny_weights, "torch", None)
    half = load_frame_model(tiny_weights, "torch", "bf16")
    assert isinstance(half, AutocastModel) and half.config is half.model.config
    seen = []
    hook = half.model.backbone.register_forward_hook(lambda m, i, out: seen.append(out[-1].dtype))
    try:
        image = torch.from_numpy(_frames(1)[0].transpose(2, 0, 1).copy())
        with torch.inference_mode():
            (full,) = model.predict([image], output_sizes=[(48, 72)])
            (low,) = half.predict([image], output_sizes=[(48, 72)])
    finally:
        hook.remove()
    assert seen == [torch.bfloat16]  # the network ran under bfloat16 autocast
    assert low.scores.dtype == low.boxes.dtype == low.embeddings.dtype == torch.float32  # cast back
    assert low.masks.dtype == torch.bool and low.masks.shape[1:] == (48, 72)
    # the untrained tiny model scores every cell alike, so which cells win differs; the count does not
    assert len(full) == len(low) > 0 and torch.equal(full.classes, low.classes)


def test_prepare_frame_model_float32_is_the_model_itself(tiny_weights):
    model = load_frame_model(tiny_weights)
    assert prepare_frame_model(model, backend="torch", precision="float32") is model
    with pytest.raises(StreamvisError, match="needs a CUDA device"):
        prepare_frame_model(model, backend="torch", precision="fp16", device="cpu")


# --- torch.compile ---------------------------------------------------------------------------------

def test_compile_flag_compiles_the_network_modules(tiny_weights, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile",
                        lambda self, **kw: compiled.append((type(self).__name__, kw)))
    model = load_frame_model(tiny_weights, "torch", "bf16", compile=True)
    assert [name for name, _ in compiled] == ["ResNet", "FPN", "FCOSHead", "MaskBranch"]
    assert isinstance(model, AutocastModel)  # compiled in place, then wrapped
    assert compile_network(model) == ["backbone", "fpn", "head", "mask_branch"]  # the wrapper is unwrapped


def test_compile_errors_are_clear():
    class NoNetwork:
        config = None

    with pytest.raises(StreamvisError, match="has none of the network modules"):
        compile_network(NoNetwork())
    with pytest.raises(StreamvisError, match="--compile compiles the PyTorch network"):
        prepare_frame_model(NoNetwork(), backend="onnxruntime", precision=None, compile=True)


@pytest.mark.slow  # inductor compiles C++ kernels for the tiny model: ~1-3 min on a busy 2-core CPU
def test_compiled_model_gives_the_same_detections_on_cpu(tiny_weights):
    eager = load_frame_model(tiny_weights)
    compiled = load_frame_model(tiny_weights, compile=True)
    image = torch.from_numpy(_frames(1)[0].transpose(2, 0, 1).copy())
    with torch.inference_mode():
        (want,) = eager.predict([image], output_sizes=[(48, 72)])
        (got,) = compiled.predict([image], output_sizes=[(48, 72)])
    assert torch.equal(want.classes, got.classes)
    torch.testing.assert_close(got.boxes, want.boxes, atol=1e-3, rtol=1e-4)
    assert (got.masks == want.masks).float().mean() > 0.999


# --- the frame prefetcher --------------------------------------------------------------------------

def test_prefetcher_keeps_order_and_applies_the_transform():
    threads = []

    def transform(x):
        threads.append(threading.current_thread().name)
        return x * 2

    with FramePrefetcher(range(50), depth=3, transform=transform, name="numbers") as items:
        assert list(items) == [2 * i for i in range(50)]
    assert set(threads) == {"prefetch numbers"}  # the transform ran in the background thread
    assert list(prefetched(range(4), 0, transform=transform)) == [0, 2, 4, 6]  # 0: in this thread
    with pytest.raises(ValueError, match="depth must be >= 1"):
        FramePrefetcher([], depth=0)


def test_prefetcher_reraises_the_error_after_the_items_before_it():
    class CorruptFrame(OSError):
        pass

    def frames():
        yield from range(3)
        raise CorruptFrame("clip.mp4: frame 3 cannot be decoded")

    prefetcher = FramePrefetcher(frames(), depth=2, name="clip.mp4")
    got = []
    with pytest.raises(CorruptFrame, match="clip.mp4: frame 3") as info:
        for item in prefetcher:
            got.append(item)
    assert got == [0, 1, 2]
    if sys.version_info >= (3, 11):  # exceptions have notes
        assert any("item 3 of clip.mp4" in note for note in info.value.__notes__)
    assert not prefetcher.running


def test_prefetcher_stops_the_thread_and_closes_the_source_when_the_consumer_stops():
    state = {"produced": 0, "closed": False}

    def endless():
        try:
            while True:
                state["produced"] += 1
                yield state["produced"]
        finally:
            state["closed"] = True

    prefetcher = FramePrefetcher(endless(), depth=2, name="stream")
    for item in prefetcher:
        if item == 5:
            break
    prefetcher.close()
    assert not prefetcher.running and state["closed"]
    assert state["produced"] <= 5 + 2 + 1  # bounded: at most depth items (and one in hand) ahead
    with pytest.raises(RuntimeError, match="iterated once"):
        list(prefetcher)


def test_prefetcher_stops_when_the_consumer_fails():
    state = {"closed": False}

    def endless():
        try:
            i = 0
            while True:
                i += 1
                yield i
        finally:
            state["closed"] = True

    prefetcher = FramePrefetcher(endless(), depth=3)
    with pytest.raises(KeyError), prefetcher:
        for item in prefetcher:
            if item == 3:
                raise KeyError("the model failed")
    assert not prefetcher.running and state["closed"]


@pytest.mark.parametrize("tracker", ["default", "crossvis"])
def test_dataset_results_do_not_depend_on_prefetch(tiny_weights, tmp_path, tracker):
    dataset = _write_dataset(tmp_path)
    model = load_frame_model(tiny_weights)
    runs = [predict_dataset(model, dataset, tmp_path, tracker=tracker, progress=False, prefetch=depth)
            for depth in (0, 1, 3)]
    assert len(runs[0]) > 0 and runs[0] == runs[1] == runs[2]


def test_a_missing_frame_fails_the_same_with_prefetch(tiny_weights, tmp_path):
    dataset = _write_dataset(tmp_path)
    (tmp_path / "v1" / "00001.png").unlink()
    model = load_frame_model(tiny_weights)
    messages = []
    for depth in (0, 2):
        with pytest.raises(StreamvisError) as info:
            predict_dataset(model, dataset, tmp_path, progress=False, prefetch=depth)
        messages.append(str(info.value))
    assert messages[0] == messages[1] and "00001.png" in messages[0]
    assert not [t for t in threading.enumerate() if t.name.startswith("prefetch")]


def test_cli_results_equal_with_and_without_prefetch(tiny_weights, tmp_path):
    dataset = _write_dataset(tmp_path / "data")
    outs = []
    for depth in ("0", "2"):
        out = tmp_path / f"out{depth}"
        assert main(["predict", "--weights", str(tiny_weights), "--input", str(dataset), "--out", str(out),
                     "--no-progress", "--prefetch", depth]) == 0
        outs.append((out / "results.json").read_bytes())
    assert outs[0] == outs[1] and json.loads(outs[0])


def test_prepared_frames_are_pinned_only_for_cuda(tiny_weights):
    predictor = VideoPredictor(load_frame_model(tiny_weights))
    prepared = predictor.prepare(_frames(1)[0])
    assert isinstance(prepared, PreparedFrame) and prepared.image.shape == (3, 64, 96)
    assert prepared.image.dtype == torch.uint8 and not prepared.image.is_pinned()
    with pytest.raises(ValueError, match="expected an"):
        predictor.prepare(np.zeros((4, 4), np.uint8))


# --- results leave the device once -----------------------------------------------------------------

def test_to_host_returns_cpu_tensors_and_passes_other_values():
    a, b = torch.arange(3), torch.ones(2, 2, dtype=torch.bool)
    got = to_host(a, None, b, 7)
    assert torch.equal(got[0], a) and got[1] is None and torch.equal(got[2], b) and got[3] == 7


def test_dense_gather_equals_indexing_each_level():
    from streamvis.models.crossvis.fcos import FCOSDetections
    from streamvis.models.crossvis.model import _gather_cells

    torch.manual_seed(0)
    maps = [torch.randn(2, 5, h, w) for h, w in ((8, 12), (4, 6), (2, 3))]
    levels = torch.tensor([0, 2, 1, 0, 2])
    cells = torch.tensor([95, 5, 23, 0, 0])
    det = FCOSDetections(torch.zeros(5, 4), torch.zeros(5), torch.zeros(5, dtype=torch.int64),
                         torch.zeros(5, 2), levels, cells)
    want = torch.stack([maps[lv][1].flatten(1)[:, c] for lv, c in zip(levels.tolist(), cells.tolist())])
    assert torch.equal(_gather_cells(maps, 1, det), want)
    empty = FCOSDetections(*(getattr(det, f)[:0] for f in FCOSDetections.__dataclass_fields__))
    assert _gather_cells(maps, 0, empty).shape == (0, 5)


# --- CUDA-only checks (skip cleanly without CUDA) --------------------------------------------------

@needs_cuda
def test_cuda_gives_the_cpu_detections(tiny_weights):
    cpu_model = load_frame_model(tiny_weights)
    cuda_model = load_frame_model(tiny_weights, device="cuda")
    image = torch.from_numpy(_frames(1)[0].transpose(2, 0, 1).copy())
    with torch.inference_mode():
        (want,) = cpu_model.predict([image], output_sizes=[(48, 72)])
        (got,) = cuda_model.predict([image.cuda()], output_sizes=[(48, 72)])
    assert torch.equal(want.classes, got.classes.cpu())
    torch.testing.assert_close(got.boxes.cpu(), want.boxes, atol=1e-2, rtol=1e-3)


@needs_cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_half_precision_predictor_runs(tiny_weights, precision):
    model = load_frame_model(tiny_weights, "torch", precision, device="cuda")
    predictor = VideoPredictor(model)
    prepared = predictor.prepare(_frames(1)[0])
    assert prepared.image.is_pinned()
    for frame in _frames(3):
        predictor.update(frame)
    assert predictor.finalize()


@needs_cuda
def test_to_host_copies_cuda_tensors():
    values = to_host(torch.arange(4, device="cuda"), torch.ones(3, device="cuda", dtype=torch.bool))
    assert all(v.device.type == "cpu" for v in values) and values[0].tolist() == [0, 1, 2, 3]


# --- the GPU check script ------------------------------------------------------------------------------

@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_gpu_check_script_says_when_there_is_no_cuda():
    env_python = sys.executable
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], cwd=REPO, capture_output=True,
                          text=True, env={"PYTHON": env_python, "PATH": "/usr/bin:/bin",
                                          "PYTHONPATH": str(REPO / "src")}, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "CUDA is not available" in proc.stderr and "Traceback" not in proc.stderr
