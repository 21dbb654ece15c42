"""`streamvis synth`: generate a synthetic YouTube-VIS-format video dataset.

Example::

    streamvis synth --out data/synth_train --videos 400 --seed 0 --preview
    streamvis synth --out data/synth_valid --videos 50 --seed 0 --split valid
"""

from __future__ import annotations

import argparse
import time

from streamvis.commands import arguments
from streamvis.errors import ConfigError


def _pair(text: str, separator: str, what: str) -> tuple[int, int]:
    """Parse "AxB" (or "A" for "AxA" when the separator is ':') into two ints."""
    parts = text.split(separator)
    if separator == ":" and len(parts) == 1:
        parts = parts * 2
    try:
        first, second = (int(p) for p in parts)
    except ValueError:
        form = "HxW" if separator == "x" else "MIN:MAX"
        raise ConfigError(f"--{what} must look like {form}, got {text!r}") from None
    return first, second


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `synth` arguments to `parser`."""
    arguments.add_out(parser, help="output folder (JPEGImages/ and instances.json)")
    parser.add_argument("--videos", type=int, required=True, help="number of videos")
    parser.add_argument("--seed", type=int, required=True, help="base seed (>= 0)")
    parser.add_argument("--size", default="192x320", help="frame size HxW (default 192x320)")
    parser.add_argument("--frames", default="12:36", help="frames per video MIN:MAX or N (default 12:36)")
    parser.add_argument("--classes", type=int, default=8, help="number of categories (default 8)")
    parser.add_argument("--split", choices=("train", "valid"), default="train",
                        help="train or valid: different videos for the same seed (default train)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes (default min(2, CPU count)); the output does not depend on it")
    parser.add_argument("--preview", action="store_true",
                        help="also write preview.png (contact sheet) and preview.mp4 with ground truth drawn")


def run(args: argparse.Namespace) -> int:
    """Generate the dataset; prints where it went and how long it took."""
    from streamvis.data.synthetic import SynthConfig, write_dataset

    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    config = SynthConfig(num_videos=args.videos, seed=args.seed, split=args.split,
                         size=_pair(args.size.lower(), "x", "size"), frames=_pair(args.frames, ":", "frames"),
                         num_classes=args.classes)
    start = time.perf_counter()
    json_path = write_dataset(config, args.out, workers=args.workers, progress=True)
    if args.preview:
        from streamvis.data.ytvis import read_json
        from streamvis.viz import write_dataset_preview

        write_dataset_preview(read_json(json_path), json_path.parent)
    seconds = time.perf_counter() - start
    print(f"wrote {config.num_videos} {config.split} videos to {json_path.parent} ({json_path.name}) "
          f"in {seconds:.1f} s")
    if args.preview:
        print(f"preview: {json_path.parent / 'preview.png'}, {json_path.parent / 'preview.mp4'}")
    return 0
