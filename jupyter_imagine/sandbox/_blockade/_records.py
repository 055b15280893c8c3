"""What the Blockade emulator stores: imagine requests and exports with their timelines."""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .._triggers import PromptTriggers
from ._wire import (
    COMPLETE_AT,
    DISPATCHED_AT,
    EXPORT_BY_ID,
    FAIL_AT,
    PROCESSING_AT,
)


# ------------------------------------------------------------------------------ records
@dataclass
class Imagine(PromptTriggers):
    """One generation (a skybox, a remix, or a legacy imagine request) as the sandbox keeps it.

    ``created`` and ``aborted_at`` are simulated times; ``owner`` is a hash of the API key.
    """

    id: int
    obfuscated_id: str
    owner: str
    user_id: int
    kind: str  # "skybox" or "imaginarium"
    prompt: str
    negative_text: str
    seed: int
    created: float
    style: dict[str, Any] | None = None
    generator: str | None = None
    generator_data: dict[str, Any] | None = None
    remix_of: int | None = None
    remix_obfuscated_id: str | None = None
    enhance_prompt: bool = False
    depth_hq: bool = False
    init_image: bytes | None = field(default=None, repr=False)
    init_strength: float = 0.5
    control_image: bytes | None = field(default=None, repr=False)
    control_model: str | None = None
    webhook_url: str | None = None
    origin: str = ""
    aborted_at: float | None = None
    deleted: bool = False

    def phase(self, now: float) -> tuple[str, float | None]:
        """``(status, simulated time of the next change or None)``."""
        if self.aborted_at is not None and now >= self.aborted_at:
            return "abort", None
        elapsed = now - self.created
        cut = self.aborted_at if self.aborted_at is not None else math.inf
        if elapsed < DISPATCHED_AT:
            step = self.created + (2.0 if elapsed < 2.0 else DISPATCHED_AT)
            return "pending", min(step, cut)
        if elapsed < PROCESSING_AT:
            return "dispatched", min(self.created + PROCESSING_AT, cut)
        if self.fail and elapsed >= FAIL_AT:
            return "error", None
        if self.hang or elapsed < COMPLETE_AT:
            following = FAIL_AT if self.fail else (math.inf if self.hang else COMPLETE_AT)
            return "processing", min(self.created + following, cut)
        return "complete", None

    def status(self, now: float) -> str:
        return self.phase(now)[0]

    def reached(self, now: float, offset: float) -> float | None:
        """The simulated time the request entered the status starting at ``offset``, if it did."""
        when = self.created + offset
        if now < when or (self.aborted_at is not None and self.aborted_at <= when):
            return None
        if offset >= COMPLETE_AT and (self.hang or self.fail):
            return None
        return when

    @property
    def slug(self) -> str:
        words = re.findall(r"[a-z0-9]+", self.prompt.lower())[:8]
        return "_".join(words)[:60] or "skybox"


@dataclass
class Export:
    """One export of a skybox (``type_id`` 1–9)."""

    id: str
    imagine_id: int
    owner: str
    type_id: int
    created: float
    webhook_url: str | None = None
    origin: str = ""
    aborted_at: float | None = None

    @property
    def duration(self) -> float:
        return EXPORT_BY_ID[self.type_id][4]

    def phase(self, now: float) -> tuple[str, float | None]:
        if self.aborted_at is not None and now >= self.aborted_at:
            return "abort", None
        elapsed = now - self.created
        cut = self.aborted_at if self.aborted_at is not None else math.inf
        if elapsed >= self.duration:
            return "complete", None
        if elapsed < 1.0:
            return "pending", min(self.created + min(1.0, self.duration), cut)
        return "processing", min(self.created + self.duration, cut)


# ------------------------------------------------------------------------------ the emulator
Handler = Callable[[Request, str, dict[str, Any]], Awaitable[Response]]
