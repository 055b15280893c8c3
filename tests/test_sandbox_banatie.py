"""The Banatie emulation of the sandbox, driven over its wire format with raw httpx.

Most tests run in-process (``httpx.ASGITransport``) on a frozen clock (``speed=0``) and jump it
with ``state.clock.advance``; the last ones serve the whole app over real HTTP on loopback.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from jupyter_imagine.sandbox import SandboxState, create_app

pytestmark = pytest.mark.anyio

BASE = "http://sandbox.test"
API = "/banatie/api/v1"
KEY = {"X-API-Key": "bnt_test-key"}
CDN = "/banatie-cdn/sandbox/notebook"
GEN_KEYS = {
    "id", "projectId", "prompt", "originalPrompt", "autoEnhance", "aspectRatio", "status",
    "errorMessage", "outputImageId", "outputImage", "flowId", "referencedImages",
    "referenceImages", "processingTimeMs", "meta", "createdAt", "updatedAt", "deletedAt",
}
IMAGE_KEYS = {
    "id", "projectId", "flowId", "generationId", "storageKey", "storageUrl", "mimeType",
    "fileSize", "width", "height", "source", "alias", "focalPoint", "meta", "createdAt",
    "updatedAt",
}


class Box:
    """One in-process sandbox: ``client`` (with a project key), ``state``, ``emu`` and helpers."""

    def __init__(self, client: httpx.AsyncClient, state: SandboxState) -> None:
        self.client = client
        self.state = state
        self.emu = state.providers["banatie"]

    async def call(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        response = await self.client.request(method, API + path, **kw)
        assert response.status_code == status, response.text
        body = response.json()
        assert body["success"] is True and set(body) <= {"success", "data", "pagination"}
        return body

    async def create(self, status: int = 201, **body: Any) -> dict[str, Any]:
        body.setdefault("prompt", "a lighthouse at dusk")
        return (await self.call("POST", "/generations", status, json=body))["data"]

    async def error(self, method: str, path: str, status: int, code: str, **kw: Any) -> str:
        response = await self.client.request(method, path if path.startswith("/banatie")
                                             else API + path, **kw)
        return _error(response, status, code)

    async def upload(self, image: Image.Image | None = None, status: int = 201,
                     **fields: str) -> dict[str, Any]:
        files = {"file": ("pic.png", _png(image or _solid((200, 40, 40))), "image/png")}
        return (await self.call("POST", "/images/upload", status, files=files,
                                data=fields))["data"]

    async def picture(self, url: str) -> Image.Image:
        response = await self.client.get(url)
        assert response.status_code == 200, response.text
        return Image.open(io.BytesIO(response.content)).convert("RGB")


@contextlib.asynccontextmanager
async def sandbox(speed: float = 0.0) -> AsyncIterator[Box]:
    app = create_app(speed=speed)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE, headers=KEY, timeout=30
    ) as client:
        yield Box(client, app.state.sandbox)
    await app.state.sandbox.aclose()


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and set(body) == {"success", "error"}
    assert set(body["error"]) == {"message", "code"}
    assert body["error"]["code"] == code, body
    return body["error"]["message"]


def _solid(rgb: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> Image.Image:
    return Image.new("RGB", size, rgb)


def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def _arr(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize((128, 128)), dtype=np.float64)


def _diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(_arr(a) - _arr(b)).mean())


# ----------------------------------------------------------------------------- auth, public
async def test_auth_rules_and_public_endpoints():
    async with sandbox() as box:
        bare = httpx.AsyncClient(transport=box.client._transport, base_url=BASE)
        async with bare:
            r = await bare.post(API + "/generations", json={"prompt": "x"})
            assert "Missing API key" in _error(r, 401, "UNAUTHORIZED")
            assert "x-ratelimit-limit" not in r.headers
            health = (await bare.get("/banatie/health")).json()
            assert health["status"] == "healthy"
            assert {"timestamp", "uptime", "version"} <= set(health)
            info = (await bare.get("/banatie/api/info")).json()
            assert info["name"] == "Banatie API" and "keyInfo" not in info
        for bad in ("invalid-key", "   "):
            r = await box.client.get(API + "/generations", headers={"X-API-Key": bad})
            assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
        info = (await box.client.get("/banatie/api/info")).json()
        assert info["keyInfo"]["organizationSlug"] == "sandbox"
        assert info["keyInfo"]["projectSlug"] == "notebook"
        box.state.accepted_keys = {"only-this"}
        assert (await box.client.get(API + "/flows")).status_code == 401
        r = await box.client.get(API + "/flows", headers={"X-API-Key": "only-this"})
        assert r.status_code == 200
        await box.error("GET", "/no/such/route", 404, "NOT_FOUND",
                        headers={"X-API-Key": "only-this"})


async def test_bootstrap_admin_keys_and_revocation():
    async with sandbox() as box:
        bare = httpx.AsyncClient(transport=box.client._transport, base_url=BASE)
        async with bare:
            first = await bare.post("/banatie/api/bootstrap/initial-key")
            assert first.status_code == 201, first.text
            master = first.json()["apiKey"]
            assert master.startswith("bnt_") and len(master) == 4 + 64
            assert first.json()["type"] == "master" and first.json()["expiresAt"] is None
            again = await bare.post("/banatie/api/bootstrap/initial-key")
            _error(again, 403, "FORBIDDEN")
        admin = {"X-API-Key": master}
        await box.error("POST", "/banatie/api/admin/keys", 403, "FORBIDDEN",
                        json={"type": "project", "projectId": "p"})  # a project key
        await box.error("POST", "/banatie/api/admin/keys", 400, "VALIDATION_ERROR",
                        json={"type": "project"}, headers=admin)
        made = await box.client.post("/banatie/api/admin/keys", headers=admin, json={
            "type": "project", "projectId": "p1", "organizationSlug": "acme",
            "projectSlug": "site", "name": "ci", "expiresInDays": 1})
        assert made.status_code == 201, made.text
        project_key = {"X-API-Key": made.json()["apiKey"]}
        listed = (await box.client.get("/banatie/api/admin/keys", headers=admin)).json()["keys"]
        assert {k["type"] for k in listed} == {"master", "project"}
        assert all("apiKey" not in k and k["keyPrefix"].startswith("bnt_") for k in listed)
        info = (await box.client.get("/banatie/api/info", headers=project_key)).json()
        assert info["keyInfo"]["projectSlug"] == "site"
        r = await box.client.get(API + "/flows", headers=project_key)
        assert r.status_code == 200 and "x-ratelimit-limit" in r.headers
        master_call = await box.client.get(API + "/flows", headers=admin)
        assert master_call.status_code == 200 and "x-ratelimit-limit" not in master_call.headers
        box.state.clock.advance(86400 + 1)
        r = await box.client.get(API + "/flows", headers=project_key)
        assert "expired" in _error(r, 401, "UNAUTHORIZED")
        key_id = made.json()["id"]
        gone = await box.client.delete(f"/banatie/api/admin/keys/{key_id}", headers=admin)
        assert gone.status_code == 200
        r = await box.client.get(API + "/flows", headers=project_key)
        assert "revoked" in _error(r, 401, "UNAUTHORIZED")
        await box.error("DELETE", "/banatie/api/admin/keys/nope", 404, "KEY_NOT_FOUND",
                        headers=admin)


# ----------------------------------------------------------------------------- generations
async def test_create_answers_success_at_once_with_the_documented_object():
    async with sandbox() as box:
        gen = await box.create(prompt="a serene mountain landscape at sunset", aspectRatio="16:9",
                               meta={"tags": ["demo"]})
        assert set(gen) == GEN_KEYS
        assert gen["status"] == "success" and gen["aspectRatio"] == "16:9"
        assert gen["originalPrompt"] == "a serene mountain landscape at sunset"
        assert gen["prompt"].startswith(gen["originalPrompt"] + ", ")  # enhanced
        assert gen["autoEnhance"] is True and gen["meta"] == {"tags": ["demo"]}
        out = gen["outputImage"]
        assert gen["outputImageId"] == out["id"] and (out["width"], out["height"]) == (1792, 1008)
        assert out["storageUrl"] == f"{BASE}{CDN}/img/{out['id']}"
        assert gen["createdAt"].endswith("Z") and gen["processingTimeMs"] > 0
        raw = await box.client.get(out["storageUrl"])
        assert raw.status_code == 200 and raw.headers["content-type"] == "image/png"
        assert raw.headers["x-image-id"] == out["id"]
        assert raw.headers["cache-control"] == "public, max-age=31536000"
        image = (await box.call("GET", f"/images/{out['id']}"))["data"]
        assert set(image) == IMAGE_KEYS and image["source"] == "generated"
        assert image["fileSize"] == len(raw.content) and image["generationId"] == gen["id"]
        plain = await box.create(prompt="a boat", autoEnhance=False)
        assert plain["prompt"] == "a boat" and plain["originalPrompt"] is None


@pytest.mark.parametrize("ratio, size", [
    ("1:1", (1024, 1024)), ("16:9", (1792, 1008)), ("9:16", (1008, 1792)),
    ("3:2", (1536, 1024)), ("21:9", (2016, 864)), ("4:3", (1536, 1152)), ("3:4", (1152, 1536)),
])
async def test_pixel_sizes_per_aspect_ratio(ratio, size):
    async with sandbox() as box:
        gen = await box.create(aspectRatio=ratio)
        assert (gen["outputImage"]["width"], gen["outputImage"]["height"]) == size
        if ratio in ("1:1", "21:9"):  # drawing every size is slow; two prove the bytes match
            assert (await box.picture(gen["outputImage"]["storageUrl"])).size == size


@pytest.mark.parametrize("prompt, expected", [
    ("a calm lake", ["pending", "processing", "success"]),
    ("a calm lake sandbox:fail", ["pending", "processing", "failed"]),
])
async def test_pending_lifecycle_on_the_simulated_clock(prompt, expected):
    async with sandbox() as box:
        box.emu.synchronous = False
        gen = await box.create(prompt=prompt)
        seen = [gen["status"]]
        assert gen["outputImageId"] is None and gen["outputImage"] is None
        for step in (1.5, 4.0):
            box.state.clock.advance(step)
            seen.append((await box.call("GET", f"/generations/{gen['id']}"))["data"]["status"])
        assert seen == expected
        final = (await box.call("GET", f"/generations/{gen['id']}"))["data"]
        if expected[-1] == "success":
            assert final["outputImage"]["id"] and final["errorMessage"] is None
        else:
            assert final["outputImage"] is None and "sandbox:fail" in final["errorMessage"]
        hang = await box.create(prompt="sandbox:hang forever")
        box.state.clock.advance(1000)
        assert (await box.call("GET", f"/generations/{hang['id']}"))["data"]["status"] == \
            "processing"


async def test_a_run_ending_after_the_requests_settle_still_answers_its_image(monkeypatch):
    """The clock runs on between a request's ``settle()`` and its answer (at speed 1000 one real
    millisecond is a simulated second): a run that ends in between is settled by the view itself,
    never answered ``success`` without ``outputImage``."""
    async with sandbox() as box:
        box.emu.synchronous = False
        gen = await box.create()
        box.state.clock.advance(10)
        monkeypatch.setattr(box.emu, "settle", lambda: None)  # as if settled a moment earlier
        polled = (await box.call("GET", f"/generations/{gen['id']}"))["data"]
        assert polled["status"] == "success"
        assert polled["outputImage"]["id"] == polled["outputImageId"]
        picture = await box.picture(polled["outputImage"]["storageUrl"])
        assert picture.size == (polled["outputImage"]["width"], polled["outputImage"]["height"])


async def test_banned_words_fail_the_generation():
    async with sandbox() as box:
        gen = await box.create(prompt="a gore scene")
        assert gen["status"] == "failed" and "safety filter" in gen["errorMessage"]


async def test_generation_validation_errors():
    async with sandbox() as box:
        cases = [
            ({}, "prompt is required"),
            ({"prompt": 3}, "prompt must be a string"),
            ({"prompt": "x", "aspectRatio": "5:4"}, "aspectRatio"),
            ({"prompt": "x", "autoEnhance": "maybe"}, "autoEnhance"),
            ({"prompt": "x", "enhancementOptions": {"template": "oil"}}, "template"),
            ({"prompt": "x", "alias": "hero"}, "alias"),
            ({"prompt": "x", "alias": "@last"}, "reserved"),
            ({"prompt": "x", "flowAlias": "@a", "flowId": None}, "flowAlias requires a flow"),
            ({"prompt": "x", "flowId": "not-a-uuid"}, "flowId"),
            ({"prompt": "x", "referenceImages": ["@a", "@b", "@c", "@d"]}, "at most 3"),
            ({"prompt": "x", "referenceImages": "@a"}, "referenceImages"),
            ({"prompt": "x", "meta": [1]}, "meta"),
        ]
        for body, words in cases:
            message = await box.error("POST", "/generations", 400, "VALIDATION_ERROR", json=body)
            assert words in message, (body, message)
        r = await box.client.post(API + "/generations", content=b"{nope",
                                  headers={"Content-Type": "application/json"})
        _error(r, 400, "VALIDATION_ERROR")
        await box.error("POST", "/generations", 404, "ALIAS_NOT_FOUND",
                        json={"prompt": "x", "referenceImages": ["@nobody"]})
        await box.error("POST", "/generations", 404, "IMAGE_NOT_FOUND",
                        json={"prompt": "x",
                              "referenceImages": ["00000000-0000-0000-0000-000000000000"]})
        await box.error("GET", "/generations/nope", 404, "GENERATION_NOT_FOUND")
        await box.error("GET", "/generations?status=done", 400, "VALIDATION_ERROR")
        await box.error("GET", "/generations?limit=101", 400, "VALIDATION_ERROR")
        await box.error("GET", "/generations?offset=-1", 400, "VALIDATION_ERROR")
        assert box.emu.generations == {}  # nothing was created


async def test_pagination_across_many_pages_and_filters():
    async with sandbox() as box:
        flow = (await box.call("POST", "/flows", 201, json={"meta": {"name": "f"}}))["data"]
        ids = []
        for i in range(45):
            extra = {"flowId": flow["id"]} if i % 3 == 0 else {}
            ids.append((await box.create(prompt=f"tower {i}", **extra))["id"])
        seen, offset, pages = [], 0, 0
        while True:
            body = await box.call("GET", f"/generations?limit=10&offset={offset}")
            page = body["pagination"]
            assert page["total"] == 45 and page["limit"] == 10 and page["offset"] == offset
            seen += [g["id"] for g in body["data"]]
            pages += 1
            if not page["hasMore"]:
                break
            offset += 10
        assert pages == 5 and len(body["data"]) == 5
        assert seen == ids[::-1]  # newest first, each once
        default = await box.call("GET", "/generations")
        assert default["pagination"]["limit"] == 20 and len(default["data"]) == 20
        in_flow = await box.call("GET", f"/generations?flowId={flow['id']}&limit=100")
        assert in_flow["pagination"]["total"] == 15
        assert (await box.call("GET", "/generations?status=failed"))["pagination"]["total"] == 0
        flows = await box.call("GET", "/flows?limit=2&offset=0")
        assert flows["pagination"]["total"] == 31 and flows["pagination"]["hasMore"] is True


async def test_regenerate_retry_and_update():
    async with sandbox() as box:
        gen = await box.create(prompt="a pine forest in snow")
        image_id, url = gen["outputImageId"], gen["outputImage"]["storageUrl"]
        before = await box.picture(url)
        again = (await box.call("POST", f"/generations/{gen['id']}/regenerate"))["data"]
        assert again["id"] == gen["id"] and again["outputImageId"] == image_id
        assert again["status"] == "success" and again["outputImage"]["storageUrl"] == url
        after = await box.picture(url)
        assert _diff(before, after) > 3  # a new seed: a different picture behind the same URL
        retried = (await box.call("POST", f"/generations/{gen['id']}/retry"))["data"]
        assert retried["outputImageId"] == image_id
        assert _diff(after, await box.picture(url)) > 3
        meta_only = (await box.call("PUT", f"/generations/{gen['id']}",
                                    json={"meta": {"k": 1}}))["data"]
        assert meta_only["meta"] == {"k": 1}
        same = await box.picture(url)
        changed = (await box.call("PUT", f"/generations/{gen['id']}",
                                  json={"prompt": "a desert at noon", "aspectRatio": "16:9"}))
        data = changed["data"]
        assert data["originalPrompt"] == "a desert at noon" and data["aspectRatio"] == "16:9"
        assert data["outputImageId"] == image_id and data["outputImage"]["width"] == 1792
        assert (await box.picture(url)).size == (1792, 1008) and same.size == (1024, 1024)
        box.emu.synchronous = False
        pending = (await box.call("POST", f"/generations/{gen['id']}/regenerate"))["data"]
        assert pending["status"] == "pending" and pending["outputImage"] is None
        await box.error("POST", f"/generations/{gen['id']}/regenerate", 409,
                        "GENERATION_IN_PROGRESS")
        await box.error("PUT", f"/generations/{gen['id']}", 400, "VALIDATION_ERROR",
                        json={"aspectRatio": "2:1"})
        await box.error("POST", "/generations/nope/regenerate", 404, "GENERATION_NOT_FOUND")


async def test_references_influence_the_output_and_prompt_aliases_are_detected():
    async with sandbox() as box:
        red = await box.upload(_solid((220, 30, 30), (128, 96)), alias="@red")
        blue = await box.upload(_solid((30, 40, 220)))
        prompt = "a quiet valley at dawn"
        plain = await box.create(prompt=prompt)
        with_red = await box.create(prompt=prompt, referenceImages=["@red"])
        with_blue = await box.create(prompt=prompt, referenceImages=[blue["id"]])
        p, r, b = [await box.picture(g["outputImage"]["storageUrl"])
                   for g in (plain, with_red, with_blue)]
        assert _diff(p, r) > 20 and _diff(r, b) > 20
        red_mean, blue_mean = _arr(r).mean(axis=(0, 1)), _arr(b).mean(axis=(0, 1))
        assert red_mean[0] > red_mean[2] and blue_mean[2] > blue_mean[0]
        assert with_red["referencedImages"] == [{"imageId": red["id"], "alias": "@red"}]
        assert with_red["referenceImages"][0]["id"] == red["id"]
        auto = await box.create(prompt="a banner using @red and @unknown",
                                referenceImages=[blue["id"]])
        assert [r["imageId"] for r in auto["referencedImages"]] == [blue["id"], red["id"]]
        last = await box.create(prompt="again", referenceImages=["@last"])
        assert last["referencedImages"][0]["imageId"] == auto["outputImageId"]


# ----------------------------------------------------------------------------- flows
async def test_flows_are_created_implicitly_and_aliases_resolve_in_order():
    async with sandbox() as box:
        first = await box.create(prompt="first", flowAlias="@hero")
        flow_id = first["flowId"]
        assert flow_id is not None
        none = await box.create(prompt="no flow", flowId=None)
        assert none["flowId"] is None
        second = await box.create(prompt="second", flowId=flow_id)
        assert second["flowId"] == flow_id
        own = "11111111-2222-4333-8444-555555555555"
        named = await box.create(prompt="named", flowId=own)
        assert named["flowId"] == own and (await box.call("GET", f"/flows/{own}"))["data"]
        up = await box.upload(flowId=flow_id, flowAlias="@logo", meta='{"by": "me"}')
        assert up["flowId"] == flow_id and up["meta"] == {"by": "me"}
        flow = (await box.call("GET", f"/flows/{flow_id}"))["data"]
        assert set(flow) == {"id", "projectId", "aliases", "generationCount", "imageCount",
                             "meta", "createdAt", "updatedAt"}
        assert flow["aliases"] == {"@hero": first["outputImageId"], "@logo": up["id"]}
        assert flow["generationCount"] == 2 and flow["imageCount"] == 3

        async def resolve(alias, flow=None):
            q = f"?flowId={flow}" if flow else ""
            return (await box.call("GET", f"/images/resolve/{alias}{q}"))["data"]

        # technical aliases, per flow and project-wide
        assert (await resolve("@last", flow_id))["imageId"] == second["outputImageId"]
        assert (await resolve("@first", flow_id))["imageId"] == first["outputImageId"]
        assert (await resolve("@upload", flow_id))["imageId"] == up["id"]
        assert (await resolve("@last"))["imageId"] == named["outputImageId"]
        assert (await resolve("@first"))["scope"] == "technical"
        # a flow alias shadows a project alias of the same name inside its flow only
        project_img = await box.upload(alias="@hero", flowId="null")
        assert project_img["flowId"] is None
        in_flow = await resolve("@hero", flow_id)
        assert in_flow["scope"] == "flow" and in_flow["imageId"] == first["outputImageId"]
        outside = await resolve("@hero")
        assert outside["scope"] == "project" and outside["imageId"] == project_img["id"]
        by_get = (await box.call("GET", f"/images/@hero?flowId={flow_id}"))["data"]
        assert by_get["id"] == first["outputImageId"]
        await box.error("GET", "/images/resolve/@ghost", 404, "ALIAS_NOT_FOUND")
        await box.error("GET", "/images/resolve/@bad!", 400, "VALIDATION_ERROR")

        listed = await box.call("GET", f"/flows/{flow_id}/generations")
        assert [g["id"] for g in listed["data"]] == [second["id"], first["id"]]
        images = await box.call("GET", f"/flows/{flow_id}/images")
        assert images["pagination"]["total"] == 3
        merged = (await box.call("PUT", f"/flows/{flow_id}/aliases",
                                 json={"aliases": {"@bg": second["outputImageId"]}}))["data"]
        assert set(merged["aliases"]) == {"@hero", "@logo", "@bg"}
        await box.error("PUT", f"/flows/{flow_id}/aliases", 400, "VALIDATION_ERROR",
                        json={"aliases": {"@upload": up["id"]}})
        await box.error("PUT", f"/flows/{flow_id}/aliases", 404, "IMAGE_NOT_FOUND",
                        json={"aliases": {"@x": "nope"}})
        dropped = (await box.call("DELETE", f"/flows/{flow_id}/aliases/@bg"))["data"]
        assert "@bg" not in dropped["aliases"]
        await box.error("DELETE", f"/flows/{flow_id}/aliases/@bg", 404, "ALIAS_NOT_FOUND")
        regen = (await box.call("POST", f"/flows/{flow_id}/regenerate"))["data"]
        assert regen["id"] == second["id"]
        await box.error("GET", "/flows/nope", 404, "FLOW_NOT_FOUND")


async def test_delete_cascades():
    async with sandbox() as box:
        kept = await box.create(prompt="kept", alias="@keep")
        flow_id = kept["flowId"]
        lost = await box.create(prompt="lost", flowId=flow_id, flowAlias="@lost")
        upload = await box.upload(flowId=flow_id)
        ref = await box.create(prompt="uses it", referenceImages=[upload["id"]], flowId=None)
        # deleting an image nulls references and outputImageId, drops flow aliases
        assert (await box.call("DELETE", f"/images/{upload['id']}"))["data"] == {"id": upload["id"]}
        after = (await box.call("GET", f"/generations/{ref['id']}"))["data"]
        assert after["referencedImages"] == [] and after["referenceImages"] == []
        await box.error("GET", f"/images/{upload['id']}", 404, "IMAGE_NOT_FOUND")
        # deleting a generation is soft; its image goes unless it has a project alias
        await box.call("DELETE", f"/generations/{lost['id']}")
        await box.error("GET", f"/generations/{lost['id']}", 404, "GENERATION_NOT_FOUND")
        await box.error("GET", f"/images/{lost['outputImageId']}", 404, "IMAGE_NOT_FOUND")
        flow = (await box.call("GET", f"/flows/{flow_id}"))["data"]
        assert "@lost" not in flow["aliases"]
        listed = await box.call("GET", "/generations?includeDeleted=true")
        deleted = [g for g in listed["data"] if g["id"] == lost["id"]]
        assert deleted and deleted[0]["deletedAt"] is not None
        # deleting a flow deletes its generations and un-aliased images; aliased ones stay
        other = await box.create(prompt="other", flowId=flow_id)
        await box.call("DELETE", f"/flows/{flow_id}")
        await box.error("GET", f"/flows/{flow_id}", 404, "FLOW_NOT_FOUND")
        await box.error("GET", f"/generations/{other['id']}", 404, "GENERATION_NOT_FOUND")
        await box.error("GET", f"/images/{other['outputImageId']}", 404, "IMAGE_NOT_FOUND")
        survivor = (await box.call("GET", "/images/@keep"))["data"]
        assert survivor["id"] == kept["outputImageId"] and survivor["flowId"] is None
        assert survivor["generationId"] is None


# ----------------------------------------------------------------------------- images
async def test_images_upload_list_get_update_alias_and_conflict():
    async with sandbox() as box:
        jpeg = await box.call(
            "POST", "/images/upload", 201,
            files={"file": ("p.jpg", _png(_solid((9, 9, 9), (40, 30)), "JPEG"), "image/jpeg")},
            data={"alias": "@photo", "flowId": "null"},
        )
        img = jpeg["data"]
        assert set(img) == IMAGE_KEYS and img["source"] == "uploaded"
        assert img["mimeType"] == "image/jpeg" and (img["width"], img["height"]) == (40, 30)
        assert img["alias"] == "@photo" and img["flowId"] is None and img["fileSize"] > 0
        cdn = await box.client.get(f"{CDN}/img/@photo")
        assert cdn.status_code == 200 and cdn.headers["x-image-id"] == img["id"]
        assert cdn.headers["content-type"] == "image/jpeg"
        await box.create(prompt="generated one", flowId=None)
        uploaded = await box.call("GET", "/images?source=uploaded")
        assert [i["id"] for i in uploaded["data"]] == [img["id"]]
        assert (await box.call("GET", "/images?source=generated"))["pagination"]["total"] == 1
        assert (await box.call("GET", "/images?alias=@photo"))["data"][0]["id"] == img["id"]
        await box.error("GET", "/images?source=both", 400, "VALIDATION_ERROR")
        by_alias = (await box.call("GET", "/images/@photo"))["data"]
        assert by_alias["id"] == img["id"]
        updated = (await box.call("PUT", f"/images/{img['id']}",
                                  json={"focalPoint": {"x": 0.25, "y": 0.5},
                                        "meta": {"a": 1}}))["data"]
        assert updated["focalPoint"] == {"x": 0.25, "y": 0.5} and updated["meta"] == {"a": 1}
        await box.error("PUT", f"/images/{img['id']}", 400, "VALIDATION_ERROR",
                        json={"focalPoint": {"x": 2, "y": 0}})
        await box.error("PUT", f"/images/{img['id']}", 400, "VALIDATION_ERROR",
                        json={"alias": "@x"})
        # explicit assignment of an alias another image holds is a conflict …
        other = await box.upload(_solid((0, 200, 0)))
        message = await box.error("PUT", f"/images/{other['id']}/alias", 409, "ALIAS_CONFLICT",
                                  json={"alias": "@photo"})
        assert img["id"] in message
        await box.error("PUT", f"/images/{other['id']}/alias", 400, "VALIDATION_ERROR",
                        json={"alias": "@first"})
        ok = (await box.call("PUT", f"/images/{other['id']}/alias", json={"alias": "@leaf"}))
        assert ok["data"]["alias"] == "@leaf"
        removed = (await box.call("PUT", f"/images/{other['id']}/alias", json={"alias": None}))
        assert removed["data"]["alias"] is None
        await box.error("GET", "/images/@leaf", 404, "ALIAS_NOT_FOUND")
        # … while an upload with the alias takes it over
        moved = await box.upload(_solid((1, 2, 3)), alias="@photo")
        assert (await box.call("GET", "/images/@photo"))["data"]["id"] == moved["id"]
        assert (await box.call("GET", f"/images/{img['id']}"))["data"]["alias"] is None


async def test_upload_errors():
    async with sandbox() as box:
        async def bad(status, code, **kw):
            r = await box.client.post(API + "/images/upload", **kw)
            return _error(r, status, code)

        assert "multipart" in await bad(400, "VALIDATION_ERROR", json={"file": "x"})
        assert "file is required" in await bad(400, "VALIDATION_ERROR", data={"alias": "@a"},
                                               files={"other": ("a", b"x", "text/plain")})
        assert "not an image" in await bad(400, "VALIDATION_ERROR",
                                           files={"file": ("a.png", b"nope", "image/png")})
        gif = _png(_solid((1, 1, 1)), "GIF")
        assert "PNG, JPEG or WebP" in await bad(400, "VALIDATION_ERROR",
                                                files={"file": ("a.gif", gif, "image/gif")})
        big = b"\x89PNG\r\n\x1a\n" + b"0" * (5 * 2**20)
        assert "5 MB" in await bad(400, "VALIDATION_ERROR",
                                   files={"file": ("a.png", big, "image/png")})
        png = _png(_solid((1, 1, 1)))
        assert "meta" in await bad(400, "VALIDATION_ERROR", data={"meta": "{oops"},
                                   files={"file": ("a.png", png, "image/png")})
        assert "reserved" in await bad(400, "VALIDATION_ERROR", data={"alias": "@upload"},
                                       files={"file": ("a.png", png, "image/png")})
        assert box.emu.images == {}


# ----------------------------------------------------------------------------- rate limits
async def test_rate_limit_headers_and_the_real_limit_of_100_per_hour():
    async with sandbox() as box:
        r = await box.client.get(API + "/flows")
        assert r.headers["x-ratelimit-limit"] == "10000"
        assert r.headers["x-ratelimit-remaining"] == "9999"
        assert int(r.headers["x-ratelimit-reset"]) >= int(time.time())
        box.emu.enforce_real_limits = True
        other_key = {"X-API-Key": "bnt_other"}
        for i in range(100):
            r = await box.client.get(API + "/flows", headers=other_key)
            assert r.status_code == 200 and r.headers["x-ratelimit-remaining"] == str(99 - i)
        limited = await box.client.get(API + "/flows", headers=other_key)
        _error(limited, 429, "RATE_LIMIT_EXCEEDED")
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.headers["x-ratelimit-remaining"] == "0"
        assert box.emu.rate_limited == 1
        # errors count too, and another key has its own window
        assert (await box.client.get(API + "/flows")).status_code == 200
        box.state.clock.advance(3600)
        again = await box.client.get(API + "/flows", headers=other_key)
        assert again.status_code == 200 and again.headers["x-ratelimit-remaining"] == "99"


async def test_injected_fault_uses_the_banatie_envelope():
    async with sandbox() as box:
        box.state.faults.add("/banatie/api/v1/generations", status=500)
        r = await box.client.post(API + "/generations", json={"prompt": "x"})
        _error(r, 500, "INTERNAL_ERROR")
        box.state.faults.add("/banatie-cdn/*", status=429, retry_after=3)
        r = await box.client.get(f"{CDN}/live/demo?prompt=x")
        _error(r, 429, "RATE_LIMIT_EXCEEDED")
        assert r.headers["retry-after"] == "3"
        assert box.emu.generations == {}


# ----------------------------------------------------------------------------- live
async def test_live_miss_then_hit_and_the_per_ip_limit():
    async with sandbox() as box:
        box.emu.enforce_real_limits = True
        url = f"{CDN}/live/hero?prompt=a+red+barn&aspectRatio=16:9"
        bare = httpx.AsyncClient(transport=box.client._transport, base_url=BASE)
        async with bare:
            ip = {"X-Forwarded-For": "203.0.113.7, 10.0.0.1"}
            miss = await bare.get(url, headers=ip)
            assert miss.status_code == 200, miss.text
            assert miss.headers["x-cache-status"] == "MISS"
            assert miss.headers["content-type"] == "image/png"
            assert miss.headers["cache-control"] == "public, max-age=31536000"
            assert miss.headers["x-generation-id"] in box.emu.generations
            assert Image.open(io.BytesIO(miss.content)).size == (1792, 1008)
            assert miss.headers["x-ratelimit-limit"] == "10"
            assert miss.headers["x-ratelimit-remaining"] == "9"
            hit = await bare.get(url, headers=ip)
            assert hit.headers["x-cache-status"] == "HIT" and hit.content == miss.content
            assert hit.headers["x-image-id"] == miss.headers["x-image-id"]
            assert hit.headers["x-cache-hit-count"] == "1"
            assert hit.headers["x-ratelimit-remaining"] == "9"  # HITs are free
            for i in range(9):  # small square images keep this quick
                r = await bare.get(f"{CDN}/live/hero?prompt=cell+{i}", headers=ip)
                assert r.headers["x-cache-status"] == "MISS"
            refused = await bare.get(f"{CDN}/live/hero?prompt=one+more", headers=ip)
            _error(refused, 429, "RATE_LIMIT_EXCEEDED")
            assert int(refused.headers["retry-after"]) >= 1
            assert (await bare.get(url, headers=ip)).headers["x-cache-status"] == "HIT"
            other = await bare.get(f"{CDN}/live/hero?prompt=one+more",
                                   headers={"X-Forwarded-For": "198.51.100.1"})
            assert other.status_code == 200 and other.headers["x-cache-status"] == "MISS"
            # cache key includes the parameters
            assert (await bare.get(url + "&autoEnhance=false",
                                   headers={"X-Forwarded-For": "198.51.100.1"})
                    ).headers["x-cache-status"] == "MISS"
        scope = (await box.call("GET", "/live/scopes/hero"))["data"]
        assert scope["currentGenerations"] == 12 and scope["newGenerationsLimit"] == 30
        gen = (await box.call("GET", f"/generations/{miss.headers['x-generation-id']}"))["data"]
        assert gen["status"] == "success" and gen["meta"] == {"liveScope": "hero"}


async def test_live_errors_and_scope_management():
    async with sandbox() as box:
        bare = httpx.AsyncClient(transport=box.client._transport, base_url=BASE)
        async with bare:
            _error(await bare.get(f"{CDN}/live/demo"), 400, "VALIDATION_ERROR")
            _error(await bare.get(f"{CDN}/live/demo?prompt=x&aspectRatio=2:1"), 400,
                   "VALIDATION_ERROR")
            _error(await bare.get(f"{CDN}/live/b%20ad?prompt=x"), 400, "SCOPE_INVALID_FORMAT")
            _error(await bare.get("/banatie-cdn/acme/site/live/demo?prompt=x"), 404,
                   "PROJECT_NOT_FOUND")
            _error(await bare.get(f"{CDN}/img/00000000-0000-0000-0000-000000000000"), 404,
                   "IMAGE_NOT_FOUND")
            _error(await bare.get(f"{CDN}/img/@nobody"), 404, "ALIAS_NOT_FOUND")
        made = await box.call("POST", "/live/scopes", 201,
                              json={"slug": "gallery", "newGenerationsLimit": 1,
                                    "meta": {"d": "x"}})
        assert set(made["data"]) == {"id", "slug", "allowNewGenerations", "newGenerationsLimit",
                                     "currentGenerations", "lastGeneratedAt", "meta",
                                     "createdAt"}
        await box.error("POST", "/live/scopes", 409, "SCOPE_ALREADY_EXISTS",
                        json={"slug": "gallery"})
        await box.error("POST", "/live/scopes", 400, "SCOPE_INVALID_FORMAT",
                        json={"slug": "no spaces"})
        await box.error("GET", "/live/scopes/none", 404, "SCOPE_NOT_FOUND")
        first = await box.client.get(f"{CDN}/live/gallery?prompt=a+vase")
        assert first.headers["x-cache-status"] == "MISS"
        capped = await box.client.get(f"{CDN}/live/gallery?prompt=a+cup")
        _error(capped, 403, "SCOPE_GENERATION_LIMIT_REACHED")
        assert (await box.client.get(f"{CDN}/live/gallery?prompt=a+vase")).status_code == 200
        await box.call("PUT", "/live/scopes/gallery", json={"newGenerationsLimit": 5,
                                                            "allowNewGenerations": False})
        _error(await box.client.get(f"{CDN}/live/gallery?prompt=a+cup"), 403,
               "SCOPE_GENERATION_LIMIT_REACHED")
        listed = await box.call("GET", "/live/scopes?slug=gallery")
        assert listed["pagination"]["total"] == 1
        assert listed["data"][0]["allowNewGenerations"] is False
        image_id = first.headers["x-image-id"]
        await box.error("POST", "/live/scopes/gallery/regenerate", 400, "IMAGE_NOT_IN_SCOPE",
                        json={"imageId": "nope"})
        done = (await box.call("POST", "/live/scopes/gallery/regenerate",
                               json={"imageId": image_id}))["data"]
        assert done == {"regenerated": 1, "imageIds": [image_id]}
        fresh = await box.client.get(f"{CDN}/live/gallery?prompt=a+vase")
        assert fresh.headers["x-cache-status"] == "HIT" and fresh.content != first.content
        keyed = await box.client.get(API + "/live?prompt=a+cloud")
        assert keyed.headers["x-cache-status"] == "MISS" and "x-ratelimit-limit" in keyed.headers
        await box.call("DELETE", "/live/scopes/gallery")
        await box.error("GET", "/live/scopes/gallery", 404, "SCOPE_NOT_FOUND")


# ----------------------------------------------------------------------------- over loopback
def test_served_over_loopback(live_sandbox):
    root = live_sandbox.url
    with httpx.Client(base_url=root, headers=KEY, timeout=30) as client:
        index = client.get("/").json()
        names = {p["name"]: p["url"] for p in index["providers"]}
        assert names["banatie"] == root + "/banatie"
        assert names["banatie-cdn"] == root + "/banatie-cdn"
        created = client.post(API + "/generations", json={"prompt": "a harbour", "alias": "@h"})
        assert created.status_code == 201, created.text
        gen = created.json()["data"]
        assert gen["outputImage"]["storageUrl"].startswith(root + "/banatie-cdn/")
        picture = client.get(gen["outputImage"]["storageUrl"])
        assert picture.status_code == 200 and picture.headers["x-image-id"]
        upload = client.post(API + "/images/upload",
                             files={"file": ("a.png", _png(_solid((5, 5, 5))), "image/png")},
                             data={"alias": "@dark", "meta": '{"k": 2}'})
        assert upload.status_code == 201 and upload.json()["data"]["meta"] == {"k": 2}
        live = client.get("/banatie-cdn/sandbox/notebook/live/site?prompt=a+kite",
                          headers={"X-API-Key": ""})
        assert live.status_code == 200 and live.headers["x-cache-status"] == "MISS"
        self_hosted = client.get("/banatie/cdn/sandbox/notebook/img/@dark")
        assert self_hosted.status_code == 200
        missing = client.get(API + "/generations/nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == \
            "GENERATION_NOT_FOUND"
        assert "x-ratelimit-remaining" in missing.headers
        retried = client.post(API + f"/generations/{gen['id']}/retry")
        assert retried.status_code == 200 and retried.json()["data"]["id"] == gen["id"]
        keyed = client.get(API + "/live?prompt=a+gull")
        assert keyed.status_code == 200 and keyed.headers["x-cache-status"] == "MISS"
        # documented errors, over the wire
        _error(client.get(API + "/flows", headers={"X-API-Key": "invalid-key"}), 401,
               "UNAUTHORIZED")
        _error(client.post(API + "/generations", json={"prompt": ""}), 400, "VALIDATION_ERROR")
        other = client.post(API + "/images/upload",
                            files={"file": ("b.png", _png(_solid((9, 9, 9))), "image/png")})
        _error(client.put(API + f"/images/{other.json()['data']['id']}/alias",
                          json={"alias": "@dark"}), 409, "ALIAS_CONFLICT")
        live_sandbox.state.providers["banatie"].enforce_real_limits = True
        fresh = {"X-API-Key": "bnt_loopback-fresh"}
        statuses = [client.get(API + "/flows", headers=fresh).status_code for _ in range(101)]
        assert statuses == [200] * 100 + [429]
        limited = client.get(API + "/flows", headers=fresh)
        _error(limited, 429, "RATE_LIMIT_EXCEEDED")
        assert int(limited.headers["retry-after"]) >= 1
        # bootstrap, then admin keys with the master key
        boot = client.post("/banatie/api/bootstrap/initial-key", headers={"X-API-Key": ""})
        assert boot.status_code == 201
        admin = {"X-API-Key": boot.json()["apiKey"]}
        _error(client.post("/banatie/api/bootstrap/initial-key"), 403, "FORBIDDEN")
        made = client.post("/banatie/api/admin/keys", headers=admin,
                           json={"type": "project", "projectId": "p"})
        assert made.status_code == 201
        assert len(client.get("/banatie/api/admin/keys", headers=admin).json()["keys"]) == 2
        revoked = client.delete(f"/banatie/api/admin/keys/{made.json()['id']}", headers=admin)
        assert revoked.status_code == 200
        _error(client.get(API + "/flows", headers={"X-API-Key": made.json()["apiKey"]}), 401,
               "UNAUTHORIZED")
