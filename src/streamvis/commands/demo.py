"""`streamvis demo`: the bundled model on generated videos: tracks, overlays and real metrics.

Generates a small synthetic valid split (fixed seed; cached and reused when its parameters match),
predicts it with the bundled model (or ``--weights``), evaluates it as ``streamvis evaluate`` does,
and writes into ``--out`` (default ``outputs/demo``)::

    valid/instances.json, valid/JPEGImages/   the generated videos and their ground truth
    results.json                              official results format
    metrics.json                              the keys of ``streamvis evaluate --out``
    per_class_ap.png                          AP per category
    videos/<video id>/overlay.mp4             tracks drawn over the first --overlays videos

The split's frame size and class count follow the model's training data: ``meta.synthetic``
of the weights file when present, else the model's test size (short side x max size, e.g.
192x320) and its ``num_classes``. With the defaults (seed 0, 10 videos) the split is the first 10
videos of ``streamvis synth --split valid --seed 0`` (each video's content depends only on the seed,
the split and its index), i.e. of the valid split of configs/synthetic_r18.yaml.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from streamvis.errors import StreamvisError

DEFAULT_OUT = "outputs/demo"
DEFAULT_VIDEOS = 10
DEFAULT_SEED = 0  # configs/synthetic_r18.yaml's valid split is `streamvis synth --split valid --seed 0`
DEFAULT_OVERLAYS = 3
DEFAULT_SIZE = (192, 320)  # streamvis synth's default frame size (H, W)
DEFAULT_FRAMES = (12, 36)  # streamvis synth's default frames per video (min, max)
OVERLAY_FPS = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `demo` arguments to `parser`."""
    parser.add_argument("--weights", help="streamvis weights file (default: the bundled model)")
    parser.add_argument("--method", default=None,
                        help="use the bundled model of this method (crossvis, the default, or pcan once "
                             "shipped); with --weights, the file must hold this method")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--videos", type=int, default=DEFAULT_VIDEOS,
                        help=f"number of generated valid videos (default {DEFAULT_VIDEOS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"seed of the generated videos (default {DEFAULT_SEED})")
    parser.add_argument("--tracker", default=None,
                        help="association rule, a name of streamvis.tracking.TRACKERS: 'default' (ours) or "
                             "'crossvis' (the official one); default: the method's own")
    parser.add_argument("--overlays", type=int, default=DEFAULT_OVERLAYS,
                        help=f"videos drawn as overlay MP4s (default {DEFAULT_OVERLAYS})")
    parser.add_argument("--no-video", action="store_true", help="write no overlay MP4s")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


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
def write_metrics(result, gt_path, results_path, out_path) -> dict:
    """Write ``metrics.json`` with the keys of ``streamvis evaluate --out``; returns the dict."""
    from streamvis.utils.io import atomic_write_json

    metrics = result.to_json()
    metrics.update(gt=str(gt_path), results=str(results_path))
    atomic_write_json(out_path, metrics, indent=1)
    return metrics


def write_ap_chart(result, categories, path) -> Path:
    """Bar chart of the per-category AP (categories without ground truth shown as n/a)."""
    from streamvis.viz import plot_per_class_ap

    per_class = {k: (None if v < 0 else v) for k, v in result.per_category_AP.items()}  # -1: no GT
    names = {str(c["id"]): str(c["name"]) for c in categories}
    return plot_per_class_ap(per_class, names, path)


