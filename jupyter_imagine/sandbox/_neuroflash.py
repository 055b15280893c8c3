"""The neuroflash image service emulated at ``{root}/neuroflash`` (its token endpoint, at
``{root}/neuroflash-id``, is :mod:`._neuroflash_id`; both share one :class:`Neuroflash`).

Same paths, fields and envelopes as ``https://app.neuroflash.com`` (``providers.md`` §4 and the
seed page), so our client and third-party clients run unchanged against it:

- ``GET  /api/workspace-service/v1/workspaces`` — the caller's workspaces.
- ``GET  /api/usage-service/v1/workspaces/{ws}/quotas[?usageTypeKey=images]``.
- ``GET  /api/image-service/v1/workspaces/{ws}/image-models`` — the model catalogue.
- ``GET  /api/image-service/v1/workspaces/{ws}/images`` — list (newest first);
  ``POST`` the same path uploads ``{"imageUrl": "<http(s) URL or data: URI>"}`` (201, one image).
- ``GET``/``DELETE /api/image-service/v1/workspaces/{ws}/images/{id}`` (DELETE: 204).
- ``GET  /api/image-service/v1/workspaces/{ws}/images/{id}/content`` — the bytes
  (``_links.content``; bearer-protected like every call above).
- ``POST /api/image-service/v1/workspaces/{ws}/image-generation-tasks``, ``image-edit-tasks``,
  ``image-upscale-tasks`` — answer **synchronously** ``{images, generationId, description,
  detail}`` (there is no task status to poll).

Lists are ``{"page": {"size", "totalElements", "totalPages", "currentPage"}, "data": [...]}``
with ``page`` (1-based [I]) and ``size`` (default 20, at most 200; anything else is 400).

Auth: ``Authorization: Bearer <access_token>`` from the token endpoint. Missing, unknown or
expired tokens get 401 with a ``WWW-Authenticate: Bearer error="invalid_token"`` header. Tokens
**expire on the sandbox clock** (``token_ttl`` simulated seconds, default 14399 like the real
service), so a test expires every token with ``state.clock.advance(token_ttl)``, or gets tokens
that are born expired with ``token_ttl = 0``. Clients (service accounts): the fixed sandbox pair
``jupyter-imagine-sandbox`` / ``sandbox-secret``; any other client id is registered with the
secret it first presents (so a test can bring its own fake credentials), and a later request with
another secret is refused. Ids or secrets in ``state.rejected_keys`` (default ``invalid-key``)
are always refused; with ``state.accepted_keys`` set, only those client ids are let in.

Everybody is a member of one workspace, :data:`WORKSPACE_ID`. Each client id is its own user
(``createdByUserId`` = :func:`user_id`). Three images made by **another user**
(:data:`OTHER_USER_ID`, prompt ``"a harbour at dawn"``) are seeded in the workspace, so a delete
of one is the documented 403; so is deleting an image made with another client id. Clients in
``admins`` may delete anything. Editing or upscaling another user's image is 403 too (the seed:
"the caller must own each image").

Error shape ([U] in ``providers.md``; chosen): RFC 9457 problem details, media type
``application/problem+json``::

    {"type": "about:blank", "title": "Not Found", "status": 404,
     "detail": "Image 1f0c… not found", "instance": "/api/image-service/…"}

Validation errors (400) add ``"errors": [{"field": …, "message": …}]``; the quota answer is
402 with ``type`` ``https://app.neuroflash.com/problems/quota-exceeded``; a banned prompt
(``state.banned_words``) is 400 with ``type`` ``…/problems/content-policy``; a rate-limited
request is 429 with ``type`` ``…/problems/rate-limit`` and ``Retry-After``.

Rate limits ([U]; chosen): every authenticated answer carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (seconds until the window resets). Windows
are fixed, per client id, on the **real** clock (they pace requests, not jobs): ``rate_limit``
requests (default 10000) per ``rate_window`` seconds (default 60). ``strict_rate_limit = True``
lowers the limit to ``strict_limit`` (default 5) so tests can provoke the 429.

Quotas: ``images`` (used by every generated, edited or upscaled image; uploads are free) and
``words`` (untouched). Defaults: 1000 a month, 100 a day. A request for more images than are
left makes what is left and says so in ``detail``
(``{"code": "PARTIAL_QUOTA", "message": …}``); with none left it is 402. The daily amount does
not reset in the sandbox (its clock has no midnight); set ``quota`` fields to test.

Models (``image-models``; size in pixels of the long side):

- ``nano-banana-2`` (fal.ai): text2image + image2image, ``maxImages`` 4, the ten documented
  aspect ratios, ``jpeg``/``png``/``webp``; 1024 px.
- ``seedream-4`` (ByteDance): text2image only, ``maxImages`` 2, ``1:1``/``16:9``/``9:16``/``4:3``/
  ``3:4``, ``jpeg``/``png``; 768 px.
- ``clarity-upscaler`` (fal.ai): ``capabilities: ["upscale"]``, ``upscaleFactors: [2, 4]`` [I],
  ``jpeg``/``png``/``webp``; the output's long side is at most 4096 px.
- ``gpt-image-1`` (OpenAI): ``allowed: false`` (not in the sandbox plan): using it is 403.

Pictures: generations are :func:`~._art.render` at the aspect ratio's size;
an edit is a :func:`~._art.vary` of the (first) input, cover-cropped to the
output size, blended with a render of the edit prompt (``aspectRatio: "auto"`` or none keeps
the input's size); an upscale is :func:`~._art.upscale` by the factor. Each is
encoded in the requested ``outputFormat`` (default ``png``; an upscale keeps its input's).
``long_side`` (default ``None``: each model's own) shrinks every generated or edited image, for
fast tests (upscales still multiply their input).

Control, for clients in another process: ``GET``/``POST {PREFIX}/_sandbox/settings`` reads or
sets ``token_ttl``, ``rate_limit``, ``rate_window``, ``strict_rate_limit``, ``strict_limit``,
``long_side`` and ``quota`` (a dict of the quota's fields); ``POST {PREFIX}/_sandbox/revoke``
invalidates every issued token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import math
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import imaging
from .._secrets import get_logger
from ..errors import InvalidRequest
from . import _art
from . import _http as http
from ._state import SandboxState, retry_headers

__all__ = [
    "NAME",
    "OTHER_USER_ID",
    "PREFIX",
    "SANDBOX_CLIENT_ID",
    "SANDBOX_CLIENT_SECRET",
    "WORKSPACE_ID",
    "Neuroflash",
    "build",
    "emulator",
    "fault_response",
    "problem",
    "user_id",
]

logger = get_logger(__name__)

NAME = "neuroflash"
PREFIX = "/neuroflash"

#: The service account the package's client uses in the sandbox.
SANDBOX_CLIENT_ID = "jupyter-imagine-sandbox"
SANDBOX_CLIENT_SECRET = "sandbox-secret"
#: The one workspace every sandbox client belongs to.
WORKSPACE_ID = "5b0f6c1e-7a53-4d2b-9e61-0c0ffee5a4d0"
WORKSPACE_NAME = "Sandbox workspace"
#: The user who made the seeded images (not any client: deleting them is 403).
OTHER_USER_ID = "284915730021004417"
SEEDED_PROMPT = "a harbour at dawn"

TOKEN_TTL = 14399
RATE_LIMIT = 10000
RATE_WINDOW = 60.0
STRICT_LIMIT = 5
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 20
MAX_UPLOAD_BYTES = 10 * 2**20
MAX_UPSCALE_SIDE = 4096
PROBLEMS = "https://app.neuroflash.com/problems/"

IMAGE_API = "/api/image-service/v1/workspaces/{ws}"
USAGE_API = "/api/usage-service/v1/workspaces/{ws}"
WORKSPACE_API = "/api/workspace-service/v1/workspaces"

_MEDIA = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_FORMAT_OF_PIL = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}
_DATA_URI = re.compile(r"^data:([\w/+.-]*)((?:;[\w=.+-]+)*);base64,(.*)$", re.IGNORECASE | re.S)
_CONTENT_PATH = re.compile(
    re.escape(PREFIX) + r"/api/image-service/v1/workspaces/([^/]+)/images/([^/]+)/content$"
)

_TEN_RATIOS = ["21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16"]

#: The catalogue ``image-models`` serves; ``longSide`` is the sandbox's own and not sent.
MODELS: list[dict[str, Any]] = [
    {
        "id": "nano-banana-2",
        "name": "Nano Banana 2",
        "provider": "fal.ai",
        "description": "Google's fast image model: text-to-image and prompt-driven edits.",
        "capabilities": ["text2image", "image2image"],
        "maxImages": 4,
        "aspectRatios": list(_TEN_RATIOS),
        "outputFormats": ["jpeg", "png", "webp"],
        "allowed": True,
        "order": 1,
        "longSide": 1024,
    },
    {
        "id": "seedream-4",
        "name": "Seedream 4",
        "provider": "ByteDance",
        "description": "Photorealistic text-to-image.",
        "capabilities": ["text2image"],
        "maxImages": 2,
        "aspectRatios": ["1:1", "16:9", "9:16", "4:3", "3:4"],
        "outputFormats": ["jpeg", "png"],
        "allowed": True,
        "order": 2,
        "longSide": 768,
    },
    {
        "id": "clarity-upscaler",
        "name": "Clarity Upscaler",
        "provider": "fal.ai",
        "description": "Detail-preserving 2x and 4x upscaling.",
        "capabilities": ["upscale"],
        "maxImages": 1,
        "aspectRatios": [],
        "outputFormats": ["jpeg", "png", "webp"],
        "upscaleFactors": [2, 4],
        "allowed": True,
        "order": 3,
        "longSide": MAX_UPSCALE_SIDE,
    },
    {
        "id": "gpt-image-1",
        "name": "GPT Image 1",
        "provider": "OpenAI",
        "description": "Not part of the sandbox plan.",
        "capabilities": ["text2image", "image2image"],
        "maxImages": 4,
        "aspectRatios": ["1:1", "3:2", "2:3"],
        "outputFormats": ["jpeg", "png", "webp"],
        "allowed": False,
        "order": 4,
        "longSide": 1024,
    },
]
_MODELS = {m["id"]: m for m in MODELS}


def user_id(client_id: str) -> str:
    """The gateway user id (``createdByUserId``) of a sandbox client: 18 stable digits."""
    digest = hashlib.sha256(f"neuroflash-user:{client_id}".encode()).hexdigest()
    return f"{int(digest[:15], 16) % 10**18:018d}"


def _derive(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big")


# ------------------------------------------------------------------------------ errors
class ApiError(http.ApiError):
    """An error answered as a problem document (``kind`` names its type, ``errors`` lists
    field errors)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, detail, headers=headers)
        self.kind = kind
        self.errors = errors

    def response(self, instance: str | None = None) -> Response:
        kind = self.kind or ("validation-error" if self.errors else None)
        return problem(
            self.status, self.message, kind=kind, instance=instance, errors=self.errors,
            headers=self.headers,
        )


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Quota Exceeded",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def problem(
    status: int,
    detail: str | None = None,
    *,
    kind: str | None = None,
    instance: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem-details answer (RFC 9457). ``kind`` names a ``PROBLEMS`` type, else about:blank."""
    body: dict[str, Any] = {
        "type": PROBLEMS + kind if kind else "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return JSONResponse(
        body, status_code=status, headers=headers or {}, media_type="application/problem+json"
    )


def fault_response(status: int, *, retry_after: float | None = None) -> Response:
    """The answer to an injected fault, as a problem document."""
    kind = "rate-limit" if status == 429 else "quota-exceeded" if status == 402 else None
    return problem(status, f"injected fault ({status})", kind=kind,
                   headers=retry_headers(status, retry_after))


# ------------------------------------------------------------------------------ records
@dataclass
class Token:
    """An issued access token: whose, and until when (simulated seconds)."""

    client_id: str
    expires_at: float


@dataclass
class Quota:
    """One usage type's quota of the workspace (fields named as on the wire)."""

    usageTypeKey: str
    limitAmount: int = 1000
    limitAmountDaily: int = 100
    usedAmount: int = 0
    usedAmountDaily: int = 0
    bonusAmount: int = 0
    spilloverAmount: int = 0
    dailyRefreshed: bool = False

    @property
    def available(self) -> int:
        monthly = self.limitAmount + self.bonusAmount + self.spilloverAmount - self.usedAmount
        return max(0, min(monthly, self.limitAmountDaily - self.usedAmountDaily))

    def use(self, amount: int) -> None:
        self.usedAmount += amount
        self.usedAmountDaily += amount

    def to_wire(self) -> dict[str, Any]:
        data = asdict(self)
        data["availableAmount"] = self.available
        data["fairUseLimitReached"] = self.available == 0
        return data


