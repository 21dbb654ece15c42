"""`streamvis predict`: segment and track instances in videos, frame folders, streams or a dataset.

Writes ``OUT/results.json`` (official results format, validated, atomic) and ``OUT/categories.json``
(the category names, so that `streamvis render` can label the results). With ``--viz`` also an
overlay MP4 and per-frame instance-id PNGs: ``OUT/overlay.mp4`` and ``OUT/instance_ids/`` for one
input, ``OUT/videos/<video id>/...`` for each video of a dataset, folder or glob (whose inputs
are listed in ``OUT/sources.json``). Overlays of inputs that can be read twice are drawn from the
written results by `streamvis.viz.render_results_video`, the function `streamvis render` uses:
the same results and defaults give the same pixels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamvis.commands import arguments
from streamvis.errors import StreamvisError
from streamvis.viz import DEFAULT_FPS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    arguments.add_weights(parser)
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                        help="run the per-frame network in PyTorch (default) or ONNX Runtime (CPU; "
                             "`pip install streamvis[onnx]`); post-processing and tracking are the same")
    arguments.add_inference_options(parser)
    parser.add_argument("--strict", action="store_true",
                        help="a video corrupt or truncated mid-stream is an error (nothing written); by "
                             "default the frames decoded before the damage are kept, with a warning naming "
                             "the frame")
    parser.add_argument("--resume", action="store_true",
                        help="dataset json: keep the videos already in OUT/parts (same model and tracker) "
                             "and predict the rest (also under torchrun, which splits the videos). A single "
                             "video or stream restarts from its first frame: its results.json is written "
                             "once, atomically, at the end, so a killed run leaves no partial file")
    parser.add_argument(
        "--input",
        required=True,
        help="a video file, a folder of png/jpg frames, a folder of videos, a quoted glob ('vids/*.mp4'), "
             "a stream URL (rtsp://..., http(s)://...), a webcam index (0), or a YouTube-VIS dataset json",
    )
    arguments.add_images(parser)
    arguments.add_out(parser)
    arguments.add_tracker(parser)
    arguments.add_result_filters(parser, for_predict=True)
    parser.add_argument("--viz", action="store_true", help="also write overlay MP4s and instance-id PNGs")
    arguments.add_draw_score_threshold(parser, "--viz-score-threshold")
    arguments.add_fps(parser)
    parser.add_argument(
        "--live", action=argparse.BooleanOptionalAction, default=None,
        help="read the input as a live stream: keep only the newest frame and drop the rest while the model "
             "is busy, then print the frames/s achieved (default: on for webcams and rtsp/rtmp/udp/srt URLs, "
             "off for files and http(s) URLs)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default cpu)")
    arguments.add_no_progress(parser)


def _results_filter(args, names: dict[int, str], *, dataset: bool):
    from streamvis.data.results_filter import DEFAULT_MAX_TRACKS_PER_VIDEO, ResultsFilter, parse_classes

    max_tracks = args.max_tracks
    if max_tracks is None and not dataset:
        max_tracks = DEFAULT_MAX_TRACKS_PER_VIDEO
    return ResultsFilter(score_threshold=args.score_threshold,
                         category_ids=parse_classes(args.classes, names), max_tracks=max_tracks)


def _write_outputs(out: Path, results: list[dict], names: dict[int, str], gt=None, *,
                   rewrite_results: bool = True) -> None:
    from streamvis.data.ytvis import write_results
    from streamvis.utils.io import atomic_write_json

    if rewrite_results:
        write_results(out / "results.json", results, gt)
    categories = [{"id": cid, "name": name} for cid, name in sorted(names.items())]
    atomic_write_json(out / "categories.json", categories, indent=1)


def _predict_dataset(model, args, out: Path) -> None:
    from streamvis.data.sources import check_dataset_frames
    from streamvis.data.video import default_image_root, read_image
    from streamvis.data.ytvis import load_results, load_ytvis, results_by_video
    from streamvis.engine.shard import file_digest, format_summary, predict_dataset_sharded
    from streamvis.viz import render_results_video

    gt = load_ytvis(args.input)
    images = Path(args.images) if args.images else default_image_root(args.input, gt)
    check_dataset_frames(gt, images, args.input, images_given=bool(args.images))
    names = {int(c["id"]): str(c["name"]) for c in gt["categories"]}
    keep = _results_filter(args, names, dataset=True)
    run_info = {"weights": file_digest(args.weights), "backend": args.backend, "precision": args.precision}
    if args.compile:  # (only when set: parts written before --compile existed keep their fingerprint)
        run_info["compile"] = True
    summary = predict_dataset_sharded(
        model, gt, images, out, tracker=args.tracker, tracker_options=args.tracker_options,
        resume=args.resume, run_info=run_info, progress=not args.no_progress, prefetch=args.prefetch,
    )
    print(format_summary(summary), flush=True)  # one write: ranks share the terminal
    if summary.results_path is None:  # not rank 0: the merge, filters and overlays are rank 0's
        return
    results = load_results(summary.results_path, gt)
    kept = keep.apply(results)
    if len(kept) != len(results):  # rewritten only when a filter removed entries (else: the merged bytes)
        print(f"filters kept {len(kept)} of {len(results)} tracks")
    _write_outputs(out, kept, names, gt, rewrite_results=len(kept) != len(results))
    if args.viz:
        grouped = results_by_video(kept)
        for video in gt["videos"]:
            frames = (read_image(images / name) for name in video["file_names"])
            render_results_video(grouped.get(video["id"], []), frames, out / "videos" / str(video["id"]),
                                 names=names, score_threshold=args.draw_score_threshold,
                                 fps=args.fps or DEFAULT_FPS, results_path=out / "results.json")


def _predict_source(model, args, source, video_id: int, viz_dir: Path | None, names: dict[int, str], keep):
    """Predict one source; draw its overlays into `viz_dir` (None: no overlays). Returns its entries."""
    from tqdm import tqdm

    from streamvis.data.sources import LiveFrames
    from streamvis.engine.predict import VideoPredictor, category_ids_for, class_names_for, predict_video
    from streamvis.tracking import build_tracker
    from streamvis.viz import TrackDrawer, render_results_video

    num_frames, fps = source.probe() if not source.live else (None, None)
    predictor = VideoPredictor(model, build_tracker(args.tracker, args.tracker_options), video_id=video_id,
                               category_ids=category_ids_for(model.config))
    live = LiveFrames(source.frames()) if source.live else None
    drawer = None
    if viz_dir is not None and source.live:  # a live stream cannot be read twice: draw as it comes
        drawer = TrackDrawer(lambda video: viz_dir, class_names=class_names_for(model.config),
                             fps=args.fps or fps or DEFAULT_FPS, score_threshold=args.draw_score_threshold)
    frames = live if live is not None else source.frames(strict=args.strict)
    frames = tqdm(frames, total=num_frames, desc="predict",
                  unit="frame", disable=args.no_progress)
    try:
        results = keep.apply(predict_video(predictor, frames, on_frame=drawer, name=source.name,
                                           prefetch=0 if source.live else args.prefetch))
    except BaseException as err:
        if drawer is not None:
            drawer.close((type(err), err, err.__traceback__))
        raise
    finally:
        if live is not None:
            print(live.summary(source.name), file=sys.stderr)
    if drawer is not None:
        drawer.close()
    elif viz_dir is not None and predictor.num_frames:
        render_results_video(results, source.frames(), viz_dir, names=names,
                             score_threshold=args.draw_score_threshold, fps=args.fps or fps or DEFAULT_FPS,
                             results_path=None)
    return results, predictor.num_frames


def _predict_sources(model, args, out: Path, sources) -> None:
    from streamvis.data.results_filter import category_names
    from streamvis.engine.predict import category_ids_for
    from streamvis.utils.io import atomic_write_json

    names = category_names(model.config.class_names, category_ids_for(model.config))
    keep = _results_filter(args, names, dataset=False)
    results: list[dict] = []
    listing = []
    for video_id, source in enumerate(sources, start=1):
        viz_dir = None
        if args.viz:
            viz_dir = out if len(sources) == 1 else out / "videos" / str(video_id)
        entries, num_frames = _predict_source(model, args, source, video_id, viz_dir, names, keep)
        results.extend(entries)
        listing.append({"video_id": video_id, "input": source.name, "frames": num_frames})
    _write_outputs(out, results, names)
    if len(sources) > 1:
        atomic_write_json(out / "sources.json", listing, indent=1)
    frames = sum(item["frames"] for item in listing)
    where = f"{len(sources)} inputs" if len(sources) > 1 else f"{frames} frames"
    print(f"{len(results)} tracks in {where} -> {out / 'results.json'}")


def _check_device(name: str):
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise StreamvisError(f"--device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StreamvisError(f"--device {name}: CUDA is not available here (use --device cpu)")
    return device


def run(args: argparse.Namespace) -> int:
    from streamvis.data.sources import resolve_sources
    from streamvis.engine.inference import check_precision
    from streamvis.engine.predict import default_tracker_name
    from streamvis.engine.shard import rank_device, require_single_process
    from streamvis.export.backend import load_frame_model
    from streamvis.tracking import parse_tracker_options, tracker_spec

    if args.tracker is not None:  # checked before any work, so that a typo fails at once
        tracker_spec(args.tracker)
    source = Path(args.input)
    dataset = source.is_file() and source.suffix.lower() == ".json"
    sources = None if dataset else resolve_sources(args.input, live=args.live)  # names what it tried
    if not dataset:
        require_single_process("predicting videos, frame folders or streams")
        if args.resume:  # tracker state is not checkpointed: a video restarts (documented in --help)
            print("note: --resume applies to a dataset json; these inputs are predicted from their "
                  "first frame", file=sys.stderr)
    device = _check_device(args.device)
    if args.prefetch < 0:
        raise StreamvisError(f"--prefetch {args.prefetch}: give a number of frames >= 0 (0 disables it)")
    args.precision = check_precision(args.backend, args.precision, device)  # before loading anything
    args.weights = arguments.resolve_weights(args.weights)
    model = load_frame_model(args.weights, args.backend, args.precision, device=rank_device(device),
                             compile=args.compile)
    args.tracker = args.tracker or default_tracker_name(model)
    args.tracker_options = parse_tracker_options(args.tracker, args.tracker_set)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if dataset:
        _predict_dataset(model, args, out)
    else:
        _predict_sources(model, args, out, sources)
    return 0
