"""The two trackers on the same detections of the generated valid split: AP, AP50 and ID switches.

The model runs once per frame of each video (the bundled model, or ``--weights``); its per-frame
detections (boxes, scores, classes, embeddings and masks as RLE) are cached in memory and fed
unchanged to every tracker, so the numbers differ only by the association rule. AP / AP50 come
from `streamvis.evaluation.evaluate`; ID switches from `streamvis.evaluation.identity.id_switches`:
for each ground-truth track, the number of times its matched predicted track changes between
consecutive frames in which it is matched (mask IoU >= 0.5, best-IoU prediction; frames without a
match are skipped).

    python benchmarks/bench_trackers.py [--weights W.pth] [--videos 10] [--seed 0] [--out trackers.json]

The split is the demo's (``streamvis demo``: valid split, seed 0, the model's frame size and classes).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from streamvis.evaluation.identity import id_switches

TRACKERS = ("default", "crossvis")


# --------------------------------------------------------------------------- cached detections
@dataclass
class FrameDetections:
    """One frame's model output, kept compact: masks as RLE, the other fields as tensors."""

    image_size: tuple[int, int]
    fields: dict  # boxes (K, 4), scores (K,), classes (K,), embeddings (K, D)
    mask_rles: list

    @classmethod
    def from_instances(cls, instances) -> FrameDetections:
        from streamvis.data.masks import encode_masks

        fields = {k: instances.get(k).cpu() for k in ("boxes", "scores", "classes", "embeddings")}
        return cls(instances.image_size, fields, encode_masks(instances.masks.cpu().numpy()))

    def to_instances(self):
        """The `Instances` a tracker reads: boxes, scores, classes, embeddings, masks (K, H, W) bool."""
        import torch

        from streamvis.data.masks import decode_rles
        from streamvis.structures import Instances

        masks = torch.zeros((0, *self.image_size), dtype=torch.bool)
        if self.mask_rles:
            masks = torch.from_numpy(decode_rles(self.mask_rles)).bool()
        return Instances(self.image_size, masks=masks, **self.fields)


def detect_dataset(model, gt: dict, image_root: Path, *, progress: bool = True) -> dict[int, list]:
    """Run the model once on every frame; returns video id -> [FrameDetections] in frame order."""
    import torch
    from tqdm import tqdm

    from streamvis.data.video import read_image
    from streamvis.engine.predict import preprocess_frame

    cached: dict[int, list] = {}
    with tqdm(total=sum(len(v["file_names"]) for v in gt["videos"]), desc="detect", unit="frame",
              disable=not progress) as bar:
        for video in gt["videos"]:
            frames = cached.setdefault(video["id"], [])
            for name in video["file_names"]:
                frame = read_image(image_root / name)  # (H, W, 3) BGR
                with torch.inference_mode():
                    (inst,) = model.predict([preprocess_frame(frame, model.config)],
                                            output_sizes=[frame.shape[:2]])
                frames.append(FrameDetections.from_instances(inst))
                bar.update(1)
    return cached


def track_dataset(tracker_name: str, cached: dict[int, list], gt: dict, category_ids=None
                  ) -> tuple[list[dict], float]:
    """Feed the cached detections to a fresh tracker per video.

    Returns:
        (results entries, tracker seconds per frame: `update` plus `finalize`).
    """
    from streamvis.tracking import build_tracker, track_to_result

    results, seconds, frames = [], 0.0, 0
    for video in gt["videos"]:
        tracker = build_tracker(tracker_name)
        detections = [d.to_instances() for d in cached[video["id"]]]  # decoded outside the timing
        start = time.perf_counter()
        for index, instances in enumerate(detections):
            tracker.update(instances, index)
        tracks = tracker.finalize()
        seconds += time.perf_counter() - start
        frames += len(detections)
        results += [track_to_result(t, video_id=video["id"], num_frames=len(detections),
                                    category_ids=category_ids) for t in tracks]
    return results, seconds / max(frames, 1)


def compare_trackers(model, gt: dict, image_root: Path, *, trackers=TRACKERS, progress=True,
                     min_track_score: float = 0.0) -> list[dict]:
    """One row per tracker: name, AP, AP50, id_switches, matched_frames, gt_frames, tracks, ms_per_frame.

    Args:
        min_track_score: tracks scored below this are left out of the ID-switch count (not of AP).
    """
    from streamvis.engine.predict import category_ids_for
    from streamvis.evaluation import evaluate

    cached = detect_dataset(model, gt, image_root, progress=progress)
    category_ids = category_ids_for(model.config, gt["categories"])
    rows = []
    for name in trackers:
        results, seconds = track_dataset(name, cached, gt, category_ids)
        stats = evaluate(gt, results).stats_named
        switches = id_switches(gt, results, min_score=min_track_score)
        rows.append({"tracker": name, "AP": stats["AP"], "AP50": stats["AP50"],
                     "id_switches": switches.switches, "matched_frames": switches.matched_frames,
                     "gt_frames": switches.gt_frames, "tracks": len(results), "ms_per_frame": 1000 * seconds})
    return rows


def format_rows(rows: list[dict]) -> str:
    """A plain text table of `compare_trackers` rows."""
    lines = [f"{'tracker':<10} {'AP':>7} {'AP50':>7} {'ID sw.':>7} {'matched':>13} {'tracks':>7} "
             f"{'ms/frame':>9}"]
    for r in rows:
        lines.append(f"{r['tracker']:<10} {r['AP']:7.4f} {r['AP50']:7.4f} {r['id_switches']:7d} "
                     f"{r['matched_frames']:6d}/{r['gt_frames']:<6d} {r['tracks']:7d} "
                     f"{r['ms_per_frame']:9.2f}")
    return "\n".join(lines)


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
    from streamvis.commands.demo import prepare_split, split_settings
    from streamvis.data.ytvis import load_ytvis
    from streamvis.models.convert import load_model
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