@dataclass
class NfImage:
    """One image of the workspace, as the sandbox keeps it.

    ``recipe`` says how its pixels are drawn (they are not kept, only re-drawn when evicted
    from the cache), except for uploads, whose bytes are ``data``.
    """

    id: str
    generation_id: str
    workspace_id: str
    created_by: str
    prompt: str
    model: str | None
    parameters: dict[str, Any]
    input_image_ids: list[str]
    width: int
    height: int
    fmt: str
    created: float
    recipe: tuple[Any, ...]
    size: int = 0
    data: bytes | None = field(default=None, repr=False)
    deleted: bool = False


@dataclass
class _Window:
    start: float
    count: int = 0


# ------------------------------------------------------------------------------ the emulator
Handler = Callable[[Request, str, dict[str, Any]], Awaitable[Response]]


class Neuroflash:
    """The neuroflash emulator of one sandbox (``state.providers["neuroflash"]``).

    Attributes (test knobs, all documented in the module docstring):
        token_ttl: seconds a new token lives on the sandbox clock (default 14399).
        rate_limit, rate_window: requests per window per client (default 10000 per 60 s).
        strict_rate_limit: when ``True`` the limit is ``strict_limit`` (default 5).
        long_side: pixels of the long side of every generated image (default ``None``: the
            model's own).
        clients: client id → secret; tokens: access token → :class:`Token`.
        images: image id → :class:`NfImage`, deleted ones included (``deleted=True``).
        quotas: usage type → :class:`Quota`.
        admins: client ids that may delete anyone's images (default none).
    """

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.token_ttl: float = TOKEN_TTL
        self.rate_limit: int = RATE_LIMIT
        self.rate_window: float = RATE_WINDOW
        self.strict_rate_limit: bool = False
        self.strict_limit: int = STRICT_LIMIT
        self.long_side: int | None = None
        self.clients: dict[str, str] = {SANDBOX_CLIENT_ID: SANDBOX_CLIENT_SECRET}
        self.tokens: dict[str, Token] = {}
        self.admins: set[str] = set()
        self.images: dict[str, NfImage] = {}
        self.quotas: dict[str, Quota] = {
            "images": Quota("images"),
            "words": Quota("words", 50000, 5000),
        }
        self.generations = 0
        self._windows: dict[str, _Window] = {}
        self._wall_start = datetime.now(timezone.utc).replace(microsecond=0)
        self._seed_images()

    # ----------------------------------------------------------------- time
    def now(self) -> float:
        return self.state.clock.now()

    def timestamp(self, sim: float) -> str:
        """The UTC timestamp of simulated time ``sim`` (the app's start is now)."""
        when = self._wall_start + timedelta(seconds=sim)
        return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    # ----------------------------------------------------------------- clients and tokens
    def check_client(self, client_id: str | None, secret: str | None) -> bool:
        """``True`` if the pair may get a token (see the module docstring's rules)."""
        if not client_id or not secret:
            return False
        rejected = self.state.rejected_keys
        if client_id in rejected or secret in rejected:
            return False
        accepted = self.state.accepted_keys
        if accepted is not None and client_id not in accepted:
            return False
        known = self.clients.get(client_id)
        if known is None:
            self.clients[client_id] = secret
            return True
        return hmac.compare_digest(known.encode(), secret.encode())

    def issue_token(self, client_id: str) -> tuple[str, int]:
        """A new access token for ``client_id`` and its ``expires_in``."""
        token = "nfat_" + secrets.token_urlsafe(32)
        ttl = max(0, int(self.token_ttl))
        self.tokens[token] = Token(client_id, self.now() + ttl)
        return token, ttl

    def revoke_tokens(self) -> None:
        """Invalidate every issued token (their next use is a 401)."""
        self.tokens.clear()

    def authenticate(self, request: Request) -> str:
        """The client id behind the request's bearer token; 401 ``ApiError`` otherwise."""
        token = http.bearer_key(request)
        if not token:
            raise ApiError(
                401,
                "Full authentication is required to access this resource",
                headers={"WWW-Authenticate": 'Bearer realm="neuroflash"'},
            )
        record = self.tokens.get(token)
        if record is None or self.now() >= record.expires_at:
            why = "The access token is invalid" if record is None else "The access token expired"
            raise ApiError(
                401,
                why,
                headers={
                    "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{why}"'
                },
            )
        return record.client_id

    # ----------------------------------------------------------------- rate limits
    def rate(self, client_id: str) -> tuple[dict[str, str], bool]:
        """Count one request of ``client_id``: its ``X-RateLimit-*`` headers and if it is over."""
        limit = self.strict_limit if self.strict_rate_limit else self.rate_limit
        real = time.monotonic()
        window = self._windows.get(client_id)
        if window is None or real - window.start >= self.rate_window:
            window = self._windows[client_id] = _Window(real)
        window.count += 1
        reset = max(1, math.ceil(self.rate_window - (real - window.start)))
        over = window.count > limit
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - window.count)),
            "X-RateLimit-Reset": str(reset),
        }
        if over:
            headers["Retry-After"] = str(reset)
        return headers, over

    # ----------------------------------------------------------------- images
    def _seed_images(self) -> None:
        generation = str(uuid.uuid5(uuid.NAMESPACE_URL, "neuroflash-sandbox-seeded-generation"))
        width, height = _art.aspect_size("3:2", 384)
        for i in range(3):
            image_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"neuroflash-sandbox-seeded-image-{i}"))
            self.images[image_id] = NfImage(
                id=image_id,
                generation_id=generation,
                workspace_id=WORKSPACE_ID,
                created_by=OTHER_USER_ID,
                prompt=SEEDED_PROMPT,
                model="nano-banana-2",
                parameters={"aspectRatio": "3:2", "outputFormat": "jpeg", "numImages": 3},
                input_image_ids=[],
                width=width,
                height=height,
                fmt="jpeg",
                created=-86400.0 + i,
                recipe=("render", _derive(self.state.seed, "seeded", i)),
            )

    def image(self, image_id: str, *, workspace: str) -> NfImage:
        record = self.images.get(image_id)
        if record is None or record.deleted or record.workspace_id != workspace:
            raise ApiError(404, f"Image {image_id} not found")
        return record

    def pixels(self, record: NfImage) -> Image.Image:
        """The image's pixels: drawn from its recipe (cached), or decoded from an upload."""
        key = (NAME, "pil", record.id)
        cached = self.state.images.get(key)
        if cached is not None:
            return cached
        kind = record.recipe[0]
        size = (record.width, record.height)
        if kind == "upload":
            assert record.data is not None
            with Image.open(io.BytesIO(record.data)) as im:
                picture = im.convert("RGB")
        elif kind == "render":
            picture = _art.render(record.prompt, record.recipe[1], size)
        elif kind == "edit":
            _, seed, strength = record.recipe
            picture = self._edit(record, seed, strength, size)
        elif kind == "upscale":
            _, source_id, factor = record.recipe
            picture = _art.upscale(self.pixels(self.images[source_id]), factor)
        else:  # pragma: no cover - every recipe is one of the above
            raise ValueError(f"unknown recipe {kind!r}")
        return self.state.images.put(key, picture)

    def _edit(
        self, record: NfImage, seed: int, strength: float, size: tuple[int, int]
    ) -> Image.Image:
        sources = [self.pixels(self.images[i]) for i in record.input_image_ids]
        base = ImageOps.fit(sources[0], size, Image.Resampling.LANCZOS)
        for extra in sources[1:]:
            base = Image.blend(base, ImageOps.fit(extra, size, Image.Resampling.LANCZOS), 0.25)
        varied = _art.vary(base, seed, strength)
        fresh = _art.render(record.prompt, seed, size)
        return Image.blend(varied, fresh, 0.3)

    def encoded(self, record: NfImage) -> bytes:
        """The image's file bytes in its format (cached)."""
        if record.data is not None:
            return record.data
        key = (NAME, "bytes", record.id)
        cached = self.state.images.get(key)
        if cached is not None:
            return cached
        picture = self.pixels(record)
        if record.fmt == "png":
            text = {
                "prompt": record.prompt,
                "image_id": record.id,
                "generation_id": record.generation_id,
                "Software": "jupyter_imagine sandbox (neuroflash)",
            }
            data = imaging.to_png(picture, text, compress_level=1)
        else:
            buf = io.BytesIO()
            options = {"quality": 90} if record.fmt == "jpeg" else {"quality": 85, "method": 0}
            picture.save(buf, format=_PIL_FORMAT[record.fmt], **options)
            data = buf.getvalue()
        return self.state.images.put(key, data)

    def view(self, record: NfImage, base: str) -> dict[str, Any]:
        """The image object the API answers for ``record``."""
        stamp = self.timestamp(record.created)
        path = IMAGE_API.format(ws=record.workspace_id) + f"/images/{record.id}/content"
        return {
            "id": record.id,
            "generationId": record.generation_id,
            "workspaceId": record.workspace_id,
            "createdByUserId": record.created_by,
            "prompt": record.prompt,
            "model": record.model,
            "parameters": dict(record.parameters),
            "inputImageIds": list(record.input_image_ids),
            "imageWidth": record.width,
            "imageHeight": record.height,
            "imageSize": record.size or len(self.encoded(record)),
            "createdAt": stamp,
            "updatedAt": stamp,
            "_links": {"content": base + path},
        }

    def base_url(self, request: Request) -> str:
        """Where this provider is reached from the client that sent ``request``."""
        return str(request.base_url).rstrip("/") + PREFIX

    # ----------------------------------------------------------------- checks
    def workspace(self, request: Request) -> str:
        ws = request.path_params["ws"]
        if ws != WORKSPACE_ID:
            raise ApiError(404, f"Workspace {ws} not found")
        return ws

    def model(self, body: dict[str, Any], capability: str, *, required: bool = False) -> dict:
        model_id = body.get("modelId")
        if model_id in (None, ""):
            if required:
                raise _invalid("modelId", "modelId is required")
            return next(
                m for m in sorted(MODELS, key=lambda m: m["order"])
                if capability in m["capabilities"] and m["allowed"]
            )
        if not isinstance(model_id, str) or model_id not in _MODELS:
            known = ", ".join(m["id"] for m in MODELS if capability in m["capabilities"])
            raise _invalid("modelId", f"Unknown model {model_id!r}; available: {known}")
        model = _MODELS[model_id]
        if capability not in model["capabilities"]:
            raise _invalid("modelId", f"Model {model_id} does not support {capability}")
        if not model["allowed"]:
            raise ApiError(403, f"Model {model_id} is not available in this workspace's plan")
        return model

    def check_prompt(self, body: dict[str, Any]) -> str:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise _invalid("prompt", "prompt is required")
        word = self.state.banned_word(prompt)
        if word is not None:
            raise ApiError(
                400, f"The prompt violates the content policy ('{word}')", kind="content-policy"
            )
        return prompt.strip()

    def owned(self, image_id: Any, client_id: str, ws: str, what: str) -> NfImage:
        if not isinstance(image_id, str) or not image_id:
            raise _invalid(what, f"{what} must be image ids")
        record = self.image(image_id, workspace=ws)
        if record.created_by != user_id(client_id):
            raise ApiError(403, f"Image {image_id} belongs to another user; only its creator "
                                "may use it")
        return record

    def take_quota(self, wanted: int) -> tuple[int, dict[str, Any] | None]:
        quota = self.quotas["images"]
        available = quota.available
        if available <= 0:
            raise ApiError(
                402,
                "The workspace's image quota is used up "
                f"({quota.usedAmountDaily} of {quota.limitAmountDaily} today, "
                f"{quota.usedAmount} of {quota.limitAmount} this month)",
                kind="quota-exceeded",
            )
        made = min(wanted, available)
        quota.use(made)
        detail = None
        if made < wanted:
            detail = {
                "code": "PARTIAL_QUOTA",
                "message": f"Only {made} of {wanted} requested images were generated: "
                "the image quota is used up",
            }
        return made, detail

    def side(self, model: dict[str, Any]) -> int:
        return int(self.long_side or model["longSide"])

    # ----------------------------------------------------------------- making images
    async def create(self, records: list[NfImage]) -> list[NfImage]:
        """Draw and encode ``records`` (in a thread), then add them to the workspace."""

        def draw() -> None:
            for record in records:
                record.size = len(self.encoded(record))

        await run_in_threadpool(draw)
        for record in records:
            self.images[record.id] = record
        return records

    async def measure(self, records: list[NfImage]) -> None:
        """Fill in ``size`` (bytes) of records not drawn yet (the seeded ones), in a thread."""
        todo = [r for r in records if not r.size]
        if todo:

            def draw() -> None:
                for record in todo:
                    record.size = len(self.encoded(record))

            await run_in_threadpool(draw)

    def new_record(
        self, client_id: str, ws: str, generation: str, **fields: Any
    ) -> NfImage:
        return NfImage(
            id=str(uuid.uuid4()),
            generation_id=generation,
            workspace_id=ws,
            created_by=user_id(client_id),
            created=self.now(),
            **fields,
        )

    def answer(
        self, request: Request, records: list[NfImage], generation: str, description: str,
        detail: Any,
    ) -> JSONResponse:
        base = self.base_url(request)
        return JSONResponse(
            {
                "images": [self.view(r, base) for r in records],
                "generationId": generation,
                "description": description,
                "detail": detail,
            }
        )

    # ----------------------------------------------------------------- endpoints
    async def workspaces(self, request: Request, client_id: str, body: dict) -> Response:
        items = [{"id": WORKSPACE_ID, "name": WORKSPACE_NAME, "role": "member"}]
        return JSONResponse(_paged(request, items))

    async def quotas_(self, request: Request, client_id: str, body: dict) -> Response:
        self.workspace(request)
        key = request.query_params.get("usageTypeKey")
        items = [q.to_wire() for k, q in self.quotas.items() if key in (None, "", k)]
        return JSONResponse(_paged(request, items))

    async def models(self, request: Request, client_id: str, body: dict) -> Response:
        self.workspace(request)
        items = [
            {k: (list(v) if isinstance(v, list) else v) for k, v in m.items() if k != "longSide"}
            for m in sorted(MODELS, key=lambda m: m["order"])
        ]
        return JSONResponse(_paged(request, items))

    async def list_images(self, request: Request, client_id: str, body: dict) -> Response:
        ws = self.workspace(request)
        base = self.base_url(request)
        records = sorted(
            (r for r in self.images.values() if not r.deleted and r.workspace_id == ws),
            key=lambda r: (r.created, r.id),
            reverse=True,
        )
        page = _paged(request, records)
        await self.measure(page["data"])
        page["data"] = [self.view(r, base) for r in page["data"]]
        return JSONResponse(page)

    async def get_image(self, request: Request, client_id: str, body: dict) -> Response:
        ws = self.workspace(request)
        record = self.image(request.path_params["image_id"], workspace=ws)
        await self.measure([record])
        return JSONResponse(self.view(record, self.base_url(request)))

    async def delete_image(self, request: Request, client_id: str, body: dict) -> Response:
        ws = self.workspace(request)
        record = self.image(request.path_params["image_id"], workspace=ws)
        if record.created_by != user_id(client_id) and client_id not in self.admins:
            raise ApiError(
                403,
                f"Only the creator of image {record.id} (createdByUserId) or a workspace "
                "admin may delete it",
            )
        record.deleted = True
        return Response(status_code=204)

    async def content(self, request: Request, client_id: str, body: dict) -> Response:
        ws = self.workspace(request)
        record = self.image(request.path_params["image_id"], workspace=ws)
        data = await run_in_threadpool(self.encoded, record)
        return Response(
            data,
            media_type=_MEDIA[record.fmt],
            headers={"Cache-Control": "private, max-age=3600"},
        )

    async def upload(self, request: Request, client_id: str, body: dict) -> Response:
        ws = self.workspace(request)
        url = body.get("imageUrl")
        if not isinstance(url, str) or not url.strip():
            raise _invalid("imageUrl", "imageUrl is required")
        data = await self.fetch_source(request, url.strip())
        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt = _FORMAT_OF_PIL.get(im.format or "")
                width, height = im.size
                if fmt is None:
                    buf = io.BytesIO()
                    im.convert("RGB").save(buf, format="PNG")
                    data, fmt = buf.getvalue(), "png"
        except (UnidentifiedImageError, OSError):
            raise _invalid("imageUrl", "imageUrl does not point to an image") from None
        record = self.new_record(
            client_id, ws, str(uuid.uuid4()),
            prompt="", model=None, parameters={"source": "upload"}, input_image_ids=[],
            width=width, height=height, fmt=fmt, recipe=("upload",), data=data, size=len(data),
        )
        self.images[record.id] = record
        return JSONResponse(self.view(record, self.base_url(request)), status_code=201)

    async def fetch_source(self, request: Request, url: str) -> bytes:
        match = _DATA_URI.match(url)
        if match:
            try:
                data = base64.b64decode(re.sub(r"\s+", "", match[3]), validate=True)
            except (binascii.Error, ValueError):
                raise _invalid("imageUrl", "imageUrl is not valid base64") from None
        elif re.match(r"^https?://", url, re.IGNORECASE):
            try:
                parsed = httpx.URL(url)
            except (httpx.InvalidURL, TypeError):
                raise _invalid("imageUrl", "imageUrl is not a valid URL") from None
            own = _CONTENT_PATH.search(parsed.path)
            if own is not None and own[1] in (WORKSPACE_ID,) and own[2] in self.images:
                record = self.images[own[2]]
                if not record.deleted:
                    return await run_in_threadpool(self.encoded, record)
            transport = self.state.webhook_transport(url, str(request.base_url))
            try:
                async with httpx.AsyncClient(
                    transport=transport, timeout=10, follow_redirects=True
                ) as client:
                    response = await client.get(url)
                response.raise_for_status()
            except httpx.HTTPError:
                raise _invalid("imageUrl", "could not download imageUrl") from None
            data = response.content
        else:
            raise _invalid("imageUrl", "imageUrl must be an http(s) URL or a data: URI")
        if len(data) > MAX_UPLOAD_BYTES:
            raise ApiError(413, f"The image is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
        return data

    async def generate(self, request: Request, client_id: str, body: dict) -> Response:
        ws = self.workspace(request)
        prompt = self.check_prompt(body)
        model = self.model(body, "text2image")
        count = _count(body, model)
        ratio = _choice(body, "aspectRatio", model["aspectRatios"], "1:1")
        fmt = _choice(body, "outputFormat", model["outputFormats"], "png")
        made, detail = self.take_quota(count)
        self.generations += 1
        generation = str(uuid.uuid4())
        size = _art.aspect_size(ratio, self.side(model))
        parameters = {"aspectRatio": ratio, "outputFormat": fmt, "numImages": count}
        records = [
            self.new_record(
                client_id, ws, generation, prompt=prompt, model=model["id"],
                parameters=dict(parameters), input_image_ids=[], width=size[0],
                height=size[1], fmt=fmt,
                recipe=("render", _derive(self.state.seed, prompt, self.generations, i)),
            )
            for i in range(made)
        ]
        await self.create(records)
        noun = "image" if made == 1 else "images"
        description = f"{made} {noun} of {prompt!r} by {model['name']}"
        return self.answer(request, records, generation, description, detail)

    async def edit(self, request: Request, client_id: str, body: dict) -> Response:
        ws = self.workspace(request)
        prompt = self.check_prompt(body)
        ids = body.get("imageIds")
        if not isinstance(ids, list) or not ids:
            raise _invalid("imageIds", "imageIds must be a non-empty list of image ids")
        sources = [self.owned(i, client_id, ws, "imageIds") for i in ids]
        model = self.model(body, "image2image")
        count = _count(body, model)
        ratio = _choice(body, "aspectRatio", [*model["aspectRatios"], "auto"], "auto")
        fmt = _choice(body, "outputFormat", model["outputFormats"], "png")
        made, detail = self.take_quota(count)
        self.generations += 1
        generation = str(uuid.uuid4())
        if ratio == "auto":
            size = (sources[0].width, sources[0].height)
        else:
            size = _art.aspect_size(ratio, self.side(model))
        parameters = {"aspectRatio": ratio, "outputFormat": fmt, "numImages": count}
        records = [
            self.new_record(
                client_id, ws, generation, prompt=prompt, model=model["id"],
                parameters=dict(parameters), input_image_ids=[s.id for s in sources],
                width=size[0], height=size[1], fmt=fmt,
                recipe=("edit", _derive(self.state.seed, "edit", prompt, self.generations, i),
                        0.35),
            )
            for i in range(made)
        ]
        await self.create(records)
        description = f"{prompt!r} applied to {len(sources)} image(s) by {model['name']}"
        return self.answer(request, records, generation, description, detail)

    async def upscale(self, request: Request, client_id: str, body: dict) -> Response:
        ws = self.workspace(request)
        source = self.owned(body.get("imageId"), client_id, ws, "imageId")
        model = self.model(body, "upscale", required=True)
        factor = body.get("upscaleFactor")
        allowed = model.get("upscaleFactors") or []
        if factor in (None, ""):
            raise _invalid("upscaleFactor", "upscaleFactor is required")
        if isinstance(factor, bool) or factor not in allowed:
            raise _invalid(
                "upscaleFactor",
                f"upscaleFactor must be one of {', '.join(map(str, allowed))} for {model['id']}",
            )
        fmt = _choice(body, "outputFormat", model["outputFormats"], source.fmt)
        width, height = source.width * factor, source.height * factor
        if max(width, height) > int(model["longSide"]):
            raise _invalid(
                "upscaleFactor",
                f"a {factor}x upscale of a {source.width}x{source.height} image exceeds "
                f"{model['longSide']} px",
            )
        _, detail = self.take_quota(1)
        generation = str(uuid.uuid4())
        record = self.new_record(
            client_id, ws, generation, prompt="", model=model["id"],
            parameters={"upscaleFactor": factor, "outputFormat": fmt},
            input_image_ids=[source.id], width=width, height=height, fmt=fmt,
            recipe=("upscale", source.id, factor),
        )
        await self.create([record])
        description = f"{factor}x upscale by {model['name']}"
        return self.answer(request, [record], generation, description, detail)

    # ----------------------------------------------------------------- sandbox control
    async def settings(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                spec = json.loads(await request.body() or b"{}")
                if not isinstance(spec, dict):
                    raise ValueError("the body must be a JSON object")
                for key in ("token_ttl", "rate_window"):
                    if key in spec:
                        setattr(self, key, float(spec[key]))
                for key in ("rate_limit", "strict_limit"):
                    if key in spec:
                        setattr(self, key, int(spec[key]))
                if "strict_rate_limit" in spec:
                    self.strict_rate_limit = bool(spec["strict_rate_limit"])
                if "long_side" in spec:
                    self.long_side = None if spec["long_side"] is None else int(spec["long_side"])
                for name, value in (spec.get("quota") or {}).items():
                    if name not in Quota.__dataclass_fields__ or name == "usageTypeKey":
                        raise ValueError(f"unknown quota field {name!r}")
                    setattr(self.quotas["images"], name, type(getattr(self.quotas["images"],
                                                                      name))(value))
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(
            {
                "token_ttl": self.token_ttl,
                "rate_limit": self.rate_limit,
                "rate_window": self.rate_window,
                "strict_rate_limit": self.strict_rate_limit,
                "strict_limit": self.strict_limit,
                "long_side": self.long_side,
                "quota": self.quotas["images"].to_wire(),
            }
        )

    async def revoke(self, request: Request) -> Response:
        self.revoke_tokens()
        return JSONResponse({"revoked": True})

    # ----------------------------------------------------------------- wiring
    def endpoint(self, handler: Handler, *, json_body: bool = False) -> Callable[..., Any]:
        """Wrap ``handler(request, client_id, body)`` with auth, rate limit and error shapes."""

        async def run(request: Request) -> Response:
            instance = request.url.path
            headers: dict[str, str] = {}
            try:
                client_id = self.authenticate(request)
                headers, over = self.rate(client_id)
                if over:
                    limit = headers["X-RateLimit-Limit"]
                    raise ApiError(
                        429,
                        f"Rate limit of {limit} requests per {self.rate_window:g} s exceeded; "
                        f"retry in {headers['Retry-After']} s",
                        kind="rate-limit",
                    )
                body = await _json_body(request) if json_body else {}
                response = await handler(request, client_id, body)
            except ApiError as exc:
                response = exc.response(instance)
            except Exception:
                logger.exception("sandbox neuroflash %s failed", instance)
                response = problem(500, "Unexpected error", instance=instance)
            response.headers.update(headers)
            return response

        run.__name__ = handler.__name__
        return run

    def routes(self) -> list[Route]:
        img = "/api/image-service/v1/workspaces/{ws}"
        e = self.endpoint
        return [
            Route(WORKSPACE_API, e(self.workspaces), methods=["GET"]),
            Route("/api/usage-service/v1/workspaces/{ws}/quotas", e(self.quotas_),
                  methods=["GET"]),
            Route(img + "/image-models", e(self.models), methods=["GET"]),
            Route(img + "/images", e(self.list_images), methods=["GET"]),
            Route(img + "/images", e(self.upload, json_body=True), methods=["POST"]),
            Route(img + "/images/{image_id}", e(self.get_image), methods=["GET"]),
            Route(img + "/images/{image_id}", e(self.delete_image), methods=["DELETE"]),
            Route(img + "/images/{image_id}/content", e(self.content), methods=["GET"]),
            Route(img + "/image-generation-tasks", e(self.generate, json_body=True),
                  methods=["POST"]),
            Route(img + "/image-edit-tasks", e(self.edit, json_body=True), methods=["POST"]),
            Route(img + "/image-upscale-tasks", e(self.upscale, json_body=True),
                  methods=["POST"]),
            Route("/_sandbox/settings", self.settings, methods=["GET", "POST"]),
            Route("/_sandbox/revoke", self.revoke, methods=["POST"]),
        ]


def emulator(state: SandboxState) -> Neuroflash:
    """The neuroflash emulator of ``state`` (made on first call; both mounts share it)."""
    existing = state.providers.get(NAME)
    if not isinstance(existing, Neuroflash):
        existing = state.providers[NAME] = Neuroflash(state)
    return existing


def build(state: SandboxState) -> Starlette:
    """The neuroflash app for ``state``, to mount at :data:`PREFIX`."""
    return http.build_app(
        emulator(state).routes(), lambda request, status: problem(status, instance=request.url.path)
    )


# ------------------------------------------------------------------------------ parsing
def _invalid(field_name: str, message: str) -> ApiError:
    return ApiError(400, message, errors=[{"field": field_name, "message": message}])


async def _json_body(request: Request) -> dict[str, Any]:
    return await http.json_body(
        request,
        lambda message: ApiError(400, message),
        missing="Required request body is missing",
        not_json="The request body is not valid JSON",
        not_object="The request body must be a JSON object",
    )


def _int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise _invalid(name, f"{name} must be an integer from {low} to {high}")
    return value


def _paged(request: Request, items: list[Any]) -> dict[str, Any]:
    """The list envelope for ``items`` at the request's ``page`` (1-based) and ``size``."""
    size = _int_query(request, "size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    page = _int_query(request, "page", 1, 1, 10**9)
    total = len(items)
    return {
        "page": {
            "size": size,
            "totalElements": total,
            "totalPages": math.ceil(total / size) if total else 0,
            "currentPage": page,
        },
        "data": items[(page - 1) * size : page * size],
    }


def _count(body: dict[str, Any], model: dict[str, Any]) -> int:
    raw = body.get("numImages")
    if raw is None:
        return 1
    top = model["maxImages"]
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= top:
        raise _invalid("numImages", f"numImages must be from 1 to {top} for {model['id']}")
    return raw


def _choice(body: dict[str, Any], name: str, allowed: list[str], default: str) -> str:
    value = body.get(name)
    if value in (None, ""):
        return default
    if value not in allowed:
        raise _invalid(name, f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    try:
        if name == "aspectRatio" and value != "auto":
            _art.aspect_size(value)
    except InvalidRequest as exc:  # pragma: no cover - every catalogue ratio is drawable
        raise _invalid(name, exc.message) from None
    return str(value)
