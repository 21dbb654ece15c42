"""`streamvis render`: draw the tracks of a saved results json over a dataset's frames or a video.

Works for results written by any tool (the official results format has no track ids: a track's
id is its 1-based position among its video's entries in the file). Writes the same files as
``streamvis predict --viz``: ``OUT/overlay.mp4`` + ``OUT/instance_ids/`` for a video or frame
folder, ``OUT/videos/<video id>/...`` for each video of a dataset.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamvis.commands import arguments
from streamvis.errors import DataFormatError, StreamvisError
from streamvis.viz import DEFAULT_FPS, RESULTS_SCORE_THRESHOLD, render_results_video


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", required=True, help="results json (official format)")
    parser.add_argument(
        "--gt-or-video",
        required=True,
        dest="source",
        help="the YouTube-VIS json the results are for, a video file, or a frame folder",
    )
    arguments.add_images(parser)
    arguments.add_out(parser)
    parser.add_argument(
        "--video-id",
        type=int,
        action="append",
        help="render only this video id (repeatable); needed for a video when the "
        "results hold several videos",
    )
    parser.add_argument(
        "--score-threshold", type=float, default=RESULTS_SCORE_THRESHOLD, help="smallest track score drawn"
    )
    parser.add_argument(
        "--categories",
        help="category set naming the classes without a dataset json (ytvis2019, ytvis2021, ovis)",
    )
    arguments.add_fps(parser)
    arguments.add_no_progress(parser)


def _category_names(args, gt) -> dict[int, str]:
    from streamvis.data.categories import get_category_set

    if args.categories:
        return {c["id"]: c["name"] for c in get_category_set(args.categories)}
    if gt is not None:
        return {c["id"]: str(c["name"]) for c in gt["categories"]}
    return {}


def _render_dataset(args, results, out: Path, progress) -> int:
    from streamvis.data.video import default_image_root, read_image
    from streamvis.data.ytvis import load_results, load_ytvis, results_by_video

    gt = load_ytvis(args.source)
    load_results(results, gt, path=args.results)
    grouped = results_by_video(results)
    wanted = set(args.video_id) if args.video_id else set(grouped)
    videos = [v for v in gt["videos"] if v["id"] in wanted and v["id"] in grouped]
    images = Path(args.images) if args.images else default_image_root(args.source, gt)
    names = _category_names(args, gt)
    with progress(total=sum(len(v["file_names"]) for v in videos)) as bar:
        for video in videos:
            frames = (read_image(images / name) for name in video["file_names"])
            render_results_video(
                grouped[video["id"]],
                frames,
                out / "videos" / str(video["id"]),
                names=names,
                score_threshold=args.score_threshold,
                fps=args.fps or DEFAULT_FPS,
                results_path=args.results,
                bar=bar,
            )
    return len(videos)


def _pick_video(args, grouped) -> int:
    ids = sorted(grouped)
    if args.video_id:
        if len(args.video_id) > 1 or args.video_id[0] not in grouped:
            raise StreamvisError(f"{args.results}: give one --video-id of the results' videos: {ids}")
        return args.video_id[0]
    if len(ids) != 1:
        raise StreamvisError(f"{args.results}: results hold videos {ids}; choose one with --video-id")
    return ids[0]


def _render_single(args, results, out: Path, progress) -> int:
    from streamvis.data.video import probe, read_frames
    from streamvis.data.ytvis import results_by_video, validate_results

    validate_results(results, None, path=args.results)
    grouped = results_by_video(results)
    video_id = _pick_video(args, grouped)
    num_frames, _, _, fps = probe(args.source)
    with progress(total=num_frames) as bar:
        render_results_video(
            grouped[video_id],
            read_frames(args.source),
            out,
            names=_category_names(args, None),
            score_threshold=args.score_threshold,
            fps=args.fps or fps or DEFAULT_FPS,
            results_path=args.results,
            bar=bar,
        )
    return 1


def run(args: argparse.Namespace) -> int:
    from functools import partial

    from tqdm import tqdm

    from streamvis.data.ytvis import read_json

    results = read_json(args.results)
    if not isinstance(results, list) or not results:
        raise DataFormatError("expected a non-empty json list of results entries", path=args.results)
    source = Path(args.source)
    if not source.exists():
        raise StreamvisError(f"{source}: no such dataset json, video or frame folder")
    progress = partial(tqdm, desc="render", unit="frame", disable=args.no_progress)
    out = Path(args.out)
    if source.is_file() and source.suffix.lower() == ".json":
        count = _render_dataset(args, results, out, progress)
    else:
        count = _render_single(args, results, out, progress)
    print(f"rendered {count} video(s) -> {out}")
    return 0
