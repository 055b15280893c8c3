"""TheNextLeg (TNL, Midjourney proxy, v2 API) emulated at ``{root}/thenextleg``.

Same paths, envelopes, progress values, button texts and error shapes as
``https://api.thenextleg.io`` (``providers.md`` §2 and the seed page on Vary (Region)), so a
third-party TNL client pointed at ``{root}/thenextleg`` works unchanged.

Endpoints (all answer ``{"success": true, "messageId", "createdAt"}`` and run asynchronously):

- ``POST /v2/imagine`` — ``msg`` (prompt with Midjourney flags; leading image URLs are an image
  prompt), ``ref`` (any JSON, echoed back), ``webhookOverride``, ``ignorePrefilter``.
- ``POST /v2/button`` — ``buttonMessageId``, ``button`` (a text the result listed), ``ref``,
  ``webhookOverride``; ``prompt`` + ``mask`` for ``🖌️ Vary (Region)``; ``prompt``, ``zoom``
  (1–2, default 2) and ``ar`` for ``Custom Zoom``; ``prompt`` on ``🔄`` rerolls with a new prompt.
- ``POST /v2/describe`` (``url``), ``POST /v2/blend`` (``urls``: 2–5), ``POST /v2/seed``
  (``messageId``), ``GET``/``POST /v2/info``, ``GET /v2/settings`` (get), ``POST /v2/settings``
  (``settingsToggle``), ``POST /v2/slash-commands`` (``cmd``: relax, fast, private, stealth).
- ``GET /v2/message/<messageId>?expireMins=N`` (default 12) — ``{"progress": 0,
  "progressImageUrl": null}`` while queued, ``{"progress": 46, "progressImageUrl": <blurred
  low-res preview>}`` while running, ``{"progress": 100, "response": {…}}`` when done (or failed
  with a content code), ``{"progress": "incomplete"}`` once ``expireMins`` passed without a result.
- ``POST /getImage`` (``imgUrl``) — the raw image bytes of any image URL (the sandbox's own, or
  fetched).
- Images: a result's ``imageUrl`` (grid, or the single image of an upscale) lives at
  ``/mj-cdn/attachments/<messageId>/grid.png|image.png`` and, like Midjourney's CDN, **refuses
  direct fetches with 403** — fetch it through ``/getImage``. The four split ``imageUrls`` and
  the progress previews live at ``/cdn/<messageId>/1.png``…``4.png`` / ``progress-<n>.png``,
  public.

The GET form ``?authToken=<token>&field=value…`` works on ``/v2/button``, ``/v2/describe``,
``/v2/settings`` (with ``settingsToggle`` it sets), ``/v2/slash-commands``, ``/v2/info`` and
``/v2/message/<id>``. Routes answer with or without a trailing slash.

Auth: ``Authorization: Bearer <token>`` (the scheme is required) or ``?authToken=``. Missing or
rejected (``state.rejected_keys``, default ``{"invalid-key"}``) → 401 ``{"success": false, "msg":
…}``. Every error is ``{"success": false, "msg": "<text>"}``: 400 for a missing or bad field,
404 for an unknown message (messages belong to the token that made them), 405, 401, 5xx.

Results (the ``response`` object, also the webhook body): ``createdAt``, ``responseAt`` (ISO),
``type`` (``imagine``, ``button``, ``describe``, ``blend``, ``seed``, ``info``, ``settings``,
``slash-commands``), ``buttons``, ``imageUrl``, ``imageUrls``, ``buttonMessageId`` (what
``/v2/button`` takes), ``originatingMessageId`` (= the messageId), ``content`` (the prompt; four
prompts for describe; an object for info; the bot's answer otherwise), ``ref``, and ``seed`` for
seed messages. Buttons: a grid offers ``U1``–``U4``, ``🔄``, ``V1``–``V4``; an upscale offers
``Vary (Strong)``, ``Vary (Subtle)``, ``🖌️ Vary (Region)``, ``Upscale (2x)``, ``Upscale (4x)``
(``Upscale (Subtle)``, ``Upscale (Creative)`` with ``--v 6`` or the "MJ version 6" setting),
``Zoom Out 2x``, ``Zoom Out 1.5x``, ``Custom Zoom``, ``Make Square`` (non-square only),
``⬅️``, ``➡️``, ``⬆️``, ``⬇️``; a high-res upscale offers ``Vary (Strong)``, ``Vary (Subtle)``.
Every listed button works; the images follow the APIFRAME emulation's semantics
(:mod:`._apiframe_images`): grid 2×2 at the ``--ar``, U = that quadrant at 2×, V resembles
its parent, 🔄 does not, Vary (Region) changes only the masked pixels (mask of the upscale's
exact size, PNG or WebP, base64 with or without a ``data:`` prefix; else 400).

Lifecycle on the sandbox clock (simulated seconds): queued for 2 s (less for short messages),
then ``progress`` rises 0, 15, 31, 46, 62, 78, 93 until done. Durations: 40 s for grids, 8 s
for U, 16 s for high-res upscales, 10 s for describe, 3 s for seed, 2 s for info, settings and
slash commands; relax mode ×1.5, turbo ×0.5.

Failures arrive as a finished message whose ``response.content`` is a content code, about one
simulated second after submit:

- ``BANNED_PROMPT`` — a banned word (``state.banned_words``) in a button's prompt, or in ``msg``
  with ``ignorePrefilter`` true; without it ``/v2/imagine`` answers the prefilter's 400
  ``{"success": false, "msg": "Invalid phrase: '<word>'"}``.
- ``QUEUE_FULL`` — the token already has :attr:`TheNextLeg.queue_limit` (default 50) jobs queued
  or running.
- ``ALREADY_REQUESTED_UPSCALE`` — a second ``U<n>`` of the same grid quadrant.
- ``NO_FAST_HOURS`` — a job in fast or turbo mode (the account's mode, or ``--fast``/``--turbo``)
  while the account's ``fast_hours`` is 0; also ``slash-commands fast`` then. Each account
  (one per token, :meth:`TheNextLeg.account`) starts with 15 fast hours; a grid costs one GPU
  minute, a high-res upscale two, turbo twice that, relax nothing. ``--relax`` runs one job in
  relax mode.
- ``INVALID_PARAMETER`` — a malformed ``--ar``/``--aspect`` or an unknown ``--flag`` in ``msg``.
- ``BUTTON_NOT_FOUND`` — a button the message does not list (or a message not done yet).
- ``INVALID_LINK`` — describe/blend/image-prompt URLs that cannot be fetched as images.
- Magic words: ``sandbox:code=<CODE>`` fails the message with that code (any code of the seed
  page; ``JOB_QUEUED`` and ``APPEAL_ACCEPTED`` are shown while queued and the job then goes on);
  ``sandbox:fail`` fails it halfway with ``FAILED_TO_PROCESS_YOUR_COMMAND``; ``sandbox:hang``
  sticks at 46 % until the message turns ``incomplete``.

Webhooks: with ``webhookOverride`` the final response object (success or failure) is POSTed
there once, as JSON, without headers beyond the content type.

Choices where ``providers.md`` marks a detail [I] or [U]:

- ``GET /v2/message`` nests the result under ``response`` (what clients read); ``createdAt`` is an
  ISO string (the v2 form; v1's Firestore ``{_seconds, _nanoseconds}`` is not emitted).
- A content code is the whole ``content`` (``"BANNED_PROMPT"``); such a message has
  ``progress: 100`` and no images.
- ``incomplete`` is computed per request: a message not done within the ``expireMins`` the poll
  names reads ``{"progress": "incomplete"}``, even if it would finish later.
- Error bodies other than the prefilter's use the same ``{"success": false, "msg"}`` shape;
  401 when the token is missing or rejected, with no hint of the token in it.
- ``ignorePrefilter`` is true for ``true``/``"true"``/``"1"`` (the docs' sample sends a string).
- ``/v2/seed`` takes a messageId or a buttonMessageId; its result has ``seed`` (a string) and
  ``content`` "**Job ID**: <uuid> **seed** <n>".
- ``/v2/info`` answers on GET (docs) and POST (official Python client).
- Describe's four prompts carry no "1️⃣" markers; describe and blend accept any fetchable image.
- ``ref`` is echoed as given (clients send objects too); ``slash-commands private`` and
  ``stealth`` both turn on stealth mode.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from typing import Any

import httpx
import numpy as np
from PIL import Image, ImageFilter
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import imaging
from .._secrets import get_logger
from ..errors import InvalidMask, InvalidRequest
from . import _art
from . import _http as http
from ._art import _midjourney as art
from ._state import SandboxState, deliver_webhook, retry_headers

__all__ = ["NAME", "PREFIX", "Account", "Message", "TheNextLeg", "build", "fault_response"]

logger = get_logger(__name__)

NAME = "thenextleg"
PREFIX = "/thenextleg"

DEFAULT_EXPIRE_MINS = 12.0
DEFAULT_QUEUE_LIMIT = 50
FAST_HOURS = 15.0
FAIL_AFTER = 1.0
QUEUED_FOR = 2.0
PROGRESS_STEPS = (0, 15, 31, 46, 62, 78, 93)
HANG_PROGRESS = 46
PNG_LEVEL = 1
DURATION = {
    "grid": 40.0,
    "upscale": 8.0,
    "upscale-highres": 16.0,
    "upscale-alt": 16.0,
    "describe": 10.0,
    "seed": 3.0,
    "info": 2.0,
    "settings": 2.0,
    "slash": 2.0,
}
#: GPU minutes a job costs in fast mode (turbo: twice).
GPU_MINUTES = {"grid": 1.0, "upscale": 0.0, "upscale-highres": 2.0, "upscale-alt": 2.0,
               "describe": 0.5}

#: Content codes of the seed page (what ``sandbox:code=`` accepts).
CODES = frozenset(
    {
        "ALREADY_REQUESTED_UPSCALE",
        "BOT_TOOK_TOO_LONG_TO_PROCESS_YOUR_COMMAND",
        "APPEAL_ACCEPTED",
        "APPEAL_REJECTED",
        "BANNED_PROMPT",
        "BLOCKED",
        "BUTTON_NOT_FOUND",
        "FAILED_TO_PROCESS_YOUR_COMMAND",
        "FAILED_TO_REQUEST",
        "IMAGE_BLOCKED",
        "INTERNAL_ERROR",
        "INVALID_LINK",
        "INVALID_PARAMETER",
        "JOB_ACTION_RESTRICTED",
        "JOB_QUEUED",
        "MODERATION_OUTAGE",
        "NO_FAST_HOURS",
        "PLEASE_SUBSCRIBE_TO_MJ_IN_YOUR_DASHBOARD",
        "QUEUE_FULL",
    }
)
#: Codes that do not end a message: shown while it is queued.
NOTE_CODES = frozenset({"JOB_QUEUED", "APPEAL_ACCEPTED"})

GRID_BUTTONS = ("U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4")
VARY_REGION = "🖌️ Vary (Region)"
PANS = {"⬅️": "left", "➡️": "right", "⬆️": "up", "⬇️": "down"}
ZOOMS = {"Zoom Out 2x": 2.0, "Zoom Out 1.5x": 1.5}
HIGHRES = {"Upscale (2x)": "2x", "Upscale (4x)": "4x"}
ALT_UPSCALES = {"Upscale (Subtle)": "subtle", "Upscale (Creative)": "creative"}
VARY_UPSCALE = {"Vary (Strong)": "strong", "Vary (Subtle)": "subtle"}
SETTINGS_TOGGLES = (
    "MJ version 6",
    "MJ version 5.2",
    "MJ version 5.1",
    "MJ version 5",
    "Niji version 6",
    "Niji version 5",
    "RAW Mode",
    "Stylize low",
    "Stylize med",
    "Stylize high",
    "Stylize very high",
    "Public mode",
    "Stealth mode",
    "Remix mode",
    "High Variation Mode",
    "Low Variation Mode",
    "Turbo mode",
    "Fast mode",
    "Relax mode",
    "Reset Settings",
)
SLASH_REPLIES = {
    "relax": "Done! Your jobs now do not cost fast-hours, but will take longer to run.",
    "fast": "Done! Your jobs now use fast-hours.",
    "private": "Stealth mode turned on",
    "stealth": "Stealth mode turned on",
}
SETTINGS_CONTENT = "Adjust your settings here."
KNOWN_FLAGS = frozenset(
    """ar aspect v version niji seed sameseed stylize s chaos c q quality no style tile relax fast
    turbo iw sref cref cw sw sv weird w stop repeat r raw p personalize video hd test testp
    creative draft exp oref ow profile zoom""".split()
)

_FLAG = re.compile(r"(?:^|\s)--([A-Za-z][\w-]*)(?:\s+(?!--)(\S+))?")
_SEED_FLAG = re.compile(r"(?:^|\s)--seed\s+(\d+)")
_VERSION_FLAG = re.compile(r"(?:^|\s)--(?:v|version)\s+(\d+(?:\.\d+)?)")
_CODE_WORD = re.compile(r"sandbox:code=([A-Z_]+)")
_LEADING_URL = re.compile(r"^\s*(https?://\S+)\s*")
_IMAGE_PATH = re.compile(
    re.escape(PREFIX)
    + r"/(?:mj-cdn/attachments|cdn)/([A-Za-z0-9]{20})/(grid|image|[1-4]|progress-\d{1,3})\.png$"
)
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


# ------------------------------------------------------------------------------ errors
class ApiError(http.ApiError):
    """An error answered in TNL's shape, ``{"success": false, "msg": …}``."""

    def __init__(self, status: int, msg: str) -> None:
        super().__init__(status, msg)

    def response(self) -> Response:
        return error_response(self.status, self.message)


