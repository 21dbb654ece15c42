"""`streamvis.utils.memo.ScopedLog`: a log only inside the block, per thread."""

from __future__ import annotations

import threading

from streamvis.utils.memo import ScopedLog


def test_the_log_exists_only_inside_the_innermost_block():
    memo = ScopedLog("test", list)
    assert memo.active is None
    with memo.scope() as outer:
        memo.active.append(1)
        with memo.scope() as inner:
            assert memo.active is inner and inner == []
            memo.active.append(2)
        assert memo.active is outer and outer == [1]
        assert inner == [2]
    assert memo.active is None


def test_a_block_in_one_thread_is_invisible_to_another():
    memo, seen = ScopedLog("test_threads", dict), []
    with memo.scope():
        thread = threading.Thread(target=lambda: seen.append(memo.active))
        thread.start()
        thread.join()
    assert seen == [None]
