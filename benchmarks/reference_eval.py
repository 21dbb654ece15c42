"""The reference evaluators of `bench_eval.py`, each run as one whole process on the bench's case.

Neither reference is a dependency of streamvis: each runs under an interpreter that can import it
(``--trackeval-python`` / ``--official-python`` of `bench_eval.py`), typically a separate venv.

- TrackEval 1.3.0 (PyPI ``trackeval``): its ``YouTubeVIS`` dataset class with HOTA, CLEAR
  (threshold 0.5) and Identity (threshold 0.5), Count always added, as the golden
  ``expected_trackeval.json`` were made. Get it with
  ``python3 -m venv te-venv && te-venv/bin/pip install trackeval==1.3.0 pycocotools``. No numpy pin
  is needed: 1.3.0 no longer uses the ``np.float``/``np.int``/``np.bool`` aliases (checked with numpy
  2.4.6, scipy 1.17.1, pycocotools 2.0.11, Python 3.11).
- The official YouTube-VIS toolkit (youtubevos/cocoapi: ``pycocotools.ytvos`` + ``ytvoseval``):
  ``YTVOS(gt)`` -> ``loadRes(results)`` -> ``YTVOSeval(.., 'segm')`` -> evaluate/accumulate/
  summarize with default parameters. Not on PyPI; build it from its repository into a venv.

The parent side (`prepare_trackeval`, `time_process`, `compare_tracking`) runs in the bench's
interpreter; the child side (`main`: ``python reference_eval.py trackeval|official ...``) imports
nothing from streamvis, only the reference, and writes the reference's numbers to a json file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

TRACKEVAL_SPLIT = "bench"  # TrackEval looks for GT_FOLDER + "youtube_vis_" + SPLIT_TO_EVAL
TRACKER_NAME = "streamvis_case"
TRACKEVAL_INSTALL = (
    "python3 -m venv te-venv && te-venv/bin/pip install trackeval==1.3.0 pycocotools, "
    "then pass --trackeval-python te-venv/bin/python"
)
OFFICIAL_INSTALL = (
    "the youtubevos/cocoapi fork is not on PyPI: build its PythonAPI into a separate venv and pass "
    "--official-python PATH"
)
OFFICIAL_STAT_NAMES = (
    "AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)  # fmt: skip


# ------------------------------------------------------------------------------ parent side
def importable(python: str, modules: tuple[str, ...]) -> str | None:
    """None when `python` can import every module, else one line saying why not."""
    try:
        proc = subprocess.run(
            [python, "-c", "import " + ", ".join(modules)], capture_output=True, text=True, timeout=120
        )
    except OSError as error:  # no such file, not executable
        return f"{python} cannot be run ({error.strerror})"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return f"{python} cannot import {', '.join(modules)} ({last})"
    return None


def time_process(command: list[str], repeat: int) -> tuple[float, float, float]:
    """Median wall and CPU (user + system) seconds of `command` run `repeat` times, and the peak
    RSS (MB) of those runs (each child's own, from ``os.wait4``); its stdout is discarded.

    The children run as after a normal install: Python may cache bytecode (an environment that sets
    ``PYTHONDONTWRITEBYTECODE`` would make every run compile its modules again, ~50 ms for streamvis);
    the first run writes the cache, the median of 3 or more runs is that of cached runs.
    """
    import time

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times, cpu, peak_kb = [], [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise subprocess.CalledProcessError(child.returncode, command)
        times.append(time.perf_counter() - start)
        cpu.append(usage.ru_utime + usage.ru_stime)
        peak_kb = max(peak_kb, usage.ru_maxrss)  # Linux: kilobytes
    return statistics.median(times), statistics.median(cpu), peak_kb / 1024


def _uncompressed(rle: dict) -> dict:
    """Compressed RLE -> the same pixels as uncompressed RLE (list counts, column-major runs)."""
    import numpy as np
    import pycocotools.mask as mask_util

    flat = mask_util.decode(rle).ravel(order="F")  # (H*W,) column-major, as RLE counts run
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate(([0], change, [flat.size]))).tolist()
    return {"size": list(rle["size"]), "counts": ([0] if flat[0] else []) + counts}  # runs start with 0s


def prepare_trackeval(gt_path: Path, res_path: Path) -> Path:
    """Lay the case out as TrackEval's YouTubeVIS class reads it (once; reused while up to date).

    TrackEval reads the one json in ``GT_FOLDER/youtube_vis_<split>/`` and in
    ``TRACKERS_FOLDER/youtube_vis_<split>/<tracker>/data/``; it passes each GT frame to
    ``frPyObjects``, which takes uncompressed RLE (list counts) but not compressed strings, so the
    GT frames are rewritten as uncompressed RLE of the same pixels; results are linked unchanged.

    Returns:
        the root holding ``gt/`` and ``trackers/``.
    """
    root = gt_path.with_name(gt_path.name.removesuffix("_gt.json") + "_trackeval")
    gt_dir = root / "gt" / f"youtube_vis_{TRACKEVAL_SPLIT}"
    res_dir = root / "trackers" / f"youtube_vis_{TRACKEVAL_SPLIT}" / TRACKER_NAME / "data"
    gt_out, res_out = gt_dir / "gt.json", res_dir / "results.json"
    if not gt_out.exists() or gt_out.stat().st_mtime < gt_path.stat().st_mtime:
        gt = json.loads(gt_path.read_text())
        for ann in gt["annotations"]:
            ann["segmentations"] = [None if s is None else _uncompressed(s) for s in ann["segmentations"]]
        gt_dir.mkdir(parents=True, exist_ok=True)
        partial = gt_out.with_suffix(".json.part")  # not *.json: TrackEval wants exactly one json
        partial.write_text(json.dumps(gt))
        os.replace(partial, gt_out)
    res_dir.mkdir(parents=True, exist_ok=True)
    if not res_out.exists():
        res_out.symlink_to(res_path.resolve())
    return root


def trackeval_command(python: str, root: Path, numbers: Path) -> list[str]:
    return [python, str(Path(__file__).resolve()), "trackeval", "--root", str(root), "--out", str(numbers)]


def official_command(python: str, gt_path: Path, res_path: Path, numbers: Path) -> list[str]:
    script = str(Path(__file__).resolve())
    return [
        python,
        script,
        "official",
        "--gt",
        str(gt_path),
        "--results",
        str(res_path),
        "--out",
        str(numbers),
    ]


def compare_tracking(ours: dict, reference: dict) -> list[tuple[str, str, float, float]]:
    """Every (row, field) of both combined rows and every category: ours and TrackEval's value.

    Args:
        ours: `TrackingResult.to_json()` (per_category keyed by category id, with ``name``).
        reference: what ``reference_eval.py trackeval`` wrote (rows keyed by class name).

    Returns:
        ``[(row, "Family.field", ours, reference)]``; a field missing on the reference side is NaN.
    """
    rows = [(label, ours[label], label) for label in ("cls_comb_cls_av", "cls_comb_det_av")]
    for key, row in sorted(ours["per_category"].items(), key=lambda item: int(item[0])):
        rows.append((f"category {key} ({row['name']})", row, row["name"]))  # TrackEval keys by name
    out = []
    for label, row, reference_key in rows:
        theirs = reference["rows"].get(reference_key, {})
        for family, values in row.items():
            if not isinstance(values, dict):
                continue  # the category's name
            for field, value in values.items():
                if isinstance(value, (int, float)):
                    other = theirs.get(family, {}).get(field, math.nan)
                    out.append((label, f"{family}.{field}", float(value), float(other)))
    return out


# ------------------------------------------------------------------------------- child side
def _plain(value) -> float:
    """TrackEval's value as stored in our rows: per-alpha arrays as their mean (what it prints)."""
    return float(value.mean()) if hasattr(value, "mean") else float(value)


def run_trackeval(root: Path, out: Path) -> None:
    """TrackEval's whole YouTubeVIS run on the prepared folders; its rows go to `out`.

    Its leanest configuration: one process, results printed for the combined rows only, no summary,
    detail or plot files (each would only add time to TrackEval's side).
    """
    import trackeval

    eval_config = {
        "USE_PARALLEL": False, "PRINT_CONFIG": False, "TIME_PROGRESS": False, "PRINT_RESULTS": True,
        "PRINT_ONLY_COMBINED": True, "OUTPUT_SUMMARY": False, "OUTPUT_DETAILED": False,
        "PLOT_CURVES": False, "LOG_ON_ERROR": None,
    }  # fmt: skip
    dataset_config = {
        "GT_FOLDER": str(root / "gt") + os.sep, "TRACKERS_FOLDER": str(root / "trackers") + os.sep,
        "OUTPUT_FOLDER": str(root / "output") + os.sep, "SPLIT_TO_EVAL": TRACKEVAL_SPLIT,
        "TRACKERS_TO_EVAL": [TRACKER_NAME], "PRINT_CONFIG": False,
    }  # fmt: skip
    metrics = [
        trackeval.metrics.HOTA({"PRINT_CONFIG": False}),
        trackeval.metrics.CLEAR({"THRESHOLD": 0.5, "PRINT_CONFIG": False}),
        trackeval.metrics.Identity({"THRESHOLD": 0.5, "PRINT_CONFIG": False}),
    ]
    evaluator = trackeval.Evaluator(eval_config)
    results, _ = evaluator.evaluate([trackeval.datasets.YouTubeVIS(dataset_config)], metrics)
    combined = results["YouTubeVIS"][TRACKER_NAME]["COMBINED_SEQ"]
    rows = {
        label: {family: {field: _plain(v) for field, v in values.items()} for family, values in row.items()}
        for label, row in combined.items()
    }
    payload = {"trackeval_version": getattr(trackeval, "__version__", "unknown"), "rows": rows}
    out.write_text(json.dumps(payload))


def run_official(gt_path: Path, res_path: Path, out: Path) -> None:
    """The official toolkit's whole run (default parameters); its 12 summary numbers go to `out`."""
    from pycocotools.ytvos import YTVOS
    from pycocotools.ytvoseval import YTVOSeval

    gt = YTVOS(str(gt_path))
    evaluation = YTVOSeval(gt, gt.loadRes(str(res_path)), "segm")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    out.write_text(json.dumps({"stats": dict(zip(OFFICIAL_STAT_NAMES, map(float, evaluation.stats)))}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run one reference evaluator (a child of bench_eval.py).")
    sub = parser.add_subparsers(dest="reference", required=True)
    te = sub.add_parser("trackeval", help="TrackEval's YouTubeVIS class: HOTA + CLEAR + Identity")
    te.add_argument("--root", type=Path, required=True, help="the folder prepare_trackeval made")
    te.add_argument("--out", type=Path, required=True)
    official = sub.add_parser("official", help="the official YouTube-VIS toolkit (AP)")
    official.add_argument("--gt", type=Path, required=True)
    official.add_argument("--results", type=Path, required=True)
    official.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.reference == "trackeval":
        run_trackeval(args.root, args.out)
    else:
        run_official(args.gt, args.results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
