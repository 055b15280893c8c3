"""The live view of one job (``js/job_view.js``) and the lineage of views under it.

A :class:`JobView` shows provider (with a sandbox badge), prompt, status, progress, elapsed time
and the result, and one button per label in ``job.actions``. Its :attr:`JobView.box` is a
``VBox`` holding the view followed by the views of the children started from its buttons, each
in its own (indented) box, so the lineage of a session stays visible.

Threads (DESIGN.md, "The engine"): the view is built wherever it is displayed, then only the
engine thread writes its traits — the job observer runs there, and the message handler only
defers onto it. Thumbnails are made on a worker thread and written back on the engine's.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets
import traitlets as t

from .. import _display
from .._secrets import get_logger
from ..errors import ImagineError
from ..models import VARY_REGION, Job, Status, utcnow
from . import _images
from ._bundle import display_bundle
from ._fallback_picture import lineage_picture
from ._labels import provider_label
from ._mask_drawer import MaskDrawer
from ._protocol import FullReply, ImagesReply, JobViewRequest, message_type
from ._runtime import defer, offload
from ._shared_esm import SharedCodeWidget

__all__ = ["JobView", "drawer_for", "job_bundle"]

logger = get_logger(__name__)

#: ``action_state`` values during which a button stays disabled.
BUSY = frozenset({"queued", "running", "drawing"})


def _fields(job: Job) -> dict[str, Any]:
    """The view's plain traits for the job as it is now."""
    end = job.completed_at or utcnow()
    return {
        "job_id": job.id,
        "provider": job.provider,
        "provider_label": provider_label(job.provider),
        "sandbox": bool(job.sandbox),
        "kind": job.kind,
        "action": job.action or "",
        "prompt": job.prompt,
        "status": job.status.value,
        "progress": float(job.progress or 0.0),
        "queue_position": job.queue_position,
        "elapsed": max(0.0, (end - job.created_at).total_seconds()),
        "actions": list(job.actions) if job.status is Status.SUCCEEDED else [],
        "error": job.error or "",
        "error_type": job.error_type or "",
        "cost": cost_text(job),
    }


def cost_text(job: Job) -> str:
    """The view's cost line: ``"4 credits"`` once recorded, ``"≈ 4 credits"`` (the published
    price) before, ``""`` where neither is known or the job was never sent."""
    from ..providers import provider_class

    try:
        cls = provider_class(job.provider)
    except ImagineError:
        return ""
    if job.status.final:
        cost = cls.cost(job.to_record())
        return f"{cost.amount:g} {cost.unit}" if cost is not None else ""
    price = cls.price(job.kind, job.params)
    return f"≈ {price.amount:g} {price.unit}" if price is not None else ""


