"""What the Banatie emulator stores: keys, flows, images, generations, live scopes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .._art import _banatie as art
from ._parsing import derive
from ._wire import DEFAULT_SCOPE_LIMIT, ENHANCE, ORG_SLUG, PROJECT_ID, PROJECT_SLUG


# ------------------------------------------------------------------------------ records
@dataclass
class ApiKey:
    """A key minted by the bootstrap or admin endpoints (the value is never listed)."""

    id: str
    value: str = field(repr=False)
    type: str
    name: str | None
    created: float
    expires: float | None
    organization_slug: str = ORG_SLUG
    project_slug: str = PROJECT_SLUG
    project_id: str = PROJECT_ID
    revoked: bool = False


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key and its type (``project`` or ``master``)."""

    key: str = field(repr=False)
    type: str = "project"
    record: ApiKey | None = None


@dataclass
class Flow:
    id: str
    created: float
    seq: int
    updated: float
    aliases: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class StoredImage:
    id: str
    source: str  # "generated" | "uploaded"
    created: float
    seq: int
    updated: float
    width: int
    height: int
    mime: str = "image/png"
    flow_id: str | None = None
    alias: str | None = None
    focal_point: dict[str, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    generation_id: str | None = None
    recipe: art.Recipe | None = None
    blob: str | None = None  # key in Banatie.blobs for uploads
    scope: str | None = None  # live scope slug
    file_size: int | None = None


@dataclass
class Generation:
    id: str
    prompt: str  # the user's text
    aspect_ratio: str
    auto_enhance: bool
    template: str
    created: float
    seq: int
    updated: float
    flow_id: str | None
    alias: str | None
    flow_alias: str | None
    meta: dict[str, Any]
    reference_ids: list[str]
    referenced: list[dict[str, Any]]
    refs: tuple[art.Recipe | art.Blob, ...]
    run_started: float
    done_at: float | None  # None: never (sandbox:hang)
    failure: str | None
    version: int = 0
    output_image_id: str | None = None
    deleted: float | None = None
    settled: bool = False
    live_scope: str | None = None

    @property
    def enhanced(self) -> str | None:
        if not self.auto_enhance:
            return None
        return f"{self.prompt}, {ENHANCE[self.template]}"

    def status(self, now: float, pending_seconds: float) -> str:
        if self.done_at is not None and now >= self.done_at:
            return "failed" if self.failure else "success"
        if now < self.run_started + pending_seconds:
            return "pending"
        return "processing"


@dataclass
class LiveScope:
    id: str
    slug: str
    created: float
    seq: int
    allow_new: bool = True
    limit: int = DEFAULT_SCOPE_LIMIT
    current: int = 0
    last_generated: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class CacheEntry:
    image_id: str
    generation_id: str
    scope: str
    hits: int = 0


# ------------------------------------------------------------------------------ the emulator
Handler = Callable[[Request, Principal | None], Awaitable[Response]]


def processing_ms(gen: Generation) -> int:
    if gen.done_at is not None and gen.done_at > gen.run_started:
        return int((gen.done_at - gen.run_started) * 1000)
    return 2500 + derive(gen.id, gen.version) % 5000
