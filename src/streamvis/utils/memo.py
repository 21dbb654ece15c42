"""A log that exists only inside a ``with`` block, for values computed once and read again later.

`streamvis evaluate` computes some values twice over the same objects (a mask's area in the RLE
check and in the AP tables; a mask pair's IoU in the tracking metrics and in AP). A `ScopedLog`
carries them from the first computation to the second within one evaluation:

- the log is an object of the caller's class (`streamvis.data.rle_fast.AreaLog`,
  `streamvis.evaluation.video_iou.PairLog`), keyed by ``id()`` of the objects it describes (hashing
  tens of MB of RLE strings would cost more than recomputing); such a log keeps a reference to every
  recorded object, so while the block is open no other object can take one of their ids;
- it lives in a context variable: a block opened in one thread is invisible to another, and
  outside any block nothing is kept (`active` is None).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable

__all__ = ["ScopedLog"]


class ScopedLog:
    """``with log.scope() as current:`` opens a block holding ``factory()``; `active` is the innermost."""

    def __init__(self, name: str, factory: Callable[[], object]):
        self._var: contextvars.ContextVar = contextvars.ContextVar(name, default=None)
        self._factory = factory

    @contextlib.contextmanager
    def scope(self):
        """Open a block; yields its new log."""
        log = self._factory()
        token = self._var.set(log)
        try:
            yield log
        finally:
            self._var.reset(token)

    @property
    def active(self):
        """The innermost open block's log, or None outside any block."""
        return self._var.get()
