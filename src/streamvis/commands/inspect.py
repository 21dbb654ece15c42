"""`streamvis inspect`: what a weights file or training checkpoint holds (method, config, classes, source).

Reads the file with ``torch.load(weights_only=True)`` through `streamvis.models.weights`, so it
accepts every format version this streamvis knows and refuses files from a newer one.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `inspect` arguments to `parser`."""
    parser.add_argument("weights", metavar="W.pth", help="a streamvis weights file or training checkpoint")
    parser.add_argument("--json", action="store_true", help="print the summary as json")


def run(args: argparse.Namespace) -> int:
    """Print the summary of ``args.weights``."""
    from streamvis.models.weights import format_inspection, inspect

    info = inspect(args.weights)
    print(json.dumps(info, indent=1) if args.json else format_inspection(info))
    return 0
