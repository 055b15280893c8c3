"""The APIFRAME emulation of the sandbox, driven over its wire format.

Most tests run in-process (``httpx.ASGITransport``) on a frozen clock (``speed=0``) and jump it
with ``state.clock.advance``; the webhook tests also use real HTTP on loopback. Loopback
serving of the whole app is tested in ``test_sandbox.py``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jupyter_imagine import imaging
from jupyter_imagine.sandbox import SandboxState, _art, create_app

pytestmark = pytest.mark.anyio

BASE = "http://sandbox.test"
KEY = {"Authorization": "test-key"}
GRID_KEYS = {"task_id", "task_type", "status", "percentage", "original_image_url", "image_urls"}


class Box:
    """One in-process sandbox: ``client`` (authorised), ``state``, and helpers."""

    def __init__(self, client: httpx.AsyncClient, state: SandboxState) -> None:
        self.client = client
        self.state = state

    async def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return await self.client.post("/apiframe/" + path, json=body, **kw)

    async def submit(self, path: str, **body: Any) -> str:
        response = await self.post(path, body)
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"task_id"}
        return response.json()["task_id"]

    async def fetch(self, task_id: str) -> dict[str, Any]:
        response = await self.post("fetch", {"task_id": task_id})
        assert response.status_code == 200, response.text
        return response.json()

    async def finish(self, task_id: str) -> dict[str, Any]:
        self.state.clock.advance(60)
        done = await self.fetch(task_id)
        assert done["status"] == "finished", done
        return done

    async def image(self, url: str) -> Image.Image:
        response = await self.client.get(url)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        return Image.open(io.BytesIO(response.content)).convert("RGB")

    async def grid(self, **body: Any) -> tuple[str, dict[str, Any]]:
        task_id = await self.submit("imagine", **body)
        return task_id, await self.finish(task_id)


@contextlib.asynccontextmanager
async def sandbox(speed: float = 0.0, seed: int = 0) -> AsyncIterator[Box]:
    app = create_app(speed=speed, seed=seed)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE, headers=KEY, timeout=30
    ) as client:
        yield Box(client, app.state.sandbox)
    await app.state.sandbox.aclose()


def _arr(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def _diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(_arr(a) - _arr(b)).mean())


def _b64(image: Image.Image, fmt: str = "PNG", prefix: bool = True) -> str:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    text = base64.b64encode(buf.getvalue()).decode()
    return f"data:image/{fmt.lower()};base64,{text}" if prefix else text


def _errors(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errors"} and len(body["errors"]) == 1
    return body["errors"][0]["msg"]


# ----------------------------------------------------------------------------- auth
async def test_auth_accepts_raw_and_bearer_keys_and_rejects_the_rest():
    async with sandbox() as box:
        body = {"prompt": "a boat"}
        for headers in (
            {"Authorization": "my-key"},
            {"Authorization": "Bearer my-key"},
            {"Authorization": "bearer   my-key"},
        ):
            assert (await box.post("imagine", body, headers=headers)).status_code == 200
        for headers in (
            {"Authorization": ""},
            {"Authorization": "Bearer "},
            {"Authorization": "invalid-key"},
            {"Authorization": "Bearer invalid-key"},
        ):
            r = await box.post("imagine", body, headers=headers)
            assert r.status_code == 401 and r.json() == {}
        bare = httpx.AsyncClient(transport=box.client._transport, base_url=BASE)
        async with bare:
            r = await bare.post("/apiframe/imagine", json=body)
            assert r.status_code == 401 and r.json() == {}
            assert (await bare.get("/apiframe/account")).status_code == 401
        box.state.accepted_keys = {"only-this"}
        assert (await box.post("imagine", body)).status_code == 401
        ok = await box.post("imagine", body, headers={"Authorization": "only-this"})
        assert ok.status_code == 200


# ----------------------------------------------------------------------------- lifecycle
async def test_imagine_lifecycle_statuses_and_string_percentages():
    async with sandbox() as box:
        task_id = await box.submit("imagine", prompt="a lighthouse at dusk")
        seen = []
        for t in (0, 1.9, 2, 3.9, 4, 7.5, 7.6, 20, 39.9):
            box.state.clock.advance(t - box.state.clock.now())
            obj = await box.fetch(task_id)
            seen.append((obj["status"], obj.get("percentage")))
            assert obj["task_id"] == task_id and obj["task_type"] == "imagine"
            if obj["status"] == "processing":
                assert set(obj) == {"task_id", "task_type", "status", "percentage"}
                assert isinstance(obj["percentage"], str)
            else:
                assert set(obj) == {"task_id", "task_type", "status"}
        assert seen == [
            ("pending", None),
            ("pending", None),
            ("starting", None),
            ("starting", None),
            ("processing", "0"),
            ("processing", "0"),
            ("processing", "10"),
            ("processing", "40"),
            ("processing", "90"),
        ]
        box.state.clock.advance(0.1)
        done = await box.fetch(task_id)
        assert set(done) == GRID_KEYS
        assert done["status"] == "finished" and done["percentage"] == "100"
        cdn = f"{BASE}/apiframe/cdn/{task_id}"
        assert done["original_image_url"] == f"{cdn}/grid.png"
        assert done["image_urls"] == [f"{cdn}/{i}.png" for i in range(1, 5)]


async def test_percentage_never_goes_down_and_turbo_halves_the_times():
    async with sandbox() as box:
        fast = await box.submit("imagine", prompt="x")
        last, seen = -1, set()
        for _ in range(80):
            box.state.clock.advance(0.5)
            obj = await box.fetch(fast)
            if obj["status"] == "processing":
                assert int(obj["percentage"]) >= last
                last = int(obj["percentage"])
                seen.add(last)
        assert seen == {0, 10, 20, 30, 40, 50, 60, 70, 80, 90}
    async with sandbox() as box:
        turbo = await box.submit("imagine", prompt="x", process_mode="turbo")
        box.state.clock.advance(1)
        assert (await box.fetch(turbo))["status"] == "starting"
        box.state.clock.advance(18.9)
        assert (await box.fetch(turbo))["status"] == "processing"
        box.state.clock.advance(0.1)
        assert (await box.fetch(turbo))["status"] == "finished"


async def test_speed_runs_jobs_on_real_time():
    async with sandbox(speed=2000) as box:
        task_id = await box.submit("imagine", prompt="x")
        await asyncio.sleep(0.05)  # 100 simulated seconds
        assert (await box.fetch(task_id))["status"] == "finished"


# ----------------------------------------------------------------------------- images
@pytest.mark.parametrize("ratio", ["1:1", "3:2", "16:9", "2:3", "4:1"])
async def test_grid_is_2x2_at_the_aspect_ratio(ratio):
    async with sandbox() as box:
        _, done = await box.grid(prompt="a pine forest in snow", aspect_ratio=ratio)
        cell = _art.aspect_size(ratio)
        grid = await box.image(done["original_image_url"])
        assert grid.size == (2 * cell[0], 2 * cell[1])
        cells = [await box.image(u) for u in done["image_urls"]]
        assert all(c.size == cell for c in cells)
        assert _art.make_grid(cells).tobytes() == grid.tobytes()
        assert len({c.tobytes() for c in cells}) == 4  # four different pictures


async def test_aspect_ratio_from_the_prompt_and_body_wins():
    async with sandbox() as box:
        _, done = await box.grid(prompt="a boat --ar 16:9")
        assert (await box.image(done["image_urls"][0])).size == (512, 288)
        _, done = await box.grid(prompt="a boat --ar 16:9", aspect_ratio="2:3")
        assert (await box.image(done["image_urls"][0])).size == (342, 512)


async def test_images_are_deterministic_and_follow_the_sandbox_seed():
    grids = []
    for seed in (0, 0, 1):
        async with sandbox(seed=seed) as box:
            _, done = await box.grid(prompt="neon city at night")
            grids.append((await box.image(done["original_image_url"])).tobytes())
    assert grids[0] == grids[1] and grids[0] != grids[2]
    async with sandbox() as box:  # --seed picks the seed whatever the prompt's words
        _, a = await box.grid(prompt="a boat --seed 42")
        _, b = await box.grid(prompt="a boat  --seed 42")
        _, c = await box.grid(prompt="a boat --seed 43")
        first = [(await box.image(d["image_urls"][0])).tobytes() for d in (a, b, c)]
        assert first[0] == first[1] != first[2]


async def test_png_carries_the_prompt_and_cdn_404s():
    async with sandbox() as box:
        task_id = await box.submit("imagine", prompt="a quiet lake")
        url = f"/apiframe/cdn/{task_id}/grid.png"
        assert (await box.client.get(url)).status_code == 404  # not finished yet
        await box.finish(task_id)
        data = (await box.client.get(url, headers={"Authorization": ""})).content  # public
        assert imaging.read_png_text(data)["prompt"] == "a quiet lake"
        for bad in (
            f"/apiframe/cdn/{task_id}/image.png",
            f"/apiframe/cdn/{task_id}/5.png",
            "/apiframe/cdn/00000000-0000-4000-8000-000000000000/grid.png",
        ):
            r = await box.client.get(bad)
            assert r.status_code == 404 and r.json() == {"errors": [{"msg": "Image not found"}]}


# ----------------------------------------------------------------------------- reroll
async def test_reroll_inherits_and_does_not_resemble_its_parent():
    async with sandbox() as box:
        parent, pdone = await box.grid(prompt="a lighthouse at dusk", aspect_ratio="3:2")
        one = await box.submit("reroll", parent_task_id=parent)
        two = await box.submit("reroll", parent_task_id=parent)
        assert (await box.fetch(one))["task_type"] == "reroll"
        d1, d2 = await box.finish(one), await box.finish(two)
        g0 = await box.image(pdone["original_image_url"])
        g1, g2 = (
            await box.image(d1["original_image_url"]),
            await box.image(d2["original_image_url"]),
        )
        assert g1.size == g0.size == (1024, 684)  # aspect ratio inherited
        assert _diff(g0, g1) > 10 and _diff(g1, g2) > 10
        text = imaging.read_png_text((await box.client.get(d1["original_image_url"])).content)
        assert text["prompt"] == "a lighthouse at dusk"
        new = await box.submit(
            "reroll", parent_task_id=parent, prompt="a castle", aspect_ratio="1:1"
        )
        done = await box.finish(new)
        data = (await box.client.get(done["original_image_url"])).content
        assert imaging.read_png_text(data)["prompt"] == "a castle"
        assert imaging.image_size(data) == (1024, 1024)


# ----------------------------------------------------------------------------- upscale
@pytest.mark.parametrize("index", [2, "3"])
async def test_upscale_is_the_quadrant_at_twice_the_size(index):
    async with sandbox() as box:
        parent, pdone = await box.grid(prompt="autumn forest at dawn", aspect_ratio="16:9")
        up = await box.submit("upscale-1x", parent_task_id=parent, index=index)
        box.state.clock.advance(7.9)
        early = await box.fetch(up)
        assert early["status"] == "processing" and early["task_type"] == f"upscale#{index}"
        box.state.clock.advance(0.1)
        done = await box.fetch(up)
        assert set(done) == {"task_id", "task_type", "status", "percentage", "image_url"}
        assert done["status"] == "finished" and done["image_url"].endswith(f"/{up}/image.png")
        big = await box.image(done["image_url"])
        quadrant = await box.image(pdone["image_urls"][int(index) - 1])
        assert big.size == (1024, 576)
        assert _diff(big.resize(quadrant.size, Image.Resampling.LANCZOS), quadrant) < 3
        others = [await box.image(u) for u in pdone["image_urls"]]
        shrunk = big.resize(quadrant.size, Image.Resampling.LANCZOS)
        assert min(range(4), key=lambda i: _diff(shrunk, others[i])) == int(index) - 1


# ----------------------------------------------------------------------------- variations
async def test_variation_resembles_its_quadrant_more_than_a_reroll():
    async with sandbox() as box:
        parent, pdone = await box.grid(prompt="a lighthouse at dusk")
        var = await box.submit("variations", parent_task_id=parent, index="3")
        rer = await box.submit("reroll", parent_task_id=parent)
        vdone, rdone = await box.finish(var), await box.finish(rer)
        assert vdone["task_type"] == "variation-3" and set(vdone) == GRID_KEYS
        source = await box.image(pdone["image_urls"][2])
        variations = [await box.image(u) for u in vdone["image_urls"]]
        rerolls = [await box.image(u) for u in rdone["image_urls"]]
        worst_variation = max(_diff(source, v) for v in variations)
        best_reroll = min(_diff(source, r) for r in rerolls)
        assert worst_variation * 1.5 < best_reroll
        assert len({v.tobytes() for v in variations}) == 4
        assert all(v.size == source.size for v in variations)


async def test_strong_and_subtle_variations_of_an_upscale():
    async with sandbox() as box:
        parent, _ = await box.grid(prompt="a quiet lake")
        up = await box.submit("upscale-1x", parent_task_id=parent, index=1)
        updone = await box.finish(up)
        source = (await box.image(updone["image_url"])).resize((512, 512))
        diffs = {}
        for kind in ("subtle", "strong"):
            done = await box.finish(await box.submit("variations", parent_task_id=up, index=kind))
            assert done["task_type"] == f"variation-{kind}"
            cells = [await box.image(u) for u in done["image_urls"]]
            diffs[kind] = np.mean([_diff(source, c) for c in cells])
        assert diffs["subtle"] < diffs["strong"]
        msg = _errors(
            await box.post("variations", {"parent_task_id": parent, "index": "strong"}), 400
        )
        assert msg == "Parent task must be an upscale-1x task"


# ----------------------------------------------------------------------------- inpaint
async def _upscaled(box: Box, ratio: str = "1:1") -> tuple[str, Image.Image]:
    parent, _ = await box.grid(prompt="a lighthouse at dusk", aspect_ratio=ratio)
    up = await box.submit("upscale-1x", parent_task_id=parent, index="1")
    done = await box.finish(up)
    return up, await box.image(done["image_url"])


@pytest.mark.parametrize(("fmt", "prefix"), [("PNG", True), ("PNG", False), ("WEBP", True)])
async def test_inpaint_changes_only_the_masked_pixels(fmt, prefix):
    async with sandbox() as box:
        up, source = await _upscaled(box, "3:2")
        mask = Image.new("L", source.size, 0)
        ImageDraw.Draw(mask).ellipse([300, 100, 800, 500], fill=255)
        task = await box.submit("inpaint", parent_task_id=up, mask=_b64(mask, fmt, prefix))
        box.state.clock.advance(39.9)
        assert (await box.fetch(task))["status"] == "processing"
        done = await box.finish(task)
        assert done["task_type"] == "inpaint" and set(done) == GRID_KEYS
        inside = np.asarray(mask) > 127
        results = [await box.image(u) for u in done["image_urls"]]
        for result in results:
            assert result.size == source.size  # full size, not a quarter
            a, b = _arr(source), _arr(result)
            assert np.array_equal(a[~inside], b[~inside])
            assert (np.abs(a - b).sum(axis=2)[inside] > 0).mean() > 0.9
        grid = await box.image(done["original_image_url"])
        assert grid.size == (2 * source.width, 2 * source.height)
        assert len({r.tobytes() for r in results}) == 4


async def test_inpaint_errors():
    async with sandbox() as box:
        up, source = await _upscaled(box)
        good = Image.new("L", source.size, 0)
        good.paste(255, (0, 0, 100, 100))
        small = Image.new("L", (512, 512), 255)
        cases = [
            (
                {"parent_task_id": up, "mask": _b64(small)},
                400,
                "Mask size 512x512 does not match the image size 1024x1024",
            ),
            (
                {"parent_task_id": up, "mask": "data:image/png;base64,bm90IGFuIGltYWdl"},
                400,
                "Invalid mask image",
            ),
            ({"parent_task_id": up, "mask": "%%%"}, 400, "Invalid mask image"),
            ({"parent_task_id": up, "mask": 5}, 400, "Invalid mask image"),
            ({"parent_task_id": up}, 400, "mask is required"),
            (
                {"parent_task_id": up, "mask": _b64(Image.new("L", source.size, 0))},
                400,
                "Mask is empty: paint the area to redraw in white",
            ),
            ({"mask": _b64(good)}, 400, "parent_task_id is required"),
            ({"parent_task_id": "nope", "mask": _b64(good)}, 404, "Task not found"),
            (
                {"parent_task_id": up, "mask": _b64(good), "prompt": "some gore"},
                400,
                "Banned prompt: 'gore'",
            ),
        ]
        for body, status, msg in cases:
            assert _errors(await box.post("inpaint", body), status) == msg
        grid, _ = await box.grid(prompt="x")
        assert (
            _errors(await box.post("inpaint", {"parent_task_id": grid, "mask": _b64(good)}), 400)
            == "Parent task must be an upscale-1x task"
        )
        pending = await box.submit("upscale-1x", parent_task_id=grid, index=1)
        assert (
            _errors(await box.post("inpaint", {"parent_task_id": pending, "mask": _b64(good)}), 400)
            == "Parent task is not finished"
        )
        assert await box.submit("inpaint", parent_task_id=up, mask=_b64(good), prompt="a moon")


# ----------------------------------------------------------------------------- errors
async def test_submit_errors_have_apiframe_shapes():
    async with sandbox() as box:
        parent, _ = await box.grid(prompt="x")
        running = await box.submit("imagine", prompt="y")
        cases = [
            ("imagine", {}, 400, "prompt is required"),
            ("imagine", {"prompt": "   "}, 400, "prompt is required"),
            ("imagine", {"prompt": 3}, 400, "prompt must be a string"),
            (
                "imagine",
                {"prompt": "x", "aspect_ratio": "abc"},
                400,
                "aspect ratio must look like 16:9, not 'abc'",
            ),
            (
                "imagine",
                {"prompt": "x", "aspect_ratio": "9:1"},
                400,
                "aspect ratio 9:1 is out of range; use one between 1:4 and 4:1",
            ),
            (
                "imagine",
                {"prompt": "x", "process_mode": "relax"},
                400,
                "process_mode must be fast or turbo",
            ),
            (
                "imagine",
                {"prompt": "x", "webhook_url": "ftp://x"},
                400,
                "webhook_url must be an http(s) URL",
            ),
            ("reroll", {}, 400, "parent_task_id is required"),
            ("reroll", {"parent_task_id": "missing"}, 404, "Task not found"),
            ("reroll", {"parent_task_id": running}, 400, "Parent task is not finished"),
            ("upscale-1x", {"parent_task_id": parent}, 400, "index is required"),
            ("variations", {"parent_task_id": parent}, 400, "index is required"),
            ("fetch", {}, 400, "task_id is required"),
            ("fetch", {"task_id": "missing"}, 404, "Task not found"),
        ]
        for index in (0, 5, "x", "1.0", True, 2.0, [1]):
            cases.append(
                (
                    "upscale-1x",
                    {"parent_task_id": parent, "index": index},
                    400,
                    "index must be 1, 2, 3 or 4",
                )
            )
            cases.append(
                (
                    "variations",
                    {"parent_task_id": parent, "index": index},
                    400,
                    "index must be 1, 2, 3 or 4",
                )
            )
        cases.append(
            ("upscale-1x", {"parent_task_id": "missing", "index": 1}, 404, "Task not found")
        )
        for path, body, status, msg in cases:
            assert _errors(await box.post(path, body), status) == msg, (path, body)
        credits = box.state.providers["apiframe"].credits
        assert credits == 10000 - 8  # only the two accepted imagines were charged

        bad_json = await box.client.post(
            "/apiframe/imagine", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert _errors(bad_json, 400) == "Invalid JSON body"
        assert _errors(await box.post("imagine", [1, 2]), 400) == (
            "Request body must be a JSON object"
        )
        assert _errors(await box.client.post("/apiframe/nothing-here"), 404) == "Not found"
        assert _errors(await box.client.get("/apiframe/imagine"), 405) == "Method not allowed"


async def test_upscale_of_an_upscale_is_refused():
    async with sandbox() as box:
        up, _ = await _upscaled(box)
        msg = _errors(await box.post("upscale-1x", {"parent_task_id": up, "index": 1}), 400)
        assert msg == "Parent task must be a grid task"


async def test_internal_errors_answer_500_empty(monkeypatch):
    async with sandbox() as box:
        emulator = box.state.providers["apiframe"]

        def boom(*a, **k):
            raise RuntimeError("kaboom")

        monkeypatch.setattr(emulator, "view", boom)
        task_id = await box.submit("imagine", prompt="x")
        r = await box.post("fetch", {"task_id": task_id})
        assert r.status_code == 500 and r.json() == {}


# ----------------------------------------------------------------------------- banned, magic words
async def test_banned_words():
    async with sandbox() as box:
        for prompt, word in (
            ("a gore scene", "gore"),
            ("NSFW stuff", "nsfw"),
            ("bloodbath at dawn", "bloodbath"),
        ):
            assert _errors(await box.post("imagine", {"prompt": prompt}), 400) == (
                f"Banned prompt: '{word}'"
            )
        assert box.state.tasks == {} and box.state.providers["apiframe"].credits == 10000
        assert await box.submit("imagine", prompt="gorecki's symphony")  # whole words only
        parent, _ = await box.grid(prompt="a castle")
        msg = _errors(await box.post("reroll", {"parent_task_id": parent, "prompt": "gore"}), 400)
        assert msg == "Banned prompt: 'gore'"
        box.state.banned_words.add("castle")
        assert _errors(await box.post("imagine", {"prompt": "a Castle"}), 400) == (
            "Banned prompt: 'castle'"
        )


async def test_sandbox_fail_fails_halfway():
    async with sandbox() as box:
        task_id = await box.submit("imagine", prompt="a boat sandbox:fail")
        box.state.clock.advance(19.9)
        assert (await box.fetch(task_id))["status"] == "processing"
        box.state.clock.advance(0.1)
        failed = await box.fetch(task_id)
        assert failed == {
            "task_id": task_id,
            "task_type": "imagine",
            "status": "failed",
            "message": "Midjourney could not complete the job (sandbox:fail)",
        }
        box.state.clock.advance(1000)
        assert (await box.fetch(task_id))["status"] == "failed"
        msg = _errors(await box.post("upscale-1x", {"parent_task_id": task_id, "index": 1}), 400)
        assert msg == "Parent task is not finished"
        assert (await box.client.get(f"/apiframe/cdn/{task_id}/grid.png")).status_code == 404


async def test_sandbox_hang_stays_processing():
    async with sandbox() as box:
        task_id = await box.submit("imagine", prompt="sandbox:hang a boat")
        box.state.clock.advance(10_000)
        obj = await box.fetch(task_id)
        assert obj["status"] == "processing" and obj["percentage"] == "50"


# ----------------------------------------------------------------------------- fetch-many, account
async def test_fetch_many_bounds_and_order():
    async with sandbox() as box:
        a = await box.submit("imagine", prompt="a")
        box.state.clock.advance(50)
        b = await box.submit("imagine", prompt="b")
        r = await box.post("fetch-many", {"task_ids": [b, "ghost", a]})
        tasks = r.json()["tasks"]
        assert [t["task_id"] for t in tasks] == [b, "ghost", a]
        assert tasks[0]["status"] == "pending" and tasks[2]["status"] == "finished"
        assert tasks[1] == {"task_id": "ghost", "status": "failed", "message": "Task not found"}
        assert tasks[2] == await box.fetch(a)
        msg = "task_ids must be a list of 2 to 20 task ids"
        for ids in ([a], [a] * 21, a, [a, 3], {"a": 1}):
            assert _errors(await box.post("fetch-many", {"task_ids": ids}), 400) == msg
        assert _errors(await box.post("fetch-many", {}), 400) == "task_ids is required"
        assert len((await box.post("fetch-many", {"task_ids": [a] * 20})).json()["tasks"]) == 20


async def test_account_credits_and_total_images():
    async with sandbox() as box:
        assert (await box.client.get("/apiframe/account")).json() == {
            "email": "sandbox@jupyter-imagine.local",
            "credits": 10000,
            "plan": "sandbox",
            "next_billing_date": None,
            "total_images": 0,
        }
        parent, _ = await box.grid(prompt="x")
        up = await box.submit("upscale-1x", parent_task_id=parent, index=4)
        account = (await box.client.get("/apiframe/account")).json()
        assert account["credits"] == 10000 - 4 - 2 and account["total_images"] == 4
        await box.finish(up)
        assert (await box.client.get("/apiframe/account")).json()["total_images"] == 5
        box.state.providers["apiframe"].credits = 3
        assert _errors(await box.post("imagine", {"prompt": "y"}), 402) == "Not enough credits"
        assert await box.submit("upscale-1x", parent_task_id=parent, index=1)  # costs 2


# ----------------------------------------------------------------------------- webhooks
async def test_webhooks_to_the_sandbox_sink_carry_the_secret():
    async with sandbox(speed=400) as box:
        task_id = await box.submit(
            "imagine",
            prompt="a boat",
            webhook_url=f"{BASE}/_sandbox/webhook-sink/hook",
            webhook_secret="s3cret",
        )
        plain = await box.submit(
            "imagine", prompt="a cat", webhook_url=f"{BASE}/_sandbox/webhook-sink/plain"
        )
        for _ in range(300):
            if sum(h["body"]["status"] == "finished" for h in box.state.webhooks) == 2:
                break
            await asyncio.sleep(0.02)
        hooks = [h for h in box.state.webhooks if h["path"].endswith("/hook")]
        assert all(h["headers"]["x-webhook-secret"] == "s3cret" for h in hooks)
        assert all(h["body"]["task_id"] == task_id for h in hooks)
        statuses = [h["body"]["status"] for h in hooks]
        assert statuses[-1] == "finished" and "processing" in statuses
        order = ["pending", "starting", "processing", "finished"]
        assert [order.index(s) for s in statuses] == sorted(order.index(s) for s in statuses)
        percents = [int(h["body"]["percentage"]) for h in hooks if "percentage" in h["body"]]
        assert percents == sorted(percents) and len(percents) >= 3
        assert len({repr(h["body"]) for h in hooks}) == len(hooks)  # one post per change
        assert hooks[-1]["body"] == await box.fetch(task_id)
        plain_hooks = [h for h in box.state.webhooks if h["path"].endswith("/plain")]
        assert plain_hooks and all("x-webhook-secret" not in h["headers"] for h in plain_hooks)
        assert plain_hooks[-1]["body"]["task_id"] == plain


async def test_webhooks_replay_every_change_after_a_clock_jump():
    async with sandbox() as box:  # frozen clock: only the jump moves time
        task_id = await box.submit(
            "imagine", prompt="a boat", webhook_url=f"{BASE}/_sandbox/webhook-sink"
        )
        box.state.clock.advance(100)
        for _ in range(200):
            if box.state.webhooks and box.state.webhooks[-1]["body"]["status"] == "finished":
                break
            await asyncio.sleep(0.01)
        seen = [(h["body"]["status"], h["body"].get("percentage")) for h in box.state.webhooks]
        assert seen == [
            ("pending", None),
            ("starting", None),
            *[("processing", str(p)) for p in range(0, 100, 10)],
            ("finished", "100"),
        ]
        assert box.state.webhooks[-1]["body"] == await box.fetch(task_id)


class _Receiver:
    """A tiny webhook receiver served by uvicorn on loopback in a thread."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], Any]] = []

        async def hook(request: Request) -> JSONResponse:
            self.received.append((dict(request.headers), await request.json()))
            return JSONResponse({"ok": True})

        app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    server = _Receiver()
    try:
        yield server
    finally:
        server.stop()


