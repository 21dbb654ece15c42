"""`streamvis convert`: an official CrossVIS checkpoint -> a streamvis weights file."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamvis.errors import DataFormatError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--official", required=True, metavar="CKPT",
                        help="official CrossVIS checkpoint (.pth from detectron2, or a .pkl of numpy arrays)")
    parser.add_argument("--out", required=True, metavar="W.pth", help="streamvis weights file to write")
    parser.add_argument("--class-names", metavar="NAMES",
                        help="comma-separated class names (as many as the checkpoint has classes)")


def read_official(path: Path):
    """Load an official checkpoint without running code (weights_only torch.load or numpy-only unpickling)."""
    import torch

    if not path.is_file():
        raise DataFormatError("no such checkpoint file", path=path)
    if path.suffix == ".pkl":
        from streamvis.models.imagenet_weights import read_numpy_pickle

        return read_numpy_pickle(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise DataFormatError(f"cannot read the checkpoint with torch.load(weights_only=True): {err}",
                              path=path) from None


def run(args: argparse.Namespace) -> int:
    from streamvis.models.convert import convert_official, weights_file
    from streamvis.utils.io import atomic_torch_save

    source = Path(args.official)
    overrides = {}
    if args.class_names:
        overrides["class_names"] = tuple(name.strip() for name in args.class_names.split(","))
    state, cfg = convert_official(read_official(source), path=source, **overrides)
    data = weights_file(state, cfg, source=source.name, converted_from="official CrossVIS")
    atomic_torch_save(data, args.out)
    print(f"wrote {args.out}: CrossVIS R-{cfg.depth}, {cfg.num_classes} classes, "
          f"{cfg.num_identities} identities, {len(state)} tensors")
    return 0
