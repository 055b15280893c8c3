"""The TheNextLeg emulation of the sandbox, driven over its wire format as a third-party client
would: raw httpx, Bearer tokens and ``?authToken=``, the ``{"success": …}`` envelopes, nested
``response`` objects and content codes.

Most tests run in-process (``httpx.ASGITransport``) on a frozen clock (``speed=0``) moved with
``state.clock.advance``; one test runs the flow over real HTTP on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from jupyter_imagine.sandbox import SandboxState, _art, create_app
from jupyter_imagine.sandbox import _thenextleg as tnl

pytestmark = pytest.mark.anyio

BASE = "http://sandbox.test"
TOKEN = "tnl-token-0001"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RESPONSE_KEYS = {
    "createdAt", "buttons", "type", "buttonMessageId", "originatingMessageId", "content", "ref",
    "responseAt",
}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class Box:
    """One in-process sandbox with a TNL-authorised client and wire helpers."""

    def __init__(self, client: httpx.AsyncClient, state: SandboxState) -> None:
        self.client = client
        self.state = state
        self.tnl: tnl.TheNextLeg = state.providers["thenextleg"]

    async def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return await self.client.post("/thenextleg/" + path, json=body, **kw)

    async def command(self, path: str, **body: Any) -> str:
        response = await self.post(path, body)
        assert response.status_code == 200, response.text
        data = response.json()
        assert set(data) == {"success", "messageId", "createdAt"} and data["success"] is True
        assert ISO.match(data["createdAt"])
        return data["messageId"]

    async def message(self, message_id: str, expire: Any = None, **kw: Any) -> dict[str, Any]:
        params = {} if expire is None else {"expireMins": expire}
        response = await self.client.get(
            f"/thenextleg/v2/message/{message_id}", params=params, **kw
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def done(self, message_id: str, seconds: float = 60) -> dict[str, Any]:
        self.state.clock.advance(seconds)
        body = await self.message(message_id)
        assert body["progress"] == 100 and set(body) == {"progress", "response"}, body
        return body["response"]

    async def grid(self, msg: str = "a lighthouse at dusk", **body: Any) -> dict[str, Any]:
        return await self.done(await self.command("v2/imagine", msg=msg, **body))

    async def press(self, parent: dict[str, Any], button: str, **body: Any) -> dict[str, Any]:
        message_id = await self.command(
            "v2/button", buttonMessageId=parent["buttonMessageId"], button=button, **body
        )
        return await self.done(message_id)

    async def fetch(self, url: str) -> Image.Image:
        """An image by URL: directly when public, else through ``/getImage``."""
        response = await self.client.get(url)
        if response.status_code == 403:
            response = await self.post("getImage", {"imgUrl": url})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        return Image.open(io.BytesIO(response.content)).convert("RGB")

    async def code(self, message_id: str, seconds: float = 5) -> str:
        self.state.clock.advance(seconds)
        body = await self.message(message_id)
        assert body["progress"] == 100, body
        response = body["response"]
        assert response["buttons"] == [] and "imageUrl" not in response, response
        return response["content"]


@contextlib.asynccontextmanager
async def sandbox(speed: float = 0.0) -> AsyncIterator[Box]:
    app = create_app(speed=speed)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE, headers=AUTH, timeout=30
    ) as client:
        yield Box(client, app.state.sandbox)
    await app.state.sandbox.aclose()


def _arr(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def _diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(_arr(a) - _arr(b)).mean())


def _b64(image: Image.Image, fmt: str = "PNG", prefix: bool = False) -> str:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    text = base64.b64encode(buf.getvalue()).decode()
    return f"data:image/{fmt.lower()};base64,{text}" if prefix else text


def _refused(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"success", "msg"} and body["success"] is False
    return body["msg"]


# ----------------------------------------------------------------------------- auth
async def test_bearer_token_and_auth_token_query_and_the_401_shape():
    async with sandbox() as box:
        for headers in ({"Authorization": "Bearer other"}, {"Authorization": "bearer  other"}):
            assert (await box.post("v2/imagine", {"msg": "a boat"}, headers=headers)).is_success
        for headers in (
            {"Authorization": "other"},  # TNL needs the Bearer scheme
            {"Authorization": "Bearer "},
            {"Authorization": "Bearer invalid-key"},
        ):
            msg = _refused(await box.post("v2/imagine", {"msg": "a boat"}, headers=headers), 401)
            assert "Bearer" in msg and "invalid-key" not in msg
        async with httpx.AsyncClient(transport=box.client._transport, base_url=BASE) as bare:
            _refused(await bare.post("/thenextleg/v2/imagine", json={"msg": "a boat"}), 401)
            _refused(await bare.get("/thenextleg/v2/message/x"), 401)
            _refused(await bare.get("/thenextleg/v2/info", params={"authToken": "invalid-key"}),
                     401)
            # the documented GET forms with ?authToken=
            q = {"authToken": TOKEN}
            grid = await box.grid()
            r = await bare.get("/thenextleg/v2/button", params={
                **q, "buttonMessageId": grid["buttonMessageId"], "button": "U1"})
            assert r.status_code == 200 and r.json()["success"] is True
            up = await box.done(r.json()["messageId"])
            assert up["type"] == "button" and up["imageUrl"].endswith("/image.png")
            r = await bare.get(f"/thenextleg/v2/message/{r.json()['messageId']}",
                               params={**q, "expireMins": 5})
            assert r.json()["progress"] == 100
            for path, extra in (
                ("v2/describe", {"url": grid["imageUrls"][0]}),
                ("v2/settings", {}),
                ("v2/slash-commands", {"cmd": "stealth"}),
                ("v2/info", {}),
            ):
                r = await bare.get("/thenextleg/" + path, params={**q, **extra})
                assert r.status_code == 200 and r.json()["success"] is True, (path, r.text)
            assert box.tnl.account(TOKEN).stealth is True
        box.state.accepted_keys = {"only-this"}
        _refused(await box.post("v2/imagine", {"msg": "a boat"}), 401)


# ----------------------------------------------------------------------------- lifecycle
async def test_imagine_envelope_progress_preview_and_nested_response():
    async with sandbox() as box:
        message_id = await box.command("v2/imagine", msg="a lighthouse at dusk --ar 3:2",
                                       ref={"story": 7})
        assert await box.message(message_id) == {"progress": 0, "progressImageUrl": None}
        seen = []
        for _ in range(8):
            box.state.clock.advance(5)
            body = await box.message(message_id)
            if body.get("response"):
                break
            assert isinstance(body["progress"], int) and set(body) == {"progress",
                                                                       "progressImageUrl"}
            seen.append(body["progress"])
            if body["progress"]:
                preview = await box.client.get(body["progressImageUrl"])
                assert preview.status_code == 200 and preview.headers["content-type"] == \
                    "image/png"
        assert seen == sorted(seen) and len(set(seen)) >= 4 and max(seen) < 100
        small = Image.open(io.BytesIO(preview.content))
        response = await box.done(message_id, 0)
        assert RESPONSE_KEYS | {"imageUrl", "imageUrls"} == set(response)
        assert response["originatingMessageId"] == message_id
        assert response["buttonMessageId"] != message_id
        assert response["type"] == "imagine" and response["ref"] == {"story": 7}
        assert response["content"] == "a lighthouse at dusk --ar 3:2"
        assert response["buttons"] == ["U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4"]
        assert ISO.match(response["responseAt"]) and response["responseAt"] > response["createdAt"]
        # the grid is on the CDN that refuses direct fetches; /getImage serves it
        direct = await box.client.get(response["imageUrl"])
        assert direct.status_code == 403
        grid = await box.fetch(response["imageUrl"])
        cells = [await box.fetch(u) for u in response["imageUrls"]]
        assert grid.size == (2 * cells[0].width, 2 * cells[0].height)
        assert cells[0].width / cells[0].height == pytest.approx(1.5, rel=0.02)
        assert _diff(_art.make_grid(cells), grid) < 1
        assert small.width <= grid.width // 4  # the preview is low-res


async def test_expire_mins_turns_an_unfinished_message_incomplete():
    async with sandbox() as box:
        hang = await box.command("v2/imagine", msg="a tower sandbox:hang")
        box.state.clock.advance(30)
        running = await box.message(hang)
        assert running["progress"] == 46 and running["progressImageUrl"]
        box.state.clock.advance(12 * 60)
        assert await box.message(hang) == {"progress": "incomplete"}
        slow = await box.command("v2/imagine", msg="a slow tower")
        box.state.clock.advance(31)
        assert await box.message(slow, expire=0.5) == {"progress": "incomplete"}
        assert (await box.message(slow))["progress"] < 100  # default 12 minutes: still running
        box.state.clock.advance(30)
        assert (await box.message(slow, expire=1))["progress"] == 100
        for bad in ("zero", "0", "-3"):
            r = await box.client.get(f"/thenextleg/v2/message/{slow}", params={"expireMins": bad})
            assert "expireMins" in _refused(r, 400)


# ----------------------------------------------------------------------------- failure codes
async def test_prefilter_400_and_banned_prompt_when_ignored():
    async with sandbox() as box:
        r = await box.post("v2/imagine", {"msg": "a gore scene"})
        assert r.status_code == 400 and r.json() == {"success": False,
                                                      "msg": "Invalid phrase: 'gore'"}
        r = await box.post("v2/imagine", {"msg": "a gore scene", "ignorePrefilter": "false"})
        assert r.status_code == 400
        for flag in ("true", True):
            message_id = await box.command("v2/imagine", msg="a gore scene",
                                           ignorePrefilter=flag)
            assert await box.code(message_id) == "BANNED_PROMPT"
        grid = await box.grid()
        up = await box.press(grid, "U1")
        message_id = await box.command(
            "v2/button", buttonMessageId=up["buttonMessageId"], button="Custom Zoom",
            prompt="a gore scene",
        )
        assert await box.code(message_id) == "BANNED_PROMPT"


async def test_queue_full_when_the_token_has_too_many_jobs_running():
    async with sandbox() as box:
        box.tnl.queue_limit = 2
        first = [await box.command("v2/imagine", msg=f"tower {i}") for i in range(2)]
        third = await box.command("v2/imagine", msg="tower 3")
        other = await box.post("v2/imagine", {"msg": "x"}, headers={"Authorization": "Bearer b"})
        assert other.status_code == 200
        assert await box.code(third, 1) == "QUEUE_FULL"
        box.state.clock.advance(60)
        assert [(await box.message(m))["progress"] for m in first] == [100, 100]
        fourth = await box.command("v2/imagine", msg="tower 4")
        assert (await box.done(fourth))["imageUrls"]


async def test_second_upscale_of_a_quadrant_is_already_requested():
    async with sandbox() as box:
        grid = await box.grid()
        assert (await box.press(grid, "U2"))["imageUrl"]
        again = await box.command("v2/button", buttonMessageId=grid["buttonMessageId"],
                                  button="U2")
        assert await box.code(again) == "ALREADY_REQUESTED_UPSCALE"
        assert (await box.press(grid, "U3"))["imageUrl"]


async def test_no_fast_hours_on_the_account_and_after_slash_fast():
    async with sandbox() as box:
        account = box.tnl.account(TOKEN)
        account.fast_hours = 0
        fast = await box.command("v2/imagine", msg="a river")
        assert await box.code(fast) == "NO_FAST_HOURS"
        assert (await box.done(await box.command("v2/imagine", msg="a river --relax")))
        slash = await box.command("v2/slash-commands", cmd="fast")
        assert await box.code(slash) == "NO_FAST_HOURS"
        relax = await box.command("v2/slash-commands", cmd="relax")
        reply = await box.done(relax)
        assert reply["type"] == "slash-commands" and "fast-hours" in reply["content"]
        assert account.mode == "relax"
        assert (await box.grid("a river"))["imageUrls"]
        account.fast_hours = 1.0
        before = account.fast_hours
        await box.done(await box.command("v2/slash-commands", cmd="fast"))
        await box.grid("a lake")
        assert account.mode == "fast" and account.fast_hours == pytest.approx(before - 1 / 60)


async def test_invalid_parameter_and_button_not_found():
    async with sandbox() as box:
        for msg in ("a cat --ar 0:3", "a cat --ar wide", "a cat --bogus 3"):
            assert await box.code(await box.command("v2/imagine", msg=msg)) == \
                "INVALID_PARAMETER"
        grid = await box.grid()
        for button in ("U5", "🖌️ Vary (Region)", "Zoom Out 2x"):
            message_id = await box.command("v2/button", buttonMessageId=grid["buttonMessageId"],
                                           button=button)
            assert await box.code(message_id) == "BUTTON_NOT_FOUND"
        running = await box.command("v2/imagine", msg="a dog")
        r = await box.post("v2/button", {"buttonMessageId": running, "button": "U1"})
        assert "buttonMessageId" in _refused(r, 404)  # a messageId is not a buttonMessageId


@pytest.mark.parametrize("code", sorted(tnl.CODES - tnl.NOTE_CODES))
async def test_every_terminal_code_by_magic_word(code):
    async with sandbox() as box:
        message_id = await box.command("v2/imagine", msg=f"a cat sandbox:code={code}")
        assert (await box.message(message_id))["progress"] == 0
        assert await box.code(message_id, 1) == code


@pytest.mark.parametrize("code", sorted(tnl.NOTE_CODES))
async def test_note_codes_show_while_queued_and_the_job_goes_on(code):
    async with sandbox() as box:
        message_id = await box.command("v2/imagine", msg=f"a cat sandbox:code={code}")
        queued = await box.message(message_id)
        assert queued["progress"] == 0 and queued["response"]["content"] == code
        assert (await box.done(message_id))["imageUrls"]


async def test_sandbox_fail_is_failed_to_process():
    async with sandbox() as box:
        message_id = await box.command("v2/imagine", msg="a cat sandbox:fail")
        box.state.clock.advance(10)
        assert "response" not in await box.message(message_id)
        assert await box.code(message_id, 15) == "FAILED_TO_PROCESS_YOUR_COMMAND"


# ----------------------------------------------------------------------------- pictures
async def test_upscale_variation_reroll_semantics():
    async with sandbox() as box:
        grid = await box.grid("a pine forest in snow --ar 4:1")
        cells = [await box.fetch(u) for u in grid["imageUrls"]]
        up = await box.press(grid, "U2")
        assert "imageUrls" not in up and up["content"] == grid["content"]
        big = await box.fetch(up["imageUrl"])
        assert big.size == (2 * cells[1].width, 2 * cells[1].height)
        assert _diff(big.resize(cells[1].size, Image.LANCZOS), cells[1]) < 8
        var = await box.press(grid, "V2")
        reroll = await box.press(grid, "🔄")
        v = await box.fetch(var["imageUrls"][0])
        r = await box.fetch(reroll["imageUrls"][0])
        assert var["buttons"] == reroll["buttons"] == grid["buttons"]
        assert _diff(v, cells[1]) < _diff(r, cells[1]) and _diff(r, cells[1]) > 10
        remix = await box.press(grid, "🔄", prompt="a desert at noon --ar 1:1")
        assert remix["content"] == "a desert at noon --ar 1:1"
        assert box.tnl.messages[remix["originatingMessageId"]].aspect_ratio == "1:1"


async def test_upscale_buttons_all_work():
    async with sandbox() as box:
        grid = await box.grid("a harbour at dawn --ar 4:1")
        up = await box.press(grid, "U1")
        assert up["buttons"] == [
            "Vary (Strong)", "Vary (Subtle)", "🖌️ Vary (Region)", "Upscale (2x)", "Upscale (4x)",
            "Zoom Out 2x", "Zoom Out 1.5x", "Custom Zoom", "Make Square", "⬅️", "➡️", "⬆️", "⬇️",
        ]
        source = await box.fetch(up["imageUrl"])
        w, h = source.size
        expect_cell = {
            "Vary (Strong)": (w // 2, h // 2),
            "Vary (Subtle)": (w // 2, h // 2),
            "Zoom Out 2x": (w // 2, h // 2),
            "Zoom Out 1.5x": (w // 2, h // 2),
            "Make Square": (512, 512),
            "⬅️": (w // 2 + 2 * round(w // 2 * 0.25), h // 2),
            "➡️": (w // 2 + 2 * round(w // 2 * 0.25), h // 2),
            "⬆️": (w // 2, h // 2 + 2 * round(h // 2 * 0.25)),
            "⬇️": (w // 2, h // 2 + 2 * round(h // 2 * 0.25)),
        }
        for button, size in expect_cell.items():
            result = await box.press(up, button)
            assert result["buttons"][:4] == ["U1", "U2", "U3", "U4"], button
            if button in ("Vary (Strong)", "Zoom Out 2x", "Make Square", "⬅️", "⬇️"):
                assert (await box.fetch(result["imageUrls"][0])).size == size, button
            else:  # drawn like the ones above; check the recipe without paying for pixels
                record = box.tnl.messages[result["originatingMessageId"]]
                assert record.kind in ("variation", "outpaint", "pan"), button
        zoom = await box.press(up, "Custom Zoom", zoom=1.5, ar="1:1", prompt="a harbour, wide")
        assert (await box.fetch(zoom["imageUrls"][0])).size == (512, 512)
        assert zoom["content"] == "a harbour, wide"
        r = await box.post("v2/button", {"buttonMessageId": up["buttonMessageId"],
                                         "button": "Custom Zoom", "zoom": 3})
        assert "zoom" in _refused(r, 400)
        for button, factor in (("Upscale (2x)", 2), ("Upscale (4x)", 4)):
            result = await box.press(up, button)
            assert result["buttons"] == ["Vary (Strong)", "Vary (Subtle)"]
            assert result["imageUrl"].endswith("/image.png") and "imageUrls" not in result
            assert box.tnl.messages[result["originatingMessageId"]].variant == f"{factor}x"
        two = box.tnl.cells((await box.press(up, "Upscale (2x)"))["originatingMessageId"])
        assert two[0].size == (2 * w, 2 * h)
        # v6 offers the subtle/creative upscales instead, and no Make Square on a square image
        square = await box.press(await box.grid("a harbour --v 6"), "U4")
        assert "Upscale (Subtle)" in square["buttons"] and "Upscale (2x)" not in square["buttons"]
        assert "Make Square" not in square["buttons"]
        up6 = await box.press(await box.grid("a harbour --ar 4:1 --v 6"), "U2")
        for button in ("Upscale (Subtle)", "Upscale (Creative)"):
            result = await box.press(up6, button)
            assert result["buttons"] == ["Vary (Strong)", "Vary (Subtle)"]
        assert (await box.fetch(result["imageUrl"])).size == (2 * w, 2 * h)


async def test_vary_region_changes_only_the_masked_pixels():
    async with sandbox() as box:
        grid = await box.grid("a lighthouse at dusk --ar 4:1")
        up = await box.press(grid, "U3")
        source = await box.fetch(up["imageUrl"])
        mask = Image.new("L", source.size, 0)
        mask.paste(255, (40, 20, 300, 120))
        # PNG or WebP, bare base64 (the seed's form) or a data: URI: the same mask
        stored = set()
        for fmt, prefix in (("PNG", False), ("PNG", True), ("WEBP", False), ("WEBP", True)):
            message_id = await box.command(
                "v2/button", buttonMessageId=up["buttonMessageId"], button="🖌️ Vary (Region)",
                prompt="a red balloon", mask=_b64(mask, fmt, prefix),
            )
            stored.add(box.tnl.messages[message_id].mask)
        assert len(stored) == 1
        region = await box.done(message_id)
        assert region["buttons"][:4] == ["U1", "U2", "U3", "U4"]
        assert region["content"] == "a red balloon"
        out = _arr(await box.fetch(region["imageUrls"][0]))
        changed = np.abs(out - _arr(source)).sum(axis=2) > 0
        inside = np.asarray(mask) > 127
        assert changed[inside].any() and not changed[~inside].any()


async def test_vary_region_rejects_bad_masks():
    async with sandbox() as box:
        grid = await box.grid("a lighthouse --ar 4:1")
        up = await box.press(grid, "U1")
        body = {"buttonMessageId": up["buttonMessageId"], "button": "🖌️ Vary (Region)"}
        msg = _refused(await box.post("v2/button", {**body, "mask": _b64(Image.new("L", (64, 64),
                                                                                   255))}), 400)
        assert msg == "Mask size 64x64 does not match the image size 1024x256"
        assert "empty" in _refused(await box.post("v2/button", {
            **body, "mask": _b64(Image.new("L", (1024, 256), 0))}), 400)
        assert _refused(await box.post("v2/button", body), 400) == "mask is required"
        assert "Invalid mask" in _refused(await box.post("v2/button", {**body, "mask": "@@"}), 400)


# ----------------------------------------------------------------------------- other commands
async def test_describe_blend_seed_info_settings_slash():
    async with sandbox() as box:
        grid = await box.grid("a sailing boat --ar 3:2 --seed 4242")
        describe = await box.done(await box.command("v2/describe", url=grid["imageUrls"][0]))
        assert describe["type"] == "describe" and len(describe["content"]) == 4
        assert all("sailing boat" in p and "--ar 3:2" in p for p in describe["content"])
        blend = await box.done(await box.command("v2/blend", urls=grid["imageUrls"][:2]))
        assert blend["type"] == "blend" and len(blend["imageUrls"]) == 4
        assert blend["buttons"][0] == "U1"
        for bad in ({}, {"urls": ["x"]}, {"urls": "a b"}):
            assert "urls" in _refused(await box.post("v2/blend", bad), 400)
        seed = await box.done(await box.command("v2/seed", messageId=grid["originatingMessageId"]))
        assert seed["type"] == "seed" and seed["seed"] == "4242" and "4242" in seed["content"]
        info = await box.done(await box.command("v2/info"))
        assert info["type"] == "info"
        assert {"Fast Time Remaining", "Job Mode", "Visibility Mode"} <= set(info["content"])
        assert re.match(r"^\d+\.\d\d/15\.0 hours \(\d+\.\d\d%\)$",
                        info["content"]["Fast Time Remaining"])
        settings = await box.client.get("/thenextleg/v2/settings")
        current = await box.done(settings.json()["messageId"])
        assert current["content"] == "Adjust your settings here."
        assert {"MJ version 5", "Fast mode", "Relax mode", "Stealth mode"} <= set(
            current["buttons"])
        await box.done(await box.command("v2/settings", settingsToggle="Relax mode"))
        assert box.tnl.account(TOKEN).mode == "relax"
        await box.done(await box.command("v2/settings", settingsToggle="MJ version 6"))
        up = await box.press(await box.grid("a cat"), "U1")
        assert "Upscale (Creative)" in up["buttons"]
        assert "settingsToggle" in _refused(await box.post("v2/settings", {
            "settingsToggle": "Ultra mode"}), 400)
        assert "cmd" in _refused(await box.post("v2/slash-commands", {"cmd": "public"}), 400)
        assert "describe" not in _refused(await box.post("v2/describe", {}), 400)
        bad = await box.command("v2/describe", url="http://127.0.0.1:9/nothing.png")
        assert await box.code(bad) == "INVALID_LINK"


async def test_get_image_serves_both_image_families():
    async with sandbox() as box:
        grid = await box.grid()
        for url in (grid["imageUrl"], grid["imageUrls"][2]):
            r = await box.post("getImage", {"imgUrl": url})
            assert r.status_code == 200 and r.content.startswith(b"\x89PNG")
        assert (await box.client.get(grid["imageUrls"][2])).status_code == 200
        assert (await box.client.get(grid["imageUrl"])).status_code == 403
        assert _refused(await box.post("getImage", {}), 400) == "imgUrl is required"
        _refused(await box.post("getImage", {"imgUrl": "ftp://x/y.png"}), 400)
        missing = grid["imageUrl"].replace(grid["originatingMessageId"], "A" * 20)
        _refused(await box.post("getImage", {"imgUrl": missing}), 404)
        async with httpx.AsyncClient(transport=box.client._transport, base_url=BASE) as bare:
            _refused(await bare.post("/thenextleg/getImage", json={"imgUrl": grid["imageUrl"]}),
                     401)


async def test_errors_routes_and_faults_use_the_tnl_shape():
    async with sandbox() as box:
        _refused(await box.client.get("/thenextleg/v2/message/NoSuchMessage00000000"), 404)
        mine = await box.command("v2/imagine", msg="a cat")
        r = await box.client.get(f"/thenextleg/v2/message/{mine}",
                                 headers={"Authorization": "Bearer someone-else"})
        _refused(r, 404)
        _refused(await box.client.get("/thenextleg/v2/imagine"), 405)
        _refused(await box.client.get("/thenextleg/v2/nothing-here"), 404)
        assert _refused(await box.post("v2/imagine", {}), 400) == "msg is required"
        r = await box.client.post("/thenextleg/v2/imagine", content=b"{not json")
        _refused(r, 400)
        assert (await box.post("v2/imagine/", {"msg": "a slash"})).status_code == 200
        box.state.faults.add("/thenextleg/v2/imagine", status=503)
        _refused(await box.post("v2/imagine", {"msg": "x"}), 503)
        box.state.faults.add("/thenextleg/v2/message/*", status=429)
        r = await box.client.get(f"/thenextleg/v2/message/{mine}")
        _refused(r, 429)
        assert r.headers["retry-after"] == "1"


async def test_webhook_override_gets_the_final_response_once():
    async with sandbox(speed=1000) as box:
        hook = f"{BASE}/_sandbox/webhook-sink/tnl"
        ok = await box.command("v2/imagine", msg="a cat", ref="r1", webhookOverride=hook)
        bad = await box.command("v2/imagine", msg="a cat sandbox:code=BLOCKED", ref="r2",
                                webhookOverride=hook + "2")
        for _ in range(1000):
            if len(box.state.webhooks) >= 2:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        by_ref = {h["body"]["ref"]: h for h in box.state.webhooks}
        assert len(box.state.webhooks) == 2
        assert by_ref["r1"]["body"]["originatingMessageId"] == ok
        assert len(by_ref["r1"]["body"]["imageUrls"]) == 4 and "progress" not in by_ref["r1"][
            "body"]
        assert by_ref["r2"]["body"]["content"] == "BLOCKED"
        assert by_ref["r2"]["body"]["originatingMessageId"] == bad
        r = await box.post("v2/imagine", {"msg": "x", "webhookOverride": "ftp://x"})
        assert "webhookOverride" in _refused(r, 400)


# ----------------------------------------------------------------------------- loopback
def test_a_third_party_client_over_loopback(live_sandbox):
    base = live_sandbox.url + "/thenextleg"

    def wait(client: httpx.Client, message_id: str) -> dict[str, Any]:
        for _ in range(500):
            body = client.get(f"{base}/v2/message/{message_id}?expireMins=12").json()
            if body["progress"] == 100:
                return body["response"]
            assert body["progress"] != "incomplete"
            import time

            time.sleep(0.005)
        raise AssertionError("no result")

    with httpx.Client(headers=AUTH, timeout=30) as client:
        r = client.post(f"{base}/v2/imagine", json={"msg": "a lighthouse --ar 16:9"})
        assert r.status_code == 200 and r.json()["success"] is True
        grid = wait(client, r.json()["messageId"])
        assert grid["imageUrl"].startswith(base)
        assert client.get(grid["imageUrl"]).status_code == 403
        data = client.post(f"{base}/getImage", json={"imgUrl": grid["imageUrl"]}).content
        assert Image.open(io.BytesIO(data)).width > Image.open(io.BytesIO(data)).height
        r = client.get(f"{base}/v2/button", headers={"Authorization": ""}, params={
            "authToken": TOKEN, "buttonMessageId": grid["buttonMessageId"], "button": "U4"})
        up = wait(client, r.json()["messageId"])
        assert "🖌️ Vary (Region)" in up["buttons"]
        assert client.post(f"{live_sandbox.url}/thenextleg/v2/imagine", json={"msg": "x"},
                           headers={"Authorization": "nope"}).status_code == 401
