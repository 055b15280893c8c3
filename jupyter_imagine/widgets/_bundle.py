"""Displaying a widget: its live view plus a static picture that survives without a kernel.

Every widget's ``_repr_mimebundle_`` goes through :func:`display_bundle`; the pictures come from
:mod:`._fallback_picture`. Why two outputs and not one bundle:

What JupyterLab 4.6 + ipywidgets 8.1 (jupyterlab_widgets 3.0) do with a saved widget output,
read in the installed ``@jupyter-widgets/jupyterlab-manager`` bundle and checked in Chromium:

* The widget renderer is registered for ``application/vnd.jupyter.widget-view+json`` with
  rank -10 and ``safe: false``. For a **trusted** output (every notebook saved by this Lab is
  signed, so reopening it is trusted) it always wins over ``image/png`` in the same bundle,
  and when the model is gone it shows "Error displaying widget: model not found" (with a
  kernel) or "Loading widget..." forever (without one). It never falls back to another
  mimetype of the bundle; ordering inside the bundle does not matter either.
* For an **untrusted** output (the notebook on another machine, on GitHub, in nbviewer) the
  unsafe widget renderer is skipped and ``image/png`` shows.
* Saved widget state (Settings → "Save Widget State Automatically", off by default) restores
  the models from the notebook's metadata, but needs that setting and a kernel.

So the picture does not ride in the widget's own bundle. Each display emits **two outputs**:
first a static one (``image/jpeg`` + ``text/plain``, under its own ``display_id``), then the
widget view.
The JPEG carries a comment with the view's ``fallback_key``; the live view finds that output next
to its own and hides it once the kernel has answered it, so a live session shows the widget once.
The fallback is kept current from the engine thread with ``update_display``: JupyterLab routes
``update_display_data`` by display id to the output that showed it, whatever the message's
parent, and a thread that never set one sends the last request's header (ipykernel 6 keeps one
global header; ipykernel 7 falls back to it from its per-thread context variable). Checked in
JupyterLab 4.6 with ipykernel 7.4 (tests/browser) and 6.31 (by hand: a click's child reaches the
first cell's fallback after later cells ran), and through nbclient. So a notebook
saved after the job finished carries the final picture of the whole lineage shown under it.
Reopened — trusted or not, with or without a kernel — the picture shows (next to JupyterLab's
line for the dead widget). With saved widget state the view is rendered again from that state
(the code from one shared model, :mod:`._shared_esm`) but without its thumbnails, which are never
saved; no kernel answers it, so the picture stays in sight above the view.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import _display
from .._secrets import get_logger
from ._runtime import defer, offload

if TYPE_CHECKING:  # pragma: no cover
    import anywidget
    import ipywidgets

__all__ = ["WIDGET_MIME", "StaticFallback", "display_bundle", "widget_bundle"]

logger = get_logger(__name__)

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def widget_bundle(widget: ipywidgets.Widget, text: str) -> dict[str, Any]:
    """The MIME bundle of ``widget``'s view with ``text`` as its plain-text form."""
    return {
        WIDGET_MIME: {"version_major": 2, "version_minor": 0, "model_id": widget.model_id},
        "text/plain": text,
    }


class StaticFallback:
    """The static output shown beside a live view, under its own ``display_id``.

    Args:
        render: makes ``(jpeg, text)`` for the current state (runs on a worker thread): the
            picture's JPEG bytes and the plain-text form.
        key: the display id, also written into the picture so the live view can find it.
    """

    def __init__(self, render: Callable[[], tuple[bytes, str]], key: str) -> None:
        self.render = render
        self.key = key
        self._lock = threading.Lock()
        self._busy = False
        self._again = False
        self._last: dict[str, Any] | None = None

    @staticmethod
    def _bundle(jpeg: bytes, text: str) -> dict[str, Any]:
        return {"image/jpeg": base64.b64encode(jpeg).decode("ascii"), "text/plain": text}

    def show(self) -> None:
        """Display it now (call where the live view is being displayed)."""
        from IPython.display import display

        jpeg, text = self.render()
        display(self._bundle(jpeg, text), raw=True, display_id=self.key)

    def refresh(self) -> None:
        """Render again on a worker and update the output from the engine thread; calls made
        while one render runs fold into one more."""
        with self._lock:
            if self._busy:
                self._again = True
                return
            self._busy = True
        offload(self._render, then=self._update)

    def _resend(self, bundle: dict[str, Any]) -> None:
        from IPython.display import update_display

        if self._last is bundle:  # nothing newer was sent meanwhile
            try:
                update_display(bundle, raw=True, display_id=self.key)
            except Exception:
                logger.exception("could not resend the static fallback")

    def _render(self) -> tuple[bytes, str] | None:
        try:
            return self.render()
        except Exception:  # keep the last picture; the next change tries again
            logger.exception("could not draw the static fallback")
            return None

    #: Seconds after an update at which the same picture is sent again (see :meth:`_update`).
    RESEND_AFTER = (0.4, 1.5)

    def _update(self, result: tuple[bytes, str] | None) -> None:
        from IPython.display import update_display

        try:
            if result is not None:
                bundle = self._bundle(*result)
                self._last = bundle
                update_display(bundle, raw=True, display_id=self.key)
                # A headless runner (nbclient, papermill, nbconvert) keeps only the messages of
                # the cell it is running; an update sent from this thread between two cells is
                # lost and the saved picture stays stale. The same picture again, a little
                # later, lands in a running cell. Harmless where it is not needed.
                loop = asyncio.get_running_loop()
                for delay in self.RESEND_AFTER:
                    loop.call_later(delay, self._resend, bundle)
        finally:
            with self._lock:
                self._busy = False
                again, self._again = self._again, False
        if again:
            self.refresh()


def display_bundle(
    widget: anywidget.AnyWidget, box: ipywidgets.Widget, text: str,
    static: Callable[[str], tuple[bytes, str]] | None = None,
) -> tuple[dict[str, Any], StaticFallback | None]:
    """What displaying ``widget`` returns: the bundle of its ``box``, with ``text`` as the plain
    form, and the static fallback shown just before it.

    In a kernel, and when ``static`` is given, ``static(key)`` draws ``(jpeg, text)`` for the
    fallback; it is displayed now, before the live view, under ``key``: the widget's
    ``fallback_key`` (set from the engine thread to a new one if empty). Elsewhere (or with
    ``static=None``, the default) only the widget bundle. Returns ``(bundle, fallback or None)``;
    the caller decides when the fallback :meth:`~StaticFallback.refresh`-es.
    """
    bundle = widget_bundle(box, text)
    if static is None or not _display.in_kernel():
        return bundle, None
    key = widget.fallback_key or uuid.uuid4().hex
    if not widget.fallback_key:
        defer(setattr, widget, "fallback_key", key)
    fallback = StaticFallback(lambda: static(key), key)
    try:
        fallback.show()
    except Exception:  # the live view matters more than its fallback
        logger.exception("could not display the static fallback")
    return bundle, fallback
