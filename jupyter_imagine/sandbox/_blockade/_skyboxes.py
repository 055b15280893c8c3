"""Blockade's skybox and imagine-request endpoints."""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._core import BlockadeCore
from ._parsing import (
    generator_data,
    read_bool,
    read_float,
    read_int,
    read_model_version,
    read_query_int,
    read_text,
    read_webhook,
)
from ._records import Imagine
from ._wire import (
    ENHANCEMENTS,
    EXPORT_TYPES,
    FAMILIES,
    GENERATORS,
    INIT_STRENGTH_MAX,
    SEED_MAX,
    STATUSES,
    STYLES,
    ApiError,
)


class Skyboxes(BlockadeCore):
    """Skyboxes and imagine requests: styles, generators, create, get, cancel, list."""

    # ----------------------------------------------------------------- endpoints: catalogue
    async def styles(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        version = read_model_version(request)
        base = self.base_url(request)
        return JSONResponse(
            [self.style_view(s, base) for s in STYLES if version in (None, s["model_version"])]
        )

    async def families(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        version = read_model_version(request)
        base = self.base_url(request)
        out: list[dict[str, Any]] = []
        for family in FAMILIES:
            items = [
                self.style_view(s, base) for s in STYLES
                if s["skybox_style_families_id"] == family["id"]
                and version in (None, s["model_version"])
            ]
            if items:
                out.append({"type": "family", **family, "items": items})
        for s in STYLES:
            if s["skybox_style_families_id"] is None and version in (None, s["model_version"]):
                out.append({"type": "style", **self.style_view(s, base), "items": []})
        out.sort(key=lambda e: e["sort_order"])
        return JSONResponse(out)

    async def generators(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        return JSONResponse(json.loads(json.dumps(GENERATORS)))

    async def export_types(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        return JSONResponse([dict(t) for t in EXPORT_TYPES])

    # ----------------------------------------------------------------- endpoints: skyboxes
    async def skybox(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        prompt = read_text(body, "prompt", required=True)
        style_id = read_int(body, "skybox_style_id", required=True)
        style = next((s for s in STYLES if s["id"] == style_id), None)
        if style is None:
            raise ApiError(400, "The selected skybox style id is invalid.")
        negative = read_text(body, "negative_text") or ""
        if len(prompt) > style["max-char"]:
            raise ApiError(
                400, f"The prompt may not be greater than {style['max-char']} characters."
            )
        if len(negative) > style["negative-text-max-char"]:
            raise ApiError(
                400,
                "The negative text may not be greater than "
                f"{style['negative-text-max-char']} characters.",
            )
        self.check_prompt(prompt)
        enhance = read_bool(body, "enhance_prompt")
        depth_hq = read_bool(body, "return_depth_hq")
        seed = read_int(body, "seed", lo=0, hi=SEED_MAX) or 0
        webhook = read_webhook(body)
        parent: Imagine | None = None
        if body.get("remix_imagine_id") not in (None, ""):
            read_int(body, "remix_imagine_id")
            parent = self.find(owner, body["remix_imagine_id"], "Remix imagine")
        elif body.get("remix_obfuscated_id") not in (None, ""):
            parent = self.find_obfuscated(owner, body["remix_obfuscated_id"], "Remix imagine")
        if parent is not None and parent.status(self.now()) != "complete":
            raise ApiError(422, "The skybox to remix is not complete yet.")
        init = control = None
        strength = 0.5
        if body.get("init_image") not in (None, ""):
            init = await self.image_field(body["init_image"], "init_image")
            given = read_float(body, "init_strength", lo=0.0, hi=INIT_STRENGTH_MAX)
            strength = 0.5 if given is None else given
        model = None
        if body.get("control_image") not in (None, ""):
            control = await self.image_field(body["control_image"], "control_image")
            model = read_text(body, "control_model") or "remix"
            if model not in ("remix", "sketch", "scribble"):
                raise ApiError(400, "The selected control model is invalid.")
            if model != "remix" and Image.open(io.BytesIO(control)).size != (1024, 512):
                raise ApiError(400, f"A {model} control image must be 1024x512 pixels.")
        elif body.get("control_model") not in (None, ""):
            raise ApiError(400, "The control image field is required when control model is set.")
        if not seed:
            seed = parent.seed if parent is not None else self.draw_seed(prompt, style_id)
        if enhance:
            extra = ENHANCEMENTS[seed % len(ENHANCEMENTS)]
            prompt = f"{prompt}, {extra}"[: style["max-char"]]
        item = self.store_new(
            request,
            owner,
            kind="skybox",
            prompt=prompt,
            negative_text=negative,
            seed=seed,
            style=style,
            remix_of=parent.id if parent else None,
            remix_obfuscated_id=parent.obfuscated_id if parent else None,
            enhance_prompt=enhance,
            depth_hq=depth_hq,
            init_image=init,
            init_strength=strength,
            control_image=control,
            control_model=model,
            webhook_url=webhook,
        )
        return JSONResponse(self.view(item, self.base_url(request)))

    async def imagine_request(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        name = read_text(body, "generator", required=True)
        generator = next((g for g in GENERATORS if g["generator"] == name), None)
        if generator is None:
            raise ApiError(400, "The selected generator is invalid.")
        data = generator_data(generator, body)
        prompt = str(data.get("prompt") or "")
        self.check_prompt(prompt)
        seed = int(data.get("seed") or 0)
        if seed <= 0:
            seed = self.draw_seed(prompt, name)
        webhook = read_webhook(body)
        item = self.store_new(
            request,
            owner,
            kind="imaginarium",
            prompt=prompt,
            negative_text=str(data.get("negative_text") or ""),
            seed=seed,
            generator=name,
            generator_data=data,
            webhook_url=webhook,
        )
        return JSONResponse({"request": self.view(item, self.base_url(request))})

    async def get_request(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        item = self.find(owner, request.path_params["id"])
        return JSONResponse({"request": self.view(item, self.base_url(request))})

    async def get_obfuscated(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        item = self.find_obfuscated(owner, request.path_params["obfuscated_id"])
        return JSONResponse({"request": self.view(item, self.base_url(request))})

    async def cancel(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        item = self.find(owner, request.path_params["id"])
        status = item.status(self.now())
        if status in ("complete", "error"):
            raise ApiError(422, f"The imagine request is already {status}.")
        if status != "abort":
            item.aborted_at = self.now()
        return JSONResponse({"success": True})

    async def cancel_pending(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        now = self.now()
        for item in self.imagines():
            if item.owner == owner and not item.deleted and item.status(now) == "pending":
                item.aborted_at = now
        return JSONResponse({"success": True})

    async def delete(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        item = self.find(owner, request.path_params["id"])
        item.deleted = True
        return JSONResponse({"success": "Item deleted successfully", "id": str(item.id)})

    async def my_requests(self, request: Request, owner: str, body: dict[str, Any]) -> Response:
        q = request.query_params
        status = (q.get("status") or "all").strip().lower()
        if status not in ("all", *STATUSES):
            raise ApiError(400, "The selected status is invalid.")
        limit = read_query_int(q, "limit", 18, 1, 100)
        page = read_query_int(q, "offset", 0, 0, None)
        order = (q.get("order") or "DESC").strip().upper()
        if order not in ("ASC", "DESC"):
            raise ApiError(400, "The selected order is invalid.")
        imagine_id = read_query_int(q, "imagine_id", None, None, None)
        style_id = read_query_int(q, "skybox_style_id", None, None, None)
        query = (q.get("query") or "").strip().lower()
        generator = (q.get("generator") or "").strip()
        now = self.now()
        items = []
        for item in self.imagines():
            if item.owner != owner or item.deleted:
                continue
            if status != "all" and item.status(now) != status:
                continue
            if imagine_id is not None and item.id != imagine_id:
                continue
            if style_id is not None and (item.style or {}).get("id") != style_id:
                continue
            if generator and item.generator != generator:
                continue
            title = f"world #{item.id}" if item.kind == "skybox" else f"imagination #{item.id}"
            if query and query not in item.prompt.lower() and query not in title:
                continue
            items.append(item)
        items.sort(key=lambda i: i.id, reverse=order == "DESC")
        chunk = items[page * limit : (page + 1) * limit]
        base = self.base_url(request)
        return JSONResponse(
            {
                "data": [self.view(i, base, now) for i in chunk],
                "totalCount": len(items),
                "has_more": (page + 1) * limit < len(items),
            }
        )
