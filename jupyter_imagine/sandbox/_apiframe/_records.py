"""What the APIFRAME emulator stores: tasks with their timelines."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .._art import _midjourney as art
from .._triggers import PromptTriggers
from ._wire import DURATION, HANG_PERCENT


# ------------------------------------------------------------------------------ tasks
@dataclass
class Task(PromptTriggers):
    """One APIFRAME task, as the sandbox keeps it.

    ``created`` is simulated time; every other field is what the request said (or inherited
    from the parent). Images are drawn from this record and the parent's.
    """

    id: str
    kind: str
    task_type: str
    prompt: str
    aspect_ratio: str
    seed: int
    created: float
    mode: str = "fast"
    parent_id: str | None = None
    index: int | None = None
    variant: str | None = None  # strong/subtle, subtle/creative, 2x/4x, zoom ratio, direction
    mask: bytes | None = None
    sources: list[bytes] = field(default_factory=list)
    image_url: str | None = None  # describe's input, echoed back
    content: list[str] | None = None  # describe's result
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    origin: str = ""  # the provider base URL the task was submitted on (for webhook bodies)
    children: dict[str, int] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return DURATION[self.kind] * self._factor

    @property
    def _factor(self) -> float:
        return 0.5 if self.mode == "turbo" else 1.0

    @property
    def grid(self) -> bool:
        return self.kind in art.GRID_KINDS

    def phase(self, now: float) -> tuple[str, int | None, float | None]:
        """``(status, percentage or None, simulated time of the next change or None)``."""
        f = self._factor
        elapsed = now - self.created
        fail_at = self.created + self.duration / 2 if self.fail else math.inf
        if now >= fail_at:
            return "failed", None, None
        if elapsed < 2 * f:
            return "pending", None, min(self.created + 2 * f, fail_at)
        if elapsed < 4 * f:
            return "starting", None, min(self.created + 4 * f, fail_at)
        span = self.duration - 4 * f
        if not self.hang and elapsed >= self.duration:
            return "finished", 100, None
        step = span / 10
        k = int((elapsed - 4 * f) / step + 1e-9) if step > 0 else 9
        if self.hang and k >= HANG_PERCENT // 10:
            return "processing", HANG_PERCENT, fail_at if self.fail else None
        k = min(k, 9)
        following = self.created + 4 * f + (k + 1) * step
        return "processing", k * 10, min(following, fail_at)

    def finished(self, now: float) -> bool:
        return self.phase(now)[0] == "finished"


# ------------------------------------------------------------------------------ the emulator
Handler = Callable[[Request, dict[str, Any]], Awaitable[Response]]
