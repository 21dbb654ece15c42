"""`streamvis check-dataset --gt GT.json --images DIR`: find every problem in a YouTube-VIS-format dataset.

Unlike `load_ytvis`, which stops at the first error, this walks the whole dataset and counts each
kind of problem: missing or unreadable (e.g. truncated) frames, frames of the wrong size, length
mismatches, malformed or empty masks, unknown categories and videos. It prints a summary with
the first few examples of each kind and exits with 1 when there is any error, 0 otherwise.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field

from PIL import Image
from tqdm import tqdm

from streamvis.data.masks import rle_area, segmentation_to_rle
from streamvis.data.ytvis import read_json
from streamvis.errors import DataFormatError
from streamvis.utils.io import atomic_write_json

# Every kind of error, in report order, with its meaning.
ERROR_KINDS = {
    "missing_frame": "a frame file listed in file_names does not exist",
    "unreadable_frame": "a frame file cannot be decoded (truncated or not an image)",
    "frame_size_mismatch": "a frame's size differs from the video's width/height",
    "bad_video": "a video entry lacks id/width/height/file_names or has invalid values",
    "length_mismatch": "a per-frame list's length differs from the video's length",
    "unknown_video": "an annotation names a video id that is not in videos",
    "unknown_category": "an annotation names a category id that is not in categories",
    "bad_segmentation": "a segmentation is malformed (wrong type, size or counts)",
    "empty_mask": "a non-null segmentation has no foreground pixel",
}


@dataclass
class DatasetReport:
    """What `check_dataset` found.

    Args:
        num_videos, num_frames, num_annotations: what was checked.
        counts: error kind -> number of occurrences.
        examples: error kind -> the first `max_examples` occurrences, in words.
    """

    num_videos: int = 0
    num_frames: int = 0
    num_annotations: int = 0
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    max_examples: int = 5

    @property
    def num_errors(self) -> int:
        return sum(self.counts.values())

    def add(self, kind: str, message: str) -> None:
        """Count one error of `kind` (one of `ERROR_KINDS`) and keep its message if among the first."""
        self.counts[kind] += 1
        if len(self.examples[kind]) < self.max_examples:
            self.examples[kind].append(message)

    def to_dict(self) -> dict:
        return {
            "num_videos": self.num_videos, "num_frames": self.num_frames,
            "num_annotations": self.num_annotations, "num_errors": self.num_errors,
            "counts": {k: self.counts[k] for k in ERROR_KINDS if self.counts.get(k)},
            "examples": {k: list(self.examples[k]) for k in ERROR_KINDS if self.counts.get(k)},
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
        max_examples: how many examples of each error kind the report keeps.
        progress: show a tqdm progress bar over the videos.

    Returns:
        The `DatasetReport`.

    Raises:
        DataFormatError: the json is malformed or lacks the ``videos`` / ``categories`` lists.
        StreamvisError: the json file does not exist.
    """
    data = read_json(annotation_json)
    name = os.path.basename(str(annotation_json))
    videos, categories, annotations = _top_level_lists(data, annotation_json)
    report = DatasetReport(max_examples=max_examples)
    known_categories = {c.get("id") for c in categories if isinstance(c, dict)}
    by_video = _annotations_by_video(annotations, videos, known_categories, report, name)
    for video in tqdm(videos, desc="checking videos", unit="video", disable=not progress):
        if _check_video_entry(video, report, name):
            _check_frames(video, image_root, report)
            for ann in by_video.get(video["id"], []):
                _check_annotation(ann, video, report, name)
    report.num_videos = len(videos)
    report.num_annotations = len(annotations)
    return report


def _top_level_lists(data, path) -> tuple[list, list, list]:
    if not isinstance(data, dict):
        raise DataFormatError(f"the top level must be a json object, got {type(data).__name__}", path=path)
    lists = []
    for key, optional in (("videos", False), ("categories", False), ("annotations", True)):
        value = data.get(key)
        if value is None and optional:
            value = []
        if not isinstance(value, list):
            raise DataFormatError(f"'{key}' must be a list", path=path, field=key)
        lists.append(value)
    return lists[0], lists[1], lists[2]


def _annotations_by_video(annotations, videos, known_categories, report, name) -> dict[int, list[dict]]:
    """Group annotations by video, counting unknown videos and categories on the way."""
    known_videos = {v.get("id") for v in videos if isinstance(v, dict)}
    by_video = defaultdict(list)
    for i, ann in enumerate(annotations):
        ann_name = f"{name}: annotations[{i}] (id {ann.get('id') if isinstance(ann, dict) else None})"
        if not isinstance(ann, dict):
            report.add("bad_segmentation", f"{ann_name}: not a json object")
            continue
        if ann.get("category_id") not in known_categories:
            report.add("unknown_category", f"{ann_name} (video {ann.get('video_id')}): "
                                           f"category_id {ann.get('category_id')!r} is not in categories")
        if ann.get("video_id") not in known_videos:
            report.add("unknown_video", f"{ann_name}: video_id {ann.get('video_id')!r} is not in videos")
            continue
        by_video[ann["video_id"]].append(ann)
    return by_video


