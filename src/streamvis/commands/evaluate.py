"""`streamvis evaluate`: temporal mask AP/AR identical to the official toolkit, and tracking metrics.

``--metrics`` adds TrackEval 1.3.0's HOTA, CLEAR (MOTS: MOTSA/MOTSP/sMOTSA) and Identity
(`streamvis.evaluation.tracking`, one pass sharing the per-frame mask IoUs); ``--format`` reads
KITTI-MOTS / MOTSChallenge txt folders (`streamvis.data.formats`). Never imports torch or
matplotlib; scipy only when tracking metrics are asked for, so plain AP starts fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

METRICS = ("ap", "hota", "clear", "identity")
FORMATS = ("ytvis", "kitti-mots", "mots-challenge")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to `parser`."""
    parser.add_argument(
        "--gt",
        required=True,
        metavar="GT",
        help="YouTube-VIS / OVIS ground-truth json (MOTS formats: the GT folder)",
    )
    parser.add_argument(
        "--results",
        required=True,
        metavar="RESULTS",
        help="results json (the official submission format; MOTS formats: the folder of <seq>.txt files)",
    )
    parser.add_argument(
        "--metrics",
        default=None,
        metavar="LIST",
        help=f"comma-separated, from {','.join(METRICS)}, or 'all' (default: ap; MOTS formats: "
        "hota,clear,identity)",
    )
    parser.add_argument(
        "--format",
        default="ytvis",
        choices=FORMATS,
        help="input format: YouTube-VIS json, or KITTI-MOTS / MOTSChallenge txt folders "
        "(layouts in streamvis.data.formats.kitti_mots / mots_challenge)",
    )
    parser.add_argument(
        "--seqmap",
        metavar="FILE",
        help="MOTS formats: the seqmap listing the sequences (default: the GT folder's "
        "evaluate_mots.seqmap.val / seqmaps/MOTS-train.txt)",
    )
    parser.add_argument(
        "--out",
        metavar="METRICS.json",
        help='also write the metrics as json (atomically); tracking metrics under "tracking"',
    )
    parser.add_argument(
        "--per-class", action="store_true", help="also print AP/AR (and tracking metrics) of every category"
    )
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


def parse_metrics(text: str | None, data_format: str = "ytvis") -> tuple[str, ...]:
    """The metric families of ``--metrics`` in `METRICS` order (``all`` = every one).

    Raises:
        StreamvisError: an unknown name, or AP asked of MOTS txt (its results carry no scores).
    """
    from streamvis.errors import StreamvisError

    if text is None:
        return ("ap",) if data_format == "ytvis" else ("hota", "clear", "identity")
    names = {n.strip().lower() for n in text.split(",") if n.strip()}
    if "all" in names:
        names = set(METRICS) - ({"ap"} if data_format != "ytvis" else set()) | (names - {"all"})
    unknown = sorted(names - set(METRICS))
    if unknown or not names:
        raise StreamvisError(
            f"--metrics: unknown metric(s) {unknown or [text]}; choose from {', '.join(METRICS)} or all"
        )
    if "ap" in names and data_format != "ytvis":
        raise StreamvisError(
            f"--metrics ap: AP needs scored results, and {data_format} txt carries no "
            "scores; use hota,clear,identity"
        )
    return tuple(m for m in METRICS if m in names)


def _read_mots(args: argparse.Namespace) -> tuple[dict, list, tuple[int, ...]]:
    from streamvis.data.formats import kitti_mots, mots_challenge

    module = kitti_mots if args.format == "kitti-mots" else mots_challenge
    gt, results = module.read_evaluation_inputs(args.gt, args.results, seqmap=args.seqmap)
    return gt, results, module.EVAL_CLASSES


SPLIT_HINT = ("the results may belong to another split or another version of the dataset json "
              "(e.g. valid vs. train); check --gt")


def _load_results_with_hints(results, gt: dict, path):
    """`load_results`, whose length and video-id errors name the video and suggest another split."""
    import re

    from streamvis.data.ytvis import load_results
    from streamvis.errors import DataFormatError

    try:
        return load_results(results, gt, path=path)
    except DataFormatError as err:
        index = re.fullmatch(r"results\[(\d+)\].*", err.where or "")
        length_error = err.field == "segmentations" and "video's length" in err.reason
        if not (length_error or err.field == "video_id") or index is None:
            raise
        entry = results[int(index.group(1))]
        where = f"{err.where}, video id {entry.get('video_id')!r}"
        raise DataFormatError(f"{err.reason}: {SPLIT_HINT}", path=path, where=where,
                              field=err.field) from None


