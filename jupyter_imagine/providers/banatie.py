"""Banatie (``https://api.banatie.app``, CDN and live URLs at ``https://cdn.banatie.app``).

Wire facts this module relies on (``providers.md`` §5):

- ``X-API-Key: bnt_…``. Answers are ``{"success": true, "data": …}`` (lists add
  ``"pagination": {"total", "limit", "offset", "hasMore"}``); errors are ``{"success": false,
  "error": {"message", "code"}}``. Codes become typed errors, the code kept in the message:
  ``VALIDATION_ERROR`` and ``ALIAS_CONFLICT`` → :class:`InvalidRequest`, ``UNAUTHORIZED`` →
  :class:`AuthenticationError` (naming ``BANATIE_API_KEY``), ``*_NOT_FOUND`` → :class:`NotFound`,
  ``RATE_LIMIT_EXCEEDED`` → :class:`RateLimited` (``Retry-After``), ``INTERNAL_ERROR`` →
  :class:`ServiceUnavailable`, ``FORBIDDEN`` → :class:`PermissionDenied`.
- A generation is ``pending → processing → success | failed``. The create usually answers
  ``success`` with ``outputImage`` (a finished job, no poll); when it answers ``pending`` the job
  is polled with ``GET /api/v1/generations/{id}``. A ``success`` with no ``outputImage`` (deleting
  an image clears it from its generation) is a succeeded job with no image and a note in
  ``job.error`` saying so, never a silent empty success.
- Live URLs (``{cdn}/{org}/{project}/live/{scope}?prompt=…``) are public GETs answering raw bytes
  with ``X-Cache-Status: HIT|MISS``; the key is never sent to the CDN.

Job kinds: ``imagine`` starts a ``generation`` (``POST /api/v1/generations``); ``live`` a
``live`` job, finished as soon as the bytes arrive (``extras["cache_status"]`` is HIT or MISS;
the bytes are kept for the engine's download, so no second request is made). The one action,
``Regenerate`` (``job.act("Regenerate", prompt=None, aspect_ratio=None)``), starts a child of kind
``regenerate`` that re-runs **the same** Banatie generation (same id and image URL; the parent
keeps its own downloaded pixels). With the prompt and aspect ratio unchanged it is ``POST
…/{id}/regenerate`` (falling back to the older ``…/retry`` when a server has no such route),
with either changed it is ``PUT …/{id}``, which regenerates. As the history keeps one job per
remote id, the child's ``remote_id`` is ``<generation id>#<its local id>`` and
``params["generation_id"]`` the plain id; a live cache HIT is ``<image id>#<local id>``.
``@alias`` references in prompts are the server's business: prompts are sent untouched.

Pacing: every ``/api/v1`` answer announces ``X-RateLimit-Limit/Remaining/Reset`` (100 requests
an hour per key); live answers do the same per IP (10 **new** generations an hour; cache HITs are
free). The client keeps the last announcement of each and, when ``Remaining`` is 0, waits
(``asyncio.sleep``, logged once at INFO per window) until ``Reset`` before sending — live
requests it has already seen (cache HITs) go through. A wait longer than :attr:`max_rate_wait`
(60 s) is not slept: it raises :class:`RateLimited` with ``retry_after``, without sending, so the
engine's back-off takes over. A 429 received anyway updates the same state from ``Retry-After``.

CDN base: ``BANATIE_CDN_URL`` if set; else, in the sandbox, the API base with ``/banatie``
replaced by ``/banatie-cdn``; with the default API base ``https://cdn.banatie.app``; with any
other ``BANATIE_BASE_URL`` (a self-hosted banatie-service) ``{base_url}/cdn``, where the service
mounts its CDN routes. Live URLs need the org and project slugs: the ``org``/``project``
parameters, else ``keyInfo`` of ``GET /api/info``, else the path of an image's ``storageUrl``.
"""

from __future__ import annotations

import asyncio
import collections
import io
import json
import os
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlencode

import httpx

from .._secrets import get_logger
from ..errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderError,
    RateLimited,
    ServiceUnavailable,
)
from ..imaging import image_format
from ..models import Balance, Image, Job, Status, utcnow
from ._base import (
    ChildSpec,
    ParamSpec,
    Provider,
    RemoteJob,
    Submission,
    Update,
    idempotent,
    new_prompt,
    retry_after,
)
from ._timestamps import parse_when

__all__ = ["REGENERATE", "STATUS_MAP", "Banatie", "Page"]

logger = get_logger(__name__)

#: Banatie's status strings → the five statuses.
STATUS_MAP: dict[str, Status] = {
    "pending": Status.QUEUED,
    "processing": Status.RUNNING,
    "success": Status.SUCCEEDED,
    "failed": Status.FAILED,
}

REGENERATE = "Regenerate"
ASPECT_RATIOS = ("1:1", "16:9", "9:16", "3:2", "21:9", "4:3", "3:4")
TEMPLATES = ("general", "photorealistic", "illustration", "minimalist", "sticker", "product",
             "comic")
TECHNICAL_ALIASES = ("@last", "@first", "@upload")
MAX_REFERENCES = 3
DEFAULT_CDN = "https://cdn.banatie.app"
SANDBOX_CDN_PREFIX = "/banatie-cdn"
NO_FLOW = "none"
#: The job's error note when Banatie answers ``success`` with no ``outputImage``: the image was
#: deleted (``DELETE /api/v1/images/:id`` clears it from its generation) before it was fetched.
_NO_OUTPUT_IMAGE = (
    "Banatie reports the generation succeeded but has no output image (was it deleted?); "
    f"run it again with job.act({REGENERATE!r})"
)

