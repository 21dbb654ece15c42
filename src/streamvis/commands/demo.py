"""`streamvis demo`: the bundled model on generated videos: tracks, overlays and real metrics.

Parses the arguments, calls `streamvis.demo.run_demo` (which documents what is written into
``--out``, default ``outputs/demo``) and prints the AP table and where the files went.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from streamvis.commands import arguments
from streamvis.errors import StreamvisError

DEFAULT_OUT = "outputs/demo"
DEFAULT_VIDEOS = 10
DEFAULT_SEED = 0  # configs/synthetic_r18.yaml's valid split is `streamvis synth --split valid --seed 0`
DEFAULT_OVERLAYS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `demo` arguments to `parser`."""
    parser.add_argument("--weights", help="streamvis weights file (default: the bundled model)")
    parser.add_argument("--method", default=None,
                        help="use the bundled model of this method (crossvis, the default; other methods "
                             "once shipped); with --weights, the file must hold this method")
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
    from streamvis.demo import run_demo
    from streamvis.evaluation import format_table
    from streamvis.evaluation.tracking import format_tracking_table

    def on_split(*, json_path, reused, size, num_classes):
        print(f"{'reused' if reused else 'generated'} {args.videos} valid videos ({size[0]}x{size[1]}, "
              f"{num_classes} classes, seed {args.seed}) in {json_path.parent}")

    start = time.perf_counter()
    weights = _weights_path(args)
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


def _weights_path(args) -> Path:
    """``--weights``, else the bundled model of ``--method``; the file must hold that method."""
    from streamvis.assets import assets_dir, default_weights_path
    from streamvis.models.build import DEFAULT_METHOD, method_spec
    from streamvis.models.weights import load

    method = args.method or DEFAULT_METHOD
    method_spec(method)  # an unknown method fails here, listing the known ones
    if args.weights:
        path = Path(args.weights)
    elif method == DEFAULT_METHOD:
        path = default_weights_path()
    else:
        path = assets_dir() / f"{method}_model.pth"  # a bundled model of another method
        if not path.is_file():
            raise StreamvisError(f"{path}: no bundled {method} model is shipped; train one (e.g. `streamvis "
                                 f"train --config configs/synthetic_{method}_r18.yaml`) and pass --weights")
    held = getattr(load(path).config, "method", DEFAULT_METHOD)
    if args.method and held != args.method:
        raise StreamvisError(f"{path}: holds a {held!r} model, not --method {args.method}")
    return path
