"""Sharded dataset prediction: videos split over torchrun ranks, one results file per video, one merge.

    torchrun --nproc_per_node=N -m streamvis predict --weights W.pth --input valid.json --images DIR --out OUT
    torchrun --nnodes=M --nproc_per_node=N --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT \\
        -m streamvis predict ...            # several nodes: OUT must be on a file system they share

Each rank predicts its share of the videos (`balanced_shards`: by frame count, deterministic) and
writes each video's results entries, as soon as the video is done, to ``OUT/parts/<video id>.json``
in one atomic rename (`streamvis.utils.io`). When every rank has finished, rank 0 concatenates
the parts in the dataset's video order and writes ``OUT/results.json``: the same bytes that one
process writes, because a video's results depend only on the model, the tracker and that video's
frames (a fresh tracker per video, `engine.predict.predict_dataset_video`). One process (no
torchrun) takes the same path with a single shard, so ``--resume`` works there too.

Interruption (issue 14, part 4): OUT/parts only ever holds complete per-video files (a SIGKILL
can leave a hidden ``.<id>.json.*.tmp``, which the next run deletes), and results.json is written
only after every video is done (a stale one is removed at the start). ``--resume`` keeps each part
written with the same settings (`run_fingerprint`: model config, weights digest, backend,
tracker and its options, the video's entry) and predicts the other videos.

Failures: ranks exchange a status in one all-gather after their share. A rank that failed with an
error sends it, and every rank stops with it; a rank that died (killed, out of memory) closes its
gloo connection, and the survivors stop with `RankFailedError` when they reach the all-gather;
torchrun's SIGTERM to the survivors (its default when a worker fails) stops them the same way.
All keep the complete parts, so rerunning with ``--resume`` predicts only what is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from streamvis.engine import distributed
from streamvis.errors import StreamvisError

PART_FORMAT = "streamvis-results-part"
PART_FORMAT_VERSION = 1
PARTS_DIR = "parts"
RESULTS_NAME = "results.json"
RESUME_HINT = "rerun the same command with --resume to predict only the videos without a part"


class RankFailedError(StreamvisError):
    """Another prediction process failed or died; the complete per-video parts are kept."""


class PredictionStopped(StreamvisError):
    """This process was asked to stop (SIGTERM, e.g. by torchrun after another worker failed)."""


@dataclass(frozen=True)
class ShardSummary:
    """What one rank did (`predict_dataset_sharded`).

    Attributes:
        rank, world_size: this process and the number of processes.
        videos: videos in the dataset; shard_videos: videos of this rank's shard.
        predicted: videos this rank predicted; resumed: complete parts it kept (``--resume``).
        num_tracks: results entries in results.json (rank 0), else None.
        results_path: OUT/results.json on rank 0, else None.
        seconds: this rank's wall time predicting its shard.
    """

    rank: int
    world_size: int
    videos: int
    shard_videos: int
    predicted: int
    resumed: int
    num_tracks: int | None
    results_path: Path | None
    seconds: float


def balanced_shards(frame_counts: Sequence[int], world_size: int) -> list[list[int]]:
    """Split videos over `world_size` ranks so that each rank gets about the same number of frames.

    Longest-processing-time-first (Graham, 1969): videos by decreasing frame count (ties: dataset
    order) each go to the rank with the fewest frames so far (ties: the lowest rank); the largest
    load is at most 4/3 of the best possible. Deterministic: every rank computes the same split.

    Args:
        frame_counts: frames of each video, in dataset order.
        world_size: number of ranks (>= 1).

    Returns:
        Per rank, the indices of its videos in increasing (dataset) order; some may be empty.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    loads = [0] * world_size
    shards: list[list[int]] = [[] for _ in range(world_size)]
    for index in sorted(range(len(frame_counts)), key=lambda i: (-int(frame_counts[i]), i)):
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        shards[rank].append(index)
        loads[rank] += int(frame_counts[index])
    return [sorted(shard) for shard in shards]


