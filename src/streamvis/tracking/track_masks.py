"""A track's per-frame masks with only the newest in memory: the rest live in a temporary file.

A track keeps one compressed RLE per frame it appears in, for the results written at the end of the
video. Held as Python dicts, each costs about 500 bytes of memory (dict, ``size`` list and ``counts``
string, for about 150 bytes of RLE), so memory grows with the length of the video: the official
CrossVIS rule never ends a track, and over a 10,000-frame stream its tracks held about 120,000 RLEs,
~70 MB (benchmarks/bench_memory.py). `TrackMasks` is the mapping ``frame index -> RLE`` that tracks
use instead of a dict: the newest entry stays a dict in memory (trackers compare against the last
mask; overlays draw the current frame), older RLEs are appended to a `MaskStore` (an anonymous
temporary file) and cost 28 bytes each in memory (frame, offset, length, height, width). Reading an
old frame reads it back, so the mapping behaves like the dict it replaces.
"""

from __future__ import annotations

import bisect
import operator
import os
import tempfile
import threading
import weakref
from array import array
from collections.abc import Iterator, MutableMapping


class MaskStore:
    """An append-only anonymous temporary file of RLE counts (written and read only by this object).

    The file is deleted when the store is garbage collected, i.e. when no `TrackMasks` uses it.
    """

    _shared: weakref.ref | None = None
    _shared_lock = threading.Lock()

    def __init__(self):
        self._file = tempfile.TemporaryFile(prefix="streamvis-masks-")
        self._end = 0
        self._lock = threading.Lock()
        self._pid = os.getpid()

    @classmethod
    def shared(cls) -> MaskStore:
        """The store of this process that live `TrackMasks` share (a new one when none is alive)."""
        with cls._shared_lock:
            store = cls._shared() if cls._shared is not None else None
            if store is None or store._pid != os.getpid():  # a forked child never writes to its parent's file
                store = cls()
                cls._shared = weakref.ref(store)
            return store

    def append(self, data: bytes) -> int:
        """Write `data` at the end of the file; returns its offset."""
        with self._lock:
            offset = self._end
            self._file.seek(offset)
            self._file.write(data)
            self._end += len(data)
            return offset

    def read(self, offset: int, length: int) -> bytes:
        """The `length` bytes written at `offset`."""
        with self._lock:
            self._file.seek(offset)
            return self._file.read(length)

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._end


def _spillable(rle) -> bool:
    """Only json-ready compressed RLE (``{"size": [H, W], "counts": str}``) goes to the file."""
    return (type(rle) is dict and rle.keys() == {"size", "counts"} and isinstance(rle["counts"], str)
            and len(rle["size"]) == 2)


class TrackMasks(MutableMapping):
    """``frame index -> RLE`` of one track; entries older than the newest frame live in a `MaskStore`.

    Frames are expected in increasing order (as trackers write them); an entry set for a frame at or
    before the newest spilled one, or a value that is not compressed RLE with ``str`` counts, simply
    stays in memory. Iteration yields frames in increasing order. Pickling gives a plain dict.

    Args:
        items: initial ``(frame, rle)`` pairs or mapping.
        store: the file for older entries (default: `MaskStore.shared()`, created on first spill).
    """

    def __init__(self, items=(), *, store: MaskStore | None = None):
        self._store = store
        self._recent: dict[int, object] = {}  # in memory: the newest entry, and any unspillable one
        self._frames = array("q")  # spilled entries, frames ascending
        self._offsets = array("q")
        self._lengths = array("i")
        self._heights = array("i")
        self._widths = array("i")
        self.update(items)

    # ------------------------------------------------------------------------------ spilling
    def _spill_older_than(self, frame: int) -> None:
        newest_spilled = self._frames[-1] if self._frames else -1
        for old in sorted(f for f in self._recent if newest_spilled < f < frame):
            rle = self._recent[old]
            if not _spillable(rle):
                continue
            if self._store is None:
                self._store = MaskStore.shared()
            counts = rle["counts"].encode("ascii")
            self._frames.append(old)
            self._offsets.append(self._store.append(counts))
            self._lengths.append(len(counts))
            self._heights.append(int(rle["size"][0]))
            self._widths.append(int(rle["size"][1]))
            del self._recent[old]

    def _spilled_index(self, frame) -> int | None:
        if not self._frames:
            return None
        try:
            frame = operator.index(frame)
        except TypeError:
            return None
        index = bisect.bisect_left(self._frames, frame)
        return index if index < len(self._frames) and self._frames[index] == frame else None

    def _remove_spilled(self, index: int) -> None:
        for column in (self._frames, self._offsets, self._lengths, self._heights, self._widths):
            del column[index]

    # ------------------------------------------------------------------------ the mapping
    def __setitem__(self, frame: int, rle) -> None:
        index = self._spilled_index(frame)
        if index is not None:
            self._remove_spilled(index)  # an overwrite of an old frame stays in memory
        self._recent[frame] = rle
        if frame == max(self._recent):
            self._spill_older_than(frame)

    def __getitem__(self, frame: int):
        if frame in self._recent:
            return self._recent[frame]
        index = self._spilled_index(frame)
        if index is None:
            raise KeyError(frame)
        counts = self._store.read(self._offsets[index], self._lengths[index])
        return {"size": [self._heights[index], self._widths[index]], "counts": counts.decode("ascii")}

    def __delitem__(self, frame: int) -> None:
        if frame in self._recent:
            del self._recent[frame]
            return
        index = self._spilled_index(frame)
        if index is None:
            raise KeyError(frame)
        self._remove_spilled(index)

    def __contains__(self, frame) -> bool:
        return frame in self._recent or self._spilled_index(frame) is not None

    def __iter__(self) -> Iterator[int]:
        spilled, recent = iter(self._frames), iter(sorted(self._recent))
        pending, frame = next(spilled, None), next(recent, None)
        while pending is not None or frame is not None:  # merge two ascending sequences
            if frame is None or (pending is not None and pending < frame):
                yield pending
                pending = next(spilled, None)
            else:
                yield frame
                frame = next(recent, None)

    def __len__(self) -> int:
        return len(self._recent) + len(self._frames)

    def __repr__(self) -> str:
        return f"TrackMasks({len(self._frames)} spilled, in memory: {self._recent!r})"

    def __reduce__(self):
        return dict, (list(self.items()),)

    @property
    def in_memory(self) -> int:
        """Entries held as Python objects (the rest are in the store)."""
        return len(self._recent)
