"""What every provider module implements, and the HTTP error mapping they share.

A provider translates between one service's wire format and the model. Each method makes **one
attempt**: retries, back-off, deadlines and concurrency belong to the engine, which decides from
the typed exception (:class:`~jupyter_imagine.errors.RateLimited`,
:class:`~jupyter_imagine.errors.ServiceUnavailable` with ``reached_server``) what is safe to try
again.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from .._secrets import get_logger, scrub
from ..errors import (
    AuthenticationError,
    ImagineError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
)
from ..models import Balance, Cost, Image, Job, Status

logger = get_logger(__name__)

__all__ = [
    "ChildSpec",
    "ParamSpec",
    "Provider",
    "RemoteJob",
    "Submission",
    "Update",
    "idempotent",
]


def idempotent(fn: Any) -> Any:
    """Mark a provider coroutine method as safe to retry (a read): the engine backs off and
    retries it on 5xx, 429 and network errors like a poll."""
    fn.idempotent = True
    return fn


@dataclass(frozen=True)
class ParamSpec:
    """One parameter a provider accepts for a new job.

    Attributes:
        name: the Python/magic name (``aspect_ratio``).
        type: ``str`` (default), ``int``, ``float`` or ``bool``.
        choices: allowed values, or ``None`` for any.
        default: the value sent when not given (``None``: not sent).
        help: one line for ``%imagine?`` and error messages.
        secret: never stored or shown (webhook secrets).
    """

    name: str
    type: type = str
    choices: tuple[Any, ...] | None = None
    default: Any = None
    help: str = ""
    secret: bool = False

    def coerce(self, value: Any, provider: str) -> Any:
        """``value`` converted to :attr:`type` and checked against :attr:`choices`."""
        try:
            if self.type is bool and isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                value = lowered in {"true", "1", "yes"}
            else:
                value = self.type(value)
        except (TypeError, ValueError):
            raise InvalidRequest(
                f"{provider} parameter {self.name!r} must be {self.type.__name__}, not {value!r}",
                provider=provider,
            ) from None
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise InvalidRequest(
                f"{provider} parameter {self.name!r} must be one of {allowed}, not {value!r}",
                provider=provider,
            )
        return value


@dataclass
class Update:
    """What one poll (or a synchronous answer) says about a job.

    ``None`` fields are left unchanged on the job; ``images``/``grid`` carry remote URLs that
    the engine downloads into the cache before the job is shown as succeeded.
    """

    status: Status
    progress: float | None = None
    images: list[Image] | None = None
    grid: Image | None = None
    preview_url: str | None = None
    queue_position: int | None = None
    error: str | None = None
    error_type: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class Submission:
    """The provider's answer to a submit: its id for the job, and the result if it came at once."""

    remote_id: str
    raw: dict[str, Any] = field(default_factory=dict)
    update: Update | None = None


@dataclass
class RemoteJob:
    """A job found on the provider's side (remote history pulls, ``sync_history``).

    ``update`` carries its status, images (remote URLs) and raw payload; ``created_at`` is the
    provider's own timestamp when it gives one (tz-aware UTC), else ``None``.
    """

    remote_id: str
    kind: str
    prompt: str
    update: Update
    params: dict[str, Any] = field(default_factory=dict)
    parent_remote_id: str | None = None
    created_at: Any = None


@dataclass
class ChildSpec:
    """What an action on a job starts: the child's kind, prompt and parameters.

    ``files`` holds bytes (a mask) the engine puts in the image cache; their paths reach the
    child's params as ``<name>_path`` so nothing binary sits in the store.
    """

    kind: str
    prompt: str
    params: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


