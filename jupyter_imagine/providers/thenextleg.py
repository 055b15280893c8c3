"""TheNextLeg (TNL), a Midjourney proxy: its v2 API at ``https://api.thenextleg.io``.

Wire facts this module relies on (``providers.md`` §2 and the seed page on Vary (Region)):

- ``Authorization: Bearer <token>``.
- Commands — ``POST /v2/imagine`` (``msg``, ``ref``, ``webhookOverride``, ``ignorePrefilter``),
  ``POST /v2/button`` (``buttonMessageId``, ``button`` exactly as the result listed it, and
  ``prompt``/``mask`` for 🖌️ Vary (Region), ``prompt``/``zoom``/``ar`` for Custom Zoom),
  ``/v2/describe``, ``/v2/blend``, ``/v2/seed``, ``GET /v2/info``, ``GET``/``POST /v2/settings``,
  ``POST /v2/slash-commands`` — all answer ``{"success": true, "messageId", "createdAt"}``; the
  result is read with ``GET /v2/message/<id>?expireMins=N`` (or arrives by webhook).
- A message is ``{"progress": 37, "progressImageUrl": …}`` while running and
  ``{"progress": 100, "response": {…}}`` when done; the docs' flat form (the result fields at the
  top level) is read too. ``progress`` is an int, a numeric string, or ``"incomplete"`` once
  ``expireMins`` passed without a result: the job then **fails** with a reason saying so (it is not
  polled forever, and it is not a ``JobTimeout``: TNL itself gave up).
- The result's ``buttons`` list is the only source of a job's actions: each TNL button text is
  mapped to the unified label (``"🖌️ Vary (Region)"`` → ``"Vary (Region)"``) and back to the
  exact text when pressed. Labels beyond the Midjourney set: ``Custom Zoom``, ``Make Square``.
- Errors come as the Midjourney bot's answer in ``content``: a content code (``BANNED_PROMPT``,
  ``QUEUE_FULL`` …). :data:`CODES` maps each to a status, an exception class and the seed's own
  words; a failed job's ``error`` is those words, ``error_type`` the class name and
  ``extras["code"]`` the code (codes that do not end a job, ``JOB_QUEUED`` and
  ``APPEAL_ACCEPTED``, land in ``extras["note"]``). HTTP errors are
  ``{"success": false, "msg": …}``; the prefilter's 400 ``Invalid phrase: …`` is a
  :class:`~jupyter_imagine.errors.ModeratedPrompt`.
- Images: a grid's ``imageUrl`` is Midjourney's CDN, which refuses direct fetches (403);
  :meth:`TheNextLeg.download` then goes through ``POST /getImage``. ``imageUrls`` are the four
  split images.

Parameters of a new job (all optional): ``ref``, ``webhook_override`` (→ ``webhookOverride``),
``ignore_prefilter`` (not sent unless given), ``expire_mins`` (sent as ``expireMins`` on every
poll; default 12); ``url`` for describe, ``urls`` for blend, ``message_id`` for seed.

Choices:

- ``QUEUE_FULL`` raised at submit (an HTTP error or a ``success: false`` answer carrying the
  code) is a :class:`~jupyter_imagine.errors.RateLimited`, so the engine backs off and sends
  again: nothing was started. Arriving later as a message's content, it fails the job with
  ``error_type`` ``RateLimited`` and is **not** resent automatically — the engine never
  resubmits a request the server accepted; start the job again.
- ``ignorePrefilter`` is sent as the string ``"true"``/``"false"``, like the docs' sample.
- A grid message with only ``imageUrl`` (older payloads) gives a job with a ``grid`` and no
  split ``images``; a single-image message gives one image.
- A running message with ``progress`` 0 and no preview is shown as ``queued``.
- TNL has no cancel: cancelling stops our polling only.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import httpx

from .._secrets import get_logger
from ..errors import (
    ActionNotAvailable,
    ImagineError,
    InvalidMask,
    InvalidRequest,
    JobFailed,
    ModeratedPrompt,
    PermissionDenied,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
)
from ..models import ACTION_LABELS, REROLL, VARY_REGION, Balance, Image, Job, Status, utcnow
from ._base import (
    ChildSpec,
    ParamSpec,
    Provider,
    Submission,
    Update,
    idempotent,
    new_prompt,
)
from ._midjourney import no_extra, vary_region_mask

__all__ = [
    "CODES",
    "STATUS_MAP",
    "Outcome",
    "TheNextLeg",
    "content_code",
    "tnl_button_label",
    "unified_label",
]

logger = get_logger(__name__)

#: ``expireMins`` sent on every poll unless the job says otherwise (TNL's own default).
EXPIRE_MINS = 12
#: Labels TNL offers beyond the Midjourney set of :data:`~jupyter_imagine.models.ACTION_LABELS`.
CUSTOM_ZOOM = "Custom Zoom"
MAKE_SQUARE = "Make Square"
SLASH_COMMANDS = ("relax", "fast", "private", "stealth")


@dataclass(frozen=True)
class Outcome:
    """What a content code (or ``progress: "incomplete"``) means for a job.

    Attributes:
        status: the job's status while the message says this.
        error: the exception class of a failure (its name becomes ``job.error_type``), or
            ``None`` when the code is not an error.
        text: the human-readable words (the seed page's, with "Midjourney" for its redaction).
        hint: how to get past it, added to a failed job's error (default none).
    """

    status: Status
    error: type[ImagineError] | None
    text: str
    hint: str = ""

    @property
    def message(self) -> str:
        """:attr:`text`, with :attr:`hint` after a semicolon when there is one."""
        return f"{self.text}; {self.hint}" if self.hint else self.text


#: The one table: every content code of the seed page, plus ``incomplete``, → its outcome.
CODES: dict[str, Outcome] = {
    "ALREADY_REQUESTED_UPSCALE": Outcome(
        Status.FAILED, InvalidRequest, "You've already requested an upscale for this image"
    ),
    "BOT_TOOK_TOO_LONG_TO_PROCESS_YOUR_COMMAND": Outcome(
        Status.FAILED, ServiceUnavailable, "Midjourney Bot took too long to process your command"
    ),
    "APPEAL_ACCEPTED": Outcome(Status.RUNNING, None, "Your appeal has been accepted"),
    "APPEAL_REJECTED": Outcome(Status.FAILED, ModeratedPrompt, "Your appeal has been rejected"),
    "BANNED_PROMPT": Outcome(Status.FAILED, ModeratedPrompt, "You can't use this prompt"),
    "BLOCKED": Outcome(Status.FAILED, ModeratedPrompt, "This message has been blocked"),
    "BUTTON_NOT_FOUND": Outcome(Status.FAILED, ActionNotAvailable, "Button not found"),
    "FAILED_TO_PROCESS_YOUR_COMMAND": Outcome(
        Status.FAILED, ProviderError, "Midjourney failed to process your command"
    ),
    "FAILED_TO_REQUEST": Outcome(Status.FAILED, ServiceUnavailable, "Failed to request"),
    "IMAGE_BLOCKED": Outcome(Status.FAILED, ModeratedPrompt, "This image has been blocked"),
    "INTERNAL_ERROR": Outcome(
        Status.FAILED, ServiceUnavailable, "Midjourney had an internal error"
    ),
    "INVALID_LINK": Outcome(Status.FAILED, InvalidRequest, "Invalid link"),
    "INVALID_PARAMETER": Outcome(Status.FAILED, InvalidRequest, "Invalid parameter"),
    "JOB_ACTION_RESTRICTED": Outcome(Status.FAILED, PermissionDenied, "Job action restricted"),
    "JOB_QUEUED": Outcome(Status.QUEUED, None, "Job queued"),
    "MODERATION_OUTAGE": Outcome(
        Status.FAILED, ServiceUnavailable, "There is a content moderator outage"
    ),
    "NO_FAST_HOURS": Outcome(
        Status.FAILED, QuotaExceeded, "You've ran out of fast hours",
        "buy fast hours on midjourney.com, switch to relax mode "
        "(client('thenextleg').slash_command('relax')) or wait for the plan to renew",
    ),
    "PLEASE_SUBSCRIBE_TO_MJ_IN_YOUR_DASHBOARD": Outcome(
        Status.FAILED, QuotaExceeded, "You're not subscribed to Midjourney",
        "subscribe to a Midjourney plan in the TheNextLeg dashboard",
    ),
    "QUEUE_FULL": Outcome(Status.FAILED, RateLimited, "Queue full"),
    "incomplete": Outcome(
        Status.FAILED,
        JobFailed,
        "TheNextLeg reported the message as incomplete: no result came within expireMins, so "
        "the message expired; start the job again (or give a larger expire_mins)",
    ),
}
#: TNL's states (its content codes and ``incomplete``) → the five statuses; made from :data:`CODES`.
STATUS_MAP: dict[str, Status] = {code.lower(): o.status for code, o in CODES.items()}

_TEXT_TO_CODE = {o.text.lower(): code for code, o in CODES.items()}
_CODE_PREFIX = re.compile(r"^\s*([A-Z][A-Z_]{3,})(?=$|[\s:.,;!-])")

# ----------------------------------------------------------------------------- labels
_KNOWN_LABELS = frozenset({*ACTION_LABELS, CUSTOM_ZOOM, MAKE_SQUARE})
_ARROWS = {"⬅": "⬅️", "➡": "➡️", "⬆": "⬆️", "⬇": "⬇️"}
_ALIASES = {"Make Variations": "Vary (Strong)", "Upscale (Max)": "Upscale (4x)"}
#: The text TNL uses for a unified label, when we must send one we have not seen (tests, docs).
_TNL_TEXT = {VARY_REGION: "🖌️ Vary (Region)"}

#: Unified label → the child job's kind.
LABEL_KINDS: dict[str, str] = {
    **{f"U{i}": "upscale" for i in range(1, 5)},
    **{f"V{i}": "variation" for i in range(1, 5)},
    REROLL: "reroll",
    VARY_REGION: "vary_region",
    "Vary (Strong)": "variation",
    "Vary (Subtle)": "variation",
    "Upscale (Subtle)": "upscale",
    "Upscale (Creative)": "upscale",
    "Upscale (2x)": "upscale",
    "Upscale (4x)": "upscale",
    "Zoom Out 2x": "outpaint",
    "Zoom Out 1.5x": "outpaint",
    CUSTOM_ZOOM: "outpaint",
    MAKE_SQUARE: "outpaint",
    "⬅️": "pan",
    "➡️": "pan",
    "⬆️": "pan",
    "⬇️": "pan",
}


def unified_label(button: Any) -> str | None:
    """The unified action label for a TNL button text, or ``None`` for a button that starts no
    job (``❤️``, ``Web`` …).

    ``"🖌️ Vary (Region)"`` → ``"Vary (Region)"``, ``"🪄 Vary (Strong)"`` → ``"Vary (Strong)"``,
    ``"⬅"`` → ``"⬅️"``; labels already in the vocabulary are returned as they are.
    """
    if not isinstance(button, str):
        return None
    text = " ".join(button.split())
    if text in _KNOWN_LABELS:
        return text
    bare = text.replace("\ufe0f", "")
    if bare in _ARROWS:
        return _ARROWS[bare]
    if bare == REROLL:
        return REROLL
    stripped = re.sub(r"^[^\w(]+", "", text).strip()
    if stripped in _KNOWN_LABELS:
        return stripped
    return _ALIASES.get(stripped)


def tnl_button_label(label: str, buttons: Any = None) -> str:
    """The exact TNL button text for unified ``label``: the first of ``buttons`` that maps to it,
    else TNL's usual text for it.
    """
    for button in buttons or ():
        if unified_label(button) == label:
            return str(button)
    return _TNL_TEXT.get(label, label)


# ----------------------------------------------------------------------------- params
class _UrlList(ParamSpec):
    def coerce(self, value: Any, provider: str) -> Any:
        if isinstance(value, str):
            value = value.replace(",", " ").split()
        if not isinstance(value, (list, tuple)) or not all(isinstance(u, str) for u in value):
            raise self.invalid(provider, "be a list of image URLs", value)
        return [u.strip() for u in value if u.strip()]


def _check_url(url: Any, what: str) -> str:
    if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url.strip()):
        raise InvalidRequest(f"{what} must be an http(s) URL, not {url!r}", provider="thenextleg")
    return url.strip()


_COMMON = ("ref", "webhook_override", "expire_mins")
KIND_PARAMS: dict[str, tuple[str, ...]] = {
    "imagine": (*_COMMON, "ignore_prefilter"),
    "describe": (*_COMMON, "url"),
    "blend": (*_COMMON, "urls"),
    "seed": ("expire_mins", "message_id"),
    "info": _COMMON,
}
#: Job kinds whose result is a 2×2 grid.
GRID_KINDS = frozenset(
    {"imagine", "reroll", "variation", "vary_region", "outpaint", "pan", "blend"}
)


class TheNextLeg(Provider):
    """The TheNextLeg v2 client.

    Kinds from Python: ``imagine`` (the prompt is the ``msg``), ``describe`` (``url=`` or the
    prompt is the image URL), ``blend`` (``urls=[…]``, 2–5, or the prompt lists them), ``seed``
    (of the ``parent=`` job, or ``message_id=``) and ``info`` (the account). Actions are the
    buttons of each result (U1–U4, V1–V4, 🔄 on a grid; Vary (Strong/Subtle/Region), Upscale (…),
    Zoom Out, Custom Zoom, Make Square and the pans on an upscale). Other calls, through
    ``jupyter_imagine.client("thenextleg")``: :meth:`info`, :meth:`settings`,
    :meth:`set_setting`, :meth:`slash_command`, :meth:`get_image`.
    """

    name: ClassVar[str] = "thenextleg"
    label: ClassVar[str] = "TheNextLeg"
    env_key: ClassVar[str] = "THENEXTLEG_API_KEY"
    default_base_url: ClassVar[str] = "https://api.thenextleg.io"
    sandbox_prefix: ClassVar[str] = "/thenextleg"
    status_map: ClassVar[Mapping[str, Status]] = STATUS_MAP
    max_concurrency: ClassVar[int] = 10  # Midjourney queues 10 jobs per account at most
    poll_interval: ClassVar[tuple[float, float]] = (2.0, 10.0)
    default_timeout: ClassVar[float] = 1200.0  # past expireMins=12: TNL's "incomplete" comes first
    kinds: ClassVar[tuple[str, ...]] = ("imagine", "describe", "blend", "seed", "info")
    #: Midjourney counts fast GPU time; neither it nor TheNextLeg publishes a price per job
    #: (only that an average job takes about a GPU minute), so PRICES is empty and every job's
    #: price is NA unless the user prices a kind (``{"thenextleg": {"imagine": 60}}``).
    PRICE_UNIT: ClassVar[str | None] = "fast_seconds"
    PRICE_KEYS: ClassVar[tuple[str, ...]] = (
        "imagine", "reroll", "variation", "vary_region", "outpaint", "pan", "upscale",
        "describe", "blend", "seed",
    )
    #: ``expireMins`` sent on every poll when the job does not set ``expire_mins`` (default 12).
    expire_mins: ClassVar[int] = EXPIRE_MINS
    params: ClassVar[Mapping[str, ParamSpec]] = {
        "ref": ParamSpec("ref", help="any text; TNL echoes it back in the result and webhook"),
        "webhook_override": ParamSpec(
            "webhook_override", help="TNL posts the result here instead of your dashboard webhook"
        ),
        "ignore_prefilter": ParamSpec(
            "ignore_prefilter",
            type=bool,
            help="skip TNL's banned-phrase prefilter (default false; Midjourney still moderates)",
        ),
        "expire_mins": ParamSpec(
            "expire_mins",
            type=int,
            minimum=1,
            default=EXPIRE_MINS,
            help="minutes after which TNL reports the message incomplete (default 12)",
        ),
        "url": ParamSpec("url", help="describe: the image to describe (default: the prompt)"),
        "urls": _UrlList("urls", type=list, help="blend: 2 to 5 image URLs"),
        "message_id": ParamSpec(
            "message_id", help="seed: the TNL messageId of a finished job (default: the parent's)"
        ),
    }

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    # ------------------------------------------------------------------ errors
    def error_message(self, response: httpx.Response, body: Any) -> str:
        if isinstance(body, dict):
            for key in ("msg", "error", "message", "content"):
                value = body.get(key)
                if isinstance(value, str) and value.strip():
                    return value.strip()
        return super().error_message(response, body)

    def classify_error(self, response: httpx.Response, message: str) -> type[ProviderError] | None:
        code = content_code(message)
        if code is not None and CODES[code].error is not None:
            return CODES[code].error
        lowered = message.lower()
        if "invalid phrase" in lowered or "banned" in lowered:
            return ModeratedPrompt
        if "mask" in lowered and response.status_code in (400, 422):
            return InvalidMask
        return None

    def _raise_for_answer(self, data: Any, status: int = 200) -> None:
        """Raise the typed error of a ``{"success": false, …}`` answer that came with a 2xx."""
        if not isinstance(data, dict) or data.get("success") is not False:
            return
        message = self.error_message(httpx.Response(status), data) or "request refused"
        code = content_code(message)
        cls: type[ImagineError] = InvalidRequest
        if code is not None and CODES[code].error is not None:
            cls = CODES[code].error  # type: ignore[assignment]
            message = f"{CODES[code].text} ({code})" + (
                f"; {CODES[code].hint}" if CODES[code].hint else ""
            )
        elif "invalid phrase" in message.lower():
            cls = ModeratedPrompt
        raise cls(f"{self.label} refused the request: {message}", provider=self.name)

    # ------------------------------------------------------------------ validation
    def validate(self, kind: str, prompt: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Check a new job; see :data:`KIND_PARAMS` for the parameters each kind takes."""
        allowed = self._kind_params(KIND_PARAMS, kind)
        out: dict[str, Any] = {}
        for key, value in params.items():
            name = key.replace("-", "_")
            if name not in allowed:
                raise InvalidRequest(
                    f"unknown parameter {key!r} for a {self.name} {kind} job; it accepts: "
                    f"{', '.join(sorted(allowed))}",
                    provider=self.name,
                )
            if value is not None:
                out[name] = self.params[name].coerce(value, self.name)
        prompt = prompt.strip() if isinstance(prompt, str) else prompt
        if not isinstance(prompt, str):
            raise InvalidRequest("the prompt must be a string", provider=self.name)
        if kind == "imagine" and not prompt:
            raise InvalidRequest(
                f"the prompt is empty; give {self.label} something to draw", provider=self.name
            )
        if kind == "describe":
            out["url"] = _check_url(out.get("url") or prompt, "the image to describe")
        elif kind == "blend":
            urls = out.get("urls") or prompt.replace(",", " ").split()
            if not 2 <= len(urls) <= 5:
                raise InvalidRequest(
                    f"blend takes 2 to 5 image URLs, not {len(urls)}", provider=self.name
                )
            out["urls"] = [_check_url(u, "each blend image") for u in urls]
        return out

    # ------------------------------------------------------------------ actions
    def buttons(self, job: Job) -> list[str]:
        """The TNL button texts of ``job``'s result (from its extras, else its raw payload)."""
        buttons = job.extras.get("buttons")
        if buttons is None:
            response = _response_of(job.raw) if job.raw else None
            buttons = response.get("buttons") if response else None
        return [b for b in buttons if isinstance(b, str)] if isinstance(buttons, list) else []

    def actions(self, job: Job) -> tuple[str, ...]:
        """The unified labels of the buttons ``job``'s result lists, in its order."""
        if job.status is not Status.SUCCEEDED:
            return ()
        labels: list[str] = []
        for button in self.buttons(job):
            label = unified_label(button)
            if label is not None and label in LABEL_KINDS and label not in labels:
                labels.append(label)
        return tuple(labels)

    def child(self, job: Job, label: str, **kwargs: Any) -> ChildSpec:
        """The child job of unified ``label``, pressing the exact button text ``job`` listed.

        Keyword arguments: ``prompt`` (🔄, Vary (Region), Custom Zoom), ``mask`` (Vary (Region),
        required), ``zoom`` (Custom Zoom, 1–2, default 2) and ``ar`` (Custom Zoom, default the
        parent's). ``ref``, ``webhook_override`` and ``expire_mins`` are inherited.
        """
        kind = LABEL_KINDS.get(label)
        buttons = self.buttons(job)
        button = next((b for b in buttons if unified_label(b) == label), None)
        if kind is None or button is None:
            offered = ", ".join(self.actions(job)) or "none"
            raise ActionNotAvailable(
                f"this {self.label} result has no {label!r} button; it offers: {offered}",
                provider=self.name,
            )
        params: dict[str, Any] = {
            k: job.params[k] for k in _COMMON if job.params.get(k) is not None
        }
        params["button"] = button
        prompt = new_prompt(kwargs)
        if label[0] in "UV" and label[1:].isdigit():
            params["index"] = int(label[1])
        files: dict[str, bytes] = {}
        if label == VARY_REGION:
            files["mask"] = vary_region_mask(label, job, kwargs, grid=True)
            params["send_prompt"] = True
        elif label == CUSTOM_ZOOM:
            zoom = kwargs.pop("zoom", 2)
            ar = kwargs.pop("ar", None) or kwargs.pop("aspect_ratio", None)
            no_extra(label, kwargs)
            try:
                zoom = float(zoom)
            except (TypeError, ValueError):
                zoom = -1.0
            if not 1 <= zoom <= 2:
                raise InvalidRequest(f"Custom Zoom takes zoom from 1 to 2, not {zoom!r}")
            params["zoom"] = zoom
            if ar:
                params["ar"] = str(ar).replace(" ", "")
            params["send_prompt"] = True
        elif label == REROLL:
            no_extra(label, kwargs)
            if prompt is not None:
                params["send_prompt"] = True
        else:
            no_extra(label, kwargs)
            if prompt is not None:
                raise InvalidRequest(f"{label} takes no prompt on {self.label}")
        return ChildSpec(kind, (prompt or job.prompt).strip(), params, files=files)

    # ------------------------------------------------------------------ wire
    async def submit(self, job: Job, parent: Job | None) -> Submission:
        params = job.params
        body: dict[str, Any] = {}
        if params.get("ref") is not None:
            body["ref"] = params["ref"]
        if params.get("webhook_override"):
            body["webhookOverride"] = params["webhook_override"]
        method, path = "POST", ""
        if params.get("button"):
            if parent is None or not parent.remote_id:
                raise InvalidRequest(f"a {job.kind} job needs a submitted parent message")
            path = "/v2/button"
            body["buttonMessageId"] = parent.extras.get("button_message_id") or parent.remote_id
            body["button"] = params["button"]
            if params.get("send_prompt"):
                body["prompt"] = job.prompt
            if params.get("mask_path"):
                with open(params["mask_path"], "rb") as fh:
                    body["mask"] = base64.b64encode(fh.read()).decode("ascii")  # bare, no data:
            for key in ("zoom", "ar"):
                if params.get(key) is not None:
                    body[key] = params[key]
        elif job.kind == "imagine":
            path = "/v2/imagine"
            body["msg"] = job.prompt
            if params.get("ignore_prefilter") is not None:
                body["ignorePrefilter"] = "true" if params["ignore_prefilter"] else "false"
        elif job.kind == "describe":
            path, body["url"] = "/v2/describe", params["url"]
        elif job.kind == "blend":
            path, body["urls"] = "/v2/blend", list(params["urls"])
        elif job.kind == "seed":
            target = params.get("message_id") or (parent.remote_id if parent else None)
            if not target:
                raise InvalidRequest(
                    "a seed job needs the job to read the seed of: parent=job or message_id="
                )
            path, body = "/v2/seed", {"messageId": target}
        elif job.kind == "info":
            method, path = "GET", "/v2/info"
        else:
            raise InvalidRequest(f"{self.label} cannot start a {job.kind!r} job")
        if method == "GET":
            query = {k: v for k, v in body.items() if isinstance(v, str)}
            response = await self._send("GET", path, params=query)
        else:
            response = await self._send("POST", path, json=body)
        message_id, data = self._accepted(response, job.kind)
        return Submission(remote_id=message_id, raw=data)

    def _accepted(self, response: httpx.Response, what: str) -> tuple[str, Any]:
        """The ``messageId`` of a command's answer and the answer (its failure code raised)."""
        data = _json(response, self.label)
        self._raise_for_answer(data, response.status_code)
        message_id = data.get("messageId") if isinstance(data, dict) else None
        if not message_id:
            raise ProviderError(
                f"{self.label} accepted the {what} request but returned no messageId: "
                f"{str(data)[:120]}",
                provider=self.name,
            )
        return str(message_id), data

    def _expire(self, job: Job | None) -> int:
        value = job.params.get("expire_mins") if job is not None else None
        return int(value) if value else int(self.expire_mins)

    async def poll(self, job: Job) -> Update:
        body = await self._message(str(job.remote_id), self._expire(job))
        return self.parse(body, kind=job.kind)

    async def _message(self, message_id: str, expire_mins: int) -> Any:
        response = await self._send(
            "GET", f"/v2/message/{message_id}", params={"expireMins": expire_mins}
        )
        return _json(response, self.label)

    async def download(self, url: str) -> bytes:
        """The bytes behind ``url``: a direct GET, else ``POST /getImage`` when the CDN says 403."""
        try:
            response = await self._send("GET", url, authorized=False)
        except PermissionDenied:
            logger.debug("%s: direct fetch refused (403), using /getImage", self.name)
            return await self.get_image(url)
        return response.content

    # ------------------------------------------------------------------ other calls
    @idempotent
    async def get_image(self, url: str) -> bytes:
        """``POST /getImage``: the bytes of a Midjourney CDN image that refuses direct fetches."""
        _check_url(url, "url")
        response = await self._send("POST", "/getImage", json={"imgUrl": url})
        if "json" in response.headers.get("content-type", ""):
            self._raise_for_answer(_json(response, self.label))
            raise ProviderError(
                f"{self.label} /getImage answered JSON instead of an image", provider=self.name
            )
        return response.content

    @idempotent
    async def info(self) -> dict[str, Any]:
        """``GET /v2/info``, waited for: the account, e.g. ``{"Fast Time Remaining": …,
        "Job Mode": "Fast", …}``."""
        response = await self._send("GET", "/v2/info")
        message = await self._await(response, "info")
        return _info(message.get("content"))

    @idempotent
    async def settings(self) -> list[str]:
        """``GET /v2/settings``, waited for: the setting toggles (``"Fast mode"`` …) that
        :meth:`set_setting` accepts."""
        response = await self._send("GET", "/v2/settings")
        message = await self._await(response, "settings")
        return [b for b in message.get("buttons") or [] if isinstance(b, str)]

    async def set_setting(self, toggle: str) -> list[str]:
        """``POST /v2/settings`` with ``settingsToggle`` (one of :meth:`settings`), waited for;
        returns the toggles offered afterwards."""
        if not isinstance(toggle, str) or not toggle.strip():
            raise InvalidRequest("give the setting to toggle, e.g. set_setting('Relax mode')")
        response = await self._send("POST", "/v2/settings", json={"settingsToggle": toggle})
        message = await self._await(response, "settings")
        return [b for b in message.get("buttons") or [] if isinstance(b, str)]

    async def slash_command(self, cmd: str) -> str:
        """``POST /v2/slash-commands`` with ``cmd`` (``relax``, ``fast``, ``private`` or
        ``stealth``), waited for; returns Midjourney's answer."""
        cmd = str(cmd).strip().lstrip("/").lower()
        if cmd not in SLASH_COMMANDS:
            raise InvalidRequest(
                f"{self.label} slash command must be one of {', '.join(SLASH_COMMANDS)}, "
                f"not {cmd!r}"
            )
        response = await self._send("POST", "/v2/slash-commands", json={"cmd": cmd})
        message = await self._await(response, "slash")
        content = message.get("content")
        return content if isinstance(content, str) else str(content or "")

    @idempotent
    async def balance(self) -> Balance | None:
        """``/v2/info``'s ``Fast Time Remaining`` (``"12.06/15.0 hours (80.37%)"``) as
        ``fast_seconds`` left and the plan's total as its limit; the plan and its renewal day
        from ``Subscription`` when given. Relax mode has no allowance to report."""
        info = await self.info()
        amounts, limits = _fast_time(info.get("Fast Time Remaining"))
        if not amounts:
            raise ProviderError(
                f"{self.label} /info gave no 'Fast Time Remaining': {str(info)[:80]}",
                provider=self.name,
            )
        plan, renews = _subscription(info.get("Subscription"))
        return Balance(self.name, amounts, utcnow(), plan=plan, limits=limits,
                       resets_at=renews)

    def quota_message(self, answer: str) -> str:
        return (
            f"TheNextLeg's Midjourney account has no fast hours left ({answer}); buy fast "
            "hours on midjourney.com, switch to relax mode or wait for the plan to renew"
        )

    async def _await(self, response: httpx.Response, what: str) -> dict[str, Any]:
        """Poll the message a command answered until it is done; its response object.

        Polls every 0.02 s in the sandbox (1 s on the real service), growing ×1.5 up to 0.5 s
        (5 s); gives up when TNL reports ``incomplete`` or ``expireMins`` (plus a minute)
        passed. A failure code raises its typed error.
        """
        message_id, _ = self._accepted(response, what)
        delay, longest = (0.02, 0.5) if self.sandbox else (1.0, 5.0)
        deadline = time.monotonic() + self.expire_mins * 60 + 60
        while True:
            body = await self._message(message_id, self.expire_mins)
            update = self.parse(body, kind=what)
            if update.status is Status.SUCCEEDED:
                return _response_of(body) or {}
            if update.status is Status.FAILED:
                cls = CODES.get(str(update.extras.get("code")), CODES["incomplete"]).error
                cls = cls or ProviderError
                if cls is JobFailed:
                    cls = ProviderError
                raise cls(f"{self.label} {what}: {update.error}", provider=self.name)
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"{self.label} {what}: no answer within {self.expire_mins} minutes",
                    provider=self.name,
                )
            await asyncio.sleep(delay)
            delay = min(longest, delay * 1.5)

    # ------------------------------------------------------------------ parsing
    def parse(self, body: Any, kind: str | None = None) -> Update:
        """The :class:`Update` for a ``GET /v2/message`` answer or a webhook body.

        Args:
            body: nested (``{"progress", "response": {…}}``) or flat (result fields at the top).
            kind: the job's kind (default ``None``: guessed — four ``imageUrls`` make a grid).
        """
        if not isinstance(body, Mapping):
            raise ProviderError(
                f"{self.label} sent a message that is not a JSON object: {str(body)[:80]}",
                provider=self.name,
            )
        raw = dict(body)
        progress_value = body.get("progress")
        if isinstance(progress_value, str) and progress_value.strip().lower() == "incomplete":
            outcome = CODES["incomplete"]
            return Update(
                status=Status.FAILED,
                error=outcome.text,
                error_type=outcome.error.__name__ if outcome.error else None,
                extras={"code": "incomplete"},
                raw=raw,
            )
        progress = _progress(progress_value)
        response = _response_of(body)
        preview = body.get("progressImageUrl")
        preview = preview if isinstance(preview, str) and preview else None
        extras = _extras(response) if response else {}
        code = _failure_code(response)
        if code is not None:
            outcome = CODES[code]
            if outcome.status is Status.FAILED:
                extras["code"] = code
                return Update(
                    status=Status.FAILED,
                    error=outcome.message,
                    error_type=outcome.error.__name__ if outcome.error else "JobFailed",
                    extras=extras,
                    raw=raw,
                )
            extras["note"] = code  # JOB_QUEUED, APPEAL_ACCEPTED: the job goes on
            return Update(
                status=outcome.status, progress=progress, preview_url=preview, extras=extras,
                raw=raw,
            )
        if response is not None and (
            progress is None or progress >= 100 or _has_result(response)
        ):
            update = Update(status=Status.SUCCEEDED, progress=100.0, extras=extras, raw=raw)
            if kind not in ("describe", "seed", "info", "settings", "slash"):
                update.images, update.grid = _images(response, kind)
            return update
        status = Status.QUEUED if not progress and preview is None else Status.RUNNING
        return Update(
            status=status,
            progress=min(progress, 99.0) if progress is not None else None,
            preview_url=preview,
            extras=extras,
            raw=raw,
        )


