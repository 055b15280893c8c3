"""Blockade Labs (Skybox AI) emulated at ``{root}/blockade``.

Same paths, fields, envelopes, status strings and error shapes as
``https://backend.blockadelabs.com`` (``providers.md`` §3 and the seed page), so the official SDKs
and our client run unchanged against it. Paths below ``/blockade/api/v1``:

- ``GET /skybox/styles`` (``?model_version=3|4``), ``GET /skybox/families`` — the style catalogue
  (:data:`STYLES`), hyphenated keys (``"max-char"``, ``"negative-text-max-char"``) included.
- ``POST /skybox`` — a new skybox (or a remix with ``remix_imagine_id`` /
  ``remix_obfuscated_id``); answers the generation object **unwrapped**, status ``pending``.
- ``GET /skybox/export`` — the export types; ``POST /skybox/export`` (``skybox_id`` = the
  skybox's ``obfuscated_id``, ``type_id``), ``GET`` / ``DELETE /skybox/export/{id}``.
- ``GET /generators``; ``POST /imagine/requests`` (the legacy generator API:
  ``generator`` + that generator's params, validated against its ``params``).
- ``GET /imagine/requests/{id}``, ``GET /imagine/requests/obfuscated-id/{obfuscated_id}`` —
  ``{"request": {...}}``; ``DELETE /imagine/requests/{id}`` (cancel: ``abort``),
  ``DELETE /imagine/requests/pending`` (cancel every ``pending`` request),
  ``DELETE /imagine/deleteImagine/{id}`` (``{"success": "Item deleted successfully", "id": "42"}``).
- ``GET /imagine/myRequests`` — ``status``, ``limit`` (default 18, 1–100), ``offset`` (the
  **page number**, default 0), ``order`` (``ASC``/``DESC``, default ``DESC``), ``imagine_id``,
  ``query`` (title or prompt, any case), ``generator``, ``skybox_style_id`` →
  ``{"data": [...], "totalCount": n, "has_more": bool}``.

Files are public, like Blockade's S3 bucket, under ``/blockade/cdn/...`` (404 until complete):
the panorama ``images/imagine/<slug>__<obfuscated_id>.jpg`` (2048×1024 JPEG), its thumbnail
``thumbs/imagine/thumb_….jpg`` (672×336) and depth map ``depths/imagine/depth_….png``, export
files ``exports/<export id>/<name>``, style previews ``styles/<id>.webp|.jpg``.

Auth: ``x-api-key`` header, or ``api_key`` as a query or body (JSON / form) field. A missing key
→ 401 ``{"error": "API key is required"}``; a key in ``state.rejected_keys`` (or not in
``state.accepted_keys`` when set) → 401 ``{"error": "Invalid API key"}``. Each key is one account:
requests, listings and exports of one key are invisible to another (404).

Errors are always ``{"error": "..."}``: 400 for a missing, malformed or out-of-range field
(length limits, seed range, unknown style, generator params, banned words — the seed page
documents 400 for "invalid generator data"); 401 auth; 403 a premium export type
(``state.providers["blockade"].premium`` is ``False`` by default); 404 an unknown or deleted id
(in the path or referenced by a field); 422 a request that is well-formed but not possible in the
current state (export or remix of a skybox that is not complete, cancelling a finished request or
export); 429 rate limit; 500 an internal failure.

Rate limits (Laravel's throttle, which Blockade's backend uses): every API answer carries
``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (Unix time when the
window ends). Windows are 60 simulated seconds per key. By default the limit is a generous
:attr:`Blockade.rate_limit` = 1000 and never enforced; with ``enforce_limits = True`` the limit is
:attr:`Blockade.enforced_limit` (default 10) and the request past it gets 429
``{"error": "Too Many Attempts."}`` with ``Retry-After`` (whole real seconds until the window
ends, at least 1; simulated seconds when the clock is frozen).

Lifecycle, from the sandbox clock (simulated seconds since submit): ``[0, 4)`` ``pending`` with
``queue_position`` 2 then 1 (``[2, 4)``), ``[4, 6)`` ``dispatched``, ``[6, 30)`` ``processing``,
then ``complete``; ``dispatched_at``, ``processing_at``, ``completed_at`` are set as reached.
A cancel sets ``abort``. Exports: JPG (1) and depth map (6) are ``complete`` at once; PNG 6 s,
cube map 8 s, HDRI 12 s, videos 20 s (``pending`` for the first second, then ``processing``).
Webhooks (``webhook_url``) are POSTed with the object as JSON on each status change.

Magic words in a prompt: ``sandbox:fail`` — ``error`` at 18 s with ``error_message``
``"Generation failed (sandbox:fail)"``; ``sandbox:hang`` — stays ``processing``. Banned words
(``state.banned_words``) → 400 ``Your prompt contains inappropriate content: 'gore'``.

Choices where the real behaviour is unknown ([I] in providers.md):

- ``skybox_style_id`` is required (current docs); the prompt limit is the style's ``"max-char"``,
  the negative text's its ``"negative-text-max-char"``.
- ``seed`` 0 (or absent) means random: a seed is drawn and reported in the object.
- ``enhance_prompt: true`` appends a few descriptive words to the stored ``prompt``.
- The depth map is always made: 1024×512, or 2048×1024 with ``return_depth_hq: true``.
- ``init_image`` blends into the result with ``init_strength`` as its weight (default 0.5);
  ``control_image`` lines show through the result (``control_model`` ``remix``, default, or the
  older ``sketch``/``scribble``, which need a 1024×512 image). Images may be files (multipart),
  base64 (with or without a data URI) or absolute URLs (this sandbox's own files are read
  directly).
- Cube maps are a 6×1 strip of 512 px faces in OpenGL/Unity order (+X, −X, +Y, −Y, +Z, −Z); HDRI
  exports (HDR and EXR) are 8-bit PNG stand-ins of the panorama; videos (premium only) are
  animated GIF stand-ins panning once around the panorama.
- Real sizes are 6144×3072 (M3; newer docs say 8K) with 672×336 thumbnails and 2048×1024 depth
  maps; the sandbox keeps 2048×1024 panoramas so tests stay fast.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import io
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import imaging
from .._secrets import get_logger
from . import _http as http
from ._art import _skybox as art
from ._state import SandboxState, Snapshot, retry_headers, watch_and_post

__all__ = [
    "EXPORT_TYPES",
    "GENERATORS",
    "NAME",
    "PREFIX",
    "STYLES",
    "Blockade",
    "Export",
    "Imagine",
    "build",
    "fault_response",
]

logger = get_logger(__name__)

NAME = "blockade"
PREFIX = "/blockade"
API = "/api/v1"

USERNAME = "sandbox@jupyter-imagine.local"
FAIL_WORD = "sandbox:fail"
HANG_WORD = "sandbox:hang"
FAIL_MESSAGE = "Generation failed (sandbox:fail)"
SEED_MAX = 2147483647
INIT_STRENGTH_MAX = 0.97
MAX_UPLOAD = 50 * 1024 * 1024

#: Simulated seconds at which a request enters each status.
DISPATCHED_AT = 4.0
PROCESSING_AT = 6.0
COMPLETE_AT = 30.0
FAIL_AT = 18.0
STATUSES = ("pending", "dispatched", "processing", "complete", "abort", "error")

PANORAMA_SIZE = (2048, 1024)
THUMB_SIZE = (672, 336)
DEPTH_SIZE = (1024, 512)
DEPTH_HQ_SIZE = (2048, 1024)
CUBE_FACE = 512
JPEG_QUALITY = 90
PNG_LEVEL = 1


# ------------------------------------------------------------------------------ catalogue
def _style(
    id: int, name: str, description: str, family: int | None, sort_order: int, *,
    model: int = 3, max_char: int = 2000, negative: int = 1000, premium: int = 0, new: int = 0,
    experimental: int = 0,
) -> dict[str, Any]:
    return {
        "id": id,
        "name": name,
        "description": description,
        "max-char": max_char,
        "negative-text-max-char": negative,
        "image": None,  # filled with this sandbox's address per request
        "image_jpg": None,
        "model": f"Model {model}",
        "model_version": str(model),
        "sort_order": sort_order,
        "premium": premium,
        "new": new,
        "experimental": experimental,
        "skybox_style_families_id": family,
    }


#: The style catalogue: Model 3 styles in three families, and one Model 4 style on its own.
STYLES: tuple[dict[str, Any], ...] = (
    _style(67, "M3 Photoreal", "Lifelike worlds with natural light", 1, 1),
    _style(119, "M3 Sci-Fi Realism", "Alien planets and far-future vistas", 1, 2),
    _style(68, "M3 Fantasy Landscape", "Mountains, forests and skies out of a storybook", 2, 3),
    _style(121, "M3 Cyberpunk", "Neon cities at night", 2, 4, new=1),
    _style(122, "M3 Winter Wonderland", "Snow, ice and clear cold light", 2, 5),
    _style(69, "M3 Digital Painting", "Painterly brushwork", 3, 6, negative=400),
    _style(70, "M3 Anime Art Style", "Flat colours and clean outlines", 3, 7),
    _style(71, "M3 Watercolor", "Soft washes on paper", 3, 8, premium=1),
    _style(
        200, "M4 Standard", "Model 4: sharper detail at 4K", None, 9, model=4, max_char=800,
        negative=400, experimental=1,
    ),
)
FAMILIES: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "Realism", "sort_order": 1},
    {"id": 2, "name": "Worlds", "sort_order": 2},
    {"id": 3, "name": "Art", "sort_order": 3},
)

#: The legacy generators (the seed page's ``stable-skybox``).
GENERATORS: tuple[dict[str, Any], ...] = (
    {
        "id": 13,
        "generator": "stable-skybox",
        "name": "Stable Diffusion Skybox",
        "label": "Stable Diffusion Skybox",
        "params": {
            "prompt": {
                "name": "Text Prompt",
                "type": "textarea",
                "required": True,
                "max_value": 600,
                "display_help": "<p>e.g. 'A fine oil painting of ducks flying by'</p>",
                "display_wide": True,
                "display_label": "Describe the image you wish to create",
                "display_element": "textarea",
                "parsePrompt": True,
                "imagine_text": True,
            },
            "negative_text": {
                "name": "Negative Text Prompt",
                "type": "textarea",
                "max_value": 400,
                "default_value": "",
                "display_help": "<p>e.g. 'watermark', 'extra arms'</p>",
                "display_wide": True,
                "display_label": "Describe things to avoid when imagining.",
                "display_element": "textarea",
            },
            "seed": {
                "name": "Generation Seed",
                "type": "int",
                "max_value": SEED_MAX,
                "min_value": -1,
                "default_value": 0,
                "display_help": "<p>Choose 0 for a random seed.</p>",
                "display_label": "Image Generation Seed",
                "display_element": "input",
                "parse_random": True,
                "random_max_value": SEED_MAX,
                "random_min_value": 1,
            },
            "animation_mode": {
                "name": "Animation Mode",
                "type": "select",
                "options": [{"label": "Skybox", "value": "skybox"}],
                "required": False,
                "default_value": "skybox",
                "display_label": "Generation Mode",
                "display_element": "select",
            },
        },
        "sort_order": 1,
    },
)

#: Export types: ``(id, name, key, premium_feature, seconds to finish, file extension)``.
_EXPORTS: tuple[tuple[int, str, str, bool, float, str], ...] = (
    (1, "JPG", "equirectangular-jpg", False, 0.0, "jpg"),
    (2, "PNG", "equirectangular-png", False, 6.0, "png"),
    (3, "Cube Map", "cube-map-png", False, 8.0, "png"),
    (4, "HDRI HDR", "hdri-hdr", False, 12.0, "png"),
    (5, "HDRI EXR", "hdri-exr", False, 12.0, "png"),
    (6, "Depth Map", "depth-map-png", False, 0.0, "png"),
    (7, "Video Landscape", "video-landscape-mp4", True, 20.0, "gif"),
    (8, "Video Portrait", "video-portrait-mp4", True, 20.0, "gif"),
    (9, "Video Square", "video-square-mp4", True, 20.0, "gif"),
)
EXPORT_TYPES: tuple[dict[str, Any], ...] = tuple(
    {"id": i, "name": n, "key": k, "premium_feature": p} for i, n, k, p, _, _ in _EXPORTS
)
_EXPORT = {e[0]: e for e in _EXPORTS}
_VIDEO_SIZES = {7: (640, 360), 8: (360, 640), 9: (480, 480)}

_ENHANCEMENTS = (
    "highly detailed, volumetric light",
    "cinematic atmosphere, soft global illumination",
    "vivid colours, crisp horizon",
    "dramatic sky, rich textures",
)


# ------------------------------------------------------------------------------ errors
class ApiError(http.ApiError):
    """An error answered in Blockade's shape, ``{"error": "..."}``."""

    def __init__(self, status: int, error: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, error, headers=headers)

    def response(self) -> Response:
        return error_response(self.status, self.message)