_ALIAS = re.compile(r"^@[A-Za-z0-9_-]{1,100}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SCOPE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

#: Which parameters each public kind takes.
_KIND_PARAMS = {
    "imagine": frozenset({"aspect_ratio", "reference_images", "flow_id", "alias", "flow_alias",
                          "auto_enhance", "template", "meta"}),
    "live": frozenset({"aspect_ratio", "auto_enhance", "template", "scope", "org", "project"}),
}
_JOB_KIND = {"imagine": "generation", "live": "live"}


# ------------------------------------------------------------------------------ parameters
def _check_alias(value: Any, what: str, provider: str, *, technical: bool = False) -> str:
    if not isinstance(value, str) or not _ALIAS.match(value):
        raise InvalidRequest(
            f"{provider} {what} must look like @name (letters, digits, _ or -), not {value!r}",
            provider=provider,
        )
    if not technical and value in TECHNICAL_ALIASES:
        raise InvalidRequest(
            f"{value} is a technical alias Banatie computes; it cannot be assigned ({what})",
            provider=provider,
        )
    return value


class _Choice(ParamSpec):
    """A string with fixed choices (aspect ratios, templates)."""

    def coerce(self, value: Any, provider: str) -> Any:
        return super().coerce(str(value).strip().replace(" ", ""), provider)


class _Alias(ParamSpec):
    """A project or flow alias to assign: ``@name``, technical aliases refused."""

    def coerce(self, value: Any, provider: str) -> Any:
        return _check_alias(str(value).strip(), f"parameter {self.name!r}", provider)


class _References(ParamSpec):
    """Up to 3 image ids or ``@aliases``: a list, or a comma-separated string."""

    def coerce(self, value: Any, provider: str) -> Any:
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise self.invalid(provider, "be a list of image ids or @aliases", value)
        if len(items) > MAX_REFERENCES:
            raise InvalidRequest(
                f"{provider} takes at most {MAX_REFERENCES} reference images, not {len(items)}",
                provider=provider,
            )
        for item in items:
            if isinstance(item, str) and item.startswith("@"):
                _check_alias(item, "reference", provider, technical=True)
            elif not isinstance(item, str) or not _UUID.match(item):
                raise InvalidRequest(
                    f"{provider} reference {item!r} is neither an image id (UUID) nor an @alias",
                    provider=provider,
                )
        return items


class _Meta(ParamSpec):
    """A JSON object: a dict, or its JSON text."""

    def coerce(self, value: Any, provider: str) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                value = None
        if not isinstance(value, dict):
            raise InvalidRequest(
                f"{provider} parameter 'meta' must be a dict (or JSON object text)",
                provider=provider,
            )
        return value


class _FlowId(ParamSpec):
    """A flow UUID, or ``"none"``/``False`` for no flow (omitted: Banatie starts a new flow)."""

    def coerce(self, value: Any, provider: str) -> Any:
        if value is False or (isinstance(value, str) and value.strip().lower() in
                              ("none", "null", "false")):
            return NO_FLOW
        if not isinstance(value, str) or not _UUID.match(value.strip()):
            raise self.invalid(provider, "be a flow UUID, or 'none' for no flow", value)
        return value.strip()


class _Scope(ParamSpec):
    def coerce(self, value: Any, provider: str) -> Any:
        if not isinstance(value, str) or not _SCOPE.match(value):
            raise InvalidRequest(
                f"{provider} live scope must be letters, digits, - or _, not {value!r}",
                provider=provider,
            )
        return value


# ------------------------------------------------------------------------------ helpers
class Page(list):  # type: ignore[type-arg]
    """One page of a Banatie list: the items (dicts), plus the pagination.

    Attributes:
        total, limit, offset: as the server reported them (``None`` when absent).
        has_more: ``True`` when a further page exists.
    """

    def __init__(self, items: list[dict[str, Any]], pagination: Mapping[str, Any] | None) -> None:
        super().__init__(items)
        pagination = dict(pagination or {})
        self.pagination = pagination
        self.total: int | None = pagination.get("total")
        self.limit: int | None = pagination.get("limit")
        self.offset: int | None = pagination.get("offset")
        self.has_more: bool = bool(pagination.get("hasMore"))

    def __repr__(self) -> str:
        return f"Page({len(self)} of {self.total}, offset {self.offset}, has_more={self.has_more})"


@dataclass
class _Bucket:
    """What the server last announced for one limit (``None``: nothing known)."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None  # unix seconds
    announced: float | None = None  # the reset a wait was already logged for


def _header_number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None


def _reset_time(value: float, now: float) -> float:
    """``X-RateLimit-Reset`` as unix seconds: accepts unix seconds, milliseconds or a delta."""
    if value > 1e12:
        return value / 1000.0
    if value < 1e9:
        return now + value
    return value


def _window(limit: int | None, offset: int | None) -> dict[str, Any]:
    """The ``limit``/``offset`` query of a listing (``None``: the server's default)."""
    return _snake({"limit": limit, "offset": offset}, {"limit": "limit", "offset": "offset"})


def _snake(params: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """Query parameters: ``names`` maps Python names to wire names; ``None`` values dropped."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in names:
            raise InvalidRequest(
                f"unknown filter {key!r}; use: {', '.join(sorted(names))}", provider="banatie"
            )
        if value is None:
            continue
        out[names[key]] = str(value).lower() if isinstance(value, bool) else value
    return out


def _image_payload(data: Any) -> tuple[bytes, str, str]:
    """``(bytes, filename, mime)`` from bytes, a path or a PIL image."""
    name = "image"
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InvalidRequest(f"cannot read {path}: {exc.strerror}") from None
        name = path.name
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    elif hasattr(data, "save") and hasattr(data, "size"):  # a PIL image
        buf = io.BytesIO()
        data.save(buf, format="PNG")
        raw = buf.getvalue()
    else:
        raise InvalidRequest(
            f"upload_image takes bytes, a path or a PIL image, not {type(data).__name__}"
        )
    found = image_format(raw)
    if found not in ("png", "jpeg", "webp"):
        raise InvalidRequest("Banatie accepts PNG, JPEG or WebP images only")
    mime, ext = f"image/{found}", {"jpeg": ".jpg"}.get(found, f".{found}")
    if "." not in name:
        name += ext
    return raw, name, mime


# ------------------------------------------------------------------------------ the client
class Banatie(Provider):
    """The Banatie client. Kinds: ``imagine`` (a generation) and ``live``; action: Regenerate.

    Non-job calls, also as ``jupyter_imagine.client("banatie").<call>(…)``: generations,
    generation, update_generation, regenerate_generation, delete_generation; flows, flow,
    create_flow, flow_generations, flow_images, set_flow_aliases, delete_flow_alias,
    regenerate_flow, delete_flow; upload_image, images, image, resolve_alias, update_image,
    set_alias, delete_image, cdn_url; live_url, live_scopes, live_scope, create_live_scope,
    update_live_scope, delete_live_scope, regenerate_live_scope; info, health.
    """

    name: ClassVar[str] = "banatie"
    label: ClassVar[str] = "Banatie"
    env_key: ClassVar[str] = "BANATIE_API_KEY"
    default_base_url: ClassVar[str] = "https://api.banatie.app"
    sandbox_prefix: ClassVar[str] = "/banatie"
    status_map: ClassVar[Mapping[str, Status]] = STATUS_MAP
    kinds: ClassVar[tuple[str, ...]] = ("imagine", "live")
    #: Banatie charges no credits: what a job spends is requests against the project key's
    #: limit (100 per hour, announced as X-RateLimit-* on every answer; banatie.app/docs/api).
    #: A generation or a regenerate is one POST (polls while it is pending count too, and are
    #: not in the price). Live URLs count against a separate per-IP limit of new generations,
    #: so ``live`` has no price. No dollar price is published.
    PRICES: ClassVar[Mapping[str, float]] = {"generation": 1, "regenerate": 1}
    PRICE_UNIT: ClassVar[str | None] = "requests"
    max_concurrency: ClassVar[int] = 4
    poll_interval: ClassVar[tuple[float, float]] = (2.0, 10.0)
    default_timeout: ClassVar[float] = 600.0
    #: Longest wait (s) for an announced rate-limit reset before raising RateLimited (60).
    max_rate_wait: ClassVar[float] = 60.0
    #: Items per page when pulling the remote history (100, the server's maximum).
    history_page_size: ClassVar[int] = 100
    params: ClassVar[Mapping[str, ParamSpec]] = {
        "aspect_ratio": _Choice(
            "aspect_ratio", choices=ASPECT_RATIOS,
            help="1:1 (Banatie's default), 16:9, 9:16, 3:2, 21:9, 4:3 or 3:4",
        ),
        "reference_images": _References(
            "reference_images", help="up to 3 image ids or @aliases (@last, @first, @upload …)"
        ),
        "flow_id": _FlowId(
            "flow_id", help="the flow to add to (default: Banatie starts one); 'none': no flow"
        ),
        "alias": _Alias("alias", help="project alias for the output image, e.g. @hero"),
        "flow_alias": _Alias("flow_alias", help="flow alias for the output image (needs a flow)"),
        "auto_enhance": ParamSpec(
            "auto_enhance", type=bool, help="let Banatie enhance the prompt (default true)"
        ),
        "template": _Choice(
            "template", choices=TEMPLATES, help="enhancement template (default general)"
        ),
        "meta": _Meta("meta", help="your own metadata (a dict)"),
        "scope": _Scope("scope", help="live only: the live scope (default 'default')"),
        "org": ParamSpec("org", help="live only: organisation slug (default: from /api/info)"),
        "project": ParamSpec("project", help="live only: project slug (default: from /api/info)"),
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cdn_base = self._cdn_base()
        self._buckets = {"api": _Bucket(), "live": _Bucket()}
        self._live_seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._live_bytes: dict[str, bytes] = {}
        self._slugs: tuple[str, str] | None = None

    def _cdn_base(self) -> str:
        override = os.environ.get("BANATIE_CDN_URL", "").strip()
        if override:
            return override.rstrip("/")
        if self.sandbox and self.base_url.endswith(self.sandbox_prefix):
            return self.base_url[: -len(self.sandbox_prefix)] + SANDBOX_CDN_PREFIX
        if self.base_url == self.default_base_url:
            return DEFAULT_CDN
        return self.base_url + "/cdn"

    def auth_headers(self) -> dict[str, str]:
        return {"X-API-Key": self._api_key} if self._api_key else {}

    # --------------------------------------------------------------- validation
    def validate(self, kind: str, prompt: str, params: Mapping[str, Any]) -> dict[str, Any]:
        allowed = self._kind_params(_KIND_PARAMS, kind)
        clean = super().validate(kind, prompt, params)
        extra = sorted(set(clean) - allowed)
        if extra:
            raise InvalidRequest(
                f"Banatie {kind} jobs take no {', '.join(extra)}; they take: "
                f"{', '.join(sorted(allowed))}",
                provider=self.name,
            )
        if clean.get("flow_alias") and clean.get("flow_id") == NO_FLOW:
            raise InvalidRequest(
                "flow_alias needs a flow: give flow_id, or leave it out for a new flow",
                provider=self.name,
            )
        return clean

    def job_kind(self, kind: str) -> str:
        return _JOB_KIND.get(kind, kind)

    # --------------------------------------------------------------- errors
    def error_message(self, response: httpx.Response, body: Any) -> str:
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
            message = str(error.get("message") or response.reason_phrase)
            code = error.get("code")
            return f"{message} ({code})" if code else message
        return super().error_message(response, body)

    def classify_error(self, response: httpx.Response, message: str) -> type[ProviderError] | None:
        code = _error_code(response)
        if code is None:
            return None
        if code == "UNAUTHORIZED":
            return AuthenticationError
        if code == "FORBIDDEN":
            return PermissionDenied
        if code == "RATE_LIMIT_EXCEEDED":
            return RateLimited
        if code == "INTERNAL_ERROR":
            return ServiceUnavailable
        if code.endswith("_NOT_FOUND"):
            return NotFound
        if code in ("VALIDATION_ERROR", "ALIAS_CONFLICT") or code.startswith(("SCOPE_", "IMAGE_")):
            return InvalidRequest
        return None

    def _raise_for_response(self, response: httpx.Response) -> None:
        self._note_limits(response)
        super()._raise_for_response(response)

    # --------------------------------------------------------------- pacing
    def _bucket_name(self, url: httpx.URL | str) -> str | None:
        text = str(url)
        if text.startswith(self.base_url + "/api/v1/"):
            return "api"
        if text.startswith(self.cdn_base + "/") and "/live/" in httpx.URL(text).path:
            return "live"
        return None

    def _note_limits(self, response: httpx.Response) -> None:
        """Remember what ``response`` announced about its bucket's limit."""
        name = self._bucket_name(response.request.url)
        if name is None:
            return
        bucket = self._buckets[name]
        now = time.time()
        headers = response.headers
        remaining = _header_number(headers.get("x-ratelimit-remaining"))
        reset = _header_number(headers.get("x-ratelimit-reset"))
        if response.status_code == 429:
            wait = retry_after(response)
            bucket.remaining = 0
            if reset is not None:
                bucket.reset = _reset_time(reset, now)
            elif wait is not None:
                bucket.reset = now + wait
            return
        if remaining is None or reset is None:
            return
        limit = _header_number(headers.get("x-ratelimit-limit"))
        reset_at = _reset_time(reset, now)
        if bucket.reset == reset_at and bucket.remaining is not None:
            bucket.remaining = min(bucket.remaining, int(remaining))
        else:
            bucket.remaining = int(remaining)
            bucket.reset = reset_at
        bucket.limit = int(limit) if limit is not None else bucket.limit

    async def _pace(self, name: str, live_key: str | None = None) -> None:
        """Wait until the server's announced limit lets one more request of bucket ``name``."""
        bucket = self._buckets[name]
        while True:
            if bucket.remaining is None or bucket.remaining > 0 or bucket.reset is None:
                break
            if live_key is not None and live_key in self._live_seen:
                return  # a cache HIT is free
            wait = bucket.reset - time.time()
            if wait <= 0:  # a new window: its size is known, its reset is not (yet)
                bucket.remaining, bucket.reset = bucket.limit, None
                break
            what = "new live generations" if name == "live" else "requests"
            if wait > self.max_rate_wait:
                raise RateLimited(
                    f"Banatie's limit of {bucket.limit or 'its'} {what} per window is used up; "
                    f"it resets in {wait:.0f} s",
                    provider=self.name,
                    retry_after=wait,
                )
            if bucket.announced != bucket.reset:
                bucket.announced = bucket.reset
                logger.info(
                    "Banatie: no %s left of %s this window; waiting %.1f s for the reset",
                    what, bucket.limit if bucket.limit is not None else "the limit", wait,
                )
            await asyncio.sleep(wait)
        if bucket.remaining is not None and (live_key is None or live_key not in self._live_seen):
            bucket.remaining -= 1

    async def _send(
        self, method: str, url: str, *, authorized: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """One request, paced by the limits the server announced (see the module docstring)."""
        live_key = kwargs.pop("live_key", None)
        full = url if url.startswith(("http://", "https://")) else self.base_url + url
        name = self._bucket_name(full)
        if name is not None:
            await self._pace(name, live_key)
        response = await super()._send(method, full, authorized=authorized, **kwargs)
        self._note_limits(response)
        return response

    # --------------------------------------------------------------- envelope
    def _data(self, response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            raise ProviderError(
                f"Banatie answered {response.status_code} with a body that is not JSON",
                provider=self.name,
            ) from None
        if isinstance(body, dict) and body.get("success") is False:
            raise ProviderError(
                f"Banatie refused the request: {self.error_message(response, body)}",
                provider=self.name,
            )
        return body.get("data", body) if isinstance(body, dict) else body

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._data(await self._send(method, path, **kwargs))

    async def _page(self, path: str, query: Mapping[str, Any]) -> Page:
        response = await self._send("GET", path, params=dict(query))
        body = response.json()
        items = body.get("data") if isinstance(body, dict) else body
        return Page(list(items or []), body.get("pagination") if isinstance(body, dict) else None)

    # --------------------------------------------------------------- actions
    def actions(self, job: Job) -> tuple[str, ...]:
        if job.status is Status.SUCCEEDED and job.kind in ("generation", "regenerate"):
            return (REGENERATE,)
        return ()

    def child(self, job: Job, label: str, **kwargs: Any) -> ChildSpec:
        if label != REGENERATE:
            raise InvalidRequest(f"Banatie has no action {label!r}; it has: {REGENERATE}")
        prompt = new_prompt(kwargs)
        aspect = kwargs.pop("aspect_ratio", None)
        extra = sorted(k for k, v in kwargs.items() if v is not None)
        if extra:
            raise InvalidRequest(f"{REGENERATE} takes prompt= and aspect_ratio=, not {extra}")
        if not job.remote_id:
            raise InvalidRequest(f"job {job.id} has no Banatie generation id yet")
        generation_id = _generation_id(job)
        current = job.params.get("aspect_ratio") or job.extras.get("aspect_ratio")
        if aspect is not None:
            aspect = self.params["aspect_ratio"].coerce(aspect, self.name)
        text = prompt.strip() if prompt else job.prompt
        changed = text != job.prompt or (aspect is not None and aspect != (current or "1:1"))
        params: dict[str, Any] = {
            "generation_id": generation_id,
            "method": "update" if changed else "regenerate",
        }
        if aspect or current:
            params["aspect_ratio"] = aspect or current
        return ChildSpec("regenerate", text, params)

    # --------------------------------------------------------------- jobs
    async def submit(self, job: Job, parent: Job | None) -> Submission:
        if job.kind == "live":
            return await self._submit_live(job)
        if job.kind == "regenerate":
            gen_id = job.params.get("generation_id") or (
                _generation_id(parent) if parent and parent.remote_id else None
            )
            if not gen_id:
                raise InvalidRequest("a regenerate job needs its parent's generation id")
            submission = self._submission(await self._regenerate(str(gen_id), job))
            # the history keeps one job per remote id, and this re-runs the parent's generation
            submission.remote_id = f"{gen_id}#{job.id}"
            return submission
        if job.kind != "generation":
            raise InvalidRequest(f"Banatie cannot start a {job.kind!r} job")
        params = job.params
        body: dict[str, Any] = {"prompt": job.prompt}
        if params.get("aspect_ratio"):
            body["aspectRatio"] = params["aspect_ratio"]
        if params.get("reference_images"):
            body["referenceImages"] = list(params["reference_images"])
        if params.get("flow_id") == NO_FLOW:
            body["flowId"] = None
        elif params.get("flow_id"):
            body["flowId"] = params["flow_id"]
        if params.get("alias"):
            body["alias"] = params["alias"]
        if params.get("flow_alias"):
            body["flowAlias"] = params["flow_alias"]
        if params.get("auto_enhance") is not None:
            body["autoEnhance"] = bool(params["auto_enhance"])
        if params.get("template"):
            body["enhancementOptions"] = {"template": params["template"]}
        if params.get("meta"):
            body["meta"] = params["meta"]
        data = await self._json("POST", "/api/v1/generations", json=body)
        return self._submission(data)

    def _submission(self, data: Any) -> Submission:
        if not isinstance(data, dict) or not data.get("id"):
            raise ProviderError(
                f"Banatie accepted the request but returned no generation id: {str(data)[:120]}",
                provider=self.name,
            )
        return Submission(remote_id=str(data["id"]), raw=data, update=self.parse(data))

    async def _regenerate(self, gen_id: str, job: Job) -> Any:
        path = f"/api/v1/generations/{_part(gen_id)}"
        if job.params.get("method") == "update":
            body: dict[str, Any] = {"prompt": job.prompt}
            if job.params.get("aspect_ratio"):
                body["aspectRatio"] = job.params["aspect_ratio"]
            return await self._json("PUT", path, json=body)
        try:
            return await self._json("POST", path + "/regenerate", json={})
        except NotFound as exc:
            if "GENERATION_NOT_FOUND" in exc.message:
                raise
            # an older server without /regenerate: nothing was done, so /retry is safe
            logger.info("Banatie has no /regenerate route here; using the older /retry")
            return await self._json("POST", path + "/retry", json={})

    async def poll(self, job: Job) -> Update:
        if job.kind == "live":
            return (await self._submit_live(job)).update or Update(Status.RUNNING)
        gen_id = _generation_id(job)
        data = await self._json("GET", f"/api/v1/generations/{_part(gen_id)}")
        return self.parse(data)

    def parse(self, data: Mapping[str, Any]) -> Update:
        """The :class:`Update` for a generation object."""
        data = dict(data)
        status = self.map_status(data.get("status"))
        update = Update(status=status, raw=data)
        extras: dict[str, Any] = {"generation_id": data.get("id")}
        for key, wire in (("flow_id", "flowId"), ("aspect_ratio", "aspectRatio"),
                          ("image_id", "outputImageId")):
            if data.get(wire) is not None:
                extras[key] = data[wire]
        if data.get("originalPrompt"):
            extras["enhanced_prompt"] = data.get("prompt")
        if data.get("processingTimeMs") is not None:
            extras["processing_ms"] = data["processingTimeMs"]
        update.extras = extras
        if status is Status.QUEUED:
            update.progress = 0.0
        elif status is Status.SUCCEEDED:
            update.progress = 100.0
            output = data.get("outputImage")
            if isinstance(output, dict) and output.get("storageUrl"):
                update.images = [Image(url=output["storageUrl"], width=output.get("width"),
                                       height=output.get("height"))]
                extras["image_id"] = output.get("id") or extras.get("image_id")
            else:
                update.images = []
                update.error = _NO_OUTPUT_IMAGE
        elif status is Status.FAILED:
            update.error = str(data.get("errorMessage") or data.get("error")
                               or "Banatie reported the generation as failed without a reason")
            lowered = update.error.lower()
            if any(w in lowered for w in ("safety", "blocked", "moderat")):
                update.error_type = "ModeratedPrompt"
        return update

    # --------------------------------------------------------------- live
    async def _project_slugs(self, params: Mapping[str, Any]) -> tuple[str, str]:
        if params.get("org") and params.get("project"):
            return str(params["org"]), str(params["project"])
        if self._slugs is None:
            self._slugs = await self._discover_slugs()
        org, project = self._slugs
        return str(params.get("org") or org), str(params.get("project") or project)

    async def _discover_slugs(self) -> tuple[str, str]:
        info = self._data(await self._send("GET", "/api/info"))
        key = info.get("keyInfo") if isinstance(info, dict) else None
        if isinstance(key, dict) and key.get("organizationSlug") and key.get("projectSlug"):
            return str(key["organizationSlug"]), str(key["projectSlug"])
        page = await self._page("/api/v1/images", {"limit": 1})
        for image in page:
            parts = httpx.URL(str(image.get("storageUrl") or "")).path.strip("/").split("/")
            if len(parts) >= 4 and parts[-2] == "img":
                return parts[-4], parts[-3]
        raise ConfigurationError(
            "cannot tell your Banatie organisation and project slugs; pass org= and project= "
            "(the two path parts after cdn.banatie.app/ in your image URLs)"
        )

    async def live_url(
        self,
        prompt: str,
        *,
        aspect_ratio: str | None = None,
        auto_enhance: bool | None = None,
        template: str | None = None,
        scope: str = "default",
        org: str | None = None,
        project: str | None = None,
    ) -> str:
        """The public live URL for ``prompt`` (put it in an ``<img src>``; nothing is sent).

        Defaults: the server's (aspect ratio 1:1, auto-enhance on, template general), scope
        ``default``, org/project from ``/api/info``.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequest("the prompt is empty; give Banatie something to draw")
        params = self.validate("live", prompt, {
            "aspect_ratio": aspect_ratio, "auto_enhance": auto_enhance, "template": template,
            "scope": scope, "org": org, "project": project,
        })
        return await self._live_url(prompt, params)

    async def _live_url(self, prompt: str, params: Mapping[str, Any]) -> str:
        org, project = await self._project_slugs(params)
        query: dict[str, str] = {"prompt": prompt}
        if params.get("aspect_ratio"):
            query["aspectRatio"] = str(params["aspect_ratio"])
        if params.get("auto_enhance") is not None:
            query["autoEnhance"] = "true" if params["auto_enhance"] else "false"
        if params.get("template"):
            query["template"] = str(params["template"])
        scope = params.get("scope") or "default"
        return (f"{self.cdn_base}/{_part(org)}/{_part(project)}/live/"
                f"{quote(str(scope), safe='')}?{urlencode(query)}")

    async def _submit_live(self, job: Job) -> Submission:
        url = await self._live_url(job.prompt, job.params)
        response = await self._send("GET", url, authorized=False, live_key=url)
        self._live_seen[url] = None
        while len(self._live_seen) > 4096:
            self._live_seen.popitem(last=False)
        self._live_bytes[url] = response.content
        while len(self._live_bytes) > 16:
            self._live_bytes.pop(next(iter(self._live_bytes)))
        headers = response.headers
        # a MISS created a generation (the id remote history pulls see); a HIT only read the
        # cache, and the history keeps one job per remote id
        remote_id = headers.get("x-generation-id") or (
            f"{headers.get('x-image-id') or 'live'}#{job.id}"
        )
        raw = {
            "url": url,
            "cacheStatus": headers.get("x-cache-status"),
            "imageId": headers.get("x-image-id"),
            "generationId": headers.get("x-generation-id"),
            "contentType": headers.get("content-type"),
        }
        extras = {
            "live_url": url,
            "cache_status": headers.get("x-cache-status"),
            "image_id": headers.get("x-image-id"),
        }
        if headers.get("x-generation-id"):
            extras["generation_id"] = headers["x-generation-id"]
        update = Update(status=Status.SUCCEEDED, progress=100.0, images=[Image(url=url)],
                        extras=extras, raw=raw)
        return Submission(remote_id=remote_id, raw=raw, update=update)

    async def download(self, url: str) -> bytes:
        """The bytes behind ``url``; a live job's bytes come from its own answer."""
        cached = self._live_bytes.pop(url, None)
        if cached is not None:
            return cached
        live = self._bucket_name(url) == "live"
        response = await self._send("GET", url, authorized=False, live_key=url if live else None)
        return response.content

    # --------------------------------------------------------------- history
    async def remote_history(self, *, since: Any = None) -> AsyncIterator[list[RemoteJob]]:
        """Pages of the project's generations, newest first, until ``hasMore`` is false (or
        older than ``since``, a datetime)."""
        offset = 0
        cutoff = since if isinstance(since, datetime) else None
        if cutoff is not None and cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=timezone.utc)
        while True:
            page = await self._page(
                "/api/v1/generations", {"limit": self.history_page_size, "offset": offset}
            )
            jobs = []
            older = False
            for item in page:
                created = parse_when(item.get("createdAt"))
                if cutoff is not None and created is not None and created < cutoff:
                    older = True
                    continue
                jobs.append(self._remote_job(item, created))
            if jobs:
                yield jobs
            if not page.has_more or not page or older:
                return
            offset += len(page)

    def _remote_job(self, item: Mapping[str, Any], created: datetime | None) -> RemoteJob:
        params: dict[str, Any] = {}
        if item.get("aspectRatio"):
            params["aspect_ratio"] = item["aspectRatio"]
        if item.get("flowId"):
            params["flow_id"] = item["flowId"]
        if item.get("autoEnhance") is not None:
            params["auto_enhance"] = bool(item["autoEnhance"])
        return RemoteJob(
            remote_id=str(item.get("id")),
            kind="generation",
            prompt=str(item.get("originalPrompt") or item.get("prompt") or ""),
            update=self.parse(item),
            params=params,
            created_at=created,
        )

    # --------------------------------------------------------------- generations
    @idempotent
    async def generations(self, **filters: Any) -> Page:
        """``GET /api/v1/generations``: filters ``flow_id``, ``status`` (pending, processing,
        success, failed), ``limit`` (server default 20, max 100), ``offset`` (0),
        ``include_deleted`` (False)."""
        names = {"flow_id": "flowId", "status": "status", "limit": "limit", "offset": "offset",
                 "include_deleted": "includeDeleted"}
        return await self._page("/api/v1/generations", _snake(filters, names))

    @idempotent
    async def generation(self, generation_id: str) -> dict[str, Any]:
        """``GET /api/v1/generations/{id}``: one generation object."""
        return await self._json("GET", f"/api/v1/generations/{_part(generation_id)}")

    async def update_generation(
        self,
        generation_id: str,
        *,
        prompt: str | None = None,
        aspect_ratio: str | None = None,
        flow_id: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``PUT /api/v1/generations/{id}``; a new prompt or aspect ratio regenerates it (same
        image id and URL). ``flow_id="none"`` detaches it from its flow; ``None`` fields are
        left as they are."""
        body: dict[str, Any] = {}
        if prompt is not None:
            body["prompt"] = prompt
        if aspect_ratio is not None:
            body["aspectRatio"] = self.params["aspect_ratio"].coerce(aspect_ratio, self.name)
        if flow_id is not None:
            coerced = self.params["flow_id"].coerce(flow_id, self.name)
            body["flowId"] = None if coerced == NO_FLOW else coerced
        if meta is not None:
            body["meta"] = self.params["meta"].coerce(meta, self.name)
        return await self._json(
            "PUT", f"/api/v1/generations/{_part(generation_id)}", json=body
        )

    async def regenerate_generation(self, generation_id: str) -> dict[str, Any]:
        """``POST /api/v1/generations/{id}/regenerate``: the same parameters, a new image."""
        return await self._json(
            "POST", f"/api/v1/generations/{_part(generation_id)}/regenerate", json={}
        )

    async def delete_generation(self, generation_id: str) -> dict[str, Any]:
        """``DELETE /api/v1/generations/{id}`` (its output image too, unless it has an alias)."""
        return await self._json("DELETE", f"/api/v1/generations/{_part(generation_id)}")

    # --------------------------------------------------------------- flows
    @idempotent
    async def flows(self, *, limit: int | None = None, offset: int | None = None) -> Page:
        """``GET /api/v1/flows`` (server defaults: limit 20, offset 0)."""
        return await self._page("/api/v1/flows", _window(limit, offset))

    @idempotent
    async def flow(self, flow_id: str) -> dict[str, Any]:
        """``GET /api/v1/flows/{id}``: aliases, generation and image counts."""
        return await self._json("GET", f"/api/v1/flows/{_part(flow_id)}")

    async def create_flow(self, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """``POST /api/v1/flows`` (flows are also created implicitly by generations)."""
        body = {"meta": self.params["meta"].coerce(meta, self.name)} if meta else {}
        return await self._json("POST", "/api/v1/flows", json=body)

    @idempotent
    async def flow_generations(
        self, flow_id: str, *, limit: int | None = None, offset: int | None = None
    ) -> Page:
        """``GET /api/v1/flows/{id}/generations``."""
        return await self._flow_page(flow_id, "generations", limit, offset)

    @idempotent
    async def flow_images(
        self, flow_id: str, *, limit: int | None = None, offset: int | None = None
    ) -> Page:
        """``GET /api/v1/flows/{id}/images`` (generated and uploaded)."""
        return await self._flow_page(flow_id, "images", limit, offset)

    async def _flow_page(
        self, flow_id: str, what: str, limit: int | None, offset: int | None
    ) -> Page:
        path = f"/api/v1/flows/{_part(flow_id)}/{what}"
        return await self._page(path, _window(limit, offset))

    async def set_flow_aliases(self, flow_id: str, aliases: Mapping[str, str]) -> dict[str, Any]:
        """``PUT /api/v1/flows/{id}/aliases``: merge ``{"@alias": image_id}`` into the flow's."""
        for alias in aliases:
            _check_alias(alias, "flow alias", self.name)
        return await self._json("PUT", f"/api/v1/flows/{_part(flow_id)}/aliases",
                                json={"aliases": dict(aliases)})

    async def delete_flow_alias(self, flow_id: str, alias: str) -> dict[str, Any]:
        """``DELETE /api/v1/flows/{id}/aliases/{alias}``."""
        _check_alias(alias, "flow alias", self.name)
        return await self._json(
            "DELETE", f"/api/v1/flows/{_part(flow_id)}/aliases/{_part(alias, '@')}"
        )

    async def regenerate_flow(self, flow_id: str) -> dict[str, Any]:
        """``POST /api/v1/flows/{id}/regenerate``: regenerate the flow's newest generation."""
        return await self._json("POST", f"/api/v1/flows/{_part(flow_id)}/regenerate",
                                json={})

    async def delete_flow(self, flow_id: str) -> dict[str, Any]:
        """``DELETE /api/v1/flows/{id}``: its generations and un-aliased images go too."""
        return await self._json("DELETE", f"/api/v1/flows/{_part(flow_id)}")

    # --------------------------------------------------------------- images
    async def upload_image(
        self,
        data_or_path: Any,
        *,
        alias: str | None = None,
        flow_id: str | None = None,
        flow_alias: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /api/v1/images/upload`` (multipart): bytes, a path or a PIL image (PNG, JPEG or
        WebP, ≤ 5 MB). ``alias`` takes the project alias over from any other image;
        ``flow_id`` defaults to a new flow (``"none"``: no flow)."""
        raw, filename, mime = _image_payload(data_or_path)
        form: dict[str, str] = {}
        if alias is not None:
            form["alias"] = _check_alias(alias, "alias", self.name)
        if flow_alias is not None:
            form["flowAlias"] = _check_alias(flow_alias, "flow_alias", self.name)
        if flow_id is not None:
            coerced = self.params["flow_id"].coerce(flow_id, self.name)
            form["flowId"] = "null" if coerced == NO_FLOW else coerced
        if meta is not None:
            form["meta"] = json.dumps(self.params["meta"].coerce(meta, self.name))
        return await self._json("POST", "/api/v1/images/upload", data=form,
                                files={"file": (filename, raw, mime)})

    @idempotent
    async def images(self, **filters: Any) -> Page:
        """``GET /api/v1/images``: filters ``flow_id``, ``source`` (generated, uploaded),
        ``alias`` (exact), ``limit`` (20), ``offset`` (0)."""
        names = {"flow_id": "flowId", "source": "source", "alias": "alias", "limit": "limit",
                 "offset": "offset"}
        return await self._page("/api/v1/images", _snake(filters, names))

    @idempotent
    async def image(self, id_or_alias: str, flow_id: str | None = None) -> dict[str, Any]:
        """``GET /api/v1/images/{id|@alias}``; an alias resolves technical → ``flow_id``'s →
        project (default ``flow_id=None``: technical aliases over the whole project)."""
        query = {"flowId": flow_id} if flow_id else {}
        return await self._json("GET", f"/api/v1/images/{_part(id_or_alias, '@')}",
                                params=query)

    @idempotent
    async def resolve_alias(self, alias: str, flow_id: str | None = None) -> dict[str, Any]:
        """``GET /api/v1/images/resolve/{@alias}``: ``{alias, imageId, scope, image}`` where
        scope says which rule matched (technical, flow, project)."""
        _check_alias(alias, "alias", self.name, technical=True)
        query = {"flowId": flow_id} if flow_id else {}
        return await self._json("GET", f"/api/v1/images/resolve/{_part(alias, '@')}",
                                params=query)

    async def update_image(
        self,
        image_id: str,
        *,
        focal_point: Any = None,
        meta: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``PUT /api/v1/images/{id}``: ``focal_point`` as ``(x, y)`` or ``{"x", "y"}`` in 0–1,
        ``meta`` a dict (``None``: unchanged)."""
        body: dict[str, Any] = {}
        if focal_point is not None:
            if isinstance(focal_point, Mapping):
                point = {"x": focal_point.get("x"), "y": focal_point.get("y")}
            else:
                try:
                    x, y = focal_point
                except (TypeError, ValueError):
                    raise InvalidRequest("focal_point must be (x, y) with numbers 0–1") from None
                point = {"x": x, "y": y}
            body["focalPoint"] = point
        if meta is not None:
            body["meta"] = self.params["meta"].coerce(meta, self.name)
        return await self._json("PUT", f"/api/v1/images/{_part(image_id, '@')}", json=body)

    async def set_alias(self, image_id: str, alias: str | None) -> dict[str, Any]:
        """``PUT /api/v1/images/{id}/alias``: assign ``alias`` (409 ``ALIAS_CONFLICT`` →
        :class:`InvalidRequest` when another image holds it), or remove it with ``None``."""
        if alias is not None:
            _check_alias(alias, "alias", self.name)
        return await self._json("PUT", f"/api/v1/images/{_part(image_id)}/alias",
                                json={"alias": alias})

    async def delete_image(self, image_id: str) -> dict[str, Any]:
        """``DELETE /api/v1/images/{id}`` (hard delete; aliases and references to it go)."""
        return await self._json("DELETE", f"/api/v1/images/{_part(image_id)}")

    async def cdn_url(self, id_or_alias: str) -> str:
        """The public CDN URL of an image id or project ``@alias``."""
        org, project = await self._project_slugs({})
        return f"{self.cdn_base}/{org}/{project}/img/{_part(id_or_alias, '@')}"

    # --------------------------------------------------------------- live scopes
    @idempotent
    async def live_scopes(
        self, *, slug: str | None = None, limit: int | None = None, offset: int | None = None
    ) -> Page:
        """``GET /api/v1/live/scopes`` (filters: exact ``slug``, ``limit`` 20, ``offset`` 0)."""
        return await self._page("/api/v1/live/scopes", _snake(
            {"slug": slug, "limit": limit, "offset": offset},
            {"slug": "slug", "limit": "limit", "offset": "offset"}))

    @idempotent
    async def live_scope(self, slug: str) -> dict[str, Any]:
        """``GET /api/v1/live/scopes/{slug}``."""
        return await self._json("GET", f"/api/v1/live/scopes/{_part(slug)}")

    async def create_live_scope(
        self,
        slug: str,
        *,
        allow_new_generations: bool | None = None,
        new_generations_limit: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /api/v1/live/scopes`` (server defaults: new generations allowed, limit 30)."""
        body = _scope_body(allow_new_generations, new_generations_limit, meta)
        body["slug"] = slug
        return await self._json("POST", "/api/v1/live/scopes", json=body)

    async def update_live_scope(
        self,
        slug: str,
        *,
        allow_new_generations: bool | None = None,
        new_generations_limit: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``PUT /api/v1/live/scopes/{slug}`` (``None`` fields unchanged)."""
        body = _scope_body(allow_new_generations, new_generations_limit, meta)
        return await self._json("PUT", f"/api/v1/live/scopes/{_part(slug)}", json=body)

    async def delete_live_scope(self, slug: str) -> dict[str, Any]:
        """``DELETE /api/v1/live/scopes/{slug}``."""
        return await self._json("DELETE", f"/api/v1/live/scopes/{_part(slug)}")

    async def regenerate_live_scope(
        self, slug: str, image_id: str | None = None
    ) -> dict[str, Any]:
        """``POST /api/v1/live/scopes/{slug}/regenerate``: one image of the scope (``image_id``)
        or all of them (default)."""
        body = {"imageId": image_id} if image_id else {}
        return await self._json(
            "POST", f"/api/v1/live/scopes/{_part(slug)}/regenerate", json=body
        )

    # --------------------------------------------------------------- spend
    @classmethod
    def price_item(cls, kind: str, params: Mapping[str, Any]) -> tuple[str, float] | None:
        """``imagine`` is a ``generation``; other kinds are priced by their name."""
        return (_JOB_KIND.get(kind, kind), 1.0)

    @idempotent
    async def balance(self) -> Balance | None:
        """The project key's requests left this window, its limit and reset, from the
        X-RateLimit-* headers: of the last answer when their window is still open, else of one
        ``GET /api/v1/generations?limit=1`` (which itself counts one request)."""
        bucket = self._buckets["api"]
        if bucket.remaining is None or bucket.reset is None or bucket.reset <= time.time():
            await self._send("GET", "/api/v1/generations", params={"limit": 1})
        if bucket.remaining is None:
            raise ProviderError(
                f"{self.label} announced no X-RateLimit-Remaining header, so there is no "
                "balance to read", provider=self.name,
            )
        reset = datetime.fromtimestamp(bucket.reset, timezone.utc) if bucket.reset else None
        limits = {"requests": float(bucket.limit)} if bucket.limit is not None else {}
        return Balance(self.name, {"requests": float(max(0, bucket.remaining))}, utcnow(),
                       limits=limits, resets_at=reset)

    # --------------------------------------------------------------- service
    @idempotent
    async def info(self) -> dict[str, Any]:
        """``GET /api/info``: name, version, limits and (with a key) ``keyInfo``."""
        return self._data(await self._send("GET", "/api/info"))

    @idempotent
    async def health(self) -> dict[str, Any]:
        """``GET /health`` (no key needed)."""
        return self._data(await self._send("GET", "/health", authorized=False))


def _scope_body(allow: bool | None, limit: int | None, meta: dict[str, Any] | None) -> dict:
    body: dict[str, Any] = {}
    if allow is not None:
        body["allowNewGenerations"] = bool(allow)
    if limit is not None:
        body["newGenerationsLimit"] = int(limit)
    if meta is not None:
        body["meta"] = meta
    return body


def _part(value: Any, safe: str = "") -> str:
    """``value`` quoted as one path segment (``safe``: characters kept as they are); an empty
    value, or one that is no text (``None`` from a job without that extra), is refused."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"Banatie needs an id, @alias or slug here, not {value!r}")
    return quote(value.strip(), safe=safe)


def _generation_id(job: Job) -> str:
    """The Banatie generation behind ``job`` (a regenerate child's remote id is
    ``<generation id>#<local id>``)."""
    return str(job.params.get("generation_id") or str(job.remote_id).split("#")[0])


def _error_code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return str(code) if code else None
