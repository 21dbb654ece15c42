"""`streamvis.data.results_filter`: which results entries predict writes and render draws."""

from __future__ import annotations

import pytest

from streamvis.data.results_filter import ResultsFilter, category_names, parse_classes
from streamvis.errors import StreamvisError


def _entry(video_id, category_id, score):
    return {"video_id": video_id, "category_id": category_id, "score": score, "segmentations": [None]}


ENTRIES = [_entry(1, 1, 0.2), _entry(1, 2, 0.9), _entry(1, 1, 0.5), _entry(2, 1, 0.1), _entry(2, 2, 0.05)]


def test_no_filter_keeps_everything_in_order():
    assert not ResultsFilter().active
    assert ResultsFilter().apply(ENTRIES) == ENTRIES


def test_score_threshold_classes_and_max_tracks_per_video():
    assert ResultsFilter(score_threshold=0.2).apply(ENTRIES) == [ENTRIES[0], ENTRIES[1], ENTRIES[2]]
    assert ResultsFilter(category_ids=frozenset({2})).apply(ENTRIES) == [ENTRIES[1], ENTRIES[4]]
    # per video the best 2 by score, file order kept
    assert ResultsFilter(max_tracks=2).apply(ENTRIES) == [ENTRIES[1], ENTRIES[2], ENTRIES[3], ENTRIES[4]]
    assert ResultsFilter(max_tracks=1).apply(ENTRIES) == [ENTRIES[1], ENTRIES[3]]
    # the class filter applies before the cap: video 2's best cat is kept
    assert ResultsFilter(category_ids=frozenset({1}), max_tracks=1).apply(ENTRIES) == [ENTRIES[2], ENTRIES[3]]
    with pytest.raises(StreamvisError, match="at least 1"):
        ResultsFilter(max_tracks=0)


def test_parse_classes_by_name_or_id():
    names = {1: "person", 3: "Car"}
    assert parse_classes(None, names) is None and parse_classes("", names) is None
    assert parse_classes("person, car", names) == {1, 3}
    assert parse_classes("3", names) == {3}
    assert parse_classes("7", {}) == {7}  # no names known: ids are taken as given
    with pytest.raises(StreamvisError, match=r"'7' is not a category name or id.*1=person, 3=Car"):
        parse_classes("7", names)


def test_category_names_from_a_model_config():
    assert category_names(("cat", "dog"), None) == {1: "cat", 2: "dog"}
    assert category_names(("cat", "dog"), (5, 9)) == {5: "cat", 9: "dog"}
    assert category_names(None, (5,)) == {}