def file_digest(path) -> str:
    """sha256 of a file's bytes (hex), e.g. of the weights file, for `run_fingerprint`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _digest(obj) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_fingerprint(model_config, tracker: str, tracker_options=None, run_info: Mapping | None = None) -> str:
    """A digest of everything besides the video that decides its results (the part's ``run``).

    Args:
        model_config: the model's method config (`streamvis.config.to_dict` of it is hashed).
        tracker: tracker name; tracker_options: its options dataclass or mapping (None: defaults).
        run_info: what else the caller knows, e.g. ``{"weights": file_digest(W), "backend": ...}``.
    """
    from streamvis.config import to_dict

    return _digest({"model": to_dict(model_config), "tracker": tracker,
                    "tracker_options": to_dict(tracker_options), "run": dict(run_info or {})})


def part_path(out_dir, video_id) -> Path:
    """``OUT/parts/<video id>.json``."""
    return Path(out_dir) / PARTS_DIR / f"{video_id}.json"


def write_part(path, video: dict, entries: list[dict], fingerprint: str) -> None:
    """Write one video's results entries atomically, with what `read_part` checks on resume."""
    from streamvis.data.ytvis import json_default  # as `write_results` writes bytes RLE / numpy values
    from streamvis.utils.io import atomic_open

    part = {"format": PART_FORMAT, "format_version": PART_FORMAT_VERSION, "video_id": video["id"],
            "num_frames": len(video["file_names"]), "video": _digest(video), "run": fingerprint,
            "results": entries}
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(part, f, allow_nan=False, default=json_default, separators=(",", ":"))


def read_part(path, video: dict, fingerprint: str) -> tuple[list[dict] | None, str]:
    """The results entries of a complete part of `video` written with `fingerprint`.

    Returns:
        (entries, "") for a usable part, else (None, why): no file, unreadable, another format,
        another video entry, or written with other settings.
    """
    path = Path(path)
    if not path.is_file():
        return None, "no part"
    try:
        part = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        return None, f"unreadable ({err})"
    if not isinstance(part, dict) or part.get("format") != PART_FORMAT:
        return None, "not a streamvis results part"
    if part.get("format_version") != PART_FORMAT_VERSION:
        return None, f"part format version {part.get('format_version')!r}"
    if (part.get("video_id"), part.get("num_frames"), part.get("video")) != (
            video["id"], len(video["file_names"]), _digest(video)):
        return None, "written for another version of this video's entry"
    if part.get("run") != fingerprint:
        return None, "written with another model, backend or tracker"
    if not isinstance(part.get("results"), list):
        return None, "no results list"
    return part["results"], ""


def _remove_temporaries(out_dir, video_id) -> None:
    """Delete what a killed writer of this video's part left (``.<id>.json.*.tmp``)."""
    parts = Path(out_dir) / PARTS_DIR
    for leftover in parts.glob(f".{video_id}.json.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


@contextlib.contextmanager
def _sigterm_raises():
    """Turn SIGTERM into `PredictionStopped` (main thread only), so that torchrun's stop of the
    surviving workers ends with a clear message and the temporary part file is removed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise PredictionStopped(f"stopped by SIGTERM (torchrun stops every worker when one fails); the "
                                f"complete per-video parts are kept: {RESUME_HINT}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def require_single_process(what: str) -> None:
    """Raise `StreamvisError` when started by torchrun with several processes (only datasets shard)."""
    info = distributed.env_dist_info()
    if info.distributed:
        raise StreamvisError(f"{info.world_size} processes (torchrun) split the videos of a dataset json; "
                             f"{what} runs in one process: start it without torchrun")


def rank_device(device: torch.device) -> torch.device:
    """``cuda`` without an index -> this rank's GPU (``cuda:LOCAL_RANK``) under torchrun."""
    info = distributed.env_dist_info()
    if device.type == "cuda" and device.index is None and info.distributed:
        return torch.device("cuda", info.local_rank)
    return device


def predict_dataset_sharded(
    model,
    gt_json_or_dict,
    image_root,
    out_dir,
    *,
    tracker: str | None = None,
    tracker_options=None,
    resume: bool = False,
    run_info: Mapping | None = None,
    progress: bool = True,
    on_frame=None,
    prefetch: int = 0,
) -> ShardSummary:
    """Predict a dataset over the torchrun ranks into ``OUT/parts/*.json`` and (rank 0) ``OUT/results.json``.

    Every rank calls it with the same arguments (one process without torchrun). The process group
    (gloo: only small status objects travel) is set up here from torchrun's environment when
    needed and taken down at the end if it was set up here.

    Args:
        model: as for `engine.predict.VideoPredictor` (already on this rank's device).
        gt_json_or_dict: the dataset json (path, validated) or its loaded dict.
        image_root: folder of its ``file_names``.
        out_dir: OUT; parts go to OUT/parts, the merged results to OUT/results.json.
        tracker: tracker name (None: the method's default); tracker_options: its options.
        resume: keep complete parts written with the same settings instead of predicting again.
        run_info: extra settings that change results (weights digest, backend, precision), hashed
            into each part so that ``--resume`` never mixes runs.
        progress: show rank 0's progress bar; on_frame: per-frame callback (`predict_video`).
        prefetch: frames read ahead in a background thread (`predict_video`; 0: none).

    Returns:
        This rank's `ShardSummary`.

    Raises:
        RankFailedError: another rank failed or died (this rank's finished parts are kept).
        PredictionStopped: SIGTERM. StreamvisError: bad input met by this rank.
    """
    from streamvis.engine.predict import _load_dataset, default_tracker_name

    data, path = _load_dataset(gt_json_or_dict)
    tracker = tracker or default_tracker_name(model)
    fingerprint = run_fingerprint(model.config, tracker, tracker_options, run_info)
    info = distributed.env_dist_info()
    owns_group = info.distributed and not distributed.is_dist()
    if owns_group:
        distributed.init_distributed(info, torch.device("cpu"))  # gloo, whatever the model's device
    try:
        with _sigterm_raises():
            return _run_rank(model, data, path, image_root, Path(out_dir), info, fingerprint,
                             tracker=tracker, tracker_options=tracker_options, resume=resume,
                             progress=progress, on_frame=on_frame, prefetch=prefetch)
    finally:
        if owns_group:
            distributed.destroy_distributed()


def _run_rank(model, data, path, image_root, out_dir: Path, info, fingerprint, *, resume, **options
              ) -> ShardSummary:
    """One rank's work: its share, the status exchange, and rank 0's merge."""
    videos = data["videos"]
    shard = balanced_shards([len(v["file_names"]) for v in videos], info.world_size)[info.rank]
    (out_dir / PARTS_DIR).mkdir(parents=True, exist_ok=True)
    if info.is_main:
        with contextlib.suppress(FileNotFoundError):
            (out_dir / RESULTS_NAME).unlink()  # results.json exists only for a finished run
    start = time.perf_counter()
    error, counts = None, (0, 0)
    try:
        counts = _predict_shard(model, data, path, image_root, out_dir, [videos[i] for i in shard],
                                fingerprint, resume=resume, show_progress=info.is_main, **options)
    except Exception as err:  # noqa: BLE001 (sent to the other ranks, then raised here below)
        error = err
    seconds = time.perf_counter() - start
    _exchange_status(info, error, out_dir)
    if error is not None:
        raise error
    num_tracks = _merge(data, path, out_dir, fingerprint, info)
    return ShardSummary(info.rank, info.world_size, len(videos), len(shard), counts[0], counts[1],
                        num_tracks, out_dir / RESULTS_NAME if info.is_main else None, seconds)


def _predict_shard(model, data, path, image_root, out_dir: Path, shard_videos: list[dict], fingerprint,
                   *, resume, show_progress, tracker, tracker_options, progress, on_frame, prefetch
                   ) -> tuple[int, int]:
    """Predict this rank's videos into their parts; returns (predicted, resumed) video counts."""
    from tqdm import tqdm

    from streamvis.engine.predict import category_ids_for, predict_dataset_video

    category_ids = category_ids_for(model.config, data.get("categories"))
    todo, resumed = [], 0
    for video in shard_videos:
        _remove_temporaries(out_dir, video["id"])
        if resume and read_part(part_path(out_dir, video["id"]), video, fingerprint)[0] is not None:
            resumed += 1
        else:
            todo.append(video)
    total = sum(len(v["file_names"]) for v in todo)
    with tqdm(total=total, desc="predict", unit="frame", disable=not (progress and show_progress)) as bar:
        for video in todo:
            entries = predict_dataset_video(model, video, image_root, tracker=tracker,
                                            tracker_options=tracker_options, category_ids=category_ids,
                                            dataset_path=path, progress_bar=bar, on_frame=on_frame,
                                            prefetch=prefetch)
            write_part(part_path(out_dir, video["id"]), video, entries, fingerprint)
    return len(todo), resumed


def _exchange_status(info, error: BaseException | None, out_dir: Path) -> None:
    """All-gather each rank's outcome; raise `RankFailedError` on the ranks that did not fail
    when another failed or died."""
    if not info.distributed:
        return
    mine = None if error is None else f"{type(error).__name__}: {error}"
    try:
        statuses = distributed.all_gather_object(mine)
    except RuntimeError as err:  # gloo: "Connection closed by peer" when a rank died
        raise RankFailedError(
            f"rank {info.rank} of {info.world_size}: another prediction process stopped before finishing "
            f"its videos (killed, crashed or out of memory; see its log) [{err}]. The per-video results "
            f"finished so far are complete in {out_dir / PARTS_DIR} and no results.json was written; "
            f"{RESUME_HINT}.") from None
    failed = [(rank, status) for rank, status in enumerate(statuses) if status is not None]
    if failed and error is None:
        rank, status = failed[0]
        raise RankFailedError(
            f"rank {rank} of {info.world_size} failed ({status}), so no results.json was written; the "
            f"complete per-video results are kept in {out_dir / PARTS_DIR}: fix the problem, then "
            f"{RESUME_HINT}.")


def _merge(data, path, out_dir: Path, fingerprint, info) -> int | None:
    """Rank 0: concatenate the parts in dataset order into results.json; all ranks learn the outcome."""
    error, num_tracks = None, None
    if info.is_main:
        try:
            num_tracks = _write_merged(data, out_dir, fingerprint)
        except Exception as err:  # noqa: BLE001 (told to the other ranks, then raised here below)
            error = err
    if info.distributed:
        mine = None if error is None else f"{type(error).__name__}: {error}"
        try:
            message = distributed.broadcast_object(mine)
        except RuntimeError as err:  # rank 0 died while merging
            raise RankFailedError(f"rank 0 stopped while merging the parts into results.json [{err}]; "
                                  f"{RESUME_HINT}.") from None
        if message is not None and error is None:
            raise RankFailedError(f"rank 0 could not merge the parts into results.json ({message})")
    if error is not None:
        raise error
    return num_tracks


def _write_merged(data, out_dir: Path, fingerprint) -> int:
    """Write OUT/results.json from the parts of every video (in dataset order); returns its entry count."""
    from streamvis.data.ytvis import write_results

    merged = []
    for video in data["videos"]:
        entries, why = read_part(part_path(out_dir, video["id"]), video, fingerprint)
        if entries is None:
            raise StreamvisError(f"{part_path(out_dir, video['id'])}: {why}; it was removed or changed "
                                 f"while predicting: {RESUME_HINT}")
        merged.extend(entries)
    write_results(out_dir / RESULTS_NAME, merged, data)
    return len(merged)


def format_summary(summary: ShardSummary) -> str:
    """The line ``streamvis predict`` prints for a dataset (rank 0: the merged file; others: their share)."""
    share = (f"{summary.predicted} videos predicted, {summary.resumed} kept from OUT/{PARTS_DIR} (--resume)"
             if summary.resumed else f"{summary.predicted} videos predicted")
    if summary.world_size > 1:
        share += f" by rank {summary.rank} of {summary.world_size} in {summary.seconds:.1f} s"
    if summary.results_path is None:
        return share
    line = f"{summary.num_tracks} tracks in {summary.videos} videos -> {summary.results_path}"
    return line if summary.world_size == 1 and not summary.resumed else f"{line} ({share})"
