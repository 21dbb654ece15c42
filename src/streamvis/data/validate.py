"""The one validator of YouTube-VIS / OVIS annotation json and results json: every problem, as a record.

Every reader of these files uses the records yielded here, so loading, ``streamvis check-dataset``,
``streamvis package`` and the format converters give the same verdict on the same file:

- `ytvis_problems(data, path=...)` checks an annotation dict (top-level lists, videos, categories,
  annotations, per-frame segmentations / boxes / areas, frame file names) without decoding masks;
- `results_problems(results, gt, path=...)` checks a results list (against `gt` when given);
- `frame_problems(data, image_root)` opens the frame files (missing, unreadable or truncated, wrong
  size) of the videos whose entries are valid; `mask_warnings(data)` decodes masks to find empty ones.

Each yields `Problem` records in file order::

    Problem(kind="length_mismatch", severity="error", message="has 2 entries but the video's length is 3",
            path="train.json", where="annotations[0] (id 1)", field="segmentations",
            video_id=1, annotation_id=1, frame=None)

``kind`` is one of `KINDS` (which also gives its severity and meaning); ``str(problem)`` is the
one-line message (``train.json: annotations[0] (id 1): field 'segmentations': has 2 entries ...``)
and ``problem.to_error()`` the `DataFormatError` loading raises. Typical uses::

    raise_first_error(ytvis_problems(data, path=path))     # what load_ytvis does
    errors = [p for p in results_problems(results, gt) if p.is_error]   # what a packager reports
    counts = count_problems(ytvis_problems(data))          # {kind: count}, what check-dataset prints

Severity ``"error"``: the file cannot be used as is (loading raises the first one). Severity
``"warning"``: the file loads, but something is probably unintended (an empty non-null mask).

What is checked beyond types, ids and lengths (limits are documented in `KINDS` and below):

- compressed RLE strings are decoded (vectorised, in bulk; masks are never rasterised): only the
  characters pycocotools writes, no run cut short, no negative run, runs summing to height*width;
  pycocotools itself accepts many broken strings and then decodes garbage or fails mid-evaluation;
- polygon coordinates stay within `POLYGON_MARGIN` frame sizes of the frame (pycocotools allocates
  memory in proportion to the polygon's perimeter, so ``1e12`` would exhaust it);
- frame sizes are at most `MAX_FRAME_SIDE` pixels a side;
- frame file names are relative paths that stay inside the image root (`check_file_name`).

No torch import here (the evaluation command loads without torch).
"""

from __future__ import annotations

import bisect
import collections
import math
import os
import re
import reprlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from numbers import Real

import numpy as np

from streamvis.data import rle_fast
from streamvis.data.masks import check_segmentation
from streamvis.errors import DataFormatError

__all__ = [
    "KINDS",
    "MAX_FRAME_SIDE",
    "POLYGON_MARGIN",
    "RESULT_KEYS",
    "Problem",
    "check_file_name",
    "count_checkable_frames",
    "count_problems",
    "first_error",
    "frame_problems",
    "mask_warnings",
    "raise_error_summary",
    "raise_first_error",
    "results_problems",
    "rle_string_problems",
    "ytvis_problems",
]

# kind -> (severity, meaning). Order is report order.
KINDS: dict[str, tuple[str, str]] = {
    "bad_structure": ("error", "the top level is not an object, or lacks/mistypes a top-level list"),
    "bad_item": ("error", "an entry is not an object, lacks a required key or has a non-integer id"),
    "duplicate_id": ("error", "two entries of one list share an id"),
    "bad_video": ("error", "a video's width/height/length/file_names has an invalid type or value"),
    "unsafe_path": ("error", "a frame file name is absolute or leaves the image root ('..')"),
    "length_mismatch": ("error", "a per-frame list's length differs from the video's length"),
    "unknown_video": ("error", "an annotation or result names a video id that is not in videos"),
    "unknown_category": ("error", "an annotation or result names a category id that is not in categories"),
    "bad_value": ("error", "iscrowd, a box, an area or a score has an invalid type or value"),
    "bad_segmentation": ("error", "a segmentation is malformed (wrong type, size, counts or RLE string)"),
    "missing_frame": ("error", "a frame file listed in file_names does not exist"),
    "unreadable_frame": ("error", "a frame file cannot be decoded (truncated or not an image)"),
    "frame_size_mismatch": ("error", "a frame's size differs from the video's width/height"),
    "empty_mask": ("warning", "a non-null segmentation has no foreground pixel (null is meant)"),
}

# pixels; 8K video is 7680 wide. Larger is a typo or an attack (masks cost H*W), and 16384^2 = 2^28
# keeps every RLE run within the 6 characters pycocotools writes for it (`_MAX_RUN_CHARS`)
MAX_FRAME_SIDE = 16384
POLYGON_MARGIN = 8  # polygon coordinates must lie in [-8 W, 9 W] x [-8 H, 9 H]
# compressed RLE strings are checked in bulk: 1 MB of text at a time through pycocotools' parser, 16 KB
# through the numpy decoder (each measured fastest on the YouTube-VIS-sized case of bench_eval.py)
_RLE_BATCH_CHARS, _RLE_BATCH_CHARS_NUMPY = 1 << 20, 1 << 14
_MAX_RUN_CHARS = 6  # pycocotools packs a run in 5-bit chunks shifted in a C int: 6 chunks = 30 bits

_short = reprlib.Repr()
_short.maxstring, _short.maxother, _short.maxlist, _short.maxdict, _short.maxlevel = 60, 60, 6, 4, 3

