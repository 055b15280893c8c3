"""Banatie's generations endpoints."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from ._core import BanatieCore
from ._parsing import (
    read_alias,
    read_aspect,
    read_body,
    read_bool,
    read_meta,
    read_prompt,
    read_template,
)
from ._records import Generation
from ._wire import STATUSES, UUID_RE, ApiError, bad_request, ok

if TYPE_CHECKING:
    from ._records import Principal


class Generations(BanatieCore):
    """The generations resource: create, list, get, update, regenerate, delete."""

    # ================================================================= generations
    def _create_generation(
        self,
        *,
        prompt: str,
        aspect_ratio: str,
        auto_enhance: bool,
        template: str,
        flow_id: str | None,
        alias: str | None,
        flow_alias: str | None,
        meta: dict[str, Any],
        references: tuple[list[str], list[dict[str, Any]], tuple[Any, ...]] = ([], [], ()),
        live_scope: str | None = None,
        synchronous: bool | None = None,
    ) -> Generation:
        ids, referenced, refs = references
        now = self.now()
        gen = Generation(
            id=str(uuid.uuid4()),
            prompt=prompt,
            aspect_ratio=aspect_ratio,
            auto_enhance=auto_enhance,
            template=template,
            created=now,
            seq=self.seq(),
            updated=now,
            flow_id=flow_id,
            alias=alias,
            flow_alias=flow_alias,
            meta=meta,
            reference_ids=ids,
            referenced=referenced,
            refs=refs,
            run_started=now,
            done_at=now,
            failure=None,
            live_scope=live_scope,
        )
        self.generations[gen.id] = gen
        if flow_id is not None and flow_id in self.flows:
            self.flows[flow_id].updated = now
        self.start_run(gen, synchronous=synchronous)
        return gen

    async def create_generation(self, request: Request, principal: Principal | None) -> Response:
        body = await read_body(request)
        prompt = read_prompt(body.get("prompt"))
        aspect = read_aspect(body.get("aspectRatio"))
        auto_enhance = read_bool(body.get("autoEnhance"), "autoEnhance", True)
        template = read_template(body.get("enhancementOptions"))
        alias = read_alias(body.get("alias"), "alias")
        flow_alias = read_alias(body.get("flowAlias"), "flowAlias")
        meta = read_meta(body.get("meta"))
        if flow_alias and "flowId" in body and body["flowId"] is None:
            raise bad_request("flowAlias requires a flow: give flowId (or omit it for a new flow)")
        refs = body.get("referenceImages")
        # references resolve in the flow named by the request (the project when none is named)
        context = body.get("flowId") if isinstance(body.get("flowId"), str) else None
        if context is not None and not UUID_RE.match(context):
            raise bad_request("flowId must be a UUID or null")
        references = self.references(refs, prompt, context)
        flow_id = self.flow_for(body)
        gen = self._create_generation(
            prompt=prompt, aspect_ratio=aspect, auto_enhance=auto_enhance, template=template,
            flow_id=flow_id, alias=alias, flow_alias=flow_alias, meta=meta, references=references,
        )
        return ok(self.generation_view(request, gen), 201)

    async def list_generations(self, request: Request, principal: Principal | None) -> Response:
        q = request.query_params
        status = q.get("status")
        if status is not None and status not in STATUSES:
            raise bad_request(f"status must be one of {', '.join(STATUSES)}")
        include_deleted = read_bool(q.get("includeDeleted"), "includeDeleted", False)
        flow_id = q.get("flowId")
        now = self.now()
        gens = [
            g for g in self.generations.values()
            if (include_deleted or g.deleted is None)
            and (flow_id is None or g.flow_id == flow_id)
            and (status is None or self.status_of(g, now) == status)
        ]
        return self._page(request, gens, lambda g: self.generation_view(request, g))

    async def get_generation(self, request: Request, principal: Principal | None) -> Response:
        gen = self.generation(request.path_params["gen_id"])
        return ok(self.generation_view(request, gen))

    def _regenerate(self, gen: Generation) -> None:
        if self.status_of(gen) not in ("success", "failed"):
            raise ApiError(409, "GENERATION_IN_PROGRESS",
                           "Generation is still running; wait for it to finish")
        gen.version += 1
        self.start_run(gen)

    async def update_generation(self, request: Request, principal: Principal | None) -> Response:
        gen = self.generation(request.path_params["gen_id"])
        body = await read_body(request)
        regenerate = False
        if "prompt" in body:
            prompt = read_prompt(body["prompt"])
            regenerate = regenerate or prompt != gen.prompt
        if "aspectRatio" in body:
            aspect = read_aspect(body["aspectRatio"])
            regenerate = regenerate or aspect != gen.aspect_ratio
        meta = read_meta(body["meta"]) if "meta" in body else None
        flow_id: Any = ...
        if "flowId" in body:
            value = body["flowId"]
            if value is not None and (not isinstance(value, str) or not UUID_RE.match(value)):
                raise bad_request("flowId must be a UUID or null")
            flow_id = value
        if regenerate and self.status_of(gen) not in ("success", "failed"):
            raise ApiError(409, "GENERATION_IN_PROGRESS",
                           "Generation is still running; wait for it to finish")
        if flow_id is not ...:
            if flow_id is not None and flow_id not in self.flows:
                self.new_flow(flow_id)
            gen.flow_id = flow_id
            image = self.images.get(gen.output_image_id or "")
            if image is not None:
                image.flow_id = flow_id
        if meta is not None:
            gen.meta = meta
        gen.updated = self.now()
        if regenerate:
            if "prompt" in body:
                gen.prompt = read_prompt(body["prompt"])
            if "aspectRatio" in body:
                gen.aspect_ratio = read_aspect(body["aspectRatio"])
            self._regenerate(gen)
        return ok(self.generation_view(request, gen))

    async def regenerate_generation(
        self, request: Request, principal: Principal | None
    ) -> Response:
        gen = self.generation(request.path_params["gen_id"])
        self._regenerate(gen)
        return ok(self.generation_view(request, gen))

    async def remove_generation(self, request: Request, principal: Principal | None) -> Response:
        gen = self.generation(request.path_params["gen_id"])
        self.delete_generation(gen)
        return ok({"id": gen.id})