_DEFAULT_MSG = {
    400: "Bad request",
    401: "Unauthorized: send Authorization: Bearer <your-token> or ?authToken=",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
}


def error_response(status: int, msg: str | None = None, *, retry_after: float | None = None
                   ) -> JSONResponse:
    """TNL's error answer ``{"success": false, "msg": …}`` (a 429 always has ``Retry-After``)."""
    body = {"success": False, "msg": msg or _DEFAULT_MSG.get(status, "Request failed")}
    return JSONResponse(body, status_code=status, headers=retry_headers(status, retry_after))


def fault_response(status: int, *, retry_after: float | None = None) -> Response:
    """The answer to an injected fault, in TNL's error shape."""
    return error_response(status, retry_after=retry_after)


# ------------------------------------------------------------------------------ records
@dataclass
class Account:
    """One token's Midjourney account as the sandbox keeps it (:meth:`TheNextLeg.account`).

    Attributes:
        fast_hours: fast GPU hours left (default 15.0); at 0, fast jobs fail ``NO_FAST_HOURS``.
        fast_total: the plan's fast hours (default 15.0).
        mode: ``"fast"`` (default), ``"relax"`` or ``"turbo"``.
        stealth: stealth (private) mode, default ``False``.
        version: the default model version (default ``"5.2"``).
        settings: other toggles that are on (Remix mode, RAW Mode …).
    """

    fast_hours: float = FAST_HOURS
    fast_total: float = FAST_HOURS
    mode: str = "fast"
    stealth: bool = False
    version: str = "5.2"
    settings: set[str] = field(default_factory=set)
    images: int = 0
    gpu_hours: float = 0.0
    relaxed_images: int = 0
    user_id: str = field(default_factory=lambda: secrets.token_hex(8))


