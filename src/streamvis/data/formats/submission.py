"""The evaluation-server submission: pre-flight checks of a results json against its split's json,
and the zip the YouTube-VIS / OVIS servers take (one ``results.json`` at the zip's root).

Unlike `validate_results` (first problem only), `check_submission` walks every entry and counts
every kind of problem, keeping the first few examples of each, so one run shows all that would
make the server reject (or silently mis-score) the file. No torch here.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from streamvis.data.masks import rle_to_json
from streamvis.utils.io import atomic_open

__all__ = ["ERROR_KINDS", "SubmissionReport", "check_submission", "format_report", "write_submission"]

# official: the YouTube-VIS evaluation keeps the 100 highest-scored tracks per video (maxDets 1/10/100)
DEFAULT_MAX_TRACKS = 100
RESULT_KEYS = ("video_id", "category_id", "score", "segmentations")

ERROR_KINDS = {
    "not_a_list": "the file is not a json list of results",
    "bad_entry": "an entry is not an object or lacks video_id / category_id / score / segmentations",
    "unknown_video": "video_id is not a video of the split",
    "unknown_category": "category_id is not a category of the split",
    "bad_score": "score is not a finite number",
    "length_mismatch": "segmentations has not one entry per frame of the video",
    "bad_segmentation": "a segmentation is not null or an RLE dict with size and counts",
    "size_mismatch": "an RLE size differs from the video's [height, width]",
}


@dataclass
class SubmissionReport:
    """What `check_submission` found (counts, error and warning examples)."""

    num_entries: int = 0
    num_videos: int = 0
    videos_with_results: int = 0
    missing_videos: list = field(default_factory=list)
    crowded_videos: list = field(default_factory=list)  # (video id, number of tracks) above the limit
    max_tracks: int = DEFAULT_MAX_TRACKS
    tracks_per_video_max: int = 0
    categories_used: int = 0
    num_categories: int = 0
    score_range: tuple[float, float] | None = None
    counts: dict = field(default_factory=lambda: defaultdict(int))
    examples: dict = field(default_factory=lambda: defaultdict(list))
    max_examples: int = 3

    @property
    def num_errors(self) -> int:
        return sum(self.counts.values())

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        if len(self.examples[kind]) < self.max_examples:
            self.examples[kind].append(message)


def _is_int(value) -> bool:
    return type(value) is int


def _check_segmentation(seg, video: dict, where: str, report: SubmissionReport) -> None:
    if seg is None:
        return
    if not isinstance(seg, dict) or "size" not in seg or not isinstance(seg.get("counts"), (str, list)):
        report.add("bad_segmentation", f"{where}: must be null or {{'size': [H, W], 'counts': ...}}")
        return
    size = [video["height"], video["width"]]
    if seg["size"] != size:
        report.add("size_mismatch", f"{where}: RLE size {seg['size']} but video {video['id']} is {size}")
        return
    counts = seg["counts"]
    if isinstance(counts, list) and (
        not all(_is_int(c) and c >= 0 for c in counts) or sum(counts) != size[0] * size[1]
    ):
        report.add("bad_segmentation", f"{where}: uncompressed counts must be non-negative and sum to H*W")


def _check_entry(entry, i: int, videos: dict, categories: set, report: SubmissionReport) -> bool:
    where = f"results[{i}]"
    if not isinstance(entry, dict) or any(k not in entry for k in RESULT_KEYS):
        report.add("bad_entry", f"{where}: needs {list(RESULT_KEYS)}")
        return False
    ok = True
    if not _is_int(entry["video_id"]) or entry["video_id"] not in videos:
        report.add("unknown_video", f"{where}: video_id {entry['video_id']!r}")
        ok = False
    if not _is_int(entry["category_id"]) or entry["category_id"] not in categories:
        report.add("unknown_category", f"{where}: category_id {entry['category_id']!r}")
    score = entry["score"]
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        report.add("bad_score", f"{where}: score {score!r}")
    segs = entry["segmentations"]
    if not ok:
        return False
    video = videos[entry["video_id"]]
    if not isinstance(segs, list) or len(segs) != video["length"]:
        got = len(segs) if isinstance(segs, list) else type(segs).__name__
        report.add(
            "length_mismatch",
            f"{where}: {got} segmentations, video {video['id']} has {video['length']} frames",
        )
        return True
    for f, seg in enumerate(segs):
        _check_segmentation(seg, video, f"{where}.segmentations[{f}]", report)
    return True


def check_submission(
    results, gt: dict, *, max_tracks: int = DEFAULT_MAX_TRACKS, max_examples: int = 3
) -> SubmissionReport:
    """Check a parsed results json against the split's (validated) ground-truth dict.

    Args:
        results: the parsed results json (should be a list of entries).
        gt: the split's YouTube-VIS dict (videos and categories; annotations may be absent).
        max_tracks: the per-video track limit the server's evaluation keeps (warning above it).

    Returns:
        The `SubmissionReport`; errors are in ``counts`` / ``examples``, warnings in
        ``missing_videos`` and ``crowded_videos``.
    """
    report = SubmissionReport(max_tracks=max_tracks, max_examples=max_examples)
    videos = {v["id"]: v for v in gt["videos"]}
    categories = {c["id"] for c in gt["categories"]}
    report.num_videos, report.num_categories = len(videos), len(categories)
    if not isinstance(results, list):
        report.add("not_a_list", f"the top level is a {type(results).__name__}")
        return report
    report.num_entries = len(results)
    per_video = Counter()
    scores = []
    for i, entry in enumerate(results):
        if _check_entry(entry, i, videos, categories, report):
            per_video[entry["video_id"]] += 1
            if isinstance(entry["score"], (int, float)) and math.isfinite(entry["score"]):
                scores.append(float(entry["score"]))
    report.videos_with_results = len(per_video)
    report.missing_videos = [v for v in videos if v not in per_video]
    report.crowded_videos = sorted((v, n) for v, n in per_video.items() if n > max_tracks)
    report.tracks_per_video_max = max(per_video.values(), default=0)
    used = {e.get("category_id") for e in results if isinstance(e, dict) and _is_int(e.get("category_id"))}
    report.categories_used = len(used & categories)
    report.score_range = (min(scores), max(scores)) if scores else None
    return report


def write_submission(results: list[dict], out_path) -> tuple[int, int]:
    """Zip `results` as ``results.json`` at the root of `out_path`, atomically.

    Entries keep only the four official keys; RLE counts are written compressed, as strings.

    Returns:
        (uncompressed size, zip size) in bytes.
    """
    clean = [
        {
            "video_id": e["video_id"],
            "category_id": e["category_id"],
            "score": float(e["score"]),
            "segmentations": [None if s is None else rle_to_json(s) for s in e["segmentations"]],
        }
        for e in results
    ]
    payload = json.dumps(clean, separators=(",", ":"), allow_nan=False).encode("utf-8")
    with atomic_open(out_path, "wb") as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("results.json", payload)
        size = f.tell()
    return len(payload), size


def format_report(report: SubmissionReport, results_path="", gt_path="") -> str:
    """The one-screen report: what was checked, errors by kind with examples, warnings."""
    lines = [
        f"checked {report.num_entries} results ({results_path}) against {report.num_videos} videos and "
        f"{report.num_categories} categories ({gt_path})",
        f"  videos with results: {report.videos_with_results}/{report.num_videos}; most tracks in one video: "
        f"{report.tracks_per_video_max}; categories used: {report.categories_used}/{report.num_categories}"
        + (
            f"; scores {report.score_range[0]:.4g}..{report.score_range[1]:.4g}" if report.score_range else ""
        ),
    ]
    if report.num_errors:
        lines.append(f"{report.num_errors} error{'s' if report.num_errors > 1 else ''} (no zip written):")
        for kind, meaning in ERROR_KINDS.items():
            if report.counts.get(kind):
                lines.append(f"  {kind}: {report.counts[kind]}  ({meaning})")
                lines.extend(f"    {example}" for example in report.examples[kind])
    if report.missing_videos:
        shown = ", ".join(map(str, report.missing_videos[:10]))
        more = f" and {len(report.missing_videos) - 10} more" if len(report.missing_videos) > 10 else ""
        lines.append(
            f"warning: {len(report.missing_videos)} videos have no results (they score zero): "
            f"ids {shown}{more}"
        )
    if report.crowded_videos:
        shown = ", ".join(f"{v} ({n})" for v, n in report.crowded_videos[:10])
        lines.append(
            f"warning: {len(report.crowded_videos)} videos have more than {report.max_tracks} tracks; the "
            f"evaluation keeps only the {report.max_tracks} highest-scored per video: {shown}"
        )
    return "\n".join(lines)
