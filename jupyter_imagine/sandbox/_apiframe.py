"""APIFRAME (Midjourney proxy, "original" v1 API) emulated at ``{root}/apiframe``.

Same paths, fields, status strings and error shapes as ``https://api.apiframe.pro`` (see
``providers.md`` §1), so the official clients and ours run unchanged against it.

Endpoints: ``POST /imagine``, ``/reroll``, ``/upscale-1x``, ``/upscale-alt``,
``/upscale-highres``, ``/variations`` (index ``1``–``4``, or ``strong``/``subtle`` on an
upscale), ``/inpaint``, ``/outpaint``, ``/pan``, ``/describe``, ``/blend``, ``/seed``,
``/faceswap``, ``/fetch``, ``/fetch-many``; ``GET /account``; images at
``GET /cdn/{task_id}/grid.png``, ``/1.png`` … ``/4.png`` (grid tasks) and ``/image.png``
(single-image tasks) — public, like a CDN, and 404 until the task has finished.

Auth: ``Authorization: <key>`` (raw, as APIFRAME documents) or ``Bearer <key>``. A missing key,
or one in ``state.rejected_keys`` (default ``{"invalid-key"}``), gets 401 ``{}``.

Errors: 400/402/404 ``{"errors": [{"msg": "..."}]}``; 401 and 5xx ``{}``. Unknown task ids are
404 ``Task not found`` on every endpoint.

Lifecycle, computed from the sandbox clock (simulated seconds since submit; all times halved
with ``process_mode: "turbo"``): ``[0, 2)`` ``pending``, ``[2, 4)`` ``starting``,
``[4, duration)`` ``processing`` with ``percentage`` a string ``"0"``, ``"10"`` … ``"90"``,
then ``finished`` (``percentage: "100"``). Durations: 40 s for grid tasks, 8 s for upscale-1x,
16 s for the other upscales, 10 s for describe and faceswap, 6 s for seed.

Webhooks: with ``webhook_url``, the same object ``/fetch`` answers is POSTed there at each change
of status or percentage and at the end, in order, timed on the sandbox clock (a clock jump
replays the changes it skipped), with ``x-webhook-secret: <webhook_secret>`` when given. A
URL on the sandbox's own address (``…/_sandbox/webhook-sink``) is delivered in-process; failed
deliveries are logged and never retried.

Magic words in a prompt, for tests:

- ``sandbox:fail`` — the task ends ``failed`` halfway through, with ``message``
  ``"Midjourney could not complete the job (sandbox:fail)"``.
- ``sandbox:hang`` — the task stays ``processing`` forever, stuck at ``percentage: "50"``.

Banned words (``state.banned_words``, default ``gore``, ``nsfw``, ``bloodbath``): a prompt with
one as a whole word is refused at submit with 400 ``Banned prompt: 'gore'``.

Credits start at 10000 and each accepted submit costs what APIFRAME charges (imagine, reroll,
variations, inpaint, outpaint, pan, blend, upscale-alt 4; upscale-1x, describe, seed, faceswap,
upscale-highres 4x 2; upscale-highres 2x 1). With too few left the submit gets 402
``Not enough credits``.

Choices where ``providers.md`` marks the real behaviour as inferred or unknown:

- ``reroll`` keeps the parent's ``aspect_ratio`` unless given (the SDK documents 1:1).
- ``--ar W:H`` / ``--aspect W:H`` in an imagine prompt sets the aspect ratio when the body has
  no ``aspect_ratio``; the body wins when both are given.
- A failed task carries its reason in ``message``; insufficient credits answer 402.
- ``pan`` tasks are typed ``pan-<direction>``, subtle upscales ``upscale-subtle``, high-res
  upscales ``upscale-2x`` / ``upscale-4x``.
- Children (upscales, variations, inpaints …) inherit the parent's ``process_mode`` unless given.
- Inpaint masks are white = redraw on black, at the upscale's exact pixel size.
- ``/seed`` creates a short task whose finished form carries ``"seed"`` (a string).
- ``describe``, ``blend``, ``faceswap`` and ``upscale-highres`` read images from the sandbox's
  own CDN URLs directly; other URLs are downloaded once at submit (400 if that fails).

Images are a pure function of each task's record and its lineage (see
:mod:`._apiframe_images`); an inpaint's four images are each the upscale's full size, so
that only the masked pixels differ from it, and its grid is their 2×2 composite.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import imaging
from .._secrets import get_logger
from ..errors import InvalidMask, InvalidRequest
from . import _art
from . import _http as http
from ._art import _midjourney as art
from ._state import SandboxState, Snapshot, retry_headers, watch_and_post

__all__ = ["NAME", "PREFIX", "Apiframe", "Task", "build", "fault_response"]

logger = get_logger(__name__)

NAME = "apiframe"
PREFIX = "/apiframe"

EMAIL = "sandbox@jupyter-imagine.local"
START_CREDITS = 10000
FAIL_WORD = "sandbox:fail"
HANG_WORD = "sandbox:hang"
FAIL_MESSAGE = "Midjourney could not complete the job (sandbox:fail)"
HANG_PERCENT = 50

DURATION = {
    "imagine": 40.0,
    "reroll": 40.0,
    "variation": 40.0,
    "inpaint": 40.0,
    "outpaint": 40.0,
    "pan": 40.0,
    "blend": 40.0,
    "upscale": 8.0,
    "upscale-alt": 16.0,
    "upscale-highres": 16.0,
    "describe": 10.0,
    "faceswap": 10.0,
    "seed": 6.0,
}
CREDITS = {
    "imagine": 4,
    "reroll": 4,
    "variation": 4,
    "inpaint": 4,
    "outpaint": 4,
    "pan": 4,
    "blend": 4,
    "upscale-alt": 4,
    "upscale": 2,
    "describe": 2,
    "seed": 2,
    "faceswap": 2,
    "upscale-highres-2x": 1,
    "upscale-highres-4x": 2,
}
IMAGE_NAMES = ("grid.png", "1.png", "2.png", "3.png", "4.png")
MAX_HIGHRES_SIDE = 2048
PNG_LEVEL = 1  # fast zlib: the sandbox's images travel over loopback or in-process

_SEED_FLAG = re.compile(r"(?:^|\s)--seed\s+(\d+)")
_AR_FLAG = re.compile(r"(?:^|\s)--(?:ar|aspect)\s+(\S+)")
_CDN_PATH = re.compile(re.escape(PREFIX) + r"/cdn/([0-9a-fA-F-]{36})/(grid|image|[1-4])\.png$")


# ------------------------------------------------------------------------------ errors
class ApiError(http.ApiError):
    """An error answered in APIFRAME's shape."""

    def __init__(self, status: int, msg: str | None = None) -> None:
        super().__init__(status, msg)

    def response(self) -> Response:
        return error_response(self.status, self.message)


