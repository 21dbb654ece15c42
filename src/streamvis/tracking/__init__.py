"""Online association of per-frame detections into tracks.

`TRACKERS` maps a name to its `TrackerSpec` (options class, tracker class); every tracker follows
the protocol of `streamvis.tracking.base.Tracker` (``update``, ``finalize``, built from one frozen
options dataclass):

- ``"crossvis"``: the official CrossVIS rule, exactly (tracking/crossvis.py);
- ``"default"``: ours: Hungarian matching, embedding EMA, class vote, re-ID (tracking/default.py);
- ``"masktrack"``: the official MaskTrack R-CNN rule, exactly (tracking/masktrack.py).
- ``"quasi_dense"``: the official PCAN / QDTrack rule (bi-softmax, backdrops; tracking/quasi_dense.py).

Adding a tracker means one entry here. Options come from code (``build_tracker(name, options)``)
or the command line (``--tracker-set KEY=VALUE``, `parse_tracker_options`), and are checked by
the config system (`streamvis.config.from_dict`) and the options class itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamvis.errors import ConfigError
from streamvis.tracking.base import Track, Tracker, track_results, track_to_result
from streamvis.tracking.crossvis import CrossVISTracker, CrossVISTrackerOptions
from streamvis.tracking.default import DefaultTracker, DefaultTrackerOptions
from streamvis.tracking.masktrack import MaskTrackOptions, MaskTrackTracker
from streamvis.tracking.quasi_dense import QuasiDenseOptions, QuasiDenseVideoTracker


@dataclass(frozen=True)
class TrackerSpec:
    """One tracker: its frozen options dataclass and the class built from it (``tracker_class(options)``)."""

    options_class: type
    tracker_class: type


TRACKERS: dict[str, TrackerSpec] = {
    "default": TrackerSpec(DefaultTrackerOptions, DefaultTracker),
    "crossvis": TrackerSpec(CrossVISTrackerOptions, CrossVISTracker),
    "masktrack": TrackerSpec(MaskTrackOptions, MaskTrackTracker),
    "quasi_dense": TrackerSpec(QuasiDenseOptions, QuasiDenseVideoTracker),
}


def tracker_spec(name: str) -> TrackerSpec:
    """The `TrackerSpec` of tracker `name` (ConfigError listing the known names otherwise)."""
    if name not in TRACKERS:
        raise ConfigError(f"unknown tracker {name!r}; choose one of: {', '.join(TRACKERS)}")
    return TRACKERS[name]


def tracker_options(name: str) -> dict[str, object]:
    """The options of tracker `name` and their defaults."""
    return dataclasses.asdict(tracker_spec(name).options_class())


def make_tracker_options(name: str, values: Mapping[str, Any] | None = None, *, where: str = "tracker"):
    """Tracker `name`'s options dataclass from a mapping of option values (checked like a config).

    Raises:
        ConfigError: an unknown option or a bad value; the message lists the tracker's options.
    """
    from streamvis.config import from_dict

    try:
        return from_dict(tracker_spec(name).options_class, dict(values or {}), prefix=where)
    except ConfigError as err:
        raise ConfigError(f"{err} (tracker {name!r} options: {', '.join(tracker_options(name))})") from None


def build_tracker(name: str, options=None) -> Tracker:
    """A fresh tracker called `name` (one per video).

    Args:
        name: a `TRACKERS` key.
        options: its options dataclass, a mapping of option values, or None for the defaults.

    Raises:
        ConfigError: for an unknown name or option (the message lists the known ones), or options
            of another tracker.
    """
    spec = tracker_spec(name)
    if options is None or isinstance(options, Mapping):
        options = make_tracker_options(name, options)
    elif not isinstance(options, spec.options_class):
        raise ConfigError(f"tracker {name!r} takes {spec.options_class.__name__}, "
                          f"got {type(options).__name__}")
    return spec.tracker_class(options)


def parse_tracker_options(name: str, items: Sequence[str] | None):
    """``["key=value", ...]`` (``--tracker-set``) -> tracker `name`'s options dataclass.

    Values are read as YAML (``0.3``, ``true``, ``30``) and checked against the option's type
    (an int is accepted for a float option) and the options class's own checks.

    Raises:
        ConfigError: a malformed item, an unknown option or a bad value; the message lists the
            tracker's options.
    """
    from streamvis.config import apply_overrides

    for item in items or ():
        key, sep, _ = item.partition("=")
        if not sep or not key.strip() or "." in key:
            raise ConfigError(f"--tracker-set {item!r}: expected KEY=VALUE, e.g. new_track_score=0.3 "
                              f"(tracker {name!r} options: {', '.join(tracker_options(name))})")
    values = apply_overrides({}, list(items or ()))
    return make_tracker_options(name, values)


__all__ = [
    "TRACKERS",
    "CrossVISTracker",
    "CrossVISTrackerOptions",
    "DefaultTracker",
    "DefaultTrackerOptions",
    "MaskTrackOptions",
    "MaskTrackTracker",
    "QuasiDenseOptions",
    "QuasiDenseVideoTracker",
    "Track",
    "Tracker",
    "TrackerSpec",
    "build_tracker",
    "make_tracker_options",
    "parse_tracker_options",
    "track_results",
    "track_to_result",
    "tracker_options",
    "tracker_spec",
]
