"""The `streamvis` command: one entry point, one module per sub-command.

Each sub-command lives in `streamvis.commands.<module>` and defines
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
command runs, so `streamvis evaluate` never pays for importing torch.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
import warnings

from streamvis import __version__
from streamvis.errors import StreamvisError

# name -> (module under streamvis.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "generate a synthetic YouTube-VIS-format video dataset"),
    "check-dataset": ("check_dataset", "check a YouTube-VIS-format dataset (json + frames) for errors"),
    "train": ("train", "train a model from a YAML config"),
    "evaluate": ("evaluate", "temporal mask AP/AR of a results json against ground truth"),
    "predict": ("predict", "segment and track instances in a video, a frame folder or a dataset"),
    "render": ("render", "draw overlays of a results json on frames or a video"),
    "demo": ("demo", "bundled model on generated videos: tracks, overlays and metrics"),
    "bench": ("bench", "print speed figures"),
    "convert": ("convert", "convert an official checkpoint (CrossVIS) to a streamvis weights file"),
    "export": ("export", "write a compact weights file (no optimizer state) from a training checkpoint"),
    "convert-data": ("convert_data", "convert annotations or results between formats (CVAT, MOTS, ...)"),
    "package": ("package", "check a results json against its split and zip it for the evaluation server"),
    "inspect": ("inspect", "print what a weights file or checkpoint holds (method, config, classes, source)"),
}


def build_parser(load_commands: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """Build the parser; the arguments of the commands in `load_commands` are added."""
    parser = argparse.ArgumentParser(prog="streamvis", description="Online video instance segmentation.")
    parser.add_argument("--version", action="version", version=f"streamvis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name in load_commands:
            _load(module_name).add_arguments(p)
    return parser


def _load(module_name: str):
    return importlib.import_module(f"streamvis.commands.{module_name}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):  # json text may hold lone surrogates: print them escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    chosen = next((a for a in argv if a in COMMANDS), None)
    parser = build_parser((chosen,) if chosen else ())
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = _load(COMMANDS[args.command][0])
    shown_before = warnings.showwarning
    warnings.showwarning = functools.partial(_show_warning, args.command)
    try:
        return int(module.run(args) or 0)
    except StreamvisError as err:
        print(f"streamvis {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, permission denied, a device gone: the system's words, no traceback
        print(f"streamvis {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"streamvis {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown_before


def _show_warning(command, message, category, filename, lineno, file=None, line=None) -> None:
    """Print a warning as one line, without the Python source line Python's default shows under it."""
    print(f"streamvis {command}: warning: {message}", file=file or sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