@dataclass
class Message:
    """One TNL message. ``created`` is simulated time; ``kind`` is the picture kind of
    :mod:`._apiframe_images` (``imagine``, ``upscale`` …) or ``describe``, ``seed``, ``info``,
    ``settings``, ``slash``; ``type`` is what the response says."""

    id: str
    button_id: str
    key: str = field(repr=False)
    type: str
    kind: str
    prompt: str
    aspect_ratio: str
    seed: int
    created: float
    created_at: datetime
    duration: float
    origin: str = ""
    parent_id: str | None = None
    index: int | None = None
    variant: str | None = None
    mask: bytes | None = field(default=None, repr=False)
    sources: list[bytes] = field(default_factory=list, repr=False)
    button: str | None = None
    ref: Any = ""
    webhook: str | None = None
    code: str | None = None
    fail_at: float = math.inf
    note: str | None = None
    hang: bool = False
    buttons: list[str] = field(default_factory=list)
    content: Any = None
    seed_value: str | None = None
    version: str = "5.2"
    mode: str = "fast"
    upscaled: set[int] = field(default_factory=set)
    children: dict[str, int] = field(default_factory=dict)

    @property
    def grid(self) -> bool:
        return self.kind in art.GRID_KINDS

    @property
    def pictures(self) -> bool:
        return self.kind in art.GRID_KINDS or self.kind in art.SINGLE_KINDS

    @property
    def mj_job(self) -> bool:
        """Counts against the queue (not info, settings, slash commands, seed)."""
        return self.pictures or self.kind == "describe"

    def phase(self, now: float, expire: float) -> tuple[str, int | None, float | None]:
        """``(state, progress, simulated time of the next change)`` with ``expire`` seconds.

        ``state`` is ``queued``, ``running``, ``done``, ``failed`` or ``incomplete``.
        """
        limit = self.created + expire
        if self.code is not None and self.fail_at <= limit:
            if now >= self.fail_at:
                return "failed", 100, None
        done_at = math.inf if self.hang or self.code else self.created + self.duration
        if now >= done_at and done_at <= limit:
            return "done", 100, None
        if now >= limit:
            return "incomplete", None, None
        upcoming = [t for t in (self.fail_at, done_at, limit) if t > now]
        following = min(upcoming) if upcoming else None
        elapsed = now - self.created
        queued_for = min(QUEUED_FOR, self.duration / 4)
        if elapsed < queued_for:
            return "queued", 0, min(self.created + queued_for, following or math.inf)
        span = self.duration - queued_for
        k = int((elapsed - queued_for) / span * len(PROGRESS_STEPS) + 1e-9)
        k = min(k, len(PROGRESS_STEPS) - 1)
        if self.hang and PROGRESS_STEPS[k] >= HANG_PROGRESS:
            return "running", HANG_PROGRESS, following
        step_at = self.created + queued_for + (k + 1) * span / len(PROGRESS_STEPS)
        return "running", PROGRESS_STEPS[k], min(step_at, following or math.inf)