class Provider:
    """Base class of the provider clients. One instance per engine, used on the engine's loop.

    Class attributes a subclass sets:
        name: the provider's name (``apiframe``).
        label: how people write it (``APIFRAME``).
        env_key: the environment variable holding its key.
        default_base_url: the real service.
        sandbox_prefix: where the sandbox mounts it (``/apiframe``).
        status_map: the provider's status strings → :class:`Status` (one table, tested).
        params: the parameters a new job accepts.
        max_concurrency: jobs in flight at once (default 8).
        poll_interval: (first, longest) seconds between polls (default ``(2.0, 15.0)``).
        default_timeout: a job's deadline in seconds (default 900).
        poll_batch: how many jobs one poll request may cover (default 1: no batching).
        extra_env: further credential variables (neuroflash: client id, client secret,
            workspace id); the first two are required for the real service (default none).
        kinds: the job kinds :meth:`validate` accepts from the Python API (default imagine).

    Public coroutine methods that are not part of this base (``account()``, ``styles()`` …) are
    reachable from Python as ``jupyter_imagine.client(name).method(...)``, run on the engine.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    env_key: ClassVar[str]
    default_base_url: ClassVar[str]
    sandbox_prefix: ClassVar[str]
    status_map: ClassVar[Mapping[str, Status]]
    params: ClassVar[Mapping[str, ParamSpec]] = {}
    max_concurrency: ClassVar[int] = 8
    poll_interval: ClassVar[tuple[float, float]] = (2.0, 15.0)
    default_timeout: ClassVar[float] = 900.0
    poll_batch: ClassVar[int] = 1
    extra_env: ClassVar[tuple[str, ...]] = ()
    kinds: ClassVar[tuple[str, ...]] = ("imagine",)

    def __init__(
        self,
        *,
        client: httpx.AsyncClient,
        base_url: str,
        api_key: str | None,
        sandbox: bool,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._extra = dict(extra or {})
        self.sandbox = sandbox

    def __repr__(self) -> str:
        where = "sandbox" if self.sandbox else self.base_url
        return f"<{type(self).__name__} {where}>"

    # ------------------------------------------------------------ to implement
    def validate(self, kind: str, prompt: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Check a new job before anything is stored or sent; returns the normalized params.

        The default checks the prompt is not empty and ``params`` against :attr:`params`.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequest(
                f"the prompt is empty; give {self.label} something to draw", provider=self.name
            )
        out: dict[str, Any] = {}
        for key, value in params.items():
            spec = self.params.get(key) or self.params.get(key.replace("-", "_"))
            if spec is None:
                known = ", ".join(sorted(self.params)) or "none"
                raise InvalidRequest(
                    f"unknown parameter {key!r} for {self.name}; it accepts: {known}",
                    provider=self.name,
                )
            if value is not None:
                out[spec.name] = spec.coerce(value, self.name)
        return out

    async def prepare(self) -> None:
        """Load what :meth:`validate` needs from the service (a style catalogue …), once per
        provider instance, before the first job is validated. Default: nothing."""

    @classmethod
    def credits(cls, record: Mapping[str, Any]) -> float | None:
        """The credits a succeeded job cost by this provider's published prices, else ``None``
        (NA). ``record`` has ``kind``, ``params``, ``raw`` and ``extras``; a cost the payload
        states is read before this is asked. Default: ``None`` (no published per-job price)."""
        return None

    # stand-in: spend P — price/cost/balance as in SPEND_INTERFACE.md, built on credits().
    PRICES: ClassVar[Mapping[str, float]] = {}
    PRICE_UNIT: ClassVar[str | None] = None
    USD_PER_UNIT: ClassVar[float | None] = None

    @classmethod
    def price(cls, kind: str, params: Mapping[str, Any]) -> Cost | None:  # stand-in: spend P
        """The expected cost of a job of ``kind`` by the published table (or the user's
        override, keyed by kind), source ``"prices"``; ``None`` where nothing is published."""
        from .._config import price_overrides

        override = price_overrides().get(cls.name, {})
        amount = override.get(kind)
        if amount is None:
            amount = cls.credits({"kind": kind, "params": dict(params), "raw": {}, "extras": {}})
        return None if amount is None else Cost(float(amount), cls.PRICE_UNIT or "credits",
                                                "prices")

    @classmethod
    def cost(cls, record: Mapping[str, Any]) -> Cost | None:  # stand-in: spend P
        """What a finished job cost: a figure its payload states, else :meth:`price` for
        succeeded jobs, else ``None``."""
        unit = cls.PRICE_UNIT or "credits"
        for source in (record.get("raw"), record.get("extras")):
            if isinstance(source, Mapping):
                for name in ("credits", "cost", "credits_used", "creditsUsed"):
                    try:
                        value = float(source[name]) if not isinstance(
                            source.get(name), bool) else -1.0
                    except (KeyError, TypeError, ValueError):
                        continue
                    if 0 <= value < float("inf"):
                        return Cost(value, unit, "provider")
        if record.get("status") != "succeeded":
            return None
        from .._config import price_overrides

        amount = price_overrides().get(cls.name, {}).get(str(record.get("kind") or "imagine"))
        amount = amount if amount is not None else cls.credits(record)
        return None if amount is None else Cost(float(amount), unit, "prices")

    async def balance(self) -> Balance | None:  # stand-in: spend P
        """What the provider reports as left; ``None`` where it exposes nothing (default)."""
        return None

    @classmethod
    def negative_prompt(cls, record: Mapping[str, Any]) -> str | None:
        """The negative prompt of a job record where this provider keeps it somewhere else than
        the common fields (``negative_prompt``/``negative_text`` parameters, ``negativePrompt``
        … in the payload, which are read first). Default: ``None``."""
        return None

    def job_kind(self, kind: str) -> str:
        """The :attr:`Job.kind` of a job started as ``kind`` (default: the same; Blockade's
        ``imagine`` is a ``skybox``, Banatie's a ``generation``)."""
        return kind

    def actions(self, job: Job) -> tuple[str, ...]:
        """The labels ``job`` offers now (only called once it succeeded). Default: none."""
        return ()

    def child(self, job: Job, label: str, **kwargs: Any) -> ChildSpec:
        """The child job the action ``label`` on ``job`` starts; raises on bad arguments."""
        raise NotImplementedError

    async def submit(self, job: Job, parent: Job | None) -> Submission:
        """Send ``job`` (one attempt). ``parent`` is set for actions."""
        raise NotImplementedError

    async def poll(self, job: Job) -> Update:
        """Where ``job`` stands now (one request)."""
        raise NotImplementedError

    async def poll_many(self, jobs: Sequence[Job]) -> list[Update]:
        """Poll several jobs; the default polls each. Order matches ``jobs``."""
        return [await self.poll(job) for job in jobs]

    async def cancel(self, job: Job) -> bool:
        """Cancel at the provider; ``False`` when the service has no cancel (default)."""
        return False

    async def remote_history(self, *, since: Any = None) -> AsyncIterator[list[RemoteJob]]:
        """Pages of the jobs the provider itself knows (default: none). Used by history pulls."""
        return
        yield  # pragma: no cover

    async def download(self, url: str) -> bytes:
        """The bytes behind an image URL the provider returned."""
        response = await self._send("GET", url, authorized=False)
        return response.content

    # ------------------------------------------------------------ shared HTTP
    def map_status(self, value: str | None) -> Status:
        """The :class:`Status` for the provider's status string (unknown → running, logged)."""
        if value is None:
            return Status.RUNNING
        status = self.status_map.get(str(value).lower())
        if status is None:
            logger.warning("%s: unknown status %r, treated as running", self.name, value)
            return Status.RUNNING
        return status

    def auth_headers(self) -> dict[str, str]:
        """Headers that carry the key (default: none)."""
        return {}

    def error_message(self, response: httpx.Response, body: Any) -> str:
        """The provider's own words from an error answer (default: the body as text)."""
        if isinstance(body, dict):
            for key in ("message", "msg", "error", "detail"):
                if isinstance(body.get(key), str) and body[key]:
                    return body[key]
        text = response.text.strip()
        return text[:200] if text and text not in ("{}", "[]") else response.reason_phrase

    def classify_error(self, response: httpx.Response, message: str) -> type[ImagineError] | None:
        """A more specific exception class for this answer, or ``None`` for the default by code."""
        return None

    async def _send(
        self,
        method: str,
        url: str,
        *,
        authorized: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """One HTTP request, with transport errors and error answers mapped to typed exceptions."""
        if not url.startswith(("http://", "https://")):
            url = self.base_url + url
        headers = dict(kwargs.pop("headers", None) or {})
        if authorized:
            headers.update(self.auth_headers())
        try:
            response = await self.client.request(method, url, headers=headers, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ServiceUnavailable(
                f"could not connect to {self.label} ({type(exc).__name__}); check your network "
                f"or {self.name.upper()}_BASE_URL",
                provider=self.name,
                reached_server=False,
            ) from None
        except httpx.TransportError as exc:
            # The request went out: a write may have been done even though no answer came.
            sent = "" if method.upper() in ("GET", "HEAD") else (
                f" after the request was sent: it may have reached {self.label}"
            )
            raise ServiceUnavailable(
                f"{self.label} did not answer ({type(exc).__name__}){sent}",
                provider=self.name,
            ) from None
        if response.is_success:
            return response
        self._raise_for_response(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_for_response(self, response: httpx.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            body = None
        message = scrub(self.error_message(response, body))
        code = response.status_code
        cls = self.classify_error(response, message)
        if cls is None:
            cls = _BY_CODE.get(code) or (ServiceUnavailable if code >= 500 else InvalidRequest)
        if cls is AuthenticationError:
            message = (
                f"{self.label} rejected the API key ({code}: {message}); "
                f"check {self.env_key}"
            )
        else:
            message = f"{self.label} answered {code}: {message}"
        kwargs: dict[str, Any] = {"provider": self.name, "status_code": code}
        if issubclass(cls, RateLimited):
            kwargs["retry_after"] = retry_after(response)
        raise cls(message, **kwargs)


_BY_CODE: dict[int, type[ImagineError]] = {
    400: InvalidRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    422: InvalidRequest,
    429: RateLimited,
}


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), else ``None``."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())

