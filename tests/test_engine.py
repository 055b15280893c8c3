"""The engine: background loop, concurrency, back-off, deadlines, cancel, resume, persistence."""

from __future__ import annotations

import logging
import re
import threading
import time

import httpx
import numpy as np
import pytest
from _widgets_util import until
from PIL import Image as PILImage

import jupyter_imagine as ji
from jupyter_imagine.engine import Engine
from jupyter_imagine.errors import ImagineError
from jupyter_imagine.models import GRID_ACTIONS, UPSCALE_ACTIONS, Job, Status
from jupyter_imagine.sandbox import create_app
from jupyter_imagine.store import Store

FAST = {"sandbox_speed": 1000.0, "backoff_base": 0.01, "backoff_cap": 0.2}


def imagine_count(state) -> int:
    """POST /apiframe/imagine requests the sandbox received (refused ones included)."""
    return sum(n for (method, path), n in state.requests.items()
               if method == "POST" and path.endswith("/apiframe/imagine"))


def tasks_created(state) -> int:
    return len(state.tasks)


def test_imagine_returns_at_once_then_finishes_with_downloaded_images(engine):
    t0 = time.perf_counter()
    job = ji.imagine("a lighthouse at dusk", aspect_ratio="3:2")
    held = time.perf_counter() - t0
    assert job.status is Status.QUEUED and job.sandbox is True
    assert held < 1.0  # returns before any HTTP round trip completes (benchmarks measure properly)
    assert engine.store.get(job.id)["status"] == "queued"  # stored before it was returned
    job.wait(30)
    assert job.status is Status.SUCCEEDED and job.progress == 100
    assert job.actions == GRID_ACTIONS
    assert len(job.images) == 4 and job.grid.role == "grid"
    for image in [*job.images, job.grid]:
        with PILImage.open(image.path) as img:
            assert img.text["prompt"] == "a lighthouse at dusk"
            assert '"aspect_ratio": "3:2"' in img.text["parameters"]
            assert img.size == (image.width, image.height)
    assert job.completed_at >= job.created_at
    assert engine.store.get(job.id)["status"] == "succeeded"


def test_upscale_vary_reroll_and_vary_region(engine):
    job = ji.imagine("a pine forest in snow").wait(30)
    up = job.upscale(2).wait(30)
    assert up.kind == "upscale" and up.parent_id == job.id and up.action == "U2"
    assert len(up.images) == 1 and up.actions == UPSCALE_ACTIONS
    quadrant = PILImage.open(job.images[1].path).convert("RGB")
    big = PILImage.open(up.images[0].path).convert("RGB")
    assert big.size == (quadrant.width * 2, quadrant.height * 2)
    small = np.asarray(big.resize(quadrant.size, PILImage.LANCZOS), dtype=float)
    assert np.abs(small - np.asarray(quadrant, dtype=float)).mean() < 8

    var = job.vary(3).wait(30)
    assert var.kind == "variation" and len(var.images) == 4
    reroll = job.reroll(prompt="a pine forest at night").wait(30)
    assert reroll.kind == "reroll" and reroll.prompt == "a pine forest at night"
    assert reroll.action == "🔄"

    mask = np.zeros((big.height, big.width), dtype=bool)
    mask[20:140, 30:200] = True
    region = up.vary_region(mask, prompt="a red cabin").wait(30)
    assert region.kind == "vary_region" and region.prompt == "a red cabin"
    out = np.asarray(PILImage.open(region.images[0].path).convert("RGB"), dtype=int)
    changed = np.abs(out - np.asarray(big, dtype=int)).sum(axis=2) > 0
    assert changed.any() and not changed[~mask].any()


