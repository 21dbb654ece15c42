"""Trackers compared on the same detections: AP, HOTA, AssA, IDF1, ID switches (and tracker time).

The model runs once per frame of each video; its per-frame detections (boxes, scores, classes,
embeddings and masks as RLE) are kept compact (`FrameDetections`) and fed unchanged to every
tracker, so the numbers differ only by the association rule. `save_detections` /
`load_detections` keep them in one ``.npz`` file (no pickle), fingerprinted by the weights file
and the split, so tuning a tracker reruns only the trackers (`cached_detections`).

`score_results` computes, for one results list:

- ``AP``, ``AP50``: `streamvis.evaluation.evaluate` (the official YouTube-VIS toolkit's numbers);
- ``HOTA``, ``DetA``, ``AssA``, ``IDF1``, ``MOTA``: TrackEval's YouTubeVIS reading
  (`streamvis.evaluation.tracking.evaluate_tracking`): **per class**, every results entry is one
  track, scores are ignored, then the class-averaged row ``cls_comb_cls_av`` (what TrackEval
  prints as COMBINED for a multi-class dataset); ``HOTA_det`` / ``IDF1_det`` are the
  detection-averaged row ``cls_comb_det_av``;
- ``IDSW``: TrackEval's CLEAR ID switches, summed over classes (``cls_comb_det_av``);
- ``id_switches``: `streamvis.evaluation.identity.id_switches`, class-agnostic: for each
  ground-truth track, the number of times its matched results entry changes between consecutive
  frames in which it is matched (mask IoU >= 0.5, best-IoU entry, lowest index on ties; frames
  without a match are skipped). This is the count quoted in the model card and issue 12.

``benchmarks/bench_trackers.py`` (``streamvis bench trackers``) prints `compare_trackers`.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamvis.errors import DataFormatError

CACHE_FORMAT = "streamvis-detections-v1"  # bumped when the .npz layout changes


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


# ------------------------------------------------------------------------------ detections on disk
def detections_fingerprint(gt: dict, weights_path=None) -> dict:
    """What cached detections depend on: the weights file's SHA-256 and the split's videos.

    Args:
        gt: the loaded dataset (its ``videos``: ids, frame files, sizes).
        weights_path: the weights file the model was loaded from (None: not recorded).

    Returns:
        A json-able dict; `load_detections` refuses a cache whose fingerprint differs.
    """
    digest = None
    if weights_path is not None:
        sha = hashlib.sha256()
        with open(weights_path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
        digest = sha.hexdigest()
    layout = [[v["id"], v["height"], v["width"], list(v["file_names"])] for v in gt["videos"]]
    videos = hashlib.sha256(json.dumps(layout).encode()).hexdigest()
    return {"format": CACHE_FORMAT, "weights_sha256": digest, "videos_sha256": videos}


def save_detections(path, cached: Mapping[int, Sequence[FrameDetections]], fingerprint: dict) -> None:
    """Write `detect_dataset` output to one ``.npz`` file atomically (plain arrays, no pickle).

    Layout: per frame ``frame_video`` (F,), ``frame_sizes`` (F, 2), ``frame_counts`` (F,); per
    detection ``boxes`` (N, 4) float32, ``scores`` (N,) float32, ``classes`` (N,) int64,
    ``embeddings`` (N, D) float32, ``rle_counts`` (N,) str (compressed RLE of the frame's size);
    ``fingerprint``: json text.
    """
    from streamvis.utils.io import atomic_write_bytes

    frame_video, sizes, counts = [], [], []
    fields: dict[str, list] = {"boxes": [], "scores": [], "classes": [], "embeddings": []}
    rle_counts: list[str] = []
    dim = 0
    for video_id, frames in cached.items():
        for frame in frames:
            frame_video.append(int(video_id))
            sizes.append(tuple(frame.image_size))
            counts.append(len(frame.mask_rles))
            for name in fields:
                value = frame.fields[name]
                fields[name].append(np.asarray(value.numpy() if hasattr(value, "numpy") else value))
            dim = max(dim, fields["embeddings"][-1].reshape(len(frame.mask_rles), -1).shape[1]
                      if frame.mask_rles else 0)
            rle_counts += [r["counts"] for r in frame.mask_rles]

    def stack(name, dtype, width):
        parts = [p.reshape(len(p), *width) for p in fields[name] if len(p)]
        return np.concatenate(parts).astype(dtype) if parts else np.zeros((0, *width), dtype)

    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        fingerprint=np.array(json.dumps(fingerprint)),
        frame_video=np.array(frame_video, dtype=np.int64),
        frame_sizes=np.array(sizes, dtype=np.int64).reshape(-1, 2),
        frame_counts=np.array(counts, dtype=np.int64),
        boxes=stack("boxes", np.float32, (4,)),
        scores=stack("scores", np.float32, ()),
        classes=stack("classes", np.int64, ()),
        embeddings=stack("embeddings", np.float32, (dim,)),
        rle_counts=np.array(rle_counts, dtype=str),
    )
    atomic_write_bytes(path, buffer.getvalue())


def load_detections(path, fingerprint: dict | None = None) -> dict[int, list[FrameDetections]]:
    """Read a `save_detections` file back (video id -> [FrameDetections] in frame order).

    Args:
        fingerprint: when given, the file's must equal it (same weights, same split).

    Raises:
        DataFormatError: the file is not a detections cache, or was made for other weights or videos.
    """
    import torch

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        stored = json.loads(str(arrays["fingerprint"]))
    except (OSError, ValueError, KeyError) as err:
        raise DataFormatError(f"{path}: not a streamvis detections cache ({err})") from None
    if stored.get("format") != CACHE_FORMAT:
        raise DataFormatError(f"{path}: detections cache format {stored.get('format')!r}, expected "
                              f"{CACHE_FORMAT!r}; delete the file to detect again")
    if fingerprint is not None and stored != fingerprint:
        raise DataFormatError(f"{path}: these detections were made with other weights or another split "
                              f"(fingerprint {stored} != {fingerprint}); delete the file or pass another "
                              f"cache path")
    cached: dict[int, list[FrameDetections]] = {}
    offsets = np.concatenate([[0], np.cumsum(arrays["frame_counts"])])
    for f, video_id in enumerate(arrays["frame_video"].tolist()):
        lo, hi = int(offsets[f]), int(offsets[f + 1])
        height, width = (int(v) for v in arrays["frame_sizes"][f])
        fields = {name: torch.from_numpy(arrays[name][lo:hi].copy())
                  for name in ("boxes", "scores", "classes", "embeddings")}
        rles = [{"size": [height, width], "counts": str(c)} for c in arrays["rle_counts"][lo:hi]]
        cached.setdefault(video_id, []).append(FrameDetections((height, width), fields, rles))
    return cached


def cached_detections(model, gt: dict, image_root: Path, cache_path=None, *, weights_path=None,
                      progress: bool = True) -> dict[int, list[FrameDetections]]:
    """`detect_dataset`, read from `cache_path` when it holds this model's detections of `gt`.

    Args:
        cache_path: the ``.npz`` file (None: no cache). Written after detecting.
        weights_path: the model's weights file, for the fingerprint.

    Raises:
        DataFormatError: `cache_path` exists but holds other detections.
    """
    fingerprint = detections_fingerprint(gt, weights_path)
    if cache_path is not None and Path(cache_path).is_file():
        return load_detections(cache_path, fingerprint)
    cached = detect_dataset(model, gt, image_root, progress=progress)
    if cache_path is not None:
        save_detections(cache_path, cached, fingerprint)
    return cached


# ------------------------------------------------------------------------------------ the trackers
def track_dataset(tracker_name: str, cached: dict[int, list], gt: dict, category_ids=None,
                  options=None) -> tuple[list[dict], float]:
    """Feed the cached detections to a fresh tracker per video.

    Args:
        tracker_name: a `streamvis.tracking.TRACKERS` name.
        cached: `detect_dataset` output; gt: the dataset; category_ids: 0-based class -> category id.
        options: the tracker's options (dataclass or mapping; None: its defaults).

    Returns:
        (results entries — `streamvis.tracking.base.track_results` of every track, so a track with
        several class hypotheses gives several entries —, tracker seconds per frame: `update`
        plus `finalize`).
    """
    from streamvis.tracking import build_tracker, make_tracker_options, track_results

    if options is None or isinstance(options, Mapping):
        options = make_tracker_options(tracker_name, options)
    results, seconds, frames = [], 0.0, 0
    for video in gt["videos"]:
        tracker = build_tracker(tracker_name, options)
        detections = [d.to_instances() for d in cached[video["id"]]]  # decoded outside the timing
        start = time.perf_counter()
        for index, instances in enumerate(detections):
            tracker.update(instances, index)
        tracks = tracker.finalize()
        seconds += time.perf_counter() - start
        frames += len(detections)
        for track in tracks:
            results += track_results(track, video_id=video["id"], num_frames=len(detections),
                                     category_ids=category_ids)
    return results, seconds / max(frames, 1)


def score_results(gt: dict, results: list[dict], *, min_track_score: float = 0.0) -> dict:
    """AP, AP50, AR10, HOTA, DetA, AssA, IDF1, MOTA, HOTA_det, IDF1_det, IDSW and id_switches (module doc).

    Args:
        gt: the loaded dataset; results: its results entries.
        min_track_score: entries scored below this are left out of ``id_switches`` only.

    Returns:
        A flat dict of those numbers plus ``matched_frames``, ``gt_frames`` (of ``id_switches``)
        and ``entries`` (results entries).
    """
    from streamvis.evaluation import evaluate
    from streamvis.evaluation.identity import id_switches
    from streamvis.evaluation.tracking import evaluate_tracking, row_to_json

    stats = evaluate(gt, results).stats_named
    tracking = evaluate_tracking(gt, results)
    cls_av = row_to_json(tracking.cls_comb_cls_av, per_alpha=False)  # HOTA fields: means over alphas
    det_av = row_to_json(tracking.cls_comb_det_av, per_alpha=False)
    switches = id_switches(gt, results, min_score=min_track_score)
    return {
        "AP": float(stats["AP"]), "AP50": float(stats["AP50"]), "AR10": float(stats["AR10"]),
        "HOTA": float(cls_av["HOTA"]["HOTA"]), "DetA": float(cls_av["HOTA"]["DetA"]),
        "AssA": float(cls_av["HOTA"]["AssA"]), "IDF1": float(cls_av["Identity"]["IDF1"]),
        "MOTA": float(cls_av["CLEAR"]["MOTA"]),
        "HOTA_det": float(det_av["HOTA"]["HOTA"]), "IDF1_det": float(det_av["Identity"]["IDF1"]),
        "IDSW": int(det_av["CLEAR"]["IDSW"]),
        "id_switches": switches.switches, "matched_frames": switches.matched_frames,
        "gt_frames": switches.gt_frames, "entries": len(results),
    }


def compare_trackers(model, gt: dict, image_root: Path, *, trackers: Sequence[str] | None = None,
                     options: Mapping[str, object] | None = None, progress: bool = True,
                     min_track_score: float = 0.0, cache_path=None, weights_path=None) -> list[dict]:
    """One row per tracker: ``tracker``, the `score_results` numbers, ``ms_per_frame``.

    Args:
        model: a method's model (models/build.py contract).
        gt: the loaded YouTube-VIS dataset; image_root: its frame folder.
        trackers: `streamvis.tracking.TRACKERS` names (default: all of them, in table order).
        options: tracker name -> its options (dataclass or mapping); trackers not named use defaults.
        progress: show a progress bar while detecting.
        min_track_score: entries scored below this are left out of the ID-switch count (not of AP).
        cache_path, weights_path: see `cached_detections`.
    """
    from streamvis.engine.predict import category_ids_for
    from streamvis.tracking import TRACKERS

    trackers = list(TRACKERS) if trackers is None else list(trackers)
    cached = cached_detections(model, gt, image_root, cache_path, weights_path=weights_path,
                               progress=progress)
    category_ids = category_ids_for(model.config, gt["categories"])
    rows = []
    for name in trackers:
        results, seconds = track_dataset(name, cached, gt, category_ids, (options or {}).get(name))
        rows.append({"tracker": name, **score_results(gt, results, min_track_score=min_track_score),
                     "ms_per_frame": 1000 * seconds})
    return rows


COLUMNS = (  # (key, header, format)
    ("AP", "AP", "7.4f"), ("AP50", "AP50", "7.4f"), ("HOTA", "HOTA", "7.4f"), ("DetA", "DetA", "7.4f"),
    ("AssA", "AssA", "7.4f"), ("IDF1", "IDF1", "7.4f"), ("id_switches", "ID sw.", "7d"),
    ("IDSW", "IDSW", "6d"), ("HOTA_det", "HOTAdet", "7.4f"), ("entries", "entries", "7d"),
)


def format_rows(rows: list[dict], *, timing: bool = False) -> str:
    """A plain text table of `compare_trackers` rows (``ms/frame`` only when `timing`)."""
    header = f"{'tracker':<10} " + " ".join(f"{h:>{f[:-1].split('.')[0]}}" for _, h, f in COLUMNS)
    lines = [header + (f" {'ms/frame':>9}" if timing else "")]
    for r in rows:
        line = f"{r['tracker']:<10} " + " ".join(format(r[k], f) for k, _, f in COLUMNS)
        lines.append(line + (f" {r['ms_per_frame']:9.2f}" if timing else ""))
    return "\n".join(lines)


# lower is better for these; the rest: higher is better
LOWER_IS_BETTER = frozenset({"id_switches", "IDSW"})


def wins(row: dict, baseline: dict, keys: Sequence[str] = ("AP", "HOTA", "AssA", "IDF1", "id_switches")
         ) -> dict[str, bool]:
    """Per metric key: does `row` beat `baseline` strictly (lower for ID switches, higher otherwise)?"""
    return {k: (row[k] < baseline[k]) if k in LOWER_IS_BETTER else (row[k] > baseline[k]) for k in keys}