async def test_webhooks_over_real_http(receiver):
    async with sandbox() as box:
        url = f"http://127.0.0.1:{receiver.port}/hook"
        task_id = await box.submit(
            "upscale-1x",
            **{
                "parent_task_id": (await box.grid(prompt="x"))[0],
                "index": "2",
                "webhook_url": url,
                "webhook_secret": "abc123",
            },
        )
        created = box.state.clock.now()
        for step in (0, 3, 5, 9):  # pending, starting, processing, finished (8 s)
            box.state.clock.advance(created + step - box.state.clock.now())
            await asyncio.sleep(0.3)
        for _ in range(100):
            if receiver.received and receiver.received[-1][1]["status"] == "finished":
                break
            await asyncio.sleep(0.05)
        statuses = [body["status"] for _, body in receiver.received]
        assert statuses[0] == "pending" and statuses[-1] == "finished"
        assert {"starting", "processing"} <= set(statuses)
        assert all(h["x-webhook-secret"] == "abc123" for h, _ in receiver.received)
        final = receiver.received[-1][1]
        assert final["task_type"] == "upscale#2"
        assert final["image_url"] == f"{BASE}/apiframe/cdn/{task_id}/image.png"


async def test_failed_webhook_delivery_never_breaks_the_sandbox(caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]  # nothing listens here once the socket closes
    async with sandbox(speed=1000) as box:
        task_id = await box.submit(
            "imagine", prompt="x", webhook_url=f"http://127.0.0.1:{dead}/hook"
        )
        deadline = asyncio.get_running_loop().time() + 30  # the delivery is tried in the background
        while not any("webhook" in r.getMessage() for r in caplog.records):
            assert asyncio.get_running_loop().time() < deadline, "no failed delivery was logged"
            await asyncio.sleep(0.05)
        assert (await box.fetch(task_id))["status"] == "finished"


