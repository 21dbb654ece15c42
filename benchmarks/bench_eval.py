"""Speed and memory of `streamvis evaluate` on a case shaped like YouTube-VIS 2019 valid.

The case (seeded, cached in --workdir): 302 videos of 20-36 frames at 720x1280, 40 categories,
about 1.7 ground-truth tracks and 10 result tracks per video. Masks are blobs whose radius is noisy
along the boundary and jittered frame to frame (irregular like a real model's masks); results are
perturbed copies of the ground truth (sometimes with a wrong category) plus false positives.

Prints (CPU seconds too: on a shared, busy machine they are closer to an idle machine's wall clock):

- whole process: ``python -m streamvis evaluate`` from start to exit (interpreter start, imports,
  json parsing, validation, tables, evaluation, table printing), wall and CPU (user + system) of
  the child, median of --repeat runs, and the peak RSS of the runs;
- in-process, after the json files are parsed and validated (median of --repeat):
  ``tables``: `build_gt_table` + `build_results_table`, which compute every mask area (one
  pycocotools parse of every RLE string; the official ``loadRes`` also computes the areas before
  its evaluate step); ``evaluate step``: `evaluate_tables` = video IoU (pycocotools parses the RLE
  strings of the compared tracks again, as the official ``computeIoU`` does) + matching +
  accumulate + summarize, the part that corresponds to the official toolkit's
  ``evaluate()/accumulate()/summarize()``; ``evaluate()`` on loaded dicts = tables + evaluate step.

Tracking metrics (issue 12): the same two measurements for ``evaluate --metrics all`` (AP, HOTA,
CLEAR, Identity in one process; the tracking families share the per-frame mask IoUs), whole
process with the child's own peak RSS, and ``evaluate_tracking`` in-process.

References, measured in the same run (`reference_eval.py` runs them; neither is a dependency):

- TrackEval 1.3.0, its ``YouTubeVIS`` dataset class, HOTA + CLEAR + Identity, whole process, under
  ``--trackeval-python PATH`` (default: this interpreter). The GT is laid out as that class reads it
  (uncompressed-RLE frames) beforehand, untimed. Prints its wall, CPU and peak RSS, the ratio
  TrackEval / ``streamvis evaluate --metrics all`` (target >= 10x), and whether its numbers agree with
  ours on every field of both combined rows and every category (golden tolerance 1e-9). Where it is
  not importable the reference is skipped, with how to get it.
- The official YouTube-VIS toolkit (``pycocotools.ytvos``, not on PyPI) under ``--official-python
  PATH`` (default: this interpreter): wall, CPU, peak RSS, the ratio official / ``streamvis evaluate``
  (target >= 3x) and the agreement of the 12 AP/AR numbers. Where it is not importable, the figures
  of an earlier run on the full case are quoted and marked as not measured in this run: 2.3 s whole
  process, 0.85 s evaluate step, 184 MB (target: evaluate step <= 0.085 s).

    python benchmarks/bench_eval.py [--workdir DIR] [--repeat 3] [--seed 0] [--videos 302]
        [--trackeval-python PATH] [--official-python PATH]

``--videos 3 --repeat 1`` is a seconds-long smoke run (what the tests do). The references run at
any size; only the full size is comparable with the documented figures and the targets.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_util
import reference_eval  # benchmarks/ is on sys.path[0] when this script runs
from reference_eval import time_process

HEIGHT, WIDTH = 720, 1280  # YouTube-VIS 2019: most videos are 720p
NUM_VIDEOS, NUM_CATEGORIES = 302, 40  # YouTube-VIS 2019 valid
MIN_FRAMES, MAX_FRAMES = 20, 36
GT_PER_VIDEO, RESULTS_PER_VIDEO = 1.7, 10
VERTICES = 96
GENERATOR_VERSION = 1


def _blob(rng, center, radius, phase, amplitude, jitter) -> list[float]:
    """A closed polygon: radius with a few low-frequency harmonics plus per-vertex noise."""
    angles = np.linspace(0, 2 * np.pi, VERTICES, endpoint=False)
    harmonics = np.arange(1, len(amplitude) + 1)[:, None]
    wobble = (amplitude[:, None] * np.sin(harmonics * angles[None, :] + phase[:, None])).sum(0)
    r = radius * (1 + wobble + jitter * rng.standard_normal(VERTICES))  # noisy, irregular boundary
    xs = np.clip(center[0] + r * np.cos(angles), 0, WIDTH - 1)
    ys = np.clip(center[1] + r * np.sin(angles), 0, HEIGHT - 1)
    return np.stack([xs, ys], 1).ravel().round(2).tolist()


def _track(rng, length, *, radius, present, jitter=0.03):
    """Per-frame polygons of one moving, deforming blob (None where absent)."""
    center = np.array([rng.uniform(0.2, 0.8) * WIDTH, rng.uniform(0.2, 0.8) * HEIGHT])
    velocity = rng.normal(0, radius * 0.03, 2)
    amplitude, phase = rng.uniform(0, 0.12, 4), rng.uniform(0, 2 * np.pi, 4)
    polys = []
    for t in range(length):
        center = center + velocity + rng.normal(0, radius * 0.01, 2)
        phase = phase + rng.normal(0, 0.05, 4)
        polys.append(_blob(rng, center, radius, phase, amplitude, jitter) if present[t] else None)
    return polys


def _present(rng, length, full: bool) -> np.ndarray:
    if full or rng.random() < 0.7:
        return np.ones(length, bool)
    start, stop = sorted(rng.choice(np.arange(length + 1), 2, replace=False))
    mask = np.zeros(length, bool)
    mask[start : max(stop, start + 1)] = True
    return mask


def _perturb(rng, polys):
    """A model's version of a track: shifted, rescaled, noisier; a mask on every frame."""
    shift, scale = rng.normal(0, 6, 2), rng.uniform(0.9, 1.1)
    out, last = [], next(p for p in polys if p is not None)
    for poly in polys:
        base = np.asarray(poly if poly is not None else last).reshape(-1, 2)
        last = base.ravel().tolist()
        center = base.mean(0)
        moved = (base - center) * scale + center + shift + rng.normal(0, 1.5, base.shape)
        moved[:, 0] = moved[:, 0].clip(0, WIDTH - 1)
        moved[:, 1] = moved[:, 1].clip(0, HEIGHT - 1)
        out.append(moved.ravel().round(2).tolist())
    return out


