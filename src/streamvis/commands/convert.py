"""`streamvis convert`: an official checkpoint (of any method with a converter) -> a streamvis weights file.

The method is recognised from the checkpoint: every `streamvis.models.build.METHODS` entry with
a ``convert_official`` is tried in turn (CrossVIS today).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamvis.commands import arguments
from streamvis.errors import DataFormatError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--official", required=True, metavar="CKPT",
                        help="official checkpoint, e.g. CrossVIS (detectron2 .pth or a numpy .pkl)")
    arguments.add_out(parser, help="streamvis weights file to write", metavar="W.pth")
    parser.add_argument("--class-names", metavar="NAMES",
                        help="comma-separated class names (as many as the checkpoint has classes)")


def read_official(path: Path):
    """Load an official checkpoint without running code (`torch_load_safely` or numpy-only unpickling)."""
    if path.suffix == ".pkl":
        from streamvis.models.imagenet_weights import read_numpy_pickle

        if not path.is_file():
            raise DataFormatError("no such checkpoint file", path=path)
        return read_numpy_pickle(path)
    from streamvis.models.weights import torch_load_safely

    return torch_load_safely(path, what="official checkpoint")


def convert_any(checkpoint, path: Path, **overrides):
    """(method, state dict, config) of the first method whose converter accepts `checkpoint`.

    Raises:
        DataFormatError: no method recognises it (the message gives each method's reason).
    """
    from streamvis.models.build import METHODS

    reasons = []
    for name, spec in METHODS.items():
        if spec.convert_official is None:
            continue
        try:
            state, config = spec.convert_official(checkpoint, path, **overrides)
        except DataFormatError as err:
            reasons.append(f"{name}: {err}")
            continue
        return name, state, config
    raise DataFormatError("no method recognises this checkpoint: " + "; ".join(reasons), path=path)


def run(args: argparse.Namespace) -> int:
    from streamvis.models.weights import save_weights

    source = Path(args.official)
    overrides = {}
    if args.class_names:
        overrides["class_names"] = tuple(name.strip() for name in args.class_names.split(","))
    method, state, config = convert_any(read_official(source), source, **overrides)
    save_weights(args.out, state, config, source=source.name, converted_from=f"official {method}")
    print(f"wrote {args.out}: {method}, {config.num_classes} classes, {len(state)} tensors")
    return 0
