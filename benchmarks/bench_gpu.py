"""GPU check (issue 13 part 3): CUDA against CPU detections, then end-to-end frames/s and peak GPU memory.

Run through ``bash benchmarks/gpu_check.sh`` (which bounds it to 5 minutes). Two parts:

1. **Parity.** The official-weights-rule CrossVIS R-50 (reference/crossvis/weights_rule.md, as
   tests/models/crossvis/test_golden_forward.py builds it) on the two golden 360x640 images, and the
   bundled model on a synthetic frame: float32 on CUDA (TF32 off) must give the CPU's detections
   (same count and classes, boxes within 0.05 px, scores within 1e-3, mask IoU >= 0.99). Half
   precision on CUDA is compared too and reported (detections may differ near the thresholds), not
   failed. The golden files are looked up in $STREAMVIS_SHARED, ../shared, then ./shared.
2. **Speed.** `engine.predict.VideoPredictor` over a generated synthetic MP4 (decode in the prefetch
   thread -> resize -> pinned upload -> model -> results to host): the bundled model at its
   training size and R-50 (bench_e2e.py's rule weights) at 360x640, in float32 (PyTorch's default
   TF32 convolutions) and float16 autocast, with the default tracker (RLE results) and without a
   tracker (results copied to the host, then dropped). Frames/s is frames / wall seconds after a
   warm-up run; peak GPU memory is ``torch.cuda.max_memory_allocated`` of the row.

Exit status: 0 all parity checks passed, 1 a parity check failed, 3 no CUDA on this machine.

    python benchmarks/bench_gpu.py [--frames 100] [--models bundled,r50] [--precisions float32,float16]
                                   [--compile] [--device cuda:0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
GOLDEN = "reference/crossvis"
NO_CUDA_EXIT = 3


def require_cuda(device: str) -> torch.device:
    """The CUDA device to check, or exit 3 with a one-paragraph message when there is none."""
    if not torch.cuda.is_available():
        built = torch.version.cuda or "none (a CPU-only build)"
        print(f"gpu_check: CUDA is not available on this machine (PyTorch {torch.__version__}, CUDA build: "
              f"{built}). The GPU check needs one NVIDIA GPU and a CUDA build of PyTorch; on a CPU, "
              "tests/engine/test_gpu_ready.py tests every switch's CPU path and benchmarks/bench_e2e.py "
              "measures CPU frames/s.", file=sys.stderr)
        raise SystemExit(NO_CUDA_EXIT)
    return torch.device(device)


def shared_dir() -> Path | None:
    """The folder holding reference/crossvis (the golden files), or None."""
    candidates = [os.environ.get("STREAMVIS_SHARED"), REPO.parent / "shared", REPO / "shared"]
    for candidate in candidates:
        if candidate and (Path(candidate) / GOLDEN / "golden_r50.npz").is_file():
            return Path(candidate)
    return None


def golden_r50_model_and_images(shared: Path):
    """The converted official-rule R-50 (eval) and the two golden (3, 360, 640) uint8 BGR images."""
    import numpy as np

    from streamvis.models.build import build_model
    from streamvis.models.crossvis.convert import convert_official
    from streamvis.models.crossvis.rule_weights import official_rule_state_dict, read_key_table

    npz = np.load(shared / GOLDEN / "golden_r50.npz")
    official = official_rule_state_dict(read_key_table(shared / GOLDEN / "state_dict_keys.tsv"))
    state, config = convert_official({"model": official})
    torch.manual_seed(0)
    model = build_model(config)
    model.load_state_dict(state)
    images = [torch.from_numpy(npz[f"image_{i}"]).permute(2, 0, 1).contiguous() for i in (0, 1)]
    return model.eval(), images


def _mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def compare(want, got, *, box_atol=0.05, score_atol=1e-3, min_mask_iou=0.99) -> str:
    """'' when `got` (any device) has `want`'s detections within the tolerances, else why not."""
    got = got.to("cpu")
    if len(got) != len(want):
        return f"{len(got)} detections, CPU {len(want)}"
    if not torch.equal(got.classes, want.classes):
        return f"classes {got.classes.tolist()} vs CPU {want.classes.tolist()}"
    if len(want) == 0:
        return ""
    box = (got.boxes.float() - want.boxes).abs().max().item()
    score = (got.scores.float() - want.scores).abs().max().item()
    iou = min(_mask_iou(g, w) for g, w in zip(got.masks, want.masks))
    if box > box_atol or score > score_atol or iou < min_mask_iou:
        return f"max box diff {box:.3g} px, max score diff {score:.3g}, min mask IoU {iou:.4f}"
    return ""


