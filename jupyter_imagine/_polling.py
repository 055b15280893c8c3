"""How the engine waits: retries with jittered exponential back-off, adaptive poll intervals, and
the batcher that folds many jobs' polls into one request.

* :class:`RetryPolicy` retries a call on 5xx, 429 (``Retry-After`` honoured) and network
  errors; a non-idempotent call (a submit) only on a 429 or when the request provably never
  reached the server.
* :func:`next_interval` grows the poll interval ×1.5 while progress stands still and falls
  back to the first one when it moves.
* :class:`PollBatcher` collects the polls of one provider that fall within a short window into
  one ``poll_many`` request (APIFRAME ``/fetch-many``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from ._secrets import get_logger
from .errors import ImagineError, RateLimited, ServiceUnavailable

if TYPE_CHECKING:  # pragma: no cover
    from .models import Job
    from .providers import Provider, Update

__all__ = ["PollBatcher", "RetryPolicy", "backoff", "jittered", "next_interval"]

logger = get_logger(__name__)

T = TypeVar("T")

#: Factor by which the poll interval grows while a job's progress stands still.
INTERVAL_GROWTH = 1.5


def backoff(attempt: int, base: float, cap: float) -> float:
    """The delay before retry ``attempt`` (0-based): a uniform draw from the upper half of
    ``min(cap, base · 2**attempt)`` ("equal jitter")."""
    ceiling = min(cap, base * (2**attempt))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def next_interval(interval: float, first: float, longest: float, *, moved: bool) -> float:
    """The next poll interval: back to ``first`` when the job moved, else ×1.5 up to
    ``longest``."""
    return first if moved else min(longest, interval * INTERVAL_GROWTH)


def jittered(delay: float) -> float:
    """``delay`` ±10 %, so the polls of jobs started together spread out."""
    return delay * random.uniform(0.9, 1.1)


@dataclass(frozen=True)
class RetryPolicy:
    """Jittered exponential back-off for one request.

    Attributes:
        base: first back-off delay in seconds (default 0.5); doubles per attempt.
        cap: longest back-off delay in seconds (default 30).
        max_retries: retries of one request before its error counts (default 6).
    """

    base: float = 0.5
    cap: float = 30.0
    max_retries: int = 6

    def delay(self, attempt: int) -> float:
        """The back-off before retry ``attempt`` (0-based), see :func:`backoff`."""
        return backoff(attempt, self.base, self.cap)

    async def run(
        self, call: Callable[[], Awaitable[T]], *, name: str, idempotent: bool
    ) -> T:
        """Await ``call()``, again after a temporary error, until it succeeds or the retries
        run out (then its error is raised).

        Args:
            call: makes a fresh awaitable per attempt.
            name: who is called, for the log (a provider name).
            idempotent: ``False`` for a submit: retried only on a 429 or when the request
                never reached the server.
        """
        attempt = 0
        while True:
            try:
                return await call()
            except RateLimited as exc:
                if attempt >= self.max_retries:
                    raise
                delay = exc.retry_after if exc.retry_after is not None else self.delay(attempt)
            except ServiceUnavailable as exc:
                if attempt >= self.max_retries or (not idempotent and exc.reached_server):
                    raise
                delay = self.delay(attempt)
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
        self._pending: list[tuple[Job, asyncio.Future[Update]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def poll(self, job: Job) -> Update:
        """The provider's current :class:`~jupyter_imagine.providers.Update` of ``job``."""
        if self.provider.poll_batch <= 1:
            return await self.policy.run(
                lambda: self.provider.poll(job), name=self.provider.name, idempotent=True
            )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Update] = loop.create_future()
        self._pending.append((job, future))
        if self._timer is None:
            self._timer = loop.call_later(self.window, self._flush)
        return await future

    def _flush(self) -> None:
        self._timer = None
        pending = [(j, f) for j, f in self._pending if not f.done()]
        self._pending = []
        size = self.provider.poll_batch
        for start in range(0, len(pending), size):
            task = asyncio.ensure_future(self._send(pending[start : start + size]))
            self._running.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._running.discard)

    async def _send(self, chunk: Sequence[tuple[Job, asyncio.Future[Update]]]) -> None:
        jobs = [job for job, _ in chunk]
        try:
            updates = await self.policy.run(
                lambda: self.provider.poll_many(jobs), name=self.provider.name, idempotent=True
            )
        except BaseException as exc:
            for _, future in chunk:
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
        for (_, future), update in zip(chunk, updates, strict=True):
            if future.done():
                continue
            if isinstance(update, BaseException):
                future.set_exception(update)
            else:
                future.set_result(update)
