"""Retries, back-off and poll batching (``jupyter_imagine._polling``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from jupyter_imagine._polling import (
    PollBatcher,
    RetryPolicy,
    backoff,
    jittered,
    next_interval,
)
from jupyter_imagine.errors import ImagineError, RateLimited, ServiceUnavailable
from jupyter_imagine.models import Job, Status
from jupyter_imagine.providers import Update


def test_backoff_is_capped_equal_jitter():
    for attempt in range(8):
        ceiling = min(1.0, 0.1 * 2**attempt)
        for _ in range(20):
            assert ceiling / 2 <= backoff(attempt, 0.1, 1.0) <= ceiling


def test_interval_grows_while_still_and_falls_back_when_moving():
    assert next_interval(2.0, 1.0, 2.5, moved=False) == 2.5
    assert next_interval(1.0, 1.0, 10.0, moved=False) == 1.5
    assert next_interval(8.0, 1.0, 10.0, moved=True) == 1.0
    assert all(0.9 <= jittered(1.0) <= 1.1 for _ in range(50))


def _flaky(errors: list[BaseException]) -> Any:
    calls = []

    async def call() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "ok"

    return call, calls


def test_retry_honours_retry_after_and_backs_off_on_5xx(caplog):
    call, calls = _flaky([ServiceUnavailable("503"), RateLimited("429", retry_after=0.05)])
    policy = RetryPolicy(base=0.001, cap=0.01, max_retries=3)
    with caplog.at_level(logging.INFO, logger="jupyter_imagine._polling"):
        assert asyncio.run(policy.run(call, name="p", idempotent=True)) == "ok"
    assert len(calls) == 3 and "p: retry 2 in 0.05 s" in caplog.text


def test_no_blind_retry_of_a_submit():
    reached = ServiceUnavailable("502", reached_server=True)
    call, calls = _flaky([reached])
    with pytest.raises(ServiceUnavailable):
        asyncio.run(RetryPolicy(base=0.001).run(call, name="p", idempotent=False))
    assert len(calls) == 1
    never = ServiceUnavailable("refused", reached_server=False)
    call, calls = _flaky([never, RateLimited("429", retry_after=0)])
    assert asyncio.run(RetryPolicy(base=0.001).run(call, name="p", idempotent=False)) == "ok"
    assert len(calls) == 3


def test_retries_run_out():
    call, calls = _flaky([ServiceUnavailable("503")] * 5)
    with pytest.raises(ServiceUnavailable):
        asyncio.run(RetryPolicy(base=0.001, max_retries=2).run(call, name="p", idempotent=True))
    assert len(calls) == 3


class _Provider:
    name = label = "fake"

    def __init__(self, batch: int, short: bool = False) -> None:
        self.poll_batch = batch
        self.short = short
        self.requests: list[list[str]] = []

    async def poll(self, job: Job) -> Update:
        self.requests.append([job.prompt])
        return Update(status=Status.RUNNING, progress=10)

    async def poll_many(self, jobs: list[Job]) -> list[Update]:
        self.requests.append([j.prompt for j in jobs])
        answers = [Update(status=Status.RUNNING, progress=50) for _ in jobs]
        return answers[:-1] if self.short else answers


def _jobs(n: int) -> list[Job]:
    return [Job(provider="fake", kind="imagine", prompt=f"p{i}") for i in range(n)]


def test_polls_within_the_window_share_one_request_of_at_most_poll_batch():
    provider = _Provider(batch=4)

    async def main() -> list[Update]:
        batcher = PollBatcher(provider, 0.01, RetryPolicy())  # type: ignore[arg-type]
        return await asyncio.gather(*(batcher.poll(j) for j in _jobs(10)))

    updates = asyncio.run(main())
    assert [len(r) for r in provider.requests] == [4, 4, 2]
    assert all(u.progress == 50 for u in updates)


def test_no_batching_polls_each_and_a_short_answer_fails_the_polls():
    single = _Provider(batch=1)
    job = _jobs(1)[0]
    assert asyncio.run(PollBatcher(single, 0.01, RetryPolicy()).poll(job)).progress == 10
    short = _Provider(batch=20, short=True)

    async def main() -> None:
        batcher = PollBatcher(short, 0.01, RetryPolicy())  # type: ignore[arg-type]
        await asyncio.gather(*(batcher.poll(j) for j in _jobs(3)))

    with pytest.raises(ImagineError, match="answered 2 updates for 3 jobs"):
        asyncio.run(main())
