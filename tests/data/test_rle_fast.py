"""pycocotools' C parser as the RLE string check (`streamvis.data.rle_fast`) against the numpy decoder."""

from __future__ import annotations

import os
import time

import numpy as np
import pycocotools.mask as mask_util
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamvis.data import rle_fast, validate
from streamvis.data.validate import rle_string_problems

pytestmark = pytest.mark.skipif(not rle_fast.available(),
                                reason="pycocotools' rleFrString is not reachable here")


def _runs(strings):
    return np.array([sum(1 for c in s if c - 48 < 32) for s in strings])


def _numpy_totals(strings):
    runs, owner, _ = validate._decode_runs(b"".join(strings), np.array([len(s) for s in strings]))
    totals = np.bincount(owner, weights=runs.astype(np.float64), minlength=len(strings)).astype(np.int64)
    return totals


def test_totals_equal_the_numpy_decoder_on_pycocotools_strings():
    rng = np.random.default_rng(3)
    strings = []
    for _ in range(300):  # odd and even run counts, one-run strings, long runs (up to 6 chars)
        h, w = int(rng.integers(1, 300)), int(rng.integers(1, 300))
        mask = rng.random((h, w)) < rng.choice([0.0, 0.01, 0.5, 0.99, 1.0])
        strings.append(mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"])
    totals, areas = rle_fast.run_totals(strings, _runs(strings))
    expected_totals = _numpy_totals(strings)
    assert totals.tolist() == expected_totals.tolist()
    rles = [{"size": [1, 1], "counts": c} for c in strings]  # area() does not read the size
    expected_areas = [int(a) for s in range(0, len(rles), 200) for a in mask_util.area(rles[s : s + 200])]
    assert areas.tolist() == expected_areas


def test_remembered_areas_serve_the_evaluator_only_inside_the_block():
    from streamvis.evaluation.tables import rle_areas

    mask = np.zeros((6, 8), np.uint8)
    mask[1:4, 2:5] = 1
    counts = mask_util.encode(np.asfortranarray(mask))["counts"].decode()
    with rle_fast.remember_areas() as log:
        assert rle_string_problems([counts], [48]) == [None]
        assert log.flat()[1].tolist() == [9.0]
        log.flat()[1][0] = 5  # what the evaluator reads comes from the log, not from another parse
        equal_copy = "".join(list(counts))  # an equal string that is another object: not remembered
        assert rle_fast.known_areas([equal_copy])[1].tolist() == [False]
        assert rle_areas([{"size": [6, 8], "counts": counts}]).tolist() == [5.0]
    assert rle_fast.known_areas([counts]) is None
    assert rle_areas([{"size": [6, 8], "counts": counts}]).tolist() == [9.0]


def test_area_log_answers_stretches_and_any_order():
    strings = [f"{i}" for i in range(6)]  # distinct objects
    other = "not recorded"
    with rle_fast.remember_areas() as log:
        rle_fast.record_areas(strings[:4], [10, 11, 12, 13])
        rle_fast.record_areas(strings[4:], [14, 15])
        areas, known = rle_fast.known_areas(strings[2:5])  # a stretch across two records
        assert areas.tolist() == [12, 13, 14] and known.all()
        areas, known = rle_fast.known_areas([strings[5], other, strings[0], strings[3]])
        assert areas.tolist() == [15, 0, 10, 13] and known.tolist() == [True, False, True, True]
        areas[0] = -1  # the answer is a copy
        assert rle_fast.known_areas(strings[5:])[0].tolist() == [15]
        assert log.flat()[0].size == 6
    with rle_fast.remember_areas():
        assert rle_fast.known_areas(strings)[1].tolist() == [False] * 6  # another block knows nothing


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(alphabet=[chr(c) for c in range(48, 112)], min_size=1, max_size=12), min_size=1,
                max_size=6), st.integers(1, 64))
def test_same_reasons_as_the_numpy_decoder_on_arbitrary_strings(strings, pixels):
    """Any mix (negative runs, cut-short runs, long runs, wrong totals) gets the numpy path's answer."""
    encoded = [s.encode() for s in strings]
    sizes = [pixels] * len(encoded)
    assert rle_string_problems(encoded, sizes) == validate._rle_string_problems_numpy(encoded, sizes)


def test_negative_runs_read_as_large_unsigned_values():
    totals, _ = rle_fast.run_totals([b"0@", b"2@"], np.array([2, 2]))  # runs 0, -16 and 2, -16
    assert totals.tolist() == [2**32 - 16, 2**32 - 14]
    negative = "the RLE counts string decodes to a negative run length"
    assert rle_string_problems([b"0@", b"2@"], [4, 4]) == [negative] * 2


def test_the_numpy_path_is_used_where_the_parser_is_missing(monkeypatch):
    calls = []
    monkeypatch.setattr(rle_fast, "available", lambda: False)
    monkeypatch.setattr(validate, "_rle_string_problems_numpy",
                        lambda enc, px: calls.append(len(enc)) or [None] * len(enc))
    assert rle_string_problems(["0o", "8"], [48, 48]) == [None, None]
    assert calls == [2]


