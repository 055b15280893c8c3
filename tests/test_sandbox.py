"""The sandbox app shell: clock, index, fault injection, request counting, webhook sink, and
``python -m jupyter_imagine.sandbox`` served over real HTTP on loopback.

The APIFRAME emulation itself is tested in ``test_sandbox_apiframe.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from jupyter_imagine.sandbox import (
    PROVIDERS,
    Fault,
    FaultInjector,
    SandboxState,
    SimClock,
    create_app,
)

ROOT = Path(__file__).resolve().parents[1]
BASE = "http://sandbox.test"
KEY = {"Authorization": "test-key"}


@contextlib.asynccontextmanager
async def _client(**kw) -> AsyncIterator[tuple[httpx.AsyncClient, SandboxState]]:
    app = create_app(**{"speed": 0.0, **kw})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=KEY) as client:
        yield client, app.state.sandbox
    await app.state.sandbox.aclose()


# ----------------------------------------------------------------------------- the clock
def test_simclock_runs_at_its_speed(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("jupyter_imagine.sandbox._clock.time.monotonic", lambda: now[0])
    clock = SimClock(10)
    assert clock.now() == 0
    now[0] += 1.5
    assert clock.now() == pytest.approx(15)
    assert clock.advance(5) == pytest.approx(20)
    assert clock.real_seconds_until(40) == pytest.approx(2)
    assert clock.real_seconds_until(3) == 0
    clock.speed = 0  # re-speeding keeps now() continuous
    now[0] += 100
    assert clock.now() == pytest.approx(20)
    assert clock.real_seconds_until(21) is None
    clock.advance(1)
    assert clock.now() == pytest.approx(21)


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_simclock_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        SimClock(bad)
    with pytest.raises(ValueError):
        SimClock(1).advance(bad)


# ----------------------------------------------------------------------------- index, health, state
@pytest.mark.anyio
async def test_index_healthz_and_state():
    async with _client(speed=3, seed=7) as (client, state):
        index = (await client.get("/")).json()
        assert index["providers"] == [
            {"name": p.NAME, "prefix": p.PREFIX, "url": BASE + p.PREFIX} for p in PROVIDERS
        ]
        assert {"name": "apiframe", "prefix": "/apiframe", "url": BASE + "/apiframe"} in (
            index["providers"]
        )
        for provider in PROVIDERS:  # each mounted: something answers under its prefix
            r = await client.get(provider.PREFIX + "/")
            assert r.status_code != 500
        assert index["clock"]["speed"] == 3
        assert (await client.get("/healthz")).json() == {"ok": True}
        assert isinstance(state, SandboxState)
        assert state.seed == 7 and state.clock.speed == 3
        assert state.rejected_keys == {"invalid-key"} and state.accepted_keys is None
        assert {"gore", "nsfw", "bloodbath"} <= state.banned_words
        assert state.providers["apiframe"].credits == 10000


@pytest.mark.anyio
async def test_clock_route_advances_and_respeeds():
    async with _client() as (client, state):
        assert (await client.get("/_sandbox/clock")).json() == {"now": 0.0, "speed": 0.0}
        after = (await client.post("/_sandbox/clock", json={"advance": 12.5})).json()
        assert after["now"] == pytest.approx(12.5) and state.clock.now() == pytest.approx(12.5)
        assert (await client.post("/_sandbox/clock", json={"speed": 2})).json()["speed"] == 2
        assert (await client.post("/_sandbox/clock", json={"advance": -1})).status_code == 400


# ----------------------------------------------------------------------------- faults
@pytest.mark.anyio
async def test_fault_answers_provider_error_and_is_not_processed():
    async with _client() as (client, state):
        state.faults.add("/apiframe/imagine", status=500)
        failed = await client.post("/apiframe/imagine", json={"prompt": "a boat"})
        assert failed.status_code == 500 and failed.json() == {}
        assert state.tasks == {}  # not processed
        assert state.providers["apiframe"].credits == 10000
        ok = await client.post("/apiframe/imagine", json={"prompt": "a boat"})
        assert ok.status_code == 200 and len(state.tasks) == 1


@pytest.mark.anyio
async def test_fault_429_carries_retry_after():
    async with _client() as (client, state):
        state.faults.add("/apiframe/fetch", status=429, count=2, retry_after=2.5)
        state.faults.add("/apiframe/account", status=429)
        for _ in range(2):
            r = await client.post("/apiframe/fetch", json={"task_id": "x"})
            assert r.status_code == 429
            assert r.json() == {"errors": [{"msg": "Too many requests"}]}
            assert r.headers["Retry-After"] == "2.5"
        assert (await client.post("/apiframe/fetch", json={"task_id": "x"})).status_code == 404
        default = await client.get("/apiframe/account")
        assert default.status_code == 429 and default.headers["Retry-After"] == "1"


@pytest.mark.anyio
async def test_fault_method_filter_custom_body_and_other_paths():
    async with _client() as (client, state):
        state.faults.add("/apiframe/*", status=503, method="GET", body={"down": True})
        assert (await client.post("/apiframe/fetch", json={"task_id": "x"})).status_code == 404
        r = await client.get("/apiframe/account")
        assert r.status_code == 503 and r.json() == {"down": True}
        state.faults.add("/healthz", status=502)
        r = await client.get("/healthz")
        assert r.status_code == 502 and r.json() == {"error": "injected fault (502)"}
        assert len(state.faults) == 0


@pytest.mark.anyio
async def test_faults_over_http():
    async with _client() as (client, state):
        spec = {"path": "/apiframe/imagine", "status": 429, "count": 3, "retry_after": 4}
        created = await client.post("/_sandbox/faults", json=spec)
        assert created.status_code == 201 and created.json()["count"] == 3
        listed = (await client.get("/_sandbox/faults")).json()["faults"]
        assert [f["path"] for f in listed] == ["/apiframe/imagine"]
        r = await client.post("/apiframe/imagine", json={"prompt": "x"})
        assert r.status_code == 429 and r.headers["Retry-After"] == "4"
        assert (await client.delete("/_sandbox/faults")).json() == {"faults": []}
        assert len(state.faults) == 0
        assert (await client.post("/apiframe/imagine", json={"prompt": "x"})).status_code == 200
        for bad in (
            {"status": 500},
            {"path": "apiframe", "status": 500},
            {"path_regex": "/apiframe/imagine$", "status": 500},
            {"path": "/x", "status": 99},
            {"path": "/x", "status": 500, "count": 0},
            {"path": "/x", "kind": "explode"},
            {"path": "/x", "status": 500, "rate": 1.5},
            {"path": "/x", "status": 500, "colour": "red"},
            ["not", "an", "object"],
        ):
            assert (await client.post("/_sandbox/faults", json=bad)).status_code == 400


def test_fault_injector_unit():
    faults = FaultInjector()
    fault = faults.add("/a", status=500, count=2, method="post")
    assert isinstance(fault, Fault) and fault.method == "POST"
    assert faults.take("GET", "/a") is None
    assert faults.take("POST", "/b") is None
    assert faults.take("POST", "/a") is fault and len(faults) == 1
    assert faults.take("POST", "/a") is fault and len(faults) == 0
    with pytest.raises(ValueError):
        faults.add("a", status=500)
    with pytest.raises(ValueError):
        faults.add("/x", status=500, retry_after=-1)


# ----------------------------------------------------------------------------- request counter
@pytest.mark.anyio
async def test_request_counter():
    async with _client() as (client, state):
        state.faults.add("/apiframe/fetch", status=500)
        for _ in range(3):
            await client.post("/apiframe/fetch", json={"task_id": "x"})
        await client.get("/apiframe/account")
        await client.get("/_sandbox/requests")  # control routes are not counted
        assert state.requests[("POST", "/apiframe/fetch")] == 3  # the faulted one too
        assert state.requests[("GET", "/apiframe/account")] == 1
        body = (await client.get("/_sandbox/requests")).json()
        assert body == {
            "total": 4,
            "requests": {"GET /apiframe/account": 1, "POST /apiframe/fetch": 3},
        }
        assert (await client.delete("/_sandbox/requests")).json()["total"] == 0
        assert sum(state.requests.values()) == 0


# ----------------------------------------------------------------------------- webhook sink
@pytest.mark.anyio
async def test_a_webhook_url_that_fails_is_warned_about_once_not_per_update(caplog):
    from jupyter_imagine.sandbox._state import deliver_webhook

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"  # nothing listens there
    caplog.set_level(logging.DEBUG, logger="jupyter_imagine.sandbox._state")
    state = SandboxState()
    for progress in (10, 50, 100):
        assert await deliver_webhook(state, url, {"percentage": progress}, timeout=5) is False
    said = [(r.levelno, r.getMessage()) for r in caplog.records if url in r.getMessage()]
    assert [level for level, _ in said] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert said[0][1].startswith(f"sandbox webhook to {url} failed: ")
    assert said[0][1].endswith("(later failures to it are logged at DEBUG)")


@pytest.mark.anyio
async def test_webhook_sink_records_and_clears():
    async with _client() as (client, state):
        state.clock.advance(3)
        await client.post(
            "/_sandbox/webhook-sink/job-1", json={"a": 1}, headers={"x-webhook-secret": "s"}
        )
        await client.post("/_sandbox/webhook-sink", content=b"not json")
        hooks = (await client.get("/_sandbox/webhook-sink")).json()["webhooks"]
        assert [h["path"] for h in hooks] == [
            "/_sandbox/webhook-sink/job-1",
            "/_sandbox/webhook-sink",
        ]
        assert hooks[0]["body"] == {"a": 1} and hooks[0]["headers"]["x-webhook-secret"] == "s"
        assert hooks[0]["received_at"] == pytest.approx(3)
        assert hooks[1]["body"] == "not json"
        assert state.webhooks == hooks
        await client.delete("/_sandbox/webhook-sink")
        assert state.webhooks == []


# ------------------------------------------------------------------- python -m … on loopback
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """``python -m jupyter_imagine.sandbox --speed 0 --drawing quick`` on a free loopback port:
    (url, log)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("sandbox") / "server.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_imagine.sandbox", "--port", str(port), "--speed", "0",
             "--drawing", "quick"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_served_over_loopback_end_to_end(served):
    url, log = served
    assert f"jupyter_imagine sandbox on {url} (speed 0, quick drawing)" in log.read_text()
    with httpx.Client(base_url=url, headers=KEY, timeout=30) as client:
        index = client.get("/").json()
        assert {"name": "apiframe", "prefix": "/apiframe", "url": url + "/apiframe"} in (
            index["providers"]
        )
        assert (
            client.post(
                "/apiframe/imagine", json={"prompt": "x"}, headers={"Authorization": ""}
            ).status_code
            == 401
        )
        task_id = client.post(
            "/apiframe/imagine", json={"prompt": "a lighthouse at dusk", "aspect_ratio": "16:9"}
        ).json()["task_id"]
        assert client.post("/apiframe/fetch", json={"task_id": task_id}).json()["status"] == (
            "pending"
        )
        client.post("/_sandbox/clock", json={"advance": 41})
        done = client.post("/apiframe/fetch", json={"task_id": task_id}).json()
        assert done["status"] == "finished" and done["original_image_url"].startswith(url + "/")
        grid = httpx.get(done["original_image_url"], timeout=30)
        assert grid.status_code == 200 and grid.headers["content-type"] == "image/png"
        from jupyter_imagine.imaging import image_size

        assert image_size(grid.content) == (1024, 576)
        # --drawing quick: plain pictures, each row of the sky one colour (a landscape's rows
        # hold clouds, stars and a dither: hundreds of colours)
        import io

        from PIL import Image as PILImage

        top_row = PILImage.open(io.BytesIO(grid.content)).convert("RGB").crop((0, 0, 512, 1))
        assert len(top_row.getcolors(512)) == 1
        counts = client.get("/_sandbox/requests").json()["requests"]
        assert counts[f"GET /apiframe/cdn/{task_id}/grid.png"] == 1


@pytest.mark.parametrize(("args", "said"), [
    (["--speed", "-1"], "--speed must be >= 0"),
    (["--port", "99999"], "--port must be from 0 to 65535, not 99999"),
    (["--drawing", "fast"], "argument --drawing: invalid choice: 'fast' (choose from 'full', "
                            "'quick')"),
])
def test_cli_rejects_bad_arguments(args, said):
    result = subprocess.run(
        [sys.executable, "-m", "jupyter_imagine.sandbox", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2 and said in result.stderr
