"""What one sandbox app holds: the clock, tasks, faults, keys, caches and background work."""

from __future__ import annotations

import asyncio
import collections
import inspect
import math
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from .._secrets import get_logger
from ._clock import SimClock
from ._faults import FaultInjector

__all__ = [
    "LRU",
    "SandboxState",
    "Snapshot",
    "deliver_webhook",
    "nap_until",
    "retry_headers",
    "watch_and_post",
]

logger = get_logger(__name__)

#: Words that make a prompt "banned" in every emulated provider (whole words, any case).
DEFAULT_BANNED_WORDS = frozenset({"gore", "nsfw", "bloodbath"})
#: Keys every emulated provider rejects with its 401.
DEFAULT_REJECTED_KEYS = frozenset({"invalid-key"})

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRU(Generic[K, V]):
    """A small thread-safe least-recently-used cache bounded by entries and by total cost.

    Args:
        max_entries: entries kept at most (default 256).
        max_cost: total ``cost(value)`` kept at most (default ``None``: no bound).
        cost: the cost of a value (default: 1 each).
    """

    def __init__(
        self,
        max_entries: int = 256,
        max_cost: int | None = None,
        cost: Callable[[V], int] | None = None,
    ) -> None:
        self._data: collections.OrderedDict[K, V] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._max_entries = max_entries
        self._max_cost = max_cost
        self._cost = cost or (lambda _v: 1)
        self._total = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._data:
                return None
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key: K, value: V) -> V:
        with self._lock:
            if key in self._data:
                self._total -= self._cost(self._data.pop(key))
            self._data[key] = value
            self._total += self._cost(value)
            while self._data and (
                len(self._data) > self._max_entries
                or (self._max_cost is not None and self._total > self._max_cost)
            ):
                _, old = self._data.popitem(last=False)
                self._total -= self._cost(old)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._total = 0

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