# ------------------------------------------------------------------------------ the emulator
Handler = Callable[[Request, dict[str, Any], str], Awaitable[Response]]


class TheNextLeg:
    """The TNL emulator of one sandbox (``state.providers["thenextleg"]``).

    Attributes:
        queue_limit: jobs a token may have queued or running at once; one more fails with
            ``QUEUE_FULL`` (default 50).
        accounts: per token, its :class:`Account`.
        messages: every message by messageId; ``by_button`` maps buttonMessageIds to them.
            Messages are also in ``state.tasks`` under ``("thenextleg", messageId)``.
    """

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.queue_limit = DEFAULT_QUEUE_LIMIT
        self.accounts: dict[str, Account] = {}
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
            account = self.accounts[key] = Account()
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
            new = "".join(secrets.choice(_ID_ALPHABET) for _ in range(20))
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
            elif message.mode in ("fast", "turbo") and cost > 0 and account.fast_hours <= 0:
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
            {"success": True, "messageId": message.id, "createdAt": _iso(message.created_at)}
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
                wait = 0.1
                if following is not None:
                    until = self.state.clock.real_seconds_until(following)
                    if until is not None:
                        wait = min(wait, until)
                await asyncio.sleep(max(wait, 0.001))
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
            "createdAt": _iso(message.created_at),
            "buttons": [] if failed else list(message.buttons),
            "type": message.type,
            "buttonMessageId": message.button_id,
            "originatingMessageId": message.id,
            "content": message.code if failed else message.content,
            "ref": message.ref,
            "responseAt": _iso(message.created_at + timedelta(seconds=end - message.created)),
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
            image = _preview(grid, int(name[len("progress-"):]))
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
            match = _IMAGE_PATH.search(httpx.URL(url).path)
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

    # ----------------------------------------------------------------- commands
    async def imagine(self, request: Request, body: dict[str, Any], key: str) -> Response:
        msg = body.get("msg")
        if not isinstance(msg, str) or not msg.strip():
            raise ApiError(400, "msg is required")
        msg = msg.strip()
        word = self.state.banned_word(msg)
        bypass = _truthy(body.get("ignorePrefilter"))
        if word is not None and not bypass:
            return JSONResponse({"success": False, "msg": f"Invalid phrase: '{word}'"},
                                status_code=400)
        account = self.account(key)
        urls: list[str] = []
        text = msg
        while (match := _LEADING_URL.match(text)) is not None:
            urls.append(match[1])
            text = text[match.end():]
        ratio, code = _flags(text)
        mode = _mode(text, account.mode)
        flag = _SEED_FLAG.search(text)
        seed = (
            int(flag[1]) & 0xFFFFFFFF
            if flag
            else art.derive(self.state.seed, "prompt", " ".join(text.split()))
        )
        sources: list[bytes] = []
        for url in urls:
            data = await self.source(url)
            if data is None:
                code = code or "INVALID_LINK"
            else:
                sources.append(data)
        version = _version(text, account.version)
        message = self.new(
            request, body, key,
            type="imagine",
            kind="blend" if sources else "imagine",
            prompt=msg,
            aspect_ratio=ratio,
            seed=seed,
            sources=sources,
            content=msg,
            buttons=list(GRID_BUTTONS),
            version=version,
            mode=mode,
        )
        if word is not None:
            self.fail(message, "BANNED_PROMPT")
        elif code is not None:
            self.fail(message, code)
        else:
            _magic(message, msg)
        return self.accept(message, cost=GPU_MINUTES["grid"])

    async def button(self, request: Request, body: dict[str, Any], key: str) -> Response:
        button_id = body.get("buttonMessageId")
        button = body.get("button")
        if not isinstance(button_id, str) or not button_id.strip():
            raise ApiError(400, "buttonMessageId is required")
        if not isinstance(button, str) or not button.strip():
            raise ApiError(400, "button is required")
        parent = self.by_button.get(button_id.strip())
        if parent is None or parent.key != key:
            raise ApiError(404, "buttonMessageId not found")
        prompt = body.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise ApiError(400, "prompt must be a string")
        prompt = (prompt or "").strip()
        account = self.account(key)
        common: dict[str, Any] = {
            "type": "button",
            "button": button,
            "parent_id": parent.id,
            "version": parent.version,
            "mode": _mode(prompt or parent.prompt, account.mode),
        }
        done = parent.phase(self.now(), math.inf)[0] == "done"
        if not done or button not in parent.buttons:
            message = self.new(request, body, key, kind="imagine", prompt=parent.prompt,
                               aspect_ratio=parent.aspect_ratio, seed=parent.seed,
                               content=parent.prompt, **common)
            self.fail(message, "BUTTON_NOT_FOUND")
            return self.accept(message)
        cost = GPU_MINUTES["grid"]
        fields: dict[str, Any]
        if button[:1] == "U" and button[1:].isdigit():
            index = int(button[1:])
            fields = dict(kind="upscale", index=index, seed=parent.seed,
                          duration=DURATION["upscale"], buttons=_upscale_buttons(parent))
            cost = GPU_MINUTES["upscale"]
            already = index in parent.upscaled
            parent.upscaled.add(index)
            message = self.new(request, body, key, prompt=parent.prompt,
                               aspect_ratio=parent.aspect_ratio, content=parent.prompt,
                               **fields, **common)
            if already:
                self.fail(message, "ALREADY_REQUESTED_UPSCALE")
            return self.accept(message, cost=cost)
        new_prompt = prompt or parent.prompt
        ratio = parent.aspect_ratio
        if button[:1] == "V" and button[1:].isdigit():
            fields = dict(kind="variation", index=int(button[1:]),
                          seed=self.child_seed(parent, button))
        elif button == "🔄":
            ratio = _flags(new_prompt)[0] if prompt else ratio
            fields = dict(kind="reroll", seed=self.child_seed(parent, "reroll"))
        elif button in VARY_UPSCALE:
            fields = dict(kind="variation", variant=VARY_UPSCALE[button],
                          seed=self.child_seed(parent, button))
        elif button == VARY_REGION:
            mask = await self._mask(body.get("mask"), parent)
            fields = dict(kind="inpaint", mask=mask, seed=self.child_seed(parent, "inpaint"))
        elif button in ZOOMS or button in ("Custom Zoom", "Make Square"):
            zoom = ZOOMS.get(button, 1.0 if button == "Make Square" else _zoom(body.get("zoom")))
            if button == "Custom Zoom" and body.get("ar") not in (None, ""):
                ratio = _aspect(body.get("ar"))
            elif button == "Make Square":
                ratio = "1:1"
            fields = dict(kind="outpaint", variant=f"{zoom:g}",
                          seed=self.child_seed(parent, "outpaint"))
        elif button in PANS:
            size = await run_in_threadpool(lambda: self.cells(parent.id)[0].size)
            cell = art.pan_size(size, PANS[button])
            ratio = _ratio(*cell)
            fields = dict(kind="pan", variant=PANS[button], seed=self.child_seed(parent, "pan"))
        elif button in HIGHRES:
            fields = dict(kind="upscale-highres", variant=HIGHRES[button], seed=parent.seed,
                          duration=DURATION["upscale-highres"],
                          buttons=["Vary (Strong)", "Vary (Subtle)"])
            cost = GPU_MINUTES["upscale-highres"]
        elif button in ALT_UPSCALES:
            fields = dict(kind="upscale-alt", variant=ALT_UPSCALES[button],
                          seed=self.child_seed(parent, button),
                          duration=DURATION["upscale-alt"],
                          buttons=["Vary (Strong)", "Vary (Subtle)"])
            cost = GPU_MINUTES["upscale-alt"]
        else:  # listed but unknown to the emulator: cannot happen, the lists are ours
            raise ApiError(400, f"button {button!r} is not supported")
        fields.setdefault("buttons", list(GRID_BUTTONS))
        message = self.new(request, body, key, prompt=new_prompt, aspect_ratio=ratio,
                           content=new_prompt, **fields, **common)
        if self.state.banned_word(new_prompt) is not None:
            self.fail(message, "BANNED_PROMPT")
        else:
            _magic(message, new_prompt if prompt else "")
        return self.accept(message, cost=cost)

    async def _mask(self, raw: Any, parent: Message) -> bytes:
        if raw in (None, ""):
            raise ApiError(400, "mask is required")
        if not isinstance(raw, str):
            raise ApiError(400, "Invalid mask image")
        try:
            mask = imaging.decode_mask(raw)
        except InvalidMask:
            raise ApiError(400, "Invalid mask image") from None
        want = await run_in_threadpool(lambda: self.cells(parent.id)[0].size)
        if mask.size != want:
            raise ApiError(
                400,
                f"Mask size {mask.width}x{mask.height} does not match the image size "
                f"{want[0]}x{want[1]}",
            )
        binary = (np.asarray(mask) > 127).astype(np.uint8) * 255
        if not binary.any():
            raise ApiError(400, "Mask is empty: paint the area to redraw in white")
        return imaging.to_png(Image.fromarray(binary, "L"))

    async def describe(self, request: Request, body: dict[str, Any], key: str) -> Response:
        url = body.get("url")
        if not isinstance(url, str) or not url.strip():
            raise ApiError(400, "url is required")
        data = await self.source(url.strip())
        known = self.internal(url)
        hint = known[0].prompt if known else ""
        if data is not None:
            width, height = imaging.image_size(data)
            ratio = _ratio(width, height)
        else:
            ratio = "1:1"
        seed = art.derive(data or url)
        message = self.new(request, body, key, type="describe", kind="describe", prompt="",
                           aspect_ratio=ratio, seed=seed, duration=DURATION["describe"],
                           content=_descriptions(hint, seed, ratio))
        if data is None:
            self.fail(message, "INVALID_LINK")
        return self.accept(message, cost=GPU_MINUTES["describe"])

    async def blend(self, request: Request, body: dict[str, Any], key: str) -> Response:
        urls = body.get("urls")
        if urls in (None, ""):
            raise ApiError(400, "urls is required")
        if not isinstance(urls, list) or not 2 <= len(urls) <= 5 or not all(
            isinstance(u, str) and u.strip() for u in urls
        ):
            raise ApiError(400, "urls must be a list of 2 to 5 image URLs")
        sources = [await self.source(u.strip()) for u in urls]
        ok = [s for s in sources if s is not None]
        message = self.new(request, body, key, type="blend", kind="blend", prompt="",
                           aspect_ratio="1:1", seed=art.derive(*ok) if ok else 0, sources=ok,
                           content="", buttons=list(GRID_BUTTONS),
                           mode=self.account(key).mode)
        if len(ok) != len(sources):
            self.fail(message, "INVALID_LINK")
        return self.accept(message, cost=GPU_MINUTES["grid"])

    async def seed(self, request: Request, body: dict[str, Any], key: str) -> Response:
        target_id = body.get("messageId")
        if not isinstance(target_id, str) or not target_id.strip():
            raise ApiError(400, "messageId is required")
        target = self.messages.get(target_id.strip()) or self.by_button.get(target_id.strip())
        if target is None or target.key != key:
            raise ApiError(404, "Message not found")
        if not target.pictures:
            raise ApiError(400, "Message has no seed")
        if target.phase(self.now(), math.inf)[0] != "done":
            raise ApiError(400, "Message is not finished")
        job_id = str(uuid.UUID(int=art.derive(target.id) << 96 | art.derive(target.seed)))
        message = self.new(request, body, key, type="seed", kind="seed", prompt="",
                           aspect_ratio=target.aspect_ratio, seed=target.seed,
                           duration=DURATION["seed"], parent_id=target.id,
                           seed_value=str(target.seed),
                           content=f"**Job ID**: {job_id}\n**seed** {target.seed}")
        return self.accept(message)

    async def info(self, request: Request, body: dict[str, Any], key: str) -> Response:
        account = self.account(key)
        now = self.now()
        queued = [m for m in self.messages.values() if m.key == key and m.mj_job
                  and m.code is None
                  and m.phase(now, DEFAULT_EXPIRE_MINS * 60)[0] in ("queued", "running")]
        left = account.fast_hours
        pct = 100 * left / account.fast_total if account.fast_total else 0.0
        renews = (datetime.now(timezone.utc) + timedelta(days=17)).strftime("%B %d")
        content = {
            "User ID": account.user_id,
            "Subscription": f"Standard (Active monthly, renews next on {renews})",
            "Job Mode": {"fast": "Fast", "relax": "Relaxed", "turbo": "Turbo"}[account.mode],
            "Visibility Mode": "Stealth" if account.stealth else "Public",
            "Fast Time Remaining": f"{left:.2f}/{account.fast_total:.1f} hours ({pct:.2f}%)",
            "Lifetime Usage": f"{account.images} images ({account.gpu_hours:.2f} hours)",
            "Relaxed Usage": f"{account.relaxed_images} images",
            "Queued Jobs (fast)": str(sum(m.mode != "relax" for m in queued)),
            "Queued Jobs (relax)": str(sum(m.mode == "relax" for m in queued)),
            "Running Jobs": str(len(queued)) if queued else "None",
        }
        message = self.new(request, body, key, type="info", kind="info", prompt="",
                           aspect_ratio="1:1", seed=0, duration=DURATION["info"],
                           content=content)
        return self.accept(message)

    async def settings(self, request: Request, body: dict[str, Any], key: str) -> Response:
        toggle = body.get("settingsToggle")
        if request.method == "POST" and toggle in (None, ""):
            raise ApiError(400, "settingsToggle is required")
        account = self.account(key)
        code = None
        if toggle not in (None, ""):
            if toggle not in SETTINGS_TOGGLES:
                raise ApiError(400, "settingsToggle must be one of the buttons of GET "
                                    "/v2/settings: " + ", ".join(SETTINGS_TOGGLES))
            code = _apply_setting(account, str(toggle))
        message = self.new(request, body, key, type="settings", kind="settings", prompt="",
                           aspect_ratio="1:1", seed=0, duration=DURATION["settings"],
                           content=SETTINGS_CONTENT, buttons=list(SETTINGS_TOGGLES))
        if code:
            self.fail(message, code)
        return self.accept(message)

    async def slash(self, request: Request, body: dict[str, Any], key: str) -> Response:
        cmd = body.get("cmd")
        if cmd in (None, ""):
            raise ApiError(400, "cmd is required")
        if cmd not in SLASH_REPLIES:
            raise ApiError(400, "cmd must be one of: relax, fast, private, stealth")
        account = self.account(key)
        code = None
        if cmd == "relax":
            account.mode = "relax"
        elif cmd == "fast":
            if account.fast_hours <= 0:
                code = "NO_FAST_HOURS"
            else:
                account.mode = "fast"
        else:
            account.stealth = True
        message = self.new(request, body, key, type="slash-commands", kind="slash", prompt="",
                           aspect_ratio="1:1", seed=0, duration=DURATION["slash"],
                           content=SLASH_REPLIES[str(cmd)])
        if code:
            self.fail(message, code)
        return self.accept(message)

    async def get_message(self, request: Request, body: dict[str, Any], key: str) -> Response:
        message = self.message(request.path_params["message_id"], key)
        raw = body.get("expireMins")
        expire = DEFAULT_EXPIRE_MINS
        if raw not in (None, ""):
            try:
                expire = float(raw)
            except (TypeError, ValueError):
                expire = math.nan
            if not math.isfinite(expire) or expire <= 0:
                raise ApiError(400, "expireMins must be a positive number of minutes")
        return JSONResponse(self.view(message, self.base_url(request), expire * 60))

    async def get_image(self, request: Request, body: dict[str, Any], key: str) -> Response:
        url = body.get("imgUrl")
        if not isinstance(url, str) or not url.strip():
            raise ApiError(400, "imgUrl is required")
        try:
            parsed = httpx.URL(url.strip())
        except (httpx.InvalidURL, TypeError):
            raise ApiError(400, "imgUrl must be an http(s) URL") from None
        if parsed.scheme not in ("http", "https"):
            raise ApiError(400, "imgUrl must be an http(s) URL")
        if self.internal(url) is None and _IMAGE_PATH.search(parsed.path):
            raise ApiError(404, "Image not found")
        data = await self.source(url.strip())
        if data is None:
            raise ApiError(404 if self.internal(url) else 400, "Could not get the image")
        return Response(data, media_type=_media_type(data))

    async def image(self, request: Request) -> Response:
        """The two CDNs: ``mj-cdn`` refuses direct fetches (403), ``cdn`` serves them."""
        family = request.path_params["family"]
        message = self.messages.get(request.path_params["message_id"])
        name = request.path_params["name"]
        if family not in ("mj-cdn", "cdn"):
            return error_response(404)
        if family == "mj-cdn":
            return Response("Forbidden: this CDN does not allow direct fetches; use /getImage",
                            status_code=403, media_type="text/plain")
        if message is None or not name.endswith(".png") or not self.served(
            message, name[:-4], family
        ):
            return error_response(404, "Image not found")
        try:
            data = await run_in_threadpool(self.png, message, name[:-4])
        except Exception:
            logger.exception("sandbox thenextleg could not draw %s of %s", name, message.id)
            return error_response(500)
        return Response(data, media_type="image/png",
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})

    # ----------------------------------------------------------------- wiring
    def endpoint(self, handler: Handler) -> Callable[..., Any]:
        """Wrap ``handler(request, fields, key)`` with auth, body/query parsing, error shapes."""

        async def run(request: Request) -> Response:
            async def call() -> Response:
                key = _token(request)
                if not self.state.key_accepted(key):
                    return error_response(401)
                fields = {k: v for k, v in request.query_params.items() if k != "authToken"}
                if request.method == "POST":
                    fields.update(await http.json_body(request, _invalid))
                return await handler(request, fields, str(key))

            return await http.guarded(request, call, lambda: error_response(500), NAME)

        run.__name__ = handler.__name__
        return run

    def routes(self) -> list[Route]:
        table: list[tuple[str, Handler, list[str]]] = [
            ("/v2/imagine", self.imagine, ["POST"]),
            ("/v2/button", self.button, ["GET", "POST"]),
            ("/v2/describe", self.describe, ["GET", "POST"]),
            ("/v2/blend", self.blend, ["POST"]),
            ("/v2/seed", self.seed, ["POST"]),
            ("/v2/info", self.info, ["GET", "POST"]),
            ("/v2/settings", self.settings, ["GET", "POST"]),
            ("/v2/slash-commands", self.slash, ["GET", "POST"]),
            ("/v2/message/{message_id}", self.get_message, ["GET"]),
            ("/getImage", self.get_image, ["POST"]),
        ]
        routes = []
        for path, handler, methods in table:
            wrapped = self.endpoint(handler)
            routes.append(Route(path, wrapped, methods=methods))
            routes.append(Route(path + "/", wrapped, methods=methods))
        routes.append(
            Route("/{family:str}/attachments/{message_id}/{name}", self.image, methods=["GET"])
        )
        routes.append(Route("/{family:str}/{message_id}/{name}", self.image, methods=["GET"]))
        return routes


