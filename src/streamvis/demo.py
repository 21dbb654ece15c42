"""The demo pipeline: a model on generated videos, predicted, evaluated and drawn (``streamvis demo``).

`run_demo` generates a small synthetic valid split (fixed seed; cached and reused when its
parameters match), predicts it with a model, evaluates it as ``streamvis evaluate`` does, and
writes into its output folder::

    valid/instances.json, valid/JPEGImages/   the generated videos and their ground truth
    results.json                              official results format
    metrics.json                              the keys of ``streamvis evaluate --out``
    per_class_ap.png                          AP per category
    videos/<video id>/overlay.mp4             tracks drawn over the first `overlays` videos

The split's frame size and class count follow the model's training data: ``meta.synthetic``
of the weights file when present, else the model's test size (short side x max size, e.g.
192x320) and its ``num_classes``. With seed 0 and 10 videos the split is the first 10 videos of
``streamvis synth --split valid --seed 0`` (each video's content depends only on the seed, the
split and its index), i.e. of the valid split of configs/synthetic_r18.yaml.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from streamvis.errors import StreamvisError

DEFAULT_SIZE = (192, 320)  # streamvis synth's default frame size (H, W)
DEFAULT_FRAMES = (12, 36)  # streamvis synth's default frames per video (min, max)


@dataclass
class DemoOutputs:
    """What `run_demo` wrote and measured.

    Attributes:
        json_path: the generated split's json; reused: whether it was already there.
        size, num_classes: the split's frame size (H, W) and class count.
        tracker: the tracker name used.
        result: the `streamvis.evaluation` result; tracking: the `TrackingResult` (HOTA, CLEAR,
            Identity); categories: the dataset's categories.
        results_path, metrics_path, chart_path: the written files; overlays: the overlay MP4s.
        num_tracks: results entries written.
    """

    json_path: Path
    reused: bool
    size: tuple[int, int]
    num_classes: int
    tracker: str
    result: object
    tracking: object
    categories: list
    results_path: Path
    metrics_path: Path
    chart_path: Path
    num_tracks: int
    overlays: list[Path] = field(default_factory=list)


def run_demo(weights, out_dir, *, num_videos: int, seed: int, tracker: str | None = None,
             overlays: int = 3, progress: bool = True, on_split=None) -> DemoOutputs:
    """Generate (or reuse) the split, predict it with the model in `weights`, evaluate, draw.

    Args:
        weights: a streamvis weights file (`streamvis.models.weights`).
        out_dir: output folder (see the module docstring).
        num_videos, seed: the generated split (``num_videos >= 1``, ``seed >= 0``).
        tracker: a `streamvis.tracking.TRACKERS` name (None: the method's default tracker).
        overlays: videos drawn as overlay MP4s (0: none).
        progress: show progress bars.
        on_split: called with the `DemoOutputs` fields known after the split is ready
            (json path, reused, size, classes), e.g. to print them before the long part.

    Raises:
        StreamvisError: bad arguments, or a model that was not trained on synthetic videos.
    """
    from streamvis.data.ytvis import load_ytvis, write_results
    from streamvis.engine.predict import default_tracker_name, predict_dataset
    from streamvis.evaluation import evaluate
    from streamvis.evaluation.tracking import evaluate_tracking
    from streamvis.models.weights import load_model
    from streamvis.tracking import tracker_spec

    if num_videos < 1:
        raise StreamvisError(f"--videos must be >= 1, got {num_videos}")
    if seed < 0:
        raise StreamvisError(f"--seed must be >= 0, got {seed}")
    if tracker is not None:
        tracker_spec(tracker)  # a typo fails before any work
    model = load_model(weights)
    tracker = tracker or default_tracker_name(model)
    size, num_classes = split_settings(weights, model.config)
    out = Path(out_dir)
    json_path, reused = prepare_split(out / "valid", num_videos=num_videos, seed=seed, size=size,
                                      num_classes=num_classes, progress=progress)
    if on_split is not None:
        on_split(json_path=json_path, reused=reused, size=size, num_classes=num_classes)
    gt = load_ytvis(json_path)
    image_root = json_path.parent / "JPEGImages"
    results = predict_dataset(model, gt, image_root, tracker=tracker, progress=progress)
    results_path = out / "results.json"
    write_results(results_path, results, gt)
    result = evaluate(gt, results, validate=False)  # both validated above
    tracking = evaluate_tracking(gt, results)  # HOTA, CLEAR, Identity as TrackEval 1.3.0
    metrics_path = out / "metrics.json"
    write_metrics(result, json_path, results_path, metrics_path, tracking=tracking)
    chart_path = write_ap_chart(result, gt["categories"], out / "per_class_ap.png")
    drawn = write_overlays(gt, image_root, results, out / "videos", count=overlays,
                           progress=progress) if overlays > 0 else []
    return DemoOutputs(json_path=json_path, reused=reused, size=size, num_classes=num_classes,
                       tracker=tracker, result=result, tracking=tracking, categories=gt["categories"],
                       results_path=results_path, metrics_path=metrics_path, chart_path=chart_path,
                       num_tracks=len(results), overlays=drawn)


# ---------------------------------------------------------------------------------------- the split
def split_settings(weights_path, config) -> tuple[tuple[int, int], int]:
    """Frame size (H, W) and class count of the synthetic data the model was trained on.

    Args:
        weights_path: the streamvis weights file (its optional ``meta.synthetic`` is read).
        config: the model's method config (``test_short_side``, ``test_max_size``, ``num_classes``).

    Returns:
        ``((height, width), num_classes)``.

    Raises:
        StreamvisError: the model has more classes than the generator has shape families.
    """
    from streamvis.data.synthetic import FAMILIES
    from streamvis.models.weights import load

    synthetic = load(weights_path).meta.get("synthetic") or {}
    size = DEFAULT_SIZE
    if synthetic.get("size"):
        size = tuple(int(v) for v in synthetic["size"])
    elif config.test_short_side <= config.test_max_size:
        size = (config.test_short_side, config.test_max_size)  # trained at its native size (no resize)
    num_classes = int(synthetic.get("num_classes", config.num_classes))
    if num_classes > len(FAMILIES):
        raise StreamvisError(
            f"{weights_path}: the model has {num_classes} classes but synthetic videos have at most "
            f"{len(FAMILIES)}; the demo needs a model trained on `streamvis synth` data")
    return size, num_classes


def _is_cached(json_path: Path, config) -> bool:
    """True when `json_path` was generated from `config` and all its frames are present."""
    if not json_path.is_file():
        return False
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    wanted = json.loads(json.dumps(asdict(config)))  # tuples -> lists, as stored
    stored = dict((data.get("info") or {}).get("generator") or {})
    stored.pop("module", None)
    if stored != wanted:
        return False
    images = json_path.parent / "JPEGImages"
    return all((images / name).is_file() for v in data.get("videos", []) for name in v["file_names"])


def prepare_split(folder, *, num_videos: int, seed: int, size=DEFAULT_SIZE, num_classes: int = 8,
                  frames=DEFAULT_FRAMES, progress: bool = True) -> tuple[Path, bool]:
    """Generate the synthetic valid split into `folder`, or reuse it when already generated alike.

    Args:
        folder: output folder (``instances.json`` + ``JPEGImages/``).
        num_videos, seed, size, num_classes, frames: `streamvis.data.synthetic.SynthConfig` fields.
        progress: show a progress bar while generating.

    Returns:
        ``(json path, reused)``.
    """
    from streamvis.data.synthetic import JSON_NAME, SynthConfig, write_dataset

    config = SynthConfig(num_videos=num_videos, seed=seed, split="valid", size=tuple(size),
                         frames=tuple(frames), num_classes=num_classes)
    folder = Path(folder)
    json_path = folder / JSON_NAME
    if _is_cached(json_path, config):
        return json_path, True
    if (folder / "JPEGImages").is_dir():
        shutil.rmtree(folder / "JPEGImages")  # frames of other parameters: stale
    return write_dataset(config, folder, workers=1, progress=progress), False  # small: no pool


# -------------------------------------------------------------------------------------- the outputs
def write_metrics(result, gt_path, results_path, out_path, *, tracking=None) -> dict:
    """Write ``metrics.json`` with the keys of ``streamvis evaluate --out`` (``--metrics all`` when
    `tracking` is given: its rows under ``"tracking"``); returns the dict."""
    from streamvis.utils.io import atomic_write_json

    metrics = result.to_json()
    metrics.update(gt=str(gt_path), results=str(results_path))
    if tracking is not None:
        metrics["tracking"] = tracking.to_json()
    atomic_write_json(out_path, metrics, indent=1)
    return metrics


def write_ap_chart(result, categories, path) -> Path:
    """Bar chart of the per-category AP (categories without ground truth shown as n/a)."""
    from streamvis.viz import plot_per_class_ap

    per_class = {k: (None if v < 0 else v) for k, v in result.per_category_AP.items()}  # -1: no GT
    names = {str(c["id"]): str(c["name"]) for c in categories}
    return plot_per_class_ap(per_class, names, path)


def write_overlays(gt, image_root: Path, results, out_dir: Path, *, count: int, progress: bool) -> list[Path]:
    """Draw the tracks of the first `count` videos (`streamvis.viz.render_results_video`); the MP4s."""
    from tqdm import tqdm

    from streamvis.data.video import read_image
    from streamvis.data.ytvis import results_by_video
    from streamvis.viz import DEFAULT_FPS, RESULTS_SCORE_THRESHOLD, render_results_video

    grouped = results_by_video(results)
    names = {int(c["id"]): str(c["name"]) for c in gt["categories"]}
    videos = gt["videos"][:max(count, 0)]
    paths = []
    with tqdm(total=sum(v["length"] for v in videos), desc="overlays", unit="frame",
              disable=not progress) as bar:
        for video in videos:
            frames = (read_image(image_root / name) for name in video["file_names"])
            video_dir = out_dir / str(video["id"])
            render_results_video(grouped.get(video["id"], []), frames, video_dir, names=names,
                                 score_threshold=RESULTS_SCORE_THRESHOLD, fps=DEFAULT_FPS, results_path=None,
                                 bar=bar, write_ids=False)
            paths.append(video_dir / "overlay.mp4")
    return paths
