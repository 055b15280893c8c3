"""Blockade's export endpoints and the CDN."""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..._secrets import get_logger
from .._art import _skybox as art
from ._core import BlockadeCore
from ._parsing import read_int, read_webhook
from ._records import Export
from ._wire import EXPORT_BY_ID, NAME, PREFIX, STYLES, ApiError, error_response

logger = get_logger(__name__)


class Exports(BlockadeCore):
    """Exports of a finished skybox, and the CDN that serves every file."""

    # ----------------------------------------------------------------- endpoints: exports
    async def create_export(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        skybox_id = body.get("skybox_id")
        if skybox_id in (None, ""):
            raise ApiError(400, "The skybox id field is required.")
        type_id = read_int(body, "type_id", required=True)
        if type_id not in EXPORT_BY_ID:
            raise ApiError(400, "The selected type id is invalid.")
        if isinstance(skybox_id, int) or (isinstance(skybox_id, str) and skybox_id.isdigit()):
            parent = self.find(owner, skybox_id, "Skybox")
        else:
            parent = self.find_obfuscated(owner, skybox_id, "Skybox")
        if parent.status(self.now()) != "complete":
            raise ApiError(422, "The skybox is not complete yet.")
        if EXPORT_BY_ID[type_id][3] and not self.premium:
            raise ApiError(403, "Account does not have access to this method")
        webhook = read_webhook(body)
        digest = hashlib.blake2b(
            f"{self.state.seed}:export:{self._next_export}".encode(), digest_size=16
        ).hexdigest()
        self._next_export += 1
        item = Export(
            id=digest,
            imagine_id=parent.id,
            owner=owner,
            type_id=type_id,
            created=self.now(),
            webhook_url=webhook,
            origin=self.base_url(request),
        )
        self.tasks[(NAME + "-export", item.id)] = item
        self.watch(item)
        return JSONResponse(self.export_view(item, self.base_url(request)))

    async def get_export(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        item = self.export(owner, request.path_params["id"])
        return JSONResponse(self.export_view(item, self.base_url(request)))

    async def cancel_export(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        item = self.export(owner, request.path_params["id"])
        status, _ = item.phase(self.now())
        if status == "complete":
            raise ApiError(422, "The export is already complete.")
        if status != "abort":
            item.aborted_at = self.now()
        return JSONResponse({"success": True})

    # ----------------------------------------------------------------- files
    async def cdn_bytes(self, path: str) -> tuple[bytes, str] | None:
        """``(bytes, media type)`` of a public file at ``path`` (below the prefix), or None."""
        now = self.now()
        match = re.fullmatch(
            r"/cdn/(images|thumbs|depths)/imagine/(?:thumb_|depth_)?[\w]*?__([0-9a-f]{32})\.(jpg|png)",
            path,
        )
        if match:
            number = self._by_obfuscated.get(match[2])
            item = self.get(number) if number is not None else None
            if item is None or item.deleted or item.status(now) != "complete":
                return None
            what = {"images": "image", "thumbs": "thumb", "depths": "depth"}[match[1]]
            return await run_in_threadpool(self.file, item, what)
        match = re.fullmatch(r"/cdn/exports/([0-9a-f]{32})/[\w.-]+", path)
        if match:
            export = self.tasks.get((NAME + "-export", match[1]))
            if not isinstance(export, Export) or export.phase(now)[0] != "complete":
                return None
            parent = self.get(export.imagine_id)
            if parent is None or parent.deleted:
                return None
            return await run_in_threadpool(self.export_file, export)
        match = re.fullmatch(r"/cdn/styles/(\d+)\.(webp|jpg)", path)
        if match:
            style = next((s for s in STYLES if s["id"] == int(match[1])), None)
            if style is None:
                return None
            return await run_in_threadpool(self.style_preview, style, match[2])
        return None

    def style_preview(self, style: dict[str, Any], fmt: str) -> tuple[bytes, str]:
        key = (NAME, "style", style["id"], fmt)
        cached = self.state.images.get(key)
        if cached is None:
            pano = art.panorama(style["description"], style["id"], (512, 256), style=style["name"])
            buf = io.BytesIO()
            pano.image.save(buf, format="WEBP" if fmt == "webp" else "JPEG", quality=85)
            cached = self.state.images.put(key, buf.getvalue())
        return cached, "image/webp" if fmt == "webp" else "image/jpeg"

    async def cdn(self, request: Request) -> Response:
        try:
            found = await self.cdn_bytes(request.url.path[len(PREFIX) :])
        except Exception:
            logger.exception("sandbox blockade could not draw %s", request.url.path)
            return error_response(500)
        if found is None:
            return error_response(404, "File not found")
        data, media = found
        return Response(
            data, media_type=media, headers={"Cache-Control": "public, max-age=31536000"}
        )
