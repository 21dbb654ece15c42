"""`streamvis convert-data --from FMT --input PATH --to FMT --out DIR`: convert annotations or results.

Ground truth by default; ``--results --gt GT.json`` converts a results file (e.g. the
``results.json`` of `streamvis predict`) instead, e.g. to MOTS txt (``--to kitti-mots``) or to
per-frame instance PNGs (``--to davis``). The output folder appears only when everything
succeeded; a summary (videos, frames, tracks, masks, classes) is printed.
"""

from __future__ import annotations

import argparse

from streamvis.data.formats import FORMATS, get_format
from streamvis.data.formats.convert import convert, format_summary, parse_category_map, parse_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = ", ".join(FORMATS)
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        choices=list(FORMATS),
        metavar="FMT",
        help=f"input format: {names}",
    )
    parser.add_argument("--input", required=True, help="the input file or folder")
    parser.add_argument(
        "--to",
        dest="target",
        default="ytvis",
        choices=list(FORMATS),
        metavar="FMT",
        help="output format (default ytvis)",
    )
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--results", action="store_true", help="convert results (needs --gt)")
    parser.add_argument("--gt", help="ground truth the results refer to (YouTube-VIS json unless --gt-from)")
    parser.add_argument(
        "--gt-from",
        default="ytvis",
        choices=list(FORMATS),
        metavar="FMT",
        help="format of --gt (default ytvis)",
    )
    parser.add_argument(
        "--category-map",
        metavar="MAP",
        help="rename/merge/drop classes by name, ids kept: 'src=dst,x=' (x dropped; '*=' drops the "
        'rest) or a json file {"src": "dst" | null}',
    )
    parser.add_argument(
        "--read-option",
        action="append",
        metavar="KEY=VALUE",
        help="keyword option of the reader (repeatable; VALUE may be json)",
    )
    parser.add_argument(
        "--write-option",
        action="append",
        metavar="KEY=VALUE",
        help="keyword option of the writer (repeatable; VALUE may be json)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")


def run(args) -> int:
    gt = get_format(args.gt_from).read_gt(args.gt) if args.gt else None
    summary = convert(
        args.source,
        args.input,
        args.target,
        args.out,
        results=args.results,
        gt=gt,
        category_map=parse_category_map(args.category_map),
        read_options=parse_options(args.read_option),
        write_options=parse_options(args.write_option),
        overwrite=args.overwrite,
    )
    print(format_summary(summary))
    return 0