_DEFAULT_MSG = {
    400: "Invalid request",
    402: "Not enough credits",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    422: "Invalid request",
    429: "Too many requests",
}


def error_response(
    status: int, msg: str | None = None, *, retry_after: float | None = None
) -> JSONResponse:
    """APIFRAME's error answer: ``{}`` for 401 and 5xx, ``{"errors": [{"msg"}]}`` otherwise."""
    if status == 401 or status >= 500:
        body: Any = {}
    else:
        body = {"errors": [{"msg": msg or _DEFAULT_MSG.get(status, "Request failed")}]}
    return JSONResponse(body, status_code=status, headers=retry_headers(status, retry_after))


def fault_response(status: int, *, retry_after: float | None = None) -> Response:
    """The answer to an injected fault, in APIFRAME's error shape."""
    return error_response(status, retry_after=retry_after)


# ------------------------------------------------------------------------------ tasks
@dataclass
class Task:
    """One APIFRAME task, as the sandbox keeps it.

    ``created`` is simulated time; every other field is what the request said (or inherited
    from the parent). Images are drawn from this record and the parent's.
    """

    id: str
    kind: str
    task_type: str
    prompt: str
    aspect_ratio: str
    seed: int
    created: float
    mode: str = "fast"
    parent_id: str | None = None
    index: int | None = None
    variant: str | None = None  # strong/subtle, subtle/creative, 2x/4x, zoom ratio, direction
    mask: bytes | None = None
    sources: list[bytes] = field(default_factory=list)
    image_url: str | None = None  # describe's input, echoed back
    content: list[str] | None = None  # describe's result
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    origin: str = ""  # the provider base URL the task was submitted on (for webhook bodies)
    children: dict[str, int] = field(default_factory=dict)

    @property
    def fail(self) -> bool:
        return FAIL_WORD in self.prompt.lower()

    @property
    def hang(self) -> bool:
        return HANG_WORD in self.prompt.lower()

    @property
    def duration(self) -> float:
        return DURATION[self.kind] * self._factor

    @property
    def _factor(self) -> float:
        return 0.5 if self.mode == "turbo" else 1.0

    @property
    def grid(self) -> bool:
        return self.kind in art.GRID_KINDS

    def phase(self, now: float) -> tuple[str, int | None, float | None]:
        """``(status, percentage or None, simulated time of the next change or None)``."""
        f = self._factor
        elapsed = now - self.created
        fail_at = self.created + self.duration / 2 if self.fail else math.inf
        if now >= fail_at:
            return "failed", None, None
        if elapsed < 2 * f:
            return "pending", None, min(self.created + 2 * f, fail_at)
        if elapsed < 4 * f:
            return "starting", None, min(self.created + 4 * f, fail_at)
        span = self.duration - 4 * f
        if not self.hang and elapsed >= self.duration:
            return "finished", 100, None
        step = span / 10
        k = int((elapsed - 4 * f) / step + 1e-9) if step > 0 else 9
        if self.hang and k >= HANG_PERCENT // 10:
            return "processing", HANG_PERCENT, fail_at if self.fail else None
        k = min(k, 9)
        following = self.created + 4 * f + (k + 1) * step
        return "processing", k * 10, min(following, fail_at)

    def finished(self, now: float) -> bool:
        return self.phase(now)[0] == "finished"