def error_response(
    status: int, error: str | None = None, *, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Blockade's error answer: ``{"error": "..."}`` with ``status``."""
    text = error or {
        400: "Bad request",
        401: "Invalid API key",
        403: "Account does not have access to this method",
        404: "Not found",
        405: "Method not allowed",
        422: "Unprocessable request",
        429: "Too Many Attempts.",
    }.get(status, "Internal server error" if status >= 500 else "Request failed")
    return JSONResponse({"error": text}, status_code=status, headers=headers or {})


def fault_response(status: int, *, retry_after: float | None = None) -> Response:
    """The answer to an injected fault, in Blockade's error shape."""
    return error_response(status, headers=retry_headers(status, retry_after))


# ------------------------------------------------------------------------------ records
@dataclass
class Imagine:
    """One generation (a skybox, a remix, or a legacy imagine request) as the sandbox keeps it.

    ``created`` and ``aborted_at`` are simulated times; ``owner`` is a hash of the API key.
    """

    id: int
    obfuscated_id: str
    owner: str
    user_id: int
    kind: str  # "skybox" or "imaginarium"
    prompt: str
    negative_text: str
    seed: int
    created: float
    style: dict[str, Any] | None = None
    generator: str | None = None
    generator_data: dict[str, Any] | None = None
    remix_of: int | None = None
    remix_obfuscated_id: str | None = None
    enhance_prompt: bool = False
    depth_hq: bool = False
    init_image: bytes | None = field(default=None, repr=False)
    init_strength: float = 0.5
    control_image: bytes | None = field(default=None, repr=False)
    control_model: str | None = None
    webhook_url: str | None = None
    origin: str = ""
    aborted_at: float | None = None
    deleted: bool = False

    @property
    def fail(self) -> bool:
        return FAIL_WORD in self.prompt.lower()

    @property
    def hang(self) -> bool:
        return HANG_WORD in self.prompt.lower()

    def phase(self, now: float) -> tuple[str, float | None]:
        """``(status, simulated time of the next change or None)``."""
        if self.aborted_at is not None and now >= self.aborted_at:
            return "abort", None
        elapsed = now - self.created
        cut = self.aborted_at if self.aborted_at is not None else math.inf
        if elapsed < DISPATCHED_AT:
            step = self.created + (2.0 if elapsed < 2.0 else DISPATCHED_AT)
            return "pending", min(step, cut)
        if elapsed < PROCESSING_AT:
            return "dispatched", min(self.created + PROCESSING_AT, cut)
        if self.fail and elapsed >= FAIL_AT:
            return "error", None
        if self.hang or elapsed < COMPLETE_AT:
            following = FAIL_AT if self.fail else (math.inf if self.hang else COMPLETE_AT)
            return "processing", min(self.created + following, cut)
        return "complete", None

    def status(self, now: float) -> str:
        return self.phase(now)[0]

    def reached(self, now: float, offset: float) -> float | None:
        """The simulated time the request entered the status starting at ``offset``, if it did."""
        when = self.created + offset
        if now < when or (self.aborted_at is not None and self.aborted_at <= when):
            return None
        if offset >= COMPLETE_AT and (self.hang or self.fail):
            return None
        return when

    @property
    def slug(self) -> str:
        words = re.findall(r"[a-z0-9]+", self.prompt.lower())[:8]
        return "_".join(words)[:60] or "skybox"


@dataclass
class Export:
    """One export of a skybox (``type_id`` 1–9)."""

    id: str
    imagine_id: int
    owner: str
    type_id: int
    created: float
    webhook_url: str | None = None
    origin: str = ""
    aborted_at: float | None = None

    @property
    def duration(self) -> float:
        return _EXPORT[self.type_id][4]

    def phase(self, now: float) -> tuple[str, float | None]:
        if self.aborted_at is not None and now >= self.aborted_at:
            return "abort", None
        elapsed = now - self.created
        cut = self.aborted_at if self.aborted_at is not None else math.inf
        if elapsed >= self.duration:
            return "complete", None
        if elapsed < 1.0:
            return "pending", min(self.created + min(1.0, self.duration), cut)
        return "processing", min(self.created + self.duration, cut)


# ------------------------------------------------------------------------------ the emulator
Handler = Callable[[Request, str, dict[str, Any]], Awaitable[Response]]


class Blockade:
    """The Blockade Labs emulator of one sandbox (``state.providers["blockade"]``).

    Attributes:
        rate_limit: requests per 60 simulated seconds and key advertised while limits are not
            enforced (default 1000).
        enforce_limits: answer 429 past the limit (default ``False``).
        enforced_limit: the limit while ``enforce_limits`` is on (default 10).
        rate_window: the window in simulated seconds (default 60).
        premium: whether accounts may use premium export types (videos; default ``False``).
        epoch: Unix time of simulated time 0 (timestamps in answers are ``epoch + clock``).
    """

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.tasks: dict[Any, Any] = state.tasks
        self.rate_limit = 1000
        self.enforce_limits = False
        self.enforced_limit = 10
        self.rate_window = 60.0
        self.premium = False
        self.epoch = time.time()
        self._next_id = 1001
        self._next_export = 1
        self._by_obfuscated: dict[str, int] = {}
        self._windows: dict[str, tuple[float, int]] = {}
        self._users: dict[str, int] = {}

    # ----------------------------------------------------------------- records
    def now(self) -> float:
        return self.state.clock.now()

    def imagines(self) -> list[Imagine]:
        return [t for t in list(self.tasks.values()) if isinstance(t, Imagine)]

    def get(self, imagine_id: int) -> Imagine | None:
        item = self.tasks.get((NAME, imagine_id))
        return item if isinstance(item, Imagine) else None

    def find(self, owner: str, imagine_id: Any, what: str = "Imagine") -> Imagine:
        """The owner's request ``imagine_id`` (int or digits), else 404."""
        try:
            number = int(str(imagine_id).strip())
        except (TypeError, ValueError):
            raise ApiError(404, f"{what} not found") from None
        item = self.get(number)
        if item is None or item.owner != owner or item.deleted:
            raise ApiError(404, f"{what} not found")
        return item

    def find_obfuscated(self, owner: str, obfuscated_id: Any, what: str = "Imagine") -> Imagine:
        number = self._by_obfuscated.get(str(obfuscated_id))
        if number is None:
            raise ApiError(404, f"{what} not found")
        return self.find(owner, number, what)

    def export(self, owner: str, export_id: str) -> Export:
        item = self.tasks.get((NAME + "-export", export_id))
        if not isinstance(item, Export) or item.owner != owner:
            raise ApiError(404, "Export not found")
        parent = self.get(item.imagine_id)
        if parent is None or parent.deleted:
            raise ApiError(404, "Export not found")
        return item

    def user_id(self, owner: str) -> int:
        if owner not in self._users:
            self._users[owner] = 100 + len(self._users)
        return self._users[owner]

    # ----------------------------------------------------------------- time
    def iso(self, when: float | None) -> str | None:
        if when is None:
            return None
        stamp = dt.datetime.fromtimestamp(self.epoch + when, dt.timezone.utc)
        return stamp.replace(microsecond=0).isoformat()

    # ----------------------------------------------------------------- rate limits
    @property
    def limit(self) -> int:
        """The limit in force now."""
        return int(self.enforced_limit if self.enforce_limits else self.rate_limit)

    def throttle(self, bucket: str) -> dict[str, str]:
        """Count one request of ``bucket``; the rate headers, or a 429 :class:`ApiError`."""
        now = self.now()
        start, count = self._windows.get(bucket, (now, 0))
        if now - start >= self.rate_window:
            start, count = now, 0
        limit = self.limit
        reset = start + self.rate_window
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Reset": str(math.ceil(self.epoch + reset)),
        }
        if self.enforce_limits and count >= limit:
            real = self.state.clock.real_seconds_until(reset)
            wait = max(1, math.ceil(reset - now if real is None else real))
            headers.update({"X-RateLimit-Remaining": "0", "Retry-After": str(wait)})
            self._windows[bucket] = (start, count)
            raise ApiError(429, "Too Many Attempts.", headers)
        count += 1
        self._windows[bucket] = (start, count)
        headers["X-RateLimit-Remaining"] = str(max(0, limit - count))
        return headers

    # ----------------------------------------------------------------- views
    def base_url(self, request: Request) -> str:
        return str(request.base_url).rstrip("/") + PREFIX

    def files(self, item: Imagine, base: str) -> dict[str, str]:
        name = f"{item.slug}__{item.obfuscated_id}"
        cdn = f"{base}/cdn"
        return {
            "file_url": f"{cdn}/images/imagine/{name}.jpg?ver=1",
            "thumb_url": f"{cdn}/thumbs/imagine/thumb_{name}.jpg?ver=1",
            "depth_map_url": f"{cdn}/depths/imagine/depth_{name}.png?ver=1",
        }

    def view(self, item: Imagine, base: str, now: float | None = None) -> dict[str, Any]:
        """The generation object for ``item`` now (POST answer, ``request`` body, webhooks)."""
        now = self.now() if now is None else now
        status, _ = item.phase(now)
        queue = 0
        if status == "pending":
            queue = 2 if now - item.created < 2.0 else 1
        changes = [item.created]
        for offset in (DISPATCHED_AT, PROCESSING_AT, COMPLETE_AT):
            when = item.reached(now, offset)
            if when is not None:
                changes.append(when)
        if status == "abort":
            changes.append(item.aborted_at or now)
        elif status == "error":
            changes.append(item.created + FAIL_AT)
        complete = status == "complete"
        urls = self.files(item, base) if complete else {
            "file_url": "", "thumb_url": "", "depth_map_url": "",
        }
        obj: dict[str, Any] = {
            "id": item.id,
            "obfuscated_id": item.obfuscated_id,
            "user_id": item.user_id,
            "username": USERNAME,
            "title": (
                f"World #{item.id}" if item.kind == "skybox" else f"Imagination #{item.id}"
            ),
            "prompt": item.prompt,
            "negative_text": item.negative_text,
            "seed": item.seed,
            "status": status,
            "queue_position": queue,
            **urls,
            "remix_imagine_id": item.remix_of,
            "remix_obfuscated_id": item.remix_obfuscated_id,
            "isMyFavorite": False,
            "error_message": FAIL_MESSAGE if status == "error" else None,
            "pusher_channel": f"status_update_{item.obfuscated_id}",
            "pusher_event": "status_update",
            "created_at": self.iso(item.created),
            "updated_at": self.iso(max(changes)),
            "dispatched_at": self.iso(item.reached(now, DISPATCHED_AT)),
            "processing_at": self.iso(item.reached(now, PROCESSING_AT)),
            "completed_at": self.iso(item.reached(now, COMPLETE_AT)),
            "type": item.kind,
        }
        if item.kind == "skybox":
            style = item.style or {}
            obj.update(
                skybox_style_id=style.get("id"),
                skybox_id=style.get("id"),
                skybox_style_name=style.get("name"),
                skybox_name=style.get("name"),
            )
        else:
            obj.update(generator=item.generator, generator_data=dict(item.generator_data or {}))
        return obj

    def export_view(self, item: Export, base: str, now: float | None = None) -> dict[str, Any]:
        now = self.now() if now is None else now
        status, _ = item.phase(now)
        parent = self.get(item.imagine_id)
        assert parent is not None
        type_id, _, key, _, _, ext = _EXPORT[item.type_id]
        file_url = ""
        if status == "complete":
            file_url = f"{base}/cdn/exports/{item.id}/{parent.slug}_{key}.{ext}"
        return {
            "file_url": file_url,
            "id": item.id,
            "skybox_obfuscated_id": parent.obfuscated_id,
            "type": key,
            "type_id": type_id,
            "status": status,
            "queue_position": 1 if status == "pending" else 0,
            "error_message": None,
            "pusher_channel": f"export_status_update_{item.id}",
            "pusher_event": "status_update",
            "webhook_url": item.webhook_url,
            "created_at": self.iso(item.created),
        }

    def style_view(self, style: dict[str, Any], base: str) -> dict[str, Any]:
        out = dict(style)
        out["image"] = f"{base}/cdn/styles/{style['id']}.webp"
        out["image_jpg"] = f"{base}/cdn/styles/{style['id']}.jpg"
        return out

    # ----------------------------------------------------------------- webhooks
    def watch(self, item: Imagine | Export) -> None:
        """POST the object to its ``webhook_url`` on each status change (background task)."""
        if not item.webhook_url:
            return
        last: dict[str, Any] = {}

        def snapshot(at: float) -> Snapshot:
            now = at
            status, following = item.phase(now)
            if last.get("status") != status:
                payload = (
                    self.view(item, item.origin, now) if isinstance(item, Imagine)
                    else self.export_view(item, item.origin, now)
                )
                last.update(status=status, payload=payload)
            final = status in ("complete", "abort", "error")
            if following is not None and not math.isfinite(following):
                following = None
            return Snapshot(last["payload"], final, following)

        # snapshot(at) lets the watcher replay every status it slept through, from creation.
        self.state.spawn(
            watch_and_post(self.state, item.webhook_url, snapshot, origin=item.origin,
                           since=item.created)
        )

    # ----------------------------------------------------------------- images
    def panorama(self, item: Imagine) -> art.Panorama:
        """The skybox of ``item``: a pure function of its prompt, seed, style and input images."""
        style = (item.style or {}).get("name") or item.generator or ""
        pano = art.panorama(item.prompt, item.seed ^ self.state.seed, PANORAMA_SIZE, style=style)
        if item.init_image is None and item.control_image is None:
            return pano
        image = pano.image
        if item.init_image is not None:
            image = art.blend_init(image, _open(item.init_image), item.init_strength)
        if item.control_image is not None:
            image = art.control_overlay(image, _open(item.control_image))
        return art.Panorama(image, pano.distance)

    def file(self, item: Imagine, what: str) -> tuple[bytes, str]:
        """``(bytes, media type)`` of the panorama (``image``), ``thumb`` or ``depth``."""
        key = (NAME, "file", item.id, what)
        cached = self.state.images.get(key)
        if cached is None:
            pano = self.panorama(item)
            if what == "image":
                cached = _jpeg(pano.image)
            elif what == "thumb":
                cached = _jpeg(pano.image.resize(THUMB_SIZE, Image.Resampling.LANCZOS))
            else:
                size = DEPTH_HQ_SIZE if item.depth_hq else DEPTH_SIZE
                cached = imaging.to_png(pano.depth(size), compress_level=PNG_LEVEL)
            self.state.images.put(key, cached)
        return cached, "image/png" if what == "depth" else "image/jpeg"

    def export_file(self, item: Export) -> tuple[bytes, str]:
        key = (NAME, "export", item.id)
        cached = self.state.images.get(key)
        if cached is None:
            parent = self.get(item.imagine_id)
            assert parent is not None
            pano = self.panorama(parent)
            text = {
                "prompt": parent.prompt,
                "Software": "jupyter_imagine sandbox (blockade)",
                "export": _EXPORT[item.type_id][2],
            }
            if item.type_id == 1:
                cached = self.file(parent, "image")[0]
            elif item.type_id == 2:
                cached = imaging.to_png(pano.image, text, compress_level=PNG_LEVEL)
            elif item.type_id == 3:
                strip = art.cube_map(pano.image, CUBE_FACE)
                text["layout"] = "strip +x -x +y -y +z -z"
                cached = imaging.to_png(strip, text, compress_level=PNG_LEVEL)
            elif item.type_id in (4, 5):
                fmt = "HDR" if item.type_id == 4 else "EXR"
                text["stand-in"] = f"8-bit PNG in place of {fmt}"
                cached = imaging.to_png(pano.image, text, compress_level=PNG_LEVEL)
            elif item.type_id == 6:
                cached = imaging.to_png(pano.depth(DEPTH_HQ_SIZE), text, compress_level=PNG_LEVEL)
            else:
                frames = art.video_frames(pano.image, _VIDEO_SIZES[item.type_id])
                buf = io.BytesIO()
                frames = [f.quantize(64, method=Image.Quantize.FASTOCTREE) for f in frames]
                frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:],
                               duration=160, loop=0)
                cached = buf.getvalue()
            self.state.images.put(key, cached)
        ext = _EXPORT[item.type_id][5]
        return cached, {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif"}[ext]

    # ----------------------------------------------------------------- reading inputs
    async def image_field(self, value: Any, name: str) -> bytes:
        """The bytes of an image given as a file, base64 text or an absolute URL (400 if not)."""
        if isinstance(value, bytes):
            data = value
        elif isinstance(value, str) and re.match(r"^https?://", value.strip()):
            data = await self.download(value.strip(), name)
        elif isinstance(value, str) and value.strip():
            text = re.sub(r"^data:[\w/+.-]*;base64,", "", value.strip())
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(
                    400, f"The {_label(name)} must be an image file, base64 or URL."
                ) from None
        else:
            raise ApiError(400, f"The {_label(name)} must be an image file, base64 or URL.")
        if len(data) > MAX_UPLOAD:
            raise ApiError(400, f"The {_label(name)} may not be greater than 51200 kilobytes.")
        try:
            _open(data)
        except (UnidentifiedImageError, OSError):
            raise ApiError(400, f"The {_label(name)} must be an image.") from None
        return data

    async def download(self, url: str, name: str) -> bytes:
        try:
            path = httpx.URL(url).path
        except (httpx.InvalidURL, TypeError):
            raise ApiError(400, f"The {_label(name)} URL is not valid.") from None
        if path.startswith(PREFIX + "/cdn/"):  # our own file: read it directly
            found = await self.cdn_bytes(path[len(PREFIX) :])
            if found is None:
                raise ApiError(400, f"The {_label(name)} URL does not point to an image.")
            return found[0]
        try:
            async with httpx.AsyncClient(timeout=10, follow_redirects=True) as client:
                response = await client.get(url)
            response.raise_for_status()
        except httpx.HTTPError:
            raise ApiError(400, f"The {_label(name)} could not be downloaded.") from None
        return response.content

    def check_prompt(self, prompt: str) -> None:
        word = self.state.banned_word(prompt)
        if word is not None:
            raise ApiError(400, f"Your prompt contains inappropriate content: '{word}'")

    def new_id(self) -> tuple[int, str]:
        number = self._next_id
        self._next_id += 1
        digest = hashlib.blake2b(f"{self.state.seed}:{number}".encode(), digest_size=16)
        obfuscated = digest.hexdigest()
        self._by_obfuscated[obfuscated] = number
        return number, obfuscated

    def draw_seed(self, *parts: object) -> int:
        return 1 + art_seed(self.state.seed, self._next_id, *parts) % (SEED_MAX - 1)

    def store(self, item: Imagine) -> Imagine:
        self.tasks[(NAME, item.id)] = item
        self.watch(item)
        return item

    # ----------------------------------------------------------------- endpoints: catalogue
    async def styles(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        version = _model_version(request)
        base = self.base_url(request)
        return JSONResponse(
            [self.style_view(s, base) for s in STYLES if version in (None, s["model_version"])]
        )

    async def families(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        version = _model_version(request)
        base = self.base_url(request)
        out: list[dict[str, Any]] = []
        for family in FAMILIES:
            items = [
                self.style_view(s, base) for s in STYLES
                if s["skybox_style_families_id"] == family["id"]
                and version in (None, s["model_version"])
            ]
            if items:
                out.append({"type": "family", **family, "items": items})
        for s in STYLES:
            if s["skybox_style_families_id"] is None and version in (None, s["model_version"]):
                out.append({"type": "style", **self.style_view(s, base), "items": []})
        out.sort(key=lambda e: e["sort_order"])
        return JSONResponse(out)

    async def generators(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        return JSONResponse(json.loads(json.dumps(GENERATORS)))

    async def export_types(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        return JSONResponse([dict(t) for t in EXPORT_TYPES])

    # ----------------------------------------------------------------- endpoints: skyboxes
    async def skybox(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        prompt = _text(body, "prompt", required=True)
        style_id = _int(body, "skybox_style_id", required=True)
        style = next((s for s in STYLES if s["id"] == style_id), None)
        if style is None:
            raise ApiError(400, "The selected skybox style id is invalid.")
        negative = _text(body, "negative_text") or ""
        if len(prompt) > style["max-char"]:
            raise ApiError(
                400, f"The prompt may not be greater than {style['max-char']} characters."
            )
        if len(negative) > style["negative-text-max-char"]:
            raise ApiError(
                400,
                "The negative text may not be greater than "
                f"{style['negative-text-max-char']} characters.",
            )
        self.check_prompt(prompt)
        enhance = _bool(body, "enhance_prompt")
        depth_hq = _bool(body, "return_depth_hq")
        seed = _int(body, "seed", lo=0, hi=SEED_MAX) or 0
        webhook = _webhook(body)
        parent: Imagine | None = None
        if body.get("remix_imagine_id") not in (None, ""):
            _int(body, "remix_imagine_id")
            parent = self.find(owner, body["remix_imagine_id"], "Remix imagine")
        elif body.get("remix_obfuscated_id") not in (None, ""):
            parent = self.find_obfuscated(owner, body["remix_obfuscated_id"], "Remix imagine")
        if parent is not None and parent.status(self.now()) != "complete":
            raise ApiError(422, "The skybox to remix is not complete yet.")
        init = control = None
        strength = 0.5
        if body.get("init_image") not in (None, ""):
            init = await self.image_field(body["init_image"], "init_image")
            given = _float(body, "init_strength", lo=0.0, hi=INIT_STRENGTH_MAX)
            strength = 0.5 if given is None else given
        model = None
        if body.get("control_image") not in (None, ""):
            control = await self.image_field(body["control_image"], "control_image")
            model = _text(body, "control_model") or "remix"
            if model not in ("remix", "sketch", "scribble"):
                raise ApiError(400, "The selected control model is invalid.")
            if model != "remix" and Image.open(io.BytesIO(control)).size != (1024, 512):
                raise ApiError(400, f"A {model} control image must be 1024x512 pixels.")
        elif body.get("control_model") not in (None, ""):
            raise ApiError(400, "The control image field is required when control model is set.")
        if not seed:
            seed = parent.seed if parent is not None else self.draw_seed(prompt, style_id)
        number, obfuscated = self.new_id()
        if enhance:
            extra = _ENHANCEMENTS[seed % len(_ENHANCEMENTS)]
            prompt = f"{prompt}, {extra}"[: style["max-char"]]
        item = self.store(
            Imagine(
                id=number,
                obfuscated_id=obfuscated,
                owner=owner,
                user_id=self.user_id(owner),
                kind="skybox",
                prompt=prompt,
                negative_text=negative,
                seed=seed,
                created=self.now(),
                style=style,
                remix_of=parent.id if parent else None,
                remix_obfuscated_id=parent.obfuscated_id if parent else None,
                enhance_prompt=enhance,
                depth_hq=depth_hq,
                init_image=init,
                init_strength=strength,
                control_image=control,
                control_model=model,
                webhook_url=webhook,
                origin=self.base_url(request),
            )
        )
        return JSONResponse(self.view(item, self.base_url(request)))

    async def imagine_request(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        name = _text(body, "generator", required=True)
        generator = next((g for g in GENERATORS if g["generator"] == name), None)
        if generator is None:
            raise ApiError(400, "The selected generator is invalid.")
        data = generator_data(generator, body)
        prompt = str(data.get("prompt") or "")
        self.check_prompt(prompt)
        seed = int(data.get("seed") or 0)
        if seed <= 0:
            seed = self.draw_seed(prompt, name)
        webhook = _webhook(body)
        number, obfuscated = self.new_id()
        item = self.store(
            Imagine(
                id=number,
                obfuscated_id=obfuscated,
                owner=owner,
                user_id=self.user_id(owner),
                kind="imaginarium",
                prompt=prompt,
                negative_text=str(data.get("negative_text") or ""),
                seed=seed,
                created=self.now(),
                generator=name,
                generator_data=data,
                webhook_url=webhook,
                origin=self.base_url(request),
            )
        )
        return JSONResponse({"request": self.view(item, self.base_url(request))})

    async def get_request(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        item = self.find(owner, request.path_params["id"])
        return JSONResponse({"request": self.view(item, self.base_url(request))})

    async def get_obfuscated(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        item = self.find_obfuscated(owner, request.path_params["obfuscated_id"])
        return JSONResponse({"request": self.view(item, self.base_url(request))})

    async def cancel(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        item = self.find(owner, request.path_params["id"])
        status = item.status(self.now())
        if status in ("complete", "error"):
            raise ApiError(422, f"The imagine request is already {status}.")
        if status != "abort":
            item.aborted_at = self.now()
        return JSONResponse({"success": True})

    async def cancel_pending(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        now = self.now()
        for item in self.imagines():
            if item.owner == owner and not item.deleted and item.status(now) == "pending":
                item.aborted_at = now
        return JSONResponse({"success": True})

    async def delete(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        item = self.find(owner, request.path_params["id"])
        item.deleted = True
        return JSONResponse({"success": "Item deleted successfully", "id": str(item.id)})

    async def my_requests(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        q = request.query_params
        status = (q.get("status") or "all").strip().lower()
        if status not in ("all", *STATUSES):
            raise ApiError(400, "The selected status is invalid.")
        limit = _query_int(q, "limit", 18, 1, 100)
        page = _query_int(q, "offset", 0, 0, None)
        order = (q.get("order") or "DESC").strip().upper()
        if order not in ("ASC", "DESC"):
            raise ApiError(400, "The selected order is invalid.")
        imagine_id = _query_int(q, "imagine_id", None, None, None)
        style_id = _query_int(q, "skybox_style_id", None, None, None)
        query = (q.get("query") or "").strip().lower()
        generator = (q.get("generator") or "").strip()
        now = self.now()
        items = []
        for item in self.imagines():
            if item.owner != owner or item.deleted:
                continue
            if status != "all" and item.status(now) != status:
                continue
            if imagine_id is not None and item.id != imagine_id:
                continue
            if style_id is not None and (item.style or {}).get("id") != style_id:
                continue
            if generator and item.generator != generator:
                continue
            title = f"world #{item.id}" if item.kind == "skybox" else f"imagination #{item.id}"
            if query and query not in item.prompt.lower() and query not in title:
                continue
            items.append(item)
        items.sort(key=lambda i: i.id, reverse=order == "DESC")
        chunk = items[page * limit : (page + 1) * limit]
        base = self.base_url(request)
        return JSONResponse(
            {
                "data": [self.view(i, base, now) for i in chunk],
                "totalCount": len(items),
                "has_more": (page + 1) * limit < len(items),
            }
        )

    # ----------------------------------------------------------------- endpoints: exports
    async def create_export(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        skybox_id = body.get("skybox_id")
        if skybox_id in (None, ""):
            raise ApiError(400, "The skybox id field is required.")
        type_id = _int(body, "type_id", required=True)
        if type_id not in _EXPORT:
            raise ApiError(400, "The selected type id is invalid.")
        if isinstance(skybox_id, int) or (isinstance(skybox_id, str) and skybox_id.isdigit()):
            parent = self.find(owner, skybox_id, "Skybox")
        else:
            parent = self.find_obfuscated(owner, skybox_id, "Skybox")
        if parent.status(self.now()) != "complete":
            raise ApiError(422, "The skybox is not complete yet.")
        if _EXPORT[type_id][3] and not self.premium:
            raise ApiError(403, "Account does not have access to this method")
        webhook = _webhook(body)
        digest = hashlib.blake2b(
            f"{self.state.seed}:export:{self._next_export}".encode(), digest_size=16
        ).hexdigest()
        self._next_export += 1
        item = Export(
            id=digest,
            imagine_id=parent.id,
            owner=owner,
            type_id=type_id,
            created=self.now(),
            webhook_url=webhook,
            origin=self.base_url(request),
        )
        self.tasks[(NAME + "-export", item.id)] = item
        self.watch(item)
        return JSONResponse(self.export_view(item, self.base_url(request)))

    async def get_export(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        item = self.export(owner, request.path_params["id"])
        return JSONResponse(self.export_view(item, self.base_url(request)))

    async def cancel_export(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        item = self.export(owner, request.path_params["id"])
        status, _ = item.phase(self.now())
        if status == "complete":
            raise ApiError(422, "The export is already complete.")
        if status != "abort":
            item.aborted_at = self.now()
        return JSONResponse({"success": True})

    # ----------------------------------------------------------------- files
    async def cdn_bytes(self, path: str) -> tuple[bytes, str] | None:
        """``(bytes, media type)`` of a public file at ``path`` (below the prefix), or None."""
        now = self.now()
        match = re.fullmatch(
            r"/cdn/(images|thumbs|depths)/imagine/(?:thumb_|depth_)?[\w]*?__([0-9a-f]{32})\.(jpg|png)",
            path,
        )
        if match:
            number = self._by_obfuscated.get(match[2])
            item = self.get(number) if number is not None else None
            if item is None or item.deleted or item.status(now) != "complete":
                return None
            what = {"images": "image", "thumbs": "thumb", "depths": "depth"}[match[1]]
            return await run_in_threadpool(self.file, item, what)
        match = re.fullmatch(r"/cdn/exports/([0-9a-f]{32})/[\w.-]+", path)
        if match:
            export = self.tasks.get((NAME + "-export", match[1]))
            if not isinstance(export, Export) or export.phase(now)[0] != "complete":
                return None
            parent = self.get(export.imagine_id)
            if parent is None or parent.deleted:
                return None
            return await run_in_threadpool(self.export_file, export)
        match = re.fullmatch(r"/cdn/styles/(\d+)\.(webp|jpg)", path)
        if match:
            style = next((s for s in STYLES if s["id"] == int(match[1])), None)
            if style is None:
                return None
            return await run_in_threadpool(self.style_preview, style, match[2])
        return None

    def style_preview(self, style: dict[str, Any], fmt: str) -> tuple[bytes, str]:
        key = (NAME, "style", style["id"], fmt)
        cached = self.state.images.get(key)
        if cached is None:
            pano = art.panorama(style["description"], style["id"], (512, 256), style=style["name"])
            buf = io.BytesIO()
            pano.image.save(buf, format="WEBP" if fmt == "webp" else "JPEG", quality=85)
            cached = self.state.images.put(key, buf.getvalue())
        return cached, "image/webp" if fmt == "webp" else "image/jpeg"

    async def cdn(self, request: Request) -> Response:
        try:
            found = await self.cdn_bytes(request.url.path[len(PREFIX) :])
        except Exception:
            logger.exception("sandbox blockade could not draw %s", request.url.path)
            return error_response(500)
        if found is None:
            return error_response(404, "File not found")
        data, media = found
        return Response(
            data, media_type=media, headers={"Cache-Control": "public, max-age=31536000"}
        )

    # ----------------------------------------------------------------- wiring
    def endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler(request, owner, body)`` with body parsing, auth, rate limits and the
        error shape."""

        async def run(request: Request) -> Response:
            headers: dict[str, str] = {}
            try:
                body = await _payload(request)
                key = _api_key(request, body)
                bucket = _owner(key) if key else "anonymous"
                headers = self.throttle(bucket)
                if not key:
                    raise ApiError(401, "API key is required")
                if not self.state.key_accepted(key):
                    raise ApiError(401, "Invalid API key")
                response = await handler(request, _owner(key), body)
            except ApiError as exc:
                headers.update(exc.headers)
                response = exc.response()
            except Exception:
                logger.exception("sandbox blockade %s %s failed", request.method, request.url.path)
                response = error_response(500)
            response.headers.update(headers)
            return response

        run.__name__ = handler.__name__
        return run

    def routes(self) -> list[Route]:
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/skybox/styles", self.styles),
            ("GET", "/skybox/families", self.families),
            ("POST", "/skybox", self.skybox),
            ("GET", "/skybox/export", self.export_types),
            ("POST", "/skybox/export", self.create_export),
            ("GET", "/skybox/export/{id}", self.get_export),
            ("DELETE", "/skybox/export/{id}", self.cancel_export),
            ("GET", "/generators", self.generators),
            ("POST", "/imagine/requests", self.imagine_request),
            ("DELETE", "/imagine/requests/pending", self.cancel_pending),
            ("GET", "/imagine/requests/obfuscated-id/{obfuscated_id}", self.get_obfuscated),
            ("GET", "/imagine/requests/{id}", self.get_request),
            ("DELETE", "/imagine/requests/{id}", self.cancel),
            ("GET", "/imagine/myRequests", self.my_requests),
            ("DELETE", "/imagine/deleteImagine/{id}", self.delete),
        ]
        by_path: dict[str, dict[str, Handler]] = {}
        for method, path, handler in table:
            by_path.setdefault(path, {})[method] = handler
        routes = []
        for path, handlers in by_path.items():
            wrapped = {m: self.endpoint(h) for m, h in handlers.items()}

            async def dispatch(request: Request, wrapped=wrapped) -> Response:
                return await wrapped[request.method](request)

            routes.append(Route(API + path, dispatch, methods=list(handlers)))
        routes.append(Route("/cdn/{rest:path}", self.cdn, methods=["GET"]))
        return routes


def build(state: SandboxState) -> Starlette:
    """The Blockade Labs app for ``state``, to mount at :data:`PREFIX`."""
    emulator = Blockade(state)
    state.providers[NAME] = emulator
    return http.build_app(emulator.routes(), lambda request, status: error_response(status))


# ------------------------------------------------------------------------------ parsing
def art_seed(*parts: object) -> int:
    """A stable 32-bit number from ``parts``."""
    h = hashlib.blake2b(repr(parts).encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big") & 0x7FFFFFFF


def _owner(key: str) -> str:
    """The account a key belongs to: a hash, so no key is ever kept."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _api_key(request: Request, body: dict[str, Any]) -> str | None:
    return http.first_key(
        request.headers.get("x-api-key"), request.query_params.get("api_key"), body.get("api_key")
    )


async def _payload(request: Request) -> dict[str, Any]:
    """The body of a POST as a dict (JSON, multipart or url-encoded; files as bytes)."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return {}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await request.form(max_part_size=MAX_UPLOAD + 1024)
        except Exception:
            raise ApiError(400, "The request body could not be read.") from None
        out: dict[str, Any] = {}
        for name, value in form.multi_items():
            out[name] = await value.read() if isinstance(value, UploadFile) else value
        return out
    return await http.json_body(
        request,
        _invalid,
        not_json="The request body is not valid JSON.",
        not_object="The request body must be a JSON object.",
    )


def _invalid(message: str) -> ApiError:
    return ApiError(400, message)


def _label(name: str) -> str:
    return name.replace("_", " ")


def _text(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ApiError(400, f"The {_label(name)} field is required.")
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"The {_label(name)} must be a string.")
    return value.strip()


def _int(
    body: dict[str, Any], name: str, *, required: bool = False, lo: int | None = None,
    hi: int | None = None,
) -> int | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise ApiError(400, f"The {_label(name)} field is required.")
        return None
    if isinstance(value, bool):
        raise ApiError(400, f"The {_label(name)} must be an integer.")
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if not isinstance(value, int):
        raise ApiError(400, f"The {_label(name)} must be an integer.")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ApiError(400, f"The {_label(name)} must be between {lo} and {hi}.")
    return value


def _float(body: dict[str, Any], name: str, *, lo: float, hi: float) -> float | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        number = float(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"The {_label(name)} must be a number.") from None
    if not lo <= number <= hi:
        raise ApiError(400, f"The {_label(name)} must be between {lo:g} and {hi:g}.")
    return number


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise ApiError(400, f"The {_label(name)} field must be true or false.")


def _webhook(body: dict[str, Any]) -> str | None:
    url = _text(body, "webhook_url")
    if url is None:
        return None
    if not re.match(r"^https?://[^\s/]+", url):
        raise ApiError(400, "The webhook url must be a valid URL.")
    return url


def _model_version(request: Request) -> str | None:
    value = request.query_params.get("model_version")
    if value in (None, ""):
        return None
    if value not in ("2", "3", "4"):
        raise ApiError(400, "The selected model version is invalid.")
    return value


def _query_int(
    q: Any, name: str, default: int | None, lo: int | None, hi: int | None
) -> int | None:
    raw = q.get(name)
    if raw in (None, ""):
        return default
    if not re.fullmatch(r"-?\d+", raw.strip()):
        raise ApiError(400, f"The {_label(name)} must be an integer.")
    value = int(raw)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bounds = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise ApiError(400, f"The {_label(name)} must be {bounds}.")
    return value


def generator_data(generator: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The generator's params from ``body``: defaults filled in, each checked (400 if wrong)."""
    data: dict[str, Any] = {}
    for name, spec in generator["params"].items():
        value = body.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if spec.get("required"):
                raise ApiError(400, f"The {_label(name)} field is required.")
            if "default_value" in spec:
                data[name] = spec["default_value"]
            continue
        kind = spec.get("type")
        if kind == "int":
            value = _int(body, name, lo=spec.get("min_value"), hi=spec.get("max_value"))
        elif kind == "select":
            allowed = [o["value"] for o in spec.get("options", [])]
            if value not in allowed:
                raise ApiError(400, f"The selected {_label(name)} is invalid.")
        else:
            if not isinstance(value, str):
                raise ApiError(400, f"The {_label(name)} must be a string.")
            value = value.strip()
            limit = spec.get("max_value")
            if limit is not None and len(value) > int(limit):
                raise ApiError(
                    400, f"The {_label(name)} may not be greater than {limit} characters."
                )
        data[name] = value
    return data


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()
