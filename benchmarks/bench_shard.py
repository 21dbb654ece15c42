"""Sharded dataset prediction on CPU: 1 process x 2 threads vs 2 processes x 1 thread (issue 13, part 1).

Runs `streamvis predict` over a generated synthetic validation split (the 50-video split by
default, at the model's test size) twice, as subprocesses:

* ``1x2``: one process (``python -m streamvis predict``) with 2 intra-op threads;
* ``2x1``: ``torchrun --standalone --nproc_per_node=2 -m streamvis predict`` with 1 thread each
  (engine/shard.py: the videos split by frame count, one results file per video, rank 0 merges).

frames/s = dataset frames / wall seconds of the whole command, start-up and model loading
included (what a user waits for; on the 50-video split they are a few percent). The two
results.json files are compared byte for byte (they must be identical). The machine must be
quiet: another busy process on a 2-core CPU changes the figures far more than the split does.

    python benchmarks/bench_shard.py                                   # bundled model, 50 videos
    python benchmarks/bench_shard.py --videos 2 --frames 2 --workdir /tmp/bench_shard   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = {"1x2": (1, 2), "2x1": (2, 1)}  # name -> (processes, threads per process)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", help="a streamvis weights file (default: the bundled model)")
    parser.add_argument("--videos", type=int, default=50, help="videos of the generated validation split")
    parser.add_argument("--frames", type=int, default=24, help="frames per generated video")
    parser.add_argument("--valid", help="a YouTube-VIS json to predict instead of a generated split")
    parser.add_argument("--images", help="frame folder of --valid (default: its usual layout)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated of {list(CONFIGS)}")
    parser.add_argument("--workdir", default="outputs/bench/shard", help="generated split and outputs")
    return parser.parse_args(argv)


def dataset(args, weights: Path, workdir: Path) -> tuple[Path, Path | None]:
    """The json to predict (generated at the model's test size unless --valid) and its image folder."""
    if args.valid:
        return Path(args.valid), Path(args.images) if args.images else None
    from streamvis.data.synthetic import generate_dataset
    from streamvis.models.weights import load

    config = load(weights).config
    folder = workdir / f"valid_{args.videos}v_{args.frames}f"
    json_path = folder / "instances.json"
    if not json_path.is_file():
        generate_dataset(folder, num_videos=args.videos, seed=1, split="valid",
                         size=(config.test_short_side, config.test_max_size),
                         frames=(args.frames, args.frames), num_classes=min(config.num_classes, 8), workers=1)
    return json_path, None


def run_config(name: str, weights: Path, json_path: Path, images: Path | None, out: Path) -> float:
    """Run one configuration; returns its wall seconds."""
    processes, threads = CONFIGS[name]
    launcher = [sys.executable, "-m", "streamvis"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
        "-m", "streamvis"]
    command = [*launcher, "predict", "--weights", str(weights), "--input", str(json_path), "--out", str(out),
               "--no-progress", *(["--images", str(images)] if images else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # torch's intra-op threads in each process
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    print(f"{name}: {proc.stdout.strip()}", flush=True)
    return seconds


def main(argv=None) -> int:
    """Run the configurations and print frames/s, the speed-up and whether the outputs are identical."""
    from streamvis.assets import default_weights_path

    args = parse_args(argv)
    names = args.configs.split(",")
    unknown = set(names) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"unknown configs {sorted(unknown)}; choose from {list(CONFIGS)}")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    weights = Path(args.weights) if args.weights else default_weights_path()
    json_path, images = dataset(args, weights, workdir)
    videos = json.loads(json_path.read_text())["videos"]
    frames = sum(len(v["file_names"]) for v in videos)
    seconds = {}
    for name in names:
        out = workdir / f"out_{name}"
        seconds[name] = run_config(name, weights, json_path, images, out)
    print(f"\n{len(videos)} videos, {frames} frames of {json_path}; wall time of the whole command")
    print(f"{'config':<8} {'processes':>9} {'threads':>7} {'seconds':>8} {'frames/s':>8} {'speed-up':>8}")
    base = seconds[names[0]]
    for name in names:
        processes, threads = CONFIGS[name]
        print(f"{name:<8} {processes:>9} {threads:>7} {seconds[name]:>8.1f} {frames / seconds[name]:>8.2f} "
              f"{base / seconds[name]:>8.2f}")
    outputs = {(workdir / f"out_{name}" / "results.json").read_bytes() for name in names}
    # equal thread counts give identical bytes (tests/engine/test_shard.py); 2 threads vs 1 may move
    # a float's last bit in a convolution's reduction order, so this line reports, it does not fail
    print(f"results.json identical across configs: {len(outputs) == 1}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