VIDEO_KEYS = ("id", "width", "height", "length", "file_names")
CATEGORY_KEYS = ("id", "name")
ANNOTATION_KEYS = ("id", "video_id", "category_id", "segmentations")
RESULT_KEYS = ("video_id", "category_id", "score", "segmentations")


@dataclass(frozen=True)
class Problem:
    """One problem found in a file.

    Args:
        kind: one of `KINDS`.
        message: what is wrong, in words (without the location).
        path: the file (None for in-memory data).
        where: the item, e.g. ``"annotations[12] (id 40)"``, ``"results[5]"`` or
            ``"far/00007.jpg (video 20, frame 7)"``; None for the top level.
        field: the offending key, e.g. ``"segmentations[4].size"``.
        video_id, annotation_id, frame: the video, annotation (results: None) and frame concerned,
            where known.
        result_index: the index in a results list, for results problems.
    """

    kind: str
    message: str
    path: str | None = None
    where: str | None = None
    field: str | None = None
    video_id: int | None = None
    annotation_id: int | None = None
    frame: int | None = None
    result_index: int | None = None

    @property
    def severity(self) -> str:
        """``"error"`` or ``"warning"`` (from `KINDS`)."""
        return KINDS[self.kind][0]

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def to_error(self) -> DataFormatError:
        """The `DataFormatError` that loading raises for this problem."""
        return DataFormatError(self.message, path=self.path, where=self.where, field=self.field)

    def to_dict(self) -> dict:
        """A json-ready dict (for reports)."""
        return {
            "kind": self.kind, "severity": self.severity, "message": self.message, "path": self.path,
            "where": self.where, "field": self.field, "video_id": self.video_id,
            "annotation_id": self.annotation_id, "frame": self.frame, "result_index": self.result_index,
        }

    def __str__(self) -> str:
        return str(self.to_error())


def first_error(problems: Iterable[Problem]) -> Problem | None:
    """The first error-level problem (warnings are skipped), or None; stops consuming at it."""
    return next((p for p in problems if p.is_error), None)


def raise_first_error(problems: Iterable[Problem]) -> None:
    """Raise the first error-level problem as a `DataFormatError` (nothing when there is none)."""
    problem = first_error(problems)
    if problem is not None:
        raise problem.to_error()


def raise_error_summary(problems: Iterable[Problem], what: str) -> None:
    """Raise one `DataFormatError` that counts every error-level problem by kind and quotes the first.

    For data streamvis made itself (a converter's output): one paragraph says how much is broken,
    not only where the first break is. Nothing is raised when there is no error-level problem.

    Args:
        problems: records of `ytvis_problems` / `results_problems`.
        what: what was checked, e.g. ``"the ground truth converted from labelme"``.
    """
    errors = [p for p in problems if p.is_error]
    if not errors:
        return
    counts = ", ".join(f"{kind} {n}" for kind, n in count_problems(errors).items())
    first = errors[0]
    raise DataFormatError(f"{what} has {len(errors)} error{'s' if len(errors) > 1 else ''} ({counts}); "
                          f"the first: {first.to_error()}", path=None)


def count_problems(problems: Iterable[Problem]) -> dict[str, int]:
    """``{kind: count}`` in `KINDS` order (kinds without problems left out)."""
    counts = Counter(p.kind for p in problems)
    return {kind: counts[kind] for kind in KINDS if counts[kind]}


# ----------------------------------------------------------------------------------------- helpers
def _is_int(value) -> bool:
    return type(value) is int or (isinstance(value, (int, np.integer)) and not isinstance(value, bool))


def _is_id(value) -> bool:
    """An integer id that fits in int64 (the evaluation stores ids in numpy int64 arrays)."""
    return _is_int(value) and -(2**63) <= value < 2**63


def _is_number(value) -> bool:
    kind = type(value)  # exact float/int first: the abstract `Real` check is slow
    return kind is float or kind is int or (isinstance(value, Real) and not isinstance(value, bool))


def _finite_plain_numbers(values: list) -> bool:
    """Fast path: plain floats/ints (no bool) with a finite sum; False means: check one by one."""
    try:
        return all(type(v) in (float, int) for v in values) and math.isfinite(sum(values))
    except OverflowError:  # an int too large for a float
        return False


def _where(kind: str, index: int, item) -> str:
    item_id = item.get("id") if isinstance(item, dict) else None
    return f"{kind}[{index}]" if item_id is None else f"{kind}[{index}] (id {_short.repr(item_id)})"


def _plain_id(value):
    return value if _is_int(value) else None


# relative names of plain segments ("0001/00000.jpg"): no drive, no leading separator, no backslash or NUL
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*").fullmatch


def check_file_name(name) -> str | None:
    """Why a frame file name is unsafe or invalid (None when it is a plain relative path).

    A file name must be a non-empty relative path that never goes up (``..``) and has no NUL
    character, so ``os.path.join(image_root, name)`` stays inside ``image_root``. Both ``/`` and
    ``\\`` count as separators (a file made on Windows must be refused everywhere).
    """
    if type(name) is str and _PLAIN_NAME(name) is not None and ".." not in name:  # common: at C speed
        return None
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if not name:
        return "is an empty file name"
    if "\x00" in name:
        return "contains a NUL character"
    parts = name.replace("\\", "/").split("/")
    windows_drive = len(name) > 1 and name[0].isalpha() and name[1] == ":" and name[2:3] in ("", "/", "\\")
    if name.startswith(("/", "\\")) or os.path.isabs(name) or windows_drive:
        return f"{_short.repr(name)} is an absolute path; file names must be relative to the image root"
    if ".." in parts:
        return f"{_short.repr(name)} leaves the image root ('..'); file names must stay inside it"
    return None


