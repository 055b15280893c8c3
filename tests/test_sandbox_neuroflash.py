"""The neuroflash emulation of the sandbox, driven over its wire format as a third-party client
would (raw httpx: form-encoded token request, bearer calls, problem+json errors).

Most tests run in-process (``httpx.ASGITransport``) on a frozen clock (``speed=0``) and jump it
with ``state.clock.advance``; one runs over real HTTP on loopback.
"""

from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from jupyter_imagine import imaging
from jupyter_imagine.sandbox import SandboxState, _art, create_app
from jupyter_imagine.sandbox._neuroflash import (
    OTHER_USER_ID,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    WORKSPACE_ID,
    Neuroflash,
    user_id,
)

pytestmark = pytest.mark.anyio

BASE = "http://sandbox.test"
TOKEN = "/neuroflash-id/oauth/v2/token"
WS = f"/neuroflash/api/image-service/v1/workspaces/{WORKSPACE_ID}"
USAGE = f"/neuroflash/api/usage-service/v1/workspaces/{WORKSPACE_ID}/quotas"
WORKSPACES = "/neuroflash/api/workspace-service/v1/workspaces"
PROBLEM = "application/problem+json"
IMAGE_KEYS = {
    "id", "generationId", "workspaceId", "createdByUserId", "prompt", "model", "parameters",
    "inputImageIds", "imageWidth", "imageHeight", "imageSize", "createdAt", "updatedAt", "_links",
}


class Box:
    """One in-process sandbox: ``client`` (no auth), ``state``, ``emu`` and helpers."""

    def __init__(self, client: httpx.AsyncClient, state: SandboxState) -> None:
        self.client = client
        self.state = state
        self.emu: Neuroflash = state.providers["neuroflash"]
        self.emu.long_side = 128  # small pictures: fast tests

    async def token(
        self, client_id: str = SANDBOX_CLIENT_ID, secret: str = SANDBOX_CLIENT_SECRET
    ) -> str:
        response = await self.client.post(
            TOKEN,
            data={"grant_type": "client_credentials", "client_id": client_id,
                  "client_secret": secret, "scope": "openid"},
        )
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    async def auth(self, **kw: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(**kw)}"}

    async def generate(self, headers: dict[str, str], **body: Any) -> dict[str, Any]:
        body.setdefault("prompt", "a lighthouse at dusk")
        response = await self.client.post(
            WS + "/image-generation-tasks", json=body, headers=headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def content(self, image: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
        response = await self.client.get(image["_links"]["content"], headers=headers)
        assert response.status_code == 200, response.text
        return response


@contextlib.asynccontextmanager
async def sandbox(speed: float = 0.0) -> AsyncIterator[Box]:
    app = create_app(speed=speed)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=30) as client:
        yield Box(client, app.state.sandbox)
    await app.state.sandbox.aclose()


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The problem document of an error answer, checked for its shape."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and isinstance(body["title"], str) and body["type"]
    return body


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)