def _encode(polys) -> list:
    """Polygons -> compressed RLE json dicts (None stays None), rasterized by pycocotools."""
    out = []
    for poly in polys:
        if poly is None:
            out.append(None)
            continue
        rle = mask_util.frPyObjects([poly], HEIGHT, WIDTH)[0]
        out.append({"size": [HEIGHT, WIDTH], "counts": rle["counts"].decode("ascii")})
    return out


def _video(rng, vid, ann_id, gt_anns, results):
    length = int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
    num_gt = max(1, int(rng.poisson(GT_PER_VIDEO - 1) + 1))
    for _ in range(num_gt):
        radius = math.exp(rng.uniform(math.log(30), math.log(330)))  # small, medium and large objects
        category = int(rng.integers(1, NUM_CATEGORIES + 1))
        polys = _track(rng, length, radius=radius, present=_present(rng, length, False))
        segs = _encode(polys)
        areas = [None if s is None else int(mask_util.area(s)) for s in segs]
        boxes = [None if s is None else mask_util.toBbox(s).tolist() for s in segs]
        gt_anns.append(
            {
                "id": ann_id,
                "video_id": vid,
                "category_id": category,
                "iscrowd": 0,
                "segmentations": segs,
                "areas": areas,
                "bboxes": boxes,
                "height": HEIGHT,
                "width": WIDTH,
                "length": 1,
            }
        )
        ann_id += 1
        if rng.random() < 0.9:
            wrong = rng.random() < 0.15
            results.append(
                {
                    "video_id": vid,
                    "category_id": int(rng.integers(1, NUM_CATEGORIES + 1)) if wrong else category,
                    "score": float(rng.uniform(0.3, 1.0)),
                    "segmentations": _encode(_perturb(rng, polys)),
                }
            )
    for _ in range(RESULTS_PER_VIDEO - min(num_gt, RESULTS_PER_VIDEO)):  # false positives
        radius = math.exp(rng.uniform(math.log(20), math.log(250)))
        polys = _track(rng, length, radius=radius, present=np.ones(length, bool), jitter=0.05)
        results.append(
            {
                "video_id": vid,
                "category_id": int(rng.integers(1, NUM_CATEGORIES + 1)),
                "score": float(rng.uniform(0.01, 0.5)),
                "segmentations": _encode(polys),
            }
        )
    return length, ann_id