# ----------------------------------------------------------------------------------- RLE strings
def _decode_runs(text: bytes, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode concatenated pycocotools RLE strings into runs, exactly as ``rleFrString`` does.

    A run is stored in 1-6 characters of 5 data bits each (bit 0x20: another character follows;
    bit 0x10 of the last one: negative), least significant first; runs after the third are stored
    as the difference to the run two before. Vectorised without boolean-mask indexing: each string's
    runs are laid out from an even position of a padded array, so the two delta chains of every
    string are the even and odd slots of that array and decode with two strided cumulative sums.

    Args:
        text: the strings' bytes, concatenated; every byte is in pycocotools' alphabet (48..111).
        lengths: (S,) length of each string (all > 0).

    Returns:
        (runs, owner, bad): (R,) int64 run lengths, (R,) the string each run belongs to, and (S,)
        bool, True for strings with a run cut short at their end or longer than `_MAX_RUN_CHARS`.
    """
    chunks = np.frombuffer(text, np.uint8) - np.uint8(48)  # (C,) 6-bit chunks
    lengths = np.asarray(lengths, np.int32)  # int32 below: a batch is far below 2^31 characters
    last_chars = np.cumsum(lengths, dtype=np.int32) - 1  # (S,)
    run_end = chunks < 0x20  # no continuation bit
    bad = ~run_end[last_chars]  # (S,) the last run never ends
    run_end[last_chars] = True  # a run never continues into the next string
    ends = np.flatnonzero(run_end).astype(np.int32)  # (R,)
    runs_per_string = np.diff(np.searchsorted(ends, last_chars, side="right"), prepend=0)  # (S,)
    owner = np.repeat(np.arange(len(lengths), dtype=np.int32), runs_per_string)  # (R,)
    run_chars = np.diff(ends, prepend=np.int32(-1))  # (R,)
    run_starts = ends - run_chars + 1
    bad[owner[run_chars > _MAX_RUN_CHARS]] = True
    position = np.arange(len(chunks), dtype=np.int32) - np.repeat(run_starts, run_chars)  # (C,)
    np.minimum(position, _MAX_RUN_CHARS - 1, out=position)  # (a longer run is bad; small shifts)
    position *= 5
    # chunk k of a run holds bits 5k..5k+4; 6 chunks make at most 30 bits, so int32 holds the sums
    runs = np.add.reduceat((chunks & 0x1F).astype(np.int32) << position, run_starts).astype(np.int64)
    # sign: x |= -1 << 5 * chars (pycocotools works in a C int; 6 chunks = 30 bits)
    sign = (chunks[ends] & 0x10).astype(bool)
    runs[sign] -= np.int64(1) << (5 * np.minimum(run_chars[sign], _MAX_RUN_CHARS)).astype(np.int64)
    # rleFrString: if (m > 2) x += cnts[m - 2], i.e. two running sums per string (runs 1,3,5,.. and 2,4,..)
    padded = runs_per_string + (runs_per_string & 1)  # (S,) every string starts at an even slot
    padded_first = np.cumsum(padded) - padded
    first_run = np.cumsum(runs_per_string) - runs_per_string
    slot = np.arange(len(runs)) + np.repeat(padded_first - first_run, runs_per_string)  # (R,)
    lanes = np.zeros(int(padded.sum()), np.int64)
    lanes[slot] = runs
    first_value = lanes[padded_first].copy()  # run 0 is not in the chain of runs 2, 4, ...
    lanes[padded_first] = 0
    pairs = padded // 2
    start_pair = padded_first // 2
    for lane in (lanes[0::2], lanes[1::2]):  # views: cumulative sums restarted at every string
        total = np.cumsum(lane)
        before = total[start_pair] - lane[start_pair]  # (S,) the sum of earlier strings' lanes
        lane[:] = total - np.repeat(before, pairs)
    lanes[padded_first] = first_value
    return lanes[slot], owner, bad


def rle_string_problems(strings: list, pixels: list[int]) -> list[str | None]:
    """Check compressed RLE counts strings without rasterising them.

    The strings pycocotools could misread (empty, outside its alphabet, a run cut short at the end
    or longer than it writes) are found in a few numpy passes; the others are decoded by
    pycocotools' own C parser (`streamvis.data.rle_fast`), which gives each string's run total and
    foreground area. Only the strings that fail (or all of them, where that parser is not reachable) go
    through the exact numpy decoder, which words the reason.

    Args:
        strings: S counts, ``str`` or ``bytes``, as in ``{"size": [H, W], "counts": ...}``.
        pixels: S values of H*W.

    Returns:
        S entries: None for a valid string, else the reason in words.
    """
    return _RleCheck(strings, pixels).parse().reasons()


class _RleCheck:
    """`rle_string_problems` in three steps: the C parse (`parse`) may run on another thread.

    The constructor does the C-speed pre-checks (and the whole numpy path where it is needed);
    `parse` hands the other strings to pycocotools' parser (GIL released); `reasons` compares the
    totals, records the areas and words the failures.
    """

    def __init__(self, strings: list, pixels: list[int]):
        self.strings, self.pixels = strings, pixels
        self.done: list[str | None] | None = None  # the reasons, when known without the C parse
        self.kept: bytes | None = None  # the strings for the C parse, concatenated
        self.parsed = None
        if not strings:
            self.done = []
            return
        if not rle_fast.available():
            self.done = _rle_string_problems_numpy(list(map(_encoded, strings)), pixels)
            return
        text, lengths = _joined(strings)
        ends = np.cumsum(lengths)
        suspect = lengths == 0
        chunks = np.frombuffer(text, np.uint8) - np.uint8(48)  # 6-bit chunks; below '0' wraps past 207
        if chunks.size and chunks.max() >= 64:  # characters outside '0'..'o'
            suspect |= np.array([bool(text[e - n : e].translate(None, _RLE_ALPHABET))
                                 for e, n in zip(ends.tolist(), lengths.tolist())])
        run_end = chunks < 0x20  # no continuation bit
        nonempty = lengths > 0
        suspect[nonempty] |= ~run_end[ends[nonempty] - 1]  # the last run never ends
        if _has_long_run(run_end):  # a run longer than pycocotools writes
            every = _pieces(text, ends, lengths, np.arange(len(strings)))
            self.done = _rle_string_problems_numpy(every, pixels)
            return
        runs = np.zeros(len(strings), np.int64)  # runs per string (empty strings hold no character)
        # int32 sums: a batch holds far fewer than 2**31 characters
        runs[nonempty] = np.add.reduceat(run_end.view(np.uint8), (ends - lengths)[nonempty], dtype=np.int32)
        self.text, self.ends, self.lengths = text, ends, lengths
        self.good = np.flatnonzero(~suspect)
        self.recheck = np.flatnonzero(suspect).tolist()
        self.runs = runs[self.good]
        if self.good.size:
            # the suspects would spoil their neighbours' runs in one concatenated parse
            self.kept = b"".join(_pieces(text, ends, lengths, self.good.tolist())) if self.recheck else text

    def parse(self) -> _RleCheck:
        """The C parse (releases the GIL); safe to call on another thread, once."""
        if self.kept is not None:
            self.parsed = rle_fast.Parsed(self.kept)
        return self

    def reasons(self) -> list[str | None]:
        """None for each valid string, else the reason in words."""
        if self.done is not None:
            return self.done
        strings, pixels, good, recheck = self.strings, self.pixels, self.good, self.recheck
        if self.parsed is not None:
            totals, areas = self.parsed.sums(self.runs)
            failed = totals != np.asarray(pixels, dtype=np.int64)[good]  # a negative run reads as >= 2**31
            if failed.any() or recheck:
                recheck += good[failed].tolist()
                rle_fast.record_areas([strings[i] for i in good[~failed].tolist()], areas[~failed])
            else:
                rle_fast.record_areas(strings, areas)
        reasons: list[str | None] = [None] * len(strings)
        if recheck:
            recheck.sort()
            slow = _rle_string_problems_numpy(_pieces(self.text, self.ends, self.lengths, recheck),
                                              [pixels[i] for i in recheck])
            for i, reason in zip(recheck, slow):
                reasons[i] = reason or ("pycocotools reads this RLE counts string as runs that do not sum to "
                                        f"height*width = {pixels[i]} (a run past 2**32)")
        return reasons


def _encoded(counts) -> bytes:
    return counts.encode("utf-8", "surrogatepass") if isinstance(counts, str) else bytes(counts)


def _joined(strings: list) -> tuple[bytes, np.ndarray]:
    """The strings' bytes concatenated, and (S,) the byte length of each."""
    try:
        joined = "".join(strings)  # the common case: str from json, ASCII (one copy, lengths as is)
    except TypeError:
        joined = None
    if joined is not None and joined.isascii():
        return joined.encode("ascii"), np.fromiter(map(len, strings), np.int64, len(strings))
    encoded = list(map(_encoded, strings))
    return b"".join(encoded), np.fromiter(map(len, encoded), np.int64, len(encoded))


def _pieces(text: bytes, ends: np.ndarray, lengths: np.ndarray, indices) -> list[bytes]:
    """The bytes of the strings at `indices`, cut from their concatenation."""
    return [text[e - n : e] for e, n in zip(ends[indices].tolist(), lengths[indices].tolist())]


def _has_long_run(run_end: np.ndarray) -> bool:
    """Whether `_MAX_RUN_CHARS` characters in a row carry the continuation bit (a run of more than 6)."""
    if run_end.size < _MAX_RUN_CHARS:
        return False
    window = run_end[:-1] | run_end[1:]  # 2 characters: any run end among them
    wide = window[:-2] | window[2:]  # 4
    wide = wide[:-2]
    wide |= window[4:]  # 6 (= _MAX_RUN_CHARS)
    return not wide.all()


def _rle_string_problems_numpy(encoded: list[bytes], pixels: list[int]) -> list[str | None]:
    """`rle_string_problems` by the exact numpy decoder (`_decode_runs`), for encoded strings."""
    reasons: list[str | None] = [None] * len(encoded)
    kept, keep = [], []
    for i, raw in enumerate(encoded):
        if not raw:
            reasons[i] = "an empty RLE counts string (an empty mask still has one run of zeros)"
        elif raw.translate(None, _RLE_ALPHABET):
            reasons[i] = "the RLE counts string has characters pycocotools never writes (only '0'..'o')"
        else:
            kept.append(raw)
            keep.append(i)
    if not keep:
        return reasons
    lengths = np.array([len(r) for r in kept])
    runs, owner, bad = _decode_runs(b"".join(kept), lengths)
    negative = np.zeros(len(keep), bool)
    negative[owner[runs < 0]] = True
    totals = np.bincount(owner, weights=runs.astype(np.float64), minlength=len(keep))
    for j, i in enumerate(keep):
        if bad[j]:
            reasons[i] = "the RLE counts string is cut short or has a run longer than pycocotools writes"
        elif negative[j]:
            reasons[i] = "the RLE counts string decodes to a negative run length"
        elif totals[j] != pixels[i]:
            reasons[i] = (f"the RLE counts string's runs sum to {int(totals[j])}, not height*width = "
                          f"{pixels[i]} (truncated or not for this size)")
    return reasons


_RLE_ALPHABET = bytes(range(48, 112))  # pycocotools' rleToString writes chars 48 ('0') .. 111 ('o')


class _RleBatch:
    """Compressed RLE strings collected during a pass, checked in bulk (`rle_string_problems`)."""

    def __init__(self):
        self.counts: list = []  # every queued string
        self.pixels: list[int] = []  # H*W of each
        self.groups: list[tuple] = []  # (first string, frames, problem context kwargs) per add
        self.chars = 0
        self.pending: collections.deque = collections.deque()  # (check, groups, parse future) in order

    def add(self, counts: list, pixels: int, frames: list[int], where: dict) -> None:
        """Queue the `counts` of `frames` of one track; a problem names ``segmentations[frame].counts``."""
        if not counts:
            return
        self.groups.append((len(self.counts), frames, where))
        self.counts.extend(counts)
        self.pixels.extend([pixels] * len(counts))
        self.chars += sum(map(len, counts))

    @property
    def full(self) -> bool:
        return self.chars >= (_RLE_BATCH_CHARS if rle_fast.available() else _RLE_BATCH_CHARS_NUMPY)

    def flush(self, final: bool = True) -> Iterator[Problem]:
        """Check the queued strings; yield the problems of the batches that are done.

        Where another CPU is free, the C parse of a batch runs on a worker thread while the caller
        goes on reading entries; a non-final flush then yields the problems of the batch before.
        The final flush yields everything left.
        """
        counts, pixels, groups = self.counts, self.pixels, self.groups
        self.counts, self.pixels, self.groups, self.chars = [], [], [], 0
        if counts:
            check = _RleCheck(counts, pixels)
            worker = _parse_worker() if check.kept is not None else None
            self.pending.append((check, groups, worker.submit(check.parse) if worker else None))
        while self.pending and (final or len(self.pending) > 1):
            check, groups, parsing = self.pending.popleft()
            if parsing is None:
                check.parse()
            else:
                parsing.result()
            reasons = check.reasons()
            bad = [i for i, reason in enumerate(reasons) if reason is not None]
            firsts = [first for first, _, _ in groups]
            for i in bad:
                first, frames, where = groups[bisect.bisect_right(firsts, i) - 1]
                frame = frames[i - first]
                yield Problem("bad_segmentation", reasons[i], field=f"segmentations[{frame}].counts",
                              frame=frame, **where)


_WORKER: list = []  # [executor or None, pid it was made in]


def _parse_worker():
    """One worker thread for the C parses, or None on a single CPU (where it would only add switches).

    A process forked after the worker started has no thread behind the inherited executor: it
    makes its own.
    """
    if not _WORKER or _WORKER[1] != os.getpid():
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cpus = os.cpu_count() or 1
        executor = None
        if cpus > 1:
            from concurrent.futures import ThreadPoolExecutor

            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamvis-rle")
        _WORKER[:] = [executor, os.getpid()]
    return _WORKER[0]


# ------------------------------------------------------------------------------------ annotations
def _top_list(data: dict, key: str, path, *, optional=False) -> tuple[list | None, Problem | None]:
    value = data.get(key)
    if value is None and optional:
        return [], None
    if key not in data:
        return None, Problem("bad_structure", f"missing required key '{key}'", path=path, field=key)
    if not isinstance(value, list):
        return None, Problem("bad_structure", f"'{key}' must be a list, got {type(value).__name__}",
                             path=path, field=key)
    return value, None


def _items(items: list, kind: str, required: tuple[str, ...], path, ids: dict) -> Iterator:
    """Check that each item is an object with the required keys and a unique integer id.

    Yields, in order, a `Problem` for each problem and an ``(index, item)`` pair for each valid
    item. Fills `ids` with ``{id: index}`` of every item with an integer id (first occurrence), so
    that an item with a missing key is still a known id (references to it are not "unknown").
    """
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            yield Problem("bad_item", f"must be an object, got {type(item).__name__}", path=path,
                          where=f"{kind}[{i}]")
            continue
        if "id" in item and not _is_id(item["id"]):
            yield Problem("bad_item", "id must be an integer of at most 64 bits, got "
                          f"{_short.repr(item['id'])}", path=path, where=f"{kind}[{i}]", field="id")
            continue
        missing = [k for k in required if k not in item]
        if missing:
            yield Problem("bad_item", f"missing required key(s) {missing}", path=path,
                          where=_where(kind, i, item), field=missing[0])
        if "id" not in item:
            continue
        if item["id"] in ids:
            yield Problem("duplicate_id", f"duplicated id {item['id']} (also at {kind}[{ids[item['id']]}])",
                          path=path, where=_where(kind, i, item), field="id")
            continue
        ids[item["id"]] = i
        if not missing:
            yield i, item


@dataclass
class _Frames:
    """What the annotation checks need to know of a video: frame count and size (None: unknown)."""

    length: int | None
    height: int | None
    width: int | None


def _video_problems(video: dict, where: str, path) -> tuple[list[Problem], _Frames]:
    vid = video["id"]
    problems = []

    def add(kind, message, field):
        problems.append(Problem(kind, message, path=path, where=where, field=field, video_id=vid))

    size = {}
    for key in ("width", "height"):
        value = video[key]
        if not _is_int(value) or value <= 0:
            add("bad_video", f"must be a positive integer, got {_short.repr(value)}", key)
        elif value > MAX_FRAME_SIDE:
            add("bad_video", f"{value} is larger than the {MAX_FRAME_SIDE}-pixel limit of a frame side", key)
        else:
            size[key] = int(value)
    length = video["length"]
    length_ok = _is_int(length) and length >= 0
    if not length_ok:
        add("bad_video", f"must be a non-negative integer, got {_short.repr(length)}", "length")
    names = video["file_names"]
    names_ok = isinstance(names, list) and all(isinstance(n, str) for n in names)
    if not names_ok:
        add("bad_video", "must be a list of strings", "file_names")
    elif length_ok and len(names) != length:
        add("length_mismatch", f"has {len(names)} entries but the video's length is {length}", "file_names")
    if names_ok:
        for f, name in enumerate(names):
            reason = check_file_name(name)
            if reason is not None:
                add("unsafe_path", reason, f"file_names[{f}]")
    frames = len(names) if names_ok else (int(length) if length_ok else None)
    return problems, _Frames(frames, size.get("height"), size.get("width"))


def _per_frame_list(value, key: str, length: int | None, **where) -> tuple[list | None, Problem | None]:
    if not isinstance(value, list):
        return None, Problem("length_mismatch" if key != "segmentations" else "bad_segmentation",
                             f"must be a list (one entry per frame), got {type(value).__name__}",
                             field=key, **where)
    if length is not None and len(value) != length:
        message = f"has {len(value)} entries but the video's length is {length}"
        return None, Problem("length_mismatch", message, field=key, **where)
    return value, None


def _polygon_problem(seg: list, height: int, width: int) -> str | None:
    """Polygon coordinates far outside the frame (pycocotools' memory grows with the perimeter)."""
    low_x, high_x = -POLYGON_MARGIN * width, (POLYGON_MARGIN + 1) * width
    low_y, high_y = -POLYGON_MARGIN * height, (POLYGON_MARGIN + 1) * height
    for k, poly in enumerate(seg):
        xs, ys = poly[0::2], poly[1::2]
        if min(xs) < low_x or max(xs) > high_x or min(ys) < low_y or max(ys) > high_y:
            return (f"polygon {k} has a coordinate more than {POLYGON_MARGIN} frame sizes outside the "
                    f"{height}x{width} frame")
    return None


def _segmentation_problems(segs: list, frames: _Frames, rle_only: bool, batch: _RleBatch,
                           **where) -> Iterator[Problem]:
    """Check per-frame segmentations without decoding; compressed strings go to `batch`."""
    height, width = frames.height, frames.width
    if height is None or width is None:
        return  # the video's size is invalid (reported with the video)
    size, pixels = [height, width], height * width
    strings, string_frames, others = [], [], []
    for f, seg in enumerate(segs):  # the common case (a compressed RLE of the video's size), kept lean
        if seg is None:
            continue
        if type(seg) is dict and seg.get("size") == size and type(seg.get("counts")) in (str, bytes):
            strings.append(seg["counts"])
            string_frames.append(f)
        else:
            others.append(f)
    batch.add(strings, pixels, string_frames, where)
    for f in others:
        seg = segs[f]
        field = f"segmentations[{f}]"
        if rle_only and not isinstance(seg, dict):
            yield Problem("bad_segmentation",
                          f"a result segmentation must be an RLE dict or null, got {type(seg).__name__}",
                          field=field, frame=f, **where)
            continue
        try:
            check_segmentation(seg, height, width, field=field)
        except DataFormatError as err:
            yield Problem("bad_segmentation", err.reason, field=err.field, frame=f, **where)
            continue
        if isinstance(seg, list):
            reason = _polygon_problem(seg, height, width)
            if reason:
                yield Problem("bad_segmentation", reason, field=field, frame=f, **where)
        elif isinstance(seg["counts"], (str, bytes)):
            batch.add([seg["counts"]], pixels, [f], where)


def _box_and_area_problems(ann: dict, length: int | None, **where) -> Iterator[Problem]:
    if ann.get("bboxes") is not None:
        boxes, problem = _per_frame_list(ann["bboxes"], "bboxes", length, **where)
        if problem:
            yield problem
        boxes = boxes or []
        fast = all(b is None or (type(b) is list and len(b) == 4 and _finite_plain_numbers(b)) for b in boxes)
        for f, box in enumerate(() if fast else boxes):
            if box is not None and not (
                isinstance(box, list) and len(box) == 4
                and all(_is_number(v) and math.isfinite(v) for v in box)
            ):
                message = f"must be null or [x, y, w, h] finite numbers, got {_short.repr(box)}"
                yield Problem("bad_value", message, field=f"bboxes[{f}]", frame=f, **where)
    if ann.get("areas") is not None:
        areas, problem = _per_frame_list(ann["areas"], "areas", length, **where)
        if problem:
            yield problem
        present = [a for a in areas or [] if a is not None]
        fast = _finite_plain_numbers(present) and min(present, default=0) >= 0
        for f, area in enumerate(() if fast else areas or []):
            if area is not None and not (_is_number(area) and math.isfinite(area) and area >= 0):
                yield Problem("bad_value", f"must be null or a non-negative number, got {_short.repr(area)}",
                              field=f"areas[{f}]", frame=f, **where)


def _reference_problems(entry: dict, videos: dict, categories: dict | None, **where) -> Iterator[Problem]:
    for key, known, kind in (("video_id", videos, "unknown_video"), ("category_id", categories,
                                                                      "unknown_category")):
        if not _is_id(entry[key]) or (known is not None and entry[key] not in known):
            yield Problem(kind, f"unknown {key} {_short.repr(entry[key])}", field=key, **where)


def _annotation_problems(ann: dict, where: str, videos: dict, categories: dict, frames: dict,
                         unknown: _Frames, path, batch: _RleBatch) -> Iterator[Problem]:
    context = {"path": path, "where": where, "video_id": _plain_id(ann["video_id"]),
               "annotation_id": ann["id"]}
    references = list(_reference_problems(ann, videos, categories, **context))
    yield from references
    if ann.get("iscrowd", 0) not in (0, 1):
        yield Problem("bad_value", f"must be 0 or 1, got {_short.repr(ann['iscrowd'])}", field="iscrowd",
                      **context)
    if any(p.kind == "unknown_video" for p in references):
        return  # per-frame lists cannot be checked without the video
    video_frames = frames.get(ann["video_id"], unknown)  # unknown: the video entry itself is invalid
    segs, problem = _per_frame_list(ann["segmentations"], "segmentations", video_frames.length, **context)
    if problem:
        yield problem
    if segs is not None:
        yield from _segmentation_problems(segs, video_frames, False, batch, **context)
    yield from _box_and_area_problems(ann, video_frames.length, **context)


def ytvis_problems(data, *, path=None) -> Iterator[Problem]:
    """Every problem of a YouTube-VIS 2019/2021 or OVIS annotation dict, in file order.

    Extra keys are allowed; ``annotations`` may be absent or null (valid/test splits). Problems
    of compressed RLE strings are found in bulk: they come after the other problems (of every
    256 KB of strings), so the first record is the first structural problem when there is one.

    Args:
        data: the parsed json.
        path: the file to name in the records.

    Yields:
        `Problem` records (kinds in `KINDS`); none for a valid dict.
    """
    path = None if path is None else str(path)
    if not isinstance(data, dict):
        yield Problem("bad_structure", f"the top level must be a json object, got {type(data).__name__}",
                      path=path)
        return
    video_list, video_problem = _top_list(data, "videos", path)
    videos, frames = {}, {}
    if video_problem:
        yield video_problem
    else:
        for element in _items(video_list, "videos", VIDEO_KEYS, path, videos):
            if isinstance(element, Problem):
                yield element
                continue
            i, video = element
            problems, frames[video["id"]] = _video_problems(video, _where("videos", i, video), path)
            yield from problems
    category_list, category_problem = _top_list(data, "categories", path)
    categories = {}
    if category_problem:
        yield category_problem
    else:
        yield from (e for e in _items(category_list, "categories", CATEGORY_KEYS, path, categories)
                    if isinstance(e, Problem))
    annotation_list, annotation_problem = _top_list(data, "annotations", path, optional=True)
    if annotation_problem:
        yield annotation_problem
    if video_problem or category_problem or annotation_problem:
        return  # annotations cannot be checked against missing videos or categories
    batch = _RleBatch()
    unknown = _Frames(None, None, None)
    for element in _items(annotation_list, "annotations", ANNOTATION_KEYS, path, {}):
        if isinstance(element, Problem):
            yield element
            continue
        i, ann = element
        yield from _annotation_problems(ann, _where("annotations", i, ann), videos, categories,
                                        frames, unknown, path, batch)
        if batch.full:
            yield from batch.flush(final=False)
    yield from batch.flush()


# ---------------------------------------------------------------------------------------- results
def results_problems(results, gt: dict | None = None, *, path=None) -> Iterator[Problem]:
    """Every problem of a results list, in file order.

    Each entry needs ``video_id``, ``category_id`` (known to `gt` when given), a finite numeric
    ``score`` and ``segmentations``: one compressed or uncompressed RLE dict (of the video's size) or
    null per frame of the video. Without `gt` only the structure is checked.

    Args:
        results: the parsed json.
        gt: a valid ground-truth dict (as `load_ytvis` returns), or None.
        path: the file to name in the records.
    """
    path = None if path is None else str(path)
    if not isinstance(results, list):
        message = f"results must be a json list, got {type(results).__name__}"
        yield Problem("bad_structure", message, path=path)
        return
    videos = categories = frames = None
    if gt is not None:
        videos = {v["id"]: v for v in gt["videos"]}
        categories = {c["id"]: c for c in gt["categories"]}
        frames = {vid: _Frames(v["length"], v["height"], v["width"]) for vid, v in videos.items()}
    batch = _RleBatch()
    for i, entry in enumerate(results):
        yield from _result_problems(entry, i, videos, categories, frames, path, batch)
        if batch.full:
            yield from batch.flush(final=False)
    yield from batch.flush()


def _result_problems(entry, i: int, videos, categories, frames, path, batch) -> Iterator[Problem]:
    where = f"results[{i}]"
    if not isinstance(entry, dict):
        yield Problem("bad_item", f"a result must be an object, got {type(entry).__name__}", path=path,
                      where=where, result_index=i)
        return
    missing = [k for k in RESULT_KEYS if k not in entry]
    if missing:
        yield Problem("bad_item", f"missing required key(s) {missing}", path=path, where=where,
                      field=missing[0], result_index=i)
        return
    context = {"path": path, "where": where, "video_id": _plain_id(entry["video_id"]), "result_index": i}
    references = list(_reference_problems(entry, videos, categories, **context))
    yield from references
    score = entry["score"]
    if not _is_number(score) or not math.isfinite(score):
        yield Problem("bad_value", f"score must be a finite number, got {_short.repr(score)}", field="score",
                      **context)
    known = videos is not None and not any(p.kind == "unknown_video" for p in references)
    video_frames = frames[entry["video_id"]] if known else _Frames(None, None, None)
    segs, problem = _per_frame_list(entry["segmentations"], "segmentations", video_frames.length, **context)
    if problem:
        yield problem
    if segs is None:
        return
    if video_frames.height is None:
        for f, seg in enumerate(segs):
            if seg is not None and not isinstance(seg, dict):
                yield Problem("bad_segmentation", "a result segmentation must be an RLE dict or null",
                              field=f"segmentations[{f}]", frame=f, **context)
        return
    yield from _segmentation_problems(segs, video_frames, True, batch, **context)


# ----------------------------------------------------------------------------------- frames, masks
def _usable_videos(data) -> list[dict]:
    """Video entries whose frames can be checked: an integer id, a valid size, file names strings."""
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        return []
    usable = []
    for video in data["videos"]:
        if not isinstance(video, dict) or not _is_int(video.get("id")):
            continue
        size_ok = all(_is_int(video.get(k)) and 0 < video[k] <= MAX_FRAME_SIDE for k in ("width", "height"))
        names = video.get("file_names")
        if size_ok and isinstance(names, list) and all(isinstance(n, str) for n in names):
            usable.append(video)
    return usable


def count_checkable_frames(data) -> int:
    """How many frame files `frame_problems` opens."""
    return sum(len(v["file_names"]) for v in _usable_videos(data))


def frame_problems(data, image_root, *, progress: bool = False) -> Iterator[Problem]:
    """Open every frame file of the usable videos of `data`: missing, unreadable or wrongly sized files.

    Videos whose entry is invalid (see `ytvis_problems`) and unsafe file names are skipped: they
    are reported by `ytvis_problems`. Frames are decoded at 1/8 scale for JPEG (every byte is still
    read, so truncation is found, faster).

    Args:
        data: the parsed annotation json.
        image_root: the folder the ``file_names`` are relative to.
        progress: show a tqdm progress bar over the videos.

    Yields:
        ``missing_frame``, ``unreadable_frame`` and ``frame_size_mismatch`` records, whose ``where``
        is ``"<file name> (video <id>, frame <index>)"``.
    """
    from PIL import Image
    from tqdm import tqdm

    videos = _usable_videos(data)
    for video in tqdm(videos, desc="checking videos", unit="video", disable=not progress):
        for frame, file_name in enumerate(video["file_names"]):
            if check_file_name(file_name) is not None:
                continue
            where = f"{file_name} (video {video['id']}, frame {frame})"
            context = {"where": where, "video_id": video["id"], "frame": frame}
            full_path = os.path.join(str(image_root), file_name)
            if not os.path.isfile(full_path):
                yield Problem("missing_frame", "file not found", **context)
                continue
            try:
                with Image.open(full_path) as im:
                    width, height = im.size
                    im.draft("RGB", (max(width // 8, 1), max(height // 8, 1)))
                    im.load()
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
                yield Problem("unreadable_frame", f"cannot decode the image ({err})", **context)
                continue
            if (height, width) != (video["height"], video["width"]):
                yield Problem("frame_size_mismatch", f"the frame is {height}x{width} (HxW) but the json says "
                                                     f"{video['height']}x{video['width']}", **context)


def mask_warnings(data, *, path=None) -> Iterator[Problem]:
    """Decode the valid segmentations of `data` and warn about empty ones (``empty_mask``).

    Only segmentations that `ytvis_problems` accepts are decoded (a malformed one is its error).
    """
    from streamvis.data.masks import rle_area, segmentation_to_rle

    path = None if path is None else str(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        return
    frames = {}
    for video in _usable_videos(data):
        frames.setdefault(video["id"], _Frames(len(video["file_names"]), video["height"], video["width"]))
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not isinstance(ann.get("segmentations"), list):
            continue
        video_frames = frames.get(ann.get("video_id")) if _is_int(ann.get("video_id")) else None
        if video_frames is None:
            continue
        context = {"path": path, "where": _where("annotations", i, ann), "video_id": ann["video_id"],
                   "annotation_id": _plain_id(ann.get("id"))}
        batch = _RleBatch()
        segs = ann["segmentations"]
        broken = {p.frame for p in _segmentation_problems(segs, video_frames, False, batch, **context)}
        broken |= {p.frame for p in batch.flush()}
        for f, seg in enumerate(segs):
            if seg is None or f in broken:
                continue
            rle = segmentation_to_rle(seg, video_frames.height, video_frames.width)
            if rle_area(rle) == 0:
                yield Problem("empty_mask", "the segmentation has no foreground pixel (use null)",
                              field=f"segmentations[{f}]", frame=f, **context)
