"""`streamvis demo`: the bundled model on generated videos: tracks, overlays and real metrics.

Parses the arguments, calls `streamvis.demo.run_demo` (which documents what is written into
``--out``, default ``outputs/demo``) and prints the AP table and where the files went.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from streamvis.commands import arguments

DEFAULT_OUT = "outputs/demo"
DEFAULT_VIDEOS = 10
DEFAULT_SEED = 0  # configs/synthetic_r18.yaml's valid split is `streamvis synth --split valid --seed 0`
DEFAULT_OVERLAYS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `demo` arguments to `parser`."""
    parser.add_argument("--weights", help="streamvis weights file (default: the bundled model)")
    arguments.add_out(parser, default=DEFAULT_OUT)
    parser.add_argument("--videos", type=int, default=DEFAULT_VIDEOS,
                        help=f"number of generated valid videos (default {DEFAULT_VIDEOS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"seed of the generated videos (default {DEFAULT_SEED})")
    arguments.add_tracker(parser, options=False)
    parser.add_argument("--overlays", type=int, default=DEFAULT_OVERLAYS,
                        help=f"videos drawn as overlay MP4s (default {DEFAULT_OVERLAYS})")
    parser.add_argument("--no-video", action="store_true", help="write no overlay MP4s")
    arguments.add_no_progress(parser)


def run(args: argparse.Namespace) -> int:
    """Generate, predict, evaluate, draw; prints the AP table and where the files went."""
    from streamvis.assets import default_weights_path
    from streamvis.demo import run_demo
    from streamvis.evaluation import format_table
    from streamvis.evaluation.tracking import format_tracking_table

    def on_split(*, json_path, reused, size, num_classes):
        print(f"{'reused' if reused else 'generated'} {args.videos} valid videos ({size[0]}x{size[1]}, "
              f"{num_classes} classes, seed {args.seed}) in {json_path.parent}")

    start = time.perf_counter()
    weights = Path(args.weights) if args.weights else default_weights_path()
    done = run_demo(weights, args.out, num_videos=args.videos, seed=args.seed, tracker=args.tracker,
                    overlays=0 if args.no_video else args.overlays, progress=not args.no_progress,
                    on_split=on_split)
    print(format_table(done.result, done.categories, per_class=True))
    print()
    print(format_tracking_table(done.tracking, ap={"all": done.result.stats_named["AP"]}))
    print(f"\nmodel: {weights} (tracker: {done.tracker}); {done.num_tracks} tracks in "
          f"{time.perf_counter() - start:.1f} s")
    print(f"results:       {done.results_path}\nmetrics:       {done.metrics_path}\n"
          f"per-class AP:  {done.chart_path}")
    for path in done.overlays:
        print(f"overlay:       {path}")
    return 0
