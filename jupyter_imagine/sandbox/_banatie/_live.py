"""Banatie's live scopes, live URLs and CDN endpoints."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import _http as http
from ._core import BanatieCore
from ._parsing import read_aspect, read_body, read_bool, read_meta, read_prompt
from ._records import CacheEntry, LiveScope, Principal
from ._wire import (
    ALIAS_RE,
    CACHE_CONTROL,
    ORG_SLUG,
    PROJECT_SLUG,
    SCOPE_RE,
    TEMPLATES,
    ApiError,
    bad_request,
    error_response,
    not_found,
    ok,
)


class Live(BanatieCore):
    """Live scopes and the CDN: scopes, live URLs that generate on first request, CDN images."""

    # ================================================================= live scopes
    def scope(self, slug: str) -> LiveScope:
        scope = self.scopes.get(slug)
        if scope is None:
            raise ApiError(404, "SCOPE_NOT_FOUND", f"Scope {slug!r} not found")
        return scope

    def _scope_settings(self, body: dict[str, Any], scope: LiveScope) -> None:
        if "allowNewGenerations" in body:
            scope.allow_new = read_bool(body["allowNewGenerations"], "allowNewGenerations", True)
        if "newGenerationsLimit" in body:
            limit = body["newGenerationsLimit"]
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise bad_request("newGenerationsLimit must be a whole number >= 0")
            scope.limit = limit
        if "meta" in body:
            scope.meta = read_meta(body["meta"])

    def new_scope(self, slug: str) -> LiveScope:
        if not isinstance(slug, str) or not SCOPE_RE.match(slug):
            raise ApiError(400, "SCOPE_INVALID_FORMAT",
                           "Scope slug must be letters, digits, hyphens or underscores")
        scope = LiveScope(str(uuid.uuid4()), slug, self.now(), self.seq())
        self.scopes[slug] = scope
        return scope

    async def create_scope(self, request: Request, principal: Principal | None) -> Response:
        body = await read_body(request)
        slug = body.get("slug")
        if slug in (None, ""):
            raise bad_request("slug is required")
        if slug in self.scopes:
            raise ApiError(409, "SCOPE_ALREADY_EXISTS", f"Scope {slug!r} already exists")
        probe = LiveScope("", "", 0, 0)
        self._scope_settings(body, probe)  # validate before creating
        scope = self.new_scope(slug)
        self._scope_settings(body, scope)
        return ok(self.scope_view(scope), 201)

    async def list_scopes(self, request: Request, principal: Principal | None) -> Response:
        slug = request.query_params.get("slug")
        scopes = [s for s in self.scopes.values() if slug is None or s.slug == slug]
        return self._page(request, scopes, self.scope_view)

    async def get_scope(self, request: Request, principal: Principal | None) -> Response:
        return ok(self.scope_view(self.scope(request.path_params["slug"])))

    async def update_scope(self, request: Request, principal: Principal | None) -> Response:
        scope = self.scope(request.path_params["slug"])
        body = await read_body(request)
        self._scope_settings(body, scope)
        return ok(self.scope_view(scope))

    async def delete_scope(self, request: Request, principal: Principal | None) -> Response:
        scope = self.scope(request.path_params["slug"])
        del self.scopes[scope.slug]
        for key in [k for k, e in self.live_cache.items() if e.scope == scope.slug]:
            del self.live_cache[key]
        return ok({"id": scope.id, "slug": scope.slug})

    async def regenerate_scope(self, request: Request, principal: Principal | None) -> Response:
        scope = self.scope(request.path_params["slug"])
        body = await read_body(request)
        entries = [e for e in self.live_cache.values() if e.scope == scope.slug]
        image_id = body.get("imageId")
        if image_id is not None:
            if not any(e.image_id == image_id for e in entries):
                raise ApiError(400, "IMAGE_NOT_IN_SCOPE",
                               f"Image {image_id} is not in scope {scope.slug!r}")
            entries = [e for e in entries if e.image_id == image_id]
        done = []
        for entry in entries:
            gen = self.generations.get(entry.generation_id)
            if gen is not None:
                gen.version += 1
                self.start_run(gen, synchronous=True)
                done.append(entry.image_id)
        return ok({"regenerated": len(done), "imageIds": done})

    # ================================================================= live & CDN
    def _live_ip(self, request: Request) -> str:
        forwarded = request.headers.get("x-forwarded-for", "")
        first = forwarded.split(",")[0].strip()
        if first:
            return first
        return request.client.host if request.client else "unknown"

    async def live(self, request: Request, scope_slug: str, *, keyed: bool = False) -> Response:
        """A live generation: bytes from the cache (HIT) or a new generation (MISS)."""
        q = request.query_params
        prompt = read_prompt(q.get("prompt"))
        aspect = read_aspect(q.get("aspectRatio"))
        auto_enhance = read_bool(q.get("autoEnhance"), "autoEnhance", True)
        template = q.get("template") or "general"
        if template not in TEMPLATES:
            raise bad_request(f"template must be one of {', '.join(TEMPLATES)}")
        if not SCOPE_RE.match(scope_slug):
            raise ApiError(400, "SCOPE_INVALID_FORMAT",
                           "Scope slug must be letters, digits, hyphens or underscores")
        key = (scope_slug, prompt, aspect, auto_enhance, template)
        entry = self.live_cache.get(key)
        ip = self._live_ip(request)
        if entry is not None and entry.image_id in self.images:
            headers = {} if keyed else self._window(
                self._live_windows, ip, self.effective_live_limit, count=False
            )
            entry.hits += 1
            image = self.images[entry.image_id]
            data = await run_in_threadpool(self.image_bytes, image)
            headers.update({
                "X-Cache-Status": "HIT",
                "X-Cache-Hit-Count": str(entry.hits),
                "X-Image-Id": image.id,
                "Cache-Control": CACHE_CONTROL,
            })
            return Response(data, media_type=image.mime, headers=headers)
        scope = self.scopes.get(scope_slug) or self.new_scope(scope_slug)
        if not scope.allow_new or scope.current >= scope.limit:
            raise ApiError(
                403,
                "SCOPE_GENERATION_LIMIT_REACHED",
                f"Scope {scope_slug!r} allows no new generations "
                f"({scope.current} of {scope.limit} used)",
            )
        headers = {} if keyed else self._window(
            self._live_windows, ip, self.effective_live_limit, count=True
        )
        gen = self._create_generation(
            prompt=prompt, aspect_ratio=aspect, auto_enhance=auto_enhance, template=template,
            flow_id=None, alias=None, flow_alias=None, meta={"liveScope": scope_slug},
            live_scope=scope_slug, synchronous=True,
        )
        if gen.failure:
            raise ApiError(500, "INTERNAL_ERROR", gen.failure)
        scope.current += 1
        scope.last_generated = self.now()
        image = self.images[gen.output_image_id or ""]
        self.live_cache[key] = CacheEntry(image.id, gen.id, scope_slug)
        data = await run_in_threadpool(self.image_bytes, image)
        headers.update({
            "X-Cache-Status": "MISS",
            "X-Generation-Id": gen.id,
            "X-Image-Id": image.id,
            "Cache-Control": CACHE_CONTROL,
        })
        return Response(data, media_type=image.mime, headers=headers)

    async def keyed_live(self, request: Request, principal: Principal | None) -> Response:
        return await self.live(request, "api", keyed=True)

    def _project(self, request: Request) -> None:
        org, project = request.path_params["org"], request.path_params["project"]
        if (org, project) != (ORG_SLUG, PROJECT_SLUG):
            raise ApiError(404, "PROJECT_NOT_FOUND", f"Project {org}/{project} not found")

    async def cdn_image(self, request: Request) -> Response:
        return await http.guarded(request, lambda: self._cdn_image(request), _crash, "banatie")

    async def _cdn_image(self, request: Request) -> Response:
        self.settle()
        self._project(request)
        ref = request.path_params["ref"]
        if ref.startswith("@"):
            if not ALIAS_RE.match(ref):
                raise bad_request(f"Invalid alias format {ref!r}")
            image_id = self.project_aliases.get(ref)
            image = self.images.get(image_id or "")
            if image is None:
                raise ApiError(404, "ALIAS_NOT_FOUND", f"Alias {ref} not found")
        else:
            image = self.images.get(ref.split(".")[0])
            if image is None:
                raise not_found("Image", "IMAGE_NOT_FOUND")
        data = await run_in_threadpool(self.image_bytes, image)
        return Response(data, media_type=image.mime,
                        headers={"Cache-Control": CACHE_CONTROL, "X-Image-Id": image.id})

    async def cdn_live(self, request: Request) -> Response:
        async def call() -> Response:
            self.settle()
            self._project(request)
            return await self.live(request, request.path_params["scope"])

        return await http.guarded(request, call, _crash, "banatie")

    def cdn_routes(self) -> list[Route]:
        return [
            Route("/{org}/{project}/img/{ref}", self.cdn_image, methods=["GET"]),
            Route("/{org}/{project}/live/{scope}", self.cdn_live, methods=["GET"]),
        ]


def _crash() -> Response:
    """The answer to a request the emulator failed on (logged by :func:`~.._http.guarded`)."""
    return error_response(500, "INTERNAL_ERROR", "Internal server error")
