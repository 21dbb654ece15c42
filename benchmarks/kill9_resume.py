"""Kill `streamvis train` with SIGKILL at N random moments, resume each time, compare bitwise.

    PYTHONPATH=src python benchmarks/kill9_resume.py [--kills 5] [--seed 0] [--workdir DIR]

The experiment is ``tests/reliability/kill9.py``'s (tiny CrossVIS, tiny synthetic set, a
checkpoint every iteration, CPU): one uninterrupted reference run, then one run killed at each
moment ("iteration k logged, plus d seconds") and resumed with ``--resume``. Prints the moments,
the iteration reached before each kill, and whether the final weights and every iteration's
losses are bitwise equal to the reference; exits 1 when they are not.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.reliability.kill9


def main(argv=None) -> int:
    from tests.reliability import kill9

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5, help="random kill moments (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--workdir", default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="streamvis_kill9_") as tmp:
        report = kill9.run(Path(args.workdir or tmp), kills=args.kills, seed=args.seed)
    elapsed = time.perf_counter() - started
    print(f"{args.kills} kills (seed {args.seed}), {kill9.MAX_ITER} iterations, {elapsed:.0f} s")
    for (after, delay), reached in zip(report.moments, report.killed_at):
        print(
            f"  SIGKILL {delay:.3f} s after iteration {after} was logged (iteration {reached} logged by then)"
        )
    print(
        f"final weights bitwise equal: {report.weights_equal}; per-iteration losses bitwise equal: "
        f"{report.losses_equal}"
    )
    for difference in report.differences:
        print(f"  differs: {difference}")
    return 0 if report.weights_equal and report.losses_equal else 1


if __name__ == "__main__":
    sys.exit(main())
