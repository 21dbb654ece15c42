"""Check compressed RLE strings with pycocotools' own C parser: totals and run signs at C speed.

`streamvis.data.validate.rle_string_problems` must refuse every counts string whose runs do not sum
to H*W or include a negative run: pycocotools' ``iou``/``merge`` walk two masks' runs together and
never return when their totals differ. Decoding the strings in numpy is exact but costs about 4 s on
a YouTube-VIS-sized results file (59 M characters, 42 M runs). This module lets pycocotools' C
``rleFrString`` (an exported symbol of ``pycocotools._mask``, reached with ctypes) do the decoding,
for a whole batch of strings in one call:

- The batch's strings are concatenated, after four zero runs (so every string's first run has
  an index s >= 4).
- ``rleFrString`` stores run g as ``C[g] = (uint32)(x[g] + C[g - 2])`` for g > 2, where x[g] is the
  value written in the string. A string parsed alone gives ``c[l] = x[l] + c[l - 2]`` for l > 2 and
  ``c[l] = x[l]`` for l <= 2. By induction, modulo 2**32: ``c[0] = C[s] - C[s - 2]``; for odd l,
  ``c[l] = C[s + l] - C[s - 1]``; for even l >= 2, ``c[l] = C[s + l] - C[s]`` (whatever the parity
  of s). So uint32 subtractions give back, for every string, exactly the runs pycocotools reads when
  it parses that string alone (which is what every later pycocotools call does). They are done on
  the two lanes of ``C`` (even and odd g): in each lane, a string's runs are one contiguous stretch
  with one subtrahend (its relative-even runs in the lane of s's parity, its odd runs in the other).
- A negative run reads as a uint32 >= 2**31 and every run is >= 0 as a uint32, so "the int64 sum
  of the runs == H*W" (H*W < 2**31) holds exactly for the strings pycocotools will walk safely.

Only strings already known to be non-empty, in pycocotools' alphabet ('0'..'o'), ending with a
complete run, and without a run longer than pycocotools writes are handed over (the caller checks
those at C speed too). Where the symbol is missing (another build of pycocotools, Windows without
exports) or the self-test at first use disagrees with the numpy decoder, `available()` is False and
the caller keeps the numpy path.
"""

from __future__ import annotations

import ctypes
import itertools

import numpy as np

from streamvis.utils.memo import ScopedLog

__all__ = ["Parsed", "available", "known_areas", "record_areas", "remember_areas", "run_totals"]

_LEAD = b"0000"  # four zero runs: every real string starts at a run index >= 4 (delta-coded, even)
_state: dict = {}


class _Rle(ctypes.Structure):  # maskApi.h: typedef unsigned long siz; struct { siz h, w, m; uint *cnts; } RLE
    _fields_ = [
        ("h", ctypes.c_ulong),
        ("w", ctypes.c_ulong),
        ("m", ctypes.c_ulong),
        ("cnts", ctypes.POINTER(ctypes.c_uint)),
    ]


def _functions():
    if "functions" not in _state:
        _state["functions"] = None
        try:
            import pycocotools._mask as compiled

            library = ctypes.CDLL(compiled.__file__)
            parse, free = library.rleFrString, library.rleFree
            parse.restype, free.restype = None, None
            parse.argtypes = [ctypes.POINTER(_Rle), ctypes.c_char_p, ctypes.c_ulong, ctypes.c_ulong]
            free.argtypes = [ctypes.POINTER(_Rle)]
            _state["functions"] = (parse, free)
        except (ImportError, OSError, AttributeError):
            pass
    return _state["functions"]