# ------------------------------------------------------------------------------ the emulator
Handler = Callable[[Request, dict[str, Any]], Awaitable[Response]]


class Apiframe:
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

    def new_task(
        self, request: Request, body: dict[str, Any], *, parent: Task | None = None, **fields: Any
    ) -> Task:
        mode = _process_mode(body, parent.mode if parent else "fast")
        url, secret = _webhook(body)
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
            match = _CDN_PATH.search(httpx.URL(url).path)
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
            if task.finished(self.now()) and _has_image(task, name):
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

    # ----------------------------------------------------------------- endpoints
    async def imagine(self, request: Request, body: dict[str, Any]) -> Response:
        prompt = _prompt(body, required=True)
        ratio = body.get("aspect_ratio")
        if ratio in (None, ""):
            flag = _AR_FLAG.search(prompt)
            ratio = flag[1] if flag else "1:1"
        ratio = _aspect(ratio)
        self.check_prompt(prompt)
        flag = _SEED_FLAG.search(prompt)
        seed = (
            int(flag[1]) & 0xFFFFFFFF
            if flag
            else art.derive(self.state.seed, "prompt", " ".join(prompt.split()))
        )
        task = self.new_task(
            request,
            body,
            kind="imagine",
            task_type="imagine",
            prompt=prompt,
            aspect_ratio=ratio,
            seed=seed,
        )
        return self.accept(task)

    async def reroll(self, request: Request, body: dict[str, Any]) -> Response:
        parent = self.finished_parent(body, kinds=art.GRID_KINDS, what="a grid task")
        prompt = _prompt(body) or parent.prompt
        ratio = body.get("aspect_ratio")
        ratio = parent.aspect_ratio if ratio in (None, "") else _aspect(ratio)
        self.check_prompt(prompt)
        task = self.new_task(
            request,
            body,
            parent=parent,
            kind="reroll",
            task_type="reroll",
            prompt=prompt,
            aspect_ratio=ratio,
            seed=self.child_seed(parent, "reroll"),
        )
        return self.accept(task)

    async def upscale_1x(self, request: Request, body: dict[str, Any]) -> Response:
        index = _index(body)
        parent = self.finished_parent(body, kinds=art.GRID_KINDS, what="a grid task")
        task = self.new_task(
            request,
            body,
            parent=parent,
            kind="upscale",
            task_type=f"upscale#{index}",
            prompt=parent.prompt,
            aspect_ratio=parent.aspect_ratio,
            seed=parent.seed,
            index=index,
        )
        return self.accept(task)

    async def upscale_alt(self, request: Request, body: dict[str, Any]) -> Response:
        kind = body.get("type")
        if kind in (None, ""):
            raise ApiError(400, "type is required")
        if kind not in ("subtle", "creative"):
            raise ApiError(400, "type must be subtle or creative")
        parent = self.finished_parent(body, kinds={"upscale"}, what="an upscale-1x task")
        task = self.new_task(
            request,
            body,
            parent=parent,
            kind="upscale-alt",
            task_type=f"upscale-{kind}",
            prompt=parent.prompt,
            aspect_ratio=parent.aspect_ratio,
            seed=self.child_seed(parent, "upscale-alt"),
            variant=kind,
        )
        return self.accept(task)

    async def upscale_highres(self, request: Request, body: dict[str, Any]) -> Response:
        factor = body.get("type")
        if factor in (None, ""):
            raise ApiError(400, "type is required")
        if factor not in ("2x", "4x"):
            raise ApiError(400, "type must be 2x or 4x")
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
                index = _index(body)
            size = self.image_size(parent)
        else:
            known = self.internal(url) if isinstance(url, str) else None
            if known is not None and _has_image(known[0], known[1]):
                size = self.image_size(known[0])
                if known[1] == "grid.png":
                    size = (2 * size[0], 2 * size[1])
                _check_highres(size)
            sources = [await self.source(url, "image_url")]
            size = imaging.image_size(sources[0])
        _check_highres(size)
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
            index, variant = _index(body), None
            parent = self.finished_parent(body, kinds=art.GRID_KINDS, what="a grid task")
        prompt = _prompt(body) or parent.prompt
        self.check_prompt(prompt)
        label = variant or str(index)
        task = self.new_task(
            request,
            body,
            parent=parent,
            kind="variation",
            task_type=f"variation-{label}",
            prompt=prompt,
            aspect_ratio=parent.aspect_ratio,
            seed=self.child_seed(parent, f"variation-{label}"),
            index=index,
            variant=variant,
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
            mask = imaging.decode_mask(raw)
        except InvalidMask:
            raise ApiError(400, "Invalid mask image") from None
        want = art.upscale_size(parent.aspect_ratio)
        if mask.size != want:
            raise ApiError(
                400,
                f"Mask size {mask.width}x{mask.height} does not match the image size "
                f"{want[0]}x{want[1]}",
            )
        binary = (np.asarray(mask) > 127).astype(np.uint8) * 255
        if not binary.any():
            raise ApiError(400, "Mask is empty: paint the area to redraw in white")
        prompt = _prompt(body) or parent.prompt
        self.check_prompt(prompt)
        task = self.new_task(
            request,
            body,
            parent=parent,
            kind="inpaint",
            task_type="inpaint",
            prompt=prompt,
            aspect_ratio=parent.aspect_ratio,
            seed=self.child_seed(parent, "inpaint"),
            mask=imaging.to_png(Image.fromarray(binary, "L")),
        )
        return self.accept(task)

    async def outpaint(self, request: Request, body: dict[str, Any]) -> Response:
        raw = body.get("zoom_ratio")
        if raw in (None, ""):
            raise ApiError(400, "zoom_ratio is required")
        try:
            zoom = float(raw)
        except (TypeError, ValueError):
            zoom = math.nan
        if isinstance(raw, bool) or not 1 <= zoom <= 2:
            raise ApiError(400, "zoom_ratio must be a number from 1 to 2")
        ratio = body.get("aspect_ratio")
        ratio = "1:1" if ratio in (None, "") else _aspect(ratio)
        parent = self.finished_parent(body, kinds={"upscale"}, what="an upscale-1x task")
        prompt = _prompt(body) or parent.prompt
        self.check_prompt(prompt)
        task = self.new_task(
            request,
            body,
            parent=parent,
            kind="outpaint",
            task_type=f"outpaint-{zoom:g}",
            prompt=prompt,
            aspect_ratio=ratio,
            seed=self.child_seed(parent, "outpaint"),
            variant=f"{zoom:g}",
        )
        return self.accept(task)

    async def pan(self, request: Request, body: dict[str, Any]) -> Response:
        direction = body.get("direction")
        if direction in (None, ""):
            raise ApiError(400, "direction is required")
        if direction not in ("up", "down", "left", "right"):
            raise ApiError(400, "direction must be up, down, left or right")
        parent = self.finished_parent(body, kinds={"upscale"}, what="an upscale-1x task")
        prompt = _prompt(body) or parent.prompt
        self.check_prompt(prompt)
        task = self.new_task(
            request,
            body,
            parent=parent,
            kind="pan",
            task_type=f"pan-{direction}",
            prompt=prompt,
            aspect_ratio=parent.aspect_ratio,
            seed=self.child_seed(parent, "pan"),
            variant=direction,
        )
        return self.accept(task)

    async def describe(self, request: Request, body: dict[str, Any]) -> Response:
        url = body.get("image_url")
        data = await self.source(url, "image_url")
        known = self.internal(url)
        hint = known[0].prompt if known else ""
        width, height = imaging.image_size(data)
        task = self.new_task(
            request,
            body,
            kind="describe",
            task_type="describe",
            prompt="",
            aspect_ratio=_ratio_of(width, height),
            seed=art.derive(data),
            image_url=url,
        )
        task.content = _descriptions(hint, task.seed, task.aspect_ratio)
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
            request,
            body,
            kind="blend",
            task_type="blend",
            prompt="",
            aspect_ratio=ratios[dimension],
            seed=art.derive(*sources),
            sources=sources,
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
        task = self.new_task(
            request,
            body,
            parent=target,
            kind="seed",
            task_type="seed",
            prompt="",
            aspect_ratio=target.aspect_ratio,
            seed=target.seed,
        )
        return self.accept(task)

    async def faceswap(self, request: Request, body: dict[str, Any]) -> Response:
        target = await self.source(body.get("target_image_url"), "target_image_url")
        swap = await self.source(body.get("swap_image_url"), "swap_image_url")
        width, height = imaging.image_size(target)
        task = self.new_task(
            request,
            body,
            kind="faceswap",
            task_type="faceswap",
            prompt="",
            aspect_ratio=_ratio_of(width, height),
            seed=art.derive(target, swap),
            sources=[target, swap],
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
        if task is None or not task.finished(self.now()) or not _has_image(task, name):
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

    # ----------------------------------------------------------------- wiring
    def endpoint(self, handler: Handler, *, method: str = "POST") -> Callable[..., Any]:
        """Wrap ``handler(request, body)`` with auth, JSON parsing and the error shapes."""

        async def run(request: Request) -> Response:
            async def call() -> Response:
                if not self.state.key_accepted(http.bearer_key(request, bare=True)):
                    return error_response(401)
                body = await http.json_body(request, _invalid) if method == "POST" else {}
                return await handler(request, body)

            return await http.guarded(request, call, lambda: error_response(500), NAME)

        run.__name__ = handler.__name__
        return run

    def routes(self) -> list[Route]:
        post = {
            "/imagine": self.imagine,
            "/reroll": self.reroll,
            "/upscale-1x": self.upscale_1x,
            "/upscale-alt": self.upscale_alt,
            "/upscale-highres": self.upscale_highres,
            "/variations": self.variations,
            "/inpaint": self.inpaint,
            "/outpaint": self.outpaint,
            "/pan": self.pan,
            "/describe": self.describe,
            "/blend": self.blend,
            "/seed": self.seed,
            "/faceswap": self.faceswap,
            "/fetch": self.fetch,
            "/fetch-many": self.fetch_many,
        }
        routes = [Route(path, self.endpoint(fn), methods=["POST"]) for path, fn in post.items()]
        routes.append(Route("/account", self.endpoint(self.account, method="GET"), methods=["GET"]))
        routes.append(Route("/cdn/{task_id}/{name}", self.cdn, methods=["GET"]))
        return routes


def build(state: SandboxState) -> Starlette:
    """The APIFRAME app for ``state``, to mount at :data:`PREFIX`."""
    emulator = Apiframe(state)
    state.providers[NAME] = emulator
    return http.build_app(emulator.routes(), lambda request, status: error_response(status))


# ------------------------------------------------------------------------------ parsing
def _invalid(message: str) -> ApiError:
    return ApiError(400, message)


def _prompt(body: dict[str, Any], *, required: bool = False) -> str:
    prompt = body.get("prompt")
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        if required:
            raise ApiError(400, "prompt is required")
        return ""
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt must be a string")
    return prompt.strip()


def _aspect(value: Any) -> str:
    if not isinstance(value, str):
        raise ApiError(400, f"aspect ratio must look like 16:9, not {value!r}")
    try:
        _art.aspect_size(value)
    except InvalidRequest as exc:
        raise ApiError(400, exc.message) from None
    return value.replace(" ", "")


def _index(body: dict[str, Any]) -> int:
    raw = body.get("index")
    if raw is None or raw == "":
        raise ApiError(400, "index is required")
    if isinstance(raw, bool):
        raise ApiError(400, "index must be 1, 2, 3 or 4")
    if isinstance(raw, int) and 1 <= raw <= 4:
        return raw
    if isinstance(raw, str) and raw.strip() in ("1", "2", "3", "4"):
        return int(raw.strip())
    raise ApiError(400, "index must be 1, 2, 3 or 4")


def _process_mode(body: dict[str, Any], default: str) -> str:
    mode = body.get("process_mode")
    if mode in (None, ""):
        return default
    if mode not in ("fast", "turbo"):
        raise ApiError(400, "process_mode must be fast or turbo")
    return str(mode)


def _webhook(body: dict[str, Any]) -> tuple[str | None, str | None]:
    url, secret = body.get("webhook_url"), body.get("webhook_secret")
    if url in (None, ""):
        url = None
    elif not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
        raise ApiError(400, "webhook_url must be an http(s) URL")
    if secret in (None, ""):
        secret = None
    elif not isinstance(secret, str):
        raise ApiError(400, "webhook_secret must be a string")
    return url, secret


def _check_highres(size: tuple[int, int]) -> None:
    if max(size) > MAX_HIGHRES_SIDE:
        raise ApiError(400, f"Image must be at most {MAX_HIGHRES_SIDE}x{MAX_HIGHRES_SIDE}")


def _has_image(task: Task, name: str) -> bool:
    if task.kind in ("describe", "seed"):
        return False
    return name in IMAGE_NAMES if task.grid else name == "image.png"


def _ratio_of(width: int, height: int) -> str:
    g = math.gcd(width, height) or 1
    w, h = width // g, height // g
    if max(w / h, h / w) > _art.MAX_RATIO or max(w, h) > 99:
        if width >= height:
            w, h = round(width / height * 10), 10
        else:
            w, h = 10, round(height / width * 10)
    return f"{w}:{h}"


_STYLES = (
    "digital painting",
    "soft volumetric light",
    "muted pastel palette",
    "cinematic wide shot",
    "matte painting",
    "watercolor texture",
    "high detail",
    "minimalist composition",
    "dramatic sky",
    "atmospheric haze",
    "golden hour glow",
    "vector illustration",
)
_SUBJECTS = (
    "a quiet landscape",
    "layered mountains",
    "a still lake",
    "distant hills",
    "a calm horizon",
    "rolling dunes",
    "a misty valley",
    "a coastline",
)


def _descriptions(hint: str, seed: int, ratio: str) -> list[str]:
    """Four describe answers: the hint prompt's words (if known) dressed in styles."""
    rng = np.random.default_rng(seed)
    base = re.sub(r"\s--\S+(\s+(?!--)\S+)?", "", hint).strip()
    out = []
    for i, mark in enumerate(("1️⃣", "2️⃣", "3️⃣", "4️⃣")):
        subject = base or _SUBJECTS[int(rng.integers(len(_SUBJECTS)))]
        styles = rng.choice(len(_STYLES), size=2 + i % 2, replace=False)
        extra = ", ".join(_STYLES[int(s)] for s in styles)
        out.append(f"{mark} {subject}, {extra} --ar {ratio}")
    return out
