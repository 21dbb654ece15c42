"""`streamvis export`: a training checkpoint -> a compact weights file for `predict` / `demo`;
with ``--onnx``, a weights file -> the per-frame network as ONNX (`streamvis.export`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamvis.errors import StreamvisError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="a checkpoint written by `streamvis train` (needs --out)")
    parser.add_argument("--out", help="the weights file to write (with --checkpoint)")
    parser.add_argument("--half", action="store_true", help="store floating-point weights as float16")
    parser.add_argument("--keep-training-heads", action="store_true",
                        help="keep the training-only tensors (CrossVIS: the identity proxies, criterion.*), "
                             "needed only to continue training")
    onnx = parser.add_argument_group(
        "ONNX export",
        "--weights W.pth --onnx W.onnx [--precision int8] (needs `pip install streamvis[onnx]`)")
    onnx.add_argument("--weights", help="the weights file (or checkpoint) to export with --onnx")
    onnx.add_argument("--onnx", metavar="W.onnx", help="write the per-frame network as this ONNX file")
    onnx.add_argument("--precision", choices=("float32", "int8"), default="float32",
                      help="int8: ONNX Runtime static quantization, for CPUs (default float32)")
    onnx.add_argument("--calibration-data", metavar="JSON",
                      help="int8: a YouTube-VIS json whose frames calibrate the quantization, e.g. the "
                           "model's training split (default: generated synthetic training frames)")
    onnx.add_argument("--calibration-images", metavar="DIR",
                      help="int8: the frame folder of --calibration-data (default: its usual layout)")
    onnx.add_argument("--calibration-frames", type=int, default=8, metavar="N",
                      help="int8: number of calibration frames, one per video (default 8)")


def _export_onnx(args: argparse.Namespace) -> int:
    from streamvis.export.onnx import export_weights_file

    source = args.weights or args.checkpoint
    if source is None or (args.weights and args.checkpoint):
        raise StreamvisError("--onnx exports one weights file: give it as --weights W.pth")
    if args.half:
        raise StreamvisError("--half applies to weights files; an ONNX export is float32 or, with "
                             "--precision int8, int8: drop --half")
    if args.out is not None:
        raise StreamvisError("--out writes a weights file from --checkpoint; with --onnx the ONNX file is "
                             "the output: drop --out")
    if not Path(source).is_file():
        raise StreamvisError(f"{source}: no such weights file")
    if args.calibration_frames < 1:
        raise StreamvisError(f"--calibration-frames must be at least 1, got {args.calibration_frames}")
    metadata = export_weights_file(source, args.onnx, precision=args.precision,
                                   calibration_frames=args.calibration_frames,
                                   calibration_data=args.calibration_data,
                                   calibration_images=args.calibration_images)
    size_mb = Path(args.onnx).stat().st_size / 2**20
    print(f"wrote {args.onnx} ({size_mb:.1f} MB, {metadata.method}, {metadata.precision})")
    return 0


def run(args: argparse.Namespace) -> int:
    from streamvis.models.weights import export_weights

    if args.onnx is not None:
        return _export_onnx(args)
    if args.checkpoint is None or args.out is None:
        raise StreamvisError("give --checkpoint C.pth --out W.pth (a weights file), or "
                             "--weights W.pth --onnx W.onnx (an ONNX file)")
    if args.weights is not None or args.precision != "float32":
        raise StreamvisError("--weights and --precision belong to the ONNX export: add --onnx W.onnx")
    path = Path(args.checkpoint)
    if not path.is_file():
        raise StreamvisError(f"{path}: no such checkpoint")
    out = export_weights(path, args.out, half=args.half, inference_only=not args.keep_training_heads)
    size_mb = Path(out).stat().st_size / 2**20
    print(f"wrote {out} ({size_mb:.1f} MB{', float16' if args.half else ''})")
    return 0
