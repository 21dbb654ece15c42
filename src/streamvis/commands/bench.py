"""`streamvis bench`: list or run the benchmark scripts of the source tree's ``benchmarks/`` folder.

Each ``benchmarks/bench_<name>.py`` is a plain script that prints its figures (speed, memory,
quality); ``streamvis bench <name> [ARGS...]`` runs it in a fresh Python process (so memory
figures start clean) with ARGS passed through, and ``streamvis bench`` lists them::

    streamvis bench                              # the list, with one line each
    streamvis bench trackers --videos 10         # AP, AP50, ID switches of both trackers
    streamvis bench e2e --frames 100             # end-to-end frames/s
    streamvis bench memory --frames 3000         # peak RSS at frame 100 and 3000
    streamvis bench e2e --help                   # a script's own options

The scripts live in the source repository, not in the installed package: the folder is looked up
in the current directory, then beside the package's source tree (an editable install).
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

from streamvis.errors import StreamvisError

PREFIX = "bench_"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `bench` arguments to `parser`."""
    parser.add_argument("name", nargs="?", help="benchmark to run (omit to list them)")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    parser.add_argument("--dir", help="benchmarks folder (default: ./benchmarks, else the source tree's)")


def find_benchmarks_dir(explicit=None) -> Path:
    """The ``benchmarks/`` folder: `explicit`, ./benchmarks, or the one beside ``src/streamvis``.

    Raises:
        StreamvisError: none found (e.g. a wheel install without the source tree).
    """
    import streamvis

    candidates = [Path(explicit)] if explicit else [
        Path.cwd() / "benchmarks", Path(streamvis.__file__).resolve().parents[2] / "benchmarks"]
    for folder in candidates:
        if folder.is_dir() and any(folder.glob(f"{PREFIX}*.py")):
            return folder
    where = ", ".join(map(str, candidates))
    raise StreamvisError(f"no benchmarks folder with {PREFIX}*.py scripts at {where}; the benchmarks "
                         "live in the source repository's benchmarks/ (run from its root)")


def list_benchmarks(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (script, first line of its docstring), sorted by name; scripts are parsed, not run."""
    found = {}
    for script in sorted(folder.glob(f"{PREFIX}*.py")):
        try:
            doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
        except SyntaxError:
            doc = "(cannot be parsed)"
        found[script.stem[len(PREFIX):]] = (script, doc.strip().splitlines()[0] if doc.strip() else "")
    return found


def run(args: argparse.Namespace) -> int:
    """List the benchmarks, or run one and return its exit status."""
    folder = find_benchmarks_dir(args.dir)
    benchmarks = list_benchmarks(folder)
    if not args.name:
        width = max(len(n) for n in benchmarks)
        print(f"benchmarks in {folder} (run: streamvis bench NAME [ARGS...]; NAME --help for options):")
        for name, (_, summary) in benchmarks.items():
            print(f"  {name:<{width}}  {summary}")
        return 0
    if args.name not in benchmarks:
        raise StreamvisError(f"unknown benchmark {args.name!r}; choose one of: {', '.join(benchmarks)}")
    script = benchmarks[args.name][0]
    return subprocess.call([sys.executable, str(script), *args.script_args])
