"""What the TNL emulator stores: accounts and messages (jobs) with their timelines."""

from __future__ import annotations

import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .._art import _midjourney as art
from ._wire import FAST_HOURS, HANG_PROGRESS, PROGRESS_STEPS, QUEUED_FOR


# ------------------------------------------------------------------------------ records
@dataclass
class Account:
    """One token's Midjourney account as the sandbox keeps it (:meth:`TheNextLeg.account`).

    Attributes:
        fast_hours: fast GPU hours left (default 15.0); at 0, fast jobs fail ``NO_FAST_HOURS``.
        fast_total: the plan's fast hours (default 15.0).
        mode: ``"fast"`` (default), ``"relax"`` or ``"turbo"``.
        stealth: stealth (private) mode, default ``False``.
        version: the default model version (default ``"5.2"``).
        settings: other toggles that are on (Remix mode, RAW Mode …).
    """

    fast_hours: float = FAST_HOURS
    fast_total: float = FAST_HOURS
    mode: str = "fast"
    stealth: bool = False
    version: str = "5.2"
    settings: set[str] = field(default_factory=set)
    images: int = 0
    gpu_hours: float = 0.0
    relaxed_images: int = 0
    user_id: str = field(default_factory=lambda: secrets.token_hex(8))


@dataclass
class Message:
    """One TNL message. ``created`` is simulated time; ``kind`` is the picture kind of
    :mod:`.._art._midjourney` (``imagine``, ``upscale`` …) or ``describe``, ``seed``, ``info``,
    ``settings``, ``slash``; ``type`` is what the response says."""

    id: str
    button_id: str
    key: str = field(repr=False)
    type: str
    kind: str
    prompt: str
    aspect_ratio: str
    seed: int
    created: float
    created_at: datetime
    duration: float
    origin: str = ""
    parent_id: str | None = None
    index: int | None = None
    variant: str | None = None
    mask: bytes | None = field(default=None, repr=False)
    sources: list[bytes] = field(default_factory=list, repr=False)
    button: str | None = None
    ref: Any = ""
    webhook: str | None = None
    code: str | None = None
    fail_at: float = math.inf
    note: str | None = None
    hang: bool = False
    buttons: list[str] = field(default_factory=list)
    content: Any = None
    seed_value: str | None = None
    version: str = "5.2"
    mode: str = "fast"
    upscaled: set[int] = field(default_factory=set)
    children: dict[str, int] = field(default_factory=dict)

    @property
    def grid(self) -> bool:
        return self.kind in art.GRID_KINDS

    @property
    def pictures(self) -> bool:
        return self.kind in art.GRID_KINDS or self.kind in art.SINGLE_KINDS

    @property
    def mj_job(self) -> bool:
        """Counts against the queue (not info, settings, slash commands, seed)."""
        return self.pictures or self.kind == "describe"

    def phase(self, now: float, expire: float) -> tuple[str, int | None, float | None]:
        """``(state, progress, simulated time of the next change)`` with ``expire`` seconds.

        ``state`` is ``queued``, ``running``, ``done``, ``failed`` or ``incomplete``.
        """
        limit = self.created + expire
        if self.code is not None and self.fail_at <= limit:
            if now >= self.fail_at:
                return "failed", 100, None
        done_at = math.inf if self.hang or self.code else self.created + self.duration
        if now >= done_at and done_at <= limit:
            return "done", 100, None
        if now >= limit:
            return "incomplete", None, None
        upcoming = [t for t in (self.fail_at, done_at, limit) if t > now]
        following = min(upcoming) if upcoming else None
        elapsed = now - self.created
        queued_for = min(QUEUED_FOR, self.duration / 4)
        if elapsed < queued_for:
            return "queued", 0, min(self.created + queued_for, following or math.inf)
        span = self.duration - queued_for
        k = int((elapsed - queued_for) / span * len(PROGRESS_STEPS) + 1e-9)
        k = min(k, len(PROGRESS_STEPS) - 1)
        if self.hang and PROGRESS_STEPS[k] >= HANG_PROGRESS:
            return "running", HANG_PROGRESS, following
        step_at = self.created + queued_for + (k + 1) * span / len(PROGRESS_STEPS)
        return "running", PROGRESS_STEPS[k], min(step_at, following or math.inf)


# ------------------------------------------------------------------------------ the emulator
Handler = Callable[[Request, dict[str, Any], str], Awaitable[Response]]
