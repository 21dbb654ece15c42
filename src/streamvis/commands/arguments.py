"""Command-line arguments that several commands share, defined once (not a command itself).

Each helper adds one argument with the same name, meaning and help everywhere.
"""

from __future__ import annotations

import argparse

from streamvis.viz import DEFAULT_FPS


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