def build(state: SandboxState) -> Starlette:
    """The TNL app for ``state``, to mount at :data:`PREFIX`."""
    emulator = TheNextLeg(state)
    state.providers[NAME] = emulator
    return http.build_app(
        emulator.routes(), lambda request, status: error_response(status), redirect_slashes=False
    )


# ------------------------------------------------------------------------------ parsing
def _token(request: Request) -> str | None:
    if request.headers.get("authorization", "").strip():
        return http.bearer_key(request)  # the scheme is required
    return http.first_key(request.query_params.get("authToken"))


def _invalid(message: str) -> ApiError:
    return ApiError(400, message)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return value is True or value == 1


def _iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def _aspect(value: Any) -> str:
    if not isinstance(value, str):
        raise ApiError(400, f"ar must look like 16:9, not {value!r}")
    try:
        _art.aspect_size(value)
    except InvalidRequest as exc:
        raise ApiError(400, exc.message) from None
    return value.replace(" ", "")


def _flags(prompt: str) -> tuple[str, str | None]:
    """``(aspect ratio, INVALID_PARAMETER or None)`` from the ``--flags`` of ``prompt``."""
    ratio, code = "1:1", None
    for name, value in _FLAG.findall(prompt):
        lowered = name.lower()
        if lowered not in KNOWN_FLAGS:
            code = "INVALID_PARAMETER"
        elif lowered in ("ar", "aspect"):
            try:
                _art.aspect_size(value)
                ratio = value.replace(" ", "")
            except InvalidRequest:
                code = "INVALID_PARAMETER"
    return ratio, code


