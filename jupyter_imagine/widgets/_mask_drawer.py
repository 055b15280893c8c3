"""The mask drawer (``js/mask_drawer.js``) for Vary (Region) and every masked edit.

All painting happens in the browser, at the image's own pixel size; the drawer sends the mask
once, as a black/white PNG in a message buffer (no base64: that happens only at the provider's
HTTP boundary). Python checks it with :func:`jupyter_imagine.imaging.load_mask` against the
image's size, starts the child job and the drawer closes into the child's view. A refused mask
(wrong size, empty) or a refused start shows as one line in the drawer, which stays open.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anywidget
import ipywidgets
import traitlets as t

from .._secrets import get_logger
from ..errors import ActionNotAvailable, ImagineError, InvalidRequest
from ..imaging import image_size, load_mask
from ..models import VARY_REGION, Job
from . import _images
from ._assets import read_asset
from ._runtime import defer

if TYPE_CHECKING:  # pragma: no cover
    from ._job_view import JobView

__all__ = ["MaskDrawer", "drawer_for"]

logger = get_logger(__name__)

#: Long side, in pixels, of the picture shown under the mask (default 768); the mask itself is
#: always painted and exported at the image's full size.
DISPLAY = 768


class MaskDrawer(anywidget.AnyWidget):
    """Paint a mask over ``job``'s image and start the masked action with it.

    Args:
        job: a finished job with one image (an upscale, for Vary (Region)).
        prompt: the prompt field's starting text (default: the job's prompt).
        action: the masked action to start (default ``"Vary (Region)"``).
        origin: the job view it was opened from (default ``None``: displayed on its own).

    Raises:
        ActionNotAvailable: ``job`` does not offer ``action`` now.
        InvalidRequest: ``job`` has no image to draw on.

    Attributes:
        box: the ``VBox`` to display when the drawer stands alone; on submit it holds the
            child's view instead.
        child: the job the drawer started, once submitted, else ``None``.
    """

    _esm = read_asset("mask_drawer.js")
    _css = read_asset("widgets.css")

    job_id = t.Unicode("").tag(sync=True)
    provider_label = t.Unicode("").tag(sync=True)
    sandbox = t.Bool(False).tag(sync=True)
    title = t.Unicode(VARY_REGION).tag(sync=True)
    prompt = t.Unicode("").tag(sync=True)
    #: The picture under the mask (JPEG or PNG, long side ≤ :data:`DISPLAY`).
    image = t.Bytes(b"").tag(sync=True)
    #: The source image's size: the mask is painted and exported at exactly this size.
    width = t.Int(0).tag(sync=True)
    height = t.Int(0).tag(sync=True)
    #: ``drawing``, ``submitting``, ``submitted`` or ``cancelled``.
    status = t.Unicode("drawing").tag(sync=True)
    #: Why the last submit was refused (one line), else ``""``.
    error = t.Unicode("").tag(sync=True)

    def __init__(self, job: Job, prompt: str | None = None, *, action: str = VARY_REGION,
                 origin: JobView | None = None, **kwargs: Any) -> None:
        if action not in job.actions:
            offered = ", ".join(job.actions) or "nothing until it has succeeded"
            raise ActionNotAvailable(
                f"{job.kind} job {job.id} does not offer {action!r} (status "
                f"{job.status.value}); it offers: {offered}",
                provider=job.provider,
            )
        images = _images.shown(job)
        if not images:
            raise InvalidRequest(f"job {job.id} has no image to draw a mask on")
        source = images[0]
        data = source.read_bytes()
        width, height = (source.width, source.height) if source.width and source.height \
            else image_size(data)
        from ._job_view import _label

        super().__init__(
            job_id=job.id, provider_label=_label(job.provider), sandbox=bool(job.sandbox),
            title=action, prompt=job.prompt if prompt is None else prompt,
            image=_images.shrink(data, DISPLAY), width=int(width), height=int(height), **kwargs,
        )
        self._job = job
        self.action = action
        self._origin = origin
        self.child: Job | None = None
        self.box = ipywidgets.VBox([self])
        self.box.add_class("ji-lineage")
        self.on_msg(self._on_msg)

    @property
    def job(self) -> Job:
        """The job whose image is masked."""
        return self._job

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        from ._bundle import widget_bundle

        return widget_bundle(self.box, f"mask drawer for {self._job.kind} {self._job.id[:8]}")

    # ------------------------------------------------------------------ messages
    def _on_msg(self, _widget: Any, content: Any, buffers: Sequence[Any] | None) -> None:
        """Comm handler (main or subshell thread): hand the message to the engine thread."""
        defer(self._handle, dict(content or {}), [bytes(b) for b in buffers or ()])

    def _handle(self, content: dict[str, Any], buffers: list[bytes]) -> None:
        kind = content.get("type")
        if kind == "submit":
            self._submit(str(content.get("prompt") or ""), buffers[0] if buffers else b"")
        elif kind == "cancel":
            self._cancel()
        else:
            logger.debug("MaskDrawer: unknown message %r", kind)

    def _refuse(self, text: str) -> None:
        self.error = ""  # a repeated refusal still reaches the browser as a change
        with self.hold_sync():
            self.error = text
            self.status = "drawing"

    def _submit(self, prompt: str, data: bytes) -> None:
        """Check the mask and start the child (engine thread); one submit per drawer."""
        if self.status in ("submitting", "submitted", "cancelled"):
            return
        self.status = "submitting"
        try:
            mask = load_mask(data, (self.width, self.height))
            child = self._job.act(self.action, mask=mask, prompt=prompt.strip() or None)
        except ImagineError as exc:
            self._refuse(str(exc))
            return
        self.child = child
        with self.hold_sync():
            self.error = ""
            self.status = "submitted"
        if self._origin is not None:
            self._origin._adopt(child, replacing=self)
        else:
            from ._job_view import JobView

            self.box.children = (JobView(child).box,)
        logger.debug("mask drawer started %s job %s", child.kind, child.id)

    def _cancel(self) -> None:
        if self.status in ("submitting", "submitted"):
            return
        self.status = "cancelled"
        if self._origin is not None:
            self._origin._drawer_closed(self)
        else:
            self.box.children = ()


def drawer_for(job: Job, prompt: str | None = None) -> MaskDrawer | None:
    """``job.vary_region()`` without a mask: the drawer to display in a kernel, else ``None``
    (outside a notebook the call goes on and asks for a mask)."""
    from ._bundle import in_kernel

    if not in_kernel() or VARY_REGION not in job.actions:
        return None
    return MaskDrawer(job, prompt=prompt)