def _half(device: torch.device) -> str:
    return "float16" if device.type == "cuda" else "bfloat16"  # (the CPU dry run has no float16 autocast)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parity(model, images, device: torch.device, name: str) -> bool:
    """Check float32 CUDA against CPU on `images`; report float16 autocast. Returns whether float32 passed."""
    from streamvis.engine.inference import AutocastModel

    sizes = [tuple(im.shape[-2:]) for im in images]
    with torch.inference_mode():
        cpu = [model.predict([im], output_sizes=[s])[0] for im, s in zip(images, sizes)]
        cuda_model = model.to(device)
        cuda = [cuda_model.predict([im.to(device)], output_sizes=[s])[0] for im, s in zip(images, sizes)]
        half = [AutocastModel(cuda_model, _half(device)).predict([im.to(device)], output_sizes=[s])[0]
                for im, s in zip(images, sizes)]
    model.to("cpu")
    ok = True
    for index, (want, got, low) in enumerate(zip(cpu, cuda, half)):
        why = compare(want, got)
        ok &= not why
        low_why = compare(want, low, box_atol=2.0, score_atol=0.02, min_mask_iou=0.9)
        print(f"  {name} image {index}: {len(want)} CPU detections; {device.type} float32 "
              f"{'same' if not why else 'DIFFERENT: ' + why}; {device.type} {_half(device)} "
              f"{'close' if not low_why else 'differs: ' + low_why}")
    return ok


class HostCopyTracker:
    """The "no tracker" rows: the frame's results are copied to the host (one sync) and dropped."""

    def update(self, instances, frame_index):
        from streamvis.tracking.base import to_host

        to_host(instances.boxes, instances.scores, instances.classes, instances.embeddings, instances.masks)
        return []

    def finalize(self):
        return []


def time_row(model, video: Path, *, tracker: bool, prefetch: int, device: torch.device) -> tuple[int, float]:
    """(frames, seconds) of one end-to-end pass over `video`."""
    from streamvis.data.video import read_frames
    from streamvis.engine.predict import VideoPredictor, predict_video

    predictor = VideoPredictor(model, "default" if tracker else HostCopyTracker())
    start = time.perf_counter()
    predict_video(predictor, read_frames(video), prefetch=prefetch, name=video.name)
    _synchronize(device)
    return predictor.num_frames, time.perf_counter() - start


def count_synchronisations(model, video: Path, device: torch.device) -> int | None:
    """Synchronising CUDA calls in the third frame's `VideoPredictor.update` (torch's sync debug mode)."""
    import warnings

    from streamvis.data.video import read_frames
    from streamvis.engine.predict import VideoPredictor

    if device.type != "cuda":
        return None
    predictor = VideoPredictor(model, "default")
    for index, frame in enumerate(read_frames(video)):
        prepared = predictor.prepare(frame)
        if index < 2:
            predictor.update(prepared)
            continue
        torch.cuda.synchronize(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                predictor.update(prepared)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)
    return None