class JobView(SharedCodeWidget):
    """The live view of ``job``; displaying a :class:`~jupyter_imagine.Job` shows one.

    Args:
        job: the job to show.
        parent: the view whose button started this job (default ``None``: a top-level view).
        fallback_key: marks the static picture shown next to this view (set by the display hook),
            default ``""``.

    Attributes:
        box: the ``VBox`` to display: this view, then the boxes of its children.
    """

    _code_name = "job_view.js"

    job_id = t.Unicode("").tag(sync=True)
    provider = t.Unicode("").tag(sync=True)
    provider_label = t.Unicode("").tag(sync=True)
    sandbox = t.Bool(False).tag(sync=True)
    kind = t.Unicode("").tag(sync=True)
    action = t.Unicode("").tag(sync=True)
    prompt = t.Unicode("").tag(sync=True)
    status = t.Unicode("queued").tag(sync=True)
    progress = t.Float(0.0).tag(sync=True)
    queue_position = t.Int(None, allow_none=True).tag(sync=True)
    elapsed = t.Float(0.0).tag(sync=True)
    #: The provider's preview while running (a thumbnail PNG), else empty.
    preview = t.Bytes(b"").tag(sync=True)
    #: Bumped whenever the result's thumbnails (:attr:`images`) change; the browser then asks
    #: for them. They travel as message buffers, not synced state, so a notebook saved with
    #: widget state does not store them (the static fallback beside the view has the picture).
    images_rev = t.Int(0).tag(sync=True)
    #: ``[width, height]`` of each full-size image.
    sizes = t.List(t.List(t.Int())).tag(sync=True)
    #: ``grid``, ``single``, ``panorama`` or ``""`` (nothing yet). Not ``layout``: that name is
    #: DOMWidget's Layout widget.
    arrangement = t.Unicode("").tag(sync=True)
    actions = t.List(t.Unicode()).tag(sync=True)
    #: label → state of the last child it started (queued, running, succeeded … or drawing).
    action_state = t.Dict().tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    error_type = t.Unicode("").tag(sync=True)
    #: The expected (``≈ 4 credits``) or recorded (``4 credits``) cost, else ``""``.
    cost = t.Unicode("").tag(sync=True)
    #: One line about the last click (e.g. why an action could not start), else ``""``.
    notice = t.Unicode("").tag(sync=True)
    fallback_key = t.Unicode("").tag(sync=True)

    def __init__(self, job: Job, *, parent: JobView | None = None, fallback_key: str = "",
                 **kwargs: Any) -> None:
        thumbs: tuple[list[bytes], list[list[int]], str] = ([], [], "")
        if job.status is Status.SUCCEEDED:
            thumbs = _images.thumbnails(job)
        self._thumbs: list[bytes] = thumbs[0]
        super().__init__(
            **_fields(job), images_rev=1 if thumbs[0] else 0, sizes=thumbs[1],
            arrangement=thumbs[2], fallback_key=fallback_key, **kwargs,
        )
        self._job = job
        self._parent = parent
        self._views: list[JobView] = []
        self._preview_seq = 0
        self._thumbs_for: tuple[str, ...] = tuple(im.path or "" for im in _images.shown(job))
        #: Called (on the engine thread) when this lineage changes; set by the display hook.
        self.on_lineage_change: Callable[[], None] | None = None
        self.box = ipywidgets.VBox([self])
        self.box.add_class("ji-lineage")
        self.on_msg(self._on_msg)
        self._unobserve = job.observe(self._on_job)
        defer(self._refresh)  # anything that changed while this view was being built

    # ------------------------------------------------------------------ public
    @property
    def job(self) -> Job:
        """The job shown."""
        return self._job

    @property
    def images(self) -> list[bytes]:
        """Thumbnails of the result (4 grid cells, or one image; JPEG or PNG), else ``[]``.
        Full size only on request."""
        return list(self._thumbs)

    @property
    def children_views(self) -> Sequence[JobView]:
        """The views of the jobs started from this view's buttons, oldest first."""
        return tuple(self._views)

    def lineage(self) -> list[tuple[int, JobView]]:
        """``(depth, view)`` for this view and every view under it, depth first."""
        out = [(0, self)]
        for child in self._views:
            out += [(depth + 1, view) for depth, view in child.lineage()]
        return out

    def close(self) -> None:
        """Stop following the job and close the view and its children."""
        unobserve = getattr(self, "_unobserve", None)  # None if __init__ failed half-way
        if unobserve is not None:
            unobserve()
        for view in getattr(self, "_views", ()):
            view.close()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """Its :attr:`box`; in a kernel with a static picture of the lineage before it, redrawn
        whenever the lineage changes."""
        bundle, fallback = display_bundle(self, self.box, _view_text(self._job), self._static)
        if fallback is not None:
            self.on_lineage_change = fallback.refresh
            # Changes applied on the engine thread before the line above found no callback:
            # draw once more after them (the engine runs deferred calls in order).
            defer(self._lineage_changed)
        return bundle

    def _static(self, key: str) -> tuple[bytes, str]:
        return lineage_picture(self, key), self._job._summary()

    # ------------------------------------------------------------------ engine thread
    def _refresh(self) -> None:
        self._on_job(self._job, frozenset({"status", "images", "grid", "preview_url"}))

    def _on_job(self, job: Job, changed: frozenset[str]) -> None:
        """Job observer (engine thread): mirror the change into the traits."""
        thumbnailing = False
        if job.status is Status.SUCCEEDED and changed & {"images", "grid", "status"}:
            paths = tuple(im.path or "" for im in _images.shown(job))
            if paths and (paths != self._thumbs_for or not self.images):
                self._thumbs_for = paths
                thumbnailing = True
                offload(_images.thumbnails, job, then=self._set_images)
        fields = _fields(job)
        if thumbnailing and self.status != Status.SUCCEEDED.value:
            # "Done", the buttons and the pictures appear together, once the thumbnails are in
            fields.update(status=Status.RUNNING.value, actions=[])
        self._write(fields)
        if "preview_url" in changed and job.preview_url and job.status is Status.RUNNING:
            self._preview_seq += 1
            seq = self._preview_seq
            offload(_images.preview_thumbnail, job, job.preview_url,
                    then=lambda png: self._set_preview(seq, png))
        if "status" in changed:
            if self._parent is not None:
                self._parent._child_changed(self)
            if job.status.final and not thumbnailing:  # else once the thumbnails are in
                self._lineage_changed()

    def _write(self, fields: dict[str, Any], **extra: Any) -> None:
        """Set the traits that differ, in one message (engine thread)."""
        with self.hold_sync():
            for name, value in {**fields, **extra}.items():
                if getattr(self, name) != value:
                    setattr(self, name, value)
            if self.status != Status.RUNNING.value and self.preview:
                self.preview = b""

    def _set_images(self, result: tuple[list[bytes], list[list[int]], str]) -> None:
        thumbs, sizes, layout = result
        with self.hold_sync():  # one message; for other threads, in this order: what describes
            # the images, the images, then "succeeded" (seeing one means seeing what came before)
            self._write({}, sizes=sizes, arrangement=layout)
            self._thumbs = list(thumbs)
            self._write(_fields(self._job), images_rev=self.images_rev + 1)
        self._send_images()  # to the views already open: no round trip before they paint
        if self._parent is not None:
            self._parent._child_changed(self)
        self._lineage_changed()

    def _set_preview(self, seq: int, png: bytes) -> None:
        if seq == self._preview_seq and self._job.status is Status.RUNNING:
            self.preview = png

    def _lineage_changed(self) -> None:
        root = self
        while root._parent is not None:
            root = root._parent
        if root.on_lineage_change is not None:
            root.on_lineage_change()

    def _set_state(self, label: str, state: str | None) -> None:
        states = dict(self.action_state)
        if state is None:
            states.pop(label, None)
        else:
            states[label] = state
        self.action_state = states

    def _say(self, text: str) -> None:
        self.notice = ""  # a repeated message still reaches the browser as a change
        self.notice = text

    def _child_changed(self, child: JobView) -> None:
        if child.job.action:
            self._set_state(child.job.action, child.job.status.value)

    # ------------------------------------------------------------------ messages
    def _on_msg(self, _widget: Any, content: Any, buffers: Sequence[Any] | None) -> None:
        """Comm handler (main or subshell thread): hand the message to the engine thread."""
        defer(self._handle, dict(content or {}), [bytes(b) for b in buffers or ()])

    def _handle(self, content: JobViewRequest, buffers: list[bytes]) -> None:
        kind = message_type(content)
        if kind == "act":
            self._act(str(content.get("label", "")))  # type: ignore[union-attr]
        elif kind == "images":
            self._send_images()
        elif kind == "full":
            self._send_full(content.get("index"))  # type: ignore[union-attr]
        elif kind == "cancel":
            self._job.cancel()
        else:
            logger.debug("JobView: unknown message %r", kind)

    def _act(self, label: str, **kwargs: Any) -> JobView | None:
        """Start the child of action ``label`` and show it beneath (engine thread).

        ``Vary (Region)`` without a ``mask`` opens the mask drawer instead. A label whose last
        child is still queued or running is ignored, so a double click starts one job. An error
        shows as one line in the view. Returns the child's view, or ``None``.
        """
        if self.action_state.get(label) in BUSY:
            return None
        if label == VARY_REGION and kwargs.get("mask") is None:
            self._open_drawer(prompt=kwargs.get("prompt"))
            return None
        try:
            child = self._job.act(label, **kwargs)
        except ImagineError as exc:
            self._say(f"{label}: {exc}")
            return None
        self._say("")
        return self.adopt(child)

    def adopt(self, child: Job, replacing: ipywidgets.Widget | None = None) -> JobView:
        """Show ``child`` beneath this view (in place of ``replacing`` if given; engine thread)."""
        view = JobView(child, parent=self)
        boxes = list(self.box.children)
        if replacing is not None and replacing in boxes:
            boxes[boxes.index(replacing)] = view.box
        else:
            boxes.append(view.box)
        self.box.children = tuple(boxes)
        self._views.append(view)  # after the box: a thread that sees the view sees it placed
        if child.action:
            self._set_state(child.action, child.status.value)
        self._lineage_changed()
        return view

    def _open_drawer(self, prompt: str | None = None, action: str = VARY_REGION) -> Any:
        """Open the mask drawer over this job's image, beneath the view (engine thread)."""
        try:
            drawer = MaskDrawer(self._job, prompt=prompt, action=action, origin=self)
        except ImagineError as exc:
            self._say(f"{action}: {exc}")
            return None
        self.box.children = (*self.box.children, drawer)
        self._set_state(action, "drawing")
        return drawer

    def drawer_closed(self, drawer: MaskDrawer) -> None:
        """Take the cancelled ``drawer`` away (engine thread)."""
        self.box.children = tuple(w for w in self.box.children if w is not drawer)
        self._set_state(drawer.action, None)

    def _send_images(self) -> None:
        reply: ImagesReply = {"type": "images", "rev": self.images_rev}
        self.send(reply, list(self._thumbs))

    def _send_full(self, index: Any) -> None:
        if not isinstance(index, int) or isinstance(index, bool):
            return
        reply: FullReply = {"type": "full", "index": index}
        offload(_images.full_image, self._job, index, then=lambda data: self.send(reply, [data]))


def _view_text(job: Job) -> str:
    prompt = job.prompt if len(job.prompt) <= 60 else job.prompt[:57] + "…"
    return f"{job.provider} {job.kind} {job.id[:8]} · {prompt!r} (live view)"


def _child_view(job: Job) -> ipywidgets.Widget:
    return JobView(job).box


MaskDrawer.child_view = _child_view


def job_bundle(job: Job) -> dict[str, Any]:
    """``Job._display_hook``: the live view in a kernel, the static bundle elsewhere."""
    if not _display.in_kernel():
        return job._static_bundle()
    try:
        return JobView(job, fallback_key=uuid.uuid4().hex)._repr_mimebundle_()
    except Exception:  # never break displaying a job
        logger.exception("could not build the job view; showing the static form")
        return job._static_bundle()


def drawer_for(job: Job, prompt: str | None = None) -> MaskDrawer | None:
    """``job.vary_region()`` without a mask: the drawer to display in a kernel, else ``None``
    (outside a notebook the call goes on and asks for a mask)."""
    if not _display.in_kernel() or VARY_REGION not in job.actions:
        return None
    return MaskDrawer(job, prompt=prompt)
