"""Every custom message between the widgets' JS (``js/``) and Python, in one place.

``model.send(...)`` in the browser arrives in a widget's ``on_msg`` handler as one of the
``*Request`` shapes; Python answers with ``widget.send(...)`` as one of the ``*Reply`` shapes.
Binary data always rides in the message's buffers, never in the JSON: the mask PNG of a
``submit``, the full-size image of a ``full`` reply, the thumbnails of an ``images`` reply, one
thumbnail per id of a ``thumbs`` reply.
:data:`REQUESTS` / :data:`REPLIES` list the ``type`` values per widget (a test checks the JS
against them).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

__all__ = [
    "REPLIES",
    "REQUESTS",
    "ActRequest",
    "CancelRequest",
    "FullReply",
    "FullRequest",
    "GalleryRequest",
    "ImagesReply",
    "ImagesRequest",
    "JobViewRequest",
    "MaskDrawerRequest",
    "OpenRequest",
    "SubmitRequest",
    "ThumbsReply",
    "ThumbsRequest",
    "message_type",
]


# ---------------------------------------------------------------------- job view (job_view.js)
class ActRequest(TypedDict):
    """A click on an action button: start the child job of ``label`` (``"U2"``, ``"🔄"`` …)."""

    type: Literal["act"]
    label: str


class FullRequest(TypedDict):
    """The lightbox wants image ``index`` (0-based) at full size."""

    type: Literal["full"]
    index: int


class CancelRequest(TypedDict):
    """Cancel: the job (job view) or the drawer itself (mask drawer)."""

    type: Literal["cancel"]


class ImagesRequest(TypedDict):
    """The view was rendered: send the result's thumbnails (Python also sends them unasked to
    the open views whenever ``images_rev`` changes)."""

    type: Literal["images"]


class ImagesReply(TypedDict):
    """The thumbnails of revision ``rev``, one buffer each (none: no result yet). A view
    rendered from a notebook's saved widget state gets no reply (no kernel): it keeps the
    static picture beside it visible."""

    type: Literal["images"]
    rev: int


class FullReply(TypedDict):
    """The full-size bytes of image ``index``, as the message's one buffer."""

    type: Literal["full"]
    index: int


JobViewRequest = ActRequest | FullRequest | CancelRequest | ImagesRequest


# ---------------------------------------------------------------- mask drawer (mask_drawer.js)
class SubmitRequest(TypedDict):
    """Submit the mask (a black/white PNG at the image's size, the one buffer) with ``prompt``."""

    type: Literal["submit"]
    prompt: str


MaskDrawerRequest = SubmitRequest | CancelRequest


# ------------------------------------------------------------------------ gallery (gallery.js)
class ThumbsRequest(TypedDict):
    """Thumbnails for the tiles of ``ids`` that scrolled into view."""

    type: Literal["thumbs"]
    ids: list[str]


class OpenRequest(TypedDict):
    """A click on a tile: open job ``id``'s view under the grid."""

    type: Literal["open"]
    id: str


class ThumbsReply(TypedDict):
    """One thumbnail per id, as buffers in the same order (an empty buffer: no picture)."""

    type: Literal["thumbs"]
    ids: list[str]


GalleryRequest = ThumbsRequest | OpenRequest

#: ``type`` values each widget's JS sends.
REQUESTS: dict[str, frozenset[str]] = {
    "job_view": frozenset({"act", "full", "cancel", "images"}),
    "mask_drawer": frozenset({"submit", "cancel"}),
    "gallery": frozenset({"thumbs", "open"}),
}
#: ``type`` values Python sends back to each widget's JS.
REPLIES: dict[str, frozenset[str]] = {
    "job_view": frozenset({"full", "images"}),
    "mask_drawer": frozenset(),
    "gallery": frozenset({"thumbs"}),
}


def message_type(content: Any) -> str:
    """The ``type`` of a received message, or ``""`` for anything that is not a dict with one."""
    if isinstance(content, dict):
        kind = content.get("type")
        if isinstance(kind, str):
            return kind
    return ""
