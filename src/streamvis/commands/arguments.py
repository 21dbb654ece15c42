"""Command-line arguments that several commands share, defined once (not a command itself).

Each helper adds one argument with the same name, meaning and help everywhere.
"""

from __future__ import annotations

import argparse

# streamvis.viz.DEFAULT_FPS, repeated so that building a parser imports neither PIL nor numpy
# (tests/test_startup.py checks that the two agree)
DEFAULT_FPS = 10.0


def add_images(parser: argparse.ArgumentParser) -> None:
    """``--images``: the frame folder of a dataset json."""
    parser.add_argument(
        "--images", help="frame folder of a dataset json (default: the json's folder, or its JPEGImages/)"
    )


def add_out(parser: argparse.ArgumentParser, *, help: str = "output folder", default: str | None = None,
            metavar: str | None = None) -> None:
    """``--out``: where the command writes (required unless `default` is given)."""
    if default is not None:
        help = f"{help} (default {default})"
    parser.add_argument("--out", required=default is None, default=default, metavar=metavar, help=help)


def add_fps(parser: argparse.ArgumentParser) -> None:
    """``--fps``: the overlay frame rate (default: the video's, else `streamvis.viz.DEFAULT_FPS`)."""
    parser.add_argument("--fps", type=float,
                        help=f"overlay frame rate (default: the video's, else {DEFAULT_FPS:g})")


def add_tracker(parser: argparse.ArgumentParser, *, options: bool = True) -> None:
    """``--tracker`` (a `streamvis.tracking.TRACKERS` name) and, with `options`, ``--tracker-set``."""
    parser.add_argument(
        "--tracker", default=None,
        help="association rule, a name of streamvis.tracking.TRACKERS: 'default' (ours) or 'crossvis' "
             "(the official CrossVIS one); default: the method's own")
    if options:
        parser.add_argument(
            "--tracker-set", action="append", default=[], metavar="KEY=VALUE",
            help="a tracker option, e.g. --tracker-set max_age=60 (repeatable; the options of each tracker: "
                 "streamvis.tracking)")


def add_no_progress(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: hide the progress bars."""
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


# streamvis.engine.inference.PRECISION_CHOICES, repeated so that building a parser does not import torch
# (tests/engine/test_gpu_ready.py checks that the two agree)
PRECISION_CHOICES = ("float32", "fp32", "float16", "fp16", "bfloat16", "bf16", "int8")
DEFAULT_PREFETCH = 2


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    """``--precision``, ``--compile``, ``--prefetch``: how the network runs (engine/inference.py)."""
    parser.add_argument(
        "--precision", choices=PRECISION_CHOICES, default=None,
        help="--backend torch: float32 (default), fp16/float16 (CUDA autocast) or bf16/bfloat16 (autocast, "
             "CUDA or CPU); --backend onnxruntime: float32 or int8 (ONNX Runtime static quantization; "
             "default: float32 for a weights file, what an .onnx file holds)")
    parser.add_argument(
        "--compile", action="store_true",
        help="torch.compile the fixed-size network (backbone, FPN, heads; --backend torch): slower start, "
             "faster frames on a GPU")
    parser.add_argument(
        "--prefetch", type=int, default=DEFAULT_PREFETCH, metavar="N",
        help=f"decode and resize up to N frames ahead in a background thread (default {DEFAULT_PREFETCH}; "
             "0 disables; live streams are never prefetched)")


DEFAULT_WEIGHTS = "default"  # --weights value naming the bundled model (streamvis.assets)


def add_weights(parser: argparse.ArgumentParser, *, required: bool = False, help: str | None = None) -> None:
    """``--weights``: a weights file; ``default`` (the default unless `required`) is the bundled model."""
    if help is None:
        help = ("streamvis weights file (see `streamvis convert`); 'default' names the bundled model "
                "(streamvis/assets/default_model.pth)")
    if not required:
        help += " (default: default)"
    parser.add_argument("--weights", required=required, default=None if required else DEFAULT_WEIGHTS,
                        metavar="W.pth|default", help=help)


def resolve_weights(value: str):
    """The weights file a ``--weights`` value names (``default``: the bundled model)."""
    from pathlib import Path

    if value == DEFAULT_WEIGHTS:
        from streamvis.assets import default_weights_path

        return default_weights_path()
    return Path(value)


def add_result_filters(parser: argparse.ArgumentParser, *, for_predict: bool) -> None:
    """``--classes``, ``--max-tracks`` (and predict's ``--score-threshold``): which results entries to keep.

    `streamvis.data.results_filter.ResultsFilter` applies them; render's ``--score-threshold`` is its
    drawing threshold (`add_draw_score_threshold`).
    """
    from streamvis.data.results_filter import DEFAULT_MAX_TRACKS_PER_VIDEO

    if for_predict:
        parser.add_argument(
            "--score-threshold", type=float, default=None,
            help="write only tracks whose video-level score is at least this (default: keep all; for a "
                 "dataset json keep all to score AP: AP rewards low-scored tracks, they only add recall)")
    parser.add_argument(
        "--classes", metavar="NAMES|IDS",
        help="keep only these classes: comma-separated names or category ids, e.g. person,car or 1,3")
    if for_predict:
        max_help = (f"keep the N best-scored tracks of each video (default: {DEFAULT_MAX_TRACKS_PER_VIDEO} "
                    "for a "
                    "video, folder, glob or stream; off for a dataset json, where AP rewards keeping "
                    "low-scored tracks)")
    else:
        max_help = "draw only the N best-scored tracks of each video (default: all)"
    parser.add_argument("--max-tracks", type=int, metavar="N", default=None, help=max_help)


def add_draw_score_threshold(parser: argparse.ArgumentParser, flag: str) -> None:
    """The overlay drawing threshold (``predict --viz-score-threshold``, ``render --score-threshold``)."""
    from streamvis.viz import DRAW_MAX_OVERLAP, DRAW_SCORE_THRESHOLD

    parser.add_argument(
        flag, type=float, default=DRAW_SCORE_THRESHOLD, dest="draw_score_threshold", metavar="SCORE",
        help="overlays draw tracks whose video-level score is at least this "
             f"(default {DRAW_SCORE_THRESHOLD:g}; "
             f"predict --viz and render share it). Each object is drawn once: a track covering more than "
             f"{DRAW_MAX_OVERLAP:g} of a higher-scored one (a second class hypothesis) is left out of "
             "the picture")
