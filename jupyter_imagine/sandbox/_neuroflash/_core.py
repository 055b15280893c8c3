"""The neuroflash emulator's state and shared machinery: clients and tokens, rate
limits, pixels, views, quotas and the endpoint wrapper."""

from __future__ import annotations

import hmac
import io
import math
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

from PIL import Image, ImageOps
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ... import imaging
from ..._secrets import get_logger
from .. import _art
from .. import _http as http
from .._state import SandboxState
from .._triggers import FAIL_WORD
from ._parsing import invalid, read_body
from ._records import NfImage, Quota, Token, Window
from ._wire import (
    FAIL_MESSAGE,
    IMAGE_API,
    MODELS,
    MODELS_BY_ID,
    NAME,
    OTHER_USER_ID,
    PIL_FORMAT,
    PREFIX,
    RATE_LIMIT,
    RATE_WINDOW,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SEEDED_GENERATION_ID,
    SEEDED_PROMPT,
    STRICT_LIMIT,
    TOKEN_TTL,
    WORKSPACE_ID,
    ApiError,
    derive,
    problem,
    user_id,
)

if TYPE_CHECKING:
    from ._records import Handler

logger = get_logger(__name__)


class NeuroflashCore:
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

    #: Not kept on disk by the sandbox's persistence (see :mod:`.._persist`).
    TRANSIENT: ClassVar[frozenset[str]] = frozenset({"_windows"})

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
        self._windows: dict[str, Window] = {}
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
            window = self._windows[client_id] = Window(real)
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
        generation = SEEDED_GENERATION_ID
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
                recipe=("render", derive(self.state.seed, "seeded", i)),
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
            picture.save(buf, format=PIL_FORMAT[record.fmt], **options)
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
                raise invalid("modelId", "modelId is required")
            return next(
                m for m in sorted(MODELS, key=lambda m: m["order"])
                if capability in m["capabilities"] and m["allowed"]
            )
        if not isinstance(model_id, str) or model_id not in MODELS_BY_ID:
            known = ", ".join(m["id"] for m in MODELS if capability in m["capabilities"])
            raise invalid("modelId", f"Unknown model {model_id!r}; available: {known}")
        model = MODELS_BY_ID[model_id]
        if capability not in model["capabilities"]:
            raise invalid("modelId", f"Model {model_id} does not support {capability}")
        if not model["allowed"]:
            raise ApiError(403, f"Model {model_id} is not available in this workspace's plan")
        return model

    def check_prompt(self, body: dict[str, Any]) -> str:
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise invalid("prompt", "prompt is required")
        word = self.state.banned_word(prompt)
        if word is not None:
            raise ApiError(
                400, f"The prompt violates the content policy ('{word}')", kind="content-policy"
            )
        if FAIL_WORD in prompt.lower():
            raise ApiError(422, FAIL_MESSAGE, kind="generation-failed")
        return prompt.strip()

    def owned(self, image_id: Any, client_id: str, ws: str, what: str) -> NfImage:
        if not isinstance(image_id, str) or not image_id:
            raise invalid(what, f"{what} must be image ids")
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
                body = await read_body(request) if json_body else {}
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