# ----------------------------------------------------------------------------- helpers
_RESPONSE_FIELDS = (
    "buttons",
    "imageUrl",
    "imageUrls",
    "originatingMessageId",
    "buttonMessageId",
    "content",
    "responseAt",
    "seed",
)


def _response_of(body: Any) -> dict[str, Any] | None:
    """The result object of a message: nested under ``response``, or the flat body itself."""
    if not isinstance(body, Mapping):
        return None
    nested = body.get("response")
    if isinstance(nested, Mapping):
        return dict(nested)
    if any(body.get(key) not in (None, "", []) for key in _RESPONSE_FIELDS):
        return dict(body)
    return None


def content_code(text: Any) -> str | None:
    """The content code ``text`` is (``"QUEUE_FULL"``), starts with (``"QUEUE_FULL: …"``) or
    spells out in the seed's words (``"Queue full"``), else ``None``."""
    if not isinstance(text, str) or not text.strip():
        return None
    stripped = text.strip()
    if stripped in CODES and stripped != "incomplete":
        return stripped
    match = _CODE_PREFIX.match(stripped)
    if match and match[1] in CODES:
        return match[1]
    return _TEXT_TO_CODE.get(stripped.rstrip(".!").lower())


def _failure_code(response: Mapping[str, Any] | None) -> str | None:
    """The content code of a result that carries no image (a code beside images is a prompt)."""
    if response is None or response.get("imageUrl") or response.get("imageUrls"):
        return None
    for key in ("content", "error", "msg"):
        code = content_code(response.get(key))
        if code is not None:
            return code
    return None


