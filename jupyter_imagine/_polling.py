"""How the engine waits: retries with jittered exponential back-off, adaptive poll intervals, and
the batcher that folds many jobs' polls into one request.

* :class:`RetryPolicy` retries a call on 5xx, 429 (``Retry-After`` honoured, plus jitter) and
  network errors for a budget of *time* (``retry_for``), never past the caller's deadline; a
  non-idempotent call (a submit) only on a 429 or when the request provably never reached the
  server. Delays are "full jitter" draws, so jobs that failed together do not retry together.
* :func:`next_interval` grows the poll interval ×1.5 while progress stands still and falls
  back to the first one when it moves.
* :class:`PollBatcher` collects the polls of one provider that fall within a short window into
  one ``poll_many`` request (APIFRAME ``/fetch-many``).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from ._secrets import get_logger
from .errors import ImagineError, RateLimited, ServiceUnavailable

if TYPE_CHECKING:  # pragma: no cover
    from .models import Job
    from .providers import Provider, Update

__all__ = [
    "PollBatcher",
    "RetryPolicy",
    "backoff",
    "jittered",
    "next_interval",
    "rate_limit_delay",
]

logger = get_logger(__name__)

T = TypeVar("T")

#: Factor by which the poll interval grows while a job's progress stands still.
INTERVAL_GROWTH = 1.5


def backoff(
    attempt: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """The delay before retry ``attempt`` (0-based): a uniform draw from
    ``[0, min(cap, base · 2**attempt)]`` ("full jitter"; ``rng`` default: the module's)."""
    ceiling = min(cap, base * (2 ** min(attempt, 64)))
    return (rng or random).uniform(0, ceiling)


def rate_limit_delay(
    retry_after: float | None, attempt: int, base: float, cap: float,
    rng: random.Random | None = None,
) -> float:
    """The wait after a 429: never less than the provider's ``Retry-After`` (when it sent
    one), plus a :func:`backoff` draw so the jobs it refused together come back spread out."""
    return (retry_after or 0.0) + backoff(attempt, base, cap, rng)


def next_interval(interval: float, first: float, longest: float, *, moved: bool) -> float:
    """The next poll interval: back to ``first`` when the job moved, else ×1.5 up to
    ``longest``."""
    return first if moved else min(longest, interval * INTERVAL_GROWTH)


def jittered(delay: float) -> float:
    """``delay`` ±10 %, so the polls of jobs started together spread out."""
    return delay * random.uniform(0.9, 1.1)


@dataclass(frozen=True)
class RetryPolicy:
    """Jittered exponential back-off for one request, for a budget of time.

    Attributes:
        base: ceiling of the first back-off draw in seconds (default 0.5); doubles per attempt.
        cap: longest back-off delay in seconds (default 30).
        retry_for: seconds, from the first attempt, during which temporary errors are retried
            (default 180); a retry that would start later lets the error count.
        max_retries: an optional cap on the number of retries as well (default ``None``: only
            the time budget counts).
        rng: the random source of the jitter (default: a fresh ``random.Random``; tests seed it).
    """

    base: float = 0.5
    cap: float = 30.0
    retry_for: float = 180.0
    max_retries: int | None = None
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempt: int, retry_after: float | None = None, *,
              rate_limited: bool = False) -> float:
        """The wait before retry ``attempt`` (0-based): :func:`backoff`, or after a 429
        :func:`rate_limit_delay`."""
        if rate_limited:
            return rate_limit_delay(retry_after, attempt, self.base, self.cap, self.rng)
        return backoff(attempt, self.base, self.cap, self.rng)

    def _next_delay(self, exc: Exception, attempt: int, idempotent: bool) -> float | None:
        """The wait before retrying after ``exc``, or ``None`` when it must be raised."""
        if self.max_retries is not None and attempt >= self.max_retries:
            return None
        if isinstance(exc, RateLimited):
            return self.delay(attempt, exc.retry_after, rate_limited=True)
        if isinstance(exc, ServiceUnavailable) and (idempotent or not exc.reached_server):
            return self.delay(attempt)
        return None

    async def run(
        self,
        call: Callable[[], Awaitable[T]],
        *,
        name: str,
        idempotent: bool,
        deadline: float | None = None,
    ) -> T:
        """Await ``call()``, again after a temporary error, until it succeeds, the time budget
        (``retry_for``) runs out or ``deadline`` comes (then its error is raised).

        Args:
            call: makes a fresh awaitable per attempt.
            name: who is called, for the log (a provider name).
            idempotent: ``False`` for a submit: retried only on a 429 or when the request
                never reached the server.
            deadline: a ``time.time()`` past which nothing is retried (default ``None``); a
                longer ``Retry-After`` is cut at it.
        """
        give_up = time.monotonic() + self.retry_for
        attempt = 0
        while True:
            try:
                return await call()
            except (RateLimited, ServiceUnavailable) as exc:
                delay = self._next_delay(exc, attempt, idempotent)
                if delay is None or not math.isfinite(delay):
                    raise
                if deadline is not None:
                    delay = min(delay, deadline - time.time())
                if delay < 0 or time.monotonic() + delay > give_up:
                    raise
            attempt += 1
            logger.info("%s: retry %d in %.2f s after a temporary error", name, attempt, delay)
            await asyncio.sleep(delay)


class PollBatcher:
    """Collects the polls of one provider that fall within ``window`` seconds into one request.

    Args:
        provider: whose jobs are polled; with ``poll_batch`` ≤ 1 every poll is its own request.
        window: seconds to wait for more polls after the first of a batch.
        policy: how each request is retried.
    """

    def __init__(self, provider: Provider, window: float, policy: RetryPolicy) -> None:
        self.provider = provider
        self.window = window
        self.policy = policy
        self._pending: list[tuple[Job, asyncio.Future[Update], float | None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def poll(self, job: Job, deadline: float | None = None) -> Update:
        """The provider's current :class:`~jupyter_imagine.providers.Update` of ``job``;
        retries stop at ``deadline`` (a ``time.time()``, default ``None``)."""
        if self.provider.poll_batch <= 1:
            return await self.policy.run(
                lambda: self.provider.poll(job), name=self.provider.name, idempotent=True,
                deadline=deadline,
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Update] = loop.create_future()
        self._pending.append((job, future, deadline))
        if self._timer is None:
            self._timer = loop.call_later(self.window, self._flush)
        return await future

    def _flush(self) -> None:
        self._timer = None
        pending = [entry for entry in self._pending if not entry[1].done()]
        self._pending = []
        size = self.provider.poll_batch
        for start in range(0, len(pending), size):
            task = asyncio.ensure_future(self._send(pending[start : start + size]))
            self._running.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._running.discard)

    async def _send(
        self, chunk: Sequence[tuple[Job, asyncio.Future[Update], float | None]]
    ) -> None:
        jobs = [job for job, _, _ in chunk]
        deadlines = [d for _, _, d in chunk if d is not None]
        try:
            updates = await self.policy.run(
                lambda: self.provider.poll_many(jobs), name=self.provider.name, idempotent=True,
                deadline=min(deadlines) if deadlines else None,
            )
        except BaseException as exc:
            for _, future, _ in chunk:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        if len(updates) != len(chunk):  # a provider bug must fail the polls, not hang them
            error = ImagineError(
                f"{self.provider.label} answered {len(updates)} updates for {len(chunk)} jobs"
            )
            updates = [error] * len(chunk)
        for (_, future, _), update in zip(chunk, updates, strict=True):
            if future.done():
                continue
            if isinstance(update, BaseException):
                future.set_exception(update)
            else:
                future.set_result(update)
