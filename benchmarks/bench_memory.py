"""Peak memory of prediction over 10,000 frames: is it flat from frame 1,000 to frame 10,000?

Records the process's peak resident set size (VmHWM in /proc/self/status; ``ru_maxrss`` elsewhere)
and current RSS after given frames, for one of two predictors:

- ``--predictor streaming``: `streamvis.engine.predict.VideoPredictor` fed one long stream of
  generated frames, never stored: synthetic videos (`streamvis.data.synthetic`, valid split,
  seeded) played one after the other as ONE video, so objects keep entering, leaving and being
  replaced, and the tracker keeps creating tracks for the whole run;
- ``--predictor dataset``: the dataset path of ``streamvis predict --input``
  (`streamvis.engine.shard.predict_dataset_sharded`, i.e. `predict_dataset_video` per video, one
  results part per video, then the merge into results.json) over a generated dataset of the same
  videos, written as JPEG files to a temporary folder by a child process (so that writing it does
  not count here) and read back frame by frame.

The acceptance figure (issue 13) is peak RSS at the last checkpoint over peak RSS at frame 1,000:
flat within 3% means a ratio <= 1.03.

    python benchmarks/bench_memory.py [--weights W.pth | --tiny] [--frames 10000]
        [--checkpoints 100,1000,10000] [--tracker default|crossvis] [--predictor streaming|dataset]

``--tiny`` uses a random-init small model (no bundled model needed; for a quick check only).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

FLAT_TOLERANCE = 1.03  # the issue: peak RSS at frame 10,000 within 3% of frame 1,000
REFERENCE_FRAME = 1000


def memory_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB (VmRSS / VmHWM; ru_maxrss if no /proc)."""
    values = {}
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024  # kB -> MiB
    if len(values) == 2:
        return values["VmRSS"], values["VmHWM"]
    unit = 1024**2 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, kB on Linux
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / unit
    return peak, peak


def tiny_model(num_classes: int = 8, size=(192, 320)):
    """A random-init crossvis_r18_small that detects (class-0 bias up, masks on), for quick runs."""
    import torch

    from streamvis.models.build import build_model, preset

    torch.manual_seed(0)
    cfg = preset("crossvis_r18_small").replace(num_classes=num_classes, num_identities=16,
                                               test_short_side=size[0], test_max_size=size[1],
                                               detections_per_frame=10)
    model = build_model(cfg)
    with torch.no_grad():
        model.head.cls_logits.bias[0] = 4.0
        model.head.controller.bias[-1] = 8.0
    return model.eval()


def live_tracks(tracker) -> int:
    """Tracks a tracker holds (active and retired), counted without `finalize` (which would load
    retired tracks back into memory and so raise the peak it measures)."""
    held = getattr(tracker, "tracks", None)
    if held is None:
        held = getattr(tracker, "active", ())
    return len(held) + len(getattr(tracker, "retired", ()))


def _row(frame: int, live: int, start: float) -> dict:
    rss, peak = memory_mb()
    return {"frame": frame, "rss_mb": rss, "peak_mb": peak, "live": live,
            "seconds": time.perf_counter() - start}


def run_stream(model, frames: Iterator[np.ndarray], checkpoints: list[int], *, tracker: str = "default",
               on_row=None) -> list[dict]:
    """Predict the stream as one video; one row per checkpoint: frame, rss_mb, peak_mb, live (tracks held),
    seconds. `on_row(row)` is called as each row is taken."""
    from streamvis.engine.predict import VideoPredictor

    predictor = VideoPredictor(model, tracker)
    wanted, rows, start = set(checkpoints), [], time.perf_counter()
    for frame in frames:
        predictor.update(frame)
        if predictor.num_frames in wanted:
            rows.append(_row(predictor.num_frames, live_tracks(predictor.tracker), start))
            if on_row is not None:
                on_row(rows[-1])
    return rows


def write_stream_dataset(out_dir: str, num_frames: int, size, num_classes: int, seed: int) -> None:
    """Write the videos of `synthetic_stream(num_frames, ...)` as a dataset: ``out_dir/JPEGImages`` and
    ``out_dir/stream.json`` (videos and categories; the last video cut so the frames add up to
    `num_frames`). Runs in a child process."""
    from dataclasses import replace

    from streamvis.data.synthetic import SynthConfig, plan_synthetic_video, write_dataset

    config = SynthConfig(num_videos=1, seed=seed, split="valid", size=tuple(size), num_classes=num_classes)
    lengths: list[int] = []
    while sum(lengths) < num_frames:
        lengths.append(len(plan_synthetic_video(config, len(lengths)).camera))
    json_path = write_dataset(replace(config, num_videos=len(lengths)), out_dir, workers=1)
    data = json.loads(Path(json_path).read_text())
    videos, total = [], 0
    for video in data["videos"]:
        keep = min(len(video["file_names"]), num_frames - total)
        videos.append({**video, "length": keep, "file_names": video["file_names"][:keep]})
        total += keep
    Path(out_dir, "stream.json").write_text(json.dumps({"videos": videos, "categories": data["categories"]}))


