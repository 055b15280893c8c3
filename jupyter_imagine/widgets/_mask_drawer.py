"""The mask drawer (``js/mask_drawer.js``) for Vary (Region) and every masked edit.

All painting happens in the browser, at the image's own pixel size; the drawer sends the mask
once, as a black/white PNG in a message buffer (no base64: that happens only at the provider's
HTTP boundary). Python checks it with :func:`jupyter_imagine.imaging.load_mask` against the
image's size, starts the child job and the drawer closes into the child's view. A refused mask
(wrong size, empty) or a refused start shows as one line in the drawer, which stays open.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

import ipywidgets
import traitlets as t

from .._secrets import get_logger
from ..errors import ImagineError, InvalidRequest
from ..imaging import image_size, load_mask
from ..models import VARY_REGION, Job
from . import _images
from ._bundle import display_bundle
from ._labels import provider_label
from ._protocol import MaskDrawerRequest, message_type
from ._runtime import defer
from ._shared_esm import SharedCodeWidget

__all__ = ["DrawerHost", "MaskDrawer"]

logger = get_logger(__name__)

#: Long side, in pixels, of the picture shown under the mask (default 768); the mask itself is
#: always painted and exported at the image's full size.
DISPLAY = 768


class DrawerHost(Protocol):
    """What a drawer opened from a job view needs of that view (``JobView`` is one)."""

    def adopt(self, child: Job, replacing: ipywidgets.Widget | None = None) -> Any:
        """Show ``child``'s view beneath, in place of ``replacing`` (the drawer)."""

    def drawer_closed(self, drawer: MaskDrawer) -> None:
        """``drawer`` was cancelled: take it away."""


class MaskDrawer(SharedCodeWidget):
    """Paint a mask over ``job``'s image and start the masked action with it.

    Args:
        job: a finished job with one image (an upscale, for Vary (Region)).
        prompt: the prompt field's starting text (default: the job's prompt).
        action: the masked action to start (default ``"Vary (Region)"``).
        origin: the job view it was opened from (default ``None``: displayed on its own, and
            on submit its :attr:`box` turns into :attr:`child_view` of the child).

    Raises:
        ActionNotAvailable: ``job`` does not offer ``action`` now.
        InvalidRequest: ``job`` has no image to draw on.

    Attributes:
        box: the ``VBox`` to display when the drawer stands alone; on submit it holds the
            child's view instead.
        child: the job the drawer started, once submitted, else ``None``.
    """

    #: Makes the view a stand-alone drawer turns into: ``JobView(job).box``, set by
    #: ``_job_view`` (which sits above this module and opens drawers itself).
    child_view: ClassVar[Callable[[Job], ipywidgets.Widget] | None] = None

    _code_name = "mask_drawer.js"

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
                 origin: DrawerHost | None = None, **kwargs: Any) -> None:
        action = job.require_action(action)
        images = _images.shown(job)
        if not images:
            raise InvalidRequest(f"job {job.id} has no image to draw a mask on")
        source = images[0]
        data = source.read_bytes()
        width, height = (source.width, source.height) if source.width and source.height \
            else image_size(data)
        super().__init__(
            job_id=job.id, provider_label=provider_label(job.provider), sandbox=bool(job.sandbox),
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
        text = f"mask drawer for {self._job.kind} {self._job.id[:8]}"
        return display_bundle(self, self.box, text)[0]

    # ------------------------------------------------------------------ messages
    def _on_msg(self, _widget: Any, content: Any, buffers: Sequence[Any] | None) -> None:
        """Comm handler (main or subshell thread): hand the message to the engine thread."""
        defer(self._handle, dict(content or {}), [bytes(b) for b in buffers or ()])

    def _handle(self, content: MaskDrawerRequest, buffers: list[bytes]) -> None:
        kind = message_type(content)
        if kind == "submit":
            prompt = content.get("prompt")  # type: ignore[union-attr]
            self._submit(str(prompt or ""), buffers[0] if buffers else b"")
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
            self._origin.adopt(child, replacing=self)
        elif self.child_view is not None:
            self.box.children = (type(self).child_view(child),)
        logger.debug("mask drawer started %s job %s", child.kind, child.id)

    def _cancel(self) -> None:
        if self.status in ("submitting", "submitted"):
            return
        self.status = "cancelled"
        if self._origin is not None:
            self._origin.drawer_closed(self)
        else:
            self.box.children = ()

