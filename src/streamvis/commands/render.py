"""`streamvis render`: draw the tracks of a saved results json over a dataset's frames or a video.

Works for results written by any tool (the official results format has no track ids: a track's
id is its 1-based position among its video's entries in the file). Writes the same files as
``streamvis predict --viz``: ``OUT/overlay.mp4`` + ``OUT/instance_ids/`` for a video or frame
folder, ``OUT/videos/<video id>/...`` for each video of a dataset.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamvis.errors import DataFormatError, StreamvisError

DEFAULT_FPS = 10.0
SCORE_THRESHOLD = 0.1  # tracks (video-level score) below this are not drawn


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", required=True, help="results json (official format)")
    parser.add_argument(
        "--gt-or-video",
        required=True,
        dest="source",
        help="the YouTube-VIS json the results are for, a video file, or a frame folder",
    )
    parser.add_argument(
        "--images", help="frame folder of a dataset json (default: the json's folder, or its JPEGImages/)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--video-id",
        type=int,
        action="append",
        help="render only this video id (repeatable); needed for a video when the "
        "results hold several videos",
    )
    parser.add_argument(
        "--score-threshold", type=float, default=SCORE_THRESHOLD, help="smallest track score drawn"
    )
    parser.add_argument(
        "--categories",
        help="category set naming the classes without a dataset json (ytvis2019, ytvis2021, ovis)",
    )
    parser.add_argument("--fps", type=float, help="overlay frame rate (default: the video's, else 10)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def render_video_entries(
    entries, frames, out_dir: Path, *, names, score_threshold, fps, results_path, bar, write_ids: bool = True
) -> int:
    """Draw the results entries of one video over its frames into ``out_dir/overlay.mp4``.

    Args:
        entries: the video's results entries (official format), in file order (track id = position + 1).
        frames: iterable of (H, W, 3) uint8 BGR frames.
        out_dir: folder for ``overlay.mp4`` (and ``instance_ids/`` when `write_ids`).
        names: category id -> name; score_threshold: entries below it are not drawn.
        fps: MP4 frame rate; results_path: named in errors (None for in-memory results).
        bar: a tqdm bar updated once per frame.

    Returns:
        The number of frames written.
    """
    import numpy as np

    from streamvis.data.masks import decode_rles
    from streamvis.viz import OverlayWriter

    tracks = [(i + 1, e) for i, e in enumerate(entries) if e["score"] >= score_threshold]
    count = 0
    with OverlayWriter(out_dir, fps=fps, write_ids=write_ids) as writer:
        for index, frame in enumerate(frames):
            _check_length(entries, index, results_path)
            shown = [(tid, e) for tid, e in tracks if e["segmentations"][index] is not None]
            masks = np.zeros((0, *frame.shape[:2]), dtype=bool)
            if shown:
                masks = decode_rles([e["segmentations"][index] for _, e in shown]).astype(bool)  # (N, H, W)
                _check_size(masks, frame, entries[0]["video_id"], results_path)
            labels = [names.get(e["category_id"], f"class {e['category_id']}") for _, e in shown]
            writer.write(frame, masks, [tid for tid, _ in shown], labels, [e["score"] for _, e in shown])
            count += 1
            bar.update(1)
        _check_length(entries, count - 1, results_path, exact=True)  # inside: an error discards the MP4
    return count


def _check_length(entries, index: int, path, exact: bool = False) -> None:
    for entry in entries:
        length = len(entry["segmentations"])
        if index >= length or (exact and length != index + 1):
            raise DataFormatError(
                f"the video has {'at least ' if not exact else ''}{index + 1} frames but the results have "
                f"{length} segmentations",
                path=path,
                where=f"video id {entry['video_id']}",
                field="segmentations",
            )


def _check_size(masks, frame, video_id, path) -> None:
    if masks.shape[1:] != frame.shape[:2]:
        raise DataFormatError(
            f"masks are {masks.shape[2]}x{masks.shape[1]} (width x height) but the frames are "
            f"{frame.shape[1]}x{frame.shape[0]}",
            path=path,
            where=f"video id {video_id}",
            field="segmentations[].size",
        )


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
            render_video_entries(
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
        render_video_entries(
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
