"""The Blockade emulator's state and shared machinery: look-ups, rate limits, views,
webhooks, files and the endpoint wrapper."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import io
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httpx
from PIL import Image, UnidentifiedImageError
from starlette.requests import Request
from starlette.responses import Response

from ... import imaging
from ..._secrets import get_logger
from .._art import _skybox as art
from .._state import SandboxState, Snapshot, watch_and_post
from ._parsing import art_seed, label, open_image, owner_of, read_api_key, read_payload, to_jpeg
from ._records import Export, Imagine
from ._wire import (
    COMPLETE_AT,
    CUBE_FACE,
    DEPTH_HQ_SIZE,
    DEPTH_SIZE,
    DISPATCHED_AT,
    EXPORT_BY_ID,
    FAIL_AT,
    FAIL_MESSAGE,
    MAX_UPLOAD,
    NAME,
    PANORAMA_SIZE,
    PNG_LEVEL,
    PREFIX,
    PROCESSING_AT,
    SEED_MAX,
    THUMB_SIZE,
    USERNAME,
    VIDEO_SIZES,
    ApiError,
    error_response,
)

if TYPE_CHECKING:
    from ._records import Handler

logger = get_logger(__name__)


class BlockadeCore:
    """The Blockade Labs emulator of one sandbox (``state.providers["blockade"]``).

    Attributes:
        rate_limit: requests per 60 simulated seconds and key advertised while limits are not
            enforced (default 1000).
        enforce_limits: answer 429 past the limit (default ``False``).
        enforced_limit: the limit while ``enforce_limits`` is on (default 10).
        rate_window: the window in simulated seconds (default 60).
        premium: whether accounts may use premium export types (videos; default ``False``).
        epoch: Unix time of simulated time 0 (timestamps in answers are ``epoch + clock``).
    """

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.tasks: dict[Any, Any] = state.tasks
        self.rate_limit = 1000
        self.enforce_limits = False
        self.enforced_limit = 10
        self.rate_window = 60.0
        self.premium = False
        self.epoch = time.time()
        self._next_id = 1001
        self._next_export = 1
        self._by_obfuscated: dict[str, int] = {}
        self._windows: dict[str, tuple[float, int]] = {}
        self._users: dict[str, int] = {}

    # ----------------------------------------------------------------- records
    def now(self) -> float:
        return self.state.clock.now()

    def imagines(self) -> list[Imagine]:
        return [t for t in list(self.tasks.values()) if isinstance(t, Imagine)]

    def get(self, imagine_id: int) -> Imagine | None:
        item = self.tasks.get((NAME, imagine_id))
        return item if isinstance(item, Imagine) else None

    def find(self, owner: str, imagine_id: Any, what: str = "Imagine") -> Imagine:
        """The owner's request ``imagine_id`` (int or digits), else 404."""
        try:
            number = int(str(imagine_id).strip())
        except (TypeError, ValueError):
            raise ApiError(404, f"{what} not found") from None
        item = self.get(number)
        if item is None or item.owner != owner or item.deleted:
            raise ApiError(404, f"{what} not found")
        return item

    def find_obfuscated(self, owner: str, obfuscated_id: Any, what: str = "Imagine") -> Imagine:
        number = self._by_obfuscated.get(str(obfuscated_id))
        if number is None:
            raise ApiError(404, f"{what} not found")
        return self.find(owner, number, what)

    def export(self, owner: str, export_id: str) -> Export:
        item = self.tasks.get((NAME + "-export", export_id))
        if not isinstance(item, Export) or item.owner != owner:
            raise ApiError(404, "Export not found")
        parent = self.get(item.imagine_id)
        if parent is None or parent.deleted:
            raise ApiError(404, "Export not found")
        return item

    def user_id(self, owner: str) -> int:
        if owner not in self._users:
            self._users[owner] = 100 + len(self._users)
        return self._users[owner]

    # ----------------------------------------------------------------- time
    def iso(self, when: float | None) -> str | None:
        if when is None:
            return None
        stamp = dt.datetime.fromtimestamp(self.epoch + when, dt.timezone.utc)
        return stamp.replace(microsecond=0).isoformat()

    # ----------------------------------------------------------------- rate limits
    @property
    def limit(self) -> int:
        """The limit in force now."""
        return int(self.enforced_limit if self.enforce_limits else self.rate_limit)

    def throttle(self, bucket: str) -> dict[str, str]:
        """Count one request of ``bucket``; the rate headers, or a 429 :class:`ApiError`."""
        now = self.now()
        start, count = self._windows.get(bucket, (now, 0))
        if now - start >= self.rate_window:
            start, count = now, 0
        limit = self.limit
        reset = start + self.rate_window
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Reset": str(math.ceil(self.epoch + reset)),
        }
        if self.enforce_limits and count >= limit:
            real = self.state.clock.real_seconds_until(reset)
            wait = max(1, math.ceil(reset - now if real is None else real))
            headers.update({"X-RateLimit-Remaining": "0", "Retry-After": str(wait)})
            self._windows[bucket] = (start, count)
            raise ApiError(429, "Too Many Attempts.", headers=headers)
        count += 1
        self._windows[bucket] = (start, count)
        headers["X-RateLimit-Remaining"] = str(max(0, limit - count))
        return headers

    # ----------------------------------------------------------------- views
    def base_url(self, request: Request) -> str:
        return str(request.base_url).rstrip("/") + PREFIX

    def files(self, item: Imagine, base: str) -> dict[str, str]:
        name = f"{item.slug}__{item.obfuscated_id}"
        cdn = f"{base}/cdn"
        return {
            "file_url": f"{cdn}/images/imagine/{name}.jpg?ver=1",
            "thumb_url": f"{cdn}/thumbs/imagine/thumb_{name}.jpg?ver=1",
            "depth_map_url": f"{cdn}/depths/imagine/depth_{name}.png?ver=1",
        }

    def view(self, item: Imagine, base: str, now: float | None = None) -> dict[str, Any]:
        """The generation object for ``item`` now (POST answer, ``request`` body, webhooks)."""
        now = self.now() if now is None else now
        status, _ = item.phase(now)
        queue = 0
        if status == "pending":
            queue = 2 if now - item.created < 2.0 else 1
        changes = [item.created]
        for offset in (DISPATCHED_AT, PROCESSING_AT, COMPLETE_AT):
            when = item.reached(now, offset)
            if when is not None:
                changes.append(when)
        if status == "abort":
            changes.append(item.aborted_at or now)
        elif status == "error":
            changes.append(item.created + FAIL_AT)
        complete = status == "complete"
        urls = self.files(item, base) if complete else {
            "file_url": "", "thumb_url": "", "depth_map_url": "",
        }
        obj: dict[str, Any] = {
            "id": item.id,
            "obfuscated_id": item.obfuscated_id,
            "user_id": item.user_id,
            "username": USERNAME,
            "title": (
                f"World #{item.id}" if item.kind == "skybox" else f"Imagination #{item.id}"
            ),
            "prompt": item.prompt,
            "negative_text": item.negative_text,
            "seed": item.seed,
            "status": status,
            "queue_position": queue,
            **urls,
            "remix_imagine_id": item.remix_of,
            "remix_obfuscated_id": item.remix_obfuscated_id,
            "isMyFavorite": False,
            "error_message": FAIL_MESSAGE if status == "error" else None,
            "pusher_channel": f"status_update_{item.obfuscated_id}",
            "pusher_event": "status_update",
            "created_at": self.iso(item.created),
            "updated_at": self.iso(max(changes)),
            "dispatched_at": self.iso(item.reached(now, DISPATCHED_AT)),
            "processing_at": self.iso(item.reached(now, PROCESSING_AT)),
            "completed_at": self.iso(item.reached(now, COMPLETE_AT)),
            "type": item.kind,
        }
        if item.kind == "skybox":
            style = item.style or {}
            obj.update(
                skybox_style_id=style.get("id"),
                skybox_id=style.get("id"),
                skybox_style_name=style.get("name"),
                skybox_name=style.get("name"),
            )
        else:
            obj.update(generator=item.generator, generator_data=dict(item.generator_data or {}))
        return obj

    def export_view(self, item: Export, base: str, now: float | None = None) -> dict[str, Any]:
        now = self.now() if now is None else now
        status, _ = item.phase(now)
        parent = self.get(item.imagine_id)
        assert parent is not None
        type_id, _, key, _, _, ext = EXPORT_BY_ID[item.type_id]
        file_url = ""
        if status == "complete":
            file_url = f"{base}/cdn/exports/{item.id}/{parent.slug}_{key}.{ext}"
        return {
            "file_url": file_url,
            "id": item.id,
            "skybox_obfuscated_id": parent.obfuscated_id,
            "type": key,
            "type_id": type_id,
            "status": status,
            "queue_position": 1 if status == "pending" else 0,
            "error_message": None,
            "pusher_channel": f"export_status_update_{item.id}",
            "pusher_event": "status_update",
            "webhook_url": item.webhook_url,
            "created_at": self.iso(item.created),
        }

    def style_view(self, style: dict[str, Any], base: str) -> dict[str, Any]:
        out = dict(style)
        out["image"] = f"{base}/cdn/styles/{style['id']}.webp"
        out["image_jpg"] = f"{base}/cdn/styles/{style['id']}.jpg"
        return out

    # ----------------------------------------------------------------- webhooks
    def watch(self, item: Imagine | Export) -> None:
        """POST the object to its ``webhook_url`` on each status change (background task)."""
        if not item.webhook_url:
            return
        last: dict[str, Any] = {}

        def snapshot(at: float) -> Snapshot:
            now = at
            status, following = item.phase(now)
            if last.get("status") != status:
                payload = (
                    self.view(item, item.origin, now) if isinstance(item, Imagine)
                    else self.export_view(item, item.origin, now)
                )
                last.update(status=status, payload=payload)
            final = status in ("complete", "abort", "error")
            if following is not None and not math.isfinite(following):
                following = None
            return Snapshot(last["payload"], final, following)

        # snapshot(at) lets the watcher replay every status it slept through, from creation.
        self.state.spawn(
            watch_and_post(self.state, item.webhook_url, snapshot, origin=item.origin,
                           since=item.created)
        )

    # ----------------------------------------------------------------- images
    def panorama(self, item: Imagine) -> art.Panorama:
        """The skybox of ``item``: a pure function of its prompt, seed, style and input images."""
        style = (item.style or {}).get("name") or item.generator or ""
        pano = art.panorama(item.prompt, item.seed ^ self.state.seed, PANORAMA_SIZE, style=style)
        if item.init_image is None and item.control_image is None:
            return pano
        image = pano.image
        if item.init_image is not None:
            image = art.blend_init(image, open_image(item.init_image), item.init_strength)
        if item.control_image is not None:
            image = art.control_overlay(image, open_image(item.control_image))
        return art.Panorama(image, pano.distance)

    def file(self, item: Imagine, what: str) -> tuple[bytes, str]:
        """``(bytes, media type)`` of the panorama (``image``), ``thumb`` or ``depth``."""
        key = (NAME, "file", item.id, what)
        cached = self.state.images.get(key)
        if cached is None:
            pano = self.panorama(item)
            if what == "image":
                cached = to_jpeg(pano.image)
            elif what == "thumb":
                cached = to_jpeg(pano.image.resize(THUMB_SIZE, Image.Resampling.LANCZOS))
            else:
                size = DEPTH_HQ_SIZE if item.depth_hq else DEPTH_SIZE
                cached = imaging.to_png(pano.depth(size), compress_level=PNG_LEVEL)
            self.state.images.put(key, cached)
        return cached, "image/png" if what == "depth" else "image/jpeg"

    def export_file(self, item: Export) -> tuple[bytes, str]:
        key = (NAME, "export", item.id)
        cached = self.state.images.get(key)
        if cached is None:
            parent = self.get(item.imagine_id)
            assert parent is not None
            pano = self.panorama(parent)
            text = {
                "prompt": parent.prompt,
                "Software": "jupyter_imagine sandbox (blockade)",
                "export": EXPORT_BY_ID[item.type_id][2],
            }
            if item.type_id == 1:
                cached = self.file(parent, "image")[0]
            elif item.type_id == 2:
                cached = imaging.to_png(pano.image, text, compress_level=PNG_LEVEL)
            elif item.type_id == 3:
                strip = art.cube_map(pano.image, CUBE_FACE)
                text["layout"] = "strip +x -x +y -y +z -z"
                cached = imaging.to_png(strip, text, compress_level=PNG_LEVEL)
            elif item.type_id in (4, 5):
                fmt = "HDR" if item.type_id == 4 else "EXR"
                text["stand-in"] = f"8-bit PNG in place of {fmt}"
                cached = imaging.to_png(pano.image, text, compress_level=PNG_LEVEL)
            elif item.type_id == 6:
                cached = imaging.to_png(pano.depth(DEPTH_HQ_SIZE), text, compress_level=PNG_LEVEL)
            else:
                frames = art.video_frames(pano.image, VIDEO_SIZES[item.type_id])
                buf = io.BytesIO()
                frames = [f.quantize(64, method=Image.Quantize.FASTOCTREE) for f in frames]
                frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:],
                               duration=160, loop=0)
                cached = buf.getvalue()
            self.state.images.put(key, cached)
        ext = EXPORT_BY_ID[item.type_id][5]
        return cached, {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif"}[ext]

    # ----------------------------------------------------------------- reading inputs
    async def image_field(self, value: Any, name: str) -> bytes:
        """The bytes of an image given as a file, base64 text or an absolute URL (400 if not)."""
        if isinstance(value, bytes):
            data = value
        elif isinstance(value, str) and re.match(r"^https?://", value.strip()):
            data = await self.download(value.strip(), name)
        elif isinstance(value, str) and value.strip():
            text = re.sub(r"^data:[\w/+.-]*;base64,", "", value.strip())
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(
                    400, f"The {label(name)} must be an image file, base64 or URL."
                ) from None
        else:
            raise ApiError(400, f"The {label(name)} must be an image file, base64 or URL.")
        if len(data) > MAX_UPLOAD:
            raise ApiError(400, f"The {label(name)} may not be greater than 51200 kilobytes.")
        try:
            open_image(data)
        except (UnidentifiedImageError, OSError):
            raise ApiError(400, f"The {label(name)} must be an image.") from None
        return data

    async def download(self, url: str, name: str) -> bytes:
        try:
            path = httpx.URL(url).path
        except (httpx.InvalidURL, TypeError):
            raise ApiError(400, f"The {label(name)} URL is not valid.") from None
        if path.startswith(PREFIX + "/cdn/"):  # our own file: read it directly
            found = await self.cdn_bytes(path[len(PREFIX) :])
            if found is None:
                raise ApiError(400, f"The {label(name)} URL does not point to an image.")
            return found[0]
        try:
            async with httpx.AsyncClient(timeout=10, follow_redirects=True) as client:
                response = await client.get(url)
            response.raise_for_status()
        except httpx.HTTPError:
            raise ApiError(400, f"The {label(name)} could not be downloaded.") from None
        return response.content

    def check_prompt(self, prompt: str) -> None:
        word = self.state.banned_word(prompt)
        if word is not None:
            raise ApiError(400, f"Your prompt contains inappropriate content: '{word}'")

    def new_id(self) -> tuple[int, str]:
        number = self._next_id
        self._next_id += 1
        digest = hashlib.blake2b(f"{self.state.seed}:{number}".encode(), digest_size=16)
        obfuscated = digest.hexdigest()
        self._by_obfuscated[obfuscated] = number
        return number, obfuscated

    def draw_seed(self, *parts: object) -> int:
        return 1 + art_seed(self.state.seed, self._next_id, *parts) % (SEED_MAX - 1)

    def store(self, item: Imagine) -> Imagine:
        self.tasks[(NAME, item.id)] = item
        self.watch(item)
        return item

    def store_new(self, request: Request, owner: str, **fields: Any) -> Imagine:
        """Store a new request of ``owner``'s: a fresh id, created now, from the base URL it
        came in on; ``fields`` give the rest."""
        number, obfuscated = self.new_id()
        return self.store(
            Imagine(
                id=number,
                obfuscated_id=obfuscated,
                owner=owner,
                user_id=self.user_id(owner),
                created=self.now(),
                origin=self.base_url(request),
                **fields,
            )
        )

    # ----------------------------------------------------------------- wiring
    def endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler(request, owner, body)`` with body parsing, auth, rate limits and the
        error shape."""

        async def run(request: Request) -> Response:
            headers: dict[str, str] = {}
            try:
                body = await read_payload(request)
                key = read_api_key(request, body)
                bucket = owner_of(key) if key else "anonymous"
                headers = self.throttle(bucket)
                if not key:
                    raise ApiError(401, "API key is required")
                if not self.state.key_accepted(key):
                    raise ApiError(401, "Invalid API key")
                response = await handler(request, owner_of(key), body)
            except ApiError as exc:
                headers.update(exc.headers)
                response = exc.response()
            except Exception:
                logger.exception("sandbox blockade %s %s failed", request.method, request.url.path)
                response = error_response(500)
            response.headers.update(headers)
            return response

        run.__name__ = handler.__name__
        return run
