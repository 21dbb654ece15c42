"""Choose which results entries are written or drawn: score threshold, classes, tracks per video.

Pure Python over official results entries (``{video_id, category_id, score, segmentations}``),
no torch: `streamvis predict` applies it before writing ``results.json`` and `streamvis render`
before drawing, with the same flags (`streamvis.commands.arguments.add_result_filters`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from streamvis.errors import StreamvisError

# Tracks kept per video when --max-tracks is not given, for a single video, folder or stream (not
# for a dataset json). The YouTube-VIS evaluator keeps the 100 best per video and category
# (maxDets 100, evaluation/ytvis_eval.py); for a person looking at one video 25 is already many.
DEFAULT_MAX_TRACKS_PER_VIDEO = 25


@dataclass(frozen=True)
class ResultsFilter:
    """Which results entries to keep.

    Attributes:
        score_threshold: keep entries whose (video-level) score is at least this (None: all).
        category_ids: keep only these dataset category ids (None: all).
        max_tracks: keep the best-scored this many entries of each video (None: all).
    """

    score_threshold: float | None = None
    category_ids: frozenset[int] | None = None
    max_tracks: int | None = None

    def __post_init__(self):
        if self.max_tracks is not None and self.max_tracks < 1:
            raise StreamvisError(f"--max-tracks must be at least 1, got {self.max_tracks}")

    @property
    def active(self) -> bool:
        """True when the filter can drop anything."""
        return not (self.score_threshold is None and self.category_ids is None and self.max_tracks is None)

    def apply(self, results: Iterable[dict]) -> list[dict]:
        """The kept entries, in their input order.

        Args:
            results: official results entries (any number of videos).

        Returns:
            The entries that pass the score and class tests and, per video, rank among the
            `max_tracks` best by score (ties: earlier entry first).
        """
        kept = [
            entry for entry in results
            if (self.score_threshold is None or float(entry["score"]) >= self.score_threshold)
            and (self.category_ids is None or int(entry["category_id"]) in self.category_ids)
        ]
        if self.max_tracks is None:
            return kept
        by_video: dict[int, list[int]] = {}
        for index, entry in enumerate(kept):
            by_video.setdefault(int(entry["video_id"]), []).append(index)
        chosen: set[int] = set()
        for indices in by_video.values():
            best = sorted(indices, key=lambda i: -float(kept[i]["score"]))[: self.max_tracks]
            chosen.update(best)
        return [entry for index, entry in enumerate(kept) if index in chosen]


def parse_classes(text: str | None, names: Mapping[int, str]) -> frozenset[int] | None:
    """Category ids named by ``--classes``: comma-separated names or ids, e.g. ``"person,3"``.

    Args:
        text: the flag's value (None or empty: no class filter).
        names: category id -> name of the model or dataset (may be empty: then ids only).

    Returns:
        The category ids, or None for no filter.

    Raises:
        StreamvisError: a name or id that is not a known category (the message lists them).
    """
    if not text:
        return None
    by_name = {str(name).lower(): int(cid) for cid, name in names.items()}
    chosen: set[int] = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.lower() in by_name:
            chosen.add(by_name[item.lower()])
        elif item.isdigit() and (not names or int(item) in names):
            chosen.add(int(item))
        else:
            known = ", ".join(f"{cid}={name}" for cid, name in sorted(names.items())) or "none known"
            raise StreamvisError(f"--classes: {item!r} is not a category name or id of this model "
                                 f"(categories: {known})")
    return frozenset(chosen)


def category_names(class_names: Sequence[str] | None, category_ids: Sequence[int] | None) -> dict[int, str]:
    """Category id -> name from a model's 0-based class names and its class -> category id map.

    Args:
        class_names: 0-based class -> name (None: no names).
        category_ids: 0-based class -> category id (None: the official ``class + 1``).
    """
    if not class_names:
        return {}
    ids = list(category_ids) if category_ids else [i + 1 for i in range(len(class_names))]
    return {int(cid): str(name) for cid, name in zip(ids, class_names)}