def _mode(prompt: str, default: str) -> str:
    """``relax``, ``turbo`` or ``fast`` from a ``--relax``/``--turbo``/``--fast`` flag, else
    ``default`` (the account's mode)."""
    match = re.search(r"(?:^|\s)--(relax|turbo|fast)\b", prompt)
    return match[1] if match else default


def _version(prompt: str, default: str) -> str:
    match = _VERSION_FLAG.search(prompt)
    return match[1] if match else default


def _magic(message: Message, prompt: str) -> None:
    """Apply the sandbox's magic words of ``prompt`` to ``message``."""
    lowered = prompt.lower()
    match = _CODE_WORD.search(prompt)
    if match and match[1] in CODES:
        if match[1] in NOTE_CODES:
            message.note = match[1]
        else:
            message.code = match[1]
            message.fail_at = message.created + FAIL_AFTER
    elif "sandbox:fail" in lowered:
        message.code = "FAILED_TO_PROCESS_YOUR_COMMAND"
        message.fail_at = message.created + message.duration / 2
    elif "sandbox:hang" in lowered:
        message.hang = True


def _upscale_buttons(parent: Message) -> list[str]:
    try:
        v6 = float(parent.version) >= 6
    except ValueError:
        v6 = False
    upscales = ["Upscale (Subtle)", "Upscale (Creative)"] if v6 else ["Upscale (2x)",
                                                                    "Upscale (4x)"]
    w, h = _art.aspect_size(parent.aspect_ratio)
    square = [] if w == h else ["Make Square"]
    return [
        "Vary (Strong)",
        "Vary (Subtle)",
        VARY_REGION,
        *upscales,
        "Zoom Out 2x",
        "Zoom Out 1.5x",
        "Custom Zoom",
        *square,
        *PANS,
    ]