def _warn_missing_videos(gt: dict, results: list[dict]) -> None:
    """Results covering only some videos are scored (the others count as misses), with a warning."""
    import sys

    covered = {entry["video_id"] for entry in results}
    missing = [v["id"] for v in gt["videos"] if v["id"] not in covered]
    if results and missing:
        shown = ", ".join(str(i) for i in missing[:10]) + (" ..." if len(missing) > 10 else "")
        print(f"streamvis evaluate: warning: the results cover {len(gt['videos']) - len(missing)} of "
              f"{len(gt['videos'])} videos; {len(missing)} videos have no results (ids {shown}) and their "
              "objects count as missed", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    metrics_asked = parse_metrics(args.metrics, args.format)
    if args.format != "ytvis":
        return _run_tracking_only(args, metrics_asked)
    from streamvis.data import rle_fast
    from streamvis.evaluation.video_iou import remember_ious

    # the RLE check's mask areas serve the evaluation, the tracking metrics' mask IoUs serve AP
    with rle_fast.remember_areas(), remember_ious():
        return _run_ytvis(args, metrics_asked)


def _run_ytvis(args: argparse.Namespace, metrics_asked: tuple[str, ...]) -> int:
    import sys
    import warnings

    from streamvis.data.ytvis import load_ytvis, read_json
    from streamvis.evaluation import evaluate, format_table
    from streamvis.utils.io import atomic_write_json

    if not Path(args.gt).is_file():
        load_ytvis(args.gt)  # raises the usual "file not found" / "not a file" error
    # the (large) results file is parsed first, so that its parse-time memory peak and the ground
    # truth's objects are not held at once
    results = read_json(args.results)
    gt = load_ytvis(args.gt)
    results = _load_results_with_hints(results, gt, args.results)
    _warn_missing_videos(gt, results)
    tracking = _tracking_metrics(gt, results, metrics_asked, mots=False)  # first: its IoUs serve AP
    result = None
    if "ap" in metrics_asked:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = evaluate(gt, results, validate=False)  # validated by the loaders above
        for warning in caught:
            print(f"streamvis evaluate: warning: {warning.message}", file=sys.stderr)
        print(format_table(result, gt["categories"], per_class=args.per_class))
    _print_tracking(tracking, result, args, mots=False)
    switches = None
    if args.id_switches:
        from streamvis.evaluation.identity import id_switches

        switches = id_switches(gt, results)
        print(
            f"ID switches: {switches.switches} ({switches.matched_frames} of {switches.gt_frames} visible "
            "ground-truth frames matched at mask IoU >= 0.5)"
        )
    if args.out:
        metrics = result.to_json() if result is not None else {}
        if tracking is not None:
            metrics["tracking"] = tracking.to_json()
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


def _tracking_metrics(gt: dict, results: list, metrics_asked: tuple[str, ...], *, mots: bool, class_ids=None):
    """Compute the tracking families asked for (None when only AP was)."""
    from streamvis.evaluation.tracking import evaluate_tracking

    families = tuple(m for m in metrics_asked if m != "ap")
    if not families:
        return None
    return evaluate_tracking(gt, results, families=families, mots=mots, class_ids=class_ids)


def _print_tracking(tracking, ap_result, args, *, mots: bool) -> None:
    """Print the tracking table (AP beside it when computed); nothing when tracking was not asked."""
    from streamvis.evaluation.tracking import format_tracking_table

    if tracking is None:
        return
    ap = None
    if ap_result is not None:  # AP beside the tracking numbers, after a blank line below the AP table
        ap = {"all": float(ap_result.stats_named["AP"]), **ap_result.per_category_AP}
        print()
    print(format_tracking_table(tracking, ap=ap, per_class=args.per_class, mots=mots))


def _run_tracking_only(args: argparse.Namespace, metrics_asked: tuple[str, ...]) -> int:
    """MOTS txt folders: tracking metrics only, TrackEval's MOTS reading (ignore regions)."""
    from streamvis.errors import StreamvisError
    from streamvis.utils.io import atomic_write_json

    if args.id_switches:
        raise StreamvisError(
            "--id-switches works on YouTube-VIS json; MOTS data gets IDSW from --metrics clear"
        )
    gt, results, class_ids = _read_mots(args)
    tracking = _tracking_metrics(gt, results, metrics_asked, mots=True, class_ids=list(class_ids))
    _print_tracking(tracking, None, args, mots=True)
    if args.out:
        dataset_class = "KittiMOTS" if args.format == "kitti-mots" else "MOTSChallenge"
        metrics = {
            "tracking": tracking.to_json(
                key_by_name=True, all_video_rows=True, video_per_alpha=True, dataset_class=dataset_class
            )
        }
        metrics.update(gt=str(args.gt), results=str(args.results), format=args.format)
        atomic_write_json(args.out, metrics, indent=1)
        print(f"metrics written to {args.out}")
    return 0
