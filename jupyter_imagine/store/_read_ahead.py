"""Rows read in a worker thread while the caller works on the ones already read.

A database driver waits without holding the GIL: ``sqlite3`` while SQLite steps a statement,
psycopg while the server computes and sends. :func:`read_ahead` runs such an iteration in a
worker thread, so while the caller parses one row (Python, holding the GIL) the database is
already computing the next on the other core. The history frame reads its parts this way
(:meth:`jupyter_imagine.store.Store.frame`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["read_ahead"]

T = TypeVar("T")

_ITEM, _ERROR, _END = range(3)


def read_ahead(rows: Callable[[], Iterable[T]]) -> Iterator[T]:
    """The items of ``rows()``, iterated in a daemon thread and yielded as soon as each is read.

    The worker never waits for the caller (the queue is unbounded), so whatever ``rows()``
    holds (a lock, a cursor) is released as soon as it is exhausted, even if the caller stopped
    early; closing this generator (the caller raised, or broke off) asks the worker to stop after
    the item it is reading. An exception in the worker is raised here, where its item would
    have come.
    """
    items: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        try:
            iterator = iter(rows())
            try:
                for item in iterator:
                    items.put((_ITEM, item))
                    if stop.is_set():
                        break
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # handed to the caller, raised there
            items.put((_ERROR, exc))
        items.put((_END, None))

    threading.Thread(target=work, name="jupyter_imagine-read-ahead", daemon=True).start()
    try:
        while True:
            tag, value = items.get()
            if tag == _END:
                return
            if tag == _ERROR:
                raise value
            yield value
    finally:
        stop.set()
