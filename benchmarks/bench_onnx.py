"""CPU frames/s and AP: PyTorch (faithful, optimize_for_inference) vs ONNX Runtime (float32, int8).

All four variants run in one process, side by side:

* ``faithful``: the model as `load_model` builds it (`CrossVIS.predict`);
* ``fast``: `optimize_for_inference(model)` (the baseline of issue 13's speed target);
* ``ort_fp32``: the exported per-frame network (`streamvis.export.export_onnx`) in ONNX Runtime,
  post-processing in Python (`OnnxFrameModel`);
* ``ort_int8``: the same, statically quantized (`quantize_onnx`) on --calibration-frames frames of
  the synthetic training split.

Speed: every variant predicts the same synthetic frames (``predict([image])``: normalization,
network, post-processing, masks at the frame size; no tracker), interleaved frame by frame with the
variant order rotating, so machine load hits all of them alike; frames/s = timed frames / summed
seconds after --warmup frames, with --threads torch and ONNX Runtime threads. "vs fast" is the
ratio to the optimize_for_inference path. The machine must be quiet for the figures to mean much.

AP: each variant predicts a generated synthetic validation split (--valid-videos videos at the
model's test size; or --valid JSON with --images) through `predict_dataset` with the default
tracker, scored by `streamvis.evaluation.evaluate` (the official temporal mask AP). Only for real
weights: ``--model r50`` (R-50 at 360x640 with the deterministic rule weights of
models/rule_weights.py, for speed) has no meaningful AP and skips it.

    python benchmarks/bench_onnx.py                                   # bundled model, its test size
    python benchmarks/bench_onnx.py --model r50 --size 360x640 --frames 20   # R-50 speed
    python benchmarks/bench_onnx.py --frames 2 --warmup 1 --valid-videos 1 --calibration-frames 2  # smoke
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

VARIANTS = ("faithful", "fast", "ort_fp32", "ort_int8")
# as benchmarks/bench_e2e.py: with seeds from our key names, -4.2 gives about 10 detections per
# synthetic 360x640 frame (the rule's -5.2 gives none), a realistic post-processing load
R50_CLS_BIAS_SHIFT = -4.2


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("bundled", "r50"), default="bundled",
                        help="bundled default model (or --weights), or R-50 with rule weights (speed only)")
    parser.add_argument("--weights", help="a streamvis weights file instead of the bundled model")
    parser.add_argument("--size", help="frame size HxW (default: the model's test size)")
    parser.add_argument("--frames", type=int, default=20, help="timed frames per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed frames per variant first")
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime intra-op threads")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated of {VARIANTS}")
    parser.add_argument("--calibration-frames", type=int, default=8, help="int8 calibration frames")
    parser.add_argument("--valid-videos", type=int, default=10, help="generated validation videos for AP")
    parser.add_argument("--valid-frames", type=int, default=24, help="frames per generated validation video")
    parser.add_argument("--valid", help="a YouTube-VIS json to score instead of a generated split")
    parser.add_argument("--images", help="frame folder of --valid (default: beside it, JPEGImages/)")
    parser.add_argument("--no-ap", action="store_true", help="speed only")
    parser.add_argument("--workdir", help="folder for the ONNX files and the generated split (default: temp)")
    args = parser.parse_args(argv)
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    return args


def base_model(args):
    """The PyTorch model to compare (eval mode) and whether its AP means anything."""
    if args.model == "r50":
        from streamvis.models.rule_weights import fill_with_rule

        from streamvis.models.build import build_model, preset

        model = build_model(preset("crossvis_r50"))
        return fill_with_rule(model, cls_bias_shift=R50_CLS_BIAS_SHIFT).eval(), False
    from streamvis.models.convert import load_model

    from streamvis.assets import default_weights_path

    return load_model(args.weights or default_weights_path()), True


def build_variants(model, names, workdir: Path, args) -> dict:
    """name -> frame model with ``predict(images, output_sizes)``."""
    from streamvis.export.backend import OnnxFrameModel
    from streamvis.export.onnx import export_onnx
    from streamvis.export.quantize import calibration_frames, quantize_onnx
    from streamvis.models.crossvis import optimize_for_inference

    variants = {"faithful": model, "fast": optimize_for_inference(model)}
    if {"ort_fp32", "ort_int8"} & set(names):
        float_path = workdir / "model_fp32.onnx"
        start = time.perf_counter()
        export_onnx(model, float_path)
        print(f"exported {float_path} in {time.perf_counter() - start:.1f} s", flush=True)
        variants["ort_fp32"] = OnnxFrameModel(float_path, threads=args.threads)
        if "ort_int8" in names:
            start = time.perf_counter()
            frames = calibration_frames(model.config, args.calibration_frames)
            int8_path = quantize_onnx(float_path, workdir / "model_int8.onnx", frames)
            print(f"quantized {int8_path} on {len(frames)} frames in {time.perf_counter() - start:.1f} s",
                  flush=True)
            variants["ort_int8"] = OnnxFrameModel(int8_path, threads=args.threads)
    return {name: variants[name] for name in names}


def speed_frames(config, size: tuple[int, int], count: int) -> list[torch.Tensor]:
    """`count` synthetic validation frames at `size`, resized as the predictor does: (3, h, w) uint8."""
    from streamvis.data.synthetic import SynthConfig, render_synthetic_video
    from streamvis.engine.predict import preprocess_frame

    synth = SynthConfig(num_videos=1, seed=11, split="valid", size=size, frames=(count, count),
                        num_classes=min(config.num_classes, 8))
    return [preprocess_frame(f, config) for f in render_synthetic_video(synth, 0).frames]


def time_variants(variants: dict, images: list[torch.Tensor], warmup: int) -> dict:
    """name -> (seconds per timed frame, detections per frame), interleaved frame by frame."""
    names = list(variants)
    seconds = {n: [] for n in names}
    detections = {n: [] for n in names}
    with torch.inference_mode():
        for index, image in enumerate(images):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:  # rotate who runs first
                start = time.perf_counter()
                (result,) = variants[name].predict([image])
                elapsed = time.perf_counter() - start
                if index >= warmup:
                    seconds[name].append(elapsed)
                    detections[name].append(len(result))
    return {n: (statistics.fmean(seconds[n]), statistics.fmean(detections[n])) for n in names}


def score_variants(variants: dict, model_config, args, workdir: Path) -> dict:
    """name -> (AP, AP50) on the validation split."""
    from streamvis.data.synthetic import generate_dataset
    from streamvis.data.video import default_image_root
    from streamvis.data.ytvis import load_ytvis
    from streamvis.engine.predict import predict_dataset
    from streamvis.evaluation import evaluate

    if args.valid:
        json_path = Path(args.valid)
        gt = load_ytvis(json_path)
        images = Path(args.images) if args.images else default_image_root(json_path, gt)
    else:
        size = (model_config.test_short_side, model_config.test_max_size)
        json_path = generate_dataset(workdir / "valid", num_videos=args.valid_videos, seed=1, split="valid",
                                     size=size, frames=(args.valid_frames, args.valid_frames),
                                     num_classes=min(model_config.num_classes, 8), workers=1)
        gt = load_ytvis(json_path)
        images = json_path.parent / "JPEGImages"
    scores = {}
    for name, frame_model in variants.items():
        results = predict_dataset(frame_model, gt, images, tracker="default", progress=False)
        stats = evaluate(gt, results, validate=False).stats_named if results else {"AP": 0.0, "AP50": 0.0}
        scores[name] = (stats["AP"], stats["AP50"])
    print(f"AP on {len(gt['videos'])} videos of {json_path}", flush=True)
    return scores


def print_table(timings: dict, scores: dict | None, frames: int, size, threads: int) -> None:
    base = timings.get("fast", next(iter(timings.values())))[0]
    print(f"\n{frames} timed frames at {size[0]}x{size[1]}, {threads} thread(s); "
          f"vs fast = optimize_for_inference frames/s ratio")
    columns = ("frames/s", "ms/frame", "vs fast", "dets/frame", "AP", "AP50")
    print(f"{'variant':<10} " + " ".join(f"{c:>{max(len(c), 7)}}" for c in columns))
    for name, (seconds, dets) in timings.items():
        ap, ap50 = scores[name] if scores else (float("nan"), float("nan"))
        print(f"{name:<10} {1 / seconds:>8.2f} {1000 * seconds:>8.1f} {base / seconds:>7.2f} {dets:>10.1f} "
              f"{ap:>7.4f} {ap50:>7.4f}")


def main(argv=None) -> int:
    """Run the comparison and print the table; returns the exit status."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model, has_ap = base_model(args)
    size = tuple(int(v) for v in args.size.split("x")) if args.size else (
        model.config.test_short_side, model.config.test_max_size)
    names = args.variants.split(",")
    with tempfile.TemporaryDirectory(prefix="bench_onnx-") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        variants = build_variants(model, names, workdir, args)
        images = speed_frames(model.config, size, args.frames + args.warmup)
        timings = time_variants(variants, images, args.warmup)
        scores = None
        if args.no_ap or not has_ap:
            print("AP skipped" + ("" if args.no_ap else " (rule weights: AP is meaningless)"))
        else:
            scores = score_variants(variants, model.config, args, workdir)
    print_table(timings, scores, args.frames, size, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