# ----------------------------------------------------------------------------- the other endpoints
async def test_upscale_alt_and_highres():
    async with sandbox() as box:
        grid, gdone = await box.grid(prompt="a quiet lake")
        up = await box.submit("upscale-1x", parent_task_id=grid, index=1)
        updone = await box.finish(up)
        base = await box.image(updone["image_url"])
        for kind in ("subtle", "creative"):
            done = await box.finish(await box.submit("upscale-alt", parent_task_id=up, type=kind))
            assert done["task_type"] == f"upscale-{kind}"
            big = await box.image(done["image_url"])
            assert big.size == (2048, 2048)
            assert _diff(big.resize(base.size, Image.Resampling.LANCZOS), base) < 8
        assert (
            _errors(await box.post("upscale-alt", {"parent_task_id": up, "type": "x"}), 400)
            == "type must be subtle or creative"
        )
        assert (
            _errors(await box.post("upscale-alt", {"parent_task_id": grid, "type": "subtle"}), 400)
            == "Parent task must be an upscale-1x task"
        )

        done = await box.finish(
            await box.submit("upscale-highres", parent_task_id=grid, index="2", type="2x")
        )
        assert done["task_type"] == "upscale-2x"
        assert (await box.image(done["image_url"])).size == (1024, 1024)
        done = await box.finish(
            await box.submit("upscale-highres", image_url=gdone["image_urls"][3], type="4x")
        )
        assert (await box.image(done["image_url"])).size == (2048, 2048)
        assert _errors(await box.post("upscale-highres", {"type": "2x"}), 400) == (
            "parent_task_id or image_url is required"
        )
        assert (
            _errors(await box.post("upscale-highres", {"parent_task_id": grid, "type": "2x"}), 400)
            == "index is required"
        )
        assert (
            _errors(await box.post("upscale-highres", {"parent_task_id": grid, "type": "8x"}), 400)
            == "type must be 2x or 4x"
        )
        four = await box.finish(await box.submit("upscale-highres", parent_task_id=up, type="4x"))
        assert _errors(
            await box.post("upscale-highres", {"image_url": four["image_url"], "type": "2x"}), 400
        ) == ("Image must be at most 2048x2048")