def _has_result(response: Mapping[str, Any]) -> bool:
    content = response.get("content")
    return bool(
        response.get("imageUrl")
        or response.get("imageUrls")
        or isinstance(content, (list, dict))
        or response.get("seed") not in (None, "")
    )


def _progress(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip().rstrip("%"))
    except ValueError:
        return None
    if number != number:  # NaN
        return None
    return max(0.0, min(100.0, number))


def _images(response: Mapping[str, Any], kind: str | None) -> tuple[list[Image], Image | None]:
    urls = [u for u in response.get("imageUrls") or [] if isinstance(u, str) and u]
    single = response.get("imageUrl") if isinstance(response.get("imageUrl"), str) else None
    grid_kind = kind in GRID_KINDS if kind else len(urls) > 1
    if len(urls) > 1:
        images = [Image(url=u, index=i + 1) for i, u in enumerate(urls)]
        return images, Image(url=single, role="grid") if single else None
    if urls:
        grid = Image(url=single, role="grid") if single and grid_kind else None
        return [Image(url=urls[0])], grid
    if single:
        return ([], Image(url=single, role="grid")) if grid_kind else ([Image(url=single)], None)
    return [], None


_KEYCAP = re.compile(r"^\s*(?:[1-9]\ufe0f?\u20e3|\d+[.)])\s*")


