"""A memo that exists only inside a ``with`` block, keyed by object identity.

`streamvis evaluate` computes some values twice over the same objects (a mask's area in the RLE
check and in the AP tables; a mask pair's IoU in the tracking metrics and in AP). A `ScopedMemo`
carries them from the first computation to the second within one evaluation:

- keys are built from ``id()`` of the objects (hashing tens of MB of RLE strings would cost more
  than recomputing); the memo keeps a reference to every recorded object, so while the block is
  open no other object can take one of their ids;
- the memo lives in a context variable: a block opened in one thread is invisible to another, and
  outside any block nothing is kept (`active` is None).
"""

from __future__ import annotations

import contextlib
import contextvars

__all__ = ["ScopedMemo"]


class ScopedMemo:
    """``with memo.scope() as values:`` opens a block; `record` / `active` use the innermost one."""

    def __init__(self, name: str):
        self._var: contextvars.ContextVar = contextvars.ContextVar(name, default=None)

    @contextlib.contextmanager
    def scope(self):
        """Open a block; yields its ``{key: value}`` dict (for tests)."""
        values: dict = {}
        token = self._var.set((values, []))
        try:
            yield values
        finally:
            self._var.reset(token)

    @property
    def active(self) -> dict | None:
        """The innermost open block's ``{key: value}`` dict, or None outside any block."""
        state = self._var.get()
        return None if state is None else state[0]

    def record(self, items, objects) -> None:
        """Add ``(key, value)`` `items` whose keys are ids of `objects` (kept alive by the block)."""
        state = self._var.get()
        if state is not None:
            state[0].update(items)
            state[1].append(objects)
