"""Progress in the notebook: a one-line live status (:class:`LiveText`, :func:`progress_bar`)
and :func:`in_kernel`, the test for "running in a Jupyter kernel" that everything showing
progress uses.
"""

from __future__ import annotations

import html
import re
import threading
import time
from typing import Any

from ._secrets import get_logger

__all__ = ["LiveText", "in_kernel", "plain_text", "progress_bar"]

logger = get_logger(__name__)


class LiveText:
    """A one-line HTML status shown in the notebook and updated in place, from any thread.

    In a Jupyter kernel it is an ``ipywidgets.HTML`` (trait sets from the engine thread reach
    the browser live, also while a cell blocks), displayed with a ``display_id`` next to a
    static ``text/html`` copy that :meth:`close` (called from the caller's thread) replaces with
    the final state, so a saved notebook shows the outcome where widgets do not render.
    Elsewhere (scripts, plain IPython, tests) it shows nothing and the updates go to the log at
    DEBUG. Updates are throttled to ``min_interval`` seconds (default 0.1) except the last one.
    """

    def __init__(self, *, enabled: bool = True, min_interval: float = 0.1) -> None:
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._last = 0.0
        self._pending: str | None = None
        self._current = ""
        self._widget: Any = None
        self._handle: Any = None
        if enabled and in_kernel():
            try:
                import ipywidgets
                from IPython.display import display

                self._widget = ipywidgets.HTML(value="")
                self._handle = display(self._bundle(""), raw=True, display_id=True)
            except Exception:  # no widgets: stay silent rather than break the call
                logger.debug("no progress display", exc_info=True)
                self._widget = None

    @property
    def shown(self) -> bool:
        """``True`` when there is a widget in the notebook."""
        return self._widget is not None

    def _bundle(self, markup: str) -> dict[str, Any]:
        return {
            "text/plain": plain_text(markup) or "…",
            "text/html": markup,
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2, "version_minor": 0, "model_id": self._widget.model_id,
            },
        }

    def set(self, markup: str, *, force: bool = False) -> None:
        """Show ``markup`` (HTML), at most every ``min_interval`` seconds unless ``force``."""
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last < self.min_interval:
                self._pending = markup
                return
            self._last = now
            self._pending = None
            self._current = markup
        if self._widget is not None:
            self._widget.value = markup
        else:
            logger.debug("progress: %s", plain_text(markup))

    def close(self, markup: str | None = None) -> None:
        """Show the final state (``markup``, or the last throttled update) in the widget and in
        the static copy."""
        with self._lock:
            final = markup if markup is not None else (self._pending or self._current)
            self._pending = None
        self.set(final, force=True)
        if self._handle is not None:
            try:
                self._handle.update(self._bundle(final), raw=True)
            except Exception:  # pragma: no cover - a display that went away
                logger.debug("could not update the progress display", exc_info=True)


def in_kernel() -> bool:
    """``True`` inside a Jupyter kernel (an IPython shell with a ``kernel``), else ``False``."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def plain_text(markup: str) -> str:
    """``markup`` without its tags and entities, stripped."""
    return html.unescape(re.sub(r"<[^>]+>", " ", markup)).strip()


def progress_bar(done: int, total: int | None, label: str) -> str:
    """HTML for one progress line: a ``<progress>`` bar (indeterminate without ``total``)."""
    value = f' value="{done}" max="{max(total, 1)}"' if total else ""
    return (
        f'<div style="display:flex;gap:.6em;align-items:center;font-family:var(--jp-ui-font-'
        f'family,sans-serif);font-size:12px"><progress{value} style="width:14em"></progress>'
        f"<span>{html.escape(label)}</span></div>"
    )

