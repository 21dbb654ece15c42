"""The methods side by side on one split, then the association rules on one set of detections.

Table 1 — each method with its own tracker (the method's ``default_tracker``), on the same videos:
AP / AP50 / AR10 (`streamvis.evaluation.evaluate`, the code behind ``streamvis evaluate``), HOTA / AssA /
IDF1 (TrackEval's YouTubeVIS reading, class-averaged), ID switches (class-agnostic, as the model
card counts them) and frames/s end to end (`streamvis.engine.predict.predict_dataset`: JPEG decode,
resize, the network, the tracker, RLE encoding; the whole split, after one untimed warm-up video).
PCAN also runs its ablation: frame-level attention off (``model.frame_attention``), refine head off
(``model.refine``: the mask head's masks), both off.

Table 2 — the association rules on the same detections (the CrossVIS model's, by default the bundled
one): every tracker of `streamvis.tracking.TRACKERS` (`streamvis.tracking.compare`), so the
difference between rows is the rule alone; with table 1 this separates detector quality from
association.

    python benchmarks/bench_methods.py --split data/synth/valid \
        --pcan outputs/pcan_synth/model_final.pth --masktrack outputs/masktrack_synth/model_final.pth \
        [--crossvis W.pth] [--threads 2] [--videos N] [--out rows.json]

Every file written (results per row) goes under ``--workdir``. Quote figures from a quiet machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ABLATIONS = {  # row label -> PCAN config changes
    "pcan": {},
    "pcan -frame attn": {"frame_attention": False},
    "pcan -refine": {"refine": False},
    "pcan -both": {"frame_attention": False, "refine": False},
}
COLUMNS = (("AP", "7.4f"), ("AP50", "7.4f"), ("AR10", "7.4f"), ("HOTA", "7.4f"), ("AssA", "7.4f"),
           ("IDF1", "7.4f"), ("id_switches", "7d"))


def _subset(gt: dict, videos: int | None) -> dict:
    if not videos:
        return gt
    keep = gt["videos"][:videos]
    ids = {v["id"] for v in keep}
    return {**gt, "videos": keep, "annotations": [a for a in gt["annotations"] if a["video_id"] in ids]}


def _with_config(model, **changes):
    """The model with config fields changed (fields the model reads at predict time)."""
    if changes:
        model.config = model.config.replace(**changes)
    return model


def method_row(label: str, model, gt: dict, image_root: Path, workdir: Path) -> dict:
    """Predict the split with the method's own tracker, time it, score it; results go to workdir."""
    from streamvis.engine.predict import default_tracker_name, predict_dataset
    from streamvis.tracking.compare import score_results
    from streamvis.utils.io import atomic_write_json

    warmup = {**gt, "videos": gt["videos"][:1]}
    predict_dataset(model, warmup, image_root, progress=False)  # untimed: lazy inits, allocator warm-up
    frames = sum(len(v["file_names"]) for v in gt["videos"])
    start = time.perf_counter()
    results = predict_dataset(model, gt, image_root, progress=False)
    seconds = time.perf_counter() - start
    name = label.replace(" ", "_").replace("-", "no_")
    atomic_write_json(workdir / f"{name}.results.json", results)
    return {"method": label, "tracker": default_tracker_name(model), **score_results(gt, results),
            "frames_per_s": frames / seconds, "frames": frames}


def format_table(rows: list[dict], first: str, *, rate: tuple[str, str, str]) -> str:
    key, header, fmt = rate
    lines = [f"{first:<18} {'tracker':<11} " + " ".join(f"{k if k != 'id_switches' else 'ID sw.':>7}"
                                                         for k, _ in COLUMNS) + f" {header:>9}"]
    for r in rows:
        lines.append(f"{r.get('method', ''):<18} {r['tracker']:<11} "
                     + " ".join(format(r[k], f) for k, f in COLUMNS) + f" {format(r[key], fmt):>9}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="data/synth/valid",
                        help="split folder (instances.json + JPEGImages/)")
    parser.add_argument("--crossvis", help="CrossVIS weights (default: the bundled model)")
    parser.add_argument("--pcan", help="PCAN weights (rows left out when not given)")
    parser.add_argument("--masktrack", help="MaskTrack R-CNN weights (rows left out when not given)")
    parser.add_argument("--videos", type=int, default=None, help="only the first N videos (quick runs)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--no-ablation", action="store_true", help="PCAN as trained only")
    parser.add_argument("--no-association", action="store_true", help="leave out table 2")
    parser.add_argument("--workdir", default="outputs/bench/methods", help="results files of each row")
    parser.add_argument("--out", help="also write both tables' rows as json")
    args = parser.parse_args(argv)

    import torch

    from streamvis.assets import default_weights_path
    from streamvis.data.ytvis import load_ytvis
    from streamvis.models.weights import load_model
    from streamvis.tracking.compare import compare_trackers
    from streamvis.utils.io import atomic_write_json

    torch.set_num_threads(args.threads)
    split = Path(args.split)
    gt = _subset(load_ytvis(split / "instances.json"), args.videos)
    image_root = split / "JPEGImages"
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    crossvis = Path(args.crossvis) if args.crossvis else default_weights_path()
    runs = [("crossvis", crossvis, {})]
    if args.pcan:
        labels = ["pcan"] if args.no_ablation else list(ABLATIONS)
        runs += [(label, Path(args.pcan), ABLATIONS[label]) for label in labels]
    if args.masktrack:
        runs.append(("masktrack", Path(args.masktrack), {}))

    rows = []
    for label, weights, changes in runs:
        model = _with_config(load_model(weights), **changes)
        print(f"[{label}] {weights} ...", file=sys.stderr, flush=True)
        rows.append({**method_row(label, model, gt, image_root, workdir), "weights": str(weights),
                     "weights_mb": weights.stat().st_size / 2**20})
    frames = rows[0]["frames"]
    print(f"split {split}: {len(gt['videos'])} videos, {frames} frames; torch threads {args.threads}")
    print("Table 1: each method with its own tracker (frames/s end to end: decode, network, tracker, RLE)")
    print(format_table(rows, "method", rate=("frames_per_s", "frames/s", "9.2f")))
    for r in rows:
        print(f"  {r['method']}: {r['weights']} ({r['weights_mb']:.1f} MB)")

    association = []
    if not args.no_association:
        model = load_model(crossvis)
        association = compare_trackers(model, gt, image_root, progress=False, weights_path=crossvis)
        for r in association:
            r["method"] = "crossvis dets"
        print(f"\nTable 2: the association rules on the same detections ({crossvis.name}; tracker time only)")
        print(format_table(association, "detections", rate=("ms_per_frame", "ms/frame", "9.2f")))
    if args.out:
        atomic_write_json(args.out, {"split": str(split), "videos": len(gt["videos"]),
                                     "threads": args.threads, "methods": rows, "association": association},
                          indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
