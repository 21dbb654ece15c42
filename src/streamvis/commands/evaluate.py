"""`streamvis evaluate`: temporal mask AP/AR of a results json, identical to the official toolkit.

Never imports torch, scipy or matplotlib, so it starts fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to `parser`."""
    parser.add_argument("--gt", required=True, metavar="GT.json", help="YouTube-VIS / OVIS ground-truth json")
    parser.add_argument(
        "--results",
        required=True,
        metavar="RESULTS.json",
        help="results json (the official submission format)",
    )
    parser.add_argument("--out", metavar="METRICS.json", help="also write the metrics as json (atomically)")
    parser.add_argument("--per-class", action="store_true", help="also print AP and AR of every category")
    parser.add_argument(
        "--id-switches",
        action="store_true",
        help="also count ID switches (streamvis.evaluation.identity): changes of the predicted track "
        "matched to a ground-truth object between its matched frames",
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write ``--out``; bad input raises `DataFormatError` (exit code 2)."""
    import gc

    collecting = gc.isenabled()
    gc.disable()  # the parsed json is millions of acyclic objects: cycle collection is wasted time
    try:
        return _run(args)
    finally:
        if collecting:
            gc.enable()


def _run(args: argparse.Namespace) -> int:
    import sys
    import warnings

    from streamvis.data.ytvis import load_results, load_ytvis, read_json
    from streamvis.evaluation import evaluate, format_table
    from streamvis.utils.io import atomic_write_json

    if not Path(args.gt).is_file():
        load_ytvis(args.gt)  # raises the usual "file not found" / "not a file" error
    # the (large) results file is parsed first, so that its parse-time memory peak and the ground
    # truth's objects are not held at once
    results = read_json(args.results)
    gt = load_ytvis(args.gt)
    results = load_results(results, gt, path=args.results)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate(gt, results, validate=False)  # validated by the loaders above
    for warning in caught:
        print(f"streamvis evaluate: warning: {warning.message}", file=sys.stderr)
    print(format_table(result, gt["categories"], per_class=args.per_class))
    switches = None
    if args.id_switches:
        from streamvis.evaluation.identity import id_switches

        switches = id_switches(gt, results)
        print(f"ID switches: {switches.switches} ({switches.matched_frames} of {switches.gt_frames} visible "
              "ground-truth frames matched at mask IoU >= 0.5)")
    if args.out:
        metrics = result.to_json()
        if switches is not None:
            metrics["id_switches"] = {
                "switches": switches.switches,
                "matched_frames": switches.matched_frames,
                "gt_frames": switches.gt_frames,
            }
        metrics.update(gt=str(args.gt), results=str(args.results))
        atomic_write_json(args.out, metrics, indent=1)
        print(f"metrics written to {args.out}")
    return 0
