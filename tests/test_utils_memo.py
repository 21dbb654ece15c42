"""`streamvis.utils.memo.ScopedMemo`: values only inside the block, per thread, objects kept alive."""

from __future__ import annotations

import threading

from streamvis.utils.memo import ScopedMemo


def test_values_exist_only_inside_the_innermost_block():
    memo = ScopedMemo("test")
    first, second = "a" * 10, "b" * 10
    memo.record([(id(first), 1)], [first])  # no block: nothing kept
    assert memo.active is None
    with memo.scope() as outer:
        memo.record([(id(first), 1)], [first])
        with memo.scope() as inner:
            assert memo.active is inner and inner == {}
            memo.record([(id(second), 2)], [second])
        assert memo.active is outer and outer == {id(first): 1}
        assert inner == {id(second): 2}
    assert memo.active is None


def test_a_block_in_one_thread_is_invisible_to_another():
    memo, seen = ScopedMemo("test_threads"), []
    with memo.scope():
        thread = threading.Thread(target=lambda: seen.append(memo.active))
        thread.start()
        thread.join()
    assert seen == [None]


def test_recorded_objects_stay_alive_while_the_block_is_open():
    memo = ScopedMemo("test_alive")
    with memo.scope() as values:
        key = id(object_list := [object()])  # recorded, then the only name for it is dropped
        memo.record([(key, 1)], object_list)
        del object_list
        fresh = [[object()] for _ in range(1000)]  # no new object can take the recorded id
        assert key not in {id(item) for item in fresh} and values == {key: 1}
