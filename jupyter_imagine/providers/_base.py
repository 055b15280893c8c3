"""What every provider module implements, and the HTTP error mapping they share.

A provider translates between one service's wire format and the model. Each method makes **one
attempt**: retries, back-off, deadlines and concurrency belong to the engine, which decides from
the typed exception (:class:`~jupyter_imagine.errors.RateLimited`,
:class:`~jupyter_imagine.errors.ServiceUnavailable` with ``reached_server``) what is safe to try
again.
"""

from __future__ import annotations

import email.utils
import math
import numbers
import os
import time
from collections.abc import AsyncIterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from .._config import ProviderSettings, price_overrides, provider_settings, register_price_keys
from .._secrets import get_logger, scrub
from ..errors import (
    AuthenticationError,
    ConfigurationError,
    ImagineError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
)
from ..models import Balance, Cost, Image, Job, Status

logger = get_logger(__name__)

#: The provider contract's types: what a provider module builds on, re-exported by
#: :mod:`jupyter_imagine.providers`.
CONTRACT = ("ChildSpec", "ParamSpec", "Provider", "RemoteJob", "Submission", "Update")
__all__ = ["COST_FIELDS", *CONTRACT, "idempotent", "new_prompt"]


#: Payload fields that state what a job cost, in credits (none of the five documents one; read
#: in case a payload carries it: a stated figure beats a table).
COST_FIELDS = ("credits", "cost", "credits_used", "creditsUsed", "credit_cost", "creditCost")


def new_prompt(kwargs: MutableMapping[str, Any]) -> str | None:
    """Pop an action's ``prompt`` from ``kwargs``: ``None`` when not given (or ``None``), else
    the text as given.

    Raises:
        InvalidRequest: it is not text, or it is empty.
    """
    prompt = kwargs.pop("prompt", None)
    if prompt is None:
        return None
    if not isinstance(prompt, str):
        raise InvalidRequest(f"the new prompt must be text, not {type(prompt).__name__}")
    if not prompt.strip():
        raise InvalidRequest("the new prompt is empty; give it some text or leave it out")
    return prompt


def idempotent(fn: Any) -> Any:
    """Mark a provider coroutine method as safe to retry (a read): the engine backs off and
    retries it on 5xx, 429 and network errors like a poll."""
    fn.idempotent = True
    return fn