@dataclass
class SandboxState:
    """Everything one sandbox app holds (``app.state.sandbox``).

    Attributes:
        clock: the :class:`SimClock` every job's progress is computed from.
        seed: mixed into every derived image seed (default 0); two sandboxes with the same seed
            draw the same pictures for the same requests.
        faults: the :class:`FaultInjector`.
        requests: a ``Counter`` of requests received per ``(method, path)`` (the sandbox's own
            ``/_sandbox/...`` routes are not counted).
        banned_words: prompts containing one of these words are refused at submit.
        rejected_keys: API keys every provider refuses with its 401.
        accepted_keys: when not ``None``, the only keys accepted (default ``None``: any
            non-empty key not in ``rejected_keys``).
        tasks: every provider's tasks by id (``tasks[task_id]``); each provider keeps its own
            record type in it and ignores the others'. A provider whose real ids could collide
            with another's (small integers …) keys its records with a prefix.
        providers: per provider name, that provider's emulator object (credits and so on).
        webhooks: what ``POST /_sandbox/webhook-sink[/…]`` received, oldest first: dicts with
            ``path``, ``headers`` (lower-case names), ``body`` (parsed JSON, else text) and
            ``received_at`` (simulated seconds).
        images: a bounded cache of rendered image bytes, shared by the providers.
        app: the root ASGI app (set by ``create_app``); webhooks to the sandbox's own address
            are delivered to it in-process.
        persistence: the app's on-disk state (:class:`~._persist.SandboxPersistence`), when
            it keeps one (set by ``create_app``; default ``None``).
    """

    clock: SimClock = field(default_factory=SimClock)
    seed: int = 0
    faults: FaultInjector = field(default_factory=FaultInjector)
    requests: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    banned_words: set[str] = field(default_factory=lambda: set(DEFAULT_BANNED_WORDS))
    rejected_keys: set[str] = field(default_factory=lambda: set(DEFAULT_REJECTED_KEYS))
    accepted_keys: set[str] | None = None
    tasks: dict[Hashable, Any] = field(default_factory=dict)
    providers: dict[str, Any] = field(default_factory=dict)
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    images: LRU[Hashable, Any] = field(
        default_factory=lambda: LRU(max_entries=512, max_cost=256 * 2**20, cost=_sizeof)
    )
    app: Any = None
    persistence: Any = None
    _background: set[asyncio.Task[Any]] = field(default_factory=set, repr=False)
    #: Webhook URLs a delivery to has failed: each is warned about once (see
    #: :func:`deliver_webhook`), not once per progress update.
    _failed_webhooks: set[str] = field(default_factory=set, repr=False)

    # ------------------------------------------------------------------ checks
    def key_accepted(self, key: str | None) -> bool:
        """``True`` if ``key`` (already stripped of any ``Bearer``) may call the providers."""
        if not key:
            return False
        if key in self.rejected_keys:
            return False
        return self.accepted_keys is None or key in self.accepted_keys

    def banned_word(self, prompt: str | None) -> str | None:
        """The first banned word found in ``prompt`` (whole word, any case), else ``None``."""
        if not prompt or not self.banned_words:
            return None
        words = set(re.findall(r"[\w'-]+", prompt.lower()))
        for word in sorted(self.banned_words):
            if word.lower() in words:
                return word
        return None

    # ------------------------------------------------------------------ background work
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a background task on the running loop, keeping a reference to it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def aclose(self) -> None:
        """Cancel the background tasks (webhook deliveries) and wait for them to end."""
        tasks = [t for t in self._background if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def webhook_transport(self, url: str, origin: str | None) -> httpx.AsyncBaseTransport | None:
        """The in-process transport when ``url`` points at this sandbox (``origin``), else None."""
        if self.app is None or not origin:
            return None
        root = _origin(origin)
        if root and _origin(url) == root:
            return httpx.ASGITransport(app=self.app)
        return None


def _sizeof(value: Any) -> int:
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    size = getattr(value, "size", None)  # PIL images
    if isinstance(size, tuple) and len(size) == 2:
        return int(size[0]) * int(size[1]) * 3
    if isinstance(value, (list, tuple)):
        return sum(_sizeof(v) for v in value)
    return 1024


def _origin(url: str) -> str | None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return None
    if not parsed.scheme or not parsed.host:
        return None
    return f"{parsed.scheme}://{parsed.host}:{parsed.port or ''}".lower()


# ---------------------------------------------------------------------- webhooks
@dataclass(frozen=True)
class Snapshot:
    """What a job looks like now, for :func:`watch_and_post`.

    Attributes:
        payload: the JSON body a webhook would carry now.
        final: ``True`` once the job will not change again.
        next_change: simulated time of the next change, or ``None`` if unknown/never.
    """

    payload: Any
    final: bool
    next_change: float | None


async def deliver_webhook(
    state: SandboxState,
    url: str,
    payload: Any,
    *,
    headers: dict[str, str] | None = None,
    origin: str | None = None,
    timeout: float = 10.0,
) -> bool:
    """POST ``payload`` as JSON to ``url``; ``True`` on a 2xx. Failures are logged, not raised:
    the first for a URL as a warning, the rest at DEBUG (a job posts every progress update)."""
    transport = state.webhook_transport(url, origin)
    try:
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
            response = await client.post(url, json=payload, headers=headers or {})
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a webhook must never take the sandbox down
        _webhook_failed(state, url, f"failed: {exc}")
        return False
    if response.is_success:
        return True
    _webhook_failed(state, url, f"answered {response.status_code}")
    return False


def _webhook_failed(state: SandboxState, url: str, what: str) -> None:
    if url in state._failed_webhooks:
        logger.debug("sandbox webhook to %s %s", url, what)
        return
    state._failed_webhooks.add(url)
    logger.warning("sandbox webhook to %s %s (later failures to it are logged at DEBUG)",
                   url, what)


async def nap_until(state: SandboxState, change: float | None, longest: float) -> None:
    """Sleep ``longest`` real seconds, or less when the simulated ``change`` time (``None``:
    none coming) comes sooner; at least a millisecond."""
    wait = longest
    if change is not None:
        until = state.clock.real_seconds_until(change)
        if until is not None:
            wait = min(longest, until)
    await asyncio.sleep(max(wait, 0.001))


async def watch_and_post(
    state: SandboxState,
    url: str,
    snapshot: Callable[..., Snapshot | Awaitable[Snapshot]],
    *,
    headers: dict[str, str] | None = None,
    origin: str | None = None,
    poll: float = 0.1,
    since: float | None = None,
) -> None:
    """POST ``snapshot().payload`` to ``url`` each time it changes, until it is final.

    Time follows the sandbox clock: the watcher sleeps until the job's next change in
    simulated time, but at most ``poll`` real seconds (default 0.1) at a time, so a
    :meth:`SimClock.advance` is noticed promptly.

    If ``snapshot`` takes an argument it is called as ``snapshot(at)`` with a simulated time,
    and the watcher **replays every change** it slept through (a slow loop, a clock jump), in
    order, one POST each, starting from simulated time ``since`` (default: when the watcher
    starts; pass the job's creation time). A ``snapshot()`` without arguments only shows the
    present, so changes that began and ended between two looks are not posted.
    """
    timed = _takes_time(snapshot)
    last: Any = object()

    async def look(at: float) -> Snapshot:
        snap = snapshot(at) if timed else snapshot()
        if asyncio.iscoroutine(snap) or isinstance(snap, Awaitable):
            snap = await snap
        return snap

    try:
        cursor = state.clock.now() if since is None else since
        while True:
            now = state.clock.now()
            at = min(cursor, now)
            while True:
                snap = await look(at)
                if snap.payload != last:
                    await deliver_webhook(state, url, snap.payload, headers=headers, origin=origin)
                    last = snap.payload
                if snap.final or not timed:
                    break
                if snap.next_change is None or snap.next_change > now:
                    break
                at = max(snap.next_change, at) + 1e-7  # step into the change we slept through
            if snap.final:
                return
            cursor = now
            await nap_until(state, snap.next_change, poll)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("sandbox webhook watcher for %s stopped", url)


def _takes_time(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params
    )


def retry_headers(
    status: int, retry_after: float | None, *, whole_seconds: bool = False
) -> dict[str, str]:
    """The ``Retry-After`` header of an error answer: ``retry_after`` seconds if given, else 1 s
    for a 429 (every provider's 429 carries one), else none.

    ``whole_seconds`` rounds up to an integer ≥ 1, as RFC 9110 writes it (default ``False``: the
    sandbox also sends fractions, so tests can ask for short waits).
    """
    if retry_after is None:
        if status != 429:
            return {}
        retry_after = 1
    if whole_seconds:
        return {"Retry-After": str(max(1, math.ceil(retry_after)))}
    return {"Retry-After": f"{retry_after:g}"}
