"""Displaying a job: the live widget plus a static PNG that survives without a kernel.

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

So the PNG does not ride in the widget's own bundle. Each display emits **two outputs**: first a
static one (``image/png`` + ``text/plain``, under its own ``display_id``), then the widget view.
The PNG carries a ``tEXt`` chunk with the view's ``fallback_key``; the live view finds that
output next to its own and hides it, so a live session shows the widget once. The fallback is
kept current from the engine thread with ``update_display``: JupyterLab routes
``update_display_data`` by display id to the output that showed it, whatever the message's
parent, and a thread that never set one sends the last request's header (ipykernel 6 keeps one
global header; ipykernel 7 falls back to it from its per-thread context variable). Checked in
JupyterLab 4.6 with ipykernel 7.4 (tests/browser) and 6.31 (by hand: a click's child reaches the
first cell's fallback after later cells ran), and through nbclient. So a notebook
saved after the job finished carries the final picture of the whole lineage shown under it.
Reopened — trusted or not, with or without a kernel — the PNG shows (next to JupyterLab's line
for the dead widget); with saved widget state the full view comes back and hides the PNG again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from .._secrets import get_logger
from ..imaging import to_png
from ..models import Job
from ._runtime import defer, offload

if TYPE_CHECKING:  # pragma: no cover
    import ipywidgets

    from ._gallery import Gallery
    from ._job_view import JobView

__all__ = [
    "WIDGET_MIME",
    "StaticFallback",
    "gallery_bundle",
    "in_kernel",
    "job_bundle",
    "lineage_png",
    "view_bundle",
    "widget_bundle",
]

logger = get_logger(__name__)

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: The PNG text key that ties a static fallback to its live view.
KEY_CHUNK = "jupyter_imagine.view"
#: The PNG text key listing the jobs drawn (depth, id, kind, status, number of images), as JSON.
LINEAGE_CHUNK = "jupyter_imagine.lineage"
#: Width of the fallback picture in pixels (default 560).
WIDTH = 560
_PAD = 10
_BG, _FG, _FG2, _LINE = (255, 255, 255), (31, 35, 40), (89, 99, 110), (216, 221, 227)
_ACCENT, _ERROR, _WARN = (25, 118, 210), (211, 47, 47), (245, 124, 0)
# Labels the default font cannot draw.
_SPELLED = {"🔄": "reroll", "⬅️": "pan left", "➡️": "pan right", "⬆️": "pan up", "⬇️": "pan down"}


def in_kernel() -> bool:
    """``True`` inside a Jupyter kernel (where widgets can render), else ``False``."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def widget_bundle(widget: ipywidgets.Widget, text: str) -> dict[str, Any]:
    """The MIME bundle of ``widget``'s view with ``text`` as its plain-text form."""
    return {
        WIDGET_MIME: {"version_major": 2, "version_minor": 0, "model_id": widget.model_id},
        "text/plain": text,
    }


# ---------------------------------------------------------------------------- pictures
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the small bitmap font
        return ImageFont.load_default()


def _text(value: str, limit: int = 90) -> str:
    for label, spelled in _SPELLED.items():
        value = value.replace(label, spelled)
    value = "".join(c for c in value if ord(c) < 0x2000 or 0x2190 <= ord(c) < 0x2400)
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _thumb(data: bytes, width: int) -> PILImage.Image:
    import io

    im = PILImage.open(io.BytesIO(data)).convert("RGB")
    if im.width > width:
        im = im.resize((width, max(1, round(im.height * width / im.width))),
                       PILImage.Resampling.LANCZOS)
    return im


