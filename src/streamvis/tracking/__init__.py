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


def tracker_options(name: str) -> dict[str, object]:
    """The keyword arguments of tracker `name` and their defaults."""
    import inspect

    if name not in TRACKERS:
        raise ConfigError(f"unknown tracker {name!r}; choose one of: {', '.join(TRACKERS)}")
    params = inspect.signature(TRACKERS[name]).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}


def build_tracker(name: str, **kwargs):
    """Build the tracker called `name` with keyword arguments for its constructor.

    Raises:
        ConfigError: for an unknown name or option (the message lists the known ones).
    """
    options = tracker_options(name)
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise ConfigError(f"tracker {name!r} has no option {', '.join(unknown)}; its options: "
                          f"{', '.join(options)}")
    return TRACKERS[name](**kwargs)


def parse_tracker_options(name: str, items) -> dict[str, object]:
    """``["key=value", ...]`` (command line) -> keyword arguments for `build_tracker`.

    Values are read as YAML scalars (``0.3``, ``true``, ``30``) and must have the default's type
    (an int is accepted for a float option).

    Raises:
        ConfigError: a malformed item, an unknown option or a value of the wrong type.
    """
    import yaml

    options = tracker_options(name)
    kwargs: dict[str, object] = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--tracker-set {item!r}: expected KEY=VALUE, e.g. new_track_score=0.3")
        if key not in options:
            raise ConfigError(f"--tracker-set {item!r}: tracker {name!r} has no option {key!r}; its "
                              f"options: {', '.join(options)}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        default = options[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = True
        if not ok:
            raise ConfigError(f"--tracker-set {item!r}: {key} takes a value of type {type(default).__name__} "
                              f"(default {default!r})")
        kwargs[key] = value
    return kwargs


__all__ = [
    "TRACKERS",
    "CrossVISTracker",
    "DefaultTracker",
    "Track",
    "build_tracker",
    "parse_tracker_options",
    "track_to_result",
    "tracker_options",
]