def test_bad_input_is_refused_before_anything_is_stored(engine, tmp_path):
    job = ji.imagine("a boat").wait(30)
    up = job.upscale(1).wait(30)
    before = len(engine.store.records())
    cases = [
        (lambda: ji.imagine(""), ji.InvalidRequest, "prompt is empty"),
        (lambda: ji.imagine("x", provider="nope"), ji.ConfigurationError,
         "unknown provider 'nope'"),
        (lambda: ji.imagine("x", colour="red"), ji.InvalidRequest, "unknown parameter 'colour'"),
        (lambda: ji.imagine("x", aspect_ratio="wide"), ji.InvalidRequest, "must look like 16:9"),
        (lambda: ji.imagine("x", process_mode="slow"), ji.InvalidRequest, "fast, turbo"),
        (lambda: ji.job("no-such-job-id"), ji.NotFound, "no job 'no-such-job-id'"),
        (lambda: job.act("U5"), ji.ActionNotAvailable, "'U5'"),
        (lambda: up.act("U1"), ji.ActionNotAvailable, "offers: Vary \\(Strong\\)"),
        (lambda: up.vary_region(np.ones((8, 8), bool)), ji.InvalidMask, "size"),
        (lambda: up.vary_region(42), ji.InvalidMask, "not int"),
        (lambda: up.vary_region(b"not an image"), ji.InvalidMask, "(?i)not an image|image"),
        (lambda: up.vary_region(str(tmp_path / "missing.png")), ji.InvalidMask, "(?i)exist|found"),
        (lambda: job.reroll(prompt="  "), ji.InvalidRequest, "prompt is empty"),
    ]
    for call, cls, text in cases:
        with pytest.raises(cls, match=text) as info:
            call()
        assert "\n" not in str(info.value)
    assert len(engine.store.records()) == before


def test_missing_key_when_forced_out_of_the_sandbox(engine, monkeypatch):
    monkeypatch.setenv("JUPYTER_IMAGINE_SANDBOX", "0")
    with pytest.raises(ji.ConfigurationError, match="APIFRAME_API_KEY is not set"):
        ji.imagine("a cat")
    assert engine.store.records() == []


def test_concurrency_limit(tmp_path):
    eng = Engine(Store(tmp_path), concurrency={"apiframe": 2}, **FAST)
    in_flight: set[str] = set()
    peak = []
    lock = threading.Lock()

    def watch(job, changed):
        with lock:
            if job.submit_state != "pending" and not job.status.final:
                in_flight.add(job.id)
            else:
                in_flight.discard(job.id)
            peak.append(len(in_flight))

    with eng:
        jobs = []
        for i in range(6):
            job = eng.imagine(f"tower {i}", provider="apiframe")
            job.observe(watch)
            jobs.append(job)
        for job in jobs:
            job.wait(60)
    assert max(peak) == 2


def test_backoff_on_5xx_and_429_with_retry_after(engine, sandbox, caplog):
    sandbox.faults.add("/apiframe/fetch*", status=500, count=2)
    sandbox.faults.add("/apiframe/fetch*", status=429, count=1, retry_after=0.3)
    with caplog.at_level(logging.INFO, logger="jupyter_imagine._polling"):
        job = ji.imagine("a windmill").wait(60)
    assert job.status is Status.SUCCEEDED
    waits = [float(w) for w in re.findall(r"retry 3 in ([0-9.]+) s", caplog.text)]
    # The third retry waited Retry-After plus a jitter draw (at most the back-off cap of 0.2 s).
    assert waits and all(0.30 <= w <= 0.50 for w in waits)
    assert imagine_count(sandbox) == 1 and tasks_created(sandbox) == 1


def test_polls_failing_longer_than_their_retry_budget_do_not_fail_a_running_job(tmp_path,
                                                                                caplog):
    caplog.set_level(logging.WARNING, logger="jupyter_imagine.engine")
    app = create_app(speed=1000.0)
    # 40 failed polls: far more than the old budget of six retries, and more than this
    # engine's retry_for of 0.1 s covers, but well within the job's deadline.
    state = app.state.sandbox
    state.faults.add("/apiframe/fetch*", status=503, count=40)
    with Engine(Store(tmp_path), sandbox_app=app, **{**FAST, "retry_for": 0.1}) as eng:
        job = eng.imagine("a harbour", provider="apiframe", timeout=60)
        assert job.wait(30).status is Status.SUCCEEDED
    assert not state.faults.pending()  # every injected failure was met
    assert imagine_count(state) == 1
    said = [r.getMessage() for r in caplog.records if "polling job" in r.getMessage()]
    assert len(said) == 2, said  # the outage, then its end: not a line per failed poll
    assert said[0].startswith(f"apiframe: polling job {job.id}: failed (")
    assert said[1] == f"apiframe: polling job {job.id}: answers again"


