"""Banatie (banatie-service) emulated at ``{root}/banatie``, its CDN at ``{root}/banatie-cdn``.

Same paths, envelopes, status strings, error codes and headers as ``https://api.banatie.app``
and ``https://cdn.banatie.app`` (``providers.md`` §5), so our client and third-party clients run
unchanged against it. The CDN is a second mounted module (:mod:`._banatie_cdn`) sharing this
module's emulator (``state.providers["banatie"]``).

API (``/banatie`` + the real path):

- public: ``GET /health``; ``GET /api/info`` (with a key: ``keyInfo``, incl. the org and project
  slugs the CDN URLs need); ``POST /api/bootstrap/initial-key`` (201 once, then 403).
- admin (master key; a project key gets 403): ``POST/GET /api/admin/keys``,
  ``DELETE /api/admin/keys/{id}``.
- generations: ``POST/GET /api/v1/generations``, ``GET/PUT/DELETE /api/v1/generations/{id}``,
  ``POST /api/v1/generations/{id}/regenerate`` and the older ``…/retry``.
- flows: ``POST/GET /api/v1/flows``, ``GET/DELETE /api/v1/flows/{id}``, ``GET …/generations``,
  ``GET …/images``, ``PUT …/aliases``, ``DELETE …/aliases/{alias}``, ``POST …/regenerate``.
- images: ``POST /api/v1/images/upload`` (multipart), ``GET /api/v1/images``,
  ``GET /api/v1/images/resolve/{alias}`` (the seed's form), ``GET/PUT /api/v1/images/{id|@alias}``,
  ``PUT /api/v1/images/{id}/alias``, ``DELETE /api/v1/images/{id}``.
- live: ``POST/GET /api/v1/live/scopes``, ``GET/PUT/DELETE /api/v1/live/scopes/{slug}``,
  ``POST …/{slug}/regenerate``; ``GET /api/v1/live?prompt=…`` (the seed's keyed form, scope
  ``api``); the CDN routes are also served under ``/banatie/cdn/…`` (the self-hosted form).

CDN (``/banatie-cdn``): ``GET /{org}/{project}/img/{imageId|@alias}`` and
``GET /{org}/{project}/live/{scope}?prompt=…&aspectRatio=…&autoEnhance=…&template=…`` — raw bytes,
``Cache-Control: public, max-age=31536000``, ``X-Image-Id``, and for live ``X-Cache-Status:
HIT|MISS`` (+ ``X-Generation-Id`` on a MISS, ``X-Cache-Hit-Count`` on a HIT). The sandbox has one
organisation and project, ``sandbox`` / ``notebook``.

Envelopes: ``{"success": true, "data": …}``, lists add ``"pagination": {"total", "limit",
"offset", "hasMore"}`` (``limit`` default 20, max 100); errors are ``{"success": false, "error":
{"message", "code"}}`` with ``VALIDATION_ERROR`` 400, ``UNAUTHORIZED`` 401, ``FORBIDDEN`` 403,
``GENERATION_NOT_FOUND``/``IMAGE_NOT_FOUND``/``FLOW_NOT_FOUND``/``ALIAS_NOT_FOUND``/
``SCOPE_NOT_FOUND``/``KEY_NOT_FOUND``/``PROJECT_NOT_FOUND``/``NOT_FOUND`` 404, ``ALIAS_CONFLICT``
and ``SCOPE_ALREADY_EXISTS`` 409, ``SCOPE_INVALID_FORMAT`` and ``IMAGE_NOT_IN_SCOPE`` 400,
``RATE_LIMIT_EXCEEDED`` 429, ``INTERNAL_ERROR`` 500.

Auth: ``X-API-Key``. Any non-empty key not in ``state.rejected_keys`` (and in
``state.accepted_keys`` when that is set) is a project key of the sandbox project; keys minted by
the bootstrap/admin endpoints are real master/project keys (revocable; project keys expire after
``expiresInDays`` on the simulated clock).

Generations: ``pending → processing → success | failed``. By default (``synchronous = True``, the
production behaviour) create, regenerate and a regenerating update answer ``success`` at once
with ``outputImage`` filled; with ``state.providers["banatie"].synchronous = False`` they answer
``pending`` and the generation runs on the simulated clock: ``pending`` for ``pending_seconds``
(1), ``processing`` until ``pending_seconds + processing_seconds`` (1 + 4), then final. Magic words:
``sandbox:fail`` (ends ``failed``), ``sandbox:hang`` (stays ``processing``, asynchronous mode);
``state.banned_words`` end ``failed`` with "Prompt blocked by the safety filter".

Rate limits: every ``/api/v1`` answer to a project key carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (unix seconds, rounded up); the 429 adds
``Retry-After`` (whole seconds, at least 1). Live answers carry the same headers for the caller's
IP (first ``X-Forwarded-For`` address, else the peer); only cache MISSes count. Defaults are
generous (``api_limit`` 10000, ``live_limit`` 1000 per window); ``enforce_real_limits = True``
applies the real ones (100 requests per key, 10 new live generations per IP). Windows last
``rate_window`` simulated seconds (3600) from the first counted request, so at speed 1000 an hour
passes in 3.6 real seconds; the headers give real time. ``rate_limited`` counts 429s answered.

Choices where ``providers.md`` marks the real behaviour as inferred [I] or unknown [U]:

- Omitted ``flowId`` mints a new flow (returned as the generation's/image's ``flowId``, listed
  at once — the service creates the row lazily, which clients cannot observe); ``null`` means no
  flow; an unknown UUID creates that flow. ``flowAlias`` with ``flowId: null`` is a 400.
- Aliases match ``@[A-Za-z0-9_-]{1,100}``; ``@last``, ``@first`` and ``@upload`` are reserved.
  A project alias given to ``upload`` or to a generation's ``alias`` **moves** to the new image;
  ``PUT /images/{id}/alias`` with an alias another image holds is ``409 ALIAS_CONFLICT``.
- Technical aliases are computed per flow (``@last``/``@first``: the newest/oldest successful
  generation's image, ``@upload``: the newest upload); with no ``flowId`` context, over the
  project. Resolution order: technical → the flow's aliases → project aliases. References in a
  create resolve in the request's ``flowId`` (project-wide when omitted or null); an explicit
  reference that does not resolve is a 404; ``@aliases`` found in the prompt are added after the
  explicit ones (de-duplicated, at most 3 in all) and ignored when they do not resolve.
- Deleting a generation is soft (``includeDeleted=true`` lists it); its output image is deleted
  unless it holds a project alias. Deleting an image nulls ``outputImageId``, drops flow-alias
  entries and references to it. Deleting a flow deletes its generations and its un-aliased
  images; aliased images stay with ``flowId: null``.
- ``/health``, ``/api/info``, bootstrap and admin answers are plain JSON objects (the envelope is
  documented for ``/api/v1`` only); errors use the error envelope everywhere.
- A live scope at its ``newGenerationsLimit``, or with ``allowNewGenerations: false``, answers a
  MISS with 403 ``SCOPE_GENERATION_LIMIT_REACHED``. Live ``aspectRatio`` defaults to ``1:1``.
- Master keys are not rate limited. Regenerating a generation that is still running is 409
  ``GENERATION_IN_PROGRESS``. ``fileSize`` of a generated image is ``null`` until its bytes were
  first served (the sandbox draws lazily).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from PIL import Image as PILImage
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from .._secrets import get_logger
from . import _http as http
from ._art import _banatie as art
from ._state import SandboxState, retry_headers

__all__ = ["NAME", "PREFIX", "Banatie", "build", "emulator", "fault_response"]

logger = get_logger(__name__)

NAME = "banatie"
PREFIX = "/banatie"
CDN_PREFIX = "/banatie-cdn"

ORG_SLUG = "sandbox"
PROJECT_SLUG = "notebook"
ORG_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "jupyter-imagine:banatie:org"))
PROJECT_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "jupyter-imagine:banatie:project"))
VERSION = "1.0.0-sandbox"

STATUSES = ("pending", "processing", "success", "failed")
TEMPLATES = ("general", "photorealistic", "illustration", "minimalist", "sticker", "product",
             "comic")
TECHNICAL_ALIASES = ("@last", "@first", "@upload")
ALIAS_RE = re.compile(r"^@[A-Za-z0-9_-]{1,100}$")
PROMPT_ALIAS_RE = re.compile(r"(?<![\w@.])@[A-Za-z0-9_-]{1,100}")
SCOPE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
MAX_REFERENCES = 3
MAX_UPLOAD_BYTES = 5 * 2**20
UPLOAD_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
DEFAULT_LIMIT, MAX_LIMIT = 20, 100

REAL_API_LIMIT = 100
REAL_LIVE_LIMIT = 10
DEFAULT_API_LIMIT = 10_000
DEFAULT_LIVE_LIMIT = 1_000
RATE_WINDOW = 3600.0
DEFAULT_SCOPE_LIMIT = 30
PROJECT_KEY_DAYS = 90
CACHE_CONTROL = "public, max-age=31536000"

FAIL_WORD = "sandbox:fail"
HANG_WORD = "sandbox:hang"
FAIL_MESSAGE = "Image generation failed (sandbox:fail)"

_ENHANCE = {
    "general": "highly detailed, balanced composition, soft natural light",
    "photorealistic": "photorealistic, 85mm lens, shallow depth of field, natural light",
    "illustration": "digital illustration, clean lines, rich colours",
    "minimalist": "minimalist composition, negative space, muted palette",
    "sticker": "die-cut sticker style, bold outline, flat colours",
    "product": "studio product shot, seamless background, softbox lighting",
    "comic": "comic book style, ink outlines, halftone shading",
}

_DEFAULT_CODE = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALIAS_CONFLICT",
    429: "RATE_LIMIT_EXCEEDED",
}
_DEFAULT_MESSAGE = {
    400: "Invalid request",
    401: "Missing or invalid API key",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    429: "Too many requests",
}


# ------------------------------------------------------------------------------ answers
class ApiError(http.ApiError):
    """An error answered in Banatie's envelope (``code`` is Banatie's error code)."""

    message: str

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, message, headers=headers)
        self.code = code

    def response(self, headers: dict[str, str] | None = None) -> Response:
        """The envelope, with ``headers`` (default none) under this error's own."""
        return error_response(
            self.status, self.code, self.message, headers={**(headers or {}), **self.headers}
        )