def _pictures(images: list[bytes], layout: str, width: int) -> PILImage.Image | None:
    if not images:
        return None
    if layout == "grid" and len(images) > 1:
        cell = (width - 4) // 2
        tiles = [_thumb(d, cell) for d in images[:4]]
        th = max(t.height for t in tiles)
        rows = (len(tiles) + 1) // 2
        sheet = PILImage.new("RGB", (cell * 2 + 4, th * rows + 4 * (rows - 1)), _BG)
        for i, tile in enumerate(tiles):
            sheet.paste(tile, ((i % 2) * (cell + 4), (i // 2) * (th + 4)))
        return sheet
    return _thumb(images[0], width)


def _row(view: JobView, width: int, font: Any, small: Any) -> PILImage.Image:
    """One job of the lineage: caption, then its pictures, a progress bar or its error."""
    status = view.status
    what = f"{view.action} · {view.kind}" if view.action else view.kind
    caption = _text(f"{view.provider_label} {what}" + (" · sandbox" if view.sandbox else "")
                    + f" · {status}")
    prompt = _text(view.prompt)
    pictures = None
    if view.images:
        try:
            pic_width = width if view.arrangement == "panorama" else min(width, 400)
            pictures = _pictures(list(view.images), view.arrangement, pic_width)
        except OSError:
            pictures = None
    height = 40 + (pictures.height + 6 if pictures else 0) + (16 if status != "succeeded" else 0)
    row = PILImage.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(row)
    draw.text((0, 0), caption, font=font, fill=_ERROR if status == "failed" else _FG)
    draw.text((0, 18), prompt, font=small, fill=_FG2)
    y = 38
    if pictures is not None:
        row.paste(pictures, (0, y))
        y += pictures.height + 6
    if status in ("queued", "running"):
        draw.rounded_rectangle((0, y + 4, width - 1, y + 10), radius=3, fill=(238, 240, 243))
        done = int((width - 1) * max(0.0, min(100.0, view.progress)) / 100)
        if done > 2:
            draw.rounded_rectangle((0, y + 4, done, y + 10), radius=3, fill=_ACCENT)
    elif status in ("failed", "cancelled"):
        line = view.error or ("cancelled" if status == "cancelled" else "failed")
        draw.text((0, y), _text(line, 100), font=small, fill=_ERROR)
    return row


def _sheet(rows: list[tuple[int, PILImage.Image]], key: str,
           text: dict[str, str] | None = None) -> bytes:
    """Stack ``(depth, picture)`` rows on a white card, children indented with a rule."""
    height = sum(im.height for _, im in rows) + _PAD * (len(rows) + 1)
    card = PILImage.new("RGB", (WIDTH, height), _BG)
    draw = ImageDraw.Draw(card)
    draw.rectangle((0, 0, WIDTH - 1, height - 1), outline=_LINE)
    y = _PAD
    for depth, im in rows:
        x = _PAD + 18 * depth
        if depth:
            draw.line((x - 10, y - _PAD // 2, x - 10, y + im.height), fill=_LINE, width=2)
        card.paste(im, (x, y))
        y += im.height + _PAD
    # 256 colours (fast octree: milliseconds): a fifth of the bytes the notebook keeps as base64
    chunks = {KEY_CHUNK: key, **(text or {})}
    return to_png(card.quantize(256, method=PILImage.Quantize.FASTOCTREE), chunks)


def lineage_png(view: JobView, key: str) -> bytes:
    """The static picture of ``view`` and every view under it, with ``key`` inside."""
    font, small = _font(14), _font(12)
    lineage = view.lineage()
    rows = [(depth, _row(v, WIDTH - 2 * _PAD - 18 * depth, font, small)) for depth, v in lineage]
    shown = [{"depth": d, "id": v.job_id, "kind": v.kind, "status": v.status,
              "images": len(v.images)} for d, v in lineage]
    return _sheet(rows, key, {LINEAGE_CHUNK: json.dumps(shown)})


def gallery_png(gallery: Gallery, key: str, limit: int = 12) -> bytes:
    """A contact sheet of the gallery's newest ``limit`` jobs (default 12)."""
    from ._gallery import _tile

    font, small = _font(14), _font(12)
    rows = gallery.rows[:limit]
    cols, cell = 4, (WIDTH - 2 * _PAD - 3 * 6) // 4
    head = PILImage.new("RGB", (WIDTH - 2 * _PAD, 22), _BG)
    ImageDraw.Draw(head).text((0, 2), f"jupyter_imagine gallery · {gallery.total} jobs",
                              font=font, fill=_FG)
    lines = max(1, (len(rows) + cols - 1) // cols)
    grid = PILImage.new("RGB", (WIDTH - 2 * _PAD, lines * (cell + 22)), _BG)
    draw = ImageDraw.Draw(grid)
    for i, r in enumerate(rows):
        x, y = (i % cols) * (cell + 6), (i // cols) * (cell + 22)
        data = _tile(str(r["id"]))
        if data:
            tile = _thumb(data, cell)
            grid.paste(tile.crop((0, 0, cell, min(cell, tile.height))), (x, y))
        else:
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=(238, 240, 243))
        draw.text((x, y + cell + 3), _text(str(r.get("prompt") or ""), 22), font=small, fill=_FG2)
    return _sheet([(0, head), (0, grid)], key)


# ---------------------------------------------------------------------------- outputs
class StaticFallback:
    """The static output shown beside a live view, under its own ``display_id``.

    Args:
        render: makes ``(png, text)`` for the current state (runs on a worker thread).
        key: the display id, also written into the PNG so the live view can find it.
    """

    def __init__(self, render: Callable[[], tuple[bytes, str]], key: str) -> None:
        self.render = render
        self.key = key
        self._lock = threading.Lock()
        self._busy = False
        self._again = False
        self._last: dict[str, Any] | None = None

    @staticmethod
    def _bundle(png: bytes, text: str) -> dict[str, Any]:
        return {"image/png": base64.b64encode(png).decode("ascii"), "text/plain": text}

    def show(self) -> None:
        """Display it now (call where the live view is being displayed)."""
        from IPython.display import display

        png, text = self.render()
        display(self._bundle(png, text), raw=True, display_id=self.key)

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


def _live(widget: ipywidgets.Widget, fallback: StaticFallback, text: str) -> dict[str, Any]:
    try:
        fallback.show()
    except Exception:  # the live view matters more than its fallback
        logger.exception("could not display the static fallback")
    return widget_bundle(widget, text)


def _view_text(job: Job) -> str:
    prompt = job.prompt if len(job.prompt) <= 60 else job.prompt[:57] + "…"
    return f"{job.provider} {job.kind} {job.id[:8]} · {prompt!r} (live view)"


def _attach(view: JobView, key: str) -> StaticFallback:
    fallback = StaticFallback(lambda: (lineage_png(view, key), view.job._summary()), key)
    view.on_lineage_change = fallback.refresh
    # Changes applied on the engine thread before the line above found no callback: draw
    # once more after them (the engine runs deferred calls in order).
    defer(view._lineage_changed)
    return fallback


def job_bundle(job: Job) -> dict[str, Any]:
    """``Job._display_hook``: the live view in a kernel, the static bundle elsewhere."""
    if not in_kernel():
        return job._static_bundle()
    try:
        from ._job_view import JobView

        key = uuid.uuid4().hex
        view = JobView(job, fallback_key=key)
        return _live(view.box, _attach(view, key), _view_text(job))
    except Exception:  # never break displaying a job
        logger.exception("could not build the job view; showing the static form")
        return job._static_bundle()


def view_bundle(view: JobView) -> dict[str, Any]:
    """Displaying a :class:`JobView` itself: its box, with a static fallback in a kernel."""
    if not in_kernel():
        return widget_bundle(view.box, _view_text(view.job))
    key = view.fallback_key or uuid.uuid4().hex
    if not view.fallback_key:
        defer(setattr, view, "fallback_key", key)
    return _live(view.box, _attach(view, key), _view_text(view.job))


def gallery_bundle(gallery: Gallery) -> dict[str, Any]:
    """Displaying a gallery: its box, with a contact sheet as the static fallback."""
    text = f"jupyter_imagine gallery of {gallery.total} jobs (live view)"
    if not in_kernel():
        return widget_bundle(gallery.box, text)
    key = gallery.fallback_key or uuid.uuid4().hex
    if not gallery.fallback_key:
        defer(setattr, gallery, "fallback_key", key)
    fallback = StaticFallback(lambda: (gallery_png(gallery, key), text), key)
    return _live(gallery.box, fallback, text)