def test_submit_is_not_retried_after_a_5xx(engine, sandbox):
    sandbox.faults.add("/apiframe/imagine", status=500, count=1)
    job = ji.imagine("a castle")
    with pytest.raises(ji.JobFailed, match="500"):
        job.wait(30)
    assert job.error_type == "ServiceUnavailable"
    assert imagine_count(sandbox) == 1  # one attempt, not retried
    assert tasks_created(sandbox) == 0


class _DropAfterSubmit(httpx.AsyncBaseTransport):
    """Passes requests to the sandbox, then drops the connection of the first submit after
    the sandbox handled it (the answer never comes back)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.dropped = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path.endswith("/imagine") and not self.dropped:
            await response.aread()
            self.dropped += 1
            raise httpx.ReadError("connection reset by peer", request=request)
        return response


def test_a_submit_dropped_after_sending_says_it_may_have_reached_the_provider(engine, sandbox):
    engine.provider("apiframe")
    client = engine._clients["asgi"]
    client._transport = drop = _DropAfterSubmit(client._transport)
    job = ji.imagine("a ferry")
    with pytest.raises(ji.JobFailed) as info:
        job.wait(30)
    message = str(info.value)
    assert drop.dropped == 1 and "try again later" not in message
    assert "may have reached APIFRAME" in message and "was not sent again" in message
    assert "sync_history('apiframe')" in message
    assert imagine_count(sandbox) == 1 and tasks_created(sandbox) == 1  # reached, not resent


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1, 0, "x", True])
def test_imagine_and_wait_refuse_a_timeout_that_is_not_positive_seconds(engine, bad):
    with pytest.raises(ji.ConfigurationError, match="timeout must be a positive number of s"):
        ji.imagine("a kite", timeout=bad)
    job = ji.imagine("a kite")
    with pytest.raises(ji.ConfigurationError, match=f"not {re.escape(repr(bad))}"):
        job.wait(timeout=bad)
    job.wait(30)


def test_submit_is_retried_after_a_429(engine, sandbox):
    sandbox.faults.add("/apiframe/imagine", status=429, count=1, retry_after=0.05)
    job = ji.imagine("a bridge").wait(30)
    assert job.status is Status.SUCCEEDED
    assert imagine_count(sandbox) == 2 and tasks_created(sandbox) == 1


def test_submit_retried_only_when_the_server_was_never_reached(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_IMAGINE_SANDBOX_URL", "http://127.0.0.1:9")  # nothing listens
    with Engine(Store(tmp_path), **{**FAST, "max_retries": 2}) as eng:
        job = eng.imagine("a kite", provider="apiframe")
        with pytest.raises(ji.JobFailed, match="could not connect"):
            job.wait(30)


def test_deadline_fails_the_job_with_job_timeout(engine):
    job = ji.imagine("a lighthouse sandbox:hang", timeout=0.3)
    with pytest.raises(ji.JobTimeout, match="deadline of 0.3 s"):
        job.wait(30)
    assert job.status is Status.FAILED and job.error_type == "JobTimeout"


def test_wait_timeout_does_not_stop_the_job(engine):
    job = ji.imagine("a lighthouse sandbox:hang")
    with pytest.raises(ji.JobTimeout, match="keeps running"):
        job.wait(0.05)
    assert not job.status.final
    job.cancel()


def test_cancel(engine):
    job = ji.imagine("a slow lighthouse sandbox:hang")
    time.sleep(0.1)
    job.cancel()
    with pytest.raises(ji.JobCancelled):
        job.wait(30)
    assert job.status is Status.CANCELLED
    assert engine.store.get(job.id)["status"] == "cancelled"


def test_provider_failure_is_a_failed_job_with_the_providers_words(engine):
    job = ji.imagine("a city sandbox:fail")
    with pytest.raises(ji.JobFailed, match="could not complete the job"):
        job.wait(30)
    with pytest.raises(ji.JobFailed) as info:
        ji.imagine("gore on the floor").wait(30)
    assert isinstance(info.value.__cause__, ji.ModeratedPrompt)


def test_resume_after_restart_without_a_second_submit(tmp_path):
    app = create_app(speed=40)  # imagine ≈ 1 s of real time
    state = app.state.sandbox
    store_dir = tmp_path / "home"
    first = Engine(Store(store_dir), sandbox_app=app, **{**FAST, "sandbox_speed": 40})
    first.start()
    job = first.imagine("a harbour at night", provider="apiframe")
    for _ in range(200):
        if job.submit_state == "sent":
            break
        time.sleep(0.01)
    first.close()
    assert Store(store_dir).get(job.id)["status"] in ("queued", "running")

    second = Engine(Store(store_dir), sandbox_app=app, **{**FAST, "sandbox_speed": 40})
    with second:
        resumed = second.get(job.id)
        assert resumed is not job
        resumed.wait(60)
        assert resumed.status is Status.SUCCEEDED and len(resumed.images) == 4
    assert imagine_count(state) == 1 and tasks_created(state) == 1


def test_a_submit_interrupted_in_flight_is_not_resent(tmp_path):
    app = create_app(speed=1000)
    store = Store(tmp_path)
    ghost = Job(provider="apiframe", kind="imagine", prompt="lost", submit_state="sending",
                sandbox=True)
    store.save(ghost.to_record())
    with Engine(store, sandbox_app=app, **FAST) as eng:
        job = eng.get(ghost.id)
        with pytest.raises(ji.JobFailed, match="may or may not have reached"):
            job.wait(30)
    assert imagine_count(app.state.sandbox) == 0 and tasks_created(app.state.sandbox) == 0


def test_polls_are_batched_with_fetch_many(engine, sandbox):
    jobs = [ji.imagine(f"lantern {i}") for i in range(10)]  # each draws four 512² cells
    for job in jobs:
        job.wait(60)
    many = sum(n for (m, p), n in sandbox.requests.items() if p.endswith("/fetch-many"))
    single = sum(n for (m, p), n in sandbox.requests.items() if p.endswith("/fetch"))
    assert many > 0 and many + single < 10 * 3


def test_history_frame(engine):
    job = ji.imagine("a lighthouse").wait(30)
    up = job.upscale(1).wait(30)
    df = ji.history().reset_index()
    assert list(df["id"][:2]) == [up.id, job.id]
    row = df.set_index("id").loc[up.id]
    assert row["parent_id"] == job.id and row["kind"] == "upscale" and row["n_images"] == 1
    assert str(df["created_at"].dtype) == "datetime64[ns, UTC]"


def test_await_job_in_an_event_loop(engine):
    import asyncio

    async def main():
        job = ji.imagine("a desert road")
        return await job

    assert asyncio.run(main()).status is Status.SUCCEEDED


def test_secrets_never_reach_store_logs_repr_or_errors(tmp_path, monkeypatch, live_sandbox, caplog):
    key = "sk-FAKE-apiframe-7c1d2e3f4a5b"
    monkeypatch.setenv("APIFRAME_API_KEY", key)
    monkeypatch.setenv("APIFRAME_BASE_URL", live_sandbox.url + "/apiframe")
    with caplog.at_level(logging.DEBUG), Engine(Store(tmp_path), **FAST) as eng:
        job = eng.imagine("a comet", provider="apiframe", webhook_secret="whsec-abcdef-123")
        job.wait(30)
        assert job.sandbox is False  # a real-service client, pointed at the sandbox server
        up = job.upscale(1).wait(30)
        live_sandbox.state.faults.add("/apiframe/imagine", status=401, count=1)
        bad = eng.imagine("a star", provider="apiframe")
        with pytest.raises(ji.AuthenticationError) as info:
            try:
                bad.wait(30)
            except ji.JobFailed as exc:
                raise exc.__cause__ from None
        texts = [repr(job), repr(up), str(job._repr_mimebundle_()["text/plain"]),
                 str(info.value), bad.error or "", caplog.text]
    for text in texts:
        assert key not in text and "whsec-abcdef-123" not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert key.encode() not in data and b"whsec-abcdef-123" not in data, path
    assert "APIFRAME_API_KEY" in bad.error


# ------------------------------------------------------------------ many engines, one history
def _requests_of(engine: Engine) -> list[str]:
    """Every request ``engine`` sends to the in-process sandbox, in a list (filled live)."""
    seen: list[str] = []

    async def hook(request):
        seen.append(f"{request.method} {request.url.path}")

    engine._client(True).event_hooks["request"].append(hook)
    return seen


def _kill(engine: Engine) -> None:
    """What SIGKILL leaves of an engine: no heartbeat, no loop, leases not released."""
    engine._heartbeat.cancel()
    loop = engine._loop
    loop.call_soon_threadsafe(loop.stop)
    engine._thread.join(5)


def test_a_second_engine_follows_live_jobs_without_calling_the_provider(tmp_path):
    app = create_app(speed=20)  # an imagine takes ~2 s
    home = tmp_path / "home"
    first = Engine(Store(home), sandbox_app=app, lease_seconds=2, **{**FAST, "sandbox_speed": 20})
    second = Engine(Store(home), sandbox_app=app, lease_seconds=2,
                    **{**FAST, "sandbox_speed": 20})
    with first, second:
        sent = _requests_of(second)
        jobs = [first.imagine(f"a quay {i}", provider="apiframe") for i in range(3)]
        followed = [second.get(job.id) for job in jobs]
        assert all(f is not j and f.id in second._following
                   for f, j in zip(followed, jobs, strict=True))
        seen: list[str] = []
        followed[0].observe(lambda job, names: seen.append(job.status.value))
        for job in followed:
            job.wait(30)
        assert [job.status for job in followed] == [Status.SUCCEEDED] * 3
        assert all(len(job.images) == 4 for job in followed)
        assert "running" in seen and seen[-1] == "succeeded"  # live progress, from the store
        assert sent == []  # not one request of its own
        assert second._tasks == {}
    assert imagine_count(app.state.sandbox) == 3


def test_a_dead_engines_jobs_are_taken_over_after_its_lease_and_submitted_once(tmp_path):
    app = create_app(speed=20)
    home = tmp_path / "home"
    first = Engine(Store(home), sandbox_app=app, lease_seconds=1.5,
                   concurrency={"apiframe": 1}, **{**FAST, "sandbox_speed": 20}).start()
    jobs = [first.imagine(f"a mole {i}", provider="apiframe") for i in range(3)]
    deadline = time.time() + 10
    while jobs[0].submit_state != "sent" and time.time() < deadline:
        time.sleep(0.01)
    second = Engine(Store(home), sandbox_app=app, lease_seconds=1.5,
                    **{**FAST, "sandbox_speed": 20})
    with second:
        sent = _requests_of(second)
        followed = [second.get(job.id) for job in jobs]
        assert sent == [] and len(second._following) == 3
        _kill(first)
        killed_at = time.time()
        for job in followed:
            job.wait(30)
        assert [job.status for job in followed] == [Status.SUCCEEDED] * 3
        assert sent and not second._following
        assert time.time() - killed_at > 1.0  # not before the lease ran out
    assert imagine_count(app.state.sandbox) == 3  # the pending two once, the sent one never again
    with Store(home) as store:
        assert {store.get(job.id)["status"] for job in jobs} == {"succeeded"}


def test_close_releases_leases_so_another_engine_resumes_at_once(tmp_path):
    app = create_app(speed=5)
    home = tmp_path / "home"
    first = Engine(Store(home), sandbox_app=app, lease_seconds=60,
                   **{**FAST, "sandbox_speed": 5}).start()
    job = first.imagine("a lock", provider="apiframe")
    first.close()
    assert first.store._conn is None  # the store is closed too
    with Engine(Store(home), sandbox_app=app, lease_seconds=60,
                **{**FAST, "sandbox_speed": 5}) as second:
        resumed = second.get(job.id)
        assert resumed.id in second._tasks and resumed.id not in second._following


def test_a_closed_engine_never_starts_again_on_its_closed_store(tmp_path):
    eng = Engine(Store(tmp_path / "home"), **FAST).start()
    eng.close()
    threads = {t.ident for t in threading.enumerate()}

    async def late() -> None:  # what a widget or a job's waiter may still schedule
        return None

    coro = late()
    for call in (eng.start, lambda: eng.run(coro), lambda: eng.defer(print)):
        with pytest.raises(ImagineError, match="was closed.*make a new Engine") as info:
            call()
        assert "\n" not in str(info.value)
    coro.close()
    assert not eng.running
    assert {t.ident for t in threading.enumerate()} <= threads  # no loop, no heartbeat left


# ------------------------------------------------------------------ storage failures
class _FullDisk:
    """The store's connection, refusing every job transition once armed (with
    ``every_write``, every write: leases and claims too), as a full disk does."""

    def __init__(self, conn, every_write: bool = False) -> None:
        self._conn, self.armed = conn, False
        self._refused = ("UPDATE", "INSERT", "DELETE") if every_write else (
            "UPDATE jobs SET provider",)

    def execute(self, sql, *args):
        if self.armed and sql.lstrip().startswith(self._refused):
            import sqlite3

            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


def test_a_transition_that_cannot_be_stored_fails_the_job_promptly(engine, sandbox):
    import asyncio

    disk = engine.store._conn = _FullDisk(engine.store._conn)
    disk.armed = True
    job = ji.imagine("a lighthouse", provider="apiframe")
    started = time.perf_counter()
    with pytest.raises(ji.StorageError, match="the disk is full") as info:
        job.wait(60)
    assert time.perf_counter() - started < 5
    assert str(engine.store.path) in str(info.value)
    assert job.status is Status.FAILED and job.error_type == "StorageError"
    with pytest.raises(ji.StorageError):
        asyncio.run(asyncio.wait_for(_awaited(job), 5))
    assert imagine_count(sandbox) == 0  # "sending" could not be stored: nothing was sent
    disk.armed = False
    stored = engine.store.get(job.id)
    assert (stored["status"], stored["submit_state"]) == ("queued", "pending")  # not half-written


async def _awaited(job: Job) -> Job:
    return await job


def test_a_sent_job_the_store_dropped_is_taken_back_once_it_can_be_written(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="jupyter_imagine.engine")
    app = create_app(speed=20)
    clock = app.state.sandbox.clock
    clock.speed = 0  # the job waits at the provider until the disk is full
    with Engine(Store(tmp_path / "home"), sandbox_app=app, lease_seconds=1.0,
                **{**FAST, "sandbox_speed": 20}) as eng:
        job = eng.imagine("a kiln at night", provider="apiframe")
        until(lambda: job.submit_state == "sent", 20)
        disk = eng.store._conn = _FullDisk(eng.store._conn, every_write=True)
        disk.armed = True
        clock.speed = 20
        with pytest.raises(ji.StorageError, match="the disk is full") as info:
            job.wait(30)
        assert f"the job goes on at apiframe, and this kernel takes it up again once the " \
               f"history can be written: jupyter_imagine.job({job.id!r})" in str(info.value)
        time.sleep(1.0)  # three heartbeats on a full disk: nothing is taken back yet
        assert eng.get(job.id) is job
        disk.armed = False
        until(lambda: eng.get(job.id) is not job, 20)  # the next heartbeat took it back
        done = eng.get(job.id).wait(30)
        assert done.status is Status.SUCCEEDED and len(done.images) == 4
        assert eng.store.get(job.id)["status"] == "succeeded"
        assert job.status is Status.FAILED  # what the user was told stays as it was
    assert imagine_count(app.state.sandbox) == 1  # polled to its end, never sent again
    beats = [r.getMessage() for r in caplog.records if r.getMessage().startswith("heartbeat")]
    assert len(beats) == 2, beats  # one outage: said once, then its end
    assert "the disk is full" in beats[0] and "trying again every 0.333 s" in beats[0]
    assert beats[1].endswith("the history answers again")


def test_a_job_never_sent_is_not_taken_back_behind_the_users_back(tmp_path):
    app = create_app(speed=20)
    with Engine(Store(tmp_path / "home"), sandbox_app=app, lease_seconds=1.0,
                **{**FAST, "sandbox_speed": 20}) as eng:
        disk = eng.store._conn = _FullDisk(eng.store._conn)
        disk.armed = True  # the job is stored, but not its "sending": nothing goes out
        job = eng.imagine("a kiln at dawn", provider="apiframe")
        with pytest.raises(ji.StorageError, match="the disk is full") as info:
            job.wait(30)
        assert str(info.value).endswith(
            "; nothing was sent to apiframe: run it again once the history can be written")
        disk.armed = False
        until(lambda: eng.store.get(job.id)["status"] == "failed", 20)  # as the user was told
        assert eng.get(job.id) is job and job.status is Status.FAILED
        assert eng.store.get(job.id)["error"] == job.error
    with Engine(Store(tmp_path / "home"), sandbox_app=app, lease_seconds=1.0,
                **{**FAST, "sandbox_speed": 20}):  # the next kernel
        time.sleep(1.0)  # three heartbeats: it finds nothing to resume
    assert imagine_count(app.state.sandbox) == 0


def test_a_dead_kernels_jobs_wait_for_a_kernel_with_the_same_credentials(tmp_path, monkeypatch):
    from _live_sandbox import LiveSandbox

    served = LiveSandbox(speed=20)  # an imagine takes ~2 s
    monkeypatch.setenv("APIFRAME_BASE_URL", served.url + "/apiframe")
    home, fast = tmp_path / "home", {**FAST, "sandbox_speed": 20}
    try:
        monkeypatch.setenv("APIFRAME_API_KEY", "sk-alice-0001")
        alice = Engine(Store(home), lease_seconds=1.0, **fast).start()
        jobs = [alice.imagine(f"a kiln {i}", provider="apiframe") for i in range(2)]
        deadline = time.time() + 10
        while not all(j.remote_id for j in jobs) and time.time() < deadline:
            time.sleep(0.01)  # both accepted by the provider
        _kill(alice)  # alice's kernel dies with both jobs unfinished
        monkeypatch.setenv("APIFRAME_API_KEY", "sk-bob-0002")
        with Engine(Store(home), lease_seconds=1.0, **fast) as bob:
            time.sleep(3.0)  # alice's lease ran out twice over; bob's heartbeat ran ~6 times
            assert bob._tasks == {}  # bob's key is not alice's: he never resumes her jobs
            assert {bob.store.current(j.id)["owner"] for j in jobs} == {alice.owner}
        monkeypatch.setenv("APIFRAME_API_KEY", "sk-alice-0001")
        with Engine(Store(home), lease_seconds=1.0, **fast) as again:
            done = [again.get(j.id).wait(30) for j in jobs]
            assert [j.status for j in done] == [Status.SUCCEEDED] * 2
    finally:
        served.stop()
    assert imagine_count(served.state) == 2  # each submitted once


def test_switching_histories_lets_running_jobs_end_where_they_started(tmp_path, monkeypatch):
    from jupyter_imagine import api

    monkeypatch.setenv("JUPYTER_IMAGINE_SANDBOX_SPEED", "20")
    before = api._set_engine(Engine(Store(tmp_path / "mine")))
    try:
        job = ji.imagine("a kiln in the snow", provider="apiframe")
        old = api.get_engine()
        ji.configure(store=str(tmp_path / "team"))
        assert api.get_engine() is not old and not job.done
        assert job.wait(30).status is Status.SUCCEEDED  # driven to its end: no one hangs
        until(lambda: not old.running, 20)  # then the old engine let its history go
        with Store(tmp_path / "mine") as mine:
            assert mine.get(job.id)["status"] == "succeeded"
        assert ji.history().empty  # the new history has only what starts there
        with pytest.raises(ImagineError) as info:
            job.upscale(1)
        assert str(info.value) == (
            f"this job's history, {tmp_path / 'mine' / 'history.sqlite'}, was left for another "
            "(jupyter_imagine.configure(store=…)); to act on its jobs, switch back with "
            f"jupyter_imagine.configure(store={str(tmp_path / 'mine')!r}) and load the job "
            "again with jupyter_imagine.job(its id)")
        ji.configure(store=str(tmp_path / "mine"))
        assert ji.job(job.id).upscale(1).wait(30).status is Status.SUCCEEDED
    finally:
        api._set_engine(before).close()


def test_a_retiring_engine_takes_no_other_engines_jobs_over(tmp_path):
    app = create_app(speed=20)
    app.state.sandbox.clock.speed = 0  # its own job waits at the provider
    eng = Engine(Store(tmp_path / "home"), sandbox_app=app, lease_seconds=0.3,
                 **{**FAST, "sandbox_speed": 20}).start()
    own = eng.imagine("a weir at dusk", provider="apiframe")
    eng.retire()
    dead = Job(provider="apiframe", kind="imagine", prompt="a weir at dawn")
    with Store(tmp_path / "home") as other:  # a dead kernel's job, its lease long over
        other.save(dead.to_record(), owner="dead", lease_until=1.0)
        time.sleep(0.5)  # five heartbeats
        assert other.current(dead.id)["owner"] == "dead" and eng.running
    app.state.sandbox.clock.speed = 20
    assert own.wait(30).status is Status.SUCCEEDED
    until(lambda: not eng.running, 20)  # its last job ended: it closed


def test_a_team_store_outage_mid_job_ends_with_the_job_done_in_the_store(tmp_path):
    from _postgres import Server

    from jupyter_imagine.store import open_store

    app = create_app(speed=20)
    clock = app.state.sandbox.clock
    with Server() as server:
        url = server.create_database("outage")
        with Engine(open_store(url, home=tmp_path / "home"), sandbox_app=app,
                    lease_seconds=1.0, **{**FAST, "sandbox_speed": 20}) as eng:
            clock.speed = 0  # the job waits at the provider while the server is down
            job = eng.imagine("a kiln in the fog", provider="apiframe")
            until(lambda: job.submit_state == "sent", 20)
            server.pause()
            clock.speed = 20
            with pytest.raises(ji.StorageError, match="cannot be reached"):
                job.wait(30)
            server.resume()
            until(lambda: eng.get(job.id) is not job, 30)  # reconnected, and taken back
            assert eng.get(job.id).wait(30).status is Status.SUCCEEDED
            assert eng.store.get(job.id)["status"] == "succeeded"
    assert imagine_count(app.state.sandbox) == 1


def test_a_team_store_outage_is_said_once_by_a_kernel_following_the_job(tmp_path, caplog):
    from _postgres import Server

    from jupyter_imagine.store import open_store

    caplog.set_level(logging.WARNING)
    app = create_app(speed=20)
    clock = app.state.sandbox.clock
    fast = {**FAST, "sandbox_speed": 20}
    with Server() as server:
        url = server.create_database("outage")
        first = Engine(open_store(url, home=tmp_path / "laptop"), sandbox_app=app,
                       lease_seconds=1.0, **fast)
        other = Engine(open_store(url, home=tmp_path / "hub"), sandbox_app=app,
                       lease_seconds=1.0, **fast)
        with first, other:
            clock.speed = 0
            job = first.imagine("a kiln by the sea", provider="apiframe")
            until(lambda: job.submit_state == "sent", 20)
            other.get(job.id)  # followed: live updates, and a version query every 0.5 s
            server.pause()
            clock.speed = 20
            time.sleep(2.5)  # five follower tries, seven heartbeats of each engine
            server.resume()
            until(lambda: first.store.get(job.id)["status"] == "succeeded", 30)
    assert imagine_count(app.state.sandbox) == 1  # whichever engine took it up, sent once
    said = [r.getMessage() for r in caplog.records if r.name.startswith("jupyter_imagine")]
    assert any(m.startswith("heartbeat of") and "cannot be reached" in m for m in said)
    for step in ("heartbeat of", "following jobs in", "live updates from"):
        lines = [m for m in said if m.startswith(step)]
        assert len(lines) <= 2 * (2 if step == "heartbeat of" else 1), lines  # down, back


def test_on_the_team_store_two_machines_share_jobs_live(tmp_path, pg_url):
    from jupyter_imagine.store import open_store

    app = create_app(speed=20)
    fast = {**FAST, "sandbox_speed": 20}
    first = Engine(open_store(pg_url, home=tmp_path / "laptop"), sandbox_app=app,
                   lease_seconds=2, **fast)
    second = Engine(open_store(pg_url, home=tmp_path / "hub"), sandbox_app=app,
                    lease_seconds=2, **fast)
    with first, second:
        sent = _requests_of(second)
        jobs = [first.imagine(f"a weir {i}", provider="apiframe") for i in range(2)]
        followed = [second.get(job.id) for job in jobs]
        seen: list[str] = []
        followed[0].observe(lambda job, names: seen.append(job.status.value))
        done = [job.wait(30) for job in followed]
        assert [job.status for job in done] == [Status.SUCCEEDED] * 2
        assert "running" in seen and sent == []  # live from the store, not one request
        df = second.store.frame()
        assert set(df["user"]) == {first.store.user}
    assert imagine_count(app.state.sandbox) == 2
