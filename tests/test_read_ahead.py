"""Tests of jupyter_imagine.store._read_ahead: iterating in a worker thread."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from jupyter_imagine.store._read_ahead import read_ahead


def test_items_come_in_order_from_another_thread():
    threads = set()

    def rows():
        for i in range(5):
            threads.add(threading.get_ident())
            yield i

    assert list(read_ahead(rows)) == [0, 1, 2, 3, 4]
    assert threads and threading.get_ident() not in threads


def test_the_worker_reads_the_next_item_while_the_caller_works():
    read = []

    def rows():
        for i in range(3):
            read.append(i)
            yield i

    seen = []
    for item in read_ahead(rows):
        deadline = time.monotonic() + 10
        while len(read) < 3 and time.monotonic() < deadline:  # the caller is busy with item 0 …
            time.sleep(0.01)
        seen.append((item, len(read)))
    assert seen[0] == (0, 3)  # … and meanwhile every row was read


def test_an_error_in_the_worker_is_raised_where_its_item_would_come():
    def rows():
        yield 1
        raise sqlite3.OperationalError("disk I/O error")

    items = read_ahead(rows)
    assert next(items) == 1
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        next(items)


def test_a_caller_that_stops_early_releases_what_the_rows_hold():
    lock = threading.Lock()
    produced = []
    closed = threading.Event()

    def rows():
        with lock:
            try:
                for i in range(1000):
                    produced.append(i)
                    time.sleep(0.001)
                    yield i
            finally:
                closed.set()

    items = read_ahead(rows)
    assert next(items) == 0
    items.close()  # what an exception in the caller does
    assert closed.wait(10)
    assert lock.acquire(timeout=10)  # the worker let go of the lock
    assert len(produced) < 1000  # and stopped soon, not at the end