def run_dataset(model, dataset_dir: Path, checkpoints: list[int], *, tracker: str = "default",
                on_row=None) -> tuple[list[dict], dict]:
    """Predict the dataset of `write_stream_dataset` with ``streamvis predict``'s dataset path.

    Returns:
        One row per checkpoint (``live`` is the number of the video being predicted), and the row
        taken after the merge into results.json (frame = all frames). `on_row` as for `run_stream`.
    """
    from streamvis.engine.shard import predict_dataset_sharded

    data = json.loads((dataset_dir / "stream.json").read_text())
    wanted, rows, start = set(checkpoints), [], time.perf_counter()
    state = {"frames": 0, "videos": 0, "video_id": None}

    def on_frame(video, frame_index, frame, tracks):
        state["frames"] += 1
        if video["id"] != state["video_id"]:
            state["video_id"], state["videos"] = video["id"], state["videos"] + 1
        if state["frames"] in wanted:
            rows.append(_row(state["frames"], state["videos"], start))
            if on_row is not None:
                on_row(rows[-1])

    with tempfile.TemporaryDirectory(prefix="bench-memory-out-") as out_dir:
        predict_dataset_sharded(model, data, dataset_dir / "JPEGImages", out_dir, tracker=tracker,
                                progress=False, on_frame=on_frame)
        merged = _row(state["frames"], state["videos"], start)
    return rows, merged


def _model(args):
    from streamvis.assets import default_weights_path
    from streamvis.demo import split_settings
    from streamvis.models.weights import load_model

    if args.tiny:
        return "tiny random-init crossvis_r18_small", tiny_model(), ((192, 320), 8)
    weights = Path(args.weights) if args.weights else default_weights_path()
    model = load_model(weights)
    return str(weights), model, split_settings(weights, model.config)


def _prepare_dataset(args, size, num_classes, workdir: Path) -> Path:
    """The generated dataset's folder (`--dataset-dir` if it already holds one for these settings)."""
    dataset_dir = Path(args.dataset_dir) if args.dataset_dir else workdir / "dataset"
    stamp = dataset_dir / "bench_memory.json"
    settings = {"frames": args.frames, "size": list(size), "num_classes": num_classes, "seed": args.seed}
    if stamp.is_file() and json.loads(stamp.read_text()) == settings:
        return dataset_dir
    child = multiprocessing.get_context("spawn").Process(
        target=write_stream_dataset, args=(str(dataset_dir), args.frames, size, num_classes, args.seed))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit(f"writing the dataset into {dataset_dir} failed (exit code {child.exitcode})")
    stamp.write_text(json.dumps(settings))
    return dataset_dir


def _print_header(args, name, size) -> None:
    live = "tracks" if args.predictor == "streaming" else "video"
    print(f"model {name}; {args.frames} frames {size[0]}x{size[1]}, {args.predictor} predictor, "
          f"tracker {args.tracker}, {args.threads} threads")
    print(f"{'frame':>6} {'RSS MiB':>9} {'peak MiB':>9} {live:>7} {'seconds':>8}", flush=True)


def _print_row(r: dict) -> None:
    print(f"{r['frame']:>6} {r['rss_mb']:>9.1f} {r['peak_mb']:>9.1f} {r['live']:>7} {r['seconds']:>8.1f}",
          flush=True)


def _print_summary(rows, merged, reference_frame) -> None:
    if merged is not None:
        print(f"after the merge into results.json: RSS {merged['rss_mb']:.1f} MiB, "
              f"peak {merged['peak_mb']:.1f} MiB")
    reference = next(r for r in rows if r["frame"] == reference_frame)
    ratio = rows[-1]["peak_mb"] / reference["peak_mb"]
    print(f"peak RSS frame {rows[-1]['frame']} / frame {reference['frame']}: {ratio:.3f} "
          f"({'flat' if ratio <= FLAT_TOLERANCE else 'NOT flat'} within {FLAT_TOLERANCE - 1:.0%})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", help="streamvis weights file (default: the bundled model)")
    parser.add_argument("--tiny", action="store_true", help="a random-init small model instead")
    parser.add_argument("--frames", type=int, default=10000, help="frames in all (default 10000)")
    parser.add_argument("--checkpoints", default="100,1000,10000",
                        help="frames to record memory after (default 100,1000,10000; capped at --frames)")
    parser.add_argument("--tracker", default="default", choices=("default", "crossvis"))
    parser.add_argument("--predictor", default="streaming", choices=("streaming", "dataset"))
    parser.add_argument("--dataset-dir",
                        help="dataset predictor: folder for the generated dataset, reused when it holds one "
                             "for the same settings (default: a temporary one)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated videos")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    name, model, (size, num_classes) = _model(args)
    checkpoints = sorted({min(int(c), args.frames) for c in args.checkpoints.split(",")})
    reference_frame = min(REFERENCE_FRAME, args.frames)
    if reference_frame not in checkpoints:
        checkpoints = sorted({*checkpoints, reference_frame})
    merged = None
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as workdir:
        if args.predictor == "streaming":
            from streamvis.data.synthetic import synthetic_stream

            frames = synthetic_stream(args.frames, size=size, num_classes=num_classes, seed=args.seed)
            _print_header(args, name, size)
            rows = run_stream(model, frames, checkpoints, tracker=args.tracker, on_row=_print_row)
        else:
            dataset_dir = _prepare_dataset(args, size, num_classes, Path(workdir))
            _print_header(args, name, size)
            rows, merged = run_dataset(model, dataset_dir, checkpoints, tracker=args.tracker,
                                       on_row=_print_row)
    _print_summary(rows, merged, reference_frame)
    return 0


if __name__ == "__main__":
    sys.exit(main())
