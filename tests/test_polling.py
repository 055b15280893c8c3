"""Retries, back-off and poll batching (``jupyter_imagine._polling``)."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from typing import Any

import pytest

from jupyter_imagine._polling import (
    PollBatcher,
    RetryPolicy,
    backoff,
    jittered,
    next_interval,
    rate_limit_delay,
)
from jupyter_imagine.errors import ImagineError, RateLimited, ServiceUnavailable
from jupyter_imagine.models import Job, Status
from jupyter_imagine.providers import Update


def test_backoff_is_capped_full_jitter():
    rng = random.Random(7)
    for attempt in range(70):
        ceiling = min(1.0, 0.1 * 2**attempt)
        draws = [backoff(attempt, 0.1, 1.0, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) - min(draws) > ceiling / 2  # spread over the whole range
    assert backoff(3, 0.1, 1.0, random.Random(1)) == backoff(3, 0.1, 1.0, random.Random(1))


def test_429_retries_never_come_early_and_do_not_move_in_lockstep():
    rng = random.Random(42)
    # 50 jobs refused together with the same Retry-After come back spread out, not at once.
    delays = [rate_limit_delay(2.0, 0, 0.5, 30.0, rng) for _ in range(50)]
    assert all(2.0 <= d <= 2.5 for d in delays)
    assert len({round(d, 3) for d in delays}) > 40
    later = [rate_limit_delay(None, 4, 0.5, 30.0, rng) for _ in range(50)]
    assert all(0 <= d <= 8.0 for d in later) and max(later) > 4.0


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


def test_the_retry_budget_is_time_not_a_count():
    # Ten failures (more than the old budget of six retries) within the time budget: success.
    call, calls = _flaky([ServiceUnavailable("503")] * 10)
    policy = RetryPolicy(base=0.001, cap=0.002, retry_for=5.0, rng=random.Random(3))
    assert asyncio.run(policy.run(call, name="p", idempotent=True)) == "ok"
    assert len(calls) == 11
    # A failure that lasts longer than the budget is raised once the budget is spent.
    call, calls = _flaky([ServiceUnavailable("503")] * 10_000)
    policy = RetryPolicy(base=0.01, cap=0.02, retry_for=0.2, rng=random.Random(3))
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        asyncio.run(policy.run(call, name="p", idempotent=True))
    assert time.monotonic() - started < 0.5 and 3 < len(calls) < 100


def test_a_retry_after_past_the_deadline_is_cut_at_the_deadline(caplog):
    call, calls = _flaky([RateLimited("429", retry_after=60.0)] * 3)
    policy = RetryPolicy(base=0.001, cap=0.01, rng=random.Random(5))
    started = time.time()
    with caplog.at_level(logging.INFO, logger="jupyter_imagine._polling"):
        with pytest.raises(RateLimited):
            asyncio.run(policy.run(call, name="p", idempotent=True, deadline=started + 0.2))
    assert time.time() - started < 1.0  # not 60 s
    waited = re.search(r"retry 1 in ([\d.]+) s", caplog.text)
    assert len(calls) in (2, 3) and waited is not None
    assert 0 < float(waited[1]) <= 0.2  # what was left of 0.2 s when it waited (a loaded machine
    # spends some of it before: "0.19 s" at load 15)


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
