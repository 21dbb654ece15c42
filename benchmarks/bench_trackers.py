"""The trackers on the same detections: AP, HOTA, AssA, IDF1 and ID switches of each.

The model (the bundled one, or ``--weights``) runs once per frame and every tracker of
`streamvis.tracking.TRACKERS` gets the same detections (`streamvis.tracking.compare`, which also
defines every column), so the numbers differ only by the association rule. ``--cache`` keeps the
detections in a file, so a second run (another tracker setting) only reruns the trackers.

    python benchmarks/bench_trackers.py [--weights W.pth] [--split data/synth/valid | --videos 10 --seed 0]
        [--cache dets.npz] [--tracker-set default:match_threshold=0.7 ...] [--threads 1] [--out rows.json]

Without ``--split`` the split is the demo's (``streamvis demo``: generated valid split, seed 0, the
model's frame size and classes), generated into ``--workdir`` unless it is there already. The
model card's tracker table is ``--split data/synth/valid`` (50 videos, seed 0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamvis.tracking.compare import compare_trackers, format_rows, wins

GOAL = ("AP", "HOTA", "AssA", "IDF1", "id_switches")  # issue 12 part 6: default must beat crossvis on each


def _tracker_sets(items: list[str]) -> dict[str, list[str]]:
    """``["default:key=value", ...]`` -> {tracker: ["key=value", ...]} (the tracker name is required)."""
    from streamvis.errors import ConfigError

    by_tracker: dict[str, list[str]] = {}
    for item in items:
        name, sep, setting = item.partition(":")
        if not sep or "=" not in setting:
            raise ConfigError(f"--tracker-set {item!r}: expected TRACKER:KEY=VALUE, "
                              f"e.g. default:match_threshold=0.7")
        by_tracker.setdefault(name, []).append(setting)
    return by_tracker


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", help="streamvis weights file (default: the bundled model)")
    parser.add_argument("--split", help="an existing split folder (instances.json + JPEGImages/); "
                                        "default: generate the demo's split")
    parser.add_argument("--videos", type=int, default=10,
                        help="generated valid videos (default 10, as the demo)")
    parser.add_argument("--seed", type=int, default=0, help="generated split seed (default 0, as the demo)")
    parser.add_argument("--workdir", default="outputs/bench/valid", help="folder of the generated split")
    parser.add_argument("--cache", help="detections file (.npz): read when it holds this model's detections "
                                        "of this split, else written")
    parser.add_argument("--trackers", help="comma-separated TRACKERS names (default: all)")
    parser.add_argument("--tracker-set", action="append", default=[], metavar="TRACKER:KEY=VALUE",
                        help="a tracker option, e.g. default:match_threshold=0.7 (repeatable)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--min-track-score", type=float, default=0.0,
                        help="ignore entries scored below this when counting ID switches (default 0: all)")
    parser.add_argument("--out", help="also write the rows as json")
    args = parser.parse_args(argv)

    import torch

    from streamvis.assets import default_weights_path
    from streamvis.data.ytvis import load_ytvis
    from streamvis.models.weights import load_model
    from streamvis.tracking import parse_tracker_options
    from streamvis.utils.io import atomic_write_json

    torch.set_num_threads(args.threads)
    weights = Path(args.weights) if args.weights else default_weights_path()
    model = load_model(weights)
    if args.split:
        json_path = Path(args.split) / "instances.json"
        where = f"split {args.split}"
    else:
        from streamvis.demo import prepare_split, split_settings

        size, num_classes = split_settings(weights, model.config)
        json_path, _ = prepare_split(args.workdir, num_videos=args.videos, seed=args.seed, size=size,
                                     num_classes=num_classes)
        where = f"{args.videos} generated valid videos (seed {args.seed}, {size[0]}x{size[1]})"
    gt = load_ytvis(json_path)
    trackers = args.trackers.split(",") if args.trackers else None
    options = {name: parse_tracker_options(name, items)
               for name, items in _tracker_sets(args.tracker_set).items()}
    rows = compare_trackers(model, gt, json_path.parent / "JPEGImages", trackers=trackers, options=options,
                            min_track_score=args.min_track_score, cache_path=args.cache, weights_path=weights)
    print(f"weights {weights}; {where}; {len(gt['videos'])} videos; the same detections for every tracker")
    print("AP: official YouTube-VIS AP; HOTA/DetA/AssA/IDF1: TrackEval YouTubeVIS, class-averaged "
          "(HOTAdet: detection-averaged); ID sw.: class-agnostic switches of the best-IoU entry; "
          "IDSW: TrackEval CLEAR, summed over classes")
    print(format_rows(rows))
    by_name = {r["tracker"]: r for r in rows}
    if "default" in by_name and "crossvis" in by_name:
        won = wins(by_name["default"], by_name["crossvis"], GOAL)
        verdicts = ", ".join(f"{k} {'yes' if ok else 'NO'}" for k, ok in won.items())
        print(f"default beats crossvis on: {verdicts}")
    if args.out:
        atomic_write_json(args.out, {"weights": str(weights), "split": str(json_path), "rows": rows,
                                     "options": {k: vars(v) for k, v in options.items()}}, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
