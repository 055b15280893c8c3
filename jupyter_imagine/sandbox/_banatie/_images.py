"""Banatie's images endpoints."""

from __future__ import annotations

import io
import uuid
from typing import TYPE_CHECKING, Any

from PIL import Image as PILImage
from starlette.requests import Request
from starlette.responses import Response

from ._core import BanatieCore
from ._parsing import read_alias, read_body, read_json_field, read_meta, read_multipart
from ._records import StoredImage
from ._wire import MAX_UPLOAD_BYTES, UPLOAD_FORMATS, bad_request, ok

if TYPE_CHECKING:
    from ._records import Principal


class Images(BanatieCore):
    """The images resource: upload, list, get, resolve an alias, update, delete."""

    # ================================================================= images
    async def upload(self, request: Request, principal: Principal | None) -> Response:
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            raise bad_request("Send the image as multipart/form-data with a file field")
        fields, files = read_multipart(await request.body(), content_type)
        if "file" not in files:
            raise bad_request("file is required")
        _, _, data = files["file"]
        if len(data) > MAX_UPLOAD_BYTES:
            raise bad_request("file is larger than 5 MB")
        try:
            with PILImage.open(io.BytesIO(data)) as im:
                fmt, (width, height) = im.format, im.size
        except Exception:
            raise bad_request("file is not an image") from None
        if fmt not in UPLOAD_FORMATS:
            raise bad_request("file must be PNG, JPEG or WebP")
        alias = read_alias(fields.get("alias") or None, "alias")
        flow_alias = read_alias(fields.get("flowAlias") or None, "flowAlias")
        meta = read_meta(read_json_field(fields.get("meta"), "meta"))
        form: dict[str, Any] = {}
        if "flowId" in fields:
            form["flowId"] = fields["flowId"]
        if flow_alias and form.get("flowId") in ("", "null"):
            raise bad_request("flowAlias requires a flow: give flowId (or omit it for a new flow)")
        flow_id = self.flow_for(form)
        now = self.now()
        image = StoredImage(
            id=str(uuid.uuid4()), source="uploaded", created=now, seq=self.seq(), updated=now,
            width=width, height=height, mime=UPLOAD_FORMATS[fmt], flow_id=flow_id, meta=meta,
            file_size=len(data),
        )
        image.blob = image.id
        self.blobs[image.id] = data
        self.images[image.id] = image
        if alias:
            self.assign_project_alias(image, alias, reassign=True)
        if flow_alias and flow_id:
            self.flows[flow_id].aliases[flow_alias] = image.id
            self.flows[flow_id].updated = now
        return ok(self.image_view(request, image), 201)

    async def list_images(self, request: Request, principal: Principal | None) -> Response:
        q = request.query_params
        source = q.get("source")
        if source is not None and source not in ("generated", "uploaded"):
            raise bad_request("source must be generated or uploaded")
        alias, flow_id = q.get("alias"), q.get("flowId")
        images = [
            i for i in self.images.values()
            if (source is None or i.source == source)
            and (alias is None or i.alias == alias)
            and (flow_id is None or i.flow_id == flow_id)
        ]
        return self._page(request, images, lambda i: self.image_view(request, i))

    async def get_image(self, request: Request, principal: Principal | None) -> Response:
        image, _ = self.resolve(request.path_params["ref"], request.query_params.get("flowId"))
        return ok(self.image_view(request, image))

    async def resolve_alias(self, request: Request, principal: Principal | None) -> Response:
        alias = request.path_params["alias"]
        if not alias.startswith("@"):
            raise bad_request("resolve takes an @alias")
        flow_id = request.query_params.get("flowId")
        image, scope = self.resolve(alias, flow_id)
        return ok({
            "alias": alias,
            "imageId": image.id,
            "scope": scope,
            "flowId": flow_id,
            "image": self.image_view(request, image),
        })

    async def update_image(self, request: Request, principal: Principal | None) -> Response:
        image, _ = self.resolve(request.path_params["ref"], request.query_params.get("flowId"))
        body = await read_body(request)
        if "alias" in body:
            raise bad_request("alias cannot be changed here: use PUT /api/v1/images/:id/alias")
        if "focalPoint" in body:
            point = body["focalPoint"]
            if point is not None:
                if not isinstance(point, dict) or set(point) != {"x", "y"} or not all(
                    isinstance(point[k], (int, float)) and not isinstance(point[k], bool)
                    and 0 <= point[k] <= 1 for k in ("x", "y")
                ):
                    raise bad_request("focalPoint must be {x, y} with numbers from 0 to 1")
                point = {"x": float(point["x"]), "y": float(point["y"])}
            image.focal_point = point
        if "meta" in body:
            image.meta = read_meta(body["meta"])
        image.updated = self.now()
        return ok(self.image_view(request, image))

    async def set_image_alias(self, request: Request, principal: Principal | None) -> Response:
        image = self.image_by_id(request.path_params["image_id"])
        body = await read_body(request)
        if "alias" not in body:
            raise bad_request("alias is required (an @alias, or null to remove it)")
        alias = read_alias(body["alias"], "alias")
        self.assign_project_alias(image, alias, reassign=False)
        image.updated = self.now()
        return ok(self.image_view(request, image))

    async def remove_image(self, request: Request, principal: Principal | None) -> Response:
        image = self.image_by_id(request.path_params["image_id"])
        self.delete_image(image)
        return ok({"id": image.id})