def error_response(
    status: int,
    code: str | None = None,
    message: str | None = None,
    *,
    retry_after: float | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """``{"success": false, "error": {"message", "code"}}``; a 429 always has ``Retry-After``."""
    if code is None:
        code = _DEFAULT_CODE.get(status, "INTERNAL_ERROR" if status >= 500 else "ERROR")
    if message is None:
        message = _DEFAULT_MESSAGE.get(status, "Internal server error")
    out = dict(headers or {})
    if "Retry-After" not in out:
        out.update(retry_headers(status, retry_after, whole_seconds=True))
    body = {"success": False, "error": {"message": message, "code": code}}
    return JSONResponse(body, status_code=status, headers=out)


def fault_response(status: int, *, retry_after: float | None = None) -> Response:
    """The answer to an injected fault, in Banatie's error envelope."""
    return error_response(status, retry_after=retry_after)


def ok(data: Any, status: int = 200, pagination: dict[str, Any] | None = None) -> JSONResponse:
    """Banatie's success envelope."""
    body: dict[str, Any] = {"success": True, "data": data}
    if pagination is not None:
        body["pagination"] = pagination
    return JSONResponse(body, status_code=status)


def _bad(message: str, code: str = "VALIDATION_ERROR") -> ApiError:
    return ApiError(400, code, message)


def _missing(what: str, code: str) -> ApiError:
    return ApiError(404, code, f"{what} not found")


# ------------------------------------------------------------------------------ records
@dataclass
class ApiKey:
    """A key minted by the bootstrap or admin endpoints (the value is never listed)."""

    id: str
    value: str = field(repr=False)
    type: str
    name: str | None
    created: float
    expires: float | None
    organization_slug: str = ORG_SLUG
    project_slug: str = PROJECT_SLUG
    project_id: str = PROJECT_ID
    revoked: bool = False


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key and its type (``project`` or ``master``)."""

    key: str = field(repr=False)
    type: str = "project"
    record: ApiKey | None = None


@dataclass
class Flow:
    id: str
    created: float
    seq: int
    updated: float
    aliases: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class StoredImage:
    id: str
    source: str  # "generated" | "uploaded"
    created: float
    seq: int
    updated: float
    width: int
    height: int
    mime: str = "image/png"
    flow_id: str | None = None
    alias: str | None = None
    focal_point: dict[str, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    generation_id: str | None = None
    recipe: art.Recipe | None = None
    blob: str | None = None  # key in Banatie.blobs for uploads
    scope: str | None = None  # live scope slug
    file_size: int | None = None


@dataclass
class Generation:
    id: str
    prompt: str  # the user's text
    aspect_ratio: str
    auto_enhance: bool
    template: str
    created: float
    seq: int
    updated: float
    flow_id: str | None
    alias: str | None
    flow_alias: str | None
    meta: dict[str, Any]
    reference_ids: list[str]
    referenced: list[dict[str, Any]]
    refs: tuple[art.Recipe | art.Blob, ...]
    run_started: float
    done_at: float | None  # None: never (sandbox:hang)
    failure: str | None
    version: int = 0
    output_image_id: str | None = None
    deleted: float | None = None
    settled: bool = False
    live_scope: str | None = None

    @property
    def enhanced(self) -> str | None:
        if not self.auto_enhance:
            return None
        return f"{self.prompt}, {_ENHANCE[self.template]}"

    def status(self, now: float, pending_seconds: float) -> str:
        if self.done_at is not None and now >= self.done_at:
            return "failed" if self.failure else "success"
        if now < self.run_started + pending_seconds:
            return "pending"
        return "processing"


@dataclass
class LiveScope:
    id: str
    slug: str
    created: float
    seq: int
    allow_new: bool = True
    limit: int = DEFAULT_SCOPE_LIMIT
    current: int = 0
    last_generated: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class CacheEntry:
    image_id: str
    generation_id: str
    scope: str
    hits: int = 0


# ------------------------------------------------------------------------------ the emulator
Handler = Callable[[Request, Principal | None], Awaitable[Response]]


class Banatie:
    """The Banatie emulator of one sandbox (``state.providers["banatie"]``).

    Attributes (knobs tests set; defaults in brackets):
        synchronous: create/regenerate answer ``success`` at once [True]; ``False`` runs the
            ``pending → processing → success|failed`` lifecycle on the simulated clock.
        pending_seconds, processing_seconds: the asynchronous lifecycle's phases [1, 4].
        api_limit, live_limit: requests per key, new live generations per IP, per window
            [10000, 1000]; ``enforce_real_limits`` [False] replaces them with 100 and 10.
        rate_window: the windows' length in simulated seconds [3600].
        rate_limited: how many 429s were answered (rate limits, not injected faults).
    """

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.synchronous = True
        self.pending_seconds = 1.0
        self.processing_seconds = 4.0
        self.api_limit = DEFAULT_API_LIMIT
        self.live_limit = DEFAULT_LIVE_LIMIT
        self.enforce_real_limits = False
        self.rate_window = RATE_WINDOW
        self.rate_limited = 0
        self.epoch = time.time()
        self.keys: dict[str, ApiKey] = {}
        self.generations: dict[str, Generation] = {}
        self.images: dict[str, StoredImage] = {}
        self.flows: dict[str, Flow] = {}
        self.scopes: dict[str, LiveScope] = {}
        self.live_cache: dict[tuple[Any, ...], CacheEntry] = {}
        self.blobs: dict[str, bytes] = {}
        self.project_aliases: dict[str, str] = {}
        self._api_windows: dict[str, list[float]] = {}
        self._live_windows: dict[str, list[float]] = {}
        self._unsettled: set[str] = set()
        self._seq = itertools.count(1)

    # ----------------------------------------------------------------- time & ids
    def now(self) -> float:
        return self.state.clock.now()

    def iso(self, sim: float | None) -> str | None:
        if sim is None:
            return None
        moment = datetime.fromtimestamp(self.epoch + sim, tz=timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def seq(self) -> int:
        return next(self._seq)

    # ----------------------------------------------------------------- limits
    @property
    def effective_api_limit(self) -> int:
        return REAL_API_LIMIT if self.enforce_real_limits else int(self.api_limit)

    @property
    def effective_live_limit(self) -> int:
        return REAL_LIVE_LIMIT if self.enforce_real_limits else int(self.live_limit)

    def _reset_in(self, end: float) -> float:
        """Real seconds until simulated time ``end`` (a frozen clock counts as speed 1)."""
        real = self.state.clock.real_seconds_until(end)
        return max(0.0, end - self.now()) if real is None else real

    def _window(
        self, windows: dict[str, list[float]], ident: str, limit: int, *, count: bool
    ) -> dict[str, str]:
        """Count one request of ``ident`` (if ``count``) and return the X-RateLimit headers.

        Raises:
            ApiError: 429 when the window is used up (with the headers and Retry-After).
        """
        now = self.now()
        start, used = windows.get(ident, [now, 0.0])
        if now >= start + self.rate_window:
            start, used = now, 0.0
        end = start + self.rate_window
        wait = self._reset_in(end)
        reset = math.ceil(time.time() + wait)
        if count and used >= limit:
            self.rate_limited += 1
            headers = {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
                "Retry-After": str(max(1, math.ceil(wait))),
            }
            windows[ident] = [start, used]
            raise ApiError(
                429,
                "RATE_LIMIT_EXCEEDED",
                f"Rate limit exceeded: {limit} requests per hour; try again in "
                f"{max(1, math.ceil(wait))} seconds",
                headers=headers,
            )
        if count:
            used += 1
        windows[ident] = [start, used]
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, int(limit - used))),
            "X-RateLimit-Reset": str(reset),
        }

    # ----------------------------------------------------------------- auth
    def authenticate(self, request: Request, required: bool) -> Principal | None:
        key = http.first_key(request.headers.get("x-api-key"))
        if not key:
            if required:
                raise ApiError(401, "UNAUTHORIZED", "Missing API key: send it in X-API-Key")
            return None
        minted = next((k for k in self.keys.values() if k.value == key), None)
        if minted is not None:
            if minted.revoked:
                raise ApiError(401, "UNAUTHORIZED", "API key has been revoked")
            if minted.expires is not None and self.now() >= minted.expires:
                raise ApiError(401, "UNAUTHORIZED", "API key has expired")
            return Principal(key, minted.type, minted)
        if not self.state.key_accepted(key):
            raise ApiError(401, "UNAUTHORIZED", "Invalid API key")
        return Principal(key, "project")

    # ----------------------------------------------------------------- settle
    def settle(self) -> None:
        """Bring every generation whose run has ended up to date (output image, aliases)."""
        if not self._unsettled:
            return
        now = self.now()
        for gen_id in sorted(self._unsettled, key=lambda g: self.generations[g].seq):
            gen = self.generations[gen_id]
            if gen.status(now, self.pending_seconds) in ("success", "failed"):
                self._materialise(gen)

    def _materialise(self, gen: Generation) -> None:
        self._unsettled.discard(gen.id)
        gen.settled = True
        gen.updated = max(gen.updated, gen.done_at or gen.updated)
        if gen.failure:
            return
        image = self.images.get(gen.output_image_id or "")
        width, height = art.SIZES[gen.aspect_ratio]
        if image is None:
            image = StoredImage(
                id=str(uuid.uuid4()),
                source="generated",
                created=gen.done_at if gen.done_at is not None else self.now(),
                seq=self.seq(),
                updated=self.now(),
                width=width,
                height=height,
                flow_id=gen.flow_id,
                generation_id=gen.id,
                scope=gen.live_scope,
            )
            self.images[image.id] = image
            gen.output_image_id = image.id
        image.recipe = self._recipe(gen)
        image.width, image.height = width, height
        image.file_size = None
        image.updated = self.now()
        image.flow_id = gen.flow_id
        if gen.alias:
            self.assign_project_alias(image, gen.alias, reassign=True)
        if gen.flow_alias and gen.flow_id:
            flow = self.flows.get(gen.flow_id)
            if flow is not None:
                flow.aliases[gen.flow_alias] = image.id
                flow.updated = self.now()

    def _recipe(self, gen: Generation) -> art.Recipe:
        seed = _derive(self.state.seed, "banatie", " ".join(gen.prompt.split()).lower(),
                       gen.aspect_ratio, gen.auto_enhance, gen.template, gen.version)
        return art.Recipe(gen.prompt, gen.aspect_ratio, seed, gen.refs)

    # ----------------------------------------------------------------- lookups
    def generation(self, gen_id: str, *, deleted: bool = False) -> Generation:
        gen = self.generations.get(gen_id)
        if gen is None or (gen.deleted is not None and not deleted):
            raise _missing("Generation", "GENERATION_NOT_FOUND")
        return gen

    def flow(self, flow_id: str) -> Flow:
        flow = self.flows.get(flow_id)
        if flow is None:
            raise _missing("Flow", "FLOW_NOT_FOUND")
        return flow

    def image_by_id(self, image_id: str) -> StoredImage:
        image = self.images.get(image_id)
        if image is None:
            raise _missing("Image", "IMAGE_NOT_FOUND")
        return image

    def new_flow(self, flow_id: str | None = None, meta: dict[str, Any] | None = None) -> Flow:
        now = self.now()
        flow = Flow(flow_id or str(uuid.uuid4()), now, self.seq(), now, meta=dict(meta or {}))
        self.flows[flow.id] = flow
        return flow

    def flow_for(self, body: dict[str, Any], key: str = "flowId") -> str | None:
        """The flow of a create/upload: omitted → a new flow, null → none, a UUID → that flow."""
        if key not in body:
            return self.new_flow().id
        value = body[key]
        if value is None or value in ("", "null"):
            return None
        if not isinstance(value, str) or not UUID_RE.match(value):
            raise _bad(f"{key} must be a UUID or null")
        if value not in self.flows:
            self.new_flow(value)
        return value

    def _successful(self, flow_id: str | None) -> list[Generation]:
        now = self.now()
        out = [
            g for g in self.generations.values()
            if g.deleted is None and (flow_id is None or g.flow_id == flow_id)
            and g.status(now, self.pending_seconds) == "success"
            and g.output_image_id in self.images
        ]
        return sorted(out, key=lambda g: g.seq)

    def technical(self, alias: str, flow_id: str | None) -> StoredImage | None:
        """``@last``/``@first``/``@upload`` in ``flow_id`` (or the project when ``None``)."""
        if alias == "@upload":
            uploads = [
                i for i in self.images.values()
                if i.source == "uploaded" and (flow_id is None or i.flow_id == flow_id)
            ]
            return max(uploads, key=lambda i: i.seq) if uploads else None
        done = self._successful(flow_id)
        if not done:
            return None
        gen = done[-1] if alias == "@last" else done[0]
        return self.images[gen.output_image_id or ""]

    def resolve(self, ref: Any, flow_id: str | None) -> tuple[StoredImage, str]:
        """``(image, scope)`` for an image id or ``@alias``; scope is ``id``, ``technical``,
        ``flow`` or ``project``. Raises 400 for a malformed reference, 404 when unknown."""
        if not isinstance(ref, str) or not ref:
            raise _bad("an image reference must be an image id or an @alias")
        if not ref.startswith("@"):
            if not UUID_RE.match(ref.split(".")[0]):
                raise _bad(f"{ref!r} is not an image id or an @alias")
            return self.image_by_id(ref.split(".")[0]), "id"
        if not ALIAS_RE.match(ref):
            raise _bad(f"Invalid alias format {ref!r}: use @ then letters, digits, _ or -")
        if ref in TECHNICAL_ALIASES:
            image = self.technical(ref, flow_id)
            if image is None:
                raise ApiError(404, "ALIAS_NOT_FOUND", f"Alias {ref} does not resolve to an image")
            return image, "technical"
        if flow_id is not None:
            flow = self.flows.get(flow_id)
            if flow is not None and ref in flow.aliases and flow.aliases[ref] in self.images:
                return self.images[flow.aliases[ref]], "flow"
        image_id = self.project_aliases.get(ref)
        if image_id is not None and image_id in self.images:
            return self.images[image_id], "project"
        raise ApiError(404, "ALIAS_NOT_FOUND", f"Alias {ref} not found")

    def assign_project_alias(
        self, image: StoredImage, alias: str | None, *, reassign: bool
    ) -> None:
        if alias is None:
            if image.alias:
                self.project_aliases.pop(image.alias, None)
            image.alias = None
            return
        holder = self.project_aliases.get(alias)
        if holder is not None and holder != image.id and holder in self.images:
            if not reassign:
                raise ApiError(
                    409, "ALIAS_CONFLICT", f"Alias {alias} is already assigned to image {holder}"
                )
            self.images[holder].alias = None
        if image.alias and image.alias != alias:
            self.project_aliases.pop(image.alias, None)
        image.alias = alias
        self.project_aliases[alias] = image.id

    # ----------------------------------------------------------------- views
    def cdn_root(self, request: Request) -> str:
        return str(request.base_url).rstrip("/") + CDN_PREFIX

    def storage_url(self, request: Request, image_id: str) -> str:
        return f"{self.cdn_root(request)}/{ORG_SLUG}/{PROJECT_SLUG}/img/{image_id}"

    def image_view(self, request: Request, image: StoredImage) -> dict[str, Any]:
        if image.file_size is None and image.recipe is not None:
            cached = self.state.images.get(("banatie", "png", image.recipe))
            if cached is not None:
                image.file_size = len(cached)
        return {
            "id": image.id,
            "projectId": PROJECT_ID,
            "flowId": image.flow_id,
            "generationId": image.generation_id,
            "storageKey": f"{ORG_SLUG}/{PROJECT_SLUG}/{image.source}/{image.id}",
            "storageUrl": self.storage_url(request, image.id),
            "mimeType": image.mime,
            "fileSize": image.file_size,
            "width": image.width,
            "height": image.height,
            "source": image.source,
            "alias": image.alias,
            "focalPoint": image.focal_point,
            "meta": image.meta,
            "createdAt": self.iso(image.created),
            "updatedAt": self.iso(image.updated),
        }

    def generation_view(self, request: Request, gen: Generation) -> dict[str, Any]:
        status = gen.status(self.now(), self.pending_seconds)
        image = self.images.get(gen.output_image_id or "") if status == "success" else None
        final = status in ("success", "failed")
        refs = [self.images[i] for i in gen.reference_ids if i in self.images]
        return {
            "id": gen.id,
            "projectId": PROJECT_ID,
            "prompt": gen.enhanced or gen.prompt,
            "originalPrompt": gen.prompt if gen.enhanced else None,
            "autoEnhance": gen.auto_enhance,
            "aspectRatio": gen.aspect_ratio,
            "status": status,
            "errorMessage": gen.failure if status == "failed" else None,
            "outputImageId": image.id if image else None,
            "outputImage": {
                "id": image.id,
                "storageUrl": self.storage_url(request, image.id),
                "width": image.width,
                "height": image.height,
            } if image else None,
            "flowId": gen.flow_id,
            "referencedImages": [dict(r) for r in gen.referenced],
            "referenceImages": [
                {"id": r.id, "storageUrl": self.storage_url(request, r.id), "alias": r.alias}
                for r in refs
            ],
            "processingTimeMs": _processing_ms(gen) if final else None,
            "meta": gen.meta,
            "createdAt": self.iso(gen.created),
            "updatedAt": self.iso(gen.updated),
            "deletedAt": self.iso(gen.deleted),
        }

    def flow_view(self, flow: Flow) -> dict[str, Any]:
        gens = [g for g in self.generations.values() if g.flow_id == flow.id and g.deleted is None]
        images = [i for i in self.images.values() if i.flow_id == flow.id]
        return {
            "id": flow.id,
            "projectId": PROJECT_ID,
            "aliases": {k: v for k, v in flow.aliases.items() if v in self.images},
            "generationCount": len(gens),
            "imageCount": len(images),
            "meta": flow.meta,
            "createdAt": self.iso(flow.created),
            "updatedAt": self.iso(flow.updated),
        }

    def scope_view(self, scope: LiveScope) -> dict[str, Any]:
        return {
            "id": scope.id,
            "slug": scope.slug,
            "allowNewGenerations": scope.allow_new,
            "newGenerationsLimit": scope.limit,
            "currentGenerations": scope.current,
            "lastGeneratedAt": self.iso(scope.last_generated),
            "meta": scope.meta,
            "createdAt": self.iso(scope.created),
        }

    # ----------------------------------------------------------------- generation work
    def start_run(self, gen: Generation, *, synchronous: bool | None = None) -> None:
        """(Re)start ``gen``'s run now; a synchronous run is final (and settled) at once."""
        sync = self.synchronous if synchronous is None else synchronous
        now = self.now()
        gen.run_started = now
        gen.updated = now
        gen.settled = False
        word = self.state.banned_word(gen.prompt)
        lowered = gen.prompt.lower()
        if word is not None:
            gen.failure = f"Prompt blocked by the safety filter ({word!r})"
        elif FAIL_WORD in lowered:
            gen.failure = FAIL_MESSAGE
        else:
            gen.failure = None
        if sync:
            gen.done_at = now
        elif HANG_WORD in lowered and gen.failure is None:
            gen.done_at = None
        else:
            gen.done_at = now + self.pending_seconds + self.processing_seconds
        self._unsettled.add(gen.id)
        if sync:
            self._materialise(gen)

    def references(
        self, explicit: Any, prompt: str, flow_id: str | None
    ) -> tuple[list[str], list[dict[str, Any]], tuple[art.Recipe | art.Blob, ...]]:
        """Resolve explicit references (errors are fatal) and ``@aliases`` in the prompt
        (ignored when unknown): image ids, ``referencedImages`` and the pixel sources."""
        if explicit is None:
            explicit = []
        if not isinstance(explicit, list) or not all(isinstance(r, str) for r in explicit):
            raise _bad("referenceImages must be an array of image ids or @aliases")
        if len(explicit) > MAX_REFERENCES:
            raise _bad(f"referenceImages accepts at most {MAX_REFERENCES} images")
        found: list[tuple[StoredImage, str | None]] = []
        for ref in explicit:
            image, _ = self.resolve(ref, flow_id)
            found.append((image, ref if ref.startswith("@") else None))
        for alias in PROMPT_ALIAS_RE.findall(prompt):
            try:
                image, _ = self.resolve(alias, flow_id)
            except ApiError:
                logger.debug("sandbox banatie: prompt alias %s does not resolve", alias)
                continue
            found.append((image, alias))
        ids: list[str] = []
        referenced: list[dict[str, Any]] = []
        sources: list[art.Recipe | art.Blob] = []
        for image, alias in found:
            if image.id in ids or len(ids) >= MAX_REFERENCES:
                continue
            ids.append(image.id)
            referenced.append({"imageId": image.id, "alias": alias})
            sources.append(self.pixels_of(image))
        return ids, referenced, tuple(sources)

    def pixels_of(self, image: StoredImage) -> art.Recipe | art.Blob:
        if image.recipe is not None:
            return image.recipe
        return art.Blob(image.blob or image.id)

    def image_bytes(self, image: StoredImage) -> bytes:
        """The file behind ``image`` (drawn on first use for generated images)."""
        if image.blob is not None:
            return self.blobs[image.blob]
        assert image.recipe is not None
        text = {"prompt": image.recipe.prompt, "Software": "jupyter_imagine sandbox (banatie)"}
        data = art.png(image.recipe, self.state.images, self.blobs.__getitem__, text)
        image.file_size = len(data)
        return data

    def delete_image(self, image: StoredImage) -> None:
        self.images.pop(image.id, None)
        if image.alias and self.project_aliases.get(image.alias) == image.id:
            del self.project_aliases[image.alias]
        for flow in self.flows.values():
            for alias in [a for a, i in flow.aliases.items() if i == image.id]:
                del flow.aliases[alias]
        for gen in self.generations.values():
            if gen.output_image_id == image.id:
                gen.output_image_id = None
            if image.id in gen.reference_ids:
                gen.reference_ids.remove(image.id)
                gen.referenced = [r for r in gen.referenced if r["imageId"] != image.id]
        for key in [k for k, e in self.live_cache.items() if e.image_id == image.id]:
            del self.live_cache[key]

    def delete_generation(self, gen: Generation) -> None:
        gen.deleted = self.now()
        self._unsettled.discard(gen.id)
        image = self.images.get(gen.output_image_id or "")
        if image is not None:
            if image.alias:
                image.generation_id = None
            else:
                self.delete_image(image)

    # ----------------------------------------------------------------- wiring
    def endpoint(
        self, handler: Handler, *, auth: str = "project", counted: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler(request, principal)`` with auth (``project``: any valid key,
        ``master``, ``optional``, ``none``), rate limiting and the error envelope."""

        async def run(request: Request) -> Response:
            headers: dict[str, str] = {}
            try:
                self.settle()
                principal = None
                if auth != "none":
                    principal = self.authenticate(request, required=auth != "optional")
                if auth == "master" and principal is not None and principal.type != "master":
                    raise ApiError(403, "FORBIDDEN", "This endpoint requires a master key")
                if counted and principal is not None and principal.type == "project":
                    ident = hashlib.sha256(principal.key.encode()).hexdigest()
                    headers = self._window(
                        self._api_windows, ident, self.effective_api_limit, count=True
                    )
                response = await handler(request, principal)
            except ApiError as exc:
                response = exc.response(headers)
            except Exception:
                logger.exception("sandbox banatie %s failed", request.url.path)
                response = error_response(500, "INTERNAL_ERROR", "Internal server error")
            for name, value in headers.items():
                response.headers.setdefault(name, value)
            return response

        run.__name__ = getattr(handler, "__name__", "endpoint")
        return run

    # ================================================================= public endpoints
    async def health(self, request: Request, principal: Principal | None) -> Response:
        return JSONResponse({
            "status": "healthy",
            "timestamp": self.iso(self.now()),
            "uptime": round(self.now(), 3),
            "environment": "sandbox",
            "version": VERSION,
        })

    async def info(self, request: Request, principal: Principal | None) -> Response:
        body: dict[str, Any] = {
            "name": "Banatie API",
            "version": VERSION,
            "endpoints": ["/api/v1/generations", "/api/v1/flows", "/api/v1/images",
                          "/api/v1/live/scopes"],
            "limits": {
                "maxFileSize": MAX_UPLOAD_BYTES,
                "supportedFormats": sorted(UPLOAD_FORMATS.values()),
                "maxReferenceImages": MAX_REFERENCES,
                "requestsPerHour": self.effective_api_limit,
            },
        }
        if principal is not None:
            record = principal.record
            body["keyInfo"] = {
                "type": principal.type,
                "organizationId": ORG_ID,
                "organizationSlug": record.organization_slug if record else ORG_SLUG,
                "projectId": PROJECT_ID,
                "projectSlug": record.project_slug if record else PROJECT_SLUG,
                "expiresAt": self.iso(record.expires) if record else None,
            }
        return JSONResponse(body)

    def _mint(self, kind: str, name: str | None, days: float | None, **slugs: str) -> ApiKey:
        now = self.now()
        record = ApiKey(
            id=str(uuid.uuid4()),
            value="bnt_" + secrets.token_hex(32),
            type=kind,
            name=name,
            created=now,
            expires=None if days is None else now + days * 86400,
            **slugs,
        )
        self.keys[record.id] = record
        return record

    def _key_view(self, record: ApiKey, *, with_value: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": record.id,
            "type": record.type,
            "name": record.name,
            "keyPrefix": record.value[:8] + "…",
            "organizationSlug": record.organization_slug,
            "projectSlug": record.project_slug,
            "projectId": record.project_id,
            "expiresAt": self.iso(record.expires),
            "createdAt": self.iso(record.created),
            "revoked": record.revoked,
        }
        if with_value:
            out["apiKey"] = record.value
        return out

    async def bootstrap(self, request: Request, principal: Principal | None) -> Response:
        if self.keys:
            raise ApiError(403, "FORBIDDEN", "Bootstrap is not allowed: API keys already exist")
        record = self._mint("master", "Initial Master Key", None)
        body = self._key_view(record, with_value=True)
        body["message"] = "Save this key securely: it will not be shown again"
        return JSONResponse(body, status_code=201)

    async def create_key(self, request: Request, principal: Principal | None) -> Response:
        body = await _json_body(request)
        kind = body.get("type")
        if kind not in ("master", "project"):
            raise _bad("type must be master or project")
        if kind == "project" and not body.get("projectId"):
            raise _bad("projectId is required for project keys")
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise _bad("name must be a string")
        days = body.get("expiresInDays", PROJECT_KEY_DAYS if kind == "project" else None)
        if days is not None and (isinstance(days, bool) or not isinstance(days, (int, float))
                                 or days <= 0):
            raise _bad("expiresInDays must be a positive number")
        slugs = {
            "organization_slug": str(body.get("organizationSlug") or ORG_SLUG),
            "project_slug": str(body.get("projectSlug") or PROJECT_SLUG),
            "project_id": str(body.get("projectId") or PROJECT_ID),
        }
        record = self._mint(kind, name, days, **slugs)
        return JSONResponse(self._key_view(record, with_value=True), status_code=201)

    async def list_keys(self, request: Request, principal: Principal | None) -> Response:
        keys = sorted(self.keys.values(), key=lambda k: k.created)
        return JSONResponse({"keys": [self._key_view(k, with_value=False) for k in keys]})

    async def revoke_key(self, request: Request, principal: Principal | None) -> Response:
        record = self.keys.get(request.path_params["key_id"])
        if record is None:
            raise _missing("API key", "KEY_NOT_FOUND")
        record.revoked = True
        return JSONResponse({"message": "API key revoked", "id": record.id})

    # ================================================================= generations
    def _create_generation(
        self,
        *,
        prompt: str,
        aspect_ratio: str,
        auto_enhance: bool,
        template: str,
        flow_id: str | None,
        alias: str | None,
        flow_alias: str | None,
        meta: dict[str, Any],
        references: tuple[list[str], list[dict[str, Any]], tuple[Any, ...]] = ([], [], ()),
        live_scope: str | None = None,
        synchronous: bool | None = None,
    ) -> Generation:
        ids, referenced, refs = references
        now = self.now()
        gen = Generation(
            id=str(uuid.uuid4()),
            prompt=prompt,
            aspect_ratio=aspect_ratio,
            auto_enhance=auto_enhance,
            template=template,
            created=now,
            seq=self.seq(),
            updated=now,
            flow_id=flow_id,
            alias=alias,
            flow_alias=flow_alias,
            meta=meta,
            reference_ids=ids,
            referenced=referenced,
            refs=refs,
            run_started=now,
            done_at=now,
            failure=None,
            live_scope=live_scope,
        )
        self.generations[gen.id] = gen
        if flow_id is not None and flow_id in self.flows:
            self.flows[flow_id].updated = now
        self.start_run(gen, synchronous=synchronous)
        return gen

    async def create_generation(self, request: Request, principal: Principal | None) -> Response:
        body = await _json_body(request)
        prompt = _prompt(body.get("prompt"))
        aspect = _aspect(body.get("aspectRatio"))
        auto_enhance = _bool(body.get("autoEnhance"), "autoEnhance", True)
        template = _template(body.get("enhancementOptions"))
        alias = _alias(body.get("alias"), "alias")
        flow_alias = _alias(body.get("flowAlias"), "flowAlias")
        meta = _meta(body.get("meta"))
        if flow_alias and "flowId" in body and body["flowId"] is None:
            raise _bad("flowAlias requires a flow: give flowId (or omit it for a new flow)")
        refs = body.get("referenceImages")
        # references resolve in the flow named by the request (the project when none is named)
        context = body.get("flowId") if isinstance(body.get("flowId"), str) else None
        if context is not None and not UUID_RE.match(context):
            raise _bad("flowId must be a UUID or null")
        references = self.references(refs, prompt, context)
        flow_id = self.flow_for(body)
        gen = self._create_generation(
            prompt=prompt, aspect_ratio=aspect, auto_enhance=auto_enhance, template=template,
            flow_id=flow_id, alias=alias, flow_alias=flow_alias, meta=meta, references=references,
        )
        return ok(self.generation_view(request, gen), 201)

    async def list_generations(self, request: Request, principal: Principal | None) -> Response:
        q = request.query_params
        status = q.get("status")
        if status is not None and status not in STATUSES:
            raise _bad(f"status must be one of {', '.join(STATUSES)}")
        include_deleted = _bool(q.get("includeDeleted"), "includeDeleted", False)
        flow_id = q.get("flowId")
        now = self.now()
        gens = [
            g for g in self.generations.values()
            if (include_deleted or g.deleted is None)
            and (flow_id is None or g.flow_id == flow_id)
            and (status is None or g.status(now, self.pending_seconds) == status)
        ]
        return self._page(request, gens, lambda g: self.generation_view(request, g))

    def _page(self, request: Request, items: list[Any], view: Callable[[Any], Any]) -> Response:
        limit, offset = _paging(request)
        items = sorted(items, key=lambda x: x.seq, reverse=True)
        chunk = items[offset : offset + limit]
        pagination = {
            "total": len(items),
            "limit": limit,
            "offset": offset,
            "hasMore": offset + len(chunk) < len(items),
        }
        return ok([view(x) for x in chunk], pagination=pagination)

    async def get_generation(self, request: Request, principal: Principal | None) -> Response:
        gen = self.generation(request.path_params["gen_id"])
        return ok(self.generation_view(request, gen))

    def _regenerate(self, gen: Generation) -> None:
        if gen.status(self.now(), self.pending_seconds) not in ("success", "failed"):
            raise ApiError(409, "GENERATION_IN_PROGRESS",
                           "Generation is still running; wait for it to finish")
        gen.version += 1
        self.start_run(gen)

    async def update_generation(self, request: Request, principal: Principal | None) -> Response:
        gen = self.generation(request.path_params["gen_id"])
        body = await _json_body(request)
        regenerate = False
        if "prompt" in body:
            prompt = _prompt(body["prompt"])
            regenerate = regenerate or prompt != gen.prompt
        if "aspectRatio" in body:
            aspect = _aspect(body["aspectRatio"])
            regenerate = regenerate or aspect != gen.aspect_ratio
        meta = _meta(body["meta"]) if "meta" in body else None
        flow_id: Any = ...
        if "flowId" in body:
            value = body["flowId"]
            if value is not None and (not isinstance(value, str) or not UUID_RE.match(value)):
                raise _bad("flowId must be a UUID or null")
            flow_id = value
        if regenerate and gen.status(self.now(), self.pending_seconds) not in ("success",
                                                                               "failed"):
            raise ApiError(409, "GENERATION_IN_PROGRESS",
                           "Generation is still running; wait for it to finish")
        if flow_id is not ...:
            if flow_id is not None and flow_id not in self.flows:
                self.new_flow(flow_id)
            gen.flow_id = flow_id
            image = self.images.get(gen.output_image_id or "")
            if image is not None:
                image.flow_id = flow_id
        if meta is not None:
            gen.meta = meta
        gen.updated = self.now()
        if regenerate:
            if "prompt" in body:
                gen.prompt = _prompt(body["prompt"])
            if "aspectRatio" in body:
                gen.aspect_ratio = _aspect(body["aspectRatio"])
            self._regenerate(gen)
        return ok(self.generation_view(request, gen))

    async def regenerate_generation(
        self, request: Request, principal: Principal | None
    ) -> Response:
        gen = self.generation(request.path_params["gen_id"])
        self._regenerate(gen)
        return ok(self.generation_view(request, gen))

    async def remove_generation(self, request: Request, principal: Principal | None) -> Response:
        gen = self.generation(request.path_params["gen_id"])
        self.delete_generation(gen)
        return ok({"id": gen.id})

    # ================================================================= flows
    async def create_flow(self, request: Request, principal: Principal | None) -> Response:
        body = await _json_body(request)
        flow = self.new_flow(meta=_meta(body.get("meta")))
        return ok(self.flow_view(flow), 201)

    async def list_flows(self, request: Request, principal: Principal | None) -> Response:
        return self._page(request, list(self.flows.values()), self.flow_view)

    async def get_flow(self, request: Request, principal: Principal | None) -> Response:
        return ok(self.flow_view(self.flow(request.path_params["flow_id"])))

    async def flow_generations(self, request: Request, principal: Principal | None) -> Response:
        flow = self.flow(request.path_params["flow_id"])
        gens = [g for g in self.generations.values() if g.flow_id == flow.id and g.deleted is None]
        return self._page(request, gens, lambda g: self.generation_view(request, g))

    async def flow_images(self, request: Request, principal: Principal | None) -> Response:
        flow = self.flow(request.path_params["flow_id"])
        images = [i for i in self.images.values() if i.flow_id == flow.id]
        return self._page(request, images, lambda i: self.image_view(request, i))

    async def set_flow_aliases(self, request: Request, principal: Principal | None) -> Response:
        flow = self.flow(request.path_params["flow_id"])
        body = await _json_body(request)
        aliases = body.get("aliases")
        if not isinstance(aliases, dict) or not aliases:
            raise _bad('aliases must be an object like {"@hero": "<imageId>"}')
        for alias, image_id in aliases.items():
            _alias(alias, "alias")
            if not isinstance(image_id, str):
                raise _bad(f"the image of {alias} must be an image id")
            self.image_by_id(image_id)
        flow.aliases.update(aliases)
        flow.updated = self.now()
        return ok(self.flow_view(flow))

    async def delete_flow_alias(self, request: Request, principal: Principal | None) -> Response:
        flow = self.flow(request.path_params["flow_id"])
        alias = request.path_params["alias"]
        if alias not in flow.aliases:
            raise ApiError(404, "ALIAS_NOT_FOUND", f"Alias {alias} not found in this flow")
        del flow.aliases[alias]
        flow.updated = self.now()
        return ok(self.flow_view(flow))

    async def regenerate_flow(self, request: Request, principal: Principal | None) -> Response:
        flow = self.flow(request.path_params["flow_id"])
        gens = [g for g in self.generations.values() if g.flow_id == flow.id and g.deleted is None]
        if not gens:
            raise _bad("Flow has no generations to regenerate")
        gen = max(gens, key=lambda g: g.seq)
        self._regenerate(gen)
        return ok(self.generation_view(request, gen))

    async def remove_flow(self, request: Request, principal: Principal | None) -> Response:
        flow = self.flow(request.path_params["flow_id"])
        for gen in [g for g in self.generations.values() if g.flow_id == flow.id]:
            if gen.deleted is None:
                self.delete_generation(gen)
            gen.flow_id = None
        for image in [i for i in self.images.values() if i.flow_id == flow.id]:
            if image.alias:
                image.flow_id = None
            else:
                self.delete_image(image)
        del self.flows[flow.id]
        return ok({"id": flow.id})

    # ================================================================= images
    async def upload(self, request: Request, principal: Principal | None) -> Response:
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise _bad("Send the image as multipart/form-data with a file field")
        fields, files = _multipart(await request.body(), content_type)
        if "file" not in files:
            raise _bad("file is required")
        _, _, data = files["file"]
        if len(data) > MAX_UPLOAD_BYTES:
            raise _bad("file is larger than 5 MB")
        try:
            with PILImage.open(io.BytesIO(data)) as im:
                fmt, (width, height) = im.format, im.size
        except Exception:
            raise _bad("file is not an image") from None
        if fmt not in UPLOAD_FORMATS:
            raise _bad("file must be PNG, JPEG or WebP")
        alias = _alias(fields.get("alias") or None, "alias")
        flow_alias = _alias(fields.get("flowAlias") or None, "flowAlias")
        meta = _meta(_json_field(fields.get("meta"), "meta"))
        form: dict[str, Any] = {}
        if "flowId" in fields:
            form["flowId"] = fields["flowId"]
        if flow_alias and form.get("flowId") in ("", "null"):
            raise _bad("flowAlias requires a flow: give flowId (or omit it for a new flow)")
        flow_id = self.flow_for(form)
        now = self.now()
        image = StoredImage(
            id=str(uuid.uuid4()), source="uploaded", created=now, seq=self.seq(), updated=now,
            width=width, height=height, mime=UPLOAD_FORMATS[fmt], flow_id=flow_id, meta=meta,
            file_size=len(data),
        )
        image.blob = image.id
        self.blobs[image.id] = data
        self.images[image.id] = image
        if alias:
            self.assign_project_alias(image, alias, reassign=True)
        if flow_alias and flow_id:
            self.flows[flow_id].aliases[flow_alias] = image.id
            self.flows[flow_id].updated = now
        return ok(self.image_view(request, image), 201)

    async def list_images(self, request: Request, principal: Principal | None) -> Response:
        q = request.query_params
        source = q.get("source")
        if source is not None and source not in ("generated", "uploaded"):
            raise _bad("source must be generated or uploaded")
        alias, flow_id = q.get("alias"), q.get("flowId")
        images = [
            i for i in self.images.values()
            if (source is None or i.source == source)
            and (alias is None or i.alias == alias)
            and (flow_id is None or i.flow_id == flow_id)
        ]
        return self._page(request, images, lambda i: self.image_view(request, i))

    async def get_image(self, request: Request, principal: Principal | None) -> Response:
        image, _ = self.resolve(request.path_params["ref"], request.query_params.get("flowId"))
        return ok(self.image_view(request, image))

    async def resolve_alias(self, request: Request, principal: Principal | None) -> Response:
        alias = request.path_params["alias"]
        if not alias.startswith("@"):
            raise _bad("resolve takes an @alias")
        flow_id = request.query_params.get("flowId")
        image, scope = self.resolve(alias, flow_id)
        return ok({
            "alias": alias,
            "imageId": image.id,
            "scope": scope,
            "flowId": flow_id,
            "image": self.image_view(request, image),
        })

    async def update_image(self, request: Request, principal: Principal | None) -> Response:
        image, _ = self.resolve(request.path_params["ref"], request.query_params.get("flowId"))
        body = await _json_body(request)
        if "alias" in body:
            raise _bad("alias cannot be changed here: use PUT /api/v1/images/:id/alias")
        if "focalPoint" in body:
            point = body["focalPoint"]
            if point is not None:
                if not isinstance(point, dict) or set(point) != {"x", "y"} or not all(
                    isinstance(point[k], (int, float)) and not isinstance(point[k], bool)
                    and 0 <= point[k] <= 1 for k in ("x", "y")
                ):
                    raise _bad("focalPoint must be {x, y} with numbers from 0 to 1")
                point = {"x": float(point["x"]), "y": float(point["y"])}
            image.focal_point = point
        if "meta" in body:
            image.meta = _meta(body["meta"])
        image.updated = self.now()
        return ok(self.image_view(request, image))

    async def set_image_alias(self, request: Request, principal: Principal | None) -> Response:
        image = self.image_by_id(request.path_params["image_id"])
        body = await _json_body(request)
        if "alias" not in body:
            raise _bad("alias is required (an @alias, or null to remove it)")
        alias = _alias(body["alias"], "alias")
        self.assign_project_alias(image, alias, reassign=False)
        image.updated = self.now()
        return ok(self.image_view(request, image))

    async def remove_image(self, request: Request, principal: Principal | None) -> Response:
        image = self.image_by_id(request.path_params["image_id"])
        self.delete_image(image)
        return ok({"id": image.id})

    # ================================================================= live scopes
    def scope(self, slug: str) -> LiveScope:
        scope = self.scopes.get(slug)
        if scope is None:
            raise ApiError(404, "SCOPE_NOT_FOUND", f"Scope {slug!r} not found")
        return scope

    def _scope_settings(self, body: dict[str, Any], scope: LiveScope) -> None:
        if "allowNewGenerations" in body:
            scope.allow_new = _bool(body["allowNewGenerations"], "allowNewGenerations", True)
        if "newGenerationsLimit" in body:
            limit = body["newGenerationsLimit"]
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise _bad("newGenerationsLimit must be a whole number >= 0")
            scope.limit = limit
        if "meta" in body:
            scope.meta = _meta(body["meta"])

    def new_scope(self, slug: str) -> LiveScope:
        if not isinstance(slug, str) or not SCOPE_RE.match(slug):
            raise ApiError(400, "SCOPE_INVALID_FORMAT",
                           "Scope slug must be letters, digits, hyphens or underscores")
        scope = LiveScope(str(uuid.uuid4()), slug, self.now(), self.seq())
        self.scopes[slug] = scope
        return scope

    async def create_scope(self, request: Request, principal: Principal | None) -> Response:
        body = await _json_body(request)
        slug = body.get("slug")
        if slug in (None, ""):
            raise _bad("slug is required")
        if slug in self.scopes:
            raise ApiError(409, "SCOPE_ALREADY_EXISTS", f"Scope {slug!r} already exists")
        probe = LiveScope("", "", 0, 0)
        self._scope_settings(body, probe)  # validate before creating
        scope = self.new_scope(slug)
        self._scope_settings(body, scope)
        return ok(self.scope_view(scope), 201)

    async def list_scopes(self, request: Request, principal: Principal | None) -> Response:
        slug = request.query_params.get("slug")
        scopes = [s for s in self.scopes.values() if slug is None or s.slug == slug]
        return self._page(request, scopes, self.scope_view)

    async def get_scope(self, request: Request, principal: Principal | None) -> Response:
        return ok(self.scope_view(self.scope(request.path_params["slug"])))

    async def update_scope(self, request: Request, principal: Principal | None) -> Response:
        scope = self.scope(request.path_params["slug"])
        body = await _json_body(request)
        self._scope_settings(body, scope)
        return ok(self.scope_view(scope))

    async def delete_scope(self, request: Request, principal: Principal | None) -> Response:
        scope = self.scope(request.path_params["slug"])
        del self.scopes[scope.slug]
        for key in [k for k, e in self.live_cache.items() if e.scope == scope.slug]:
            del self.live_cache[key]
        return ok({"id": scope.id, "slug": scope.slug})

    async def regenerate_scope(self, request: Request, principal: Principal | None) -> Response:
        scope = self.scope(request.path_params["slug"])
        body = await _json_body(request)
        entries = [e for e in self.live_cache.values() if e.scope == scope.slug]
        image_id = body.get("imageId")
        if image_id is not None:
            if not any(e.image_id == image_id for e in entries):
                raise ApiError(400, "IMAGE_NOT_IN_SCOPE",
                               f"Image {image_id} is not in scope {scope.slug!r}")
            entries = [e for e in entries if e.image_id == image_id]
        done = []
        for entry in entries:
            gen = self.generations.get(entry.generation_id)
            if gen is not None:
                gen.version += 1
                self.start_run(gen, synchronous=True)
                done.append(entry.image_id)
        return ok({"regenerated": len(done), "imageIds": done})

    # ================================================================= live & CDN
    def _live_ip(self, request: Request) -> str:
        forwarded = request.headers.get("x-forwarded-for", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first
        return request.client.host if request.client else "unknown"

    async def live(self, request: Request, scope_slug: str, *, keyed: bool = False) -> Response:
        """A live generation: bytes from the cache (HIT) or a new generation (MISS)."""
        q = request.query_params
        prompt = _prompt(q.get("prompt"))
        aspect = _aspect(q.get("aspectRatio"))
        auto_enhance = _bool(q.get("autoEnhance"), "autoEnhance", True)
        template = q.get("template") or "general"
        if template not in TEMPLATES:
            raise _bad(f"template must be one of {', '.join(TEMPLATES)}")
        if not SCOPE_RE.match(scope_slug):
            raise ApiError(400, "SCOPE_INVALID_FORMAT",
                           "Scope slug must be letters, digits, hyphens or underscores")
        key = (scope_slug, prompt, aspect, auto_enhance, template)
        entry = self.live_cache.get(key)
        ip = self._live_ip(request)
        if entry is not None and entry.image_id in self.images:
            headers = {} if keyed else self._window(
                self._live_windows, ip, self.effective_live_limit, count=False
            )
            entry.hits += 1
            image = self.images[entry.image_id]
            data = await run_in_threadpool(self.image_bytes, image)
            headers.update({
                "X-Cache-Status": "HIT",
                "X-Cache-Hit-Count": str(entry.hits),
                "X-Image-Id": image.id,
                "Cache-Control": CACHE_CONTROL,
            })
            return Response(data, media_type=image.mime, headers=headers)
        scope = self.scopes.get(scope_slug) or self.new_scope(scope_slug)
        if not scope.allow_new or scope.current >= scope.limit:
            raise ApiError(
                403,
                "SCOPE_GENERATION_LIMIT_REACHED",
                f"Scope {scope_slug!r} allows no new generations "
                f"({scope.current} of {scope.limit} used)",
            )
        headers = {} if keyed else self._window(
            self._live_windows, ip, self.effective_live_limit, count=True
        )
        gen = self._create_generation(
            prompt=prompt, aspect_ratio=aspect, auto_enhance=auto_enhance, template=template,
            flow_id=None, alias=None, flow_alias=None, meta={"liveScope": scope_slug},
            live_scope=scope_slug, synchronous=True,
        )
        if gen.failure:
            raise ApiError(500, "INTERNAL_ERROR", gen.failure)
        scope.current += 1
        scope.last_generated = self.now()
        image = self.images[gen.output_image_id or ""]
        self.live_cache[key] = CacheEntry(image.id, gen.id, scope_slug)
        data = await run_in_threadpool(self.image_bytes, image)
        headers.update({
            "X-Cache-Status": "MISS",
            "X-Generation-Id": gen.id,
            "X-Image-Id": image.id,
            "Cache-Control": CACHE_CONTROL,
        })
        return Response(data, media_type=image.mime, headers=headers)

    async def keyed_live(self, request: Request, principal: Principal | None) -> Response:
        return await self.live(request, "api", keyed=True)

    def _project(self, request: Request) -> None:
        org, project = request.path_params["org"], request.path_params["project"]
        if (org, project) != (ORG_SLUG, PROJECT_SLUG):
            raise ApiError(404, "PROJECT_NOT_FOUND", f"Project {org}/{project} not found")

    async def cdn_image(self, request: Request) -> Response:
        try:
            self.settle()
            self._project(request)
            ref = request.path_params["ref"]
            if ref.startswith("@"):
                if not ALIAS_RE.match(ref):
                    raise _bad(f"Invalid alias format {ref!r}")
                image_id = self.project_aliases.get(ref)
                image = self.images.get(image_id or "")
                if image is None:
                    raise ApiError(404, "ALIAS_NOT_FOUND", f"Alias {ref} not found")
            else:
                image = self.images.get(ref.split(".")[0])
                if image is None:
                    raise _missing("Image", "IMAGE_NOT_FOUND")
            data = await run_in_threadpool(self.image_bytes, image)
        except ApiError as exc:
            return exc.response()
        except Exception:
            logger.exception("sandbox banatie CDN %s failed", request.url.path)
            return error_response(500, "INTERNAL_ERROR", "Internal server error")
        return Response(data, media_type=image.mime,
                        headers={"Cache-Control": CACHE_CONTROL, "X-Image-Id": image.id})

    async def cdn_live(self, request: Request) -> Response:
        try:
            self.settle()
            self._project(request)
            return await self.live(request, request.path_params["scope"])
        except ApiError as exc:
            return exc.response()
        except Exception:
            logger.exception("sandbox banatie live %s failed", request.url.path)
            return error_response(500, "INTERNAL_ERROR", "Internal server error")

    def cdn_routes(self) -> list[Route]:
        return [
            Route("/{org}/{project}/img/{ref}", self.cdn_image, methods=["GET"]),
            Route("/{org}/{project}/live/{scope}", self.cdn_live, methods=["GET"]),
        ]

    # ================================================================= routes
    def routes(self) -> list[Route | Mount]:
        e = self.endpoint
        v1 = "/api/v1"
        return [
            Route("/health", e(self.health, auth="none", counted=False), methods=["GET"]),
            Route("/api/info", e(self.info, auth="optional", counted=False), methods=["GET"]),
            Route("/api/bootstrap/initial-key", e(self.bootstrap, auth="none", counted=False),
                  methods=["POST"]),
            Route("/api/admin/keys", e(self.create_key, auth="master"), methods=["POST"]),
            Route("/api/admin/keys", e(self.list_keys, auth="master"), methods=["GET"]),
            Route("/api/admin/keys/{key_id}", e(self.revoke_key, auth="master"),
                  methods=["DELETE"]),
            Route(f"{v1}/generations", e(self.create_generation), methods=["POST"]),
            Route(f"{v1}/generations", e(self.list_generations), methods=["GET"]),
            Route(f"{v1}/generations/{{gen_id}}", e(self.get_generation), methods=["GET"]),
            Route(f"{v1}/generations/{{gen_id}}", e(self.update_generation), methods=["PUT"]),
            Route(f"{v1}/generations/{{gen_id}}", e(self.remove_generation),
                  methods=["DELETE"]),
            Route(f"{v1}/generations/{{gen_id}}/regenerate", e(self.regenerate_generation),
                  methods=["POST"]),
            Route(f"{v1}/generations/{{gen_id}}/retry", e(self.regenerate_generation),
                  methods=["POST"]),
            Route(f"{v1}/flows", e(self.create_flow), methods=["POST"]),
            Route(f"{v1}/flows", e(self.list_flows), methods=["GET"]),
            Route(f"{v1}/flows/{{flow_id}}", e(self.get_flow), methods=["GET"]),
            Route(f"{v1}/flows/{{flow_id}}", e(self.remove_flow), methods=["DELETE"]),
            Route(f"{v1}/flows/{{flow_id}}/generations", e(self.flow_generations),
                  methods=["GET"]),
            Route(f"{v1}/flows/{{flow_id}}/images", e(self.flow_images), methods=["GET"]),
            Route(f"{v1}/flows/{{flow_id}}/aliases", e(self.set_flow_aliases), methods=["PUT"]),
            Route(f"{v1}/flows/{{flow_id}}/aliases/{{alias}}", e(self.delete_flow_alias),
                  methods=["DELETE"]),
            Route(f"{v1}/flows/{{flow_id}}/regenerate", e(self.regenerate_flow),
                  methods=["POST"]),
            Route(f"{v1}/images/upload", e(self.upload), methods=["POST"]),
            Route(f"{v1}/images", e(self.list_images), methods=["GET"]),
            Route(f"{v1}/images/resolve/{{alias}}", e(self.resolve_alias), methods=["GET"]),
            Route(f"{v1}/images/{{ref}}", e(self.get_image), methods=["GET"]),
            Route(f"{v1}/images/{{ref}}", e(self.update_image), methods=["PUT"]),
            Route(f"{v1}/images/{{image_id}}", e(self.remove_image), methods=["DELETE"]),
            Route(f"{v1}/images/{{image_id}}/alias", e(self.set_image_alias), methods=["PUT"]),
            Route(f"{v1}/live/scopes", e(self.create_scope), methods=["POST"]),
            Route(f"{v1}/live/scopes", e(self.list_scopes), methods=["GET"]),
            Route(f"{v1}/live/scopes/{{slug}}", e(self.get_scope), methods=["GET"]),
            Route(f"{v1}/live/scopes/{{slug}}", e(self.update_scope), methods=["PUT"]),
            Route(f"{v1}/live/scopes/{{slug}}", e(self.delete_scope), methods=["DELETE"]),
            Route(f"{v1}/live/scopes/{{slug}}/regenerate", e(self.regenerate_scope),
                  methods=["POST"]),
            Route(f"{v1}/live", e(self.keyed_live), methods=["GET"]),
            Mount("/cdn", routes=self.cdn_routes()),
        ]


def emulator(state: SandboxState) -> Banatie:
    """The one :class:`Banatie` of ``state`` (made on first use; the API and CDN share it)."""
    found = state.providers.get(NAME)
    if not isinstance(found, Banatie):
        found = state.providers[NAME] = Banatie(state)
    return found


def _http_error(request: Request, status: int) -> Response:
    if status == 404:
        return error_response(404, "NOT_FOUND", f"Route {request.method} {request.url.path} "
                                                "not found")
    return error_response(status)


def build(state: SandboxState) -> Starlette:
    """The Banatie API app for ``state``, to mount at :data:`PREFIX`."""
    return http.build_app(emulator(state).routes(), _http_error)


def build_cdn(state: SandboxState) -> Starlette:
    """The Banatie CDN app for ``state``, to mount at :data:`CDN_PREFIX`."""
    return http.build_app(emulator(state).cdn_routes(), _http_error)


# ------------------------------------------------------------------------------ parsing
def _derive(*parts: object) -> int:
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        data = repr(part).encode()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return int.from_bytes(h.digest(), "big") & 0xFFFFFFFF


def _processing_ms(gen: Generation) -> int:
    if gen.done_at is not None and gen.done_at > gen.run_started:
        return int((gen.done_at - gen.run_started) * 1000)
    return 2500 + _derive(gen.id, gen.version) % 5000


async def _json_body(request: Request) -> dict[str, Any]:
    return await http.json_body(request, _bad)


def _prompt(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _bad("prompt is required")
    if not isinstance(value, str):
        raise _bad("prompt must be a string")
    return value.strip()


def _aspect(value: Any) -> str:
    if value in (None, ""):
        return "1:1"
    if not isinstance(value, str) or value not in art.SIZES:
        raise _bad(f"aspectRatio must be one of {', '.join(art.SIZES)}")
    return value


def _bool(value: Any, name: str, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _bad(f"{name} must be true or false")


def _template(options: Any) -> str:
    if options is None:
        return "general"
    if not isinstance(options, dict):
        raise _bad("enhancementOptions must be an object")
    template = options.get("template") or "general"
    if template not in TEMPLATES:
        raise _bad(f"enhancementOptions.template must be one of {', '.join(TEMPLATES)}")
    return str(template)


def _alias(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not ALIAS_RE.match(value):
        raise _bad(f"{name} must look like @name (letters, digits, _ or -), not {value!r}")
    if value in TECHNICAL_ALIASES:
        raise _bad(f"{value} is a reserved technical alias and cannot be assigned")
    return value


def _meta(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad("meta must be an object")
    return value


def _json_field(value: str | None, name: str) -> Any:
    if value in (None, ""):
        return None
    try:
        return json.loads(value)  # type: ignore[arg-type]
    except ValueError:
        raise _bad(f"{name} must be a JSON string") from None


def _paging(request: Request) -> tuple[int, int]:
    q = request.query_params
    try:
        limit = int(q.get("limit", DEFAULT_LIMIT))
        offset = int(q.get("offset", 0))
    except ValueError:
        raise _bad("limit and offset must be whole numbers") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise _bad(f"limit must be from 1 to {MAX_LIMIT}")
    if offset < 0:
        raise _bad("offset must be 0 or more")
    return limit, offset


_DISPOSITION_PARAM = re.compile(r';\s*([\w*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))')


def _multipart(
    body: bytes, content_type: str
) -> tuple[dict[str, str], dict[str, tuple[str | None, str | None, bytes]]]:
    """``(fields, files)`` of a ``multipart/form-data`` body (stdlib only, no python-multipart)."""
    match = re.search(r'boundary=(?:"([^"]+)"|([^;\s]+))', content_type)
    if match is None:
        raise _bad("multipart/form-data without a boundary")
    delimiter = b"--" + (match[1] or match[2]).encode("latin-1")
    fields: dict[str, str] = {}
    files: dict[str, tuple[str | None, str | None, bytes]] = {}
    for part in body.split(delimiter)[1:]:
        if part.startswith(b"--"):
            break
        if part.startswith(b"\r\n"):
            part = part[2:]
        head, sep, data = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        if data.endswith(b"\r\n"):
            data = data[:-2]
        headers = _part_headers(head.decode("utf-8", "replace").split("\r\n"))
        params = {
            k.lower(): (quoted if quoted is not None else (bare or "").strip())
            for k, quoted, bare in _DISPOSITION_PARAM.findall(
                headers.get("content-disposition", "")
            )
        }
        name = params.get("name")
        if not name:
            continue
        if "filename" in params:
            files[name] = (params["filename"], headers.get("content-type"), data)
        else:
            fields[name] = data.decode("utf-8", "replace")
    return fields, files


def _part_headers(lines: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip().lower()] = value.strip()
    return out
