"""User-facing errors.

Anything a user can cause (a bad file, a wrong argument) raises a subclass of `StreamvisError`
whose message names the file and the field. The CLI prints the message and exits non-zero
instead of showing a traceback.
"""

from __future__ import annotations


class StreamvisError(Exception):
    """Base class of errors caused by user input; the CLI prints them without a traceback."""


class DataFormatError(StreamvisError, ValueError):
    """A file's content does not follow the expected format.

    Args:
        message: what is wrong, in words.
        path: the file it was found in (None for in-memory data).
        where: the location inside the file, e.g. ``"annotations[3] (id 17)"``.
        field: the offending key, e.g. ``"segmentations[4].size"``.
    """

    def __init__(self, message: str, *, path=None, where: str | None = None, field: str | None = None):
        self.path = None if path is None else str(path)
        self.where = where
        self.field = field
        self.reason = message
        parts = []
        if self.path:
            parts.append(self.path)
        if where:
            parts.append(where)
        if field:
            parts.append(f"field '{field}'")
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ConfigError(StreamvisError, ValueError):
    """An invalid configuration key or value."""