def generate(workdir: Path, seed: int, num_videos: int = NUM_VIDEOS) -> tuple[Path, Path]:
    """Write (or reuse) gt.json and results.json for `seed` (and `num_videos` videos) in `workdir`."""
    size = "" if num_videos == NUM_VIDEOS else f"_{num_videos}videos"
    stem = workdir / f"ytvis19like_v{GENERATOR_VERSION}_seed{seed}{size}"
    gt_path, res_path = stem.with_name(stem.name + "_gt.json"), stem.with_name(stem.name + "_results.json")
    if gt_path.exists() and res_path.exists():
        return gt_path, res_path
    rng = np.random.default_rng(seed)
    videos, anns, results, ann_id = [], [], [], 1
    for vid in range(1, num_videos + 1):
        length, ann_id = _video(rng, vid, ann_id, anns, results)
        videos.append(
            {
                "id": vid,
                "width": WIDTH,
                "height": HEIGHT,
                "length": length,
                "file_names": [f"{vid:05d}/{t:05d}.jpg" for t in range(length)],
            }
        )
    categories = [
        {"id": c, "name": f"class_{c}", "supercategory": "object"} for c in range(1, NUM_CATEGORIES + 1)
    ]
    gt = {"info": {}, "licenses": [], "videos": videos, "categories": categories, "annotations": anns}
    workdir.mkdir(parents=True, exist_ok=True)
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps(results))
    return gt_path, res_path


def whole_process(
    gt_path: Path, res_path: Path, repeat: int, metrics: str = "ap"
) -> tuple[float, float, float]:
    """Median wall and CPU seconds of `python -m streamvis evaluate --metrics METRICS`, and the peak
    RSS (MB) of those runs (each child's own, from ``os.wait4``, so the modes are measured apart).

    On a busy machine the CPU seconds (user + system) are closer to what an idle machine's wall
    clock shows.
    """
    command = [
        sys.executable,
        "-m",
        "streamvis",
        "evaluate",
        "--gt",
        str(gt_path),
        "--results",
        str(res_path),
    ]
    return time_process([*command, "--metrics", metrics], repeat)


def in_process(gt_path: Path, res_path: Path, repeat: int) -> dict:
    """Median seconds of the evaluation steps after the json files are loaded and validated."""
    from streamvis.data.ytvis import load_results, load_ytvis
    from streamvis.evaluation import evaluate, evaluate_tables
    from streamvis.evaluation.tables import build_gt_table, build_results_table

    start = time.perf_counter()
    gt = load_ytvis(gt_path)
    results = load_results(res_path, gt)
    load_s = time.perf_counter() - start
    full, tables, core, result = [], [], [], None
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        result = evaluate(gt, results, validate=False)
        full.append((time.perf_counter() - start, time.process_time() - cpu))
        start, cpu = time.perf_counter(), time.process_time()
        gt_table = build_gt_table(gt)
        dt_table = build_results_table(results, gt_table)
        tables.append((time.perf_counter() - start, time.process_time() - cpu))
        start, cpu = time.perf_counter(), time.process_time()
        evaluate_tables(gt_table, dt_table)
        core.append((time.perf_counter() - start, time.process_time() - cpu))
    return {
        "load": load_s,
        "evaluate": _median_pair(full),
        "tables": _median_pair(tables),
        "core": _median_pair(core),
        "result": result,
    }


