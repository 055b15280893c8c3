"""The Banatie client against the sandbox: in-process (ASGI), over real HTTP on loopback, and end
to end through the engine.

Provider-level tests make one wire exchange per provider method (no engine retries).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from datetime import datetime, timezone

import httpx
import numpy as np
import pytest
from _live_sandbox import LOOPBACK_TIMEOUT
from PIL import Image as PILImage

import jupyter_imagine as ji
from jupyter_imagine.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidRequest,
    JobFailed,
    NotFound,
    RateLimited,
    ServiceUnavailable,
)
from jupyter_imagine.models import Job, Status
from jupyter_imagine.providers import PROVIDERS
from jupyter_imagine.providers.banatie import REGENERATE, STATUS_MAP, Banatie, Page
from jupyter_imagine.sandbox import create_app

KEY = "bnt_client-test-key"


@pytest.fixture(autouse=True)
def _no_cdn_override(monkeypatch):
    """``BANATIE_CDN_URL`` would point live URLs away from the sandbox (conftest keeps it)."""
    monkeypatch.delenv("BANATIE_CDN_URL", raising=False)


class Harness:
    """A Banatie client on a sandbox (``api``), its emulator (``emu``) and request counting."""

    def __init__(self, client: httpx.AsyncClient, base: str, state, key: str | None = KEY):
        self.client = client
        self.state = state
        self.emu = state.providers["banatie"]
        self.api = Banatie(client=client, base_url=base + "/banatie", api_key=key, sandbox=True)

    def count(self, method: str, suffix: str) -> int:
        return sum(n for (m, p), n in self.state.requests.items()
                   if m == method and p.endswith(suffix))

    async def submit(self, kind: str, prompt: str = "a lighthouse at dusk", parent=None,
                     **params) -> tuple[Job, object]:
        job = Job(provider="banatie", kind=kind, prompt=prompt, params=params,
                  parent_id=parent.id if parent else None)
        sub = await self.api.submit(job, parent)
        job.remote_id = sub.remote_id
        if sub.update is not None:
            job.status = sub.update.status
            job.extras = dict(sub.update.extras)
        return job, sub


def run(coro):
    return asyncio.run(coro)


def in_process(fn, speed: float = 1000.0, base: str = "http://sandbox.test"):
    async def go():
        app = create_app(speed=speed)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            return await fn(Harness(client, base, app.state.sandbox))

    return run(go())


def _png(rgb=(200, 30, 30), size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, rgb).save(buf, format="PNG")
    return buf.getvalue()


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(data)).convert("RGB").resize((96, 96)), float)


# ------------------------------------------------------------------ tables, parsing, params
@pytest.mark.parametrize("raw, status", sorted(STATUS_MAP.items()))
def test_status_table(raw, status):
    api = Banatie(client=None, base_url="http://x", api_key="k", sandbox=True)
    assert api.map_status(raw) is status
    assert api.parse({"id": "g", "status": raw}).status is status


def test_status_table_covers_the_documented_strings():
    assert set(STATUS_MAP) == {"pending", "processing", "success", "failed"}


def test_parse_the_documented_201_example():
    api = Banatie(client=None, base_url="http://x", api_key="k", sandbox=True)
    update = api.parse({
        "id": "550e8400-e29b-41d4-a716-446655440000", "status": "success",
        "prompt": "a serene mountain landscape at sunset", "aspectRatio": "16:9",
        "outputImage": {"id": "8a3b", "storageUrl": "https://cdn.banatie.app/o/p/img/8a3b",
                        "width": 1792, "height": 1008},
        "flowId": "770e", "createdAt": "2025-01-15T10:30:00Z",
    })
    assert update.status is Status.SUCCEEDED and update.progress == 100
    assert [(i.url, i.width, i.height) for i in update.images] == [
        ("https://cdn.banatie.app/o/p/img/8a3b", 1792, 1008)]
    assert update.extras["image_id"] == "8a3b" and update.extras["flow_id"] == "770e"
    pending = api.parse({"id": "g", "status": "pending", "outputImageId": None})
    assert pending.status is Status.QUEUED and pending.images is None
    failed = api.parse({"id": "g", "status": "failed", "errorMessage": "Prompt blocked by the "
                        "safety filter ('gore')"})
    assert failed.status is Status.FAILED and failed.error_type == "ModeratedPrompt"
    assert "without a reason" in api.parse({"id": "g", "status": "failed"}).error


def test_registered_and_configured():
    assert PROVIDERS["banatie"] is Banatie
    assert (Banatie.name, Banatie.label, Banatie.env_key) == ("banatie", "Banatie",
                                                               "BANATIE_API_KEY")
    assert Banatie.default_base_url == "https://api.banatie.app"
    assert Banatie.sandbox_prefix == "/banatie" and Banatie.kinds == ("imagine", "live")
    api = Banatie(client=None, base_url="http://x", api_key="bnt_abc123", sandbox=False)
    assert api.auth_headers() == {"X-API-Key": "bnt_abc123"}
    assert "bnt_abc123" not in repr(api)
    assert api.job_kind("imagine") == "generation" and api.job_kind("live") == "live"


def test_cdn_base(monkeypatch):
    def cdn(base, sandbox):
        return Banatie(client=None, base_url=base, api_key="k", sandbox=sandbox).cdn_base

    assert cdn("http://sandbox.jupyter-imagine/banatie", True) == \
        "http://sandbox.jupyter-imagine/banatie-cdn"
    assert cdn("http://127.0.0.1:8765/banatie", True) == "http://127.0.0.1:8765/banatie-cdn"
    assert cdn("https://api.banatie.app", False) == "https://cdn.banatie.app"
    assert cdn("http://localhost:3000", False) == "http://localhost:3000/cdn"
    monkeypatch.setenv("BANATIE_CDN_URL", "https://img.example.com/")
    assert cdn("https://api.banatie.app", False) == "https://img.example.com"


def test_validate_params_per_kind():
    api = Banatie(client=None, base_url="http://x", api_key="k", sandbox=True)
    ref = "11111111-2222-4333-8444-555555555555"
    clean = api.validate("imagine", "a @logo on a wall", {
        "aspect_ratio": "16:9", "reference_images": f"@logo, {ref}", "flow_id": ref,
        "alias": "@hero", "flow_alias": "@h", "auto_enhance": "false", "template": "comic",
        "meta": '{"a": 1}',
    })
    assert clean == {"aspect_ratio": "16:9", "reference_images": ["@logo", ref], "flow_id": ref,
                     "alias": "@hero", "flow_alias": "@h", "auto_enhance": False,
                     "template": "comic", "meta": {"a": 1}}
    assert api.validate("imagine", "x", {"flow_id": False}) == {"flow_id": "none"}
    assert api.validate("imagine", "x", {"reference_images": ["@last"]}) == {
        "reference_images": ["@last"]}
    bad = [
        ("imagine", {"aspect_ratio": "5:4"}, "one of"),
        ("imagine", {"reference_images": ["@a", "@b", "@c", "@d"]}, "at most 3"),
        ("imagine", {"reference_images": ["not-an-id"]}, "neither"),
        ("imagine", {"alias": "hero"}, "@name"),
        ("imagine", {"alias": "@last"}, "technical"),
        ("imagine", {"flow_id": "abc"}, "flow UUID"),
        ("imagine", {"flow_id": "none", "flow_alias": "@x"}, "needs a flow"),
        ("imagine", {"meta": "[1]"}, "dict"),
        ("imagine", {"scope": "demo"}, "take no scope"),
        ("live", {"reference_images": ["@a"]}, "take no reference_images"),
        ("live", {"scope": "bad scope"}, "scope"),
        ("imagine", {"style": "x"}, "unknown parameter"),
        ("upscale", {}, "cannot start"),
    ]
    for kind, params, words in bad:
        with pytest.raises(InvalidRequest, match=words):
            api.validate(kind, "x", params)
    with pytest.raises(InvalidRequest, match="empty"):
        api.validate("imagine", "  ", {})
    with pytest.raises(InvalidRequest) as refused:
        api.validate("upscale", "x", {})
    assert str(refused.value) == "Banatie cannot start a 'upscale' job; it can: imagine, live"
    assert refused.value.provider == "banatie"


# ------------------------------------------------------------------ lifecycle
@pytest.mark.parametrize("synchronous, prompt, expected", [
    (True, "a calm lake", [Status.SUCCEEDED]),
    (True, "a calm lake sandbox:fail", [Status.FAILED]),
    (False, "a calm lake", [Status.QUEUED, Status.RUNNING, Status.SUCCEEDED]),
    (False, "a calm lake sandbox:fail", [Status.QUEUED, Status.RUNNING, Status.FAILED]),
])
def test_lifecycle_mapping(synchronous, prompt, expected):
    async def flow(h):
        h.emu.synchronous = synchronous
        job, sub = await h.submit("generation", prompt)
        seen = [sub.update.status]
        for step in (1.5, 4.0)[: len(expected) - 1]:
            h.state.clock.advance(step)
            seen.append((await h.api.poll(job)).status)
        assert seen == expected
        final = await h.api.poll(job)
        if expected[-1] is Status.SUCCEEDED:
            assert len(final.images) == 1 and final.images[0].url.endswith(final.extras["image_id"])
        else:
            assert "sandbox:fail" in final.error and not final.images
        # a finished answer needs no poll: the engine takes Submission.update as final
        assert sub.update.status.final is synchronous

    in_process(flow, speed=0)


def test_submit_sends_every_parameter():
    async def flow(h):
        up = await h.api.upload_image(_png(), alias="@brand", flow_id="none")
        _, sub = await h.submit(
            "generation", "a poster with @brand", aspect_ratio="3:2",
            reference_images=[up["id"]], alias="@poster", flow_alias="@p", auto_enhance=False,
            template="product", meta={"campaign": 7},
        )
        raw = sub.raw
        assert raw["aspectRatio"] == "3:2" and raw["autoEnhance"] is False
        assert raw["prompt"] == "a poster with @brand"  # untouched, not enhanced
        assert raw["meta"] == {"campaign": 7} and raw["flowId"]
        assert [r["imageId"] for r in raw["referencedImages"]] == [up["id"]]
        poster = await h.api.image("@poster")
        assert poster["id"] == raw["outputImageId"]
        flow_ = await h.api.flow(raw["flowId"])
        assert flow_["aliases"] == {"@p": raw["outputImageId"]}
        _, no_flow = await h.submit("generation", "x", flow_id="none")
        assert no_flow.raw["flowId"] is None
        _, same = await h.submit("generation", "y", flow_id=raw["flowId"])
        assert same.raw["flowId"] == raw["flowId"]

    in_process(flow)


# ------------------------------------------------------------------ Regenerate
def test_regenerate_child_picks_the_wire_call():
    async def flow(h):
        parent, sub = await h.submit("generation", "a pine forest", aspect_ratio="1:1")
        parent.status = Status.SUCCEEDED
        assert h.api.actions(parent) == (REGENERATE,)
        first = await h.api.download(sub.update.images[0].url)

        same = h.api.child(parent, REGENERATE)
        assert same.kind == "regenerate" and same.prompt == "a pine forest"
        assert same.params["method"] == "regenerate"
        assert same.params["generation_id"] == parent.remote_id
        assert h.api.child(parent, REGENERATE, prompt="a pine forest").params["method"] == \
            "regenerate"
        child, csub = await h.submit("regenerate", same.prompt, parent, **same.params)
        assert child.remote_id == f"{parent.remote_id}#{child.id}"
        assert csub.update.status is Status.SUCCEEDED and csub.raw["id"] == parent.remote_id
        assert (await h.api.poll(child)).extras["generation_id"] == parent.remote_id
        grandchild = h.api.child(child, REGENERATE)
        assert grandchild.params["generation_id"] == parent.remote_id
        assert h.count("POST", "/regenerate") == 1 and h.count("PUT", parent.remote_id) == 0
        second = await h.api.download(csub.update.images[0].url)
        assert csub.update.images[0].url == sub.update.images[0].url  # same image URL …
        assert np.abs(_pixels(first) - _pixels(second)).mean() > 3  # … a new picture

        changed = h.api.child(parent, REGENERATE, prompt="a desert at noon")
        assert changed.params["method"] == "update" and changed.prompt == "a desert at noon"
        _, usub = await h.submit("regenerate", changed.prompt, parent, **changed.params)
        assert h.count("PUT", parent.remote_id) == 1
        assert usub.raw["originalPrompt"] == "a desert at noon"
        wide = h.api.child(parent, REGENERATE, aspect_ratio="16:9")
        assert wide.params == {"generation_id": parent.remote_id, "method": "update",
                               "aspect_ratio": "16:9"}
        _, wsub = await h.submit("regenerate", wide.prompt, parent, **wide.params)
        assert (wsub.update.images[0].width, wsub.update.images[0].height) == (1792, 1008)
        with pytest.raises(InvalidRequest, match="no action"):
            h.api.child(parent, "U1")
        with pytest.raises(InvalidRequest, match="empty"):
            h.api.child(parent, REGENERATE, prompt=" ")
        with pytest.raises(InvalidRequest, match="mask"):
            h.api.child(parent, REGENERATE, mask=b"x")

    in_process(flow)


def test_regenerate_falls_back_to_retry_on_an_older_server():
    async def flow(h):
        parent, _ = await h.submit("generation", "a boat")
        h.state.faults.add("*/regenerate", status=404)  # a server without the route
        _, sub = await h.submit("regenerate", "a boat", parent, method="regenerate",
                                generation_id=parent.remote_id)
        assert sub.update.status is Status.SUCCEEDED
        assert h.count("POST", "/retry") == 1
        ghost = Job(provider="banatie", kind="regenerate", prompt="x",
                    params={"method": "regenerate", "generation_id": "nope"})
        with pytest.raises(NotFound, match="GENERATION_NOT_FOUND"):
            await h.api.submit(ghost, None)
        assert h.count("POST", "/retry") == 1  # a real 404 is not retried elsewhere

    in_process(flow)


# ------------------------------------------------------------------ errors
def test_errors_map_to_typed_exceptions():
    async def flow(h):
        with pytest.raises(InvalidRequest, match="Banatie answered 400: .*VALIDATION_ERROR"):
            await h.api._json("POST", "/api/v1/generations", json={})
        with pytest.raises(NotFound, match="GENERATION_NOT_FOUND"):
            await h.api.generation("nope")
        with pytest.raises(NotFound, match="FLOW_NOT_FOUND"):
            await h.api.flow("nope")
        one = await h.api.upload_image(_png(), alias="@taken")
        two = await h.api.upload_image(_png((0, 0, 200)))
        with pytest.raises(InvalidRequest, match="ALIAS_CONFLICT") as info:
            await h.api.set_alias(two["id"], "@taken")
        assert info.value.status_code == 409 and one["id"] in str(info.value)
        h.state.faults.add("*/api/v1/flows", status=500)
        with pytest.raises(ServiceUnavailable, match="INTERNAL_ERROR") as info:
            await h.api.flows()
        assert info.value.reached_server
        h.emu.enforce_real_limits = True  # 100 requests per key and window
        fresh = Banatie(client=h.client, base_url=h.api.base_url, api_key="bnt_fresh",
                        sandbox=True)
        for _ in range(100):  # another client of the same key uses the window up
            await h.client.get(h.api.base_url + "/api/v1/flows",
                               headers={"X-API-Key": "bnt_fresh"})
        with pytest.raises(RateLimited, match="RATE_LIMIT_EXCEEDED") as info:
            await fresh.flows()  # knows nothing yet: the server's 429 is what it learns from
        assert info.value.retry_after >= 1 and info.value.status_code == 429
        assert fresh._buckets["api"].remaining == 0

    in_process(flow)


def test_an_empty_or_missing_id_is_refused_before_any_request():
    async def flow(h):
        calls = [lambda: h.api.image(None), lambda: h.api.generation(""),
                 lambda: h.api.delete_image("  "), lambda: h.api.flow(None)]
        for call in calls:
            with pytest.raises(InvalidRequest,
                               match="^Banatie needs an id, @alias or slug here, not "):
                await call()
        assert sum(h.state.requests.values()) == 0

    in_process(flow)


@pytest.mark.parametrize("key", [None, "invalid-key"])
def test_rejected_key_names_the_variable_not_the_key(key):
    async def flow(h):
        h.api._api_key = key
        with pytest.raises(AuthenticationError) as info:
            await h.api.generations()
        text = str(info.value)
        assert "BANATIE_API_KEY" in text and "UNAUTHORIZED" in text and "invalid-key" not in text

    in_process(flow)


def test_the_key_never_goes_to_the_cdn():
    seen: list[httpx.Request] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request)

    async def go():
        app = create_app(speed=1000)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     event_hooks={"request": [hook]}) as client:
            h = Harness(client, "http://sandbox.test", app.state.sandbox)
            _, sub = await h.submit("generation", "a field")
            await h.api.download(sub.update.images[0].url)
            await h.submit("live", "a kite")

    run(go())
    cdn = [r for r in seen if "/banatie-cdn/" in r.url.path]
    api = [r for r in seen if r.url.path.startswith("/banatie/")]
    assert len(cdn) == 2 and api
    assert all("x-api-key" not in r.headers for r in cdn)
    assert all(r.headers["x-api-key"] == KEY for r in api)


# ------------------------------------------------------------------ pacing
def test_client_paces_itself_from_remaining_zero_without_a_429(caplog):
    async def flow(h):
        h.emu.api_limit = 3
        h.emu.rate_window = 300  # simulated seconds: 0.3 s of real time at speed 1000
        with caplog.at_level(logging.INFO, logger="jupyter_imagine.providers.banatie"):
            for _ in range(6):
                await h.api.generations(limit=1)
        assert h.count("GET", "/api/v1/generations") == 6
        assert h.emu.rate_limited == 0  # no request was refused: none went out too early
        waits = [r for r in caplog.records if "waiting" in r.getMessage()]
        assert len(waits) == 1 and "requests" in waits[0].getMessage()
        assert KEY not in caplog.text

    in_process(flow)


def test_pacing_beyond_the_max_wait_raises_without_sending():
    async def flow(h):
        h.emu.api_limit = 1
        h.api.max_rate_wait = 0.05
        await h.api.flows()
        with pytest.raises(RateLimited, match="resets in") as info:
            await h.api.flows()
        assert info.value.retry_after > 0.05
        assert h.count("GET", "/api/v1/flows") == 1 and h.emu.rate_limited == 0

    in_process(flow)


def test_live_pacing_lets_cache_hits_through():
    async def flow(h):
        h.emu.live_limit = 1
        h.api.max_rate_wait = 0.05
        _, sub = await h.submit("live", "a red kite")
        assert sub.update.extras["cache_status"] == "MISS"
        assert h.api._buckets["live"].remaining == 0
        hit, again = await h.submit("live", "a red kite")  # seen before: a free HIT
        assert again.update.extras["cache_status"] == "HIT"
        assert hit.remote_id == f"{again.update.extras['image_id']}#{hit.id}"
        with pytest.raises(RateLimited, match="new live generations"):
            await h.submit("live", "a blue kite")
        assert h.count("GET", "/live/default") == 2 and h.emu.rate_limited == 0

    in_process(flow)


# ------------------------------------------------------------------ live
def test_live_job_is_final_at_once_and_its_bytes_are_not_fetched_twice():
    async def flow(h):
        _, sub = await h.submit("live", "a lighthouse at dusk", aspect_ratio="16:9",
                                auto_enhance=False, template="comic", scope="hero")
        update = sub.update
        assert update.status is Status.SUCCEEDED and sub.remote_id == update.extras["generation_id"]
        url = update.images[0].url
        assert url.startswith("http://sandbox.test/banatie-cdn/sandbox/notebook/live/hero?")
        assert "aspectRatio=16%3A9" in url and "autoEnhance=false" in url
        assert "template=comic" in url and update.extras["generation_id"]
        before = h.count("GET", "/live/hero")
        data = await h.api.download(url)
        assert h.count("GET", "/live/hero") == before
        assert PILImage.open(io.BytesIO(data)).size == (1792, 1008)
        assert await h.api.live_url("a lighthouse at dusk", aspect_ratio="16:9",
                                    auto_enhance=False, template="comic", scope="hero") == url
        assert (await h.api.download(url)) == data  # a second download is a HIT
        assert h.count("GET", "/live/hero") == before + 1

    in_process(flow)


def test_slugs_from_params_or_discovered():
    async def flow(h):
        url = await h.api.live_url("x", org="acme", project="site")
        assert "/banatie-cdn/acme/site/live/default?prompt=x" in url
        assert h.count("GET", "/api/info") == 0
        assert "/sandbox/notebook/" in await h.api.live_url("x")
        await h.api.live_url("y")
        assert h.count("GET", "/api/info") == 1  # discovered once

    in_process(flow)


# ------------------------------------------------------------------ public calls
async def _public_calls(h: Harness) -> None:
    api = h.api
    up = await api.upload_image(_png(), alias="@logo", meta={"by": "test"})
    assert up["alias"] == "@logo" and up["meta"] == {"by": "test"} and up["flowId"]
    flow_id = up["flowId"]
    _, sub = await h.submit("generation", "a poster", flow_id=flow_id)
    gen_id = sub.remote_id
    gens = await api.generations(flow_id=flow_id, status="success")
    assert isinstance(gens, Page) and [g["id"] for g in gens] == [gen_id]
    assert gens.total == 1 and gens.has_more is False
    assert (await api.generation(gen_id))["id"] == gen_id
    flows = await api.flows(limit=5)
    assert flow_id in [f["id"] for f in flows]
    assert (await api.flow_generations(flow_id))[0]["id"] == gen_id
    assert {i["id"] for i in await api.flow_images(flow_id)} == {up["id"],
                                                                   sub.raw["outputImageId"]}
    merged = await api.set_flow_aliases(flow_id, {"@bg": up["id"]})
    assert merged["aliases"] == {"@bg": up["id"]}
    assert (await api.image("@bg", flow_id=flow_id))["id"] == up["id"]
    assert (await api.resolve_alias("@upload", flow_id=flow_id))["scope"] == "technical"
    assert (await api.resolve_alias("@last", flow_id=flow_id))["imageId"] == \
        sub.raw["outputImageId"]
    assert (await api.delete_flow_alias(flow_id, "@bg"))["aliases"] == {}
    images = await api.images(source="uploaded")
    assert [i["id"] for i in images] == [up["id"]]
    updated = await api.update_image(up["id"], focal_point=(0.2, 0.8), meta={"k": 1})
    assert updated["focalPoint"] == {"x": 0.2, "y": 0.8} and updated["meta"] == {"k": 1}
    assert (await api.set_alias(up["id"], "@brand"))["alias"] == "@brand"
    assert (await api.set_alias(up["id"], None))["alias"] is None
    changed = await api.update_generation(gen_id, prompt="a banner", meta={"v": 2})
    assert changed["originalPrompt"] == "a banner" and changed["meta"] == {"v": 2}
    assert (await api.regenerate_generation(gen_id))["status"] == "success"
    assert (await api.regenerate_flow(flow_id))["id"] == gen_id
    assert (await api.update_generation(gen_id, flow_id="none"))["flowId"] is None
    made = await api.create_flow({"name": "empty"})
    assert made["meta"] == {"name": "empty"} and made["generationCount"] == 0
    scope = await api.create_live_scope("gallery", new_generations_limit=5)
    assert scope["newGenerationsLimit"] == 5
    assert (await api.update_live_scope("gallery", allow_new_generations=False))[
        "allowNewGenerations"] is False
    assert [s["slug"] for s in await api.live_scopes()] == ["gallery"]
    assert (await api.live_scope("gallery"))["slug"] == "gallery"
    assert (await api.regenerate_live_scope("gallery"))["regenerated"] == 0
    assert (await api.delete_live_scope("gallery"))["slug"] == "gallery"
    assert (await api.cdn_url("@logo")).endswith("/banatie-cdn/sandbox/notebook/img/@logo")
    assert (await api.info())["keyInfo"]["projectSlug"] == "notebook"
    assert (await api.health())["status"] == "healthy"
    assert (await api.delete_generation(gen_id))["id"] == gen_id
    assert (await api.delete_image(up["id"]))["id"] == up["id"]
    assert (await api.delete_flow(flow_id))["id"] == flow_id
    with pytest.raises(NotFound):
        await api.image(up["id"])
    with pytest.raises(InvalidRequest, match="unknown filter"):
        await api.generations(colour="red")
    with pytest.raises(InvalidRequest, match="PNG, JPEG or WebP"):
        await api.upload_image(b"GIF89a....")


def test_public_calls_in_process():
    in_process(_public_calls)


def test_public_calls_and_jobs_over_loopback(live_sandbox):
    async def flow():
        async with httpx.AsyncClient(timeout=LOOPBACK_TIMEOUT) as client:
            h = Harness(client, live_sandbox.url, live_sandbox.state)
            await _public_calls(h)
            _, sub = await h.submit("generation", "a harbour at night", aspect_ratio="9:16")
            data = await h.api.download(sub.update.images[0].url)
            assert PILImage.open(io.BytesIO(data)).size == (1008, 1792)
            _, live = await h.submit("live", "a harbour at night")
            assert live.update.extras["cache_status"] == "MISS"
            assert live.update.images[0].url.startswith(live_sandbox.url + "/banatie-cdn/")

    run(flow())


def test_upload_accepts_a_path_and_a_pil_image(tmp_path):
    async def flow(h):
        path = tmp_path / "logo.png"
        path.write_bytes(_png())
        by_path = await h.api.upload_image(path, flow_id="none")
        assert by_path["flowId"] is None and (by_path["width"], by_path["height"]) == (64, 48)
        pil = await h.api.upload_image(PILImage.new("RGB", (10, 20), (1, 2, 3)))
        assert (pil["width"], pil["height"]) == (10, 20) and pil["mimeType"] == "image/png"

    in_process(flow)


# ------------------------------------------------------------------ remote history
def test_remote_history_follows_pagination():
    async def flow(h):
        for i in range(45):
            await h.submit("generation", f"tower {i}", aspect_ratio="3:2")
        h.api.history_page_size = 10
        pages = [page async for page in h.api.remote_history()]
        assert [len(p) for p in pages] == [10, 10, 10, 10, 5]
        assert h.count("GET", "/api/v1/generations") == 5
        jobs = [j for p in pages for j in p]
        assert len({j.remote_id for j in jobs}) == 45
        assert jobs[0].prompt == "tower 44" and jobs[-1].prompt == "tower 0"
        assert all(j.kind == "generation" and j.update.status is Status.SUCCEEDED for j in jobs)
        assert jobs[0].params["aspect_ratio"] == "3:2"
        assert isinstance(jobs[0].created_at, datetime)
        future = datetime(2999, 1, 1, tzinfo=timezone.utc)
        assert [p async for p in h.api.remote_history(since=future)] == []

    in_process(flow)


def test_a_success_whose_image_was_deleted_says_so_instead_of_failing_silently():
    """Deleting an image clears it from its generation: a later poll answers ``success`` with
    ``outputImage: null``, which must not read as a finished job with nothing to say."""
    async def flow(h):
        h.emu.synchronous = False
        job, _ = await h.submit("generation", "a paper boat")
        h.state.clock.advance(10)
        done = await h.api.poll(job)
        assert done.status is Status.SUCCEEDED and len(done.images) == 1 and done.error is None
        await h.api.delete_image(done.extras["image_id"])
        after = await h.api.poll(job)
        assert after.status is Status.SUCCEEDED and after.images == []
        assert after.error == (
            "Banatie reports the generation succeeded but has no output image (was it deleted?); "
            "run it again with job.act('Regenerate')"
        )

    in_process(flow, speed=0)


# ------------------------------------------------------------------ through the engine
def test_imagine_through_the_engine_with_regenerate(engine, sandbox):
    job = ji.imagine("a lighthouse at dusk", provider="banatie", aspect_ratio="16:9")
    job.wait(60)
    assert job.status is Status.SUCCEEDED and job.kind == "generation" and job.sandbox
    assert job.actions == (REGENERATE,) and job.extras["generation_id"] == job.remote_id
    assert len(job.images) == 1 and (job.images[0].width, job.images[0].height) == (1792, 1008)
    with PILImage.open(job.images[0].path) as img:
        assert img.text["prompt"] == "a lighthouse at dusk"
    parent_pixels = _pixels(job.images[0].read_bytes())

    again = job.act(REGENERATE).wait(60)
    assert again.kind == "regenerate" and again.action == REGENERATE
    assert again.parent_id == job.id and again.remote_id.startswith(job.remote_id + "#")
    assert again.extras["generation_id"] == job.remote_id
    assert again.params["method"] == "regenerate"
    assert np.abs(_pixels(again.images[0].read_bytes()) - parent_pixels).mean() > 3
    assert job.images[0].path != again.images[0].path  # the parent keeps its own pixels

    changed = job.act(REGENERATE, prompt="a lighthouse in a storm").wait(60)
    assert changed.prompt == "a lighthouse in a storm" and changed.params["method"] == "update"
    puts = sum(n for (m, p), n in sandbox.requests.items()
               if m == "PUT" and p.endswith(job.remote_id))
    regens = sum(n for (m, p), n in sandbox.requests.items()
                 if m == "POST" and p.endswith("/regenerate"))
    assert (puts, regens) == (1, 1)
    assert changed.actions == (REGENERATE,)


def test_pending_generation_is_polled_by_the_engine(engine, sandbox):
    sandbox.providers["banatie"].synchronous = False
    job = ji.imagine("a quiet harbour", provider="banatie").wait(60)
    assert job.status is Status.SUCCEEDED and job.images[0].path
    polls = sum(n for (m, p), n in sandbox.requests.items()
                if m == "GET" and p.endswith("/generations/" + job.remote_id))
    assert polls >= 1


def test_a_success_without_its_image_keeps_the_providers_note(engine, sandbox):
    """A poll that answers ``success`` with no image (it was deleted while the engine could not
    poll) leaves the job succeeded with Banatie's note, not silent; regenerating it works."""
    sandbox.providers["banatie"].synchronous = False
    sandbox.faults.add("/banatie/api/v1/generations/*", method="GET", status=503, count=None)
    job = ji.imagine("a paper boat", provider="banatie")
    api = ji.client("banatie")
    deadline = time.monotonic() + 30
    while not (made := [i for i in api.images(source="generated")
                        if i["generationId"] == job.remote_id]):
        assert time.monotonic() < deadline, "the generation made no image"
        time.sleep(0.05)
    api.delete_image(made[0]["id"])
    sandbox.faults.clear()
    job.wait(60)
    assert job.status is Status.SUCCEEDED and job.images == []
    assert job.error.startswith("Banatie reports the generation succeeded but has no output")
    again = job.act(REGENERATE).wait(60)
    assert again.error is None and len(again.images) == 1 and again.images[0].path


