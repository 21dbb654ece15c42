"""Trackers compared on the same detections: AP, AP50, ID switches and tracker time per frame.

The model runs once per frame of each video; its per-frame detections (boxes, scores, classes,
embeddings and masks as RLE) are cached in memory and fed unchanged to every tracker, so the
numbers differ only by the association rule. AP / AP50 come from `streamvis.evaluation.evaluate`;
ID switches from `streamvis.evaluation.identity.id_switches`: for each ground-truth track, the
number of times its matched predicted track changes between consecutive frames in which it is
matched (mask IoU >= 0.5, best-IoU prediction; frames without a match are skipped).

``benchmarks/bench_trackers.py`` (``streamvis bench trackers``) prints `compare_trackers` on the
demo's split.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


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
    """Run the model once on every frame; returns video id -> [FrameDetections] in frame order.

    Args:
        model: a method's model; gt: the loaded dataset; image_root: its frame folder.
        progress: show a progress bar.
    """
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

    Args:
        tracker_name: a `streamvis.tracking.TRACKERS` name (default options).
        cached: `detect_dataset` output; gt: the dataset; category_ids: 0-based class -> category id.

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


def compare_trackers(model, gt: dict, image_root: Path, *, trackers: Sequence[str] | None = None,
                     progress: bool = True, min_track_score: float = 0.0) -> list[dict]:
    """One row per tracker: name, AP, AP50, id_switches, matched_frames, gt_frames, tracks, ms_per_frame.

    Args:
        model: a method's model (models/build.py contract).
        gt: the loaded YouTube-VIS dataset; image_root: its frame folder.
        trackers: `streamvis.tracking.TRACKERS` names (default: all of them, in table order).
        progress: show a progress bar while detecting.
        min_track_score: tracks scored below this are left out of the ID-switch count (not of AP).
    """
    from streamvis.engine.predict import category_ids_for
    from streamvis.evaluation import evaluate
    from streamvis.evaluation.identity import id_switches
    from streamvis.tracking import TRACKERS

    trackers = list(TRACKERS) if trackers is None else list(trackers)

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