class Parsed:
    """pycocotools' runs of one concatenated string, held in C memory until `sums` (or collection).

    The parse is one ctypes call, which releases the GIL: it can run on another thread while
    Python code goes on (`streamvis.data.validate` does so).
    """

    def __init__(self, text: bytes):
        self._rle = None
        parse, self._free = _functions()
        rle = _Rle()
        parse(ctypes.byref(rle), _LEAD + text, 1, 1)  # h, w only fill the struct; parsing does not read them
        self._rle = rle

    def sums(self, runs_per_string: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`run_totals` of the parsed strings; frees the runs."""
        try:
            m = self._rle.m
            runs = np.ctypeslib.as_array(self._rle.cnts, (m,)) if m else np.zeros(0, np.uint32)
            return _sums(runs, np.asarray(runs_per_string, dtype=np.int64))
        finally:
            self.close()

    def close(self) -> None:
        if self._rle is not None:
            self._free(ctypes.byref(self._rle))
            self._rle = None

    __del__ = close


def run_totals(strings, runs_per_string: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the runs and foreground area of each string, as pycocotools reads it.

    Args:
        strings: S non-empty counts strings (a list of ``bytes``, or their concatenation), each in
            pycocotools' alphabet and ending with a complete run.
        runs_per_string: (S,) the number of runs of each (characters without the continuation bit).

    Returns:
        (totals, areas): (S,) int64 sums of the runs read as uint32 (a negative run reads as a value
        >= 2**31) and (S,) int64 sums of the odd runs (the mask area, as ``pycocotools.mask.area``
        gives it for a valid string).
    """
    return Parsed(strings if isinstance(strings, bytes) else b"".join(strings)).sums(runs_per_string)


def _sums(runs: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lead = len(_LEAD)
    if runs.size != lead + int(n.sum()):
        raise RuntimeError("pycocotools parsed an unexpected number of runs")
    start = lead + np.cumsum(n) - n  # (S,) index of each string's run 0
    parity = start & 1
    first_runs = runs[start] - runs[start - 2]  # uint32: wraps as pycocotools does
    lane_sums = []
    for p in (0, 1):
        lane = runs[p::2]  # a view: runs p, p + 2, ...
        first = (start - p + 1) // 2  # (S,) the first of each string's runs in this lane
        count = (start + n - p + 1) // 2 - first
        base = np.where(parity == p, runs[start], runs[start - 1])
        values = lane[first[0] : first[-1] + count[-1]] - np.repeat(base, count)
        values[(first - first[0])[parity == p]] = first_runs[parity == p]
        sums = np.zeros(n.size, np.int64)
        some = count > 0
        if some.any():
            sums[some] = np.add.reduceat(values, (first - first[0])[some], dtype=np.int64)
        lane_sums.append(sums)
    areas = np.where(parity == 0, lane_sums[1], lane_sums[0])  # odd runs lie in the other lane
    return lane_sums[0] + lane_sums[1], areas


def available() -> bool:
    """Whether the C path exists here and agrees with the numpy decoder on a self-test."""
    if "ok" not in _state:
        _state["ok"] = False
        if _functions() is not None:
            try:
                _state["ok"] = _self_test()
            except Exception:  # noqa: BLE001 - any surprise means: keep the numpy path
                _state["ok"] = False
    return _state["ok"]


def _self_test() -> bool:
    import pycocotools.mask as mask_util

    strings, expected_totals = [], []
    for height, width, step in ((1, 1, 1), (3, 5, 2), (17, 9, 3), (40, 31, 7), (64, 64, 5)):
        pixels = np.arange(height * width).reshape(height, width)
        mask = ((pixels * pixels) % (step + 2) < (step + 2) // 2).astype(np.uint8)  # irregular runs
        strings.append(mask_util.encode(np.asfortranarray(mask))["counts"])
        expected_totals.append(height * width)
    strings += [b"0@", b"8"]  # a negative second run (-16); one run of 8
    runs = np.array([sum(1 for c in s if c - 48 < 32) for s in strings])
    totals, _ = run_totals(strings, runs)
    return (
        totals[:-2].tolist() == expected_totals
        and int(totals[-2]) == 2**32 - 16
        and int(totals[-1]) == 8
    )


# ---------------------------------------------------------------------------------------- areas
class AreaLog:
    """The areas recorded in one `remember_areas` block, in the order the validator checked them.

    The evaluator asks for the areas of the same strings in (mostly) the same order: a request that
    is a stretch of the log is answered by slicing; any other by an ``{id: position}`` index.
    """

    def __init__(self):
        self._ids: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._objects: list = []  # keeps the recorded strings (and so their ids) alive
        self._flat: tuple | None = None  # (ids, areas) concatenated
        self._index: dict | None = None

    def record(self, strings: list, areas) -> None:
        self._ids.append(np.fromiter(map(id, strings), np.int64, len(strings)))
        self._values.append(np.asarray(areas, dtype=np.float64))
        self._objects.append(strings)
        self._flat = self._index = None

    def flat(self) -> tuple[np.ndarray, np.ndarray]:
        if self._flat is None:
            self._flat = (np.concatenate(self._ids) if self._ids else np.zeros(0, np.int64),
                          np.concatenate(self._values) if self._values else np.zeros(0))
        return self._flat

    def lookup(self, strings: list) -> tuple[np.ndarray, np.ndarray]:
        """(areas, known): (N,) float64 areas of `strings` (0 where unknown) and (N,) bool."""
        ids, values = self.flat()
        wanted = np.fromiter(map(id, strings), np.int64, len(strings))
        if not ids.size:
            return np.zeros(wanted.size), np.zeros(wanted.size, bool)
        if wanted.size and ids.size >= wanted.size:
            for start in np.flatnonzero(ids[: ids.size - wanted.size + 1] == wanted[0]).tolist():
                if np.array_equal(ids[start : start + wanted.size], wanted):
                    return values[start : start + wanted.size].copy(), np.ones(wanted.size, bool)
        if self._index is None:
            self._index = dict(zip(ids.tolist(), range(ids.size)))
        position = np.fromiter(map(self._index.get, wanted.tolist(), itertools.repeat(-1)), np.int64,
                               wanted.size)
        known = position >= 0
        return np.where(known, values[position], 0.0), known


_AREAS = ScopedLog("streamvis_areas", AreaLog)


def remember_areas():
    """Within the block, the areas of the strings the validator checks are kept for `known_areas`.

    The RLE check computes every valid string's area on the way (the sum of its odd runs); the
    evaluator needs the same areas (``pycocotools.mask.area``, another parse of every string).
    Keyed by the counts objects' identity (kept alive by the log); a block opened in one thread is
    invisible to another (`streamvis.utils.memo.ScopedLog`). ``streamvis evaluate`` wraps one
    evaluation in it.

    Yields:
        The block's `AreaLog` (for tests).
    """
    return _AREAS.scope()


def record_areas(strings: list, areas) -> None:
    """Keep `areas` of `strings` (counts str/bytes) when a `remember_areas` block is open."""
    log = _AREAS.active
    if log is not None:
        log.record(strings, areas)


def known_areas(strings: list) -> tuple[np.ndarray, np.ndarray] | None:
    """(areas, known) of `strings` as `AreaLog.lookup` gives them, or None outside a block."""
    log = _AREAS.active
    return None if log is None else log.lookup(strings)
