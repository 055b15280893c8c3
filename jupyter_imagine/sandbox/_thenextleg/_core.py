"""The TNL emulator's state and shared machinery: accounts, messages, webhooks,
views, pictures and the endpoint wrapper."""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ... import imaging
from ..._secrets import get_logger
from ...errors import InvalidRequest
from .. import _art
from .. import _http as http
from .._art import _midjourney as art
from .._state import SandboxState, deliver_webhook, nap_until
from ._parsing import invalid, iso, preview_of, read_token
from ._records import Account, Message
from ._wire import (
    DEFAULT_EXPIRE_MINS,
    DEFAULT_QUEUE_LIMIT,
    DURATION,
    FAIL_AFTER,
    FAST_HOURS,
    ID_ALPHABET,
    IMAGE_PATH,
    NAME,
    PNG_LEVEL,
    PREFIX,
    ApiError,
    error_response,
)

if TYPE_CHECKING:
    from ._records import Handler

logger = get_logger(__name__)


class TheNextLegCore:
    """The TNL emulator of one sandbox (``state.providers["thenextleg"]``).

    Attributes:
        queue_limit: jobs a token may have queued or running at once; one more fails with
            ``QUEUE_FULL`` (default 50).
        accounts: per token, its :class:`Account`.
        start_fast_hours: the fast hours a new account starts with (default 15; the sandbox's
            balance setting, :mod:`.._accounts`, changes it).
        messages: every message by messageId; ``by_button`` maps buttonMessageIds to them.
            Messages are also in ``state.tasks`` under ``("thenextleg", messageId)``.
    """

    #: Not kept on disk by the sandbox's persistence (see :mod:`.._persist`).
    TRANSIENT: ClassVar[frozenset[str]] = frozenset({"_draw_locks", "_locks_lock"})

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.queue_limit = DEFAULT_QUEUE_LIMIT
        self.accounts: dict[str, Account] = {}
        self.start_fast_hours = FAST_HOURS
        self.messages: dict[str, Message] = {}
        self.by_button: dict[str, Message] = {}
        self._draw_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    # ----------------------------------------------------------------- helpers
    def now(self) -> float:
        return self.state.clock.now()

    def account(self, key: str) -> Account:
        """The account of token ``key`` (made on first use)."""
        account = self.accounts.get(key)
        if account is None:
            hours = self.start_fast_hours
            account = self.accounts[key] = Account(hours, max(FAST_HOURS, hours))
        return account

    def base_url(self, request: Request) -> str:
        return str(request.base_url).rstrip("/") + PREFIX

    def message(self, message_id: Any, key: str) -> Message:
        found = self.messages.get(message_id) if isinstance(message_id, str) else None
        if found is None or found.key != key:
            raise ApiError(404, "Message not found")
        return found

    def _new_id(self) -> str:
        while True:
            new = "".join(secrets.choice(ID_ALPHABET) for _ in range(20))
            if new not in self.messages and new not in self.by_button:
                return new

    def running(self, key: str) -> int:
        now = self.now()
        return sum(
            1
            for m in list(self.messages.values())
            if m.key == key
            and m.mj_job
            and m.code is None
            and m.phase(now, DEFAULT_EXPIRE_MINS * 60)[0] in ("queued", "running")
        )

    def child_seed(self, parent: Message, label: str) -> int:
        parent.children[label] = parent.children.get(label, 0) + 1
        return art.derive(self.state.seed, label, parent.seed, parent.children[label])

    def fail(self, message: Message, code: str, after: float = FAIL_AFTER) -> None:
        message.code = code
        message.fail_at = message.created + after

    def new(self, request: Request, body: dict[str, Any], key: str, **fields: Any) -> Message:
        webhook = body.get("webhookOverride")
        if webhook in (None, ""):
            webhook = None
        elif not isinstance(webhook, str) or not re.match(r"^https?://[^\s/]+", webhook):
            raise ApiError(400, "webhookOverride must be an http(s) URL")
        ref = body.get("ref", "")
        fields.setdefault("duration", DURATION["grid"])
        return Message(
            id=self._new_id(),
            button_id=self._new_id(),
            key=key,
            created=self.now(),
            created_at=datetime.now(timezone.utc),
            origin=self.base_url(request),
            ref="" if ref is None else ref,
            webhook=webhook,
            **fields,
        )

    def accept(self, message: Message, *, cost: float = 0.0) -> JSONResponse:
        """Store ``message``, charge its account, start its webhook; the submit answer."""
        account = self.account(message.key)
        if message.mj_job and message.code is None:
            if self.running(message.key) >= self.queue_limit:
                self.fail(message, "QUEUE_FULL", 0.5)
            elif message.mode in ("fast", "turbo") and cost > 0 and account.fast_hours <= 1e-9:
                self.fail(message, "NO_FAST_HOURS", 0.5)
        if message.code is None:
            factor = {"relax": 1.5, "turbo": 0.5}.get(message.mode, 1.0)
            message.duration *= factor
            if message.mode != "relax":
                hours = cost * (2 if message.mode == "turbo" else 1) / 60
                account.fast_hours = max(0.0, account.fast_hours - hours)
                account.gpu_hours += hours
            if message.pictures:
                account.images += 4 if message.grid else 1
                account.relaxed_images += (4 if message.grid else 1) * (message.mode == "relax")
        self.messages[message.id] = message
        self.by_button[message.button_id] = message
        self.state.tasks[(NAME, message.id)] = message
        if message.webhook:
            self.state.spawn(self._post_when_final(message))
        return JSONResponse(
            {"success": True, "messageId": message.id, "createdAt": iso(message.created_at)}
        )

    async def _post_when_final(self, message: Message) -> None:
        expire = DEFAULT_EXPIRE_MINS * 60
        try:
            while True:
                phase, _, following = message.phase(self.now(), expire)
                if phase in ("done", "failed"):
                    payload = self.response(message, message.origin, self.now())
                    await deliver_webhook(self.state, message.webhook or "", payload,
                                          origin=message.origin)
                    return
                if phase == "incomplete":
                    return
                await nap_until(self.state, following, 0.1)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("sandbox thenextleg webhook for %s stopped", message.id)

    # ----------------------------------------------------------------- views
    def view(self, message: Message, base: str, expire: float) -> dict[str, Any]:
        """What ``GET /v2/message/<id>?expireMins=`` answers now."""
        now = self.now()
        phase, progress, _ = message.phase(now, expire)
        if phase == "incomplete":
            return {"progress": "incomplete"}
        if phase in ("done", "failed"):
            return {"progress": 100, "response": self.response(message, base, now)}
        preview = None
        if phase == "running" and message.pictures and progress:
            preview = f"{base}/cdn/{message.id}/progress-{progress}.png"
        out: dict[str, Any] = {"progress": progress, "progressImageUrl": preview}
        if phase == "queued" and message.note:
            out["response"] = {"content": message.note, "originatingMessageId": message.id,
                               "type": message.type, "ref": message.ref}
        return out

    def response(self, message: Message, base: str, now: float) -> dict[str, Any]:
        """The result object (``response``; also the webhook body) of a final message."""
        failed = message.code is not None
        end = message.fail_at if failed else message.created + message.duration
        obj: dict[str, Any] = {
            "createdAt": iso(message.created_at),
            "buttons": [] if failed else list(message.buttons),
            "type": message.type,
            "buttonMessageId": message.button_id,
            "originatingMessageId": message.id,
            "content": message.code if failed else message.content,
            "ref": message.ref,
            "responseAt": iso(message.created_at + timedelta(seconds=end - message.created)),
        }
        if failed:
            return obj
        if message.pictures:
            obj["imageUrl"] = f"{base}/mj-cdn/attachments/{message.id}/" + (
                "grid.png" if message.grid else "image.png"
            )
            if message.grid:
                obj["imageUrls"] = [f"{base}/cdn/{message.id}/{i}.png" for i in range(1, 5)]
        if message.seed_value is not None:
            obj["seed"] = message.seed_value
        return obj

    # ----------------------------------------------------------------- images
    def cells(self, message_id: str) -> list[Image.Image]:
        """The images of a message (4 cells or 1 image), drawn once and cached.

        Concurrent requests for one message (a client fetching its five images at once) wait
        for a single drawing instead of each drawing it.
        """
        key = (NAME, "cells", message_id)
        cached = self.state.images.get(key)
        if cached is not None:
            return cached
        with self._locks_lock:
            lock = self._draw_locks.setdefault(message_id, threading.Lock())
        with lock:
            cached = self.state.images.get(key)
            if cached is not None:
                return cached
            message = self.messages[message_id]
            return self.state.images.put(key, art.draw(message, self.cells, self.state.seed))

    def png(self, message: Message, name: str) -> bytes:
        key = (NAME, "png", message.id, name)
        cached = self.state.images.get(key)
        if cached is not None:
            return cached
        cells = self.cells(message.id)
        grid = _art.make_grid(cells) if len(cells) == 4 else cells[0]
        if name.startswith("progress-"):
            image = preview_of(grid, int(name[len("progress-"):]))
        elif name in ("grid", "image"):
            image = grid
        else:
            image = cells[int(name) - 1]
        text = {
            "prompt": message.prompt,
            "messageId": message.id,
            "Software": "jupyter_imagine sandbox (thenextleg)",
        }
        return self.state.images.put(
            key, imaging.to_png(image, text, compress_level=PNG_LEVEL)
        )

    def served(self, message: Message, name: str, family: str) -> bool:
        """``True`` when ``name`` is an image of ``message`` that exists now on ``family``."""
        if not message.pictures:
            return False
        phase = message.phase(self.now(), math.inf)[0]
        if name.startswith("progress-"):
            return family == "cdn" and phase in ("running", "done")
        if phase != "done":
            return False
        if family == "mj-cdn":
            return name == ("grid" if message.grid else "image")
        return message.grid and name in ("1", "2", "3", "4")

    def internal(self, url: Any) -> tuple[Message, str] | None:
        """``(message, name)`` when ``url`` is one of this sandbox's image URLs."""
        try:
            match = IMAGE_PATH.search(httpx.URL(url).path)
        except (httpx.InvalidURL, TypeError):
            return None
        if not match or match[1] not in self.messages:
            return None
        return self.messages[match[1]], match[2]

    async def source(self, url: Any) -> bytes | None:
        """The bytes of image ``url`` (the sandbox's own, or downloaded); ``None`` if that fails."""
        known = self.internal(url)
        if known is not None:
            message, name = known
            family = "mj-cdn" if name in ("grid", "image") else "cdn"
            if not self.served(message, name, family):
                return None
            return await run_in_threadpool(self.png, message, name)
        try:
            async with httpx.AsyncClient(timeout=10, follow_redirects=True) as client:
                response = await client.get(url)
            response.raise_for_status()
            imaging.image_size(response.content)
        except (httpx.HTTPError, InvalidRequest, TypeError):
            return None
        return response.content

    # ----------------------------------------------------------------- wiring
    def endpoint(self, handler: Handler) -> Callable[..., Any]:
        """Wrap ``handler(request, fields, key)`` with auth, body/query parsing, error shapes."""

        async def run(request: Request) -> Response:
            async def call() -> Response:
                key = read_token(request)
                if not self.state.key_accepted(key):
                    return error_response(401)
                fields = {k: v for k, v in request.query_params.items() if k != "authToken"}
                if request.method == "POST":
                    fields.update(await http.json_body(request, invalid))
                return await handler(request, fields, str(key))

            return await http.guarded(request, call, lambda: error_response(500), NAME)

        run.__name__ = handler.__name__
        return run
