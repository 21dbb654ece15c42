"""Online association of per-frame detections into tracks.

``build_tracker(name, **kwargs)`` builds one of `TRACKERS`: ``"crossvis"`` (the official rule,
exactly) or ``"default"`` (ours: Hungarian matching, embedding EMA, class vote, re-ID).
Every tracker has ``update(instances, frame_index) -> list[Track]`` and ``finalize() -> list[Track]``.
"""

from __future__ import annotations

from collections.abc import Callable

from streamvis.errors import ConfigError
from streamvis.tracking.base import Track, track_to_result
from streamvis.tracking.crossvis_tracker import CrossVISTracker
from streamvis.tracking.default_tracker import DefaultTracker

TRACKERS: dict[str, Callable[..., object]] = {
    "default": DefaultTracker,
    "crossvis": CrossVISTracker,
}


def build_tracker(name: str, **kwargs):
    """Build the tracker called `name` with keyword arguments for its constructor.

    Raises:
        ConfigError: for an unknown name (the message lists the known ones).
    """
    if name not in TRACKERS:
        raise ConfigError(f"unknown tracker {name!r}; choose one of: {', '.join(TRACKERS)}")
    return TRACKERS[name](**kwargs)


__all__ = ["TRACKERS", "CrossVISTracker", "DefaultTracker", "Track", "build_tracker", "track_to_result"]