def speed_rows(args, device: torch.device):
    """Print one row per model, precision and tracker setting."""
    from bench_e2e import R50_SIZE, rule_r50_model, synthetic_mp4

    from streamvis.assets import default_weights_path
    from streamvis.demo import split_settings
    from streamvis.engine.inference import prepare_frame_model
    from streamvis.models.weights import load_model

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU (dry run: not a figure)"
    print(f"\nend to end on {where} (decode in a prefetch thread of "
          f"{args.prefetch} -> resize -> pinned upload -> model -> results to host), {args.frames} frames")
    print(f"{'model':<22} {'video':>9} {'precision':>9} {'compile':>7} {'tracker':>7} {'frames/s':>9} "
          f"{'peak MiB':>9}")
    for name in args.models.split(","):
        if name == "bundled":
            model = load_model(default_weights_path())
            size = split_settings(default_weights_path(), model.config)[0]
        elif name == "r50":
            model, size = rule_r50_model(), R50_SIZE
        else:
            raise SystemExit(f"unknown model {name!r}; use bundled and/or r50")
        model = model.to(device)
        video = synthetic_mp4(Path(args.workdir), size, args.frames)
        syncs = count_synchronisations(model, video, device)
        if syncs is not None:
            print(f"{name}: {syncs} synchronising CUDA calls in one frame (predictor + default tracker)")
        if args.compile:
            prepare_frame_model(model, backend="torch", precision=None, device=device, compile=True)
        for precision in args.precisions.split(","):
            if precision == "float16" and device.type != "cuda":
                precision = _half(device)
            run = prepare_frame_model(model, backend="torch", precision=precision, device=device)
            for tracker in (False, True):
                options = {"tracker": tracker, "prefetch": args.prefetch, "device": device}
                time_row(run, video, **options)  # warm-up (and compile)
                peak = float("nan")
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                frames, seconds = time_row(run, video, **options)
                if device.type == "cuda":
                    peak = torch.cuda.max_memory_allocated(device) / 2**20
                print(f"{name:<22} {size[0]:>4}x{size[1]:<4} {precision:>9} {str(args.compile).lower():>7} "
                      f"{'default' if tracker else 'none':>7} {frames / seconds:>9.1f} {peak:>9.0f}",
                      flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="CUDA device (default cuda)")
    parser.add_argument("--frames", type=int, default=100, help="frames of each test video (default 100)")
    parser.add_argument("--models", default="bundled,r50", help="comma list of bundled, r50")
    parser.add_argument("--precisions", default="float32,float16",
                        help="comma list of float32, float16, bfloat16 (default float32,float16)")
    parser.add_argument("--prefetch", type=int, default=2, help="frames decoded ahead (default 2)")
    parser.add_argument("--compile", action="store_true", help="also torch.compile the network")
    parser.add_argument("--skip-parity", action="store_true", help="only the speed table")
    parser.add_argument("--workdir", default="outputs/bench/gpu", help="where the test MP4s are cached")
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="run every step on the CPU (bfloat16 for float16), to test this script on a "
                             "machine without a GPU; the figures mean nothing")
    args = parser.parse_args(argv)
    device = torch.device("cpu") if args.cpu_dry_run else require_cuda(args.device)
    ok = True
    if not args.skip_parity:
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # exact float32
        print(f"parity: {device.type} against CPU (float32 must match; float16 is reported)")
        shared = shared_dir()
        if shared is None:
            print(f"  golden files ({GOLDEN}) not found in $STREAMVIS_SHARED, ../shared or ./shared: golden "
                  "parity skipped")
        else:
            model, images = golden_r50_model_and_images(shared)
            ok &= parity(model, images, device, "golden R-50")
            del model
        ok &= bundled_parity(device)
        # the speed rows run with PyTorch's defaults (TF32 convolutions)
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
        print("parity:", "PASSED" if ok else "FAILED")
    speed_rows(args, device)
    return 0 if ok else 1


def bundled_parity(device: torch.device) -> bool:
    """CUDA against CPU for the bundled model on one synthetic validation frame."""
    from streamvis.assets import default_weights_path
    from streamvis.data.synthetic import SynthConfig, render_synthetic_video
    from streamvis.demo import split_settings
    from streamvis.engine.predict import preprocess_frame
    from streamvis.models.weights import load_model

    model = load_model(default_weights_path())
    size = split_settings(default_weights_path(), model.config)[0]
    frames = render_synthetic_video(SynthConfig(num_videos=1, seed=0, split="valid", size=size,
                                                frames=(2, 2)), 0).frames
    images = [preprocess_frame(frame, model.config) for frame in frames]
    return parity(model, images, device, "bundled")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_e2e, beside this script
    sys.exit(main())