def _prompts(content: Any) -> list[str]:
    if isinstance(content, str):
        parts = re.split(r"\n\s*\n|\n(?=\s*[1-9]\ufe0f?\u20e3)", content)
        content = [p for p in parts if p.strip()]
    if not isinstance(content, list):
        return []
    return [_KEYCAP.sub("", str(p)).strip() for p in content if str(p).strip()]


def _info(content: Any) -> dict[str, Any]:
    if isinstance(content, Mapping):
        return dict(content)
    out: dict[str, Any] = {}
    for line in str(content or "").splitlines():
        key, sep, value = line.replace("**", "").partition(":")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


_FAST_TIME = re.compile(r"([\d.]+)\s*/\s*([\d.]+)\s*hours?", re.IGNORECASE)
_RENEWS = re.compile(r"renews next on ([A-Za-z]+ \d{1,2})")


def _fast_time(text: Any) -> tuple[dict[str, float], dict[str, float]]:
    """``"12.06/15.0 hours (80.37%)"`` → ``({"fast_seconds": …}, {"fast_seconds": …})``."""
    match = _FAST_TIME.search(str(text or ""))
    if match is None:
        return {}, {}
    try:
        left, total = float(match.group(1)), float(match.group(2))
    except ValueError:
        return {}, {}
    return {"fast_seconds": left * 3600}, {"fast_seconds": total * 3600}


