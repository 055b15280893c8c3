"""TNL's Midjourney commands: imagine, button, describe, blend, seed."""

from __future__ import annotations

import math
import uuid
from typing import TYPE_CHECKING, Any

from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ... import imaging
from .._art import _midjourney as art
from ._core import TheNextLegCore
from ._parsing import (
    apply_magic_words,
    descriptions,
    ratio_of,
    read_aspect,
    read_flags,
    read_mode,
    read_version,
    read_zoom,
    truthy,
    upscale_buttons,
)
from ._wire import (
    ALT_UPSCALES,
    DURATION,
    GPU_MINUTES,
    GRID_BUTTONS,
    HIGHRES,
    LEADING_URL,
    PANS,
    SEED_FLAG,
    VARY_REGION,
    VARY_UPSCALE,
    ZOOMS,
    ApiError,
)

if TYPE_CHECKING:
    from ._records import Message


class Commands(TheNextLegCore):
    """The Midjourney commands: imagine, the buttons, describe, blend, seed."""

    # ----------------------------------------------------------------- commands
    async def imagine(self, request: Request, body: dict[str, Any], key: str) -> Response:
        msg = body.get("msg")
        if not isinstance(msg, str) or not msg.strip():
            raise ApiError(400, "msg is required")
        msg = msg.strip()
        word = self.state.banned_word(msg)
        bypass = truthy(body.get("ignorePrefilter"))
        if word is not None and not bypass:
            return JSONResponse({"success": False, "msg": f"Invalid phrase: '{word}'"},
                                status_code=400)
        account = self.account(key)
        urls: list[str] = []
        text = msg
        while (match := LEADING_URL.match(text)) is not None:
            urls.append(match[1])
            text = text[match.end():]
        ratio, code = read_flags(text)
        mode = read_mode(text, account.mode)
        flag = SEED_FLAG.search(text)
        seed = (
            int(flag[1]) & 0xFFFFFFFF
            if flag
            else art.derive(self.state.seed, "prompt", " ".join(text.split()))
        )
        sources: list[bytes] = []
        for url in urls:
            data = await self.source(url)
            if data is None:
                code = code or "INVALID_LINK"
            else:
                sources.append(data)
        version = read_version(text, account.version)
        message = self.new(
            request, body, key,
            type="imagine",
            kind="blend" if sources else "imagine",
            prompt=msg,
            aspect_ratio=ratio,
            seed=seed,
            sources=sources,
            content=msg,
            buttons=list(GRID_BUTTONS),
            version=version,
            mode=mode,
        )
        if word is not None:
            self.fail(message, "BANNED_PROMPT")
        elif code is not None:
            self.fail(message, code)
        else:
            apply_magic_words(message, msg)
        return self.accept(message, cost=GPU_MINUTES["grid"])

    def _button_target(self, body: dict[str, Any], key: str) -> tuple[Message, str, str]:
        """The parent message, the button and the (stripped) new prompt of a button call."""
        button_id = body.get("buttonMessageId")
        button = body.get("button")
        if not isinstance(button_id, str) or not button_id.strip():
            raise ApiError(400, "buttonMessageId is required")
        if not isinstance(button, str) or not button.strip():
            raise ApiError(400, "button is required")
        parent = self.by_button.get(button_id.strip())
        if parent is None or parent.key != key:
            raise ApiError(404, "buttonMessageId not found")
        prompt = body.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise ApiError(400, "prompt must be a string")
        return parent, button, (prompt or "").strip()

    async def button(self, request: Request, body: dict[str, Any], key: str) -> Response:
        parent, button, prompt = self._button_target(body, key)
        account = self.account(key)
        common: dict[str, Any] = {
            "type": "button",
            "button": button,
            "parent_id": parent.id,
            "version": parent.version,
            "mode": read_mode(prompt or parent.prompt, account.mode),
        }
        done = parent.phase(self.now(), math.inf)[0] == "done"
        if not done or button not in parent.buttons:
            message = self.new(request, body, key, kind="imagine", prompt=parent.prompt,
                               aspect_ratio=parent.aspect_ratio, seed=parent.seed,
                               content=parent.prompt, **common)
            self.fail(message, "BUTTON_NOT_FOUND")
            return self.accept(message)
        if button[:1] == "U" and button[1:].isdigit():
            index = int(button[1:])
            fields = dict(kind="upscale", index=index, seed=parent.seed,
                          duration=DURATION["upscale"], buttons=upscale_buttons(parent))
            already = index in parent.upscaled
            parent.upscaled.add(index)
            message = self.new(request, body, key, prompt=parent.prompt,
                               aspect_ratio=parent.aspect_ratio, content=parent.prompt,
                               **fields, **common)
            if already:
                self.fail(message, "ALREADY_REQUESTED_UPSCALE")
            return self.accept(message, cost=GPU_MINUTES["upscale"])
        new_prompt = prompt or parent.prompt
        ratio = parent.aspect_ratio
        fields, ratio, cost = await self._child_fields(parent, button, body, prompt, ratio)
        fields.setdefault("buttons", list(GRID_BUTTONS))
        message = self.new(request, body, key, prompt=new_prompt, aspect_ratio=ratio,
                           content=new_prompt, **fields, **common)
        if self.state.banned_word(new_prompt) is not None:
            self.fail(message, "BANNED_PROMPT")
        else:
            apply_magic_words(message, new_prompt if prompt else "")
        return self.accept(message, cost=cost)

    async def _child_fields(
        self, parent: Message, button: str, body: dict[str, Any], prompt: str, ratio: str
    ) -> tuple[dict[str, Any], str, float]:
        """The new message's fields, aspect ratio and GPU cost for a ``button`` that draws."""
        cost = GPU_MINUTES["grid"]
        new_prompt = prompt or parent.prompt
        fields: dict[str, Any]
        if button[:1] == "V" and button[1:].isdigit():
            fields = dict(kind="variation", index=int(button[1:]),
                          seed=self.child_seed(parent, button))
        elif button == "🔄":
            ratio = read_flags(new_prompt)[0] if prompt else ratio
            fields = dict(kind="reroll", seed=self.child_seed(parent, "reroll"))
        elif button in VARY_UPSCALE:
            fields = dict(kind="variation", variant=VARY_UPSCALE[button],
                          seed=self.child_seed(parent, button))
        elif button == VARY_REGION:
            mask = await self._mask(body.get("mask"), parent)
            fields = dict(kind="inpaint", mask=mask, seed=self.child_seed(parent, "inpaint"))
        elif button in ZOOMS or button in ("Custom Zoom", "Make Square"):
            default = 1.0 if button == "Make Square" else read_zoom(body.get("zoom"))
            zoom = ZOOMS.get(button, default)
            if button == "Custom Zoom" and body.get("ar") not in (None, ""):
                ratio = read_aspect(body.get("ar"))
            elif button == "Make Square":
                ratio = "1:1"
            fields = dict(kind="outpaint", variant=f"{zoom:g}",
                          seed=self.child_seed(parent, "outpaint"))
        elif button in PANS:
            size = await run_in_threadpool(lambda: self.cells(parent.id)[0].size)
            cell = art.pan_size(size, PANS[button])
            ratio = ratio_of(*cell)
            fields = dict(kind="pan", variant=PANS[button], seed=self.child_seed(parent, "pan"))
        elif button in HIGHRES:
            fields = dict(kind="upscale-highres", variant=HIGHRES[button], seed=parent.seed,
                          duration=DURATION["upscale-highres"],
                          buttons=["Vary (Strong)", "Vary (Subtle)"])
            cost = GPU_MINUTES["upscale-highres"]
        elif button in ALT_UPSCALES:
            fields = dict(kind="upscale-alt", variant=ALT_UPSCALES[button],
                          seed=self.child_seed(parent, button),
                          duration=DURATION["upscale-alt"],
                          buttons=["Vary (Strong)", "Vary (Subtle)"])
            cost = GPU_MINUTES["upscale-alt"]
        else:  # listed but unknown to the emulator: cannot happen, the lists are ours
            raise ApiError(400, f"button {button!r} is not supported")
        return fields, ratio, cost

    async def _mask(self, raw: Any, parent: Message) -> bytes:
        if raw in (None, ""):
            raise ApiError(400, "mask is required")
        if not isinstance(raw, str):
            raise ApiError(400, "Invalid mask image")
        want = await run_in_threadpool(lambda: self.cells(parent.id)[0].size)
        try:
            binary = art.binary_mask(raw, want)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return imaging.to_png(Image.fromarray(binary, "L"))

    async def describe(self, request: Request, body: dict[str, Any], key: str) -> Response:
        url = body.get("url")
        if not isinstance(url, str) or not url.strip():
            raise ApiError(400, "url is required")
        data = await self.source(url.strip())
        known = self.internal(url)
        hint = known[0].prompt if known else ""
        if data is not None:
            width, height = imaging.image_size(data)
            ratio = ratio_of(width, height)
        else:
            ratio = "1:1"
        seed = art.derive(data or url)
        message = self.new(request, body, key, type="describe", kind="describe", prompt="",
                           aspect_ratio=ratio, seed=seed, duration=DURATION["describe"],
                           content=descriptions(hint, seed, ratio))
        if data is None:
            self.fail(message, "INVALID_LINK")
        return self.accept(message, cost=GPU_MINUTES["describe"])

    async def blend(self, request: Request, body: dict[str, Any], key: str) -> Response:
        urls = body.get("urls")
        if urls in (None, ""):
            raise ApiError(400, "urls is required")
        if not isinstance(urls, list) or not 2 <= len(urls) <= 5 or not all(
            isinstance(u, str) and u.strip() for u in urls
        ):
            raise ApiError(400, "urls must be a list of 2 to 5 image URLs")
        sources = [await self.source(u.strip()) for u in urls]
        ok = [s for s in sources if s is not None]
        message = self.new(request, body, key, type="blend", kind="blend", prompt="",
                           aspect_ratio="1:1", seed=art.derive(*ok) if ok else 0, sources=ok,
                           content="", buttons=list(GRID_BUTTONS),
                           mode=self.account(key).mode)
        if len(ok) != len(sources):
            self.fail(message, "INVALID_LINK")
        return self.accept(message, cost=GPU_MINUTES["grid"])

    async def seed(self, request: Request, body: dict[str, Any], key: str) -> Response:
        target_id = body.get("messageId")
        if not isinstance(target_id, str) or not target_id.strip():
            raise ApiError(400, "messageId is required")
        target = self.messages.get(target_id.strip()) or self.by_button.get(target_id.strip())
        if target is None or target.key != key:
            raise ApiError(404, "Message not found")
        if not target.pictures:
            raise ApiError(400, "Message has no seed")
        if target.phase(self.now(), math.inf)[0] != "done":
            raise ApiError(400, "Message is not finished")
        job_id = str(uuid.UUID(int=art.derive(target.id) << 96 | art.derive(target.seed)))
        message = self.new(request, body, key, type="seed", kind="seed", prompt="",
                           aspect_ratio=target.aspect_ratio, seed=target.seed,
                           duration=DURATION["seed"], parent_id=target.id,
                           seed_value=str(target.seed),
                           content=f"**Job ID**: {job_id}\n**seed** {target.seed}")
        return self.accept(message)
