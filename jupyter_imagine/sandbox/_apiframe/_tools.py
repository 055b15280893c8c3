"""APIFRAME's describe, blend, seed, faceswap, fetch and account endpoints, and the CDN."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ... import imaging
from ..._secrets import get_logger
from .._art import _midjourney as art
from ._core import ApiframeCore
from ._parsing import descriptions, has_image, ratio_of
from ._wire import EMAIL, ApiError, error_response

logger = get_logger(__name__)


class Tools(ApiframeCore):
    """Describe, blend, seed, faceswap, fetching tasks, the account and the CDN."""

    async def describe(self, request: Request, body: dict[str, Any]) -> Response:
        url = body.get("image_url")
        data = await self.source(url, "image_url")
        known = self.internal(url)
        hint = known[0].prompt if known else ""
        width, height = imaging.image_size(data)
        task = self.new_task(
            request, body, kind="describe", prompt="", aspect_ratio=ratio_of(width, height),
            seed=art.derive(data), image_url=url,
        )
        task.content = descriptions(hint, task.seed, task.aspect_ratio)
        return self.accept(task)

    async def blend(self, request: Request, body: dict[str, Any]) -> Response:
        urls = body.get("image_urls")
        if urls in (None, ""):
            raise ApiError(400, "image_urls is required")
        if not isinstance(urls, list) or not 2 <= len(urls) <= 5:
            raise ApiError(400, "image_urls must be a list of 2 to 5 image URLs")
        dimension = body.get("dimension") or "square"
        ratios = {"square": "1:1", "portrait": "2:3", "landscape": "3:2"}
        if dimension not in ratios:
            raise ApiError(400, "dimension must be square, portrait or landscape")
        sources = [await self.source(u, f"image_urls[{i}]") for i, u in enumerate(urls)]
        task = self.new_task(
            request, body, kind="blend", prompt="", aspect_ratio=ratios[dimension],
            seed=art.derive(*sources), sources=sources,
        )
        return self.accept(task)

    async def seed(self, request: Request, body: dict[str, Any]) -> Response:
        target_id = body.get("task_id")
        if target_id in (None, ""):
            raise ApiError(400, "task_id is required")
        target = self.task(target_id)
        if target.kind in ("describe", "seed"):
            raise ApiError(400, "Task has no seed")
        if not target.finished(self.now()):
            raise ApiError(400, "Task is not finished")
        task = self.child_task(request, body, target, "seed", prompt="", seed=target.seed)
        return self.accept(task)

    async def faceswap(self, request: Request, body: dict[str, Any]) -> Response:
        target = await self.source(body.get("target_image_url"), "target_image_url")
        swap = await self.source(body.get("swap_image_url"), "swap_image_url")
        width, height = imaging.image_size(target)
        task = self.new_task(
            request, body, kind="faceswap", prompt="", aspect_ratio=ratio_of(width, height),
            seed=art.derive(target, swap), sources=[target, swap],
        )
        return self.accept(task)

    async def fetch(self, request: Request, body: dict[str, Any]) -> Response:
        task_id = body.get("task_id")
        if task_id in (None, ""):
            raise ApiError(400, "task_id is required")
        return JSONResponse(self.view(self.task(task_id), self.base_url(request)))

    async def fetch_many(self, request: Request, body: dict[str, Any]) -> Response:
        ids = body.get("task_ids")
        if ids in (None, ""):
            raise ApiError(400, "task_ids is required")
        if (
            not isinstance(ids, list)
            or not 2 <= len(ids) <= 20
            or not all(isinstance(i, str) for i in ids)
        ):
            raise ApiError(400, "task_ids must be a list of 2 to 20 task ids")
        base, now = self.base_url(request), self.now()
        tasks = [
            self.view(self.get(i), base, now)  # type: ignore[arg-type]
            if self.get(i) is not None
            else {"task_id": i, "status": "failed", "message": "Task not found"}
            for i in ids
        ]
        return JSONResponse({"tasks": tasks})

    async def account(self, request: Request, body: dict[str, Any]) -> Response:
        now = self.now()
        total = 0
        for task in self.all_tasks():
            if task.kind not in ("describe", "seed") and task.finished(now):
                total += 4 if task.grid else 1
        return JSONResponse(
            {
                "email": EMAIL,
                "credits": self.credits,
                "plan": "sandbox",
                "next_billing_date": None,
                "total_images": total,
            }
        )

    async def cdn(self, request: Request) -> Response:
        task = self.get(request.path_params["task_id"])
        name = request.path_params["name"]
        if task is None or not task.finished(self.now()) or not has_image(task, name):
            return error_response(404, "Image not found")
        try:
            data = await run_in_threadpool(self.png, task, name)
        except Exception:
            logger.exception("sandbox apiframe could not draw %s of task %s", name, task.id)
            return error_response(500)
        return Response(
            data,
            media_type="image/png",
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )
