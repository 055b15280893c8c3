"""Banatie's flows endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from ._core import BanatieCore
from ._parsing import read_alias, read_body, read_meta
from ._wire import ApiError, bad_request, ok

if TYPE_CHECKING:
    from ._records import Principal


class Flows(BanatieCore):
    """The flows resource: create, list, get, their generations and images, aliases, delete."""

    # ================================================================= flows
    async def create_flow(self, request: Request, principal: Principal | None) -> Response:
        body = await read_body(request)
        flow = self.new_flow(meta=read_meta(body.get("meta")))
        return ok(self.flow_view(flow), 201)

    async def list_flows(self, request: Request, principal: Principal | None) -> Response:
        return self._page(request, list(self.flows.values()), self.flow_view)

    async def get_flow(self, request: Request, principal: Principal | None) -> Response:
        return ok(self.flow_view(self.flow(request.path_params["flow_id"])))

    async def flow_generations(self, request: Request, principal: Principal | None) -> Response:
        flow = self.flow(request.path_params["flow_id"])
        gens = [g for g in self.generations.values() if g.flow_id == flow.id and g.deleted is None]
        return self._page(request, gens, lambda g: self.generation_view(request, g))

    async def flow_images(self, request: Request, principal: Principal | None) -> Response:
        flow = self.flow(request.path_params["flow_id"])
        images = [i for i in self.images.values() if i.flow_id == flow.id]
        return self._page(request, images, lambda i: self.image_view(request, i))

    async def set_flow_aliases(self, request: Request, principal: Principal | None) -> Response:
        flow = self.flow(request.path_params["flow_id"])
        body = await read_body(request)
        aliases = body.get("aliases")
        if not isinstance(aliases, dict) or not aliases:
            raise bad_request('aliases must be an object like {"@hero": "<imageId>"}')
        for alias, image_id in aliases.items():
            read_alias(alias, "alias")
            if not isinstance(image_id, str):
                raise bad_request(f"the image of {alias} must be an image id")
            self.image_by_id(image_id)
        flow.aliases.update(aliases)
        flow.updated = self.now()
        return ok(self.flow_view(flow))

    async def delete_flow_alias(self, request: Request, principal: Principal | None) -> Response:
        flow = self.flow(request.path_params["flow_id"])
        alias = request.path_params["alias"]
        if alias not in flow.aliases:
            raise ApiError(404, "ALIAS_NOT_FOUND", f"Alias {alias} not found in this flow")
        del flow.aliases[alias]
        flow.updated = self.now()
        return ok(self.flow_view(flow))

    async def regenerate_flow(self, request: Request, principal: Principal | None) -> Response:
        flow = self.flow(request.path_params["flow_id"])
        gens = [g for g in self.generations.values() if g.flow_id == flow.id and g.deleted is None]
        if not gens:
            raise bad_request("Flow has no generations to regenerate")
        gen = max(gens, key=lambda g: g.seq)
        self._regenerate(gen)
        return ok(self.generation_view(request, gen))

    async def remove_flow(self, request: Request, principal: Principal | None) -> Response:
        flow = self.flow(request.path_params["flow_id"])
        for gen in [g for g in self.generations.values() if g.flow_id == flow.id]:
            if gen.deleted is None:
                self.delete_generation(gen)
            gen.flow_id = None
        for image in [i for i in self.images.values() if i.flow_id == flow.id]:
            if image.alias:
                image.flow_id = None
            else:
                self.delete_image(image)
        del self.flows[flow.id]
        return ok({"id": flow.id})
