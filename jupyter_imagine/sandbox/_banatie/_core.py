"""The Banatie emulator's state and shared machinery: auth, rate windows, settling runs,
references, views and the endpoint wrapper."""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from ..._secrets import get_logger
from .. import _http as http
from .._art import _banatie as art
from .._state import SandboxState
from .._triggers import FAIL_WORD, HANG_WORD
from ._parsing import derive, read_paging
from ._records import Flow, Principal, StoredImage, processing_ms
from ._wire import (
    ALIAS_RE,
    CDN_PREFIX,
    DEFAULT_API_LIMIT,
    DEFAULT_LIVE_LIMIT,
    FAIL_MESSAGE,
    MAX_REFERENCES,
    ORG_SLUG,
    PROJECT_ID,
    PROJECT_SLUG,
    PROMPT_ALIAS_RE,
    RATE_WINDOW,
    REAL_API_LIMIT,
    REAL_LIVE_LIMIT,
    TECHNICAL_ALIASES,
    UUID_RE,
    ApiError,
    bad_request,
    error_response,
    not_found,
    ok,
)

if TYPE_CHECKING:
    from ._records import ApiKey, CacheEntry, Generation, Handler, LiveScope

logger = get_logger(__name__)


class BanatieCore:
    """The Banatie emulator of one sandbox (``state.providers["banatie"]``).

    Attributes (knobs tests set; defaults in brackets):
        synchronous: create/regenerate answer ``success`` at once [True]; ``False`` runs the
            ``pending → processing → success|failed`` lifecycle on the simulated clock.
        pending_seconds, processing_seconds: the asynchronous lifecycle's phases [1, 4].
        api_limit, live_limit: requests per key, new live generations per IP, per window
            [10000, 1000]; ``enforce_real_limits`` [False] replaces them with 100 and 10.
        rate_window: the windows' length in simulated seconds [3600].
        rate_limited: how many 429s were answered (rate limits, not injected faults).
    """

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.synchronous = True
        self.pending_seconds = 1.0
        self.processing_seconds = 4.0
        self.api_limit = DEFAULT_API_LIMIT
        self.live_limit = DEFAULT_LIVE_LIMIT
        self.enforce_real_limits = False
        self.rate_window = RATE_WINDOW
        self.rate_limited = 0
        self.epoch = time.time()
        self.keys: dict[str, ApiKey] = {}
        self.generations: dict[str, Generation] = {}
        self.images: dict[str, StoredImage] = {}
        self.flows: dict[str, Flow] = {}
        self.scopes: dict[str, LiveScope] = {}
        self.live_cache: dict[tuple[Any, ...], CacheEntry] = {}
        self.blobs: dict[str, bytes] = {}
        self.project_aliases: dict[str, str] = {}
        self._api_windows: dict[str, list[float]] = {}
        self._live_windows: dict[str, list[float]] = {}
        self._unsettled: set[str] = set()
        self.last_seq = 0

    # ----------------------------------------------------------------- time & ids
    def now(self) -> float:
        return self.state.clock.now()

    def iso(self, sim: float | None) -> str | None:
        if sim is None:
            return None
        moment = datetime.fromtimestamp(self.epoch + sim, tz=timezone.utc)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def seq(self) -> int:
        self.last_seq += 1
        return self.last_seq

    # ----------------------------------------------------------------- limits
    @property
    def effective_api_limit(self) -> int:
        return REAL_API_LIMIT if self.enforce_real_limits else int(self.api_limit)

    @property
    def effective_live_limit(self) -> int:
        return REAL_LIVE_LIMIT if self.enforce_real_limits else int(self.live_limit)

    def _reset_in(self, end: float) -> float:
        """Real seconds until simulated time ``end`` (a frozen clock counts as speed 1)."""
        real = self.state.clock.real_seconds_until(end)
        return max(0.0, end - self.now()) if real is None else real

    def _window(
        self, windows: dict[str, list[float]], ident: str, limit: int, *, count: bool
    ) -> dict[str, str]:
        """Count one request of ``ident`` (if ``count``) and return the X-RateLimit headers.

        Raises:
            ApiError: 429 when the window is used up (with the headers and Retry-After).
        """
        now = self.now()
        start, used = windows.get(ident, [now, 0.0])
        if now >= start + self.rate_window:
            start, used = now, 0.0
        end = start + self.rate_window
        wait = self._reset_in(end)
        reset = math.ceil(time.time() + wait)
        if count and used >= limit:
            self.rate_limited += 1
            headers = {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
                "Retry-After": str(max(1, math.ceil(wait))),
            }
            windows[ident] = [start, used]
            raise ApiError(
                429,
                "RATE_LIMIT_EXCEEDED",
                f"Rate limit exceeded: {limit} requests per hour; try again in "
                f"{max(1, math.ceil(wait))} seconds",
                headers=headers,
            )
        if count:
            used += 1
        windows[ident] = [start, used]
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, int(limit - used))),
            "X-RateLimit-Reset": str(reset),
        }

    # ----------------------------------------------------------------- auth
    def authenticate(self, request: Request, required: bool) -> Principal | None:
        key = http.first_key(request.headers.get("x-api-key"))
        if not key:
            if required:
                raise ApiError(401, "UNAUTHORIZED", "Missing API key: send it in X-API-Key")
            return None
        minted = next((k for k in self.keys.values() if k.value == key), None)
        if minted is not None:
            if minted.revoked:
                raise ApiError(401, "UNAUTHORIZED", "API key has been revoked")
            if minted.expires is not None and self.now() >= minted.expires:
                raise ApiError(401, "UNAUTHORIZED", "API key has expired")
            return Principal(key, minted.type, minted)
        if not self.state.key_accepted(key):
            raise ApiError(401, "UNAUTHORIZED", "Invalid API key")
        return Principal(key, "project")

    # ----------------------------------------------------------------- settle
    def settle(self) -> None:
        """Bring every generation whose run has ended up to date (output image, aliases)."""
        if not self._unsettled:
            return
        now = self.now()
        for gen_id in sorted(self._unsettled, key=lambda g: self.generations[g].seq):
            self.status_of(self.generations[gen_id], now)

    def status_of(self, gen: Generation, now: float | None = None) -> str:
        """``gen``'s status at ``now`` (default: the clock's now). A run that has ended since
        the request's :meth:`settle` is settled here first, so no answer shows ``success``
        without its output image."""
        status = gen.status(self.now() if now is None else now, self.pending_seconds)
        if status in ("success", "failed") and gen.id in self._unsettled:
            self._materialise(gen)
        return status

    def _materialise(self, gen: Generation) -> None:
        self._unsettled.discard(gen.id)
        gen.settled = True
        gen.updated = max(gen.updated, gen.done_at or gen.updated)
        if gen.failure:
            return
        image = self.images.get(gen.output_image_id or "")
        width, height = art.SIZES[gen.aspect_ratio]
        if image is None:
            image = StoredImage(
                id=str(uuid.uuid4()),
                source="generated",
                created=gen.done_at if gen.done_at is not None else self.now(),
                seq=self.seq(),
                updated=self.now(),
                width=width,
                height=height,
                flow_id=gen.flow_id,
                generation_id=gen.id,
                scope=gen.live_scope,
            )
            self.images[image.id] = image
            gen.output_image_id = image.id
        image.recipe = self._recipe(gen)
        image.width, image.height = width, height
        image.file_size = None
        image.updated = self.now()
        image.flow_id = gen.flow_id
        if gen.alias:
            self.assign_project_alias(image, gen.alias, reassign=True)
        if gen.flow_alias and gen.flow_id:
            flow = self.flows.get(gen.flow_id)
            if flow is not None:
                flow.aliases[gen.flow_alias] = image.id
                flow.updated = self.now()

    def _recipe(self, gen: Generation) -> art.Recipe:
        seed = derive(self.state.seed, "banatie", " ".join(gen.prompt.split()).lower(),
                       gen.aspect_ratio, gen.auto_enhance, gen.template, gen.version)
        return art.Recipe(gen.prompt, gen.aspect_ratio, seed, gen.refs)

    # ----------------------------------------------------------------- lookups
    def generation(self, gen_id: str, *, deleted: bool = False) -> Generation:
        gen = self.generations.get(gen_id)
        if gen is None or (gen.deleted is not None and not deleted):
            raise not_found("Generation", "GENERATION_NOT_FOUND")
        return gen

    def flow(self, flow_id: str) -> Flow:
        flow = self.flows.get(flow_id)
        if flow is None:
            raise not_found("Flow", "FLOW_NOT_FOUND")
        return flow

    def image_by_id(self, image_id: str) -> StoredImage:
        image = self.images.get(image_id)
        if image is None:
            raise not_found("Image", "IMAGE_NOT_FOUND")
        return image

    def new_flow(self, flow_id: str | None = None, meta: dict[str, Any] | None = None) -> Flow:
        now = self.now()
        flow = Flow(flow_id or str(uuid.uuid4()), now, self.seq(), now, meta=dict(meta or {}))
        self.flows[flow.id] = flow
        return flow

    def flow_for(self, body: dict[str, Any], key: str = "flowId") -> str | None:
        """The flow of a create/upload: omitted → a new flow, null → none, a UUID → that flow."""
        if key not in body:
            return self.new_flow().id
        value = body[key]
        if value is None or value in ("", "null"):
            return None
        if not isinstance(value, str) or not UUID_RE.match(value):
            raise bad_request(f"{key} must be a UUID or null")
        if value not in self.flows:
            self.new_flow(value)
        return value

    def _successful(self, flow_id: str | None) -> list[Generation]:
        now = self.now()
        out = [
            g for g in self.generations.values()
            if g.deleted is None and (flow_id is None or g.flow_id == flow_id)
            and self.status_of(g, now) == "success"
            and g.output_image_id in self.images
        ]
        return sorted(out, key=lambda g: g.seq)

    def technical(self, alias: str, flow_id: str | None) -> StoredImage | None:
        """``@last``/``@first``/``@upload`` in ``flow_id`` (or the project when ``None``)."""
        if alias == "@upload":
            uploads = [
                i for i in self.images.values()
                if i.source == "uploaded" and (flow_id is None or i.flow_id == flow_id)
            ]
            return max(uploads, key=lambda i: i.seq) if uploads else None
        done = self._successful(flow_id)
        if not done:
            return None
        gen = done[-1] if alias == "@last" else done[0]
        return self.images[gen.output_image_id or ""]

    def resolve(self, ref: Any, flow_id: str | None) -> tuple[StoredImage, str]:
        """``(image, scope)`` for an image id or ``@alias``; scope is ``id``, ``technical``,
        ``flow`` or ``project``. Raises 400 for a malformed reference, 404 when unknown."""
        if not isinstance(ref, str) or not ref:
            raise bad_request("an image reference must be an image id or an @alias")
        if not ref.startswith("@"):
            if not UUID_RE.match(ref.split(".")[0]):
                raise bad_request(f"{ref!r} is not an image id or an @alias")
            return self.image_by_id(ref.split(".")[0]), "id"
        if not ALIAS_RE.match(ref):
            raise bad_request(f"Invalid alias format {ref!r}: use @ then letters, digits, _ or -")
        if ref in TECHNICAL_ALIASES:
            image = self.technical(ref, flow_id)
            if image is None:
                raise ApiError(404, "ALIAS_NOT_FOUND", f"Alias {ref} does not resolve to an image")
            return image, "technical"
        if flow_id is not None:
            flow = self.flows.get(flow_id)
            if flow is not None and ref in flow.aliases and flow.aliases[ref] in self.images:
                return self.images[flow.aliases[ref]], "flow"
        image_id = self.project_aliases.get(ref)
        if image_id is not None and image_id in self.images:
            return self.images[image_id], "project"
        raise ApiError(404, "ALIAS_NOT_FOUND", f"Alias {ref} not found")

    def assign_project_alias(
        self, image: StoredImage, alias: str | None, *, reassign: bool
    ) -> None:
        if alias is None:
            if image.alias:
                self.project_aliases.pop(image.alias, None)
            image.alias = None
            return
        holder = self.project_aliases.get(alias)
        if holder is not None and holder != image.id and holder in self.images:
            if not reassign:
                raise ApiError(
                    409, "ALIAS_CONFLICT", f"Alias {alias} is already assigned to image {holder}"
                )
            self.images[holder].alias = None
        if image.alias and image.alias != alias:
            self.project_aliases.pop(image.alias, None)
        image.alias = alias
        self.project_aliases[alias] = image.id

    # ----------------------------------------------------------------- views
    def cdn_root(self, request: Request) -> str:
        return str(request.base_url).rstrip("/") + CDN_PREFIX

    def storage_url(self, request: Request, image_id: str) -> str:
        return f"{self.cdn_root(request)}/{ORG_SLUG}/{PROJECT_SLUG}/img/{image_id}"

    def image_view(self, request: Request, image: StoredImage) -> dict[str, Any]:
        if image.file_size is None and image.recipe is not None:
            cached = self.state.images.get(("banatie", "png", image.recipe))
            if cached is not None:
                image.file_size = len(cached)
        return {
            "id": image.id,
            "projectId": PROJECT_ID,
            "flowId": image.flow_id,
            "generationId": image.generation_id,
            "storageKey": f"{ORG_SLUG}/{PROJECT_SLUG}/{image.source}/{image.id}",
            "storageUrl": self.storage_url(request, image.id),
            "mimeType": image.mime,
            "fileSize": image.file_size,
            "width": image.width,
            "height": image.height,
            "source": image.source,
            "alias": image.alias,
            "focalPoint": image.focal_point,
            "meta": image.meta,
            "createdAt": self.iso(image.created),
            "updatedAt": self.iso(image.updated),
        }

    def generation_view(self, request: Request, gen: Generation) -> dict[str, Any]:
        status = self.status_of(gen)
        image = self.images.get(gen.output_image_id or "") if status == "success" else None
        final = status in ("success", "failed")
        refs = [self.images[i] for i in gen.reference_ids if i in self.images]
        return {
            "id": gen.id,
            "projectId": PROJECT_ID,
            "prompt": gen.enhanced or gen.prompt,
            "originalPrompt": gen.prompt if gen.enhanced else None,
            "autoEnhance": gen.auto_enhance,
            "aspectRatio": gen.aspect_ratio,
            "status": status,
            "errorMessage": gen.failure if status == "failed" else None,
            "outputImageId": image.id if image else None,
            "outputImage": {
                "id": image.id,
                "storageUrl": self.storage_url(request, image.id),
                "width": image.width,
                "height": image.height,
            } if image else None,
            "flowId": gen.flow_id,
            "referencedImages": [dict(r) for r in gen.referenced],
            "referenceImages": [
                {"id": r.id, "storageUrl": self.storage_url(request, r.id), "alias": r.alias}
                for r in refs
            ],
            "processingTimeMs": processing_ms(gen) if final else None,
            "meta": gen.meta,
            "createdAt": self.iso(gen.created),
            "updatedAt": self.iso(gen.updated),
            "deletedAt": self.iso(gen.deleted),
        }

    def flow_view(self, flow: Flow) -> dict[str, Any]:
        gens = [g for g in self.generations.values() if g.flow_id == flow.id and g.deleted is None]
        images = [i for i in self.images.values() if i.flow_id == flow.id]
        return {
            "id": flow.id,
            "projectId": PROJECT_ID,
            "aliases": {k: v for k, v in flow.aliases.items() if v in self.images},
            "generationCount": len(gens),
            "imageCount": len(images),
            "meta": flow.meta,
            "createdAt": self.iso(flow.created),
            "updatedAt": self.iso(flow.updated),
        }

    def scope_view(self, scope: LiveScope) -> dict[str, Any]:
        return {
            "id": scope.id,
            "slug": scope.slug,
            "allowNewGenerations": scope.allow_new,
            "newGenerationsLimit": scope.limit,
            "currentGenerations": scope.current,
            "lastGeneratedAt": self.iso(scope.last_generated),
            "meta": scope.meta,
            "createdAt": self.iso(scope.created),
        }

    # ----------------------------------------------------------------- generation work
    def start_run(self, gen: Generation, *, synchronous: bool | None = None) -> None:
        """(Re)start ``gen``'s run now; a synchronous run is final (and settled) at once."""
        sync = self.synchronous if synchronous is None else synchronous
        now = self.now()
        gen.run_started = now
        gen.updated = now
        gen.settled = False
        word = self.state.banned_word(gen.prompt)
        lowered = gen.prompt.lower()
        if word is not None:
            gen.failure = f"Prompt blocked by the safety filter ({word!r})"
        elif FAIL_WORD in lowered:
            gen.failure = FAIL_MESSAGE
        else:
            gen.failure = None
        if sync:
            gen.done_at = now
        elif HANG_WORD in lowered and gen.failure is None:
            gen.done_at = None
        else:
            gen.done_at = now + self.pending_seconds + self.processing_seconds
        self._unsettled.add(gen.id)
        if sync:
            self._materialise(gen)

    def references(
        self, explicit: Any, prompt: str, flow_id: str | None
    ) -> tuple[list[str], list[dict[str, Any]], tuple[art.Recipe | art.Blob, ...]]:
        """Resolve explicit references (errors are fatal) and ``@aliases`` in the prompt
        (ignored when unknown): image ids, ``referencedImages`` and the pixel sources."""
        if explicit is None:
            explicit = []
        if not isinstance(explicit, list) or not all(isinstance(r, str) for r in explicit):
            raise bad_request("referenceImages must be an array of image ids or @aliases")
        if len(explicit) > MAX_REFERENCES:
            raise bad_request(f"referenceImages accepts at most {MAX_REFERENCES} images")
        found: list[tuple[StoredImage, str | None]] = []
        for ref in explicit:
            image, _ = self.resolve(ref, flow_id)
            found.append((image, ref if ref.startswith("@") else None))
        for alias in PROMPT_ALIAS_RE.findall(prompt):
            try:
                image, _ = self.resolve(alias, flow_id)
            except ApiError:
                logger.debug("sandbox banatie: prompt alias %s does not resolve", alias)
                continue
            found.append((image, alias))
        ids: list[str] = []
        referenced: list[dict[str, Any]] = []
        sources: list[art.Recipe | art.Blob] = []
        for image, alias in found:
            if image.id in ids or len(ids) >= MAX_REFERENCES:
                continue
            ids.append(image.id)
            referenced.append({"imageId": image.id, "alias": alias})
            sources.append(self.pixels_of(image))
        return ids, referenced, tuple(sources)

    def pixels_of(self, image: StoredImage) -> art.Recipe | art.Blob:
        if image.recipe is not None:
            return image.recipe
        return art.Blob(image.blob or image.id)

    def image_bytes(self, image: StoredImage) -> bytes:
        """The file behind ``image`` (drawn on first use for generated images)."""
        if image.blob is not None:
            return self.blobs[image.blob]
        assert image.recipe is not None
        text = {"prompt": image.recipe.prompt, "Software": "jupyter_imagine sandbox (banatie)"}
        data = art.png(image.recipe, self.state.images, self.blobs.__getitem__, text)
        image.file_size = len(data)
        return data

    def delete_image(self, image: StoredImage) -> None:
        self.images.pop(image.id, None)
        if image.alias and self.project_aliases.get(image.alias) == image.id:
            del self.project_aliases[image.alias]
        for flow in self.flows.values():
            for alias in [a for a, i in flow.aliases.items() if i == image.id]:
                del flow.aliases[alias]
        for gen in self.generations.values():
            if gen.output_image_id == image.id:
                gen.output_image_id = None
            if image.id in gen.reference_ids:
                gen.reference_ids.remove(image.id)
                gen.referenced = [r for r in gen.referenced if r["imageId"] != image.id]
        for key in [k for k, e in self.live_cache.items() if e.image_id == image.id]:
            del self.live_cache[key]

    def delete_generation(self, gen: Generation) -> None:
        gen.deleted = self.now()
        self._unsettled.discard(gen.id)
        image = self.images.get(gen.output_image_id or "")
        if image is not None:
            if image.alias:
                image.generation_id = None
            else:
                self.delete_image(image)

    # ----------------------------------------------------------------- wiring
    def endpoint(
        self, handler: Handler, *, auth: str = "project", counted: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler(request, principal)`` with auth (``project``: any valid key,
        ``master``, ``optional``, ``none``), rate limiting and the error envelope."""

        async def run(request: Request) -> Response:
            headers: dict[str, str] = {}
            try:
                self.settle()
                principal = None
                if auth != "none":
                    principal = self.authenticate(request, required=auth != "optional")
                if auth == "master" and principal is not None and principal.type != "master":
                    raise ApiError(403, "FORBIDDEN", "This endpoint requires a master key")
                if counted and principal is not None and principal.type == "project":
                    ident = hashlib.sha256(principal.key.encode()).hexdigest()
                    headers = self._window(
                        self._api_windows, ident, self.effective_api_limit, count=True
                    )
                response = await handler(request, principal)
            except ApiError as exc:
                response = exc.response(headers)
            except Exception:
                logger.exception("sandbox banatie %s failed", request.url.path)
                response = error_response(500, "INTERNAL_ERROR", "Internal server error")
            for name, value in headers.items():
                response.headers.setdefault(name, value)
            return response

        run.__name__ = getattr(handler, "__name__", "endpoint")
        return run

    def _page(self, request: Request, items: list[Any], view: Callable[[Any], Any]) -> Response:
        limit, offset = read_paging(request)
        items = sorted(items, key=lambda x: x.seq, reverse=True)
        chunk = items[offset : offset + limit]
        pagination = {
            "total": len(items),
            "limit": limit,
            "offset": offset,
            "hasMore": offset + len(chunk) < len(items),
        }
        return ok([view(x) for x in chunk], pagination=pagination)
