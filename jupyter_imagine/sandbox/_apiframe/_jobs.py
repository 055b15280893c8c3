"""APIFRAME's drawing endpoints: imagine, reroll, upscales, variations, inpaint, outpaint, pan."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PIL import Image
from starlette.requests import Request
from starlette.responses import Response

from ... import imaging
from .._art import _midjourney as art
from .._art import read_zoom
from ._core import ApiframeCore
from ._parsing import (
    check_highres,
    has_image,
    invalid,
    read_aspect,
    read_choice,
    read_index,
    read_prompt,
)
from ._wire import AR_FLAG, SEED_FLAG, ApiError

if TYPE_CHECKING:
    from ._records import Task


class Jobs(ApiframeCore):
    """The jobs that draw: imagine, reroll, upscales, variations, inpaint, outpaint, pan."""

    # ----------------------------------------------------------------- endpoints
    async def imagine(self, request: Request, body: dict[str, Any]) -> Response:
        prompt = read_prompt(body, required=True)
        ratio = body.get("aspect_ratio")
        if ratio in (None, ""):
            flag = AR_FLAG.search(prompt)
            ratio = flag[1] if flag else "1:1"
        ratio = read_aspect(ratio)
        self.check_prompt(prompt)
        flag = SEED_FLAG.search(prompt)
        seed = (
            int(flag[1]) & 0xFFFFFFFF
            if flag
            else art.derive(self.state.seed, "prompt", " ".join(prompt.split()))
        )
        task = self.new_task(
            request, body, kind="imagine", prompt=prompt, aspect_ratio=ratio, seed=seed
        )
        return self.accept(task)

    async def reroll(self, request: Request, body: dict[str, Any]) -> Response:
        parent = self.finished_parent(body, kinds=art.GRID_KINDS, what="a grid task")
        ratio = body.get("aspect_ratio")
        ratio = parent.aspect_ratio if ratio in (None, "") else read_aspect(ratio)
        prompt = self.child_prompt(body, parent)
        task = self.child_task(request, body, parent, "reroll", prompt=prompt, aspect_ratio=ratio)
        return self.accept(task)

    async def upscale_1x(self, request: Request, body: dict[str, Any]) -> Response:
        index = read_index(body)
        parent = self.finished_parent(body, kinds=art.GRID_KINDS, what="a grid task")
        task = self.child_task(
            request, body, parent, "upscale", task_type=f"upscale#{index}", seed=parent.seed,
            index=index,
        )
        return self.accept(task)

    async def upscale_alt(self, request: Request, body: dict[str, Any]) -> Response:
        kind = read_choice(body, "type", ("subtle", "creative"), "subtle or creative")
        parent = self.finished_parent(body, kinds={"upscale"}, what="an upscale-1x task")
        task = self.child_task(
            request, body, parent, "upscale-alt", task_type=f"upscale-{kind}", variant=kind
        )
        return self.accept(task)

    async def upscale_highres(self, request: Request, body: dict[str, Any]) -> Response:
        factor = read_choice(body, "type", ("2x", "4x"), "2x or 4x")
        parent_id, url = body.get("parent_task_id"), body.get("image_url")
        if parent_id in (None, "") and url in (None, ""):
            raise ApiError(400, "parent_task_id or image_url is required")
        index: int | None = None
        parent: Task | None = None
        sources: list[bytes] = []
        if parent_id not in (None, ""):
            parent = self.task(parent_id)
            if parent.kind == "describe" or parent.kind == "seed":
                raise ApiError(400, "Parent task must be an image task")
            if not parent.finished(self.now()):
                raise ApiError(400, "Parent task is not finished")
            if parent.grid:
                index = read_index(body)
            size = self.image_size(parent)
        else:
            known = self.internal(url) if isinstance(url, str) else None
            if known is not None and has_image(known[0], known[1]):
                size = self.image_size(known[0])
                if known[1] == "grid.png":
                    size = (2 * size[0], 2 * size[1])
                check_highres(size)
            sources = [await self.source(url, "image_url")]
            size = imaging.image_size(sources[0])
        check_highres(size)
        task = self.new_task(
            request,
            body,
            parent=parent,
            kind="upscale-highres",
            task_type=f"upscale-{factor}",
            prompt=parent.prompt if parent else "",
            aspect_ratio=parent.aspect_ratio if parent else "1:1",
            seed=parent.seed if parent else art.derive(url),
            index=index,
            variant=factor,
            sources=sources,
        )
        return self.accept(task, f"upscale-highres-{factor}")

    async def variations(self, request: Request, body: dict[str, Any]) -> Response:
        raw = body.get("index")
        if raw in ("strong", "subtle"):
            parent = self.finished_parent(body, kinds={"upscale"}, what="an upscale-1x task")
            index, variant = None, str(raw)
        else:
            index, variant = read_index(body), None
            parent = self.finished_parent(body, kinds=art.GRID_KINDS, what="a grid task")
        prompt = self.child_prompt(body, parent)
        label = variant or str(index)
        task = self.child_task(
            request, body, parent, "variation", task_type=f"variation-{label}", prompt=prompt,
            seed=self.child_seed(parent, f"variation-{label}"), index=index, variant=variant,
        )
        return self.accept(task)

    async def inpaint(self, request: Request, body: dict[str, Any]) -> Response:
        parent = self.finished_parent(body, kinds={"upscale"}, what="an upscale-1x task")
        raw = body.get("mask")
        if raw in (None, ""):
            raise ApiError(400, "mask is required")
        if not isinstance(raw, str):
            raise ApiError(400, "Invalid mask image")
        try:
            binary = art.binary_mask(raw, art.upscale_size(parent.aspect_ratio))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        prompt = self.child_prompt(body, parent)
        mask = imaging.to_png(Image.fromarray(binary, "L"))
        task = self.child_task(request, body, parent, "inpaint", prompt=prompt, mask=mask)
        return self.accept(task)

    async def outpaint(self, request: Request, body: dict[str, Any]) -> Response:
        raw = body.get("zoom_ratio")
        if raw in (None, ""):
            raise ApiError(400, "zoom_ratio is required")
        zoom = read_zoom(raw, "zoom_ratio", invalid)
        ratio = body.get("aspect_ratio")
        ratio = "1:1" if ratio in (None, "") else read_aspect(ratio)
        parent = self.finished_parent(body, kinds={"upscale"}, what="an upscale-1x task")
        prompt = self.child_prompt(body, parent)
        task = self.child_task(
            request, body, parent, "outpaint", task_type=f"outpaint-{zoom:g}", prompt=prompt,
            aspect_ratio=ratio, variant=f"{zoom:g}",
        )
        return self.accept(task)

    async def pan(self, request: Request, body: dict[str, Any]) -> Response:
        direction = read_choice(
            body, "direction", ("up", "down", "left", "right"), "up, down, left or right"
        )
        parent = self.finished_parent(body, kinds={"upscale"}, what="an upscale-1x task")
        prompt = self.child_prompt(body, parent)
        task = self.child_task(
            request, body, parent, "pan", task_type=f"pan-{direction}", prompt=prompt,
            variant=direction,
        )
        return self.accept(task)
