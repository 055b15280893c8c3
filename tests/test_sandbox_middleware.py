"""The sandbox's outer middleware (``sandbox/_middleware.py``): body-size limit and the control
policy, and how ``python -m jupyter_imagine.sandbox`` picks that policy from its bind."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from jupyter_imagine.sandbox import SandboxState, create_app
from jupyter_imagine.sandbox.__main__ import control_policy, is_loopback
from jupyter_imagine.sandbox._middleware import ControlPolicy

pytestmark = pytest.mark.anyio

KEY = {"Authorization": "test-key"}


@contextlib.asynccontextmanager
async def _client(**kw: Any) -> AsyncIterator[tuple[httpx.AsyncClient, SandboxState]]:
    app = create_app(speed=0.0, **kw)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test",
                                 headers=KEY) as client:
        yield client, app.state.sandbox
    await app.state.sandbox.aclose()


# ----------------------------------------------------------------------------- body limit
async def test_oversized_body_is_413_and_not_processed():
    async with _client(max_body=1000) as (client, state):
        big = await client.post("/apiframe/imagine", json={"prompt": "x" * 2000})
        assert big.status_code == 413 and big.json()  # apiframe's own error shape
        assert state.tasks == {}
        ok = await client.post("/apiframe/imagine", json={"prompt": "a boat"})
        assert ok.status_code == 200


async def test_oversized_body_uses_the_providers_error_shape_when_it_has_one():
    async with _client(max_body=1000) as (client, _):
        big = await client.post("/neuroflash/api/image-service/anything", content=b"x" * 2000)
        assert big.status_code == 413
        assert big.headers["content-type"].startswith("application/problem+json")
        assert big.json()["title"] == "Payload Too Large"


async def test_streamed_body_without_length_is_limited_too():
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b'{"prompt": "' + b"x" * 200

    async with _client(max_body=1000) as (client, state):
        big = await client.post("/apiframe/imagine", content=chunks(),
                                headers={"content-type": "application/json"})
        assert big.status_code == 413 and state.tasks == {}


async def test_default_limit_takes_a_large_upload():
    async with _client() as (client, _):
        answer = await client.post("/apiframe/imagine", json={"prompt": "p" * 5_000_000})
        assert answer.status_code != 413


# ----------------------------------------------------------------------------- control policy
async def test_control_routes_need_the_token_when_one_is_set():
    async with _client(control=ControlPolicy(token="s3cret")) as (client, state):
        assert (await client.get("/_sandbox/faults")).status_code == 403
        wrong = await client.get("/_sandbox/faults", headers={"x-sandbox-token": "nope"})
        assert wrong.status_code == 403
        spec = {"path": "/apiframe/imagine", "status": 500}
        refused = await client.post("/_sandbox/faults", json=spec)
        assert refused.status_code == 403 and len(state.faults) == 0
        ok = await client.post("/_sandbox/faults", json=spec, headers={"x-sandbox-token": "s3cret"})
        assert ok.status_code == 201 and len(state.faults) == 1
        assert (await client.get("/healthz")).status_code == 200  # only control is guarded


async def test_disabled_control_refuses_every_control_route():
    async with _client(control=ControlPolicy(enabled=False)) as (client, _):
        for path in ("/_sandbox/faults", "/_sandbox/clock", "/_sandbox/requests"):
            assert (await client.get(path)).status_code == 403
        ok = await client.post("/apiframe/imagine", json={"prompt": "a boat"})
        assert ok.status_code == 200


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("::1", True),
    ("[::1]", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
    ("example.org", False),
])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_control_policy_from_the_command_line():
    assert control_policy("127.0.0.1", None, False) == ControlPolicy()
    assert control_policy("0.0.0.0", None, False) == ControlPolicy(enabled=False)
    assert control_policy("0.0.0.0", None, True) == ControlPolicy()
    assert control_policy("0.0.0.0", "tok", False) == ControlPolicy(token="tok")
    assert control_policy("127.0.0.1", "tok", False) == ControlPolicy(token="tok")