def _zoom(raw: Any) -> float:
    if raw in (None, ""):
        return 2.0
    try:
        zoom = float(raw)
    except (TypeError, ValueError):
        zoom = math.nan
    if isinstance(raw, bool) or not 1 <= zoom <= 2:
        raise ApiError(400, "zoom must be a number from 1 to 2")
    return zoom


def _ratio(width: int, height: int) -> str:
    """The simple ratio nearest ``width:height`` (512×341 → ``3:2``)."""
    near = Fraction(width, height).limit_denominator(20)
    return f"{near.numerator}:{near.denominator}"


def _apply_setting(account: Account, toggle: str) -> str | None:
    """Apply one settings toggle; a content code when it cannot be applied."""
    if toggle.startswith(("MJ version ", "Niji version ")):
        account.version = toggle.rsplit(" ", 1)[1]
    elif toggle == "Public mode":
        account.stealth = False
    elif toggle == "Stealth mode":
        account.stealth = True
    elif toggle in ("Fast mode", "Turbo mode"):
        if account.fast_hours <= 0:
            return "NO_FAST_HOURS"
        account.mode = "fast" if toggle == "Fast mode" else "turbo"
    elif toggle == "Relax mode":
        account.mode = "relax"
    elif toggle == "Reset Settings":
        account.mode, account.stealth, account.version = "fast", False, "5.2"
        account.settings.clear()
    else:
        account.settings ^= {toggle}
    return None


