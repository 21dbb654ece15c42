"""The machine probe: how fast this machine is right now, to print beside any speed figure.

A fixed workload — 10 x (1024x1024 @ 1024x1024) float32 matmul, at the given torch threads — timed
--repeat times (median and max shown), plus the 1-minute load average and the CPU count. On this
project's idle 2-core VM the probe takes about 0.067 s at 2 threads (the machine where the official
CrossVIS timings were taken); a figure measured next to a probe two or three times slower than that
says "slow or busy machine", not "regression". `benchmarks/readme_figures.sh` runs it before and
after re-measuring every README figure.

    python benchmarks/bench_probe.py [--threads 2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

IDLE_REFERENCE_S = 0.067  # idle 2-core VM, 2 threads (benchmarks/bench_forward.py's probe)


def probe_seconds(matrix) -> float:
    """Seconds for 10 products of `matrix` with itself."""
    start = time.perf_counter()
    for _ in range(10):
        matrix @ matrix
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeat", type=int, default=5, help="probes (default 5)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    matrix = torch.randn(1024, 1024, generator=torch.Generator().manual_seed(0))
    probe_seconds(matrix)  # warm-up
    times = [probe_seconds(matrix) for _ in range(args.repeat)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    median = statistics.median(times)
    print(f"matmul probe (10 x 1024^3 float32, {args.threads} threads): median {median:.3f} s, "
          f"max {max(times):.3f} s over {args.repeat}; {median / IDLE_REFERENCE_S:.1f}x the idle reference "
          f"{IDLE_REFERENCE_S} s; load average {load:.2f}; {os.cpu_count()} CPUs; torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
