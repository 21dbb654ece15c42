"""Check compressed RLE strings with pycocotools' own C parser: totals and run signs at C speed.

`streamvis.data.validate.rle_string_problems` must refuse every counts string whose runs do not sum
to H*W or include a negative run: pycocotools' ``iou``/``merge`` walk two masks' runs together and
never return when their totals differ. Decoding the strings in numpy is exact but costs about 4 s on
a YouTube-VIS-sized results file (59 M characters, 42 M runs). This module lets pycocotools' C
``rleFrString`` (an exported symbol of ``pycocotools._mask``, reached with ctypes) do the decoding,
for a whole batch of strings in one call:

- The batch's strings are concatenated (four zero runs first, and one zero run after each string
  with an odd number of runs, so every string starts at an even run index).
- ``rleFrString`` stores run g as ``C[g] = (uint32)(x[g] + C[g - 2])`` for g > 2, where x[g] is the
  value written in the string. A string parsed alone gives ``c[l] = x[l] + c[l - 2]`` for l > 2 and
  ``c[l] = x[l]`` for l <= 2. By induction, modulo 2**32: ``c[0] = C[s] - C[s - 2]``; for odd l,
  ``c[l] = C[s + l] - C[s - 1]``; for even l >= 2, ``c[l] = C[s + l] - C[s]`` (s: the string's first
  run). So uint32 subtractions give back, for every string, exactly the runs pycocotools reads when
  it parses that string alone (which is what every later pycocotools call does).
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

import numpy as np

from streamvis.utils.memo import ScopedMemo

__all__ = ["available", "known_areas", "record_areas", "remember_areas", "run_totals"]

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


def _parse(text: bytes) -> np.ndarray:
    """pycocotools' runs of one (concatenated) string, as a uint32 copy."""
    parse, free = _functions()
    rle = _Rle()
    parse(ctypes.byref(rle), text, 1, 1)  # h, w only fill the struct; parsing does not read them
    try:
        if rle.m == 0:
            return np.zeros(0, np.uint32)
        return np.ctypeslib.as_array(rle.cnts, (rle.m,)).astype(np.uint32)  # a copy
    finally:
        free(ctypes.byref(rle))


def run_totals(strings: list[bytes], runs_per_string: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the runs and foreground area of each string, as pycocotools reads it.

    Args:
        strings: S non-empty counts strings, each in pycocotools' alphabet and ending with a
            complete run.
        runs_per_string: (S,) the number of runs of each (characters without the continuation bit).

    Returns:
        (totals, areas): (S,) int64 sums of the runs read as uint32 (a negative run reads as a value
        >= 2**31) and (S,) int64 sums of the odd runs (the mask area, as ``pycocotools.mask.area``
        gives it for a valid string).
    """
    n = np.asarray(runs_per_string, dtype=np.int64)
    odd = (n & 1).astype(bool)
    pieces = [_LEAD]
    for text, pad in zip(strings, odd.tolist()):
        pieces.append(text)
        if pad:
            pieces.append(b"0")
    runs = _parse(b"".join(pieces))
    lead, padded = len(_LEAD), n + odd
    start = lead + np.cumsum(padded) - padded  # (S,) even run index of each string's run 0
    if runs.size != lead + int(padded.sum()):
        raise RuntimeError("pycocotools parsed an unexpected number of runs")
    pairs = runs[lead:].reshape(-1, 2)  # column 0: runs 0, 2, 4, .. of each string; column 1: 1, 3, ..
    first_pair, num_pairs = (start - lead) // 2, padded // 2
    even = pairs[:, 0] - np.repeat(runs[start], num_pairs)  # uint32: wraps as pycocotools does
    even[first_pair] = runs[start] - runs[start - 2]
    odd_runs = pairs[:, 1] - np.repeat(runs[start - 1], num_pairs)
    odd_runs[(first_pair + num_pairs - 1)[odd]] = 0  # a padding run is not the string's
    areas = np.add.reduceat(odd_runs, first_pair, dtype=np.int64)
    totals = np.add.reduceat(even, first_pair, dtype=np.int64) + areas
    return totals, areas


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
_AREAS = ScopedMemo("streamvis_areas")  # {id(counts): area}


def remember_areas():
    """Within the block, the areas of the strings the validator checks are kept for `known_areas`.

    The RLE check computes every valid string's area on the way (the sum of its odd runs); the
    evaluator needs the same areas (``pycocotools.mask.area``, another parse of every string).
    Keyed by the counts objects' identity (`streamvis.utils.memo.ScopedMemo`); ``streamvis
    evaluate`` wraps one evaluation in it.

    Yields:
        The ``{id(counts): area}`` dict (for tests).
    """
    return _AREAS.scope()


def record_areas(strings: list, areas) -> None:
    """Keep `areas` of `strings` (counts str/bytes) when a `remember_areas` block is open."""
    _AREAS.record(zip(map(id, strings), areas), strings)


def known_areas(strings: list) -> list | None:
    """The remembered areas of `strings` (None for each one not remembered), or None without a block."""
    values = _AREAS.active
    return None if values is None else list(map(values.get, map(id, strings)))
