"""neuroflash's workspace, quota, model and image endpoints."""

from __future__ import annotations

import base64
import binascii
import io
import re
import uuid

import httpx
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._core import NeuroflashCore
from ._parsing import invalid, paged
from ._wire import (
    CONTENT_PATH,
    DATA_URI,
    FORMAT_OF_PIL,
    MAX_UPLOAD_BYTES,
    MEDIA,
    MODELS,
    WORKSPACE_ID,
    WORKSPACE_NAME,
    ApiError,
    user_id,
)


class Images(NeuroflashCore):
    """Workspaces, quotas, models and the images resource: list, get, delete, content, upload."""

    # ----------------------------------------------------------------- endpoints
    async def workspaces(self, request: Request, client_id: str, body: dict) -> Response:
        items = [{"id": WORKSPACE_ID, "name": WORKSPACE_NAME, "role": "member"}]
        return JSONResponse(paged(request, items))

    async def quotas_(self, request: Request, client_id: str, body: dict) -> Response:
        self.workspace(request)
        key = request.query_params.get("usageTypeKey")
        items = [q.to_wire() for k, q in self.quotas.items() if key in (None, "", k)]
        return JSONResponse(paged(request, items))

    async def models(self, request: Request, client_id: str, body: dict) -> Response:
        self.workspace(request)
        items = [
            {k: (list(v) if isinstance(v, list) else v) for k, v in m.items() if k != "longSide"}
            for m in sorted(MODELS, key=lambda m: m["order"])
        ]
        return JSONResponse(paged(request, items))

    async def list_images(self, request: Request, client_id: str, body: dict) -> Response:
        ws = self.workspace(request)
        base = self.base_url(request)
        records = sorted(
            (r for r in self.images.values() if not r.deleted and r.workspace_id == ws),
            key=lambda r: (r.created, r.id),
            reverse=True,
        )
        page = paged(request, records)
        await self.measure(page["data"])
        page["data"] = [self.view(r, base) for r in page["data"]]
        return JSONResponse(page)

    async def get_image(self, request: Request, client_id: str, body: dict) -> Response:
        ws = self.workspace(request)
        record = self.image(request.path_params["image_id"], workspace=ws)
        await self.measure([record])
        return JSONResponse(self.view(record, self.base_url(request)))

    async def delete_image(self, request: Request, client_id: str, body: dict) -> Response:
        ws = self.workspace(request)
        record = self.image(request.path_params["image_id"], workspace=ws)
        if record.created_by != user_id(client_id) and client_id not in self.admins:
            raise ApiError(
                403,
                f"Only the creator of image {record.id} (createdByUserId) or a workspace "
                "admin may delete it",
            )
        record.deleted = True
        return Response(status_code=204)

    async def content(self, request: Request, client_id: str, body: dict) -> Response:
        ws = self.workspace(request)
        record = self.image(request.path_params["image_id"], workspace=ws)
        data = await run_in_threadpool(self.encoded, record)
        return Response(
            data,
            media_type=MEDIA[record.fmt],
            headers={"Cache-Control": "private, max-age=3600"},
        )

    async def upload(self, request: Request, client_id: str, body: dict) -> Response:
        ws = self.workspace(request)
        url = body.get("imageUrl")
        if not isinstance(url, str) or not url.strip():
            raise invalid("imageUrl", "imageUrl is required")
        data = await self.fetch_source(request, url.strip())
        try:
            with Image.open(io.BytesIO(data)) as im:
                fmt = FORMAT_OF_PIL.get(im.format or "")
                width, height = im.size
                if fmt is None:
                    buf = io.BytesIO()
                    im.convert("RGB").save(buf, format="PNG")
                    data, fmt = buf.getvalue(), "png"
        except (UnidentifiedImageError, OSError):
            raise invalid("imageUrl", "imageUrl does not point to an image") from None
        record = self.new_record(
            client_id, ws, str(uuid.uuid4()),
            prompt="", model=None, parameters={"source": "upload"}, input_image_ids=[],
            width=width, height=height, fmt=fmt, recipe=("upload",), data=data, size=len(data),
        )
        self.images[record.id] = record
        return JSONResponse(self.view(record, self.base_url(request)), status_code=201)

    async def fetch_source(self, request: Request, url: str) -> bytes:
        match = DATA_URI.match(url)
        if match:
            try:
                data = base64.b64decode(re.sub(r"\s+", "", match[3]), validate=True)
            except (binascii.Error, ValueError):
                raise invalid("imageUrl", "imageUrl is not valid base64") from None
        elif re.match(r"^https?://", url, re.IGNORECASE):
            try:
                parsed = httpx.URL(url)
            except (httpx.InvalidURL, TypeError):
                raise invalid("imageUrl", "imageUrl is not a valid URL") from None
            own = CONTENT_PATH.search(parsed.path)
            if own is not None and own[1] in (WORKSPACE_ID,) and own[2] in self.images:
                record = self.images[own[2]]
                if not record.deleted:
                    return await run_in_threadpool(self.encoded, record)
            transport = self.state.webhook_transport(url, str(request.base_url))
            try:
                async with httpx.AsyncClient(
                    transport=transport, timeout=10, follow_redirects=True
                ) as client:
                    response = await client.get(url)
                response.raise_for_status()
            except httpx.HTTPError:
                raise invalid("imageUrl", "could not download imageUrl") from None
            data = response.content
        else:
            raise invalid("imageUrl", "imageUrl must be an http(s) URL or a data: URI")
        if len(data) > MAX_UPLOAD_BYTES:
            raise ApiError(413, f"The image is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
        return data
