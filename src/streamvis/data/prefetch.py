"""Decode (and prepare) frames in a background thread, a bounded number ahead of the consumer.

    with FramePrefetcher(frames, depth=4, transform=prepare, name="video.mp4") as items:
        for item in items:
            ...                      # the model runs here while the thread decodes the next frames

The thread pulls from the source iterable, applies `transform` (e.g. resize and copy into pinned
memory, so that the upload to the GPU can be asynchronous) and puts the result into a queue of
`depth` items; the consumer gets them in the source's order. Decoding (PyAV, PIL, OpenCV) and
resizing release the GIL, so they overlap with the model's forward.

- An exception in the thread (a corrupt frame, a missing file) is re-raised in the consumer at
  the position where it happened, as the same exception object, with a note naming the source
  and the item index; the items before it are delivered first.
- `close` (also on leaving the ``with`` block, or when the consumer stops early) stops the
  thread: it is woken from a full queue, closes the source iterator, and is joined.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

_END = object()  # the source is exhausted
_POLL_SECONDS = 0.1  # how often a producer blocked on a full queue checks for `close`
_JOIN_SECONDS = 10.0  # how long `close` waits for the thread (a source blocked in I/O may take a while)


class _Failure:
    """An exception raised by the source or the transform, with the index of the item it replaced."""

    def __init__(self, error: BaseException, index: int):
        self.error, self.index = error, index


class FramePrefetcher:
    """Iterate over `source` with a background thread running `depth` items ahead.

    Args:
        source: any iterable (e.g. a generator of (H, W, 3) BGR frames).
        depth: queue size, >= 1 (how many prepared items may wait for the consumer).
        transform: applied to each item in the thread (None: items pass as they are).
        name: the source, named in the note added to an exception from the thread.

    Iterating yields the (transformed) items in order; it can be done once.
    """

    def __init__(self, source: Iterable, depth: int, *, transform: Callable | None = None, name: str = ""):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self.name = name
        self._source = source
        self._transform = transform
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._started = False
        self._thread = threading.Thread(target=self._produce, name=f"prefetch {name}".strip(), daemon=True)

    def _put(self, item) -> bool:
        """Put `item`, waiting while the queue is full; False when `close` was called meanwhile."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        iterator = None
        index = 0
        try:
            iterator = iter(self._source)
            for item in iterator:
                if self._transform is not None:
                    item = self._transform(item)
                if not self._put(item):
                    return
                index += 1
            self._put(_END)
        except BaseException as err:  # noqa: BLE001 (handed to the consumer, which re-raises it)
            self._put(_Failure(err, index))
        finally:
            close = getattr(iterator, "close", None)  # a generator's finally blocks run here, in its thread
            if callable(close):
                try:
                    close()
                except Exception:  # noqa: BLE001,S110 (the source's own error was already reported)
                    pass

    def __iter__(self) -> Iterator:
        if self._started:
            raise RuntimeError("a FramePrefetcher can be iterated once")
        self._started = True
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    error = item.error
                    if hasattr(error, "add_note"):  # Python >= 3.11
                        where = f" of {self.name}" if self.name else ""
                        error.add_note(f"(raised while reading item {item.index}{where} in the prefetch "
                                       "thread)")
                    raise error
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the thread (it closes the source) and wait for it; safe to call more than once."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(_JOIN_SECONDS)

    @property
    def running(self) -> bool:
        """Whether the background thread is still alive."""
        return self._thread.is_alive()

    def __enter__(self) -> FramePrefetcher:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def prefetched(source: Iterable, depth: int, *, transform: Callable | None = None, name: str = ""):
    """`source` through a `FramePrefetcher` of `depth` items, or `source` itself (transformed) for depth 0."""
    if depth <= 0:
        return source if transform is None else map(transform, source)
    return FramePrefetcher(source, depth, transform=transform, name=name)
