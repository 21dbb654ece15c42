"""`streamvis check-dataset --gt GT.json --images DIR`: find every problem in a YouTube-VIS-format dataset.

The checks are the one validator's (`streamvis.data.validate`), which loading also uses: loading
stops at the first error-level record, this walks the whole dataset and counts each kind
(`streamvis.data.validate.KINDS`): json problems (types, ids, lengths, masks, unsafe file names),
then per frame of each valid video missing, unreadable (e.g. truncated) or wrongly sized files,
then empty masks (a warning: the file still loads). It prints a summary with the first few
examples of each kind and exits with 1 when there is any error-level record, 0 otherwise (so
``check-dataset`` exits 0 exactly when loading the json succeeds and every frame reads).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from streamvis.data.validate import (
    KINDS,
    Problem,
    count_checkable_frames,
    frame_problems,
    mask_warnings,
    ytvis_problems,
)
from streamvis.data.ytvis import read_json
from streamvis.utils.io import atomic_write_json

# Every kind of problem, in report order, with its meaning (kept for callers of the old name).
ERROR_KINDS = {kind: meaning for kind, (_, meaning) in KINDS.items()}


@dataclass
class DatasetReport:
    """What `check_dataset` found.

    Args:
        num_videos, num_frames, num_annotations: what was checked.
        counts: problem kind -> number of occurrences (errors and warnings).
        examples: problem kind -> the first `max_examples` occurrences, in words.
        problems: problem kind -> the first `max_examples` `Problem` records.
    """

    num_videos: int = 0
    num_frames: int = 0
    num_annotations: int = 0
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    problems: dict[str, list[Problem]] = field(default_factory=lambda: defaultdict(list))
    max_examples: int = 5

    @property
    def num_errors(self) -> int:
        return sum(n for kind, n in self.counts.items() if KINDS[kind][0] == "error")

    @property
    def num_warnings(self) -> int:
        return sum(n for kind, n in self.counts.items() if KINDS[kind][0] == "warning")

    def add(self, problem: Problem) -> None:
        """Count one problem and keep it (and its message) if among the first of its kind."""
        self.counts[problem.kind] += 1
        if len(self.examples[problem.kind]) < self.max_examples:
            self.examples[problem.kind].append(str(problem))
            self.problems[problem.kind].append(problem)

    def to_dict(self) -> dict:
        kinds = [k for k in KINDS if self.counts.get(k)]
        return {
            "num_videos": self.num_videos, "num_frames": self.num_frames,
            "num_annotations": self.num_annotations, "num_errors": self.num_errors,
            "num_warnings": self.num_warnings,
            "counts": {k: self.counts[k] for k in kinds},
            "severity": {k: KINDS[k][0] for k in kinds},
            "examples": {k: list(self.examples[k]) for k in kinds},
            "problems": {k: [p.to_dict() for p in self.problems[k]] for k in kinds},
        }


def add_arguments(parser) -> None:
    parser.add_argument("--gt", required=True, help="the YouTube-VIS-format annotation json")
    parser.add_argument("--images", required=True, help="the folder the videos' file_names are relative to")
    parser.add_argument("--max-examples", type=int, default=5, help="examples shown per error kind")
    parser.add_argument("--out", default=None, help="also write the report as json to this file")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args) -> int:
    report = check_dataset(
        args.gt, args.images, max_examples=args.max_examples, progress=not args.no_progress
    )
    print(format_report(report, args.gt, args.images))
    if args.out:
        atomic_write_json(args.out, report.to_dict(), indent=2)
    return 1 if report.num_errors else 0


def check_dataset(
    annotation_json, image_root, *, max_examples: int = 5, progress: bool = False
) -> DatasetReport:
    """Check a YouTube-VIS-format dataset (json + frame folder) and count every problem.

    Args:
        annotation_json: the json file.
        image_root: the folder the ``file_names`` are relative to.
        max_examples: how many examples of each problem kind the report keeps.
        progress: show a tqdm progress bar over the videos' frames.

    Returns:
        The `DatasetReport`.

    Raises:
        DataFormatError: the json is malformed (not json, too large, too deep).
        StreamvisError: the json file does not exist.
    """
    data = read_json(annotation_json)
    report = DatasetReport(max_examples=max_examples)
    for problem in ytvis_problems(data, path=annotation_json):
        report.add(problem)
    for problem in frame_problems(data, image_root, progress=progress):
        report.add(problem)
    for problem in mask_warnings(data, path=annotation_json):
        report.add(problem)
    if isinstance(data, dict):
        report.num_videos = len(data["videos"]) if isinstance(data.get("videos"), list) else 0
        annotations = data.get("annotations")
        report.num_annotations = len(annotations) if isinstance(annotations, list) else 0
    report.num_frames = count_checkable_frames(data)
    return report


def format_report(report: DatasetReport, annotation_json="", image_root="") -> str:
    """The human-readable summary: what was checked, then per error kind its count and examples."""
    lines = [f"checked {report.num_videos} videos, {report.num_frames} frames, {report.num_annotations} "
             f"annotations ({annotation_json}, images {image_root})"]
    if not report.num_errors:
        lines.append("OK: no errors found")
    else:
        lines.append(f"{report.num_errors} error{'s' if report.num_errors > 1 else ''}:")
    if report.num_warnings:
        lines.append(f"{report.num_warnings} warning{'s' if report.num_warnings > 1 else ''} "
                     "(the dataset loads, but check them):")
    for kind, (severity, meaning) in KINDS.items():
        count = report.counts.get(kind, 0)
        if count:
            lines.append(f"  {kind}: {count}  [{severity}] ({meaning})")
            lines.extend(f"    {example}" for example in report.examples[kind])
            if count > len(report.examples[kind]):
                lines.append(f"    ... and {count - len(report.examples[kind])} more")
    return "\n".join(lines)
