"""The APIFRAME emulator's state and shared machinery: tasks, views, pictures, sources
and the endpoint wrapper."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ... import imaging
from ...errors import InvalidRequest
from .. import _art
from .. import _http as http
from .._art import _midjourney as art
from .._state import SandboxState, Snapshot, watch_and_post
from ._parsing import has_image, invalid, read_process_mode, read_prompt, read_webhook
from ._records import Task
from ._wire import (
    CDN_PATH,
    CREDITS,
    FAIL_MESSAGE,
    NAME,
    PNG_LEVEL,
    PREFIX,
    START_CREDITS,
    ApiError,
    error_response,
)

if TYPE_CHECKING:
    from ._records import Handler


class ApiframeCore:
    """The APIFRAME emulator of one sandbox (``state.providers["apiframe"]``).

    Attributes:
        credits: what ``/account`` reports; each accepted submit pays its price.
        tasks: the sandbox's task table (``state.tasks``); this emulator's records there are
            :class:`Task` objects keyed by their UUID.
    """

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.tasks: dict[Any, Any] = state.tasks
        self.credits = START_CREDITS

    def get(self, task_id: Any) -> Task | None:
        """This provider's task ``task_id``, or ``None``."""
        try:
            task = self.tasks.get(task_id)
        except TypeError:  # unhashable
            return None
        return task if isinstance(task, Task) else None

    def all_tasks(self) -> list[Task]:
        return [t for t in list(self.tasks.values()) if isinstance(t, Task)]

    # ----------------------------------------------------------------- helpers
    def now(self) -> float:
        return self.state.clock.now()

    def base_url(self, request: Request) -> str:
        """Where this provider is reached from the client that sent ``request``."""
        return str(request.base_url).rstrip("/") + PREFIX

    def task(self, task_id: Any) -> Task:
        task = self.get(task_id) if isinstance(task_id, str) else None
        if task is None:
            raise ApiError(404, "Task not found")
        return task

    def view(self, task: Task, base: str, now: float | None = None) -> dict[str, Any]:
        """The object ``/fetch`` answers (and webhooks carry) for ``task`` now."""
        status, percentage, _ = task.phase(self.now() if now is None else now)
        obj: dict[str, Any] = {"task_id": task.id, "task_type": task.task_type, "status": status}
        if status == "processing" and task.kind != "seed":
            obj["percentage"] = str(percentage)
        elif status == "failed":
            obj["message"] = FAIL_MESSAGE
        elif status == "finished":
            obj["percentage"] = "100"
            cdn = f"{base}/cdn/{task.id}"
            if task.kind == "describe":
                obj["image_url"] = task.image_url
                obj["content"] = list(task.content or [])
            elif task.kind == "seed":
                obj["seed"] = str(self.task(task.parent_id).seed)
            elif task.grid:
                obj["original_image_url"] = f"{cdn}/grid.png"
                obj["image_urls"] = [f"{cdn}/{i}.png" for i in range(1, 5)]
            else:
                obj["image_url"] = f"{cdn}/image.png"
        return obj

    def snapshot(self, task: Task, at: float | None = None) -> Snapshot:
        """What ``task`` looks like at simulated time ``at`` (default now), for webhooks."""
        at = self.now() if at is None else at
        status, _, following = task.phase(at)
        return Snapshot(
            self.view(task, task.origin, at), status in ("finished", "failed"), following
        )

    def finished_parent(
        self, body: dict[str, Any], *, kinds: frozenset[str] | set[str], what: str
    ) -> Task:
        parent_id = body.get("parent_task_id")
        if parent_id in (None, ""):
            raise ApiError(400, "parent_task_id is required")
        parent = self.task(parent_id)
        if parent.kind not in kinds:
            raise ApiError(400, f"Parent task must be {what}")
        if not parent.finished(self.now()):
            raise ApiError(400, "Parent task is not finished")
        return parent

    def child_seed(self, parent: Task, label: str) -> int:
        """A fresh seed for the next ``label`` child of ``parent`` (1st, 2nd … differ)."""
        parent.children[label] = parent.children.get(label, 0) + 1
        return art.derive(self.state.seed, label, parent.seed, parent.children[label])

    def check_prompt(self, prompt: str | None) -> None:
        word = self.state.banned_word(prompt)
        if word is not None:
            raise ApiError(400, f"Banned prompt: '{word}'")

    def child_prompt(self, body: dict[str, Any], parent: Task) -> str:
        """The request's prompt, else ``parent``'s; refused when it holds a banned word."""
        prompt = read_prompt(body) or parent.prompt
        self.check_prompt(prompt)
        return prompt

    def child_task(
        self, request: Request, body: dict[str, Any], parent: Task, kind: str, **fields: Any
    ) -> Task:
        """A new task drawn from ``parent``: its prompt and aspect ratio unless ``fields`` give
        others, and a fresh child seed labelled ``kind`` unless ``fields`` give a seed."""
        fields.setdefault("prompt", parent.prompt)
        fields.setdefault("aspect_ratio", parent.aspect_ratio)
        if "seed" not in fields:
            fields["seed"] = self.child_seed(parent, kind)
        return self.new_task(request, body, parent=parent, kind=kind, **fields)

    def new_task(
        self, request: Request, body: dict[str, Any], *, parent: Task | None = None, **fields: Any
    ) -> Task:
        """A new task; its ``task_type`` is its ``kind`` unless ``fields`` name another."""
        fields.setdefault("task_type", fields.get("kind"))
        mode = read_process_mode(body, parent.mode if parent else "fast")
        url, secret = read_webhook(body)
        return Task(
            id=str(uuid.uuid4()),
            created=self.now(),
            mode=mode,
            parent_id=parent.id if parent else None,
            webhook_url=url,
            webhook_secret=secret,
            origin=self.base_url(request),
            **fields,
        )

    def accept(self, task: Task, cost_key: str | None = None) -> JSONResponse:
        cost = CREDITS[cost_key or task.kind]
        if self.credits < cost:
            raise ApiError(402, "Not enough credits")
        self.credits -= cost
        self.tasks[task.id] = task
        if task.webhook_url:
            headers = {"x-webhook-secret": task.webhook_secret} if task.webhook_secret else {}
            self.state.spawn(
                watch_and_post(
                    self.state,
                    task.webhook_url,
                    lambda at: self.snapshot(task, at),
                    headers=headers,
                    origin=task.origin,
                    since=task.created,
                )
            )
        return JSONResponse({"task_id": task.id})

    # ----------------------------------------------------------------- images
    def _drawing_key(self, task: Task) -> tuple[Any, ...]:
        """What a task's pixels depend on: a fresh grid only on prompt, seed and aspect ratio (so
        identical imagines share one drawing), anything else on its own lineage."""
        if task.kind in ("imagine", "reroll"):
            return ("fresh", task.prompt, task.seed, task.aspect_ratio)
        return ("task", task.id)

    def cells(self, task_id: str) -> list[Image.Image]:
        """The images of a task (4 cells or 1 image), drawn once and cached."""
        task = self.tasks[task_id]
        key = (NAME, "cells", self._drawing_key(task))
        cached = self.state.images.get(key)
        if cached is not None:
            return cached
        return self.state.images.put(key, art.draw(task, self.cells, self.state.seed))

    def png(self, task: Task, name: str) -> bytes:
        """One served PNG: pixels encoded once per drawing, the task's text chunks added."""
        key = (NAME, "png", self._drawing_key(task), name)
        encoded = self.state.images.get(key)
        if encoded is None:
            cells = self.cells(task.id)
            if name == "grid.png":
                image = _art.make_grid(cells)
            else:
                image = cells[0] if name == "image.png" else cells[int(name[0]) - 1]
            encoded = self.state.images.put(
                key, imaging.to_png(image, compress_level=PNG_LEVEL)
            )
        text = {
            "prompt": task.prompt,
            "task_id": task.id,
            "task_type": task.task_type,
            "Software": "jupyter_imagine sandbox (apiframe)",
        }
        return imaging.png_with_text(encoded, text)

    def image_size(self, task: Task) -> tuple[int, int]:
        """The size of each image of ``task`` (a grid's cells), from its lineage: no drawing."""
        kind = task.kind
        if kind in ("upscale", "inpaint"):
            return art.upscale_size(task.aspect_ratio)
        if kind == "pan":
            return art.pan_size(art.upscale_size(task.aspect_ratio), task.variant or "left")
        if kind == "upscale-alt":
            w, h = self.image_size(self.tasks[task.parent_id])
            return 2 * w, 2 * h
        if kind == "upscale-highres":
            if task.sources:
                w, h = imaging.image_size(task.sources[0])
            else:
                w, h = self.image_size(self.tasks[task.parent_id])
            factor = 4 if task.variant == "4x" else 2
            return factor * w, factor * h
        if kind == "faceswap":
            return imaging.image_size(task.sources[0])
        return art.cell_size(task.aspect_ratio)

    def internal(self, url: str) -> tuple[Task, str] | None:
        """``(task, image name)`` when ``url`` is an image on this sandbox's CDN."""
        try:
            match = CDN_PATH.search(httpx.URL(url).path)
        except (httpx.InvalidURL, TypeError):
            return None
        task = self.get(match[1]) if match else None
        return (task, match[2] + ".png") if task else None

    async def source(self, url: Any, what: str) -> bytes:
        """The bytes of the image at ``url``: from this sandbox's CDN, else downloaded."""
        if not isinstance(url, str) or not url.strip():
            raise ApiError(400, f"{what} is required")
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            raise ApiError(400, f"{what} must be an http(s) URL") from None
        if parsed.scheme not in ("http", "https"):
            raise ApiError(400, f"{what} must be an http(s) URL")
        known = self.internal(url)
        if known is not None:
            task, name = known
            if task.finished(self.now()) and has_image(task, name):
                return await run_in_threadpool(self.png, task, name)
            raise ApiError(400, f"{what} is not an image of a finished task")
        try:
            async with httpx.AsyncClient(timeout=10, follow_redirects=True) as client:
                response = await client.get(url)
            response.raise_for_status()
            imaging.image_size(response.content)
        except (httpx.HTTPError, InvalidRequest) as exc:
            raise ApiError(400, f"Could not download {what}") from exc
        return response.content

    # ----------------------------------------------------------------- wiring
    def endpoint(self, handler: Handler, *, method: str = "POST") -> Callable[..., Any]:
        """Wrap ``handler(request, body)`` with auth, JSON parsing and the error shapes."""

        async def run(request: Request) -> Response:
            async def call() -> Response:
                if not self.state.key_accepted(http.bearer_key(request, bare=True)):
                    return error_response(401)
                body = await http.json_body(request, invalid) if method == "POST" else {}
                return await handler(request, body)

            return await http.guarded(request, call, lambda: error_response(500), NAME)

        run.__name__ = handler.__name__
        return run
