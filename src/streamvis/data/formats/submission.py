"""The evaluation-server submission: pre-flight checks of a results json against its split's json,
and the zip the YouTube-VIS / OVIS servers take (one ``results.json`` at the zip's root).

The checks of each entry are the one validator's (`streamvis.data.validate.results_problems`, the
same records that loading and ``streamvis evaluate`` stop at): `check_submission` counts every
error record by kind, keeping the first few of each, so one run shows all that would make the
server reject (or silently mis-score) the file. What only a submission cares about (videos without
results, more tracks than the evaluation keeps) is added here as warnings. No torch here.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from streamvis.data.masks import rle_to_json
from streamvis.data.validate import KINDS, RESULT_KEYS, Problem, results_problems
from streamvis.utils.io import atomic_open

__all__ = ["ERROR_KINDS", "SubmissionReport", "check_submission", "format_report", "write_submission"]

# official: the YouTube-VIS evaluation keeps the 100 highest-scored tracks per video (maxDets 1/10/100)
DEFAULT_MAX_TRACKS = 100

# the validator's error kinds (`streamvis.data.validate.KINDS`), in report order
ERROR_KINDS = {kind: meaning for kind, (severity, meaning) in KINDS.items() if severity == "error"}


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

    def add(self, problem: Problem) -> None:
        """Count an error record of the validator (and keep it as an example while there are few)."""
        self.counts[problem.kind] += 1
        if len(self.examples[problem.kind]) < self.max_examples:
            self.examples[problem.kind].append(str(problem))


def _usable(entry, videos: dict) -> bool:
    """An entry that counts as a track of a split video (whatever else is wrong with it)."""
    return (isinstance(entry, dict) and all(k in entry for k in RESULT_KEYS)
            and type(entry["video_id"]) is int and entry["video_id"] in videos)


def _finite_score(entry) -> float | None:
    score = entry["score"]
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
        return None
    return float(score)


def check_submission(
    results, gt: dict, *, max_tracks: int = DEFAULT_MAX_TRACKS, max_examples: int = 3, path=None
) -> SubmissionReport:
    """Check a parsed results json against the split's (validated) ground-truth dict.

    Args:
        results: the parsed results json (should be a list of entries).
        gt: the split's YouTube-VIS dict (videos and categories; annotations may be absent).
        max_tracks: the per-video track limit the server's evaluation keeps (warning above it).
        max_examples: error records kept per kind.
        path: the results file, named in the examples (None: examples start at ``results[i]``).

    Returns:
        The `SubmissionReport`; errors (the validator's records, by kind) are in ``counts`` /
        ``examples``, warnings in ``missing_videos`` and ``crowded_videos``.
    """
    report = SubmissionReport(max_tracks=max_tracks, max_examples=max_examples)
    videos = {v["id"]: v for v in gt["videos"]}
    categories = {c["id"] for c in gt["categories"]}
    report.num_videos, report.num_categories = len(videos), len(categories)
    for problem in results_problems(results, gt, path=path):
        if problem.is_error:
            report.add(problem)
    if not isinstance(results, list):
        return report
    report.num_entries = len(results)
    usable = [entry for entry in results if _usable(entry, videos)]
    per_video = Counter(entry["video_id"] for entry in usable)
    scores = [score for score in map(_finite_score, usable) if score is not None]
    report.videos_with_results = len(per_video)
    report.missing_videos = [v for v in videos if v not in per_video]
    report.crowded_videos = sorted((v, n) for v, n in per_video.items() if n > max_tracks)
    report.tracks_per_video_max = max(per_video.values(), default=0)
    used = {e["category_id"] for e in usable if type(e["category_id"]) is int}
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