def write_overlays(gt, image_root: Path, results, out_dir: Path, *, count: int, progress: bool) -> list[Path]:
    """Draw the tracks of the first `count` videos (as ``streamvis render``); returns the MP4 paths."""
    from tqdm import tqdm

    from streamvis.commands.render import SCORE_THRESHOLD, render_video_entries
    from streamvis.data.video import read_image
    from streamvis.data.ytvis import results_by_video

    grouped = results_by_video(results)
    names = {int(c["id"]): str(c["name"]) for c in gt["categories"]}
    videos = gt["videos"][:max(count, 0)]
    paths = []
    with tqdm(total=sum(v["length"] for v in videos), desc="overlays", unit="frame",
              disable=not progress) as bar:
        for video in videos:
            frames = (read_image(image_root / name) for name in video["file_names"])
            video_dir = out_dir / str(video["id"])
            render_video_entries(grouped.get(video["id"], []), frames, video_dir, names=names,
                                 score_threshold=SCORE_THRESHOLD, fps=OVERLAY_FPS, results_path=None,
                                 bar=bar, write_ids=False)
            paths.append(video_dir / "overlay.mp4")
    return paths


def _weights_path(args) -> Path:
    from streamvis.assets import assets_dir, default_weights_path
    from streamvis.models.build import DEFAULT_METHOD, method_spec

    if args.weights:
        return Path(args.weights)
    method = args.method or DEFAULT_METHOD
    method_spec(method)  # an unknown method fails here, listing the known ones
    if method == DEFAULT_METHOD:
        return default_weights_path()
    path = assets_dir() / f"{method}_model.pth"  # a bundled model of another method
    if not path.is_file():
        raise StreamvisError(f"{path}: no bundled {method} model is shipped; train one (e.g. `streamvis "
                             f"train --config configs/synthetic_{method}_r18.yaml`) and pass --weights")
    return path


def _check_args(args) -> None:
    if args.videos < 1:
        raise StreamvisError(f"--videos must be >= 1, got {args.videos}")
    if args.seed < 0:
        raise StreamvisError(f"--seed must be >= 0, got {args.seed}")


def run(args: argparse.Namespace) -> int:
    """Generate, predict, evaluate, draw; prints the AP table and where the files went."""
    from streamvis.data.ytvis import load_ytvis, write_results
    from streamvis.engine.predict import default_tracker_name, predict_dataset
    from streamvis.evaluation import evaluate, format_table
    from streamvis.models.weights import load_model
    from streamvis.tracking import tracker_spec

    _check_args(args)
    if args.tracker is not None:
        tracker_spec(args.tracker)  # a typo fails before any work
    start = time.perf_counter()
    weights = _weights_path(args)
    model = load_model(weights)
    if args.method and model.config.method != args.method:
        raise StreamvisError(f"{weights}: holds a {model.config.method!r} model, not --method {args.method}")
    tracker = args.tracker or default_tracker_name(model)
    size, num_classes = split_settings(weights, model.config)
    out = Path(args.out)
    json_path, reused = prepare_split(out / "valid", num_videos=args.videos, seed=args.seed, size=size,
                                      num_classes=num_classes, progress=not args.no_progress)
    print(f"{'reused' if reused else 'generated'} {args.videos} valid videos ({size[0]}x{size[1]}, "
          f"{num_classes} classes, seed {args.seed}) in {json_path.parent}")
    gt = load_ytvis(json_path)
    image_root = json_path.parent / "JPEGImages"
    results = predict_dataset(model, gt, image_root, tracker=tracker, progress=not args.no_progress)
    results_path = out / "results.json"
    write_results(results_path, results, gt)
    result = evaluate(gt, results, validate=False)  # both validated above
    metrics_path = out / "metrics.json"
    write_metrics(result, json_path, results_path, metrics_path)
    chart_path = write_ap_chart(result, gt["categories"], out / "per_class_ap.png")
    overlays = [] if args.no_video else write_overlays(
        gt, image_root, results, out / "videos", count=args.overlays, progress=not args.no_progress)
    print(format_table(result, gt["categories"], per_class=True))
    print(f"\nmodel: {weights} (tracker: {tracker}); {len(results)} tracks in "
          f"{time.perf_counter() - start:.1f} s")
    print(f"results:       {results_path}\nmetrics:       {metrics_path}\nper-class AP:  {chart_path}")
    for path in overlays:
        print(f"overlay:       {path}")
    return 0
