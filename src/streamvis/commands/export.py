"""`streamvis export`: a training checkpoint -> a compact weights file for `predict` / `demo`."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamvis.commands import arguments
from streamvis.errors import StreamvisError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by `streamvis train`")
    arguments.add_out(parser, help="the weights file to write", metavar="W.pth")
    parser.add_argument("--half", action="store_true", help="store floating-point weights as float16")
    parser.add_argument("--keep-training-heads", action="store_true",
                        help="keep the training-only tensors (CrossVIS: the identity proxies, criterion.*), "
                             "needed only to continue training")


def run(args: argparse.Namespace) -> int:
    from streamvis.models.weights import export_weights

    path = Path(args.checkpoint)
    if not path.is_file():
        raise StreamvisError(f"{path}: no such checkpoint")
    out = export_weights(path, args.out, half=args.half, inference_only=not args.keep_training_heads)
    size_mb = Path(out).stat().st_size / 2**20
    print(f"wrote {out} ({size_mb:.1f} MB{', float16' if args.half else ''})")
    return 0