async def test_outpaint_and_pan():
    async with sandbox() as box:
        grid, _ = await box.grid(prompt="a lighthouse at dusk")
        up = await box.submit("upscale-1x", parent_task_id=grid, index=1)
        await box.finish(up)
        done = await box.finish(
            await box.submit("outpaint", parent_task_id=up, zoom_ratio="2", aspect_ratio="16:9")
        )
        assert done["task_type"] == "outpaint-2" and set(done) == GRID_KEYS
        assert (await box.image(done["image_urls"][0])).size == (512, 288)
        done = await box.finish(await box.submit("outpaint", parent_task_id=up, zoom_ratio=1.5))
        assert done["task_type"] == "outpaint-1.5"
        for bad in (0.5, 3, "x", True):
            assert (
                _errors(await box.post("outpaint", {"parent_task_id": up, "zoom_ratio": bad}), 400)
                == "zoom_ratio must be a number from 1 to 2"
            )
        done = await box.finish(await box.submit("pan", parent_task_id=up, direction="left"))
        assert done["task_type"] == "pan-left"
        assert (await box.image(done["image_urls"][0])).size == (768, 512)
        done = await box.finish(await box.submit("pan", parent_task_id=up, direction="up"))
        assert (await box.image(done["image_urls"][0])).size == (512, 768)
        assert (
            _errors(await box.post("pan", {"parent_task_id": up, "direction": "north"}), 400)
            == "direction must be up, down, left or right"
        )