def _subscription(text: Any) -> tuple[str | None, datetime | None]:
    """``"Standard (Active monthly, renews next on December 20)"`` → the plan and the next
    renewal (midnight UTC of that day, this year or next)."""
    text = str(text or "").strip()
    if not text:
        return None, None
    plan = text.split("(", 1)[0].strip() or None
    match = _RENEWS.search(text)
    if match is None:
        return plan, None
    now = utcnow()
    try:
        when = datetime.strptime(f"{match.group(1)} {now.year}", "%B %d %Y")
    except ValueError:
        return plan, None
    when = when.replace(tzinfo=timezone.utc)
    if when < now - timedelta(days=1):
        when = when.replace(year=now.year + 1)
    return plan, when


def _timestamp(value: Any) -> str | None:
    """An ISO string (UTC) from TNL's ISO ``createdAt`` or v1's Firestore ``{_seconds, …}``."""
    if isinstance(value, Mapping):
        seconds = value.get("_seconds", value.get("seconds"))
        nanos = value.get("_nanoseconds", value.get("nanoseconds")) or 0
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
            try:
                when = datetime.fromtimestamp(float(seconds) + float(nanos) / 1e9, timezone.utc)
            except (OverflowError, OSError, ValueError, TypeError):
                return None
            return when.isoformat()
        return None
    if isinstance(value, str) and value.strip():
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).isoformat()
    return None