def test_only_failing_strings_reach_the_numpy_decoder(monkeypatch):
    good = mask_util.encode(np.asfortranarray(np.eye(6, 8, dtype=np.uint8)))["counts"]
    seen = []
    original = validate._rle_string_problems_numpy
    monkeypatch.setattr(validate, "_rle_string_problems_numpy",
                        lambda enc, px: seen.extend(enc) or original(enc, px))
    reasons = rle_string_problems([good, "8", good, "", good], [48] * 5)
    assert reasons[0] is None and reasons[2] is None and reasons[4] is None
    assert "sum to 8" in reasons[1] and "empty" in reasons[3]
    assert seen == [b"8", b""]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.booleans(), max_size=40))
def test_long_run_window_equals_searching_six_characters_without_a_run_end(flags):
    run_end = np.array(flags, dtype=bool)
    assert validate._has_long_run(run_end) == (run_end.tobytes().find(bytes(6)) >= 0)


def _results_with_broken_strings(n=40):
    rng = np.random.default_rng(5)
    h, w = 30, 40
    gt = {"videos": [{"id": 1, "width": w, "height": h, "length": 3, "file_names": ["a/0.jpg", "a/1.jpg",
                                                                                  "a/2.jpg"]}],
          "categories": [{"id": 1, "name": "c"}], "annotations": []}
    results = []
    for i in range(n):
        segs = []
        for f in range(3):
            mask = rng.random((h, w)) < 0.3
            counts = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()
            if (i + f) % 7 == 0:
                counts = counts[:-1]  # a wrong total (or a run cut short)
            if (i + f) % 11 == 0:
                counts = counts + "x"  # outside the alphabet
            segs.append({"size": [h, w], "counts": counts})
        results.append({"video_id": 1, "category_id": 1, "score": 0.5, "segmentations": segs})
    return gt, results


def test_the_parse_thread_changes_neither_the_problems_nor_their_order(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    gt, results = _results_with_broken_strings()
    monkeypatch.setattr(validate, "_RLE_BATCH_CHARS", 500)  # many batches in flight
    with ThreadPoolExecutor(max_workers=1) as pool:
        monkeypatch.setattr(validate, "_WORKER", [pool, os.getpid()])
        threaded = [(p.where, p.field, p.message) for p in validate.results_problems(results, gt)]
    monkeypatch.setattr(validate, "_WORKER", [None, os.getpid()])
    inline = [(p.where, p.field, p.message) for p in validate.results_problems(results, gt)]
    monkeypatch.setattr(validate, "_RLE_BATCH_CHARS", 1 << 30)  # one batch, no pipelining
    whole = [(p.where, p.field, p.message) for p in validate.results_problems(results, gt)]
    assert threaded == inline == whole
    assert len(whole) > 10 and all(field.endswith(".counts") for _, field, _ in whole)


def test_the_areas_of_every_valid_string_are_recorded_with_the_thread(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from streamvis.evaluation.tables import rle_areas

    gt, results = _results_with_broken_strings()
    monkeypatch.setattr(validate, "_RLE_BATCH_CHARS", 500)
    rles = [s for r in results for s in r["segmentations"]]
    problems = {(int(p.where[8:-1]), int(p.field[14:-8])) for p in validate.results_problems(results, gt)}
    valid = [s for i, r in enumerate(results) for f, s in enumerate(r["segmentations"])
             if (i, f) not in problems]
    expected = [float(mask_util.area(s)) for s in valid]
    with ThreadPoolExecutor(max_workers=1) as pool, rle_fast.remember_areas() as log:
        monkeypatch.setattr(validate, "_WORKER", [pool, os.getpid()])
        list(validate.results_problems(results, gt))
        areas, known = rle_fast.known_areas([s["counts"] for s in rles])
        assert known.sum() == len(valid) == log.flat()[0].size
        assert rle_areas(valid).tolist() == expected


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(st.text(alphabet="ab0_.-/\\:\x00 é", max_size=12))
def test_the_plain_name_shortcut_never_passes_a_name_the_full_check_refuses(name):
    fast = validate.check_file_name(name)
    original = validate._PLAIN_NAME
    try:
        validate._PLAIN_NAME = lambda _: None
        slow = validate.check_file_name(name)
    finally:
        validate._PLAIN_NAME = original
    assert fast == slow


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_parse_worker():
    gt, results = _results_with_broken_strings(6)
    expected = [p.message for p in validate.results_problems(results, gt)]
    validate._parse_worker()  # the parent's worker exists before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: checks with the inherited state, reports through the pipe
        try:
            got = [p.message for p in validate.results_problems(results, gt)]
            os.write(write, b"ok" if got == expected else b"different")
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + 60
    while os.waitpid(pid, os.WNOHANG) == (0, 0):  # a child stuck on a dead worker must fail, not hang
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child waited for the parent's parse worker (it has no thread there)")
        time.sleep(0.05)
    assert os.read(read, 16) == b"ok"