def test_failed_and_moderated_generations_through_the_engine(engine):
    failed = ji.imagine("a calm lake sandbox:fail", provider="banatie")
    with pytest.raises(JobFailed, match="sandbox:fail"):
        failed.wait(60)
    moderated = ji.imagine("a gore scene", provider="banatie")
    with pytest.raises(JobFailed):
        moderated.wait(60)
    assert moderated.error_type == "ModeratedPrompt" and "safety filter" in moderated.error


def test_live_job_and_client_calls_through_the_engine(engine, sandbox):
    job = ji.imagine("a paper boat", provider="banatie", kind="live", scope="notebook").wait(60)
    assert job.kind == "live" and job.status is Status.SUCCEEDED and job.actions == ()
    assert job.extras["cache_status"] == "MISS" and job.images[0].path
    hit = ji.imagine("a paper boat", provider="banatie", kind="live", scope="notebook").wait(60)
    assert hit.extras["cache_status"] == "HIT"
    assert hit.images[0].path == job.images[0].path  # same bytes, same cache file
    assert sum(n for (m, p), n in sandbox.requests.items() if "/live/notebook" in p) == 2
    calls = ji.client("banatie")
    assert {"generations", "upload_image", "live_scopes", "set_flow_aliases"} <= set(dir(calls))
    scopes = calls.live_scopes()
    assert [s["slug"] for s in scopes] == ["notebook"]
    with pytest.raises(ConfigurationError, match="cannot start"):
        ji.imagine("x", provider="banatie", kind="skybox")


# ------------------------------------------------------------------ spend
def test_price_is_one_request_per_generation_and_live_is_not_priced():
    from jupyter_imagine.models import Cost

    assert Banatie.price("imagine", {}) == Banatie.price("generation", {}) == Cost(
        1, "requests", "prices")
    assert Banatie.price("regenerate", {}).amount == 1 and Banatie.price("live", {}) is None


def test_balance_reuses_the_last_answers_headers():
    async def flow(h):
        first = await h.api.balance()  # nothing known yet: one cheap listing
        listed = h.count("GET", "/api/v1/generations")
        second = await h.api.balance()  # the window is still open: no request
        return first, second, listed, h.count("GET", "/api/v1/generations")

    first, second, listed, again = in_process(flow)
    assert listed == again == 1
    assert first.amounts == second.amounts and first.limits == {"requests": 10000.0}
    assert first.resets_at is not None and first.resets_at > first.read_at
