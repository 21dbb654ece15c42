"""`streamvis predict`: segment and track instances in a video, a frame folder or a dataset.

Writes ``OUT/results.json`` (official results format, validated, atomic). With ``--viz`` also an
overlay MP4 and per-frame instance-id PNGs: ``OUT/overlay.mp4`` and ``OUT/instance_ids/`` for one
video, ``OUT/videos/<video id>/...`` for each video of a dataset.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamvis.commands import arguments
from streamvis.errors import StreamvisError
from streamvis.viz import DEFAULT_FPS, TRACK_SCORE_THRESHOLD, TrackDrawer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", required=True, help="streamvis weights file (see `streamvis convert`)")
    parser.add_argument(
        "--input",
        required=True,
        help="a video file (.mp4 ...), a folder of png/jpg frames, or a YouTube-VIS json",
    )
    arguments.add_images(parser)
    arguments.add_out(parser)
    arguments.add_tracker(parser)
    parser.add_argument("--viz", action="store_true", help="also write overlay MP4s and instance-id PNGs")
    parser.add_argument(
        "--viz-score-threshold",
        type=float,
        default=TRACK_SCORE_THRESHOLD,
        help="smallest per-frame detection score drawn with --viz",
    )
    arguments.add_fps(parser)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    arguments.add_no_progress(parser)


def _predict_dataset(model, args, out: Path) -> None:
    from streamvis.data.video import default_image_root
    from streamvis.data.ytvis import load_ytvis, write_results
    from streamvis.engine.predict import category_ids_for, class_names_for, predict_dataset

    gt = load_ytvis(args.input)
    images = Path(args.images) if args.images else default_image_root(args.input, gt)
    drawer = None
    if args.viz:
        names = class_names_for(
            model.config, gt["categories"], category_ids_for(model.config, gt["categories"])
        )
        drawer = TrackDrawer(
            lambda video: out / "videos" / str(video["id"]),
            class_names=names,
            fps=args.fps or DEFAULT_FPS,
            score_threshold=args.viz_score_threshold,
        )
    results = _with_drawer(
        drawer,
        lambda: predict_dataset(
            model,
            gt,
            images,
            tracker=args.tracker,
            tracker_options=args.tracker_options,
            progress=not args.no_progress,
            on_frame=drawer,
        ),
    )
    write_results(out / "results.json", results, gt)
    print(f"{len(results)} tracks in {len(gt['videos'])} videos -> {out / 'results.json'}")


def _with_drawer(drawer, predict):
    """Run `predict()`; close the overlay writer after it (discarding its files if it failed)."""
    try:
        results = predict()
    except BaseException as err:
        if drawer is not None:
            drawer.close((type(err), err, err.__traceback__))
        raise
    if drawer is not None:
        drawer.close()
    return results


def _predict_video(model, args, out: Path) -> None:
    from tqdm import tqdm

    from streamvis.data.video import probe, read_frames
    from streamvis.data.ytvis import write_results
    from streamvis.engine.predict import VideoPredictor, category_ids_for, class_names_for, predict_video
    from streamvis.tracking import build_tracker

    num_frames, _, _, fps = probe(args.input)
    tracker = build_tracker(args.tracker, args.tracker_options)
    predictor = VideoPredictor(model, tracker, video_id=1, category_ids=category_ids_for(model.config))
    drawer = None
    if args.viz:
        drawer = TrackDrawer(
            lambda video: out,
            class_names=class_names_for(model.config),
            fps=args.fps or fps or DEFAULT_FPS,
            score_threshold=args.viz_score_threshold,
        )
    frames = tqdm(
        read_frames(args.input), total=num_frames, desc="predict", unit="frame", disable=args.no_progress
    )
    results = _with_drawer(drawer, lambda: predict_video(predictor, frames, on_frame=drawer))
    write_results(out / "results.json", results)
    print(f"{len(results)} tracks in {predictor.num_frames} frames -> {out / 'results.json'}")


def run(args: argparse.Namespace) -> int:
    import torch

    from streamvis.engine.predict import default_tracker_name
    from streamvis.models.weights import load_model
    from streamvis.tracking import parse_tracker_options, tracker_spec

    if args.tracker is not None:  # checked before any work, so that a typo fails at once
        tracker_spec(args.tracker)
    source = Path(args.input)
    if not source.exists():
        raise StreamvisError(f"{source}: no such video, frame folder or dataset json")
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise StreamvisError(f"--device {args.device!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StreamvisError(f"--device {args.device}: CUDA is not available here (use --device cpu)")
    model = load_model(args.weights, device=device)
    args.tracker = args.tracker or default_tracker_name(model)
    args.tracker_options = parse_tracker_options(args.tracker, args.tracker_set)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if source.is_file() and source.suffix.lower() == ".json":
        _predict_dataset(model, args, out)
    else:
        _predict_video(model, args, out)
    return 0
