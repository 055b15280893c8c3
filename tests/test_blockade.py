"""The Blockade Labs client against the sandbox: in-process (ASGI), over real HTTP on loopback,
and end to end through the engine.

Client-level tests call one provider method = one wire exchange (no engine retries) on a frozen
sandbox clock that the harness moves; engine tests use the ``engine`` fixture (1000× clock).
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
from datetime import datetime, timezone
from typing import Any

import httpx
import numpy as np
import pytest
from _live_sandbox import LOOPBACK_TIMEOUT
from PIL import Image as PILImage

import jupyter_imagine as ji
from jupyter_imagine.errors import (
    ActionNotAvailable,
    AuthenticationError,
    InvalidRequest,
    JobCancelled,
    ModeratedPrompt,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
)
from jupyter_imagine.models import Job, Status
from jupyter_imagine.providers import PROVIDERS
from jupyter_imagine.providers import blockade as module
from jupyter_imagine.providers.blockade import STATUS_MAP, Blockade
from jupyter_imagine.sandbox import _blockade as emu
from jupyter_imagine.sandbox import create_app

KEY = "test-key-blockade-0001"
SEED = 1234  # most finished skyboxes share it: the renderer memoises, so they draw once
PROMPT = "a lighthouse at dusk"


class Harness:
    """A Blockade client on a sandbox, with helpers that run a job to its end."""

    def __init__(self, client: httpx.AsyncClient, base: str, state, key: str | None = KEY):
        self.client = client
        self.state = state
        self.api = Blockade(client=client, base_url=base + "/blockade", api_key=key, sandbox=True)

    @property
    def emulator(self) -> emu.Blockade:
        return self.state.providers["blockade"]

    def requests(self, method: str, suffix: str) -> int:
        return sum(n for (m, p), n in self.state.requests.items()
                   if m == method and p.endswith(suffix))

    async def submit(self, kind: str = "skybox", prompt: str = PROMPT, parent: Job | None = None,
                     **params: Any) -> Job:
        job = Job(provider="blockade", kind=kind, prompt=prompt, params=params,
                  parent_id=parent.id if parent else None)
        sub = await self.api.submit(job, parent)
        job.remote_id = sub.remote_id
        job.raw = sub.raw
        if sub.update is not None:
            self.apply(job, sub.update)
        return job

    def apply(self, job: Job, update) -> None:
        job.status = update.status
        job.queue_position = update.queue_position
        if update.images is not None:
            job.images = update.images
        job.extras.update(update.extras)
        job.raw = update.raw
        job.error = update.error

    async def run(self, kind: str = "skybox", prompt: str = PROMPT, parent: Job | None = None,
                  **params: Any) -> tuple[Job, list[tuple[Status, int | None]]]:
        job = await self.submit(kind, prompt, parent, **params)
        seen = [(job.status, job.queue_position)]
        for _ in range(60):
            if job.status.final:
                break
            self.state.clock.advance(1.5)
            self.apply(job, await self.api.poll(job))
            seen.append((job.status, job.queue_position))
        return job, seen

    async def image(self, url: str) -> PILImage.Image:
        return PILImage.open(io.BytesIO(await self.api.download(url)))


async def _in_process(fn, key: str | None = KEY):
    app = create_app(speed=0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        try:
            return await fn(Harness(client, "http://sandbox.test", app.state.sandbox, key))
        finally:
            await app.state.sandbox.aclose()


def in_process(fn, key: str | None = KEY):
    return asyncio.run(_in_process(fn, key))


def seam(image: PILImage.Image) -> tuple[float, float]:
    """Mean difference of the left and right edge columns, and of two opposite columns."""
    arr = np.asarray(image.convert("RGB"), dtype=float)
    return (float(np.abs(arr[:, 0] - arr[:, -1]).mean()),
            float(np.abs(arr[:, 0] - arr[:, arr.shape[1] // 2]).mean()))


# ------------------------------------------------------------------ the status table
@pytest.mark.parametrize(
    "raw, status, progress",
    [
        ("pending", Status.QUEUED, 0),
        ("dispatched", Status.RUNNING, 10),
        ("processing", Status.RUNNING, 50),
        ("complete", Status.SUCCEEDED, 100),
        ("abort", Status.CANCELLED, None),
        ("error", Status.FAILED, None),
    ],
)
def test_status_table(raw, status, progress):
    api = Blockade(client=None, base_url="http://x", api_key="k", sandbox=True)
    assert STATUS_MAP[raw] is status and api.map_status(raw) is status
    update = api.parse({"id": 1, "status": raw, "queue_position": 3, "file_url": "f",
                        "error_message": "boom" if raw == "error" else None})
    assert update.status is status and update.progress == progress
    assert update.queue_position == (3 if status is Status.QUEUED else None)
    assert (update.error == "boom") is (status is Status.FAILED)


def test_status_table_is_exactly_the_documented_lifecycle():
    assert set(STATUS_MAP) == {"pending", "dispatched", "processing", "complete", "abort",
                               "error"}
    assert set(STATUS_MAP) == set(emu.STATUSES)


def test_parse_accepts_both_envelopes_and_reads_the_images():
    api = Blockade(client=None, base_url="http://x", api_key="k", sandbox=True)
    obj = {"id": 7, "status": "complete", "file_url": "https://cdn/p.jpg", "thumb_url": "t",
           "depth_map_url": "d", "obfuscated_id": "ab" * 16, "skybox_style_id": 67}
    for body in ({"request": obj}, {"response": obj}, obj):
        assert module._unwrap(body, "Blockade Labs") == obj
    update = api.parse(obj)
    assert [(i.role, i.url) for i in update.images] == [
        ("image", "https://cdn/p.jpg"), ("thumbnail", "t"), ("depth", "d")]
    assert update.extras["obfuscated_id"] == "ab" * 16 and update.extras["skybox_style_id"] == 67
    no_depth = api.parse({**obj, "depth_map_url": ""})
    assert [i.role for i in no_depth.images] == ["image", "thumbnail"]
    failed = api.parse({"id": 7, "status": "error", "error_message": ""})
    assert failed.status is Status.FAILED and "without a message" in failed.error
    with pytest.raises(Exception, match="instead of an object"):
        module._unwrap([1], "Blockade Labs")


def test_registered_with_the_contract_attributes():
    assert PROVIDERS["blockade"] is Blockade
    assert (Blockade.label, Blockade.env_key, Blockade.default_base_url, Blockade.sandbox_prefix) \
        == ("Blockade Labs", "BLOCKADE_API_KEY", "https://backend.blockadelabs.com", "/blockade")
    assert Blockade.kinds == ("imagine", "skybox") and Blockade.poll_interval == (3.0, 10.0)
    api = Blockade(client=None, base_url="http://x", api_key="secret-key-123", sandbox=False)
    assert api.job_kind("imagine") == api.job_kind("skybox") == "skybox"
    assert api.auth_headers() == {"x-api-key": "secret-key-123"}
    assert "secret-key-123" not in repr(api)


# ------------------------------------------------------------------ parameters
@pytest.mark.parametrize(
    "params, words",
    [
        ({"seed": -1}, "between 0 and 2147483647"),
        ({"seed": 2147483648}, "between 0 and 2147483647"),
        ({"seed": True}, "must be int"),
        ({"init_strength": 0.98, "init_image": "https://x/i.png"}, "between 0 and 0.97"),
        ({"control_model": "depth", "control_image": "https://x/c.png"}, "one of remix"),
        ({"control_model": "remix"}, "needs a control_image"),
        ({"init_strength": 0.5}, "needs an init_image"),
        ({"init_image": "/no/such/file.png"}, "no image file"),
        ({"init_image": b"bytes"}, "image URL"),
        ({"webhook_url": "not-a-url"}, "http(s) URL"),
        ({"enhance_prompt": "perhaps"}, "must be bool"),
        ({"aspect_ratio": "16:9"}, "unknown parameter 'aspect_ratio'"),
        ({"remix_imagine_id": 0}, "at least 1"),
    ],
)
def test_param_specs_refuse_bad_values(params, words):
    api = Blockade(client=None, base_url="http://x", api_key="k", sandbox=True)
    with pytest.raises(InvalidRequest, match=None) as info:
        api.validate("imagine", PROMPT, params)
    assert words in str(info.value)


def test_param_specs_normalize(tmp_path):
    api = Blockade(client=None, base_url="http://x", api_key="k", sandbox=True)
    image = tmp_path / "init.png"
    PILImage.new("RGB", (64, 32)).save(image)
    out = api.validate("imagine", PROMPT, {
        "seed": "42", "enhance_prompt": "yes", "init_image": str(image), "init_strength": "0.4",
        "skybox_style_id": "68", "return_depth_hq": 1, "control_image": "https://x/c.png",
        "control_model": "remix", "negative_text": "fog", "webhook_url": "https://h/x"})
    assert out["seed"] == 42 and out["enhance_prompt"] is True and out["init_strength"] == 0.4
    assert out["skybox_style_id"] == 68 and out["return_depth_hq"] is True
    assert out["init_image"] == str(image.resolve())
    seed = Blockade.params["seed"]
    assert seed.choices is None and (seed.low, seed.high) == (0, 2147483647)  # not a choice list
    assert set(Blockade.params) >= {"skybox_style_id", "negative_text", "enhance_prompt", "seed",
                                    "remix_imagine_id", "control_image", "control_model",
                                    "init_image", "init_strength", "return_depth_hq",
                                    "webhook_url", "generator"}


# ------------------------------------------------------------------ skyboxes
def test_skybox_lifecycle_default_style_and_images():
    async def flow(h: Harness):
        job, seen = await h.run(seed=SEED)
        assert job.status is Status.SUCCEEDED
        assert seen[0] == (Status.QUEUED, 2) and (Status.QUEUED, 1) in seen
        assert (Status.RUNNING, None) in seen
        assert h.requests("GET", "/api/v1/skybox/styles") == 1
        record = h.emulator.get(int(job.remote_id))
        assert record.style["id"] == 67  # the first style of the catalogue
        assert job.extras["skybox_style_name"] == "M3 Photoreal"
        assert [i.role for i in job.images] == ["image", "thumbnail", "depth"]
        pano = await h.image(job.images[0].url)
        assert pano.size == (2048, 1024)
        edge, opposite = seam(pano)
        assert edge < 4 and opposite > 3 * edge
        assert (await h.image(job.images[1].url)).size == (672, 336)
        assert (await h.image(job.images[2].url)).mode == "L"
        assert h.api.actions(job) == ("Remix", "Export")
        await h.submit(seed=SEED, skybox_style_id=70)
        assert h.requests("GET", "/api/v1/skybox/styles") == 1  # fetched once, cached

    in_process(flow)


def test_every_skybox_field_reaches_the_wire(tmp_path):
    async def flow(h: Harness):
        init = tmp_path / "init.png"
        PILImage.new("RGB", (512, 256), (10, 200, 10)).save(init)
        sketch = PILImage.new("L", (1024, 512))
        buf = io.BytesIO()
        sketch.save(buf, format="PNG")
        control = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        params = h.api.validate("imagine", "a green valley", {
            "skybox_style_id": 68, "negative_text": "people", "enhance_prompt": True,
            "seed": 99, "init_image": str(init), "init_strength": 0.6, "control_image": control,
            "return_depth_hq": True, "webhook_url": "http://127.0.0.1:9/hook"})
        job = await h.submit(prompt="a green valley", **params)
        record = h.emulator.get(int(job.remote_id))
        assert record.style["id"] == 68 and record.negative_text == "people"
        assert record.enhance_prompt and record.seed == 99 and record.depth_hq
        assert record.init_strength == 0.6 and record.control_model == "remix"
        assert PILImage.open(io.BytesIO(record.init_image)).size == (512, 256)
        assert PILImage.open(io.BytesIO(record.control_image)).size == (1024, 512)
        assert record.webhook_url == "http://127.0.0.1:9/hook"

    in_process(flow)


def test_length_limits_are_checked_before_sending():
    async def flow(h: Harness):
        with pytest.raises(InvalidRequest, match="at most 2000 \\(its max-char\\)"):
            await h.submit(prompt="x" * 2001)
        with pytest.raises(InvalidRequest, match="at most 400 \\(its negative-text-max-char\\)"):
            await h.submit(prompt="ok", skybox_style_id=69, negative_text="n" * 401)
        with pytest.raises(InvalidRequest, match="no skybox style 4242"):
            await h.submit(prompt="ok", skybox_style_id=4242)
        assert h.requests("POST", "/api/v1/skybox") == 0
        # once the catalogue is cached, validate() refuses before anything is stored
        with pytest.raises(InvalidRequest, match="at most 800 .*max-char"):
            h.api.validate("imagine", "y" * 801, {"skybox_style_id": 200})
        assert h.api.validate("imagine", "y" * 800, {"skybox_style_id": 200})
        message = ""
        try:
            h.api.validate("imagine", "y" * 2001, {})
        except InvalidRequest as exc:
            message = str(exc)
        assert "\n" not in message and "M3 Photoreal" in message and "2001" in message

    in_process(flow)


def test_legacy_generator_path_and_its_params():
    async def flow(h: Harness):
        params = h.api.validate("imagine", "forest in autumn", {
            "generator": "stable-skybox", "seed": "-1", "animation_mode": "skybox"})
        job, _ = await h.run(prompt="forest in autumn", **params)
        assert job.status is Status.SUCCEEDED and job.raw["type"] == "imaginarium"
        assert job.raw["generator_data"]["animation_mode"] == "skybox"
        assert h.requests("POST", "/api/v1/imagine/requests") == 1
        assert h.requests("POST", "/api/v1/skybox") == 0
        for extra, words in [
            ({"generator": "dall-e"}, "no generator 'dall-e'"),
            ({"generator": "stable-skybox", "seed": -5}, "between -1 and 2147483647"),
            ({"generator": "stable-skybox", "animation_mode": "video"}, "one of skybox"),
            ({"generator": "stable-skybox", "skybox_style_id": 67}, "no parameter"),
            ({"generator": "stable-skybox", "negative_text": "n" * 401}, "at most 400"),
        ]:
            with pytest.raises(InvalidRequest, match=words):
                await h.submit(prompt="a valley", **extra)
        with pytest.raises(InvalidRequest, match="at most 600 \\(its max_value\\)"):
            h.api.validate("imagine", "p" * 601, {"generator": "stable-skybox"})
        assert h.requests("POST", "/api/v1/imagine/requests") == 1
        generators = await h.api.generators()
        assert generators[0]["generator"] == "stable-skybox"
        assert h.requests("GET", "/api/v1/generators") == 1

    in_process(flow)


def test_remix_and_export_children():
    async def flow(h: Harness):
        parent, _ = await h.run(seed=SEED, webhook_url="http://127.0.0.1:9/h")
        spec = h.api.child(parent, "Remix", prompt="a lighthouse at night")
        assert spec.kind == "remix" and spec.prompt == "a lighthouse at night"
        assert spec.params == {"remix_imagine_id": int(parent.remote_id), "skybox_style_id": 67,
                               "webhook_url": "http://127.0.0.1:9/h"}
        assert h.api.child(parent, "Remix", skybox_style_id=68).params["skybox_style_id"] == 68
        remix, _ = await h.run("remix", spec.prompt, parent, **spec.params)
        record = h.emulator.get(int(remix.remote_id))
        assert record.remix_of == int(parent.remote_id) and record.style["id"] == 67
        assert remix.status is Status.SUCCEEDED and h.api.actions(remix) == ("Remix", "Export")
        with pytest.raises(InvalidRequest, match="empty"):
            h.api.child(parent, "Remix", prompt="  ")
        with pytest.raises(InvalidRequest, match="takes no aspect_ratio"):
            h.api.child(parent, "Remix", aspect_ratio="1:1")

        default = h.api.child(parent, "Export")
        assert default.kind == "export" and default.params["type_id"] == 1
        assert default.params["skybox_id"] == parent.extras["obfuscated_id"]
        jpg = await h.submit("export", parent.prompt, parent, **default.params)
        assert jpg.status is Status.SUCCEEDED  # complete in the POST answer
        assert (await h.image(jpg.images[0].url)).format == "JPEG"
        assert h.api.child(parent, "Export", type="png").params["type_id"] == 2
        assert h.api.child(parent, "Export", type="Cube Map").params["type_id"] == 3
        assert h.api.child(parent, "Export", type="depth-map-png").params["type_id"] == 6
        assert h.api.child(parent, "Export", type_id=5).params["export_type"] == "hdri-exr"
        for bad in ({"type": "gif"}, {"type_id": 12}, {"type": "png", "type_id": 2}):
            with pytest.raises(InvalidRequest):
                h.api.child(parent, "Export", **bad)
        cube_spec = h.api.child(parent, "Export", type="cube-map")
        cube, seen = await h.run("export", parent.prompt, parent, **cube_spec.params)
        assert seen[0][0] is Status.QUEUED and cube.status is Status.SUCCEEDED
        strip = await h.image(cube.images[0].url)
        assert strip.size == (3072, 512)
        depth, _ = await h.run("export", parent.prompt, parent,
                               **h.api.child(parent, "Export", type="depth").params)
        assert [i.role for i in depth.images] == ["depth"]
        assert h.api.actions(cube) == ()
        with pytest.raises(InvalidRequest, match="no action"):
            h.api.child(parent, "U1")

    in_process(flow)


def test_cancel_aborts_requests_and_exports():
    async def flow(h: Harness):
        job = await h.submit()
        assert await h.api.cancel(job) is True
        h.apply(job, await h.api.poll(job))
        assert job.status is Status.CANCELLED and job.raw["status"] == "abort"
        listed = await h.api.my_requests(status="abort")
        assert [i["id"] for i in listed["data"]] == [int(job.remote_id)]
        done, _ = await h.run(seed=SEED)
        export = await h.submit("export", PROMPT, done,
                                **h.api.child(done, "Export", type="hdri").params)
        assert export.status is Status.QUEUED
        assert await h.api.cancel(export) is True
        h.apply(export, await h.api.poll(export))
        assert export.status is Status.CANCELLED
        nothing = Job(provider="blockade", kind="skybox", prompt="x")
        assert await h.api.cancel(nothing) is False

    in_process(flow)


def test_failed_generation_carries_the_error_message():
    async def flow(h: Harness):
        job, _ = await h.run(prompt="a castle sandbox:fail")
        assert job.status is Status.FAILED and job.error == emu.FAIL_MESSAGE

    in_process(flow)


# ------------------------------------------------------------------ the service's own calls
def test_public_calls():
    async def flow(h: Harness):
        styles = await h.api.styles()
        assert styles[0]["id"] == 67 and "max-char" in styles[0]
        styles[0]["name"] = "changed"  # a copy: the cache is untouched
        assert (await h.api.styles())[0]["name"] == "M3 Photoreal"
        assert {s["model_version"] for s in await h.api.styles(model_version=4)} == {"4"}
        assert {f["type"] for f in await h.api.families()} == {"family", "style"}
        assert [t["id"] for t in await h.api.export_types()] == list(range(1, 10))
        done, _ = await h.run(seed=SEED)
        pending = await h.submit(prompt="waiting")
        by_id = await h.api.get_request(done.remote_id)
        assert by_id["status"] == "complete"
        assert await h.api.get_request_by_obfuscated_id(by_id["obfuscated_id"]) == by_id
        page = await h.api.my_requests(limit=1, order="ASC")
        assert page["totalCount"] == 2 and page["has_more"] is True
        assert page["data"][0]["id"] == int(done.remote_id)
        with pytest.raises(InvalidRequest, match="no filter 'page'"):
            await h.api.my_requests(page=2)
        assert await h.api.cancel_pending() == {"success": True}
        assert (await h.api.get_request(pending.remote_id))["status"] == "abort"
        export = await h.submit("export", PROMPT, done,
                                **h.api.child(done, "Export", type="png").params)
        assert (await h.api.get_export(export.remote_id))["type"] == "equirectangular-png"
        assert await h.api.cancel_export(export.remote_id) == {"success": True}
        assert (await h.api.get_export(export.remote_id))["status"] == "abort"
        gone = await h.api.delete(done.remote_id)
        assert gone == {"success": "Item deleted successfully", "id": done.remote_id}
        with pytest.raises(NotFound):
            await h.api.get_request(done.remote_id)
        with pytest.raises(InvalidRequest, match="not a Blockade id"):
            await h.api.get_request("../skybox")

    in_process(flow)


def test_remote_history_pages_through_every_page(monkeypatch):
    monkeypatch.setattr(module, "HISTORY_PAGE", 10)

    async def flow(h: Harness):
        parent, _ = await h.run(seed=SEED)
        for i in range(44):
            await h.submit(prompt=f"tower {i}")
        remix = await h.submit("remix", "a remix", parent,
                               **h.api.child(parent, "Remix", prompt="a remix").params)
        pages = [page async for page in h.api.remote_history()]
        assert [len(p) for p in pages] == [10, 10, 10, 10, 6]
        assert h.requests("GET", "/api/v1/imagine/myRequests") == 5
        jobs = [j for p in pages for j in p]
        assert jobs[0].remote_id == remix.remote_id and jobs[0].kind == "remix"
        assert jobs[0].parent_remote_id == parent.remote_id
        assert jobs[-1].remote_id == parent.remote_id and jobs[-1].kind == "skybox"
        assert jobs[-1].update.status is Status.SUCCEEDED and jobs[-1].update.images
        assert jobs[-1].params["skybox_style_id"] == 67
        assert isinstance(jobs[-1].created_at, datetime) and jobs[-1].created_at.tzinfo
        # since: only what is newer; the pages stop once older items appear
        h.state.clock.advance(3600)
        late = await h.submit(prompt="late one")
        cutoff = datetime.fromisoformat(late.raw["created_at"]).astimezone(timezone.utc)
        recent = [j for page in [p async for p in h.api.remote_history(since=cutoff)]
                  for j in page]
        assert [j.remote_id for j in recent] == [late.remote_id]

    in_process(flow)


# ------------------------------------------------------------------ errors
def test_errors_map_to_typed_exceptions():
    async def flow(h: Harness):
        with pytest.raises(ModeratedPrompt, match="inappropriate"):
            await h.submit(prompt="a gore fest")
        with pytest.raises(NotFound):
            await h.api.poll(Job(provider="blockade", kind="skybox", prompt="x",
                                 remote_id="424242"))
        with pytest.raises(NotFound):
            await h.api.get_export("0" * 32)
        pending = await h.submit()
        with pytest.raises(InvalidRequest, match="422: The skybox is not complete yet"):
            await h.submit("export", PROMPT, pending, skybox_id=pending.raw["obfuscated_id"],
                           type_id=2)
        h.state.clock.advance(100)
        with pytest.raises(PermissionDenied, match="403"):
            await h.submit("export", PROMPT, pending, skybox_id=pending.raw["obfuscated_id"],
                           type_id=7)
        h.state.faults.add("*/imagine/requests/[0-9]*", status=500)
        with pytest.raises(ServiceUnavailable, match="500") as info:
            await h.api.poll(pending)
        assert info.value.reached_server
        h.emulator.enforce_limits = True
        h.emulator.enforced_limit = 2
        h.state.clock.advance(61)
        await h.api.export_types()
        await h.api.export_types()
        with pytest.raises(RateLimited, match="Too Many Attempts") as info:
            await h.api.export_types()
        assert info.value.retry_after is not None and info.value.retry_after >= 1
        assert info.value.status_code == 429

    in_process(flow)


@pytest.mark.parametrize("key", [None, "invalid-key"])
def test_rejected_key_names_the_variable_not_the_key(key):
    async def flow(h: Harness):
        with pytest.raises(AuthenticationError) as info:
            await h.api.styles()
        assert "BLOCKADE_API_KEY" in str(info.value) and "invalid-key" not in str(info.value)

    in_process(flow, key)


def test_the_key_travels_only_in_the_header(caplog):
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request)

    async def flow():
        app = create_app(speed=0)
        hooks = {"request": [record]}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     event_hooks=hooks) as client:
            h = Harness(client, "http://sandbox.test", app.state.sandbox)
            job, _ = await h.run(seed=SEED)
            await h.api.download(job.images[1].url)
            await h.api.my_requests(query="lighthouse")

    with caplog.at_level(logging.DEBUG, logger="jupyter_imagine"):
        asyncio.run(flow())
    assert seen
    for request in seen:
        assert KEY not in str(request.url) and "api_key" not in str(request.url)
        if "/cdn/" in request.url.path:
            assert "x-api-key" not in request.headers  # files are public: no key sent
        else:
            assert request.headers["x-api-key"] == KEY
    assert KEY not in caplog.text


def test_connection_refused_is_marked_as_never_reaching_the_server():
    async def flow():
        async with httpx.AsyncClient() as client:
            api = Blockade(client=client, base_url="http://127.0.0.1:9", api_key="k",
                           sandbox=False)
            with pytest.raises(ServiceUnavailable) as info:
                await api.submit(Job(provider="blockade", kind="skybox", prompt="x"), None)
            assert info.value.reached_server is False

    asyncio.run(flow())


# ------------------------------------------------------------------ over real HTTP
def test_full_flow_over_loopback(live_sandbox):
    async def flow():
        async with httpx.AsyncClient(timeout=LOOPBACK_TIMEOUT) as client:
            live_sandbox.state.clock.speed = 0
            h = Harness(client, live_sandbox.url, live_sandbox.state)
            job, _ = await h.run(seed=SEED)
            assert job.status is Status.SUCCEEDED
            assert job.images[0].url.startswith(live_sandbox.url + "/blockade/cdn/")
            assert (await h.image(job.images[1].url)).size == (672, 336)
            export, _ = await h.run("export", PROMPT, job,
                                    **h.api.child(job, "Export", type="cube").params)
            assert (await h.image(export.images[0].url)).size == (3072, 512)
            remix, _ = await h.run("remix", "a lighthouse in snow", job,
                                   **h.api.child(job, "Remix", prompt="a lighthouse in snow")
                                   .params)
            assert remix.status is Status.SUCCEEDED
            legacy, _ = await h.run(prompt="forest", generator="stable-skybox")
            assert legacy.raw["generator"] == "stable-skybox"
            assert (await h.api.my_requests())["totalCount"] == 3
            cancelled = await h.submit(prompt="stop me")
            await h.api.cancel(cancelled)
            assert (await h.api.get_request(cancelled.remote_id))["status"] == "abort"
            assert {f["type"] for f in await h.api.families()} == {"family", "style"}
            assert len(await h.api.export_types()) == 9
            obfuscated = job.extras["obfuscated_id"]
            assert (await h.api.get_request_by_obfuscated_id(obfuscated))["id"] == \
                int(job.remote_id)
            waiting = await h.submit(prompt="waiting")
            assert await h.api.cancel_pending() == {"success": True}
            assert (await h.api.get_request(waiting.remote_id))["status"] == "abort"
            hdri = await h.submit("export", PROMPT, job,
                                  **h.api.child(job, "Export", type="hdri").params)
            assert (await h.api.get_export(hdri.remote_id))["status"] == "pending"
            assert await h.api.cancel_export(hdri.remote_id) == {"success": True}
            assert (await h.api.delete(legacy.remote_id))["id"] == legacy.remote_id
            with pytest.raises(NotFound):
                await h.api.get_request(legacy.remote_id)
            h.api._api_key = "invalid-key"
            with pytest.raises(AuthenticationError):
                await h.api.my_requests()

    asyncio.run(flow())


# ------------------------------------------------------------------ through the engine
def test_engine_imagine_remix_and_exports(engine):
    job = ji.imagine(PROMPT, provider="blockade", seed=SEED)
    assert job.kind == "skybox" and job.sandbox
    job.wait(30)
    assert job.status is Status.SUCCEEDED and job.progress == 100
    assert job.actions == ("Remix", "Export")
    roles = {image.role: image for image in job.images}
    assert set(roles) == {"image", "thumbnail", "depth"}
    pano = PILImage.open(roles["image"].path)
    assert pano.size == (2048, 1024) == (roles["image"].width, roles["image"].height)
    edge, opposite = seam(pano)
    assert edge < 4 and opposite > 3 * edge
    assert PILImage.open(roles["thumbnail"].path).size == (672, 336)
    assert PILImage.open(roles["depth"].path).size == (1024, 512)
    assert job.extras["skybox_style_id"] == 67 and job.extras["seed"] == SEED

    remix = job.act("Remix", prompt="a lighthouse at night").wait(30)
    assert remix.kind == "remix" and remix.parent_id == job.id and remix.action == "Remix"
    assert remix.params["remix_imagine_id"] == int(job.remote_id)
    assert remix.status is Status.SUCCEEDED and len(remix.images) == 3

    png = job.act("Export", type="png").wait(30)
    assert png.kind == "export" and png.parent_id == job.id and png.action == "Export"
    with PILImage.open(png.images[0].path) as image:
        assert image.format == "PNG" and image.size == (2048, 1024)
    cube = job.act("Export", type_id=3).wait(30)
    assert (cube.images[0].width, cube.images[0].height) == (3072, 512)
    with pytest.raises(ActionNotAvailable):
        cube.act("Remix")
    stored = engine.store.get(cube.id)
    assert stored["status"] == "succeeded" and stored["params"]["export_type"] == "cube-map-png"


def test_engine_cancel_marks_the_job_cancelled_and_the_sandbox_aborts(engine, sandbox):
    sandbox.clock.speed = 0  # nothing moves: the job stays pending
    job = ji.imagine("a harbour at night", provider="blockade")
    for _ in range(3000):  # until the engine has sent it (a bound, not a timing assertion)
        if job.remote_id:
            break
        time.sleep(0.01)
    assert job.remote_id and job.status is Status.QUEUED
    job.cancel()
    with pytest.raises(JobCancelled):
        job.wait(60)
    record = sandbox.providers["blockade"].get(int(job.remote_id))
    assert record.status(sandbox.clock.now()) == "abort"
    listing = ji.client("blockade").my_requests(status="abort")
    assert [i["id"] for i in listing["data"]] == [int(job.remote_id)]


def test_engine_refuses_too_long_prompts_before_sending(engine, sandbox):
    """The engine loads the catalogue (``prepare``) before validating the very first job."""
    posts = lambda: sum(n for (m, p), n in sandbox.requests.items()  # noqa: E731
                        if m == "POST" and p.endswith("/blockade/api/v1/skybox"))
    with pytest.raises(InvalidRequest, match="max-char"):  # the first job: refused at once
        ji.imagine("x" * 2001, provider="blockade")
    assert posts() == 0 and engine.store.records() == []
    with pytest.raises(Exception, match="cannot start"):
        ji.imagine("x", provider="blockade", kind="export")


def test_client_calls_through_the_public_api(engine):
    client = ji.client("blockade")
    assert {"styles", "families", "generators", "export_types", "my_requests", "delete",
            "cancel_pending", "get_export", "cancel_export"} <= set(dir(client))
    assert client.styles()[0]["name"] == "M3 Photoreal"
    assert client.generators()[0]["generator"] == "stable-skybox"
    assert client.my_requests() == {"data": [], "totalCount": 0, "has_more": False}
    assert client.cancel_pending() == {"success": True}



# ------------------------------------------------------------------ spend
def test_only_model4_variants_are_priced():
    from jupyter_imagine.models import Cost

    assert Blockade.price("imagine", {"variant_id": "standard"}) == Cost(3, "credits", "prices")
    assert Blockade.price("skybox", {"variant": "Model 4 Enhanced"}).amount == 6
    for kind in ("imagine", "skybox", "remix", "export"):
        assert Blockade.price(kind, {}) is None
    assert set(Blockade.price_keys()) == {
        "model4_standard", "model4_enhanced", "skybox", "remix", "export"}
