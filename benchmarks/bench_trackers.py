"""The trackers on the same detections of the generated valid split: AP, AP50 and ID switches.

The model (the bundled one, or ``--weights``) runs once per frame and every tracker of
`streamvis.tracking.TRACKERS` gets the same detections (`streamvis.tracking.compare`, which also
defines the ID-switch count), so the numbers differ only by the association rule.

    python benchmarks/bench_trackers.py [--weights W.pth] [--videos 10] [--seed 0] [--out trackers.json]

The split is the demo's (``streamvis demo``: valid split, seed 0, the model's frame size and classes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamvis.tracking.compare import compare_trackers, format_rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", help="streamvis weights file (default: the bundled model)")
    parser.add_argument("--videos", type=int, default=10, help="valid videos (default 10, as the demo)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0, as the demo)")
    parser.add_argument("--workdir", default="outputs/bench/valid", help="folder of the generated split")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--min-track-score", type=float, default=0.0,
                        help="ignore tracks scored below this when counting ID switches (default 0: all)")
    parser.add_argument("--out", help="also write the rows as json")
    args = parser.parse_args(argv)

    import torch

    from streamvis.assets import default_weights_path
    from streamvis.data.ytvis import load_ytvis
    from streamvis.demo import prepare_split, split_settings
    from streamvis.models.weights import load_model
    from streamvis.utils.io import atomic_write_json

    torch.set_num_threads(args.threads)
    weights = Path(args.weights) if args.weights else default_weights_path()
    model = load_model(weights)
    size, num_classes = split_settings(weights, model.config)
    json_path, _ = prepare_split(args.workdir, num_videos=args.videos, seed=args.seed, size=size,
                                 num_classes=num_classes)
    gt = load_ytvis(json_path)
    rows = compare_trackers(model, gt, json_path.parent / "JPEGImages", min_track_score=args.min_track_score)
    print(f"weights {weights}; {args.videos} valid videos (seed {args.seed}, {size[0]}x{size[1]}); "
          f"the same detections for every tracker")
    print(format_rows(rows))
    by_name = {r["tracker"]: r for r in rows}
    ok = by_name["default"]["AP"] >= by_name["crossvis"]["AP"]
    print(f"default AP >= crossvis AP: {'yes' if ok else 'NO'}")
    if args.out:
        atomic_write_json(args.out, {"weights": str(weights), "videos": args.videos, "seed": args.seed,
                                     "rows": rows}, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
