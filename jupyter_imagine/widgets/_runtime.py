"""Threads for the widgets: who writes a widget's traits, and where slow work runs.

DESIGN.md, "The engine": only the engine thread writes a widget's traits after it is built.
Job observers already run there; a widget message handler (main thread, or a kernel subshell
thread in JupyterLab 4.6) does exactly one thing: :func:`defer` the work onto the engine. Work
that would hold the engine's loop for long (decoding and shrinking images, downloading a
preview) runs on a small worker pool (:func:`offload`), whose result is handed back to the
engine thread to be written.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .._secrets import get_logger

if TYPE_CHECKING:  # pragma: no cover
    from ..engine import Engine

__all__ = ["defer", "engine", "offload"]

logger = get_logger(__name__)
T = TypeVar("T")

#: Worker threads for image work (default 2: thumbnails are quick, previews are rare).
WORKERS = 2
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def engine() -> Engine:
    """The shared engine (started on first use)."""
    from ..api import get_engine

    return get_engine()


def _logged(fn: Callable[..., T]) -> Callable[..., T | None]:
    def run(*args: Any) -> T | None:
        try:
            return fn(*args)
        except Exception:  # a widget bug must never break the engine
            logger.exception("widget update failed")
            return None

    return run


def defer(fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
    """Run ``fn(*args)`` on the engine thread; errors are logged, never raised."""
    return engine().defer(_logged(fn), *args)


def offload(fn: Callable[..., T], *args: Any, then: Callable[[T], Any] | None = None) -> None:
    """Run ``fn(*args)`` on a worker thread, then ``then(result)`` on the engine thread.

    An error in ``fn`` is logged and ``then`` is not called.
    """
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=WORKERS, thread_name_prefix="jupyter-imagine-widgets"
            )
        pool = _pool

    def done(future: concurrent.futures.Future[T]) -> None:
        error = future.exception()
        if error is not None:
            logger.warning("widget image work failed: %s", error)
            return
        if then is not None:
            defer(then, future.result())

    pool.submit(fn, *args).add_done_callback(done)