def _media_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    return "application/octet-stream"


def _preview(grid: Image.Image, progress: int) -> Image.Image:
    """A progress preview: the result at a quarter size, blurred less as ``progress`` grows."""
    small = grid.resize((max(1, grid.width // 4), max(1, grid.height // 4)),
                        Image.Resampling.BILINEAR)
    radius = max(0.5, (100 - progress) / 100 * 10)
    return small.filter(ImageFilter.GaussianBlur(radius))


_STYLES = (
    "cinematic lighting",
    "soft pastel palette",
    "highly detailed matte painting",
    "in the style of a travel poster",
    "wide angle, atmospheric perspective",
    "oil on canvas",
    "volumetric fog",
    "muted earth tones",
    "vibrant colors, crisp focus",
    "dreamy, ethereal mood",
)
_SUBJECTS = ("a mountain valley at dusk", "a quiet shoreline", "rolling hills under clouds",
             "a misty forest", "a desert at golden hour", "a city skyline at night")


def _descriptions(hint: str, seed: int, ratio: str) -> list[str]:
    """Four describe answers (no "1️⃣" markers): the source prompt's words, restyled."""
    rng = np.random.default_rng(seed)
    base = re.sub(r"\s--\S+(\s+(?!--)\S+)?", "", hint).strip()
    out = []
    for i in range(4):
        subject = base or _SUBJECTS[int(rng.integers(len(_SUBJECTS)))]
        picks = rng.choice(len(_STYLES), size=2 + i % 2, replace=False)
        out.append(f"{subject}, {', '.join(_STYLES[int(p)] for p in picks)} --ar {ratio}")
    return out

