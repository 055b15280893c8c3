"""The gallery (``js/gallery.js``): a filterable grid over past jobs from the store.

The rows (id, provider, kind, status, prompt, time, who made it where) are synced; thumbnails
are not: the browser asks for the ones scrolling into view and gets them as message buffers.
Clicking a tile opens that job's live view, with its actions, beneath the grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import ipywidgets
import pandas as pd
import traitlets as t

from .._secrets import get_logger
from ..errors import ImagineError, InvalidRequest
from ..models import Job
from . import _images
from ._bundle import display_bundle
from ._fallback_picture import gallery_picture
from ._job_view import JobView
from ._protocol import GalleryRequest, ThumbsReply, message_type
from ._runtime import defer, engine, offload
from ._shared_esm import SharedCodeWidget

__all__ = ["Gallery", "gallery", "tile"]

logger = get_logger(__name__)

#: Rows a gallery holds at most (the newest; default 2000).
MAX_ROWS = 2000
#: Long side of a gallery thumbnail (default 256).
TILE = 256
#: Rows ``gallery()`` shows when given nothing (default 200).
DEFAULT_LIMIT = 200

_ROW_FIELDS = ("id", "provider", "kind", "status", "prompt", "created", "n_images", "sandbox",
               "user", "host")


def _clean(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _rows(source: Any) -> list[dict[str, Any]]:
    """The rows of ``source``: a frame, one job or an iterable of jobs (see :class:`Gallery`).

    Raises:
        InvalidRequest: anything else (a prompt, an id, a number …), named.
    """
    if isinstance(source, pd.DataFrame):
        return _rows_from_frame(source)
    if isinstance(source, Job):
        source = [source]
    if isinstance(source, (str, bytes)) or not isinstance(source, Iterable):
        raise InvalidRequest(
            "gallery() takes a frame from history(), a list of jobs or nothing, not "
            f"{type(source).__name__}"
        )
    jobs = list(source)
    wrong = next((item for item in jobs if not isinstance(item, Job)), None)
    if wrong is not None:
        raise InvalidRequest(
            f"gallery() takes jobs, but one item is a {type(wrong).__name__}; "
            "jupyter_imagine.job(id) gives the job of an id"
        )
    return [_row_from_job(job) for job in jobs]


def _rows_from_frame(frame: pd.DataFrame) -> list[dict[str, Any]]:
    if "id" not in frame.columns and "id" in (frame.index.names or ()):
        frame = frame.reset_index()
    if "id" not in frame.columns:
        raise InvalidRequest(
            "gallery() needs a frame with an 'id' column, like history() returns")
    rows = []
    for rec in frame.to_dict("records"):
        row = {k: _clean(rec.get(k))
               for k in ("id", "provider", "kind", "status", "prompt", "user", "host")}
        row["created"] = _clean(rec.get("created_at"))
        row["n_images"] = int(_clean(rec.get("n_images")) or 0)
        row["sandbox"] = bool(_clean(rec.get("sandbox")) or False)
        rows.append({k: ("" if v is None else v) for k, v in row.items()})
    return rows


def _row_from_job(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "provider": job.provider, "kind": job.kind, "status": job.status.value,
        "prompt": job.prompt, "created": job.created_at.isoformat(), "n_images": len(job.images),
        "sandbox": bool(job.sandbox), "user": "", "host": "",
    }


def tile(job_id: str) -> bytes:
    """A thumbnail of a stored job (its grid, else first image), or ``b""``."""
    try:
        record = engine().store.get(job_id)
        if record is None:
            return b""
        job = Job.from_record(record)
        image = job.grid if job.grid is not None and job.grid.path else None
        images = [image] if image is not None else _images.shown(job)
        return _images.thumbnail(str(images[0].path), TILE) if images else b""
    except (OSError, ImagineError):
        return b""


class Gallery(SharedCodeWidget):
    """A filterable grid of past jobs; clicking one opens its job view beneath.

    Args:
        source: a frame from :func:`jupyter_imagine.history` (any subset of its rows), one job
            or an iterable of jobs, or ``None`` (default): the newest :data:`DEFAULT_LIMIT` jobs.
            Anything else is an :class:`~jupyter_imagine.errors.InvalidRequest`.

    Attributes:
        box: the ``VBox`` to display: the grid, then the opened job's view.
    """

    _code_name = "gallery.js"

    rows = t.List(t.Dict()).tag(sync=True)
    #: How many rows the source had (``rows`` keeps the newest :data:`MAX_ROWS`).
    total = t.Int(0).tag(sync=True)
    selected = t.Unicode("").tag(sync=True)
    fallback_key = t.Unicode("").tag(sync=True)

    def __init__(self, source: pd.DataFrame | Iterable[Job] | None = None, **kwargs: Any) -> None:
        if source is None:
            from ..api import history

            source = history(limit=DEFAULT_LIMIT)
        rows = _rows(source)
        rows.sort(key=lambda r: str(r.get("created") or ""), reverse=True)
        super().__init__(rows=rows[:MAX_ROWS], total=len(rows), **kwargs)
        self._slot = ipywidgets.VBox([])
        self._view: Any = None
        self.box = ipywidgets.VBox([self, self._slot])
        self.on_msg(self._on_msg)

    @property
    def frame(self) -> pd.DataFrame:
        """The gallery's rows as a DataFrame."""
        return pd.DataFrame(self.rows, columns=list(_ROW_FIELDS))

    def __len__(self) -> int:
        return len(self.rows)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """Its :attr:`box`; in a kernel with a contact sheet of the newest jobs before it."""
        text = f"jupyter_imagine gallery of {self.total} jobs (live view)"
        return display_bundle(
            self, self.box, text,
            lambda key: (gallery_picture(self.rows, self.total, key, tile), text))[0]

    # ------------------------------------------------------------------ messages
    def _on_msg(self, _widget: Any, content: Any, buffers: Sequence[Any] | None) -> None:
        """Comm handler (main or subshell thread): hand the message to the engine thread."""
        defer(self._handle, dict(content or {}))

    def _handle(self, content: GalleryRequest) -> None:
        kind = message_type(content)
        if kind == "thumbs":
            ids = [str(i) for i in content.get("ids") or []][:200]  # type: ignore[union-attr]
            reply: ThumbsReply = {"type": "thumbs", "ids": ids}
            offload(lambda: [tile(i) for i in ids], then=lambda tiles: self.send(reply, tiles))
        elif kind == "open":
            self._open(str(content.get("id") or ""))  # type: ignore[union-attr]
        else:
            logger.debug("Gallery: unknown message %r", kind)

    def _open(self, job_id: str) -> None:
        """Show the job's view under the grid (engine thread), replacing the previous one."""
        try:
            job = engine().get(job_id)
        except ImagineError as exc:
            logger.warning("gallery: %s", exc)
            return
        old = self._view
        self._view = JobView(job)
        self._slot.children = (self._view.box,)
        self.selected = job_id
        if old is not None:
            old.close()


def gallery(df_or_jobs: pd.DataFrame | Iterable[Job] | None = None) -> Gallery:
    """A filterable grid of past jobs: ``gallery(history())``, ``gallery([job1, job2])``, or
    ``gallery()`` for the newest :data:`DEFAULT_LIMIT` jobs. Clicking a job opens its view."""
    return Gallery(df_or_jobs)
