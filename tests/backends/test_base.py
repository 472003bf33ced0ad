"""The backend protocol's helpers: when the raw state copies may run (single_threaded)."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable

import pytest

from rngstate.backends import base


def counts_another_thread(before_it_starts: Callable[[], None] | None = None) -> bool:
    """single_threaded() while a plain thread waits (after ``before_it_starts()``, if given)."""
    release = threading.Event()
    waiter = threading.Thread(target=release.wait)
    if before_it_starts is not None:
        before_it_starts()
    waiter.start()
    try:
        return not base.single_threaded()
    finally:
        release.set()
        waiter.join()


@pytest.mark.usefixtures("no_other_threads")
def test_queue_feeder_threads_do_not_count_but_every_other_thread_does() -> None:
    assert base.single_threaded()
    queue: multiprocessing.Queue[int] = multiprocessing.Queue()
    queue.put(1)  # starts the queue's feeder thread, which only pickles and sends
    assert queue.get(timeout=60) == 1
    assert queue._thread is not None and queue._thread.is_alive()  # type: ignore[attr-defined]
    assert base.single_threaded()
    assert counts_another_thread()
    assert base.single_threaded()

    def end_the_feeder() -> None:
        queue.close()
        queue.join_thread()

    # The feeder ends and another thread starts: the count is as it was, the feeder's end is
    # what makes it count again.
    assert counts_another_thread(end_the_feeder)
    assert base.single_threaded()