def _check_video_entry(video, report, name) -> bool:
    """Whether the video entry is usable for the per-frame checks (counts what is wrong with it)."""
    if not isinstance(video, dict):
        report.add("bad_video", f"{name}: a video entry is not a json object")
        return False
    vid = video.get("id")
    size_ok = all(isinstance(video.get(k), int) and video[k] > 0 for k in ("width", "height"))
    names = video.get("file_names")
    names_ok = isinstance(names, list) and all(isinstance(n, str) for n in names)
    if not size_ok or not names_ok or vid is None:
        report.add("bad_video", f"{name}: video {vid}: needs an id, positive integer width/height and a "
                                "file_names list of strings")
        return False
    length = video.get("length")
    if length != len(names):
        report.add("length_mismatch", f"{name}: video {vid}: length is {length!r} but file_names has "
                                      f"{len(names)} entries")
    return True


def _check_frames(video: dict, image_root, report: DatasetReport) -> None:
    for frame, file_name in enumerate(video["file_names"]):
        report.num_frames += 1
        where = f"{file_name} (video {video['id']}, frame {frame})"
        path = os.path.join(str(image_root), file_name)
        if not os.path.isfile(path):
            report.add("missing_frame", f"{where}: file not found")
            continue
        try:
            with Image.open(path) as im:
                width, height = im.size
                # decoding at 1/8 scale still reads every byte, so truncation is caught, 1.5x faster
                im.draft("RGB", (max(width // 8, 1), max(height // 8, 1)))
                im.load()
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            report.add("unreadable_frame", f"{where}: {err}")
            continue
        if (height, width) != (video["height"], video["width"]):
            report.add("frame_size_mismatch", f"{where}: the frame is {height}x{width} (HxW) but the json "
                                              f"says {video['height']}x{video['width']}")


def _check_annotation(ann: dict, video: dict, report: DatasetReport, name: str) -> None:
    ann_name = f"{name}: annotation {ann.get('id')} (video {video['id']}"
    length = len(video["file_names"])
    for key in ("segmentations", "bboxes", "areas"):
        value = ann.get(key)
        if value is None and key != "segmentations":
            continue
        if not isinstance(value, list):
            report.add("bad_segmentation" if key == "segmentations" else "length_mismatch",
                       f"{ann_name}): '{key}' must be a list with one entry per frame")
        elif len(value) != length:
            report.add("length_mismatch", f"{ann_name}): '{key}' has {len(value)} entries but the video has "
                                          f"{length} frames")
    segmentations = ann.get("segmentations")
    if isinstance(segmentations, list):
        for frame, seg in enumerate(segmentations[:length]):
            _check_segmentation(seg, video, report, f"{ann_name}, frame {frame})")


def _check_segmentation(seg, video: dict, report: DatasetReport, where: str) -> None:
    if seg is None:
        return
    try:
        rle = segmentation_to_rle(seg, video["height"], video["width"])
        area = rle_area(rle)
    except (DataFormatError, ValueError, TypeError, KeyError) as err:
        reason = err.reason if isinstance(err, DataFormatError) else str(err)
        report.add("bad_segmentation", f"{where}: {reason}")
        return
    if area == 0:
        report.add("empty_mask", f"{where}: the segmentation has no foreground pixel (use null)")


def format_report(report: DatasetReport, annotation_json="", image_root="") -> str:
    """The human-readable summary: what was checked, then per error kind its count and examples."""
    lines = [f"checked {report.num_videos} videos, {report.num_frames} frames, {report.num_annotations} "
             f"annotations ({annotation_json}, images {image_root})"]
    if not report.num_errors:
        lines.append("OK: no errors found")
        return "\n".join(lines)
    lines.append(f"{report.num_errors} error{'s' if report.num_errors > 1 else ''}:")
    for kind, meaning in ERROR_KINDS.items():
        count = report.counts.get(kind, 0)
        if count:
            lines.append(f"  {kind}: {count}  ({meaning})")
            lines.extend(f"    {example}" for example in report.examples[kind])
            if count > len(report.examples[kind]):
                lines.append(f"    ... and {count - len(report.examples[kind])} more")
    return "\n".join(lines)