async def test_describe_blend_seed_faceswap():
    async with sandbox() as box:
        grid, gdone = await box.grid(prompt="a lighthouse at dusk --seed 1234")
        url = gdone["image_urls"][0]
        described = await box.finish(await box.submit("describe", image_url=url))
        assert set(described) == {
            "task_id",
            "task_type",
            "status",
            "percentage",
            "image_url",
            "content",
        }
        assert described["task_type"] == "describe" and described["image_url"] == url
        assert len(described["content"]) == 4
        assert all("a lighthouse at dusk" in line for line in described["content"])
        assert described["content"][0].startswith("1️⃣ ")

        blend = await box.finish(
            await box.submit("blend", image_urls=gdone["image_urls"][:2], dimension="landscape")
        )
        assert blend["task_type"] == "blend"
        assert (await box.image(blend["image_urls"][0])).size == (512, 342)
        assert _errors(await box.post("blend", {"image_urls": [url]}), 400) == (
            "image_urls must be a list of 2 to 5 image URLs"
        )

        seed_task = await box.submit("seed", task_id=grid)
        box.state.clock.advance(4.5)
        assert await box.fetch(seed_task) == {
            "task_id": seed_task,
            "task_type": "seed",
            "status": "processing",
        }
        box.state.clock.advance(1.5)
        assert (await box.fetch(seed_task))["seed"] == "1234"

        swap = await box.finish(
            await box.submit(
                "faceswap", target_image_url=url, swap_image_url=gdone["image_urls"][1]
            )
        )
        assert swap["task_type"] == "faceswap"
        assert (await box.image(swap["image_url"])).size == (512, 512)
        msg = _errors(await box.post("faceswap", {"target_image_url": url}), 400)
        assert msg == "swap_image_url is required"
