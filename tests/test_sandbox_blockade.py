"""The Blockade Labs emulation of the sandbox, driven as a third-party client would: raw httpx,
``x-api-key`` or ``api_key``, the wire format of ``providers.md`` §3 and the seed page.

Most tests run in-process on a frozen clock (``speed=0``) and move it with
``state.clock.advance``; one test serves the app over real HTTP on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from _live_sandbox import LOOPBACK_TIMEOUT
from PIL import Image

from jupyter_imagine.sandbox import SandboxState, create_app
from jupyter_imagine.sandbox import _blockade as emu

pytestmark = pytest.mark.anyio

BASE = "http://sandbox.test"
API = "/blockade/api/v1"
KEY = "third-party-key"
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
#: One seed for most finished skyboxes: the renderer memoises, so they are drawn once.
SEED = 1234


class Box:
    """One in-process sandbox: an authorised ``client``, the ``state``, and helpers."""

    def __init__(self, client: httpx.AsyncClient, state: SandboxState) -> None:
        self.client = client
        self.state = state

    @property
    def blockade(self) -> emu.Blockade:
        return self.state.providers["blockade"]

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.get(API + path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return await self.client.post(API + path, json=body, **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        return await self.client.delete(API + path, **kw)

    async def skybox(self, prompt: str = "a lighthouse at dusk", **body: Any) -> dict[str, Any]:
        response = await self.post("/skybox", {"prompt": prompt, "skybox_style_id": 67, **body})
        assert response.status_code == 200, response.text
        return response.json()

    async def request(self, imagine_id: int) -> dict[str, Any]:
        response = await self.get(f"/imagine/requests/{imagine_id}")
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"request"}
        return response.json()["request"]

    async def complete(self, prompt: str = "a lighthouse at dusk", **body: Any) -> dict[str, Any]:
        body.setdefault("seed", SEED)
        created = await self.skybox(prompt, **body)
        self.state.clock.advance(emu.COMPLETE_AT)
        done = await self.request(created["id"])
        assert done["status"] == "complete", done
        return done

    async def image(self, url: str) -> Image.Image:
        response = await self.client.get(url)
        assert response.status_code == 200, response.text
        return Image.open(io.BytesIO(response.content))


@contextlib.asynccontextmanager
async def sandbox(speed: float = 0.0, key: str = KEY) -> AsyncIterator[Box]:
    app = create_app(speed=speed)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE, headers={"x-api-key": key}, timeout=30
    ) as client:
        yield Box(client, app.state.sandbox)
    await app.state.sandbox.aclose()


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return body["error"]


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _seam(image: Image.Image) -> tuple[float, float]:
    """Mean difference of the left and right edge columns, and of two opposite columns."""
    arr = np.asarray(image.convert("RGB"), dtype=float)
    w = arr.shape[1]
    return float(np.abs(arr[:, 0] - arr[:, -1]).mean()), float(
        np.abs(arr[:, 0] - arr[:, w // 2]).mean()
    )


# ----------------------------------------------------------------------------- auth
async def test_auth_by_header_query_and_body_field_and_the_401_shape():
    async with sandbox() as box:
        bare = httpx.AsyncClient(transport=box.client._transport, base_url=BASE)
        async with bare:
            assert (await bare.get(API + "/skybox/styles", params={"api_key": "k"})).status_code \
                == 200
            ok = await bare.post(API + "/skybox", json={"api_key": "k", "prompt": "a boat",
                                                        "skybox_style_id": 67})
            assert ok.status_code == 200, ok.text
            form = await bare.post(API + "/skybox", data={"api_key": "k", "prompt": "a boat",
                                                          "skybox_style_id": "67"})
            assert form.status_code == 200, form.text
            assert "required" in _error(await bare.get(API + "/skybox/styles"), 401)
            assert _error(await bare.get(API + "/skybox/styles",
                                         headers={"x-api-key": "invalid-key"}), 401) \
                == "Invalid API key"
            assert _error(await bare.get(API + "/imagine/myRequests",
                                         params={"api_key": "invalid-key"}), 401)
        box.state.accepted_keys = {"only-this"}
        _error(await box.get("/skybox/styles"), 401)
        assert (await box.get("/skybox/styles", headers={"x-api-key": "only-this"})).status_code \
            == 200


async def test_each_key_is_its_own_account():
    async with sandbox() as box:
        mine = await box.skybox()
        other = {"x-api-key": "someone-else"}
        assert "not found" in _error(await box.get(f"/imagine/requests/{mine['id']}",
                                                   headers=other), 404)
        listing = (await box.get("/imagine/myRequests", headers=other)).json()
        assert listing == {"data": [], "totalCount": 0, "has_more": False}
        _error(await box.delete(f"/imagine/requests/{mine['id']}", headers=other), 404)


# ----------------------------------------------------------------------------- rate limits
async def test_rate_limit_headers_always_and_429_with_retry_after_when_enforced():
    async with sandbox() as box:
        first = await box.get("/skybox/styles")
        second = await box.get("/skybox/export")
        for response in (first, second, await box.get("/imagine/requests/999")):
            assert all(name in response.headers for name in RATE_HEADERS)
        assert int(first.headers["x-ratelimit-limit"]) >= 600  # generous by default
        assert int(second.headers["x-ratelimit-remaining"]) == \
            int(first.headers["x-ratelimit-remaining"]) - 1
        box.blockade.enforce_limits = True
        box.blockade.enforced_limit = 3
        box.state.clock.advance(61)  # a fresh window
        answers = [await box.get("/skybox/export") for _ in range(4)]
        assert [r.status_code for r in answers] == [200, 200, 200, 429]
        assert [r.headers["x-ratelimit-remaining"] for r in answers] == ["2", "1", "0", "0"]
        assert _error(answers[-1], 429) == "Too Many Attempts."
        assert int(answers[-1].headers["retry-after"]) >= 1
        assert answers[-1].headers["x-ratelimit-limit"] == "3"
        other = await box.get("/skybox/export", headers={"x-api-key": "other"})
        assert other.status_code == 200  # limits are per key
        box.state.clock.advance(60)
        assert (await box.get("/skybox/export")).status_code == 200
        box.blockade.enforce_limits = False
        for _ in range(5):
            assert (await box.get("/skybox/export")).status_code == 200


# ----------------------------------------------------------------------------- catalogue
async def test_styles_families_generators_and_export_types():
    async with sandbox() as box:
        styles = (await box.get("/skybox/styles")).json()
        assert len(styles) >= 5 and len({s["id"] for s in styles}) == len(styles)
        for style in styles:
            assert {"id", "name", "max-char", "negative-text-max-char", "image", "image_jpg",
                    "model", "model_version", "sort_order", "premium",
                    "skybox_style_families_id"} <= set(style)
            assert style["model"] == f"Model {style['model_version']}"
        assert styles[0]["image"].startswith(BASE + "/blockade/cdn/")
        preview = await box.image(styles[0]["image"])
        assert preview.format == "WEBP" and preview.width == 2 * preview.height
        m4 = (await box.get("/skybox/styles", params={"model_version": 4})).json()
        assert m4 and {s["model_version"] for s in m4} == {"4"}
        _error(await box.get("/skybox/styles", params={"model_version": "9"}), 400)

        families = (await box.get("/skybox/families")).json()
        assert {f["type"] for f in families} == {"family", "style"}
        grouped = [s["id"] for f in families for s in f["items"]]
        singles = [f["id"] for f in families if f["type"] == "style"]
        assert sorted(grouped + singles) == sorted(s["id"] for s in styles)

        generators = (await box.get("/generators")).json()
        stable = next(g for g in generators if g["generator"] == "stable-skybox")
        assert stable["params"]["prompt"]["required"] is True
        assert stable["params"]["prompt"]["max_value"] == 600
        assert stable["params"]["seed"]["type"] == "int"

        types = (await box.get("/skybox/export")).json()
        assert [t["id"] for t in types] == list(range(1, 10))
        assert {t["key"] for t in types} >= {"equirectangular-jpg", "equirectangular-png",
                                            "cube-map-png", "hdri-hdr", "hdri-exr",
                                            "depth-map-png", "video-landscape-mp4"}
        assert all(set(t) == {"id", "name", "key", "premium_feature"} for t in types)


# ----------------------------------------------------------------------------- POST /skybox
async def test_skybox_answer_is_the_unwrapped_generation_object():
    async with sandbox() as box:
        obj = await box.skybox("a lighthouse at dusk", negative_text="fog")
        assert obj["status"] == "pending" and obj["queue_position"] == 2
        assert obj["type"] == "skybox" and obj["title"] == f"World #{obj['id']}"
        assert obj["skybox_style_id"] == 67 and obj["skybox_style_name"] == "M3 Photoreal"
        assert obj["file_url"] == obj["thumb_url"] == obj["depth_map_url"] == ""
        assert obj["negative_text"] == "fog" and 1 <= obj["seed"] <= 2147483647
        assert len(obj["obfuscated_id"]) == 32
        assert obj["pusher_channel"] == f"status_update_{obj['obfuscated_id']}"
        assert obj["pusher_event"] == "status_update"
        assert obj["error_message"] is None and obj["created_at"].endswith("+00:00")
        seeded = await box.skybox("a lighthouse at dusk", seed=42, enhance_prompt=True)
        assert seeded["seed"] == 42 and seeded["prompt"].startswith("a lighthouse at dusk, ")


@pytest.mark.parametrize(
    "body, words",
    [
        ({"skybox_style_id": 67}, "prompt field is required"),
        ({"prompt": "x"}, "skybox style id field is required"),
        ({"prompt": "x", "skybox_style_id": 9999}, "style id is invalid"),
        ({"prompt": "x" * 2001, "skybox_style_id": 67}, "greater than 2000 characters"),
        ({"prompt": "x" * 801, "skybox_style_id": 200}, "greater than 800 characters"),
        ({"prompt": "x", "negative_text": "n" * 401, "skybox_style_id": 69},
         "greater than 400 characters"),
        ({"prompt": "x", "skybox_style_id": 67, "seed": 2147483648}, "between 0 and"),
        ({"prompt": "x", "skybox_style_id": 67, "seed": "ten"}, "must be an integer"),
        ({"prompt": "x", "skybox_style_id": 67, "enhance_prompt": "maybe"}, "true or false"),
        ({"prompt": "x", "skybox_style_id": 67, "webhook_url": "ftp://x"}, "valid URL"),
        ({"prompt": "x", "skybox_style_id": 67, "control_model": "remix"},
         "control image field is required"),
        ({"prompt": "x", "skybox_style_id": 67, "init_image": "%%%"}, "init image must be"),
        ({"prompt": "a gore fest", "skybox_style_id": 67}, "inappropriate content: 'gore'"),
    ],
)
async def test_skybox_validation_errors(body, words):
    async with sandbox() as box:
        assert words in _error(await box.post("/skybox", body), 400)
        assert not box.blockade.imagines()


async def test_malformed_bodies_and_unknown_paths():
    async with sandbox() as box:
        assert "JSON" in _error(await box.client.post(API + "/skybox", content=b"{nope",
                                headers={"content-type": "application/json"}), 400)
        _error(await box.client.post(API + "/skybox", json=[1, 2]), 400)
        _error(await box.get("/nothing/here"), 404)
        _error(await box.client.put(API + "/skybox"), 405)
        _error(await box.get("/imagine/requests/abc"), 404)


async def test_init_and_control_images_as_upload_base64_and_url():
    async with sandbox() as box:
        init = Image.new("RGB", (512, 256), (200, 30, 30))
        sketch = Image.new("L", (1024, 512), 0)
        files = {"init_image": ("init.png", _png(init), "image/png")}
        data = {"prompt": "a lighthouse at dusk", "skybox_style_id": "67", "init_strength": "0.9",
                "seed": str(SEED)}
        upload = await box.client.post(API + "/skybox", data=data, files=files)
        assert upload.status_code == 200, upload.text
        b64 = base64.b64encode(_png(sketch)).decode()
        sketched = await box.skybox("a valley", control_image="data:image/png;base64," + b64,
                                    control_model="sketch")
        assert sketched["status"] == "pending"
        small = base64.b64encode(_png(Image.new("L", (64, 32)))).decode()
        assert "1024x512" in _error(await box.post("/skybox", {
            "prompt": "x", "skybox_style_id": 67, "control_image": small,
            "control_model": "scribble"}), 400)
        assert "between 0 and 0.97" in _error(await box.post("/skybox", {
            "prompt": "x", "skybox_style_id": 67, "init_image": b64, "init_strength": 1.5}), 400)
        # an init image the strength pulls in shows in the result
        box.state.clock.advance(emu.COMPLETE_AT)
        done = await box.request(upload.json()["id"])
        pano = (await box.image(done["file_url"])).convert("RGB")
        r, g, b = np.asarray(pano, dtype=float).reshape(-1, 3).mean(axis=0)
        assert r > g + 60 and r > b + 60
        # our own file URL as an init image is read directly
        again = await box.skybox("a river", init_image=done["thumb_url"])
        assert again["status"] == "pending"


# ----------------------------------------------------------------------------- lifecycle
async def test_lifecycle_statuses_queue_positions_and_timestamps():
    async with sandbox() as box:
        obj = await box.skybox()
        seen = []
        for t in (0, 1.9, 2.0, 3.9, 4.0, 5.9, 6.0, 29.9, 30.0, 300):
            box.state.clock.advance(t - box.state.clock.now())
            now = await box.request(obj["id"])
            seen.append((now["status"], now["queue_position"]))
            if now["status"] != "complete":
                assert now["file_url"] == "" and now["completed_at"] is None
        assert seen == [
            ("pending", 2), ("pending", 2), ("pending", 1), ("pending", 1), ("dispatched", 0),
            ("dispatched", 0), ("processing", 0), ("processing", 0), ("complete", 0),
            ("complete", 0),
        ]
        assert now["dispatched_at"] < now["processing_at"] < now["completed_at"]
        assert now["updated_at"] == now["completed_at"]
        by_hash = (await box.get(f"/imagine/requests/obfuscated-id/{now['obfuscated_id']}"))
        assert by_hash.json() == {"request": now}
        _error(await box.get("/imagine/requests/obfuscated-id/" + "0" * 32), 404)
        _error(await box.get("/imagine/requests/424242"), 404)


async def test_magic_words_fail_and_hang():
    async with sandbox() as box:
        failing = await box.skybox("a castle sandbox:fail")
        hanging = await box.skybox("a castle sandbox:hang")
        box.state.clock.advance(1000)
        failed = await box.request(failing["id"])
        assert failed["status"] == "error" and failed["error_message"] == emu.FAIL_MESSAGE
        assert failed["file_url"] == ""
        assert (await box.request(hanging["id"]))["status"] == "processing"


async def test_files_are_public_2to1_seamless_and_404_until_complete():
    async with sandbox() as box:
        obj = await box.skybox("a lighthouse at dusk", seed=SEED)
        listed = box.blockade.files(box.blockade.get(obj["id"]), BASE + "/blockade")
        bare = httpx.AsyncClient(transport=box.client._transport)
        async with bare:
            assert (await bare.get(listed["file_url"])).status_code == 404
            box.state.clock.advance(emu.COMPLETE_AT)
            done = await box.request(obj["id"])
            assert done["file_url"] == listed["file_url"]
            response = await bare.get(done["file_url"])  # no key: files are public
            assert response.status_code == 200 and response.headers["content-type"] == \
                "image/jpeg"
        pano = Image.open(io.BytesIO(response.content))
        assert pano.size == (2048, 1024) and pano.format == "JPEG"
        seam, opposite = _seam(pano)
        assert seam < 4 and opposite > 3 * seam
        thumb = await box.image(done["thumb_url"])
        assert thumb.size == (672, 336)
        depth = await box.image(done["depth_map_url"])
        assert depth.size == (1024, 512) and depth.mode == "L"
        top, bottom = np.asarray(depth)[:40].mean(), np.asarray(depth)[-40:].mean()
        assert bottom > top + 100  # the ground underfoot is near (white), the sky far (black)
        hq = await box.complete("a lighthouse at dusk", return_depth_hq=True)
        assert hq["seed"] == SEED
        assert (await box.image(hq["depth_map_url"])).size == (2048, 1024)


# ----------------------------------------------------------------------------- listings
async def test_my_requests_paginates_by_page_number():
    async with sandbox() as box:
        ids = [(await box.skybox(f"tower number {i}"))["id"] for i in range(45)]
        pages = []
        for page in range(5):
            body = (await box.get("/imagine/myRequests",
                                  params={"limit": 10, "offset": page})).json()
            assert set(body) == {"data", "totalCount", "has_more"}
            assert body["totalCount"] == 45
            assert body["has_more"] is (page < 4)
            pages.append([item["id"] for item in body["data"]])
        assert [len(p) for p in pages] == [10, 10, 10, 10, 5]
        assert [i for page in pages for i in page] == sorted(ids, reverse=True)  # DESC default
        past = (await box.get("/imagine/myRequests", params={"limit": 10, "offset": 5})).json()
        assert past == {"data": [], "totalCount": 45, "has_more": False}
        asc = (await box.get("/imagine/myRequests", params={"limit": 10, "order": "asc"})).json()
        assert [i["id"] for i in asc["data"]] == sorted(ids)[:10]
        default = (await box.get("/imagine/myRequests")).json()
        assert len(default["data"]) == 18 and default["has_more"] is True
        one = (await box.get("/imagine/myRequests", params={"imagine_id": ids[7]})).json()
        assert [i["id"] for i in one["data"]] == [ids[7]] and one["totalCount"] == 1
        found = (await box.get("/imagine/myRequests", params={"query": "NUMBER 4"})).json()
        assert {i["prompt"] for i in found["data"]} == {"tower number 4"} | {
            f"tower number {n}" for n in range(40, 45)
        }
        titled = (await box.get("/imagine/myRequests", params={"query": f"world #{ids[3]}"}))
        assert [i["id"] for i in titled.json()["data"]] == [ids[3]]
        styled = (await box.get("/imagine/myRequests", params={"skybox_style_id": 68})).json()
        assert styled["totalCount"] == 0
        for params in ({"limit": 0}, {"limit": 101}, {"offset": -1}, {"order": "up"},
                       {"status": "done"}, {"limit": "ten"}):
            _error(await box.get("/imagine/myRequests", params=params), 400)


async def test_cancel_cancel_all_pending_and_delete_show_in_listings():
    async with sandbox() as box:
        done = await box.complete()
        running = await box.skybox("a running one")
        box.state.clock.advance(10)  # running is processing now
        pending = [await box.skybox(f"pending {i}") for i in range(3)]
        assert (await box.delete(f"/imagine/requests/{running['id']}")).json() == {"success": True}
        assert (await box.request(running["id"]))["status"] == "abort"
        assert (await box.delete(f"/imagine/requests/{running['id']}")).status_code == 200
        assert "already complete" in _error(await box.delete(f"/imagine/requests/{done['id']}"),
                                            422)
        assert (await box.delete("/imagine/requests/pending")).json() == {"success": True}
        box.state.clock.advance(100)
        statuses = {(await box.request(p["id"]))["status"] for p in pending}
        assert statuses == {"abort"}
        listing = (await box.get("/imagine/myRequests", params={"status": "abort"})).json()
        assert listing["totalCount"] == 4
        complete = (await box.get("/imagine/myRequests", params={"status": "complete"})).json()
        assert [i["id"] for i in complete["data"]] == [done["id"]]

        deleted = await box.delete(f"/imagine/deleteImagine/{done['id']}")
        assert deleted.json() == {"success": "Item deleted successfully", "id": str(done["id"])}
        _error(await box.get(f"/imagine/requests/{done['id']}"), 404)
        _error(await box.delete(f"/imagine/deleteImagine/{done['id']}"), 404)
        everything = (await box.get("/imagine/myRequests")).json()
        assert done["id"] not in [i["id"] for i in everything["data"]]
        assert everything["totalCount"] == 4
        assert (await box.client.get(done["file_url"])).status_code == 404


# ----------------------------------------------------------------------------- legacy API
async def test_legacy_imagine_requests_follow_the_generator_params():
    async with sandbox() as box:
        response = await box.client.post(API + "/imagine/requests", data={
            "generator": "stable-skybox", "prompt": "forest in autumn", "seed": "1432443",
            "negative_text": "blurry", "animation_mode": "skybox"})
        assert response.status_code == 200, response.text
        obj = response.json()["request"]
        assert obj["type"] == "imaginarium" and obj["generator"] == "stable-skybox"
        assert obj["generator_data"] == {"prompt": "forest in autumn", "negative_text": "blurry",
                                         "seed": 1432443, "animation_mode": "skybox"}
        assert obj["title"] == f"Imagination #{obj['id']}" and obj["seed"] == 1432443
        defaults = (await box.post("/imagine/requests", {"generator": "stable-skybox",
                                                          "prompt": "a beach"})).json()
        assert defaults["request"]["generator_data"]["animation_mode"] == "skybox"
        listed = (await box.get("/imagine/myRequests",
                                params={"generator": "stable-skybox"})).json()
        assert listed["totalCount"] == 2
        for body, words in [
            ({"prompt": "x"}, "generator field is required"),
            ({"generator": "dall-e", "prompt": "x"}, "generator is invalid"),
            ({"generator": "stable-skybox"}, "prompt field is required"),
            ({"generator": "stable-skybox", "prompt": "x" * 601}, "greater than 600"),
            ({"generator": "stable-skybox", "prompt": "x", "negative_text": "n" * 401},
             "greater than 400"),
            ({"generator": "stable-skybox", "prompt": "x", "seed": -2}, "between -1 and"),
            ({"generator": "stable-skybox", "prompt": "x", "animation_mode": "video"},
             "animation mode is invalid"),
        ]:
            assert words in _error(await box.post("/imagine/requests", body), 400)


# ----------------------------------------------------------------------------- remix
async def test_remix_keeps_the_seed_and_needs_a_complete_own_skybox():
    async with sandbox() as box:
        parent = await box.skybox("a lighthouse at dusk")
        assert "not complete" in _error(await box.post("/skybox", {
            "prompt": "x", "skybox_style_id": 67, "remix_imagine_id": parent["id"]}), 422)
        _error(await box.post("/skybox", {"prompt": "x", "skybox_style_id": 67,
                                          "remix_imagine_id": 999999}), 404)
        box.state.clock.advance(emu.COMPLETE_AT)
        remix = await box.skybox("a lighthouse at night", remix_imagine_id=parent["id"])
        assert remix["remix_imagine_id"] == parent["id"]
        assert remix["remix_obfuscated_id"] == parent["obfuscated_id"]
        assert remix["seed"] == parent["seed"]
        by_hash = await box.skybox("a lighthouse in snow",
                                   remix_obfuscated_id=parent["obfuscated_id"])
        assert by_hash["remix_imagine_id"] == parent["id"]


# ----------------------------------------------------------------------------- exports
async def test_exports_jpg_at_once_png_and_cube_map_through_the_lifecycle():
    async with sandbox() as box:
        sky = await box.complete()
        pending = await box.skybox("not yet")
        assert "not complete" in _error(await box.post("/skybox/export", {
            "skybox_id": pending["obfuscated_id"], "type_id": 1}), 422)
        _error(await box.post("/skybox/export", {"skybox_id": "f" * 32, "type_id": 1}), 404)
        _error(await box.post("/skybox/export", {"skybox_id": sky["obfuscated_id"],
                                                 "type_id": 10}), 400)
        _error(await box.post("/skybox/export", {"type_id": 1}), 400)

        jpg = (await box.post("/skybox/export", {"skybox_id": sky["obfuscated_id"],
                                                 "type_id": 1})).json()
        assert jpg["status"] == "complete" and jpg["type"] == "equirectangular-jpg"
        assert jpg["skybox_obfuscated_id"] == sky["obfuscated_id"] and len(jpg["id"]) == 32
        assert jpg["pusher_channel"] == f"export_status_update_{jpg['id']}"
        assert (await box.client.get(jpg["file_url"])).content == \
            (await box.client.get(sky["file_url"])).content

        png = (await box.post("/skybox/export", {"skybox_id": sky["obfuscated_id"],
                                                 "type_id": 2})).json()
        cube = (await box.post("/skybox/export", {"skybox_id": sky["id"], "type_id": 3})).json()
        assert png["status"] == cube["status"] == "pending" and png["file_url"] == ""
        box.state.clock.advance(2)
        assert (await box.get(f"/skybox/export/{cube['id']}")).json()["status"] == "processing"
        box.state.clock.advance(10)
        png = (await box.get(f"/skybox/export/{png['id']}")).json()
        cube = (await box.get(f"/skybox/export/{cube['id']}")).json()
        assert png["status"] == cube["status"] == "complete"
        pano = await box.image(png["file_url"])
        assert pano.format == "PNG" and pano.size == (2048, 1024)
        strip = (await box.image(cube["file_url"])).convert("RGB")
        assert strip.size == (6 * 512, 512)
        faces = [np.asarray(strip.crop((i * 512, 0, (i + 1) * 512, 512)), dtype=float)
                 for i in range(6)]
        arr = np.asarray(pano.convert("RGB"), dtype=float)

        def near(a: np.ndarray, b: np.ndarray) -> bool:
            return float(np.abs(a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))).max()) < 10

        assert near(faces[2][250:262, 250:262], arr[:2])  # +Y: the zenith
        assert near(faces[3][250:262, 250:262], arr[-2:])  # −Y: the nadir
        # +Z at 20° up is the panorama's centre column at 20°; +X looks a quarter turn on
        assert near(faces[4][160:165, 254:259], arr[396:401, 1022:1027])
        assert near(faces[0][160:165, 254:259], arr[396:401, 1534:1539])
        assert not near(faces[0][160:165, 254:259], faces[1][160:165, 254:259])
        _error(await box.get("/skybox/export/" + "0" * 32), 404)


async def test_depth_hdri_video_exports_and_cancel():
    async with sandbox() as box:
        sky = await box.complete()
        depth = (await box.post("/skybox/export", {"skybox_id": sky["obfuscated_id"],
                                                   "type_id": 6})).json()
        assert depth["status"] == "complete"
        image = await box.image(depth["file_url"])
        assert image.size == (2048, 1024) and image.mode == "L"
        hdri = (await box.post("/skybox/export", {"skybox_id": sky["obfuscated_id"],
                                                  "type_id": 4})).json()
        _error(await box.post("/skybox/export", {"skybox_id": sky["obfuscated_id"],
                                                 "type_id": 7}), 403)
        box.blockade.premium = True
        video = (await box.post("/skybox/export", {"skybox_id": sky["obfuscated_id"],
                                                   "type_id": 9})).json()
        doomed = (await box.post("/skybox/export", {"skybox_id": sky["obfuscated_id"],
                                                    "type_id": 5})).json()
        cancelled = await box.delete(f"/skybox/export/{doomed['id']}")
        assert cancelled.json() == {"success": True}
        box.state.clock.advance(30)
        assert (await box.get(f"/skybox/export/{doomed['id']}")).json()["status"] == "abort"
        hdri = (await box.get(f"/skybox/export/{hdri['id']}")).json()
        stand_in = await box.image(hdri["file_url"])
        assert stand_in.format == "PNG" and stand_in.size == (2048, 1024)
        assert "HDR" in stand_in.text["stand-in"]
        video = (await box.get(f"/skybox/export/{video['id']}")).json()
        gif = await box.image(video["file_url"])
        assert gif.format == "GIF" and gif.size == (480, 480) and gif.n_frames > 10
        assert "already complete" in _error(await box.delete(f"/skybox/export/{video['id']}"),
                                            422)


async def test_premium_exports_are_refused_with_403():
    async with sandbox() as box:
        sky = await box.complete()
        message = _error(await box.post("/skybox/export", {"skybox_id": sky["obfuscated_id"],
                                                           "type_id": 8}), 403)
        assert message == "Account does not have access to this method"


# ----------------------------------------------------------------------------- webhooks, faults
async def _hooks(box: Box, count: int) -> list[dict[str, Any]]:
    """The webhook bodies once ``count`` have arrived (the watcher runs in the background)."""
    for _ in range(2000):
        if len(box.state.webhooks) >= count:
            break
        await asyncio.sleep(0.005)
    return [w["body"] for w in box.state.webhooks]


async def test_webhook_on_each_status_change():
    async with sandbox() as box:  # frozen clock: each status is reached only when we move it
        hook = BASE + "/_sandbox/webhook-sink/blockade"
        obj = await box.skybox("a lighthouse at dusk", seed=SEED, webhook_url=hook)
        assert [b["status"] for b in await _hooks(box, 1)] == ["pending"]
        box.state.clock.advance(2)  # the queue position moves: not a status change
        await asyncio.sleep(0.3)
        for step, count in ((2, 2), (2, 3), (24, 4)):
            box.state.clock.advance(step)
            bodies = await _hooks(box, count)
        assert [b["status"] for b in bodies] == ["pending", "dispatched", "processing", "complete"]
        assert {b["id"] for b in bodies} == {obj["id"]}
        assert bodies[-1]["file_url"].endswith(".jpg?ver=1")
        assert box.state.webhooks[-1]["path"] == "/_sandbox/webhook-sink/blockade"

        box.state.webhooks.clear()
        export = (await box.post("/skybox/export", {"skybox_id": obj["obfuscated_id"],
                                                    "type_id": 2, "webhook_url": hook})).json()
        await _hooks(box, 1)
        box.state.clock.advance(1)
        await _hooks(box, 2)
        box.state.clock.advance(6)
        bodies = await _hooks(box, 3)
        assert [b["status"] for b in bodies] == ["pending", "processing", "complete"]
        assert {b["id"] for b in bodies} == {export["id"]} and bodies[-1]["file_url"]


async def test_injected_faults_use_the_error_shape():
    async with sandbox() as box:
        box.state.faults.add("/blockade/api/v1/skybox", status=503, method="POST")
        _error(await box.post("/skybox", {"prompt": "x", "skybox_style_id": 67}), 503)
        box.state.faults.add("*/imagine/requests/*", status=429)
        limited = await box.get("/imagine/requests/1")
        assert _error(limited, 429) and limited.headers["retry-after"] == "1"


async def test_the_same_requests_draw_the_same_pictures():
    async def run() -> tuple[list[int], str]:
        async with sandbox() as box:
            first = await box.skybox("a pine forest at dawn")
            done = await box.complete("a pine forest at dawn")
            return [first["seed"], done["seed"]], done["obfuscated_id"]

    assert await run() == await run()  # seeds (drawn for seed 0) and ids repeat
    draw = emu.art.cached_panorama.__wrapped__  # the renderer itself, without its memo
    a = np.asarray(draw("a pine forest at dawn", 77, 256, 128, "").image)
    b = np.asarray(draw("a pine forest at dawn", 77, 256, 128, "").image)
    c = np.asarray(draw("a pine forest at dawn", 78, 256, 128, "").image)
    assert (a == b).all() and np.abs(a.astype(int) - c).mean() > 5


# ----------------------------------------------------------------------------- real HTTP
async def test_over_loopback_with_api_key_query_param(live_sandbox):
    base = live_sandbox.url + API
    async with httpx.AsyncClient(timeout=LOOPBACK_TIMEOUT) as client:
        key = {"api_key": "loopback-key"}
        styles = await client.get(base + "/skybox/styles", params=key)
        assert styles.status_code == 200 and "x-ratelimit-limit" in styles.headers
        created = await client.post(base + "/skybox", params=key, json={
            "prompt": "a lighthouse at dusk", "skybox_style_id": 67, "seed": SEED})
        assert created.status_code == 200, created.text
        live_sandbox.state.clock.advance(emu.COMPLETE_AT)
        done = (await client.get(f"{base}/imagine/requests/{created.json()['id']}",
                                 headers={"x-api-key": "loopback-key"})).json()["request"]
        assert done["status"] == "complete" and done["file_url"].startswith(live_sandbox.url)
        thumb = await client.get(done["thumb_url"])
        assert Image.open(io.BytesIO(thumb.content)).size == (672, 336)
        listing = (await client.get(base + "/imagine/myRequests", params=key)).json()
        assert listing["totalCount"] == 1
        assert (await client.get(base + "/skybox/styles")).status_code == 401
