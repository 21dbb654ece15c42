"""Start-up time of the `streamvis` commands (issue 15 part 8): how long before any work is done.

Each figure is a fresh ``python -m streamvis ...`` child process, timed from before it is spawned,
the median of --repeat runs; wall seconds and CPU seconds (user + system of the child: on a
shared, busy machine they are closer to what an idle machine's wall clock would show).

- ``--help`` and ``CMD --help`` for evaluate, check-dataset, package, convert-data, predict,
  render: interpreter start, the CLI, the command's imports and its parser;
- tiny real runs: ``evaluate`` and ``package`` on tests/data/ytvis_eval/case_001,
  ``check-dataset`` on a 1-video, 2-frame dataset, ``convert-data`` of that dataset to DAVIS;
- ``predict`` first frame: from spawning ``streamvis predict --input one_frame.mp4`` (bundled
  model) until its first frame has passed the model and the tracker (the child prints the time
  of that moment), and the whole run.

Targets (issue 15): the first group and the light commands under 1 s, predict's first frame
under 3 s. Which modules each command imports: ``python -X importtime -m streamvis CMD ...``.

    python benchmarks/bench_startup.py [--repeat 3] [--workdir DIR] [--only help,predict]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASE = REPO / "tests" / "data" / "ytvis_eval" / "case_001"
TARGET_LIGHT_S = 1.0
TARGET_FIRST_FRAME_S = 3.0

# Runs `streamvis predict` in this process and prints the wall-clock time when the first frame
# has been processed (VideoPredictor.update returned once).
FIRST_FRAME_CHILD = """
import sys, time
import streamvis.engine.predict as engine
update = engine.VideoPredictor.update
def timed(self, frame):
    tracks = update(self, frame)
    if self.num_frames == 1:
        print(f"FIRST_FRAME_AT {time.time():.6f}", flush=True)
    return tracks
engine.VideoPredictor.update = timed
from streamvis.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def run_child(args: list[str], *, code: str | None = None) -> dict:
    """Spawn one child; returns wall and CPU seconds, exit code and (predict) first-frame seconds."""
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "streamvis", *args]
    before = os.times()
    start = time.time()
    proc = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=REPO)
    wall = time.time() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    first = None
    for line in proc.stdout.splitlines():
        if line.startswith("FIRST_FRAME_AT "):
            first = float(line.split()[1]) - start
    return {"wall": wall, "cpu": cpu, "rc": proc.returncode, "first_frame": first,
            "stderr": proc.stderr[-400:]}


def make_inputs(workdir: Path) -> dict[str, Path]:
    """A 1-video, 2-frame dataset (with frames) and a 1-frame MP4 in `workdir`."""
    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(REPO / "src"))
    from streamvis.data.masks import encode_mask
    from streamvis.data.video import write_video

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "frames" / "v1").mkdir(parents=True, exist_ok=True)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 10:40] = True
    for t in range(2):
        Image.fromarray(np.full((48, 64, 3), 100, np.uint8)).save(workdir / "frames" / "v1" / f"{t}.png")
    video = {"id": 1, "width": 64, "height": 48, "length": 2, "file_names": ["v1/0.png", "v1/1.png"]}
    gt = {"videos": [video],
          "categories": [{"id": 1, "name": "box"}],
          "annotations": [{"id": 1, "video_id": 1, "category_id": 1, "iscrowd": 0,
                           "segmentations": [encode_mask(mask)] * 2, "areas": [600, 600],
                           "bboxes": [[10, 10, 30, 20]] * 2}]}
    (workdir / "tiny.json").write_text(json.dumps(gt))
    write_video(workdir / "one_frame.mp4", [np.full((192, 320, 3), 90, np.uint8)], fps=10)
    return {"tiny": workdir / "tiny.json", "frames": workdir / "frames", "mp4": workdir / "one_frame.mp4"}


def cases(inputs: dict[str, Path], workdir: Path) -> list[tuple[str, str, list[str], str | None]]:
    """(group, name, argv, child code) of every measurement."""
    helps = [("help", f"{c} --help".strip(), [*c.split(), "--help"] if c else ["--help"], None)
             for c in ("", "evaluate", "check-dataset", "package", "convert-data", "predict", "render")]
    runs = [
        ("light", "evaluate case_001", ["evaluate", "--gt", str(CASE / "gt.json"), "--results",
                                        str(CASE / "results.json")], None),
        ("light", "package case_001", ["package", "--gt", str(CASE / "gt.json"), "--results",
                                       str(CASE / "results.json"), "--out",
                                       str(workdir / "submission.zip")], None),
        ("light", "check-dataset tiny", ["check-dataset", "--gt", str(inputs["tiny"]), "--images",
                                         str(inputs["frames"]), "--no-progress"], None),
        ("light", "convert-data tiny -> davis", ["convert-data", "--from", "ytvis", "--input",
                                                 str(inputs["tiny"]),
                                                 "--to", "davis", "--out", str(workdir / "davis"),
                                                 "--overwrite"], None),
        ("predict", "predict 1 frame (bundled model)", ["predict", "--input", str(inputs["mp4"]), "--out",
                                                       str(workdir / "predicted"), "--no-progress"],
         FIRST_FRAME_CHILD),
    ]
    return helps + runs


def measure(repeat: int, workdir: Path, only: set[str] | None = None) -> list[dict]:
    """Run every case `repeat` times; returns one row per case with medians."""
    inputs = make_inputs(workdir)
    rows = []
    for group, name, argv, code in cases(inputs, workdir):
        if only and group not in only:
            continue
        runs = [run_child(argv, code=code) for _ in range(repeat)]
        firsts = [r["first_frame"] for r in runs if r["first_frame"] is not None]
        rows.append({
            "group": group, "name": name, "rc": max(r["rc"] for r in runs),
            "wall": statistics.median(r["wall"] for r in runs),
            "cpu": statistics.median(r["cpu"] for r in runs),
            "first_frame": statistics.median(firsts) if firsts else None, "stderr": runs[-1]["stderr"],
        })
    return rows


def format_rows(rows: list[dict]) -> str:
    """The printed table: one line per case, with the target it is held to."""
    lines = [f"{'command':<34} {'wall s':>7} {'cpu s':>7} {'1st frame s':>11}  target"]
    for row in rows:
        first = f"{row['first_frame']:.2f}" if row["first_frame"] is not None else "-"
        target = (f"first frame < {TARGET_FIRST_FRAME_S:g} s" if row["group"] == "predict"
                  else f"< {TARGET_LIGHT_S:g} s")
        failed = f"  (exit code {row['rc']}: {row['stderr'].strip()[-200:]})" if row["rc"] not in (0,) else ""
        times = f"{row['wall']:>7.2f} {row['cpu']:>7.2f} {first:>11}"
        lines.append(f"{row['name']:<34} {times}  {target}{failed}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per command (median shown)")
    parser.add_argument("--workdir", help="where the tiny inputs are written (default: a temporary folder)")
    parser.add_argument("--only", help="comma-separated groups: help, light, predict (default: all)")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    if args.workdir:
        rows = measure(args.repeat, Path(args.workdir), only)
    else:
        with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp:
            rows = measure(args.repeat, Path(tmp), only)
    print(format_rows(rows))
    return 0 if all(row["rc"] == 0 for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
