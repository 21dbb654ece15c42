"""Run the fuzz corpus at scale and print the count of cases per input kind and per outcome.

    PYTHONPATH=src python benchmarks/fuzz_corpus.py --cases 2000 [--seed 0] [--kinds mp4,config] [--predict]

Cases are those of ``tests/fuzz/corpus.py`` (the test suite runs a few dozen per kind); kinds
take turns, case seeds are ``seed, seed + 1, ...``. Good outcomes are ``ok`` and ``error`` (a
clean streamvis error); any other outcome is listed with its kind, seed, mutations and detail,
and the script exits 1. Single-threaded; about 0.1-2 s per case.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.fuzz.corpus


def main(argv=None) -> int:
    from tests.fuzz import corpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000, help="number of cases in all (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="first case seed")
    parser.add_argument("--kinds", default=",".join(corpus.KINDS), help="comma-separated input kinds")
    parser.add_argument("--show", type=int, default=20, help="failures listed in full")
    parser.add_argument("--predict", action="store_true",
                        help="also run frame folders and MP4s through `streamvis predict` (tiny model)")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(corpus.KINDS))
    if unknown:
        parser.error(f"unknown kinds {unknown}; choose from {list(corpus.KINDS)}")

    import torch

    torch.set_num_threads(1)
    corpus.PREDICT = args.predict
    counts: Counter = Counter()
    failures = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="streamvis_fuzz_") as tmp:
        seeds = corpus.Seeds(Path(tmp) / "seeds")
        for i in range(args.cases):
            kind = kinds[i % len(kinds)]
            seed = args.seed + i // len(kinds)
            outcome = corpus.run_case(kind, seed, seeds, Path(tmp) / "cases")
            counts[kind, outcome.outcome] += 1
            if not outcome.good:
                failures.append(outcome)
    elapsed = time.perf_counter() - started

    outcomes = sorted({o for _, o in counts}, key=lambda o: (o not in corpus.GOOD_OUTCOMES, o))
    width = max(len(k) for k in kinds) + 2
    print(f"{args.cases} cases, seeds from {args.seed}, {elapsed:.0f} s")
    print("kind".ljust(width) + "".join(o.rjust(15) for o in outcomes) + "total".rjust(8))
    for kind in kinds:
        row = [counts[kind, o] for o in outcomes]
        print(kind.ljust(width) + "".join(str(n).rjust(15) for n in row) + str(sum(row)).rjust(8))
    totals = [sum(counts[k, o] for k in kinds) for o in outcomes]
    print("all".ljust(width) + "".join(str(n).rjust(15) for n in totals) + str(sum(totals)).rjust(8))
    for outcome in failures[: args.show]:
        print(
            f"FAIL {outcome.kind} seed {outcome.seed}: {outcome.outcome}: {outcome.detail} "
            f"[{'; '.join(outcome.mutations)}]"
        )
    if len(failures) > args.show:
        print(f"... and {len(failures) - args.show} more failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
