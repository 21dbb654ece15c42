"""Speed of the synthetic dataset generator: whole dataset, and where one process spends its time.

Usage::

    .venv/bin/python benchmarks/bench_synth.py                      # default training set, 400 videos
    .venv/bin/python benchmarks/bench_synth.py --videos 40 --workers 1

Prints wall time, videos/s and frames/s of `write_dataset` (frames, RLE, json), the bytes
written, and a per-stage split (render / JPEG encode / RLE encode) measured in this process on
the first few videos. The machine's other load changes the figures: quote them with it.
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from streamvis.data.masks import encode_masks
from streamvis.data.synthetic import SynthConfig, render_synthetic_video, write_dataset


def _stage_split(config: SynthConfig, count: int) -> dict[str, float]:
    """Seconds spent rendering, JPEG-encoding and RLE-encoding the first `count` videos."""
    seconds = {"render": 0.0, "jpeg": 0.0, "rle": 0.0, "frames": 0}
    for index in range(min(count, config.num_videos)):
        start = time.perf_counter()
        video = render_synthetic_video(config, index)
        seconds["render"] += time.perf_counter() - start
        start = time.perf_counter()
        for frame in video.frames:
            Image.fromarray(np.ascontiguousarray(frame[..., ::-1])).save(
                io.BytesIO(), format="JPEG", quality=config.jpeg_quality, subsampling=0
            )
        seconds["jpeg"] += time.perf_counter() - start
        start = time.perf_counter()
        for k in range(len(video.category_ids)):
            encode_masks(video.masks(k))
        seconds["rle"] += time.perf_counter() - start
        seconds["frames"] += len(video.frames)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--size", type=int, nargs=2, default=(192, 320), metavar=("H", "W"))
    parser.add_argument("--profile-videos", type=int, default=20, help="videos for the per-stage split")
    args = parser.parse_args()
    config = SynthConfig(num_videos=args.videos, seed=args.seed, size=tuple(args.size))
    out = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        start = time.perf_counter()
        json_path = write_dataset(config, out, workers=args.workers)
        seconds = time.perf_counter() - start
        frames = sum(1 for _ in (out / "JPEGImages").rglob("*.jpg"))
        megabytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
        height, width = config.size
        print(f"write_dataset: {config.num_videos} videos, {frames} frames {height}x{width}, "
              f"workers={args.workers or 'default'}: {seconds:.1f} s "
              f"({config.num_videos / seconds:.1f} videos/s, {frames / seconds:.0f} frames/s), "
              f"{megabytes:.1f} MiB, json {json_path.stat().st_size / 2**20:.1f} MiB")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    split = _stage_split(config, args.profile_videos)
    per_frame = {k: 1000 * v / max(split["frames"], 1) for k, v in split.items() if k != "frames"}
    print("one process, ms per frame: " + ", ".join(f"{k} {v:.2f}" for k, v in per_frame.items()))


if __name__ == "__main__":
    main()
