"""Timeouts, dropped connections, rates and glob paths of sandbox faults (``sandbox/_faults.py``),
in-process (``httpx.ASGITransport``) and served by uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from jupyter_imagine.sandbox import FaultInjector, SandboxState, create_app
from jupyter_imagine.sandbox._faults import InjectedConnectError, InjectedDisconnect

pytestmark = pytest.mark.anyio

KEY = {"Authorization": "test-key"}
IMAGINE = "/apiframe/imagine"


@contextlib.asynccontextmanager
async def _in_process() -> AsyncIterator[tuple[httpx.AsyncClient, SandboxState]]:
    app = create_app(speed=0.0)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test",
                                 headers=KEY) as client:
        yield client, app.state.sandbox
    await app.state.sandbox.aclose()


@contextlib.asynccontextmanager
async def _served(live_sandbox) -> AsyncIterator[tuple[httpx.AsyncClient, SandboxState]]:
    async with httpx.AsyncClient(base_url=live_sandbox.url, headers=KEY, timeout=5) as client:
        yield client, live_sandbox.state


async def _imagine(client: httpx.AsyncClient, **kw) -> httpx.Response:
    return await client.post(IMAGINE, json={"prompt": "a boat"}, **kw)


# ----------------------------------------------------------------------------- in-process
async def test_in_process_drop_before_is_a_connect_error_and_not_processed():
    async with _in_process() as (client, state):
        state.faults.add(IMAGINE, kind="drop_before")
        with pytest.raises(httpx.ConnectError) as info:
            await _imagine(client)
        assert isinstance(info.value, InjectedConnectError)
        assert state.tasks == {} and state.requests[("POST", IMAGINE)] == 1
        assert (await _imagine(client)).status_code == 200


async def test_in_process_drop_after_is_a_protocol_error_after_processing():
    async with _in_process() as (client, state):
        state.faults.add(IMAGINE, kind="drop_after")
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await _imagine(client)
        assert isinstance(info.value, InjectedDisconnect)
        assert len(state.tasks) == 1  # the task exists; the client never learnt its id


async def test_in_process_timeout_ignores_httpx_timeouts_so_wait_for_enforces_them():
    async with _in_process() as (client, state):
        state.faults.add(IMAGINE, kind="timeout", delay=0.4)
        started = time.monotonic()
        late = await _imagine(client, timeout=0.05)  # ASGITransport does not apply timeouts
        assert late.status_code == 200 and time.monotonic() - started >= 0.4
        state.faults.add(IMAGINE, kind="timeout", delay=30)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(_imagine(client), 0.1)
        assert len(state.tasks) == 2  # the held request was processed


# ----------------------------------------------------------------------------- served
async def test_served_timeout_is_a_read_timeout_and_the_request_was_processed(live_sandbox):
    async with _served(live_sandbox) as (client, state):
        state.faults.add(IMAGINE, kind="timeout", delay=3)
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await _imagine(client, timeout=0.3)
        assert time.monotonic() - started < 2
        assert len(state.tasks) == 1
        assert (await _imagine(client)).status_code == 200


@pytest.mark.parametrize(("kind", "tasks"), [("drop_before", 0), ("drop_after", 1)])
async def test_served_drops_close_the_connection(live_sandbox, kind, tasks, caplog):
    async with _served(live_sandbox) as (client, state):
        state.faults.add(IMAGINE, kind=kind)
        # Served, the socket closes after the response headers: the client sees the server's FIN
        # (RemoteProtocolError) or, when bytes it sent were still unread, the kernel's reset
        # (ReadError). Both are a dropped connection; which one comes first is a race.
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            await _imagine(client)
        assert len(state.tasks) == tasks
        assert (await _imagine(client)).status_code == 200
        assert "Exception in ASGI application" not in caplog.text


# ----------------------------------------------------------------------------- rates, globs
def test_rate_is_seeded_and_count_may_be_unlimited():
    def taken(seed: int) -> list[bool]:
        faults = FaultInjector(seed)
        faults.add("/a", status=500, rate=0.25, count=None)
        return [faults.take("GET", "/a") is not None for _ in range(2000)]

    first = taken(7)
    assert first == taken(7) and first != taken(8)
    assert 400 < sum(first) < 600


def test_rate_with_a_count_stops_after_count_and_falls_through_to_the_next_fault():
    faults = FaultInjector()
    sometimes = faults.add("/a", status=503, rate=0.5, count=3)
    always = faults.add("/a", status=500, count=None)
    seen = [faults.take("GET", "/a") for _ in range(50)]
    assert seen.count(sometimes) == 3 and seen.count(always) == 47
    assert faults.pending() == [always]


def test_a_fault_with_seconds_is_a_window_whatever_its_count(monkeypatch):
    """A storm lasts its seconds, not a number of requests: a quiet client is not starved."""
    clock = [1000.0]
    monkeypatch.setattr("jupyter_imagine.sandbox._faults.time.monotonic", lambda: clock[0])
    faults = FaultInjector()
    storm = faults.add("/a*", status=429, count=None, seconds=2)
    short = faults.add("/b", status=500, count=50, seconds=2)
    assert faults.take("GET", "/a/x") is storm and faults.take("GET", "/b") is short
    clock[0] += 1.99
    assert faults.take("GET", "/a/y") is storm
    clock[0] += 0.02
    assert faults.take("GET", "/a/z") is None and faults.take("GET", "/b") is None
    assert faults.pending() == [] and storm.to_dict()["seconds"] == 2.0


def test_globs_match_the_whole_path_in_linear_time():
    faults = FaultInjector()
    faults.add("/apiframe/fetch*", status=500, count=None)
    faults.add("*/imagine/requests/[0-9]*", status=500, count=None)
    assert faults.take("POST", "/apiframe/fetch-many") is not None
    assert faults.take("POST", "/x/apiframe/fetch") is None
    assert faults.take("GET", "/blockade/api/v1/imagine/requests/42") is not None
    assert faults.take("GET", "/blockade/api/v1/imagine/requests/x") is None
    faults.clear()
    faults.add("/" + "*a" * 40 + "b", status=500)  # a nested-quantifier trap for a regex
    started = time.monotonic()
    assert faults.take("GET", "/" + "a" * 5000) is None
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("bad", [
    {"path": "apiframe", "status": 500},
    {"path": "/" + "a" * 600, "status": 500},
    {"path": "/x"},
    {"path": "/x", "kind": "explode"},
    {"path": "/x", "status": 500, "rate": 0},
    {"path": "/x", "kind": "timeout", "delay": -1},
    {"path": "/x", "kind": "timeout", "delay": "inf"},
    {"path": "/x", "status": 429, "seconds": -1},
])
def test_bad_faults_are_refused(bad):
    with pytest.raises(ValueError):
        FaultInjector().add(bad.pop("path"), **bad)


async def test_new_kinds_over_http():
    async with _in_process() as (client, state):
        spec = {"path": IMAGINE, "kind": "drop_after", "rate": 1, "count": None}
        created = await client.post("/_sandbox/faults", json=spec)
        assert created.status_code == 201
        assert created.json() | spec == created.json()
        listed = (await client.get("/_sandbox/faults")).json()["faults"]
        assert [(f["kind"], f["count"], f["rate"]) for f in listed] == [("drop_after", None, 1.0)]
        for _ in range(2):
            with pytest.raises(httpx.RemoteProtocolError):
                await _imagine(client)
        assert len(state.tasks) == 2
        await client.delete("/_sandbox/faults")
        assert (await _imagine(client)).status_code == 200