def _extras(response: Mapping[str, Any]) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    buttons = response.get("buttons")
    buttons = buttons if isinstance(buttons, list) else []
    extras["buttons"] = [b for b in buttons if isinstance(b, str)]
    for key, name in (
        ("buttonMessageId", "button_message_id"),
        ("originatingMessageId", "originating_message_id"),
        ("type", "type"),
        ("ref", "ref"),
        ("description", "description"),
    ):
        if response.get(key) not in (None, ""):
            extras[name] = response[key]
    for key, name in (("createdAt", "created_at"), ("responseAt", "response_at")):
        stamp = _timestamp(response.get(key))
        if stamp:
            extras[name] = stamp
    content = response.get("content")
    kind = response.get("type")
    if isinstance(content, list) or kind == "describe":
        extras["prompts"] = _prompts(content)
    elif isinstance(content, Mapping) or kind == "info":
        extras["info"] = _info(content)
    elif isinstance(content, str):
        extras["content"] = content
    seed = response.get("seed")
    if seed in (None, "") and kind == "seed" and isinstance(content, str):
        found = re.search(r"seed\W*(\d+)", content, re.IGNORECASE)
        seed = found[1] if found else None
    if seed not in (None, ""):
        extras["seed"] = str(seed)
    return extras


def _json(response: httpx.Response, label: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ProviderError(
            f"{label} answered {response.status_code} with a body that is not JSON: "
            f"{response.text[:80]!r}",
            provider="thenextleg",
            status_code=response.status_code,
        ) from None
