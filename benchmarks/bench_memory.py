"""Peak memory of streaming prediction over one long video: is it flat from frame 100 to frame 3000?

Feeds `streamvis.engine.predict.VideoPredictor` one long stream of generated frames (default 3000,
192x320, or the model's training size) and records the process's peak resident set size (VmHWM in
/proc/self/status; ``ru_maxrss`` elsewhere) and current RSS after given frames. The stream is made
on the fly, never stored: synthetic videos (`streamvis.data.synthetic`, valid split, seeded) played
one after the other, so objects keep entering, leaving and being replaced, and the tracker keeps
creating tracks for the whole run. The acceptance figure is peak RSS at the last checkpoint over
peak RSS at frame 100: flat within 5% means a ratio <= 1.05.

    python benchmarks/bench_memory.py [--weights W.pth | --tiny] [--frames 3000] [--checkpoints 100,3000]

``--tiny`` uses a random-init small model (no bundled model needed; for a quick check only).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from streamvis.data.synthetic import synthetic_stream

FLAT_TOLERANCE = 1.05  # the issue: peak RSS flat within 5% from frame 100 to frame 3000


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


def run_stream(model, frames: Iterator[np.ndarray], checkpoints: list[int], *, tracker: str = "default"
               ) -> list[dict]:
    """Predict the stream; returns one row per checkpoint: frame, rss_mb, peak_mb, tracks, seconds."""
    from streamvis.engine.predict import VideoPredictor

    predictor = VideoPredictor(model, tracker)
    wanted, rows, start = set(checkpoints), [], time.perf_counter()
    for frame in frames:
        predictor.update(frame)
        if predictor.num_frames in wanted:
            rss, peak = memory_mb()
            tracks = len(predictor.tracker.finalize())  # finalize only lists tracks; tracking goes on
            rows.append({"frame": predictor.num_frames, "rss_mb": rss, "peak_mb": peak, "tracks": tracks,
                         "seconds": time.perf_counter() - start})
    return rows


def _model(args):
    from streamvis.assets import default_weights_path
    from streamvis.demo import split_settings
    from streamvis.models.weights import load_model

    if args.tiny:
        return "tiny random-init crossvis_r18_small", tiny_model(), ((192, 320), 8)
    weights = Path(args.weights) if args.weights else default_weights_path()
    model = load_model(weights)
    return str(weights), model, split_settings(weights, model.config)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", help="streamvis weights file (default: the bundled model)")
    parser.add_argument("--tiny", action="store_true", help="a random-init small model instead")
    parser.add_argument("--frames", type=int, default=3000, help="length of the stream (default 3000)")
    parser.add_argument("--checkpoints", default="100,3000", help="frames to record memory after")
    parser.add_argument("--tracker", default="default", choices=("default", "crossvis"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated stream")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    name, model, (size, num_classes) = _model(args)
    checkpoints = sorted({min(int(c), args.frames) for c in args.checkpoints.split(",")})
    frames = synthetic_stream(args.frames, size=size, num_classes=num_classes, seed=args.seed)
    rows = run_stream(model, frames, checkpoints, tracker=args.tracker)
    print(f"model {name}; {args.frames} frames {size[0]}x{size[1]}, tracker {args.tracker}, "
          f"{args.threads} threads")
    print(f"{'frame':>6} {'RSS MiB':>9} {'peak MiB':>9} {'tracks':>7} {'seconds':>8}")
    for r in rows:
        print(f"{r['frame']:>6} {r['rss_mb']:>9.1f} {r['peak_mb']:>9.1f} {r['tracks']:>7} "
              f"{r['seconds']:>8.1f}")
    ratio = rows[-1]["peak_mb"] / rows[0]["peak_mb"]
    print(f"peak RSS frame {rows[-1]['frame']} / frame {rows[0]['frame']}: {ratio:.3f} "
          f"({'flat' if ratio <= FLAT_TOLERANCE else 'NOT flat'} within {FLAT_TOLERANCE - 1:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
