"""`streamvis render`: draw the tracks of a saved results json over a dataset's frames or a video.

Works for results written by any tool (the official results format has no track ids: a track's
id is its 1-based position among its video's entries in the file). Writes the same files, with the
same drawing defaults, as ``streamvis predict --viz``: ``OUT/overlay.mp4`` + ``OUT/instance_ids/``
for a video or frame folder, ``OUT/videos/<video id>/...`` for each video of a dataset (or of a
folder of videos or a glob: its N inputs, in name order, are video ids 1..N as predict numbers them).

Class names, first found: ``--class-names``, ``--categories``, the dataset json, ``--weights``,
``categories.json`` beside the results (written by `streamvis predict`); else "class N".
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamvis.commands import arguments
from streamvis.errors import DataFormatError, StreamvisError
from streamvis.viz import DEFAULT_FPS, render_results_video


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", required=True, help="results json (official format)")
    parser.add_argument(
        "--gt-or-video",
        required=True,
        dest="source",
        help="the YouTube-VIS json the results are for, a video file, a frame folder, or the folder of "
             "videos / quoted glob given to predict",
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
    arguments.add_draw_score_threshold(parser, "--score-threshold")
    arguments.add_result_filters(parser, for_predict=False)
    parser.add_argument(
        "--categories",
        help="category set naming the classes without a dataset json (ytvis2019, ytvis2021, ovis)",
    )
    parser.add_argument(
        "--class-names", metavar="NAMES",
        help="comma-separated class names for category ids 1, 2, ... (or ID=NAME items, e.g. 3=car,7=dog)")
    parser.add_argument(
        "--weights", metavar="W.pth|default",
        help="take the class names from this weights file ('default': the bundled model)")
    arguments.add_fps(parser)
    arguments.add_no_progress(parser)


def parse_class_names(text: str) -> dict[int, str]:
    """``--class-names``: ``"cat,dog"`` -> {1: cat, 2: dog}; ``"3=car,7=dog"`` -> {3: car, 7: dog}."""
    names: dict[int, str] = {}
    for position, item in enumerate((p.strip() for p in text.split(",")), start=1):
        key, sep, value = item.partition("=")
        if sep and key.strip().isdigit():
            names[int(key)] = value.strip()
        elif item:
            names[position] = item
    return names


def _category_names(args, gt) -> dict[int, str]:
    """Category id -> name, from the first source that has them (see the module docstring)."""
    from streamvis.categories import get_category_set

    if args.class_names:
        return parse_class_names(args.class_names)
    if args.categories:
        return {c["id"]: c["name"] for c in get_category_set(args.categories)}
    if gt is not None:
        return {c["id"]: str(c["name"]) for c in gt["categories"]}
    if args.weights:
        from streamvis.data.results_filter import category_names
        from streamvis.models.weights import load

        config = load(arguments.resolve_weights(args.weights)).config
        return category_names(config.class_names, config.category_ids)
    beside = Path(args.results).with_name("categories.json")
    if beside.is_file():
        from streamvis.data.ytvis import read_json

        return {int(c["id"]): str(c["name"]) for c in read_json(beside)}
    return {}


def _keep(args, names):
    from streamvis.data.results_filter import ResultsFilter, parse_classes

    return ResultsFilter(category_ids=parse_classes(args.classes, names), max_tracks=args.max_tracks)


def _render_dataset(args, results, out: Path, progress) -> int:
    from streamvis.data.sources import check_dataset_frames
    from streamvis.data.video import default_image_root, read_image
    from streamvis.data.ytvis import load_results, load_ytvis, results_by_video

    gt = load_ytvis(args.source)
    load_results(results, gt, path=args.results)
    grouped = results_by_video(results)
    wanted = set(args.video_id) if args.video_id else set(grouped)
    videos = [v for v in gt["videos"] if v["id"] in wanted and v["id"] in grouped]
    images = Path(args.images) if args.images else default_image_root(args.source, gt)
    check_dataset_frames({"videos": videos}, images, args.source, images_given=bool(args.images))
    names = _category_names(args, gt)
    grouped = results_by_video(_keep(args, names).apply(results))
    with progress(total=sum(len(v["file_names"]) for v in videos)) as bar:
        for video in videos:
            frames = (read_image(images / name) for name in video["file_names"])
            render_results_video(
                grouped.get(video["id"], []),
                frames,
                out / "videos" / str(video["id"]),
                names=names,
                score_threshold=args.draw_score_threshold,
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


def _render_sources(args, results, out: Path, progress) -> int:
    from streamvis.data.sources import resolve_sources
    from streamvis.data.ytvis import results_by_video, validate_results

    validate_results(results, None, path=args.results)
    sources = resolve_sources(args.source, live=False)
    names = _category_names(args, None)
    grouped = results_by_video(_keep(args, names).apply(results))
    if len(sources) == 1:
        jobs = [(sources[0], _pick_video(args, results_by_video(results)), out)]
    else:  # predict numbered the inputs 1..N in this same order
        wanted = set(args.video_id) if args.video_id else set(range(1, len(sources) + 1))
        jobs = [(s, i, out / "videos" / str(i)) for i, s in enumerate(sources, start=1) if i in wanted]
    for source, video_id, video_out in jobs:
        num_frames, fps = source.probe()
        with progress(total=num_frames) as bar:
            render_results_video(
                grouped.get(video_id, []),
                source.frames(),
                video_out,
                names=names,
                score_threshold=args.draw_score_threshold,
                fps=args.fps or fps or DEFAULT_FPS,
                results_path=args.results,
                bar=bar,
            )
    return len(jobs)


def run(args: argparse.Namespace) -> int:
    from functools import partial

    from tqdm import tqdm

    from streamvis.data.ytvis import read_json

    results = read_json(args.results)
    if not isinstance(results, list) or not results:
        raise DataFormatError("expected a non-empty json list of results entries", path=args.results)
    source = Path(args.source)
    progress = partial(tqdm, desc="render", unit="frame", disable=args.no_progress)
    out = Path(args.out)
    if source.is_file() and source.suffix.lower() == ".json":
        count = _render_dataset(args, results, out, progress)
    else:
        count = _render_sources(args, results, out, progress)
    print(f"rendered {count} video(s) -> {out}")
    return 0