def in_process_tracking(gt_path: Path, res_path: Path, repeat: int) -> dict:
    """Median (wall, CPU) seconds of `evaluate_tracking` (HOTA + CLEAR + Identity) on loaded dicts."""
    from streamvis.data.ytvis import load_results, load_ytvis
    from streamvis.evaluation.tracking import evaluate_tracking

    gt = load_ytvis(gt_path)
    results = load_results(res_path, gt)
    times, result = [], None
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        result = evaluate_tracking(gt, results)
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    return {"tracking": _median_pair(times), "result": result}


def _median_pair(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    """Medians of (wall, cpu) measurements."""
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "streamvis_bench_eval")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--videos", type=int, default=NUM_VIDEOS, help="videos in the case (302: YouTube-VIS 2019 valid)"
    )
    parser.add_argument(
        "--trackeval-python", default=sys.executable,
        help="a python that imports trackeval 1.3.0 (default: this one); skipped if it cannot",
    )  # fmt: skip
    parser.add_argument(
        "--official-python", default=sys.executable,
        help="a python that imports pycocotools.ytvos (default: this one); not measured if it cannot",
    )  # fmt: skip
    args = parser.parse_args(argv)
    start = time.perf_counter()
    gt_path, res_path = generate(args.workdir, args.seed, args.videos)
    full_size = args.videos == NUM_VIDEOS
    print(
        f"case: {gt_path.name} ({gt_path.stat().st_size / 1e6:.1f} MB), "
        f"{res_path.name} ({res_path.stat().st_size / 1e6:.1f} MB); "
        f"ready in {time.perf_counter() - start:.1f} s"
    )
    ap_process = whole_process(gt_path, res_path, args.repeat)
    steps = in_process(gt_path, res_path, args.repeat)
    _print_ap(ap_process, steps, args.repeat)
    tracking_process, tracking = _print_tracking(gt_path, res_path, args.repeat, full_size=full_size)
    print(f"machine load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("--- references, measured in this run where importable (reference_eval.py)")
    _print_official(args, gt_path, res_path, ap_process, steps["result"].stats_named, full_size=full_size)
    _print_trackeval(args, gt_path, res_path, tracking_process, tracking.to_json())
    if not full_size:
        print("(a reduced case: the documented figures and the targets are for the full 302-video case)")
    return 0


def _print_ap(process: tuple[float, float, float], steps: dict, repeat: int) -> None:
    """AP: whole process, peak RSS and the in-process steps."""
    wall, cpu, rss = process
    stats = steps["result"].stats_named
    print(f"metrics: AP {stats['AP']:.4f}  AP50 {stats['AP50']:.4f}  AR100 {stats['AR100']:.4f}")
    print(
        f"whole process (python -m streamvis evaluate), median of {repeat}: {wall:.3f} s wall, "
        f"{cpu:.3f} s CPU  (target: a third of the official toolkit's whole process, compared below)"
    )
    print(f"peak RSS of the process: {rss:.0f} MB")
    print(f"load + validate json (in-process, once): {steps['load']:.3f} s wall")
    wall_s, cpu_s = steps["tables"]
    print(f"tables (mask areas), median of {repeat}: {wall_s:.4f} s wall, {cpu_s:.4f} s CPU")
    wall_s, cpu_s = steps["evaluate"]
    print(f"evaluate() on loaded dicts, median of {repeat}: {wall_s:.4f} s wall, {cpu_s:.4f} s CPU")
    wall_s, cpu_s = steps["core"]
    print(
        f"evaluate step (evaluate_tables: IoU + matching + accumulate + summarize), median of "
        f"{repeat}: {wall_s:.4f} s wall, {cpu_s:.4f} s CPU  (official, earlier run: 0.85 s)"
    )


def _print_tracking(gt_path: Path, res_path: Path, repeat: int, *, full_size: bool):
    """The four metric families together (whole process, peak RSS) and the tracking pass alone.

    Returns:
        ((wall, cpu, peak RSS MB) of ``evaluate --metrics all``, the in-process `TrackingResult`).
    """
    process = whole_process(gt_path, res_path, repeat, metrics="all")
    steps = in_process_tracking(gt_path, res_path, repeat)
    row = steps["result"].to_json()["cls_comb_cls_av"]
    print(
        f"tracking metrics (class-averaged): HOTA {row['HOTA']['HOTA']:.4f}  AssA {row['HOTA']['AssA']:.4f}  "
        f"IDF1 {row['Identity']['IDF1']:.4f}  MOTA {row['CLEAR']['MOTA']:.4f}"
    )
    wall, cpu, rss = process
    target = "  (target: a tenth of TrackEval's whole process, compared below)" if full_size else ""
    print(
        f"whole process (python -m streamvis evaluate --metrics all: AP + HOTA + CLEAR + Identity), "
        f"median of {repeat}: {wall:.3f} s wall, {cpu:.3f} s CPU{target}"
    )
    print(f"peak RSS of the --metrics all process: {rss:.0f} MB")
    wall_s, cpu_s = steps["tracking"]
    print(
        f"evaluate_tracking() on loaded dicts (HOTA + CLEAR + Identity + Count), median of {repeat}: "
        f"{wall_s:.4f} s wall, {cpu_s:.4f} s CPU"
    )
    return process, steps["result"]


def _time_reference(name: str, command: list[str], repeat: int):
    """`time_process` of a reference run; None (and a line saying so) when the reference fails."""
    try:
        return time_process(command, repeat)
    except subprocess.CalledProcessError as error:
        print(
            f"{name}: its run failed (exit {error.returncode}; its messages are above): {' '.join(command)}"
        )
        return None


def _print_reference_process(name: str, process, ours, ours_name: str, repeat: int, target: str) -> None:
    """A reference's whole-process figures and its ratio to ours (same run, same case)."""
    wall, cpu, rss = process
    print(
        f"{name}, whole process, median of {repeat}: {wall:.3f} s wall, {cpu:.3f} s CPU, "
        f"peak RSS {rss:.0f} MB"
    )
    print(
        f"ratio {name} / {ours_name}, whole process, same run: {wall / ours[0]:.1f}x wall, "
        f"{cpu / ours[1]:.1f}x CPU; peak RSS {rss:.0f} vs {ours[2]:.0f} MB  (target >= {target})"
    )


def _print_official(args, gt_path: Path, res_path: Path, ours, our_stats: dict, *, full_size: bool) -> None:
    """The official YouTube-VIS toolkit on the same case: time, ratio and the 12 AP/AR numbers."""
    why = reference_eval.importable(args.official_python, ("pycocotools.ytvos", "pycocotools.ytvoseval"))
    if why:
        ratio = f"; streamvis is {2.3 / ours[0]:.1f}x faster than that figure" if full_size else ""
        print(f"official toolkit: NOT measured in this run: {why}; {reference_eval.OFFICIAL_INSTALL}.")
        print(
            "official toolkit, documented figure of an earlier run on the full case (not this run): "
            f"2.3 s wall whole process, 0.85 s evaluate step, 184 MB peak RSS{ratio}"
        )
        return
    numbers = gt_path.with_name(gt_path.name.removesuffix("_gt.json") + "_official_numbers.json")
    command = reference_eval.official_command(args.official_python, gt_path, res_path, numbers)
    process = _time_reference("official toolkit", command, args.repeat)
    if process is None:
        return
    _print_reference_process(
        "official toolkit", process, ours, "streamvis evaluate (AP)", args.repeat, "3x wall"
    )
    theirs = json.loads(numbers.read_text())["stats"]
    diffs = {name: abs(our_stats[name] - theirs[name]) for name in reference_eval.OFFICIAL_STAT_NAMES}
    worst = max(diffs, key=diffs.get)
    verdict = "agree within 1e-9" if diffs[worst] <= 1e-9 else "DIFFER"
    print(
        f"AP numbers vs the official toolkit: AP {our_stats['AP']:.9f} vs {theirs['AP']:.9f}; "
        f"12 stats {verdict} (largest |diff| {diffs[worst]:.3g}, {worst})"
    )


def _print_trackeval(args, gt_path: Path, res_path: Path, ours, our_rows: dict) -> None:
    """TrackEval's YouTubeVIS class on the same case: time, ratio and agreement of every field."""
    why = reference_eval.importable(args.trackeval_python, ("trackeval",))
    if why:
        print(f"TrackEval: reference skipped: {why}. To measure it: {reference_eval.TRACKEVAL_INSTALL}.")
        return
    start = time.perf_counter()
    root = reference_eval.prepare_trackeval(gt_path, res_path)
    seconds = time.perf_counter() - start
    print(f"TrackEval folders (uncompressed-RLE GT) ready in {seconds:.1f} s, not timed: {root}")
    numbers = root / "numbers.json"
    command = reference_eval.trackeval_command(args.trackeval_python, root, numbers)
    process = _time_reference("TrackEval", command, args.repeat)
    if process is None:
        return
    _print_reference_process(
        "TrackEval (HOTA + CLEAR + Identity)", process, ours, "streamvis evaluate --metrics all",
        args.repeat, "10x wall",
    )  # fmt: skip
    pairs = reference_eval.compare_tracking(our_rows, json.loads(numbers.read_text()))
    for row in ("cls_comb_cls_av", "cls_comb_det_av"):
        for field in ("HOTA.HOTA", "HOTA.AssA", "Identity.IDF1", "CLEAR.MOTA"):
            ours_value, theirs = next((o, t) for r, f, o, t in pairs if r == row and f == field)
            print(
                f"{row} {field}: streamvis {ours_value:.12f}  TrackEval {theirs:.12f}  "
                f"diff {ours_value - theirs:.3g}"
            )
    _print_agreement(pairs)


def _difference(ours: float, theirs: float) -> float:
    """|ours - theirs|; 0 when both are NaN, inf when one is (a field one side lacks)."""
    if math.isnan(ours) or math.isnan(theirs):
        return 0.0 if math.isnan(ours) and math.isnan(theirs) else math.inf
    return abs(ours - theirs)


def _print_agreement(pairs: list[tuple[str, str, float, float]]) -> None:
    """One line: do all fields agree within the golden tolerance, and the largest differences."""
    diffs = [(_difference(o, t), r, f, o, t) for r, f, o, t in pairs]
    worst = sorted(diffs, key=lambda item: item[0], reverse=True)
    rows = len({r for _, r, *_ in diffs})
    if worst[0][0] <= 1e-9:
        print(
            f"TrackEval agreement: all {len(diffs)} fields of {rows} rows (both combined rows, every "
            f"category) agree within 1e-9 (largest |diff| {worst[0][0]:.3g}, {worst[0][1]} {worst[0][2]})"
        )
        return
    bad = [item for item in worst if item[0] > 1e-9]
    print(f"TrackEval agreement: {len(bad)} of {len(diffs)} fields DIFFER by more than 1e-9; the largest:")
    for d, r, f, o, t in bad[:10]:
        print(f"  {r} {f}: streamvis {o!r}  TrackEval {t!r}  |diff| {d:.3g}")


if __name__ == "__main__":
    sys.exit(main())