#: What a parameter of each type accepts before conversion (anything else is refused); numbers
#: include numpy's, as a batch's DataFrame cells are.
_PLAIN: dict[type, tuple[type, ...]] = {
    str: (str, numbers.Real, os.PathLike), int: (numbers.Real, str), float: (numbers.Real, str),
}


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
        minimum: the smallest number allowed, or ``None`` (default) for no bound.
    """

    name: str
    type: type = str
    choices: tuple[Any, ...] | None = None
    default: Any = None
    help: str = ""
    secret: bool = False
    minimum: float | None = None

    def coerce(self, value: Any, provider: str) -> Any:
        """``value`` converted to :attr:`type` and checked against :attr:`choices` and
        :attr:`minimum`; an ``int`` parameter refuses a fraction instead of truncating it."""
        given = value
        try:
            if not isinstance(value, _PLAIN.get(self.type, object)) or (
                    isinstance(value, bool) and self.type is not bool):
                raise TypeError(value)  # a list, a dict, an object … is never str()-ed
            if self.type is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            if self.type is bool and isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                    raise ValueError(value)
                value = lowered in {"true", "1", "yes"}
            else:
                value = self.type(value)
        except (TypeError, ValueError):
            raise self.invalid(provider, f"be {self.type.__name__}", value) from None
        if self.choices is not None and value not in self.choices:
            raise self.invalid(provider, f"be one of {', '.join(map(str, self.choices))}", value)
        if self.minimum is not None and value < self.minimum:
            raise self.invalid(provider, f"be at least {self.minimum:g}", given)
        return value

    def invalid(self, provider: str, must: str, value: Any) -> InvalidRequest:
        """The error refusing ``value``: ``<provider> parameter '<name>' must <must>, not
        <value!r>`` (``must`` e.g. ``"be at least 1"``)."""
        return InvalidRequest(
            f"{provider} parameter {self.name!r} must {must}, not {value!r}", provider=provider
        )


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
        PRICES: price key → amount in :attr:`PRICE_UNIT`, from the provider's published prices
            only (each module says where each figure comes from; default empty: nothing
            published, :meth:`price` is ``None``).
        PRICE_UNIT: the unit the provider counts in (``"credits"`` …; default ``None``).
        USD_PER_UNIT: a published conversion of one unit to US dollars (default ``None``).
        PRICE_KEYS: further price keys a user may price with ``set_price_overrides`` where
            nothing is published (default none).

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
    PRICES: ClassVar[Mapping[str, float]] = {}
    PRICE_UNIT: ClassVar[str | None] = None
    USD_PER_UNIT: ClassVar[float | None] = None
    PRICE_KEYS: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            register_price_keys(cls.name, cls.price_keys())

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

    @classmethod
    def env_settings(cls) -> ProviderSettings:
        """Where this provider's requests go, read from the environment now
        (:func:`~jupyter_imagine._config.provider_settings` with this class's variables).

        Raises:
            ConfigurationError: forced out of the sandbox with no key.
        """
        return provider_settings(cls.name, env_key=cls.env_key,
                                 default_base_url=cls.default_base_url,
                                 sandbox_prefix=cls.sandbox_prefix, extra_keys=cls.extra_env)

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

    def _kind_params(self, table: Mapping[str, Any], kind: str) -> Any:
        """``table[kind]``: what a ``kind`` job takes. A kind that is not in ``table`` is refused
        with ``<label> cannot start a '<kind>' job; it can: <kinds>``."""
        allowed = table.get(kind)
        if allowed is None:
            raise InvalidRequest(
                f"{self.label} cannot start a {kind!r} job; it can: {', '.join(self.kinds)}",
                provider=self.name,
            )
        return allowed

    async def prepare(self) -> None:
        """Load what :meth:`validate` needs from the service (a style catalogue …), once per
        provider instance, before the first job is validated. Default: nothing."""

    # ------------------------------------------------------------ spend
    @classmethod
    def price_keys(cls) -> tuple[str, ...]:
        """Every price key of this provider: :attr:`PRICES` and :attr:`PRICE_KEYS`."""
        return tuple(sorted({*cls.PRICES, *cls.PRICE_KEYS}))

    @classmethod
    def price_item(cls, kind: str, params: Mapping[str, Any]) -> tuple[str, float] | None:
        """The price key a job of ``kind`` with ``params`` is charged under, and how many of it
        (default: ``(kind, 1)``; ``None``: not priced at all)."""
        return (kind, 1.0)

    @classmethod
    def price(cls, kind: str, params: Mapping[str, Any]) -> Cost | None:
        """The expected cost of a job of ``kind`` with ``params`` by the published table (or the
        user's override via :func:`~jupyter_imagine._config.price_overrides`), source
        ``"prices"``; ``None`` where nothing is published."""
        item = cls.price_item(kind or "imagine", params or {})
        if item is None or cls.PRICE_UNIT is None:
            return None
        key, quantity = item
        table = {**cls.PRICES, **price_overrides().get(cls.name, {})}
        each = table.get(key)
        if each is None:
            return None
        return cls._cost(float(each) * quantity, "prices")

    @classmethod
    def cost(cls, record: Mapping[str, Any]) -> Cost | None:
        """What a finished job cost: a figure its payload states (source ``"provider"``, see
        :meth:`stated_cost`), else :meth:`price` for succeeded jobs, else ``None``. ``record``
        has ``kind``, ``params``, ``raw``, ``extras`` and ``status``."""
        stated = cls.stated_cost(record)
        if stated is not None:
            return stated
        if str(record.get("status") or "") != "succeeded":
            return None
        params = record.get("params")
        return cls.price(str(record.get("kind") or "imagine"),
                         params if isinstance(params, Mapping) else {})

    @classmethod
    def stated_cost(cls, record: Mapping[str, Any]) -> Cost | None:
        """A cost the job's payload states (:data:`COST_FIELDS` in ``raw`` or ``extras``), in
        credits (what those fields are named after); ``None`` when it states none (default
        rule; providers whose payload states a cost in their own unit override it)."""
        for source in (record.get("raw"), record.get("extras")):
            if not isinstance(source, Mapping):
                continue
            for name in COST_FIELDS:
                value = _number(source.get(name))
                if value is not None and value >= 0:
                    return cls._cost(value, "provider", "credits")
        return None

    @classmethod
    def _cost(cls, amount: float, source: str, unit: str | None = None) -> Cost:
        """A :class:`Cost` of ``amount`` in ``unit`` (default :attr:`PRICE_UNIT`), with its
        dollars where :attr:`USD_PER_UNIT` converts that unit."""
        unit = unit or str(cls.PRICE_UNIT)
        usd = None
        if cls.USD_PER_UNIT is not None and unit == cls.PRICE_UNIT:
            usd = amount * cls.USD_PER_UNIT
        return Cost(amount, unit, source, usd)

    async def balance(self) -> Balance | None:
        """One attempt (the base contract) at what the provider reports left; ``None`` where
        the provider exposes nothing (the default). Errors map like every other call."""
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

    def quota_message(self, answer: str) -> str:
        """The one-line message of an out-of-credits answer (``answer``: the provider's code and
        words): what ran out and how to top up or wait. Providers say it in their terms."""
        return (
            f"{self.label} says the account has run out ({answer}); top up the account or wait "
            "for its allowance to refill"
        )

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
        """One HTTP request, with transport errors and error answers mapped to typed exceptions:
        a URL httpx cannot send (unsupported scheme, malformed) is a
        :class:`~jupyter_imagine.errors.ConfigurationError` (never sent, not worth retrying); no
        connection is a :class:`~jupyter_imagine.errors.ServiceUnavailable` with
        ``reached_server=False``; any other transport error one that may have reached it."""
        if not url.startswith(("http://", "https://")):
            url = self.base_url + url
        headers = dict(kwargs.pop("headers", None) or {})
        if authorized:
            headers.update(self.auth_headers())
        try:
            response = await self.client.request(method, url, headers=headers, **kwargs)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            hint = f"check {self.name.upper()}_BASE_URL" if url.startswith(self.base_url) else (
                f"the URL came from {self.label}")
            raise ConfigurationError(
                f"cannot send a request to {self.label} ({exc}); {hint}", provider=self.name
            ) from None
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
        elif issubclass(cls, QuotaExceeded):
            message = self.quota_message(f"{code}: {message}")
        else:
            message = f"{self.label} answered {code}: {message}"
        kwargs: dict[str, Any] = {"provider": self.name, "status_code": code}
        if issubclass(cls, RateLimited):
            kwargs["retry_after"] = retry_after(response)
        raise cls(message, **kwargs)


def _number(value: Any) -> float | None:
    """``value`` as a finite float (numbers and numeric text; not bools), else ``None``."""
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


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

