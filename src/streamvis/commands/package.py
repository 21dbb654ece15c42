"""`streamvis package --results R.json --gt valid.json --out submission.zip`: pre-flight checks, then
the zip the YouTube-VIS / OVIS evaluation servers take (a single ``results.json`` at its root).

Every entry is checked against the split's json (video present, one segmentation per frame, RLE
size = video size, known category, finite score); every problem is counted and shown with
examples. With any error nothing is written and the exit code is 2. Videos without results and
videos with more tracks than the evaluation keeps (``--max-tracks``, 100) are warnings.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streamvis.data.formats.submission import (
    DEFAULT_MAX_TRACKS,
    check_submission,
    format_report,
    write_submission,
)
from streamvis.data.ytvis import load_ytvis, read_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", required=True, help="the results json (e.g. from `streamvis predict`)")
    parser.add_argument("--gt", required=True, help="the split's json (e.g. valid.json)")
    parser.add_argument("--out", required=True, help="the zip to write (e.g. submission.zip)")
    parser.add_argument("--max-tracks", type=int, default=DEFAULT_MAX_TRACKS,
                        help=f"warn about videos with more tracks than this (default {DEFAULT_MAX_TRACKS})")


def run(args) -> int:
    gt = load_ytvis(args.gt)
    results = read_json(args.results)
    report = check_submission(results, gt, max_tracks=args.max_tracks)
    print(format_report(report, args.results, args.gt))
    if report.num_errors:
        return 2
    raw, zipped = write_submission(results, args.out)
    print(f"-> {Path(args.out)}: results.json ({raw / 1e6:.2f} MB, {zipped / 1e6:.2f} MB zipped), "
          f"{report.num_entries} results")
    return 0
