"""Training speed and peak memory: iterations/s of the engine's `train_step` (forward, losses,
backward, SGD step) on generated batches.

Cases:
- ``synthetic_r18``: the model of configs/synthetic_r18.yaml, its batch (4 pairs) at the synthetic
  frame size 192x320.
- ``r50_360x640``: the official R-50 CrossVIS, 1 pair at 360x640 (the YTVIS training size).

Each case runs in its own process so that its peak resident memory (ru_maxrss) is its own.

    python benchmarks/bench_train.py                      # both cases, CPU, torch's default threads
    python benchmarks/bench_train.py --case synthetic_r18 --iters 5 --threads 2
    python benchmarks/bench_train.py --device cuda        # peak memory = torch.cuda.max_memory_allocated
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = {
    # name: (config file, overrides, pairs, (H, W))
    "synthetic_r18": ("configs/synthetic_r18.yaml", ["model.num_identities=1043"], 4, (192, 320)),
    "r50_360x640": ("configs/crossvis_r50_ytvis19.yaml", ["train.init_weights=null"], 1, (360, 640)),
}


def make_pair_batch(num_pairs: int, size: tuple[int, int], *, num_classes: int, seed: int):
    """A `PairBatch` of random BGR frames, each with 3 rectangles (the same identities in both frames)."""
    import torch

    from streamvis.structures import FrameBatch, Instances, PairBatch

    g = torch.Generator().manual_seed(seed)
    height, width = size
    frames = []
    for frame in range(2):
        images, instances = [], []
        for pair in range(num_pairs):
            images.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g))
            boxes, masks = [], []
            for k in range(3):
                x0, y0 = (width // 8) * (k + 1) + 4 * frame, (height // 8) * (k + 1)
                x1, y1 = x0 + width // 4, y0 + height // 3
                mask = torch.zeros(height, width, dtype=torch.bool)
                mask[y0:y1, x0:x1] = True
                boxes.append([x0, y0, x1, y1])
                masks.append(mask)
            instances.append(Instances(
                (height, width),
                gt_boxes=torch.tensor(boxes, dtype=torch.float32),  # (3, 4) xyxy
                gt_classes=torch.tensor([0, 1 % num_classes, 2 % num_classes]),
                gt_masks=torch.stack(masks),  # (3, H, W)
                gt_ids=torch.tensor([1, 2, 3]) + 3 * pair,
            ))
        frames.append(FrameBatch(images, instances))
    return PairBatch(frames[0], frames[1])


def run_case(name: str, *, iters: int, device: str, threads: int | None) -> dict:
    """Time `iters` engine steps after one warm-up step; returns the figures as a dict."""
    import torch

    from streamvis.config import load_config
    from streamvis.engine import distributed as du
    from streamvis.engine.hooks import TrainContext
    from streamvis.engine.solver import build_lr_scheduler, build_optimizer
    from streamvis.engine.train import LossForward, train_step
    from streamvis.models.build import build_model

    if threads:
        torch.set_num_threads(threads)
    config_file, overrides, pairs, size = CASES[name]
    cfg = load_config(REPO / config_file, [*overrides, f"train.device={device}"])
    torch.manual_seed(0)
    dev = torch.device(device)
    model = build_model(cfg.model).to(dev).train()
    optimizer = build_optimizer(model, cfg.solver)
    use_amp = cfg.train.amp and dev.type == "cuda"
    ctx = TrainContext(config=cfg, model=model, optimizer=optimizer,
                       scheduler=build_lr_scheduler(optimizer, cfg.solver),
                       scaler=torch.amp.GradScaler(dev.type, enabled=use_amp), device=dev,
                       dist=du.DistInfo(), output_dir=Path("."), max_iter=iters + 1)
    batches = iter([make_pair_batch(pairs, size, num_classes=cfg.model.num_classes, seed=i)
                    for i in range(iters + 1)])
    wrapped = LossForward(model)
    train_step(ctx, wrapped, batches)  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(iters):
        metrics = train_step(ctx, wrapped, batches)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / iters
    peak_mib = (torch.cuda.max_memory_allocated() if dev.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    return {"case": name, "device": device, "threads": torch.get_num_threads(), "pairs": pairs,
            "size": f"{size[0]}x{size[1]}", "amp": use_amp, "iters": iters, "s_per_iter": round(seconds, 3),
            "iters_per_s": round(1 / seconds, 3), "peak_mib": round(peak_mib, 1),
            "peak_kind": "cuda allocated" if dev.type == "cuda" else "process max RSS",
            "total_loss": round(metrics["total_loss"], 4)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", choices=sorted(CASES), action="append", help="default: all cases")
    parser.add_argument("--iters", type=int, default=3, help="timed iterations per case (after 1 warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cases = args.case or sorted(CASES)
    if args.in_process:
        print(json.dumps(run_case(cases[0], iters=args.iters, device=args.device, threads=args.threads)))
        return 0
    for name in cases:  # one process per case: ru_maxrss is per process
        cmd = [sys.executable, __file__, "--in-process", "--case", name, "--iters", str(args.iters),
               "--device", args.device] + (["--threads", str(args.threads)] if args.threads else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        print(f"{row['case']:>14}  {row['device']}  threads={row['threads']}  {row['pairs']} pair(s) "
              f"{row['size']}  {row['iters_per_s']:.3f} it/s ({row['s_per_iter']:.2f} s/it)  "
              f"peak {row['peak_mib']:.0f} MiB ({row['peak_kind']})")
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
