"""CrossVIS inference speed (ms/frame) on CPU: the faithful path and the faster options.

Weights follow reference/crossvis/weights_rule.md (the golden weights), images are the golden
360x640 frames (or random ones without ../shared). Each timed call is `model.predict([frame])`:
normalization, padding, network, post-processing, masks at 360x640. As in timing.md, every call
is preceded by a fixed probe (10 x 1024^3 float32 matmul, ~0.067 s on an idle 2-core VM); a set of
runs is accepted only when every probe stays below --probe-limit, so busy-machine runs are rejected.

    .venv/bin/python benchmarks/bench_forward.py --threads 2 --runs 10 --warmup 2
    .venv/bin/python benchmarks/bench_forward.py --variants faithful,fast,fast_unfused,fast_winograd
    .venv/bin/python benchmarks/bench_forward.py --paired --threads 1 --runs 4   # busy machine

Variants: "faithful" is `build_model` + the converted weights; the others are
`optimize_for_inference(model, ...)` copies (see VARIANTS). "same" says whether the detected
classes equal the first variant's (tests/models/crossvis/test_golden_forward.py checks boxes, scores,
masks and embeddings too).

Where the time goes (R-50, 384x640 padded): ~88% is convolution, which oneDNN already runs near
the CPU's peak, and the FCOS towers (56% of the multiply-adds) use GroupNorm, whose statistics need
each tower layer on the whole map. So the exact speed-ups available are small: BN folding, the
controller/re-ID prediction at the detections only, the re-ID tower only on levels with
detections, a channels_last stem, the cls+bbox towers as one grouped conv stack. Paired runs
(--paired) on a busy 2-core VM gave faithful/fast time ratios of ~1.08 (1 thread, 6 pairs) and
1.07-1.31 (2 threads, 4-6 pairs; fused towers 1.28-1.31, unfused 1.07-1.24): noisy, to be
re-measured on a quiet machine. Winograd F(2x2,3x3) halves the multiplies of the 3x3 convs but
its batched GEMMs (K=256) run at about half oneDNN's efficiency, so it is not faster here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

from streamvis.models.build import build_model  # noqa: E402
from streamvis.models.crossvis.convert import convert_official  # noqa: E402
from streamvis.models.crossvis.model import optimize_for_inference  # noqa: E402
from streamvis.models.crossvis.rule_weights import official_rule_state_dict, read_key_table  # noqa: E402

SHARED = REPO.parent / "shared" / "reference" / "crossvis"
OFFICIAL_SECONDS = {50: 0.58, 101: 0.76}  # timing.md, medians over the two golden images
VARIANTS = {
    "faithful": None,
    "fast": dict(fuse_towers=True, winograd=False, channels_last=False),
    "fast_unfused": dict(fuse_towers=False, winograd=False, channels_last=False),
    "fast_channels_last": dict(fuse_towers=True, winograd=False, channels_last=True),
    "fast_winograd": dict(fuse_towers=True, winograd=True, channels_last=False),
}


def probe_seconds(matrix: torch.Tensor) -> float:
    start = time.perf_counter()
    for _ in range(10):
        matrix @ matrix
    return time.perf_counter() - start


def load_models(depth: int, names: list[str]) -> dict:
    table = SHARED / ("state_dict_keys.tsv" if depth == 50 else "state_dict_keys_r101.tsv")
    state, cfg = convert_official(official_rule_state_dict(read_key_table(table)))
    faithful = build_model(cfg)
    faithful.load_state_dict(state)
    faithful.eval()
    return {n: faithful if VARIANTS[n] is None else optimize_for_inference(faithful, **VARIANTS[n])
            for n in names}


def load_frames() -> list[torch.Tensor]:
    path = SHARED / "golden_r50.npz"
    if path.exists():
        data = np.load(path)
        return [torch.from_numpy(data[f"image_{i}"]).permute(2, 0, 1).contiguous() for i in (0, 1)]
    print(f"({path} absent: timing random frames)")
    return [torch.randint(0, 256, (3, 360, 640), dtype=torch.uint8) for _ in range(2)]


def time_set(model, frame, runs: int, probe_limit: float, matrix) -> tuple[list[float], bool]:
    times, quiet = [], True
    for _ in range(runs):
        quiet &= probe_seconds(matrix) < probe_limit
        start = time.perf_counter()
        model.predict([frame])
        times.append(time.perf_counter() - start)
    return times, quiet


def bench_variant(name, model, index, frame, reference, args, matrix) -> None:
    """Warm up, time sets of runs until one is quiet (or attempts run out), print one row."""
    result = model.predict([frame])[0]
    same = result.classes.tolist() == reference.classes.tolist()  # same detections as the first variant
    for _ in range(args.warmup):
        model.predict([frame])
    for _ in range(args.attempts):
        times, quiet = time_set(model, frame, args.runs, args.probe_limit, matrix)
        if quiet:
            break
    median, low, high = (v * 1000 for v in (statistics.median(times), min(times), max(times)))
    print(f"{name:18s} {index:5d} {len(result):5d}  {str(same):5s} {median:9.0f} {low:7.0f} {high:7.0f}  "
          f"{'yes' if quiet else 'NO (busy)'}")


def paired_ratios(models: dict, frames: list[torch.Tensor], runs: int) -> None:
    """Alternate the first variant and each other one call by call; print median time ratios.

    Robust to a machine whose load drifts (both calls of a pair see about the same load).
    """
    names = list(models)
    for name in names[1:]:
        ratios = []
        for _ in range(runs):
            for frame in frames:
                times = []
                for variant in (names[0], name):
                    start = time.perf_counter()
                    models[variant].predict([frame])
                    times.append(time.perf_counter() - start)
                ratios.append(times[0] / times[1])
        print(f"{names[0]} / {name}: median time ratio {statistics.median(ratios):.2f} "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f}, {len(ratios)} pairs)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=50, choices=(50, 101))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--probe-limit", type=float, default=0.09,
                        help="seconds (timing.md: 0.09 on 2 cores)")
    parser.add_argument("--attempts", type=int, default=5, help="sets tried per variant before giving up")
    parser.add_argument("--variants", default="faithful,fast", help=f"comma-separated, of {list(VARIANTS)}")
    parser.add_argument("--paired", action="store_true",
                        help="only print paired time ratios first-variant / other (busy machines)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.variants.split(",")
    models, frames = load_models(args.depth, names), load_frames()
    matrix = torch.randn(1024, 1024)
    if args.paired:
        paired_ratios(models, frames, args.runs)
        return 0
    reference = [models[names[0]].predict([f])[0] for f in frames]
    official_ms = OFFICIAL_SECONDS[args.depth] * 1000
    print(f"R-{args.depth}, {args.threads} threads, 360x640; official: {official_ms:.0f} ms")
    print("variant            image  dets  same  median_ms  min_ms  max_ms  accepted")
    for name in names:
        for index, frame in enumerate(frames):
            bench_variant(name, models[name], index, frame, reference[index], args, matrix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
