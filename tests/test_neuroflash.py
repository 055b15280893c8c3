"""The neuroflash client against the sandbox: in-process (ASGI) and over real HTTP on loopback,
alone (one provider method = one wire exchange, plus the auth protocol) and through the engine.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from pathlib import Path

import httpx
import pytest
from _live_sandbox import LOOPBACK_TIMEOUT
from PIL import Image as PILImage

import jupyter_imagine as ji
from jupyter_imagine.engine import Engine
from jupyter_imagine.errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidRequest,
    ModeratedPrompt,
    NotFound,
    PermissionDenied,
    ProviderError,
    QuotaExceeded,
    RateLimited,
)
from jupyter_imagine.models import Job, Status
from jupyter_imagine.providers import neuroflash as nf
from jupyter_imagine.providers.neuroflash import Neuroflash
from jupyter_imagine.sandbox import _neuroflash as emulation
from jupyter_imagine.sandbox import create_app
from jupyter_imagine.store import Store

FAST = {"sandbox_speed": 1000.0, "backoff_base": 0.01, "backoff_cap": 0.2}
TOKEN_PATH = "/neuroflash-id/oauth/v2/token"


def count(state, method: str, suffix: str) -> int:
    """Requests the sandbox received whose path ends with ``suffix``."""
    return sum(n for (m, p), n in state.requests.items() if m == method and p.endswith(suffix))


def tokens(state) -> int:
    return count(state, "POST", TOKEN_PATH)


class Harness:
    """A Neuroflash client on a sandbox, as the engine builds it in sandbox mode."""

    def __init__(self, client: httpx.AsyncClient, base: str, state, **kw) -> None:
        self.client = client
        self.state = state
        self.emu = state.providers["neuroflash"]
        self.emu.long_side = 128
        kw.setdefault("api_key", "sandbox-key")
        kw.setdefault("sandbox", True)
        self.api = Neuroflash(client=client, base_url=base + "/neuroflash", **kw)

    async def run(self, kind="imagine", prompt="a lighthouse at dusk", parent=None, **params):
        job = Job(provider="neuroflash", kind=kind, prompt=prompt, params=params,
                  parent_id=parent.id if parent else None)
        sub = await self.api.submit(job, parent)
        job.remote_id = sub.remote_id
        update = sub.update
        job.status = update.status
        job.images = update.images or []
        job.extras = dict(update.extras)
        job.raw = update.raw
        return job, sub


def run(coro):
    return asyncio.run(coro)


async def _in_process(fn, **kw):
    app = create_app(speed=0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        return await fn(Harness(client, "http://sandbox.test", app.state.sandbox, **kw))


def in_process(fn, **kw):
    return run(_in_process(fn, **kw))


# ------------------------------------------------------------------ configuration
def test_class_contract():
    assert Neuroflash.name == "neuroflash" and Neuroflash.label == "neuroflash"
    assert Neuroflash.env_key == "NEUROFLASH_CLIENT_ID"
    assert Neuroflash.extra_env == (
        "NEUROFLASH_CLIENT_ID", "NEUROFLASH_CLIENT_SECRET", "NEUROFLASH_WORKSPACE_ID")
    assert Neuroflash.kinds == ("imagine", "edit", "upscale")
    assert Neuroflash.default_base_url == "https://app.neuroflash.com"
    assert Neuroflash.sandbox_prefix == "/neuroflash"
    assert ji.provider_status().set_index("provider").loc["neuroflash", "sandbox"]
    # the client's idea of the sandbox account is the sandbox's
    assert (nf.SANDBOX_CLIENT_ID, nf.SANDBOX_CLIENT_SECRET) == (
        emulation.SANDBOX_CLIENT_ID, emulation.SANDBOX_CLIENT_SECRET)


@pytest.mark.parametrize(
    "base, env, expected",
    [
        ("http://127.0.0.1:8000/neuroflash", None,
         "http://127.0.0.1:8000/neuroflash-id/oauth/v2/token"),
        ("http://sandbox.jupyter-imagine/neuroflash/", None,
         "http://sandbox.jupyter-imagine/neuroflash-id/oauth/v2/token"),
        ("https://app.neuroflash.com", None, "https://id.neuroflash.com/oauth/v2/token"),
        ("https://app.neuroflash.com", "https://id.example/token", "https://id.example/token"),
    ],
)
def test_token_url(monkeypatch, base, env, expected):
    if env:
        monkeypatch.setenv("NEUROFLASH_TOKEN_URL", env)
    else:
        monkeypatch.delenv("NEUROFLASH_TOKEN_URL", raising=False)
    extra = {"NEUROFLASH_CLIENT_ID": "c-id", "NEUROFLASH_CLIENT_SECRET": "c-secret-1"}
    api = Neuroflash(client=None, base_url=base, api_key="c-id", sandbox=False, extra=extra)
    assert api.token_url == expected
    explicit = Neuroflash(client=None, base_url=base, api_key="c-id", sandbox=False, extra=extra,
                          token_url="https://elsewhere/token")
    assert explicit.token_url == "https://elsewhere/token"
    sandboxed = Neuroflash(client=None, base_url="http://sb/neuroflash", api_key="sandbox-key",
                           sandbox=True)
    assert sandboxed.token_url == "http://sb/neuroflash-id/oauth/v2/token"  # never the override


def test_credentials_sandbox_defaults_and_missing_secret():
    api = Neuroflash(client=None, base_url="http://x/neuroflash", api_key="sandbox-key",
                     sandbox=True)
    assert (api._client_id, api._client_secret) == (nf.SANDBOX_CLIENT_ID, nf.SANDBOX_CLIENT_SECRET)
    with pytest.raises(ConfigurationError, match="NEUROFLASH_CLIENT_SECRET"):
        Neuroflash(client=None, base_url="https://app.neuroflash.com", api_key="only-an-id",
                   sandbox=False, extra={"NEUROFLASH_CLIENT_ID": "only-an-id"})
    real = Neuroflash(client=None, base_url="https://app.neuroflash.com", api_key="cid",
                      sandbox=False, extra={"NEUROFLASH_CLIENT_ID": "cid",
                                            "NEUROFLASH_CLIENT_SECRET": "csecret",
                                            "NEUROFLASH_WORKSPACE_ID": "ws-1"})
    assert real._workspace_id == "ws-1" and "csecret" not in repr(real)


# ------------------------------------------------------------------ token protocol
def test_token_is_cached_and_shared_by_concurrent_calls():
    async def flow(h):
        await asyncio.gather(*(h.api.quotas() for _ in range(6)))
        for _ in range(4):
            await h.api.images(page=1, size=2)
        assert tokens(h.state) == 1
        assert count(h.state, "GET", "/api/workspace-service/v1/workspaces") == 1  # cached too
        assert count(h.state, "GET", "/quotas") == 6

    in_process(flow)


def test_concurrent_calls_share_one_token_request(live_sandbox):
    async def flow():  # real HTTP, so the calls really interleave while the token is fetched
        live_sandbox.state.clock.speed = 0  # tokens expire only when the test says so
        async with httpx.AsyncClient(timeout=LOOPBACK_TIMEOUT) as client:
            h = Harness(client, live_sandbox.url, live_sandbox.state)
            h.api._workspace_id = emulation.WORKSPACE_ID  # as with NEUROFLASH_WORKSPACE_ID
            pages = await asyncio.gather(*(h.api.images(page=1, size=1) for _ in range(8)))
            assert len(pages) == 8 and tokens(h.state) == 1
            assert count(h.state, "GET", "/workspaces") == 0

    run(flow())


def test_token_refreshed_shortly_before_expires_in():
    async def flow(h):
        h.emu.token_ttl = 1000
        now = [5000.0]
        h.api._now = lambda: now[0]
        await h.api.quotas()
        now[0] += 899  # inside expires_in minus the margin (60 s at most, here 60)
        await h.api.quotas()
        assert tokens(h.state) == 1
        now[0] += 42  # 941 s: within 60 s of expiry → refreshed before any 401
        await h.api.quotas()
        assert tokens(h.state) == 2
        assert count(h.state, "GET", "/quotas") == 3  # no call was refused and repeated

    in_process(flow)


def test_expired_token_is_refreshed_once_and_the_call_repeated():
    async def flow(h):
        await h.api.quotas()
        h.state.clock.advance(h.emu.token_ttl)  # the sandbox expires it; the client's cache
        quotas = await h.api.quotas()          # still thinks it valid → 401 → refresh → retry
        assert quotas[0]["usageTypeKey"] == "images"
        assert tokens(h.state) == 2
        assert count(h.state, "GET", "/quotas") == 3
        job, _ = await h.run()  # a POST is repeated too: a 401 means nothing was done
        h.emu.revoke_tokens()
        child, _ = await h.run("upscale", prompt="", image_id=job.extras["image_ids"][0])
        assert child.status is Status.SUCCEEDED and tokens(h.state) == 3
        assert count(h.state, "POST", "/image-upscale-tasks") == 2

    in_process(flow)


def test_second_401_is_an_authentication_error_naming_the_variables():
    secret = "nfsec-FAKE-second-401-9f8e7d"

    async def flow(h):
        h.emu.token_ttl = 0  # every token is born expired
        with pytest.raises(AuthenticationError) as info:
            await h.api.quotas()
        message = str(info.value)
        assert "NEUROFLASH_CLIENT_ID" in message and "NEUROFLASH_CLIENT_SECRET" in message
        assert secret not in message and "nfat_" not in message
        assert info.value.status_code == 401
        assert tokens(h.state) == 2  # one refresh, then it gives up
        assert count(h.state, "GET", "/workspaces") == 2

    in_process(flow, api_key="cid-401", sandbox=False,
               extra={"NEUROFLASH_CLIENT_ID": "cid-401", "NEUROFLASH_CLIENT_SECRET": secret})


@pytest.mark.parametrize("secret", ["wrong-secret-xyz", "invalid-key"])
def test_bad_client_credentials(secret):
    async def flow(h):
        with pytest.raises(AuthenticationError) as info:
            await h.api.models()
        message = str(info.value)
        assert "invalid_client" in message
        assert "NEUROFLASH_CLIENT_ID" in message and "NEUROFLASH_CLIENT_SECRET" in message
        assert secret not in message
        assert tokens(h.state) == 1 and len(h.state.requests) == 1  # nothing else was sent

    in_process(flow, api_key=nf.SANDBOX_CLIENT_ID, sandbox=False,
               extra={"NEUROFLASH_CLIENT_ID": nf.SANDBOX_CLIENT_ID,
                      "NEUROFLASH_CLIENT_SECRET": secret})


def test_a_wrong_token_url_is_a_configuration_error():
    async def flow(h):
        with pytest.raises(ConfigurationError, match="NEUROFLASH_TOKEN_URL"):
            await h.api.models()

    in_process(flow, token_url="http://sandbox.test/neuroflash-id/oauth/v2/nowhere")


# ------------------------------------------------------------------ jobs
def test_imagine_is_final_after_the_submit_with_grouped_images():
    async def flow(h):
        job, sub = await h.run(num_images=3, aspect_ratio="16:9", output_format="jpeg",
                               model_id="nano-banana-2")
        update = sub.update
        assert update.status is Status.SUCCEEDED and update.progress == 100
        assert sub.remote_id == sub.raw["generationId"] == update.extras["generation_id"]
        assert {i["generationId"] for i in sub.raw["images"]} == {sub.remote_id}
        assert [i.index for i in update.images] == [1, 2, 3]
        assert update.extras["image_ids"] == [i["id"] for i in sub.raw["images"]]
        assert (update.images[0].width, update.images[0].height) == (128, 72)
        data = await h.api.download(update.images[2].url)
        with PILImage.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG" and im.size == (128, 72)
        assert h.api.actions(job) == ("Edit", "Upscale")
        body = sub.raw["images"][0]["parameters"]
        assert body == {"aspectRatio": "16:9", "outputFormat": "jpeg", "numImages": 3}
        assert count(h.state, "GET", "/image-models") == 1
        await h.run(prompt="again")
        assert count(h.state, "GET", "/image-models") == 1  # the catalogue is fetched once

    in_process(flow)


def test_default_model_is_chosen_from_the_catalogue_and_sent():
    async def flow(h):
        job, sub = await h.run()
        assert sub.raw["images"][0]["model"] == "nano-banana-2"
        _, seed = await h.run(model_id="seedream-4", aspect_ratio="9:16")
        assert seed.raw["images"][0]["model"] == "seedream-4"
        _, sub = await h.run("upscale", prompt="", image_id=job.extras["image_ids"][0])
        assert sub.raw["images"][0]["model"] == "clarity-upscaler"
        assert sub.raw["images"][0]["parameters"]["upscaleFactor"] == 2  # the model's first

    in_process(flow)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"aspect_ratio": "7:3"}, "choose one of: 21:9, 16:9, 3:2"),
        ({"num_images": 5}, "at most 4 images"),
        ({"output_format": "tiff"}, "choose one of: jpeg, png, webp"),
        ({"model_id": "dall-e-9"}, "unknown neuroflash model 'dall-e-9'"),
        ({"model_id": "clarity-upscaler"}, "cannot do text2image"),
        ({"model_id": "gpt-image-1"}, "not allowed in this workspace"),
        ({"model_id": "seedream-4", "num_images": 3}, "at most 2 images"),
    ],
)
def test_validation_against_the_catalogue_before_sending(params, match):
    async def flow(h):
        with pytest.raises(InvalidRequest, match=match):
            await h.run(**params)
        assert count(h.state, "POST", "/image-generation-tasks") == 0
        # once the catalogue is cached, validate() (sync, caller's thread) checks it too
        with pytest.raises(InvalidRequest, match=match):
            h.api.validate("imagine", "a boat", params)

    in_process(flow)


@pytest.mark.parametrize(
    "kind, prompt, params, match",
    [
        ("imagine", " ", {}, "prompt is empty"),
        ("imagine", "x", {"seed": 3}, "unknown parameter 'seed'"),
        ("imagine", "x", {"image_ids": ["a"]}, "unknown parameter 'image_ids'"),
        ("imagine", "x", {"aspect_ratio": "wide"}, "must look like 16:9"),
        ("imagine", "x", {"aspect_ratio": "auto"}, "only for edits"),
        ("imagine", "x", {"num_images": 0}, "at least 1"),
        ("imagine", "x", {"output_format": "p n g"}, "format name"),
        ("edit", "x", {}, "needs image_ids"),
        ("edit", "x", {"image_ids": []}, "non-empty list"),
        ("upscale", "", {}, "needs image_id"),
        ("upscale", "", {"image_id": "a", "num_images": 2}, "unknown parameter 'num_images'"),
    ],
)
def test_static_validation(kind, prompt, params, match):
    api = Neuroflash(client=None, base_url="http://x/neuroflash", api_key="sandbox-key",
                     sandbox=True)
    with pytest.raises(InvalidRequest, match=match):
        api.validate(kind, prompt, params)


def test_static_validation_normalizes():
    api = Neuroflash(client=None, base_url="http://x/neuroflash", api_key="sandbox-key",
                     sandbox=True)
    assert api.validate("imagine", "x", {"aspect-ratio": " 16 : 9", "output_format": "JPG",
                                         "num_images": "2"}) == {
        "aspect_ratio": "16:9", "output_format": "jpeg", "num_images": 2}
    assert api.validate("edit", "x", {"image_ids": "one", "aspect_ratio": "auto"}) == {
        "image_ids": ["one"], "aspect_ratio": "auto"}
    assert api.validate("upscale", "", {"image_id": "i", "upscale_factor": 4}) == {
        "image_id": "i", "upscale_factor": 4}


def test_edit_and_upscale_actions():
    async def flow(h):
        parent, _ = await h.run(num_images=2, output_format="png")
        parent.status = Status.SUCCEEDED
        ids = parent.extras["image_ids"]
        spec = h.api.child(parent, "Edit", prompt=" add snow ")
        assert spec.kind == "edit" and spec.prompt == "add snow"
        assert spec.params == {"image_ids": ids, "output_format": "png"}
        assert h.api.child(parent, "Edit", prompt="x", index=2).params["image_ids"] == [ids[1]]
        up = h.api.child(parent, "Upscale", factor=4, index=2)
        assert up.kind == "upscale" and up.params["image_id"] == ids[1]
        assert up.params["upscale_factor"] == 4
        with pytest.raises(InvalidRequest, match="upscales by 2, 4, not 3"):
            h.api.child(parent, "Upscale", factor=3)  # checked against the cached catalogue
        with pytest.raises(InvalidRequest, match="needs a prompt"):
            h.api.child(parent, "Edit")
        with pytest.raises(InvalidRequest, match="index must be"):
            h.api.child(parent, "Upscale", index=3)
        with pytest.raises(InvalidRequest, match="takes no mask"):
            h.api.child(parent, "Edit", prompt="x", mask=b"")
        with pytest.raises(InvalidRequest, match="no action"):
            h.api.child(parent, "U1")
        child = Job(provider="neuroflash", kind=spec.kind, prompt=spec.prompt, params=spec.params,
                    parent_id=parent.id)
        sub = await h.api.submit(child, parent)
        assert sub.update.status is Status.SUCCEEDED
        assert sub.raw["images"][0]["inputImageIds"] == ids
        assert h.api.actions(Job(provider="neuroflash", kind="imagine", prompt="x")) == ()

    in_process(flow)


def test_poll_finds_a_resumed_generation_again():
    async def flow(h):
        job, sub = await h.run(num_images=2)
        update = await h.api.poll(job)  # ids known from extras
        assert update.status is Status.SUCCEEDED
        assert [i.url for i in update.images] == [i.url for i in sub.update.images]
        bare = Job(provider="neuroflash", kind="imagine", prompt="x", remote_id=job.remote_id,
                   raw={"generationId": job.remote_id})  # ids unknown: scan the list
        assert len((await h.api.poll(bare)).images) == 2
        for image_id in job.extras["image_ids"]:
            await h.api.delete_image(image_id)
        gone = await h.api.poll(job)
        assert gone.status is Status.FAILED and gone.error_type == "NotFound"

    in_process(flow)


def test_remote_history_groups_pages_by_generation(monkeypatch):
    monkeypatch.setattr(nf, "PAGE_SIZE", 2)

    async def flow(h):
        first, _ = await h.run(num_images=3, prompt="a red barn")
        h.state.clock.advance(1)
        await h.run("upscale", prompt="", image_id=first.extras["image_ids"][0])
        h.state.clock.advance(1)
        await h.run("edit", prompt="barn in snow", image_ids=first.extras["image_ids"][:1])
        pages = [page async for page in h.api.remote_history()]
        jobs = [j for page in pages for j in page]
        assert len(pages) >= 2
        by_kind = {j.kind: j for j in jobs}
        assert [j.kind for j in jobs] == ["edit", "upscale", "imagine", "imagine"]
        assert len({j.remote_id for j in jobs}) == 4  # a generation is never split
        assert len(by_kind["edit"].update.images) == 1 and by_kind["edit"].prompt == "barn in snow"
        assert by_kind["upscale"].params["upscale_factor"] == 2
        barn = next(j for j in jobs if j.prompt == "a red barn")
        assert len(barn.update.images) == 3 and barn.update.status is Status.SUCCEEDED
        assert barn.created_at.tzinfo is not None
        harbour = jobs[-1]
        assert harbour.prompt == "a harbour at dawn" and len(harbour.update.images) == 3
        recent = [j async for page in h.api.remote_history(since=barn.created_at) for j in page]
        assert "a harbour at dawn" not in [j.prompt for j in recent]

    in_process(flow)


# ------------------------------------------------------------------ the service's own calls
def test_public_calls():
    async def flow(h):
        models = await h.api.models()
        assert models[0]["id"] == "nano-banana-2" and len(models) == 4
        quota = (await h.api.quotas())[0]
        assert quota["usageTypeKey"] == "images" and quota["availableAmount"] == 100
        assert {q["usageTypeKey"] for q in await h.api.quotas(None)} == {"images", "words"}
        assert (await h.api.workspaces())[0]["id"] == emulation.WORKSPACE_ID
        page = await h.api.images(page=2, size=2)
        assert page["page"]["currentPage"] == 2 and len(page["data"]) == 1
        with pytest.raises(InvalidRequest):
            await h.api.images(page=0)
        png = io.BytesIO()
        PILImage.new("RGB", (30, 20), "teal").save(png, format="PNG")
        uploaded = await h.api.upload_image(png.getvalue())
        assert (uploaded["imageWidth"], uploaded["imageHeight"]) == (30, 20)
        uri = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
        assert (await h.api.upload_image(uri))["imageWidth"] == 30
        again = await h.api.upload_image(uploaded["_links"]["content"])
        assert await h.api.download(again["_links"]["content"]) == png.getvalue()
        assert (await h.api.image(uploaded["id"]))["id"] == uploaded["id"]
        await h.api.delete_image(uploaded["id"])
        with pytest.raises(NotFound):
            await h.api.image(uploaded["id"])
        with pytest.raises(InvalidRequest, match="none of these"):
            await h.api.upload_image("no/such/file.png")
        with pytest.raises(InvalidRequest, match="not a PNG"):
            await h.api.upload_image(b"plain text")

    in_process(flow)


def test_typed_errors():
    async def flow(h):
        seeded = next(i for i in h.emu.images.values() if i.created_by == emulation.OTHER_USER_ID)
        with pytest.raises(PermissionDenied, match="only its creator") as info:
            await h.api.delete_image(seeded.id)
        assert info.value.status_code == 403
        with pytest.raises(PermissionDenied):
            await h.run("edit", prompt="mine now", image_ids=[seeded.id])
        with pytest.raises(NotFound):
            await h.api.delete_image("no-such-image")
        with pytest.raises(ModeratedPrompt, match="content policy"):
            await h.run(prompt="a gore scene")
        h.emu.quotas["images"].limitAmountDaily = 1
        _, sub = await h.run(num_images=2)
        assert len(sub.update.images) == 1
        assert sub.update.extras["detail"]["code"] == "PARTIAL_QUOTA"
        with pytest.raises(QuotaExceeded, match="quota"):
            await h.run()
        h.emu.strict_rate_limit = True
        h.emu.strict_limit = 1
        with pytest.raises(RateLimited) as limited:
            await h.api.quotas()
        assert limited.value.retry_after is not None and 0 < limited.value.retry_after <= 60

    in_process(flow)


@pytest.mark.parametrize(
    "status, body, cls, words",
    [
        (400, {"type": "about:blank", "title": "Bad Request", "status": 400,
               "detail": "numImages must be from 1 to 4"}, InvalidRequest, "numImages must be"),
        (402, {"title": "Payment Required"}, QuotaExceeded, "Payment Required"),
        (429, {"message": "Monthly image quota reached"}, QuotaExceeded, "quota reached"),
        (429, {"detail": "rate limit exceeded (quota of 5 per minute)"}, RateLimited, "rate"),
        (403, {"errors": [{"field": "x", "message": "no access"}]}, PermissionDenied, "no access"),
        (400, {"error": "invalid_request", "error_description": "bad form"}, InvalidRequest,
         "invalid_request: bad form"),
        (400, {"message": "Prompt blocked by moderation"}, ModeratedPrompt, "moderation"),
    ],
)
def test_error_shapes_are_read_tolerantly(status, body, cls, words):
    def handler(request):
        return httpx.Response(status, json=body)

    async def flow():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            api = Neuroflash(client=client, base_url="http://x/neuroflash", api_key="sandbox-key",
                             sandbox=True)
            with pytest.raises(cls, match=words):
                await api._send("GET", "/anything", authorized=False)

    run(flow())


def test_the_token_goes_only_to_the_services_own_origin():
    seen = []

    def handler(request):
        seen.append((request.url.host, request.headers.get("authorization")))
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "tok-123456", "expires_in": 600})
        if request.url.host == "app.example":
            return httpx.Response(302, headers={"Location": "https://storage.example/a.png"})
        return httpx.Response(200, content=b"bytes")

    async def flow():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            api = Neuroflash(client=client, base_url="https://app.example", api_key="cid",
                             sandbox=False, token_url="https://id.example/token",
                             extra={"NEUROFLASH_CLIENT_ID": "cid",
                                    "NEUROFLASH_CLIENT_SECRET": "csecret"})
            assert await api.download("https://app.example/content/1") == b"bytes"
            assert await api.download("https://cdn.example/x.png") == b"bytes"

    run(flow())
    assert seen == [
        ("id.example", None),
        ("app.example", "Bearer tok-123456"),
        ("storage.example", None),  # httpx drops the token on a cross-origin redirect
        ("cdn.example", None),
    ]


# ------------------------------------------------------------------ over real HTTP
def test_full_flow_over_loopback(live_sandbox):
    async def flow():
        live_sandbox.state.clock.speed = 0  # tokens expire only when the test says so
        async with httpx.AsyncClient(timeout=LOOPBACK_TIMEOUT) as client:
            h = Harness(client, live_sandbox.url, live_sandbox.state)
            job, sub = await h.run(num_images=2, aspect_ratio="3:2", output_format="webp")
            assert sub.update.images[0].url.startswith(live_sandbox.url + "/neuroflash/")
            data = await h.api.download(sub.update.images[1].url)
            with PILImage.open(io.BytesIO(data)) as im:
                assert im.format == "WEBP" and im.size == (128, 86)
            job.status = Status.SUCCEEDED
            spec = h.api.child(job, "Upscale", factor=2)
            up = Job(provider="neuroflash", kind=spec.kind, prompt=spec.prompt, params=spec.params)
            big = await h.api.submit(up, job)
            assert (big.update.images[0].width, big.update.images[0].height) == (256, 172)
            live_sandbox.state.clock.advance(h.emu.token_ttl)
            assert (await h.api.quotas())[0]["usedAmount"] == 3
            assert tokens(live_sandbox.state) == 2
            seeded = next(i for i in h.emu.images.values()
                          if i.created_by == emulation.OTHER_USER_ID)
            with pytest.raises(PermissionDenied):
                await h.api.delete_image(seeded.id)
            with pytest.raises(NotFound):
                await h.api.image("missing")

    run(flow())


# ------------------------------------------------------------------ through the engine
def test_engine_end_to_end_with_edit_and_upscale(engine, sandbox):
    emu = sandbox.providers["neuroflash"]
    emu.long_side = 160
    job = ji.imagine("a lighthouse at dusk", provider="neuroflash", num_images=2,
                     aspect_ratio="16:9", output_format="png", model_id="nano-banana-2")
    assert job.sandbox is True and job.kind == "imagine"
    job.wait(60)
    assert job.status is Status.SUCCEEDED and job.progress == 100
    assert job.actions == ("Edit", "Upscale")
    assert count(sandbox, "POST", "/image-generation-tasks") == 1
    assert count(sandbox, "GET", "/content") == 2  # downloaded through _links.content
    polls = [p for (m, p) in sandbox.requests if m == "GET" and "/images/" in p
             and not p.endswith("/content")]
    assert polls == []  # final straight after the submit round trip: nothing polled
    record = engine.store.get(job.id)
    assert record["status"] == "succeeded" and record["remote_id"] == job.remote_id
    assert {i["generationId"] for i in job.raw["images"]} == {job.remote_id}
    assert len(job.images) == 2
    for image in job.images:
        with PILImage.open(image.path) as img:
            assert img.size == (160, 90) == (image.width, image.height)
            assert img.text["prompt"] == "a lighthouse at dusk"
    edit = job.act("Edit", prompt="the lighthouse in snow").wait(60)
    assert edit.kind == "edit" and edit.parent_id == job.id and edit.action == "Edit"
    assert edit.status is Status.SUCCEEDED and len(edit.images) == 1
    assert edit.raw["images"][0]["inputImageIds"] == job.extras["image_ids"]
    up = job.act("Upscale", factor=2).wait(60)
    assert up.kind == "upscale" and up.action == "Upscale"
    with PILImage.open(up.images[0].path) as big:
        assert big.size == (320, 180)
    assert up.actions == ("Edit", "Upscale")
    assert tokens(sandbox) == 1
    with pytest.raises(InvalidRequest, match="choose one of"):
        ji.imagine("x", provider="neuroflash", aspect_ratio="7:3")  # catalogue cached: at once


def test_engine_first_job_validated_before_it_is_stored_and_kinds(engine, sandbox):
    sandbox.providers["neuroflash"].long_side = 96
    # the engine loads the model catalogue first, so even the first job is refused at once
    with pytest.raises(ji.InvalidRequest, match="at most 4 images"):
        ji.imagine("x", provider="neuroflash", num_images=6)
    assert count(sandbox, "POST", "/image-generation-tasks") == 0
    assert engine.store.records() == []
    png = io.BytesIO()
    PILImage.new("RGB", (64, 48), "orange").save(png, format="PNG")
    client = ji.client("neuroflash")
    assert {"models", "quotas", "images", "image", "delete_image", "upload_image"} <= set(
        dir(client))
    uploaded = client.upload_image(png.getvalue())
    edit = ji.imagine("make it blue", provider="neuroflash", kind="edit",
                      image_ids=[uploaded["id"]], aspect_ratio="auto").wait(60)
    assert edit.kind == "edit" and (edit.images[0].width, edit.images[0].height) == (64, 48)
    up = ji.imagine("", provider="neuroflash", kind="upscale", image_id=uploaded["id"],
                    upscale_factor=4).wait(60)
    assert (up.images[0].width, up.images[0].height) == (256, 192)
    assert client.quotas()[0]["usedAmount"] == 2
    assert client.images(page=1, size=2)["page"]["totalElements"] == 6
    assert client.image(uploaded["id"])["id"] == uploaded["id"]
    seeded = [i for i in client.images(size=50)["data"]
              if i["createdByUserId"] == emulation.OTHER_USER_ID]
    with pytest.raises(PermissionDenied):
        client.delete_image(seeded[0]["id"])
    client.delete_image(uploaded["id"])
    with pytest.raises(NotFound):
        client.image(uploaded["id"])
    sandbox.providers["neuroflash"].quotas["images"].limitAmountDaily = 0
    broke = ji.imagine("one more", provider="neuroflash")
    with pytest.raises(ji.JobFailed) as info:
        broke.wait(60)
    assert broke.error_type == "QuotaExceeded" and isinstance(info.value.__cause__, QuotaExceeded)



def test_sandbox_fail_prompt_fails_the_job(engine, sandbox):
    job = ji.imagine("a boat sandbox:fail", provider="neuroflash")
    with pytest.raises(ji.JobFailed):
        job.wait(60)
    assert job.status is ji.Status.FAILED and "sandbox:fail" in (job.error or "")

def test_secrets_never_reach_logs_errors_or_store(tmp_path, monkeypatch, live_sandbox, caplog):
    secret = "nfsec-FAKE-5d4c3b2a1f0e-neuroflash"
    client_id = "nf-client-FAKE-77aa"
    monkeypatch.setenv("NEUROFLASH_CLIENT_ID", client_id)
    monkeypatch.setenv("NEUROFLASH_CLIENT_SECRET", secret)
    monkeypatch.setenv("NEUROFLASH_BASE_URL", live_sandbox.url + "/neuroflash")
    monkeypatch.delenv("NEUROFLASH_TOKEN_URL", raising=False)
    emu = live_sandbox.state.providers["neuroflash"]
    emu.long_side = 96
    live_sandbox.state.clock.speed = 0  # tokens expire only when the test says so
    with caplog.at_level(logging.DEBUG), Engine(Store(tmp_path), **FAST) as eng:
        job = eng.imagine("a comet", provider="neuroflash", num_images=2)
        job.wait(60)
        assert job.sandbox is False  # the real-service client, pointed at the sandbox server
        up = job.act("Upscale").wait(60)
        live_sandbox.state.clock.advance(emu.token_ttl)  # expire: refresh once, silently
        edit = job.act("Edit", prompt="a comet over the sea").wait(60)
        live_sandbox.state.clock.advance(emu.token_ttl)
        emu.token_ttl = 0  # now every token is refused: a clear failure
        bad = eng.imagine("a star", provider="neuroflash")
        with pytest.raises(ji.JobFailed):
            bad.wait(60)
        emu.clients[client_id] = "rotated-elsewhere"
        bad_creds = eng.imagine("a moon", provider="neuroflash")
        with pytest.raises(ji.JobFailed):
            bad_creds.wait(60)
        texts = [repr(job), repr(up), repr(edit), str(job._repr_mimebundle_()["text/plain"]),
                 bad.error or "", bad_creds.error or "", caplog.text, repr(eng._providers)]
    issued = list(emu.tokens)
    assert len(issued) >= 3
    assert "NEUROFLASH_CLIENT_ID" in bad.error and "NEUROFLASH_CLIENT_SECRET" in bad.error
    assert bad.error_type == "AuthenticationError"
    assert "invalid_client" in bad_creds.error and "NEUROFLASH_CLIENT_SECRET" in bad_creds.error
    for text in texts:
        assert secret not in text
        assert not any(token in text for token in issued)
    for path in Path(tmp_path).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret.encode() not in data, path
            assert not any(token.encode() in data for token in issued), path


# ------------------------------------------------------------------ spend
def test_price_is_one_image_quota_unit_per_image():
    from jupyter_imagine.models import Cost

    assert Neuroflash.price("imagine", {}) == Cost(1, "images", "prices")
    assert Neuroflash.price("imagine", {"num_images": 3}).amount == 3
    assert Neuroflash.price("edit", {"num_images": 2}).amount == 2
    assert Neuroflash.price("upscale", {"num_images": 4}).amount == 1
    partial = {"kind": "imagine", "params": {"num_images": 3}, "status": "succeeded",
               "raw": {"images": [{"id": "a"}], "detail": {"code": "PARTIAL_QUOTA"}}}
    assert Neuroflash.cost(partial) == Cost(1, "images", "provider")  # what was made
    assert Neuroflash.cost({**partial, "status": "failed"}) is None


def test_quota_balance_reads_available_daily_and_monthly():
    balance = nf._quota_balance("neuroflash", {
        "usageTypeKey": "images", "limitAmount": 1000, "limitAmountDaily": 100,
        "usedAmount": 990, "usedAmountDaily": 90, "availableAmount": 10, "bonusAmount": 5,
        "spilloverAmount": 0})
    assert balance.amounts == {"images": 10.0, "images_today": 10.0, "images_month": 15.0}
    assert balance.limits == {"images_today": 100.0, "images_month": 1005.0}
    assert (balance.resets_at.hour, balance.resets_at.minute) == (0, 0)
    assert balance.resets_at > balance.read_at
    with pytest.raises(ProviderError, match="no amounts"):
        nf._quota_balance("neuroflash", {"usageTypeKey": "images"})