# ----------------------------------------------------------------------------- token endpoint
async def test_token_endpoint_issues_bearer_tokens_form_or_basic():
    async with sandbox() as box:
        box.emu.token_ttl = 3600
        form = {"grant_type": "client_credentials", "client_id": SANDBOX_CLIENT_ID,
                "client_secret": SANDBOX_CLIENT_SECRET, "scope": "openid"}
        response = await box.client.post(TOKEN, data=form)
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
        assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
        assert response.headers["cache-control"] == "no-store"
        basic = base64.b64encode(f"{SANDBOX_CLIENT_ID}:{SANDBOX_CLIENT_SECRET}".encode()).decode()
        other = await box.client.post(
            TOKEN, data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert other.status_code == 200 and other.json()["access_token"] != body["access_token"]
        ok = await box.client.get(WORKSPACES, headers={
            "Authorization": "Bearer " + other.json()["access_token"]})
        assert ok.status_code == 200


@pytest.mark.parametrize(
    "form, status, error",
    [
        ({"client_id": SANDBOX_CLIENT_ID, "client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": SANDBOX_CLIENT_ID}, 401, "invalid_client"),
        ({"client_id": "invalid-key", "client_secret": "x-secret"}, 401, "invalid_client"),
        ({"client_id": "someone", "client_secret": "invalid-key"}, 401, "invalid_client"),
    ],
)
async def test_bad_client_credentials_are_oauth_invalid_client(form, status, error):
    async with sandbox() as box:
        response = await box.client.post(TOKEN, data={"grant_type": "client_credentials", **form})
        assert response.status_code == status
        assert response.json()["error"] == error and response.json()["error_description"]
        assert "access_token" not in response.text


async def test_token_request_shape_is_checked():
    async with sandbox() as box:
        creds = {"client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET}
        missing = await box.client.post(TOKEN, data=creds)
        assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
        grant = await box.client.post(TOKEN, data={"grant_type": "password", **creds})
        assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
        as_json = await box.client.post(TOKEN, json={"grant_type": "client_credentials", **creds})
        assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
        get = await box.client.get(TOKEN)
        assert get.status_code == 405 and get.json()["error"] == "invalid_request"
        nowhere = await box.client.post("/neuroflash-id/oauth/v2/nothing", data=creds)
        assert nowhere.status_code == 404 and "error" in nowhere.json()


async def test_new_client_ids_register_their_first_secret():
    async with sandbox() as box:
        await box.token("my-service-account", "first-secret-1")
        again = await box.token("my-service-account", "first-secret-1")
        assert again
        response = await box.client.post(TOKEN, data={
            "grant_type": "client_credentials", "client_id": "my-service-account",
            "client_secret": "another-secret"})
        assert response.status_code == 401 and response.json()["error"] == "invalid_client"
        box.state.accepted_keys = {SANDBOX_CLIENT_ID}
        refused = await box.client.post(TOKEN, data={
            "grant_type": "client_credentials", "client_id": "my-service-account",
            "client_secret": "first-secret-1"})
        assert refused.status_code == 401
        assert await box.token()  # the sandbox account is still let in


# ----------------------------------------------------------------------------- bearer rules
async def test_bearer_rules_and_token_expiry_on_the_sandbox_clock():
    async with sandbox() as box:
        none = await box.client.get(WORKSPACES)
        assert problem(none, 401)["title"] == "Unauthorized"
        assert none.headers["www-authenticate"].startswith("Bearer")
        bogus = await box.client.get(WORKSPACES, headers={"Authorization": "Bearer nope"})
        assert "invalid" in problem(bogus, 401)["detail"]
        assert 'error="invalid_token"' in bogus.headers["www-authenticate"]
        box.emu.token_ttl = 30
        headers = await box.auth()
        assert (await box.client.get(WORKSPACES, headers=headers)).status_code == 200
        box.state.clock.advance(29)
        assert (await box.client.get(WORKSPACES, headers=headers)).status_code == 200
        box.state.clock.advance(1)
        expired = await box.client.get(WORKSPACES, headers=headers)
        assert "expired" in problem(expired, 401)["detail"]
        content = await box.client.get(WS + "/images/x/content")
        problem(content, 401)  # image bytes are bearer-protected too
        box.emu.token_ttl = 0
        born_expired = await box.auth()
        assert (await box.client.get(WORKSPACES, headers=born_expired)).status_code == 401
        box.emu.token_ttl = 100
        fresh = await box.auth()
        box.emu.revoke_tokens()
        assert (await box.client.get(WORKSPACES, headers=fresh)).status_code == 401


# ----------------------------------------------------------------------------- catalogue
async def test_workspaces_and_unknown_workspace():
    async with sandbox() as box:
        headers = await box.auth()
        body = (await box.client.get(WORKSPACES, headers=headers)).json()
        assert body["data"][0]["id"] == WORKSPACE_ID
        assert body["page"] == {"size": 20, "totalElements": 1, "totalPages": 1, "currentPage": 1}
        other = WS.replace(WORKSPACE_ID, "not-mine")
        answer = await box.client.get(other + "/images", headers=headers)
        body = problem(answer, 404)
        assert "not-mine" in body["detail"] and body["instance"].endswith("/images")


async def test_image_models_catalogue_and_pagination():
    async with sandbox() as box:
        headers = await box.auth()
        answer = await box.client.get(
            WS + "/image-models", params={"page": 1, "size": 50}, headers=headers
        )
        body = answer.json()
        assert body["page"] == {"size": 50, "totalElements": 4, "totalPages": 1, "currentPage": 1}
        models = {m["id"]: m for m in body["data"]}
        nano = models["nano-banana-2"]
        assert set(nano) == {"id", "name", "provider", "description", "capabilities", "maxImages",
                             "aspectRatios", "outputFormats", "allowed", "order"}
        assert nano["name"] == "Nano Banana 2" and nano["provider"] == "fal.ai"
        assert nano["maxImages"] == 4 and nano["allowed"] is True
        assert nano["aspectRatios"] == ["21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4",
                                        "2:3", "9:16"]
        assert nano["outputFormats"] == ["jpeg", "png", "webp"]
        assert set(nano["capabilities"]) == {"text2image", "image2image"}
        assert models["clarity-upscaler"]["upscaleFactors"] == [2, 4]
        assert models["gpt-image-1"]["allowed"] is False
        assert [m["order"] for m in body["data"]] == sorted(m["order"] for m in body["data"])
        second = (await box.client.get(
            WS + "/image-models", params={"page": 2, "size": 3}, headers=headers)).json()
        assert second["page"]["totalPages"] == 2 and second["page"]["currentPage"] == 2
        assert [m["id"] for m in second["data"]] == ["gpt-image-1"]
        beyond = (await box.client.get(
            WS + "/image-models", params={"page": 9, "size": 3}, headers=headers)).json()
        assert beyond["data"] == []
        for bad in ({"size": 201}, {"size": 0}, {"page": 0}, {"page": "x"}):
            answer = await box.client.get(WS + "/image-models", params=bad, headers=headers)
            body = problem(answer, 400)
            assert body["errors"][0]["field"] in ("size", "page")


# ----------------------------------------------------------------------------- generation
async def test_generation_answers_synchronously_with_grouped_images():
    async with sandbox() as box:
        box.emu.long_side = 256
        headers = await box.auth()
        body = await box.generate(headers, numImages=2, aspectRatio="16:9", outputFormat="png",
                                  modelId="nano-banana-2")
        assert set(body) == {"images", "generationId", "description", "detail"}
        assert body["detail"] is None and "Nano Banana 2" in body["description"]
        images = body["images"]
        assert len(images) == 2 and {i["generationId"] for i in images} == {body["generationId"]}
        first = images[0]
        assert set(first) == IMAGE_KEYS
        assert first["workspaceId"] == WORKSPACE_ID
        assert first["createdByUserId"] == user_id(SANDBOX_CLIENT_ID)
        assert first["model"] == "nano-banana-2" and first["prompt"] == "a lighthouse at dusk"
        assert first["parameters"] == {"aspectRatio": "16:9", "outputFormat": "png",
                                       "numImages": 2}
        assert first["inputImageIds"] == []
        assert (first["imageWidth"], first["imageHeight"]) == (256, 144)
        assert first["createdAt"].endswith("Z")
        link = first["_links"]["content"]
        assert link == f"{BASE}{WS}/images/{first['id']}/content"
        response = await box.content(first, headers)
        assert response.headers["content-type"] == "image/png"
        assert len(response.content) == first["imageSize"]
        assert imaging.image_size(response.content) == (256, 144)
        assert imaging.read_png_text(response.content)["prompt"] == "a lighthouse at dusk"
        second = await box.content(images[1], headers)
        assert response.content != second.content  # two different pictures
        default = await box.generate(headers, prompt="a quiet lake")
        assert len(default["images"]) == 1
        assert default["images"][0]["parameters"]["aspectRatio"] == "1:1"


@pytest.mark.parametrize("fmt, mime", [("jpeg", "image/jpeg"), ("webp", "image/webp")])
async def test_output_formats_are_encoded_as_asked(fmt, mime):
    async with sandbox() as box:
        headers = await box.auth()
        body = await box.generate(headers, outputFormat=fmt, aspectRatio="9:16")
        response = await box.content(body["images"][0], headers)
        assert response.headers["content-type"] == mime
        with Image.open(io.BytesIO(response.content)) as im:
            assert im.format == fmt.upper() and im.height > im.width


@pytest.mark.parametrize(
    "body, status, field",
    [
        ({"numImages": 5}, 400, "numImages"),
        ({"numImages": 0}, 400, "numImages"),
        ({"aspectRatio": "7:3"}, 400, "aspectRatio"),
        ({"outputFormat": "gif"}, 400, "outputFormat"),
        ({"prompt": "  "}, 400, "prompt"),
        ({"modelId": "dall-e-9"}, 400, "modelId"),
        ({"modelId": "clarity-upscaler"}, 400, "modelId"),
        ({"modelId": "seedream-4", "numImages": 3}, 400, "numImages"),
        ({"modelId": "seedream-4", "outputFormat": "webp"}, 400, "outputFormat"),
        ({"modelId": "gpt-image-1"}, 403, None),
    ],
)
async def test_generation_is_validated_against_the_model(body, status, field):
    async with sandbox() as box:
        headers = await box.auth()
        answer = await box.client.post(
            WS + "/image-generation-tasks", json={"prompt": "a boat", **body}, headers=headers
        )
        doc = problem(answer, status)
        if field:
            assert doc["errors"][0]["field"] == field and doc["detail"]
        assert box.emu.quotas["images"].usedAmount == 0  # refused requests cost nothing


async def test_bad_bodies_and_banned_prompts():
    async with sandbox() as box:
        headers = await box.auth()
        url = WS + "/image-generation-tasks"
        for content in (b"", b"{nope", b"[1, 2]"):
            answer = await box.client.post(url, content=content, headers={
                **headers, "Content-Type": "application/json"})
            problem(answer, 400)
        banned = await box.client.post(url, json={"prompt": "a gore scene"}, headers=headers)
        doc = problem(banned, 400)
        assert doc["type"].endswith("/content-policy") and "gore" in doc["detail"]
        missing = await box.client.get(WS + "/nothing-here", headers=headers)
        problem(missing, 404)



async def test_sandbox_fail_prompt_fails_its_generation_and_costs_nothing():
    async with sandbox() as box:
        headers = await box.auth()
        url = WS + "/image-generation-tasks"
        failed = await box.client.post(url, json={"prompt": "a boat sandbox:fail"}, headers=headers)
        doc = problem(failed, 422)
        assert doc["type"].endswith("/generation-failed") and "sandbox:fail" in doc["detail"]
        assert box.emu.quotas["images"].usedAmount == 0

# ----------------------------------------------------------------------------- edit / upscale
async def test_edit_resembles_its_input_and_auto_keeps_its_size():
    async with sandbox() as box:
        box.emu.long_side = 192
        headers = await box.auth()
        source = (await box.generate(headers, aspectRatio="3:2"))["images"][0]
        answer = await box.client.post(WS + "/image-edit-tasks", headers=headers, json={
            "prompt": "the same lighthouse in snow", "imageIds": [source["id"]],
            "aspectRatio": "auto", "outputFormat": "png"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        edited = body["images"][0]
        assert edited["inputImageIds"] == [source["id"]]
        assert edited["generationId"] == body["generationId"] != source["generationId"]
        assert (edited["imageWidth"], edited["imageHeight"]) == (
            source["imageWidth"], source["imageHeight"])
        before = pixels((await box.content(source, headers)).content)
        after = pixels((await box.content(edited, headers)).content)
        unrelated = pixels(imaging.to_png(_art.render("a neon city at night", 7, (192, 128))))
        assert 0 < np.abs(after - before).mean() < np.abs(unrelated - before).mean()
        sized = await box.client.post(WS + "/image-edit-tasks", headers=headers, json={
            "prompt": "wider", "imageIds": [source["id"]], "aspectRatio": "16:9", "numImages": 2})
        assert [(i["imageWidth"], i["imageHeight"]) for i in sized.json()["images"]] == [
            (192, 108)] * 2


async def test_edit_errors():
    async with sandbox() as box:
        headers = await box.auth()
        url = WS + "/image-edit-tasks"
        mine = (await box.generate(headers))["images"][0]["id"]
        seeded = next(i for i in box.emu.images.values() if i.created_by == OTHER_USER_ID).id
        cases = [
            ({"prompt": "x"}, 400),
            ({"prompt": "x", "imageIds": []}, 400),
            ({"prompt": "x", "imageIds": ["no-such-image"]}, 404),
            ({"prompt": "x", "imageIds": [seeded]}, 403),
            ({"imageIds": [mine]}, 400),
            ({"prompt": "x", "imageIds": [mine], "modelId": "seedream-4"}, 400),
        ]
        for body, status in cases:
            problem(await box.client.post(url, json=body, headers=headers), status)


async def test_upscale_multiplies_the_size_by_the_models_factor():
    async with sandbox() as box:
        headers = await box.auth()
        source = (await box.generate(headers, aspectRatio="4:3", outputFormat="jpeg"))["images"][0]
        url = WS + "/image-upscale-tasks"
        answer = await box.client.post(url, headers=headers, json={
            "imageId": source["id"], "modelId": "clarity-upscaler", "upscaleFactor": 2})
        assert answer.status_code == 200, answer.text
        big = answer.json()["images"][0]
        assert big["prompt"] == "" and big["inputImageIds"] == [source["id"]]
        assert big["model"] == "clarity-upscaler" and big["parameters"]["upscaleFactor"] == 2
        assert (big["imageWidth"], big["imageHeight"]) == (
            2 * source["imageWidth"], 2 * source["imageHeight"])
        data = (await box.content(big, headers))
        assert data.headers["content-type"] == "image/jpeg"  # keeps its input's format
        small = Image.open(io.BytesIO(data.content)).resize(
            (source["imageWidth"], source["imageHeight"]))
        original = pixels((await box.content(source, headers)).content)
        assert np.abs(np.asarray(small, dtype=np.float64) - original).mean() < 12
        four = await box.client.post(url, headers=headers, json={
            "imageId": source["id"], "modelId": "clarity-upscaler", "upscaleFactor": 4,
            "outputFormat": "webp"})
        assert four.json()["images"][0]["imageWidth"] == 4 * source["imageWidth"]
        for body, status in [
            ({"imageId": source["id"], "modelId": "clarity-upscaler", "upscaleFactor": 3}, 400),
            ({"imageId": source["id"], "upscaleFactor": 2}, 400),
            ({"imageId": source["id"], "modelId": "clarity-upscaler"}, 400),
            ({"imageId": source["id"], "modelId": "nano-banana-2", "upscaleFactor": 2}, 400),
            ({"modelId": "clarity-upscaler", "upscaleFactor": 2}, 400),
            ({"imageId": "gone", "modelId": "clarity-upscaler", "upscaleFactor": 2}, 404),
        ]:
            problem(await box.client.post(url, json=body, headers=headers), status)


# ----------------------------------------------------------------------------- images
async def test_upload_by_data_uri_and_url():
    async with sandbox() as box:
        headers = await box.auth()
        picture = Image.new("RGB", (40, 30), (200, 30, 60))
        buf = io.BytesIO()
        picture.save(buf, format="PNG")
        uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        answer = await box.client.post(WS + "/images", json={"imageUrl": uri}, headers=headers)
        assert answer.status_code == 201, answer.text
        uploaded = answer.json()
        assert set(uploaded) == IMAGE_KEYS and uploaded["prompt"] == ""
        assert (uploaded["imageWidth"], uploaded["imageHeight"]) == (40, 30)
        assert (await box.content(uploaded, headers)).content == buf.getvalue()
        generated = (await box.generate(headers))["images"][0]
        by_url = await box.client.post(WS + "/images", headers=headers,
                                       json={"imageUrl": generated["_links"]["content"]})
        assert by_url.status_code == 201
        assert (await box.content(by_url.json(), headers)).content == (
            await box.content(generated, headers)).content
        for bad in ("", "ftp://x/y.png", "data:image/png;base64,@@@",
                    "data:image/png;base64," + base64.b64encode(b"not an image").decode(),
                    "http://127.0.0.1:9/unreachable.png"):
            answer = await box.client.post(WS + "/images", json={"imageUrl": bad},
                                           headers=headers)
            assert problem(answer, 400)["errors"][0]["field"] == "imageUrl"


async def test_list_get_and_delete_only_your_own():
    async with sandbox() as box:
        box.state.clock.speed = 0
        headers = await box.auth()
        made = (await box.generate(headers, numImages=2))["images"]
        box.state.clock.advance(5)
        later = (await box.generate(headers, prompt="a red barn"))["images"]
        listing = (await box.client.get(WS + "/images", headers=headers)).json()
        ids = [i["id"] for i in listing["data"]]
        assert listing["page"]["totalElements"] == 6  # 3 seeded + 3 made
        assert ids[0] == later[0]["id"]  # newest first
        seeded = [i for i in listing["data"] if i["createdByUserId"] == OTHER_USER_ID]
        assert len(seeded) == 3 and {i["prompt"] for i in seeded} == {"a harbour at dawn"}
        page2 = (await box.client.get(WS + "/images", params={"page": 2, "size": 4},
                                      headers=headers)).json()
        assert len(page2["data"]) == 2 and page2["page"]["totalPages"] == 2
        one = (await box.client.get(f"{WS}/images/{made[0]['id']}", headers=headers)).json()
        assert one == made[0]
        forbidden = await box.client.delete(f"{WS}/images/{seeded[0]['id']}", headers=headers)
        assert "creator" in problem(forbidden, 403)["detail"]
        other = await box.auth(client_id="colleague", secret="colleague-secret")
        theirs = (await box.generate(other))["images"][0]
        problem(await box.client.delete(f"{WS}/images/{theirs['id']}", headers=headers), 403)
        gone = await box.client.delete(f"{WS}/images/{made[0]['id']}", headers=headers)
        assert gone.status_code == 204 and gone.content == b""
        problem(await box.client.get(f"{WS}/images/{made[0]['id']}", headers=headers), 404)
        problem(await box.client.delete(f"{WS}/images/{made[0]['id']}", headers=headers), 404)
        problem(await box.client.get(made[0]["_links"]["content"], headers=headers), 404)
        remaining = (await box.client.get(WS + "/images", headers=headers)).json()
        assert made[0]["id"] not in [i["id"] for i in remaining["data"]]
        box.emu.admins.add(SANDBOX_CLIENT_ID)
        assert (await box.client.delete(f"{WS}/images/{theirs['id']}",
                                        headers=headers)).status_code == 204


# ----------------------------------------------------------------------------- quotas, limits
async def test_quotas_decrease_per_image_then_partial_then_exhausted():
    async with sandbox() as box:
        headers = await box.auth()
        body = (await box.client.get(USAGE, params={"usageTypeKey": "images"},
                                     headers=headers)).json()
        assert [q["usageTypeKey"] for q in body["data"]] == ["images"]
        quota = body["data"][0]
        assert {"usageTypeKey", "limitAmount", "limitAmountDaily", "usedAmount", "usedAmountDaily",
                "availableAmount", "bonusAmount", "spilloverAmount", "fairUseLimitReached",
                "dailyRefreshed"} <= set(quota)
        assert quota["availableAmount"] == 100 and quota["usedAmount"] == 0
        everything = (await box.client.get(USAGE, headers=headers)).json()
        assert {q["usageTypeKey"] for q in everything["data"]} == {"images", "words"}
        await box.generate(headers, numImages=3)
        after = (await box.client.get(USAGE, params={"usageTypeKey": "images"},
                                      headers=headers)).json()["data"][0]
        assert after["usedAmount"] == 3 and after["availableAmount"] == 97
        box.emu.quotas["images"].limitAmountDaily = 5
        partial = await box.generate(headers, numImages=4)
        assert len(partial["images"]) == 2
        assert partial["detail"]["code"] == "PARTIAL_QUOTA"
        exhausted = await box.client.post(WS + "/image-generation-tasks",
                                          json={"prompt": "one more"}, headers=headers)
        doc = problem(exhausted, 402)
        assert doc["type"].endswith("/quota-exceeded") and "quota" in doc["detail"]
        final = (await box.client.get(USAGE, params={"usageTypeKey": "images"},
                                      headers=headers)).json()["data"][0]
        assert final["availableAmount"] == 0 and final["fairUseLimitReached"] is True


async def test_rate_limit_headers_and_the_strict_switch():
    async with sandbox() as box:
        headers = await box.auth()
        first = await box.client.get(WORKSPACES, headers=headers)
        assert first.headers["x-ratelimit-limit"] == "10000"
        assert first.headers["x-ratelimit-remaining"] == "9999"
        assert 1 <= int(first.headers["x-ratelimit-reset"]) <= 60
        not_found = await box.client.get(f"{WS}/images/nope", headers=headers)
        assert not_found.status_code == 404 and "x-ratelimit-limit" in not_found.headers
        box.emu.strict_rate_limit = True
        box.emu.strict_limit = 3
        answers = [await box.client.get(WORKSPACES, headers=headers) for _ in range(4)]
        # the window already holds the two requests above
        assert [a.status_code for a in answers] == [200, 429, 429, 429]
        limited = answers[1]
        doc = problem(limited, 429)
        assert doc["type"].endswith("/rate-limit")
        assert limited.headers["x-ratelimit-remaining"] == "0"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        colleague = await box.auth(client_id="colleague", secret="colleague-secret")
        assert (await box.client.get(WORKSPACES, headers=colleague)).status_code == 200
        box.emu.strict_rate_limit = False
        assert (await box.client.get(WORKSPACES, headers=headers)).status_code == 200


async def test_faults_use_each_hosts_error_shape():
    async with sandbox() as box:
        headers = await box.auth()
        box.state.faults.add("/neuroflash/*/image-generation-tasks", status=503)
        answer = await box.client.post(WS + "/image-generation-tasks", json={"prompt": "x"},
                                       headers=headers)
        problem(answer, 503)
        assert box.emu.quotas["images"].usedAmount == 0  # not processed
        box.state.faults.add("/neuroflash-id/oauth/v2/token", status=429, retry_after=3)
        token = await box.client.post(TOKEN, data={"grant_type": "client_credentials"})
        assert token.status_code == 429 and token.json()["error"] == "slow_down"
        assert token.headers["retry-after"] == "3"


async def test_index_lists_both_mounts():
    async with sandbox() as box:
        names = {p["name"]: p["prefix"] for p in (await box.client.get("/")).json()["providers"]}
        assert names["neuroflash"] == "/neuroflash"
        assert names["neuroflash-id"] == "/neuroflash-id"


# ----------------------------------------------------------------------------- over real HTTP
def test_third_party_flow_over_loopback(live_sandbox):
    url = live_sandbox.url
    with httpx.Client(base_url=url, timeout=30) as client:
        client.post("/_sandbox/clock", json={"speed": 0})  # tokens expire only when told
        settings = client.post("/neuroflash/_sandbox/settings",
                               json={"token_ttl": 120, "long_side": 128})
        assert settings.json()["token_ttl"] == 120
        token = client.post(TOKEN, data={
            "grant_type": "client_credentials", "client_id": "third-party",
            "client_secret": "third-party-secret", "scope": "openid"}).json()
        assert token["expires_in"] == 120
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        ws = client.get(WORKSPACES, headers=headers).json()["data"][0]["id"]
        base = f"/neuroflash/api/image-service/v1/workspaces/{ws}"
        body = client.post(base + "/image-generation-tasks", headers=headers, json={
            "prompt": "a lighthouse at dusk", "numImages": 2, "aspectRatio": "16:9",
            "outputFormat": "webp", "modelId": "nano-banana-2"}).json()
        link = body["images"][0]["_links"]["content"]
        assert link.startswith(url + "/neuroflash/")
        image = httpx.get(link, headers=headers, timeout=30)
        assert image.status_code == 200 and image.headers["content-type"] == "image/webp"
        assert httpx.get(link, timeout=30).status_code == 401
        deleted = client.delete(f"{base}/images/{body['images'][0]['id']}", headers=headers)
        assert deleted.status_code == 204
        client.post("/neuroflash/_sandbox/revoke")
        assert client.get(WORKSPACES, headers=headers).status_code == 401
        bad = client.post("/neuroflash/_sandbox/settings", json={"quota": {"nope": 1}})
        assert bad.status_code == 400
