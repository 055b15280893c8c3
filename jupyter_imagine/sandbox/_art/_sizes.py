"""Grid-cell sizes from an aspect ratio, as the emulators compute them from ``--ar`` flags, and
the request checks of an aspect ratio and an outpaint zoom."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from ...errors import InvalidRequest

__all__ = ["MAX_RATIO", "aspect_size", "read_aspect", "read_zoom"]

#: The most elongated aspect ratio accepted, either way (4:1 and 1:4).
MAX_RATIO = 4.0
_RATIO = re.compile(r"^\s*(\d{1,5})\s*:\s*(\d{1,5})\s*$")


# ----------------------------------------------------------------------------------- sizes
def aspect_size(aspect_ratio: str = "1:1", long_side: int = 512) -> tuple[int, int]:
    """The ``(width, height)`` of one grid cell for ``aspect_ratio``.

    Args:
        aspect_ratio: ``"W:H"`` with positive integers, between 1:4 and 4:1 (default ``"1:1"``).
        long_side: pixels of the longer side (default 512).

    The shorter side is rounded to the nearest multiple of 2 (``"3:2"`` → ``(512, 342)``,
    ``"16:9"`` → ``(512, 288)``), so a 2× upscale and a 2×2 grid keep whole pixels.

    Raises:
        InvalidRequest: a malformed ratio, or one beyond 1:4 … 4:1.
    """
    match = _RATIO.match(aspect_ratio) if isinstance(aspect_ratio, str) else None
    if match is None or int(match[1]) == 0 or int(match[2]) == 0:
        raise InvalidRequest(f"aspect ratio must look like 16:9, not {aspect_ratio!r}")
    w, h = int(match[1]), int(match[2])
    if max(w / h, h / w) > MAX_RATIO:
        raise InvalidRequest(f"aspect ratio {w}:{h} is out of range; use one between 1:4 and 4:1")
    long_side = int(long_side)
    if long_side < 2:
        raise InvalidRequest(f"long_side must be at least 2 pixels, not {long_side}")
    short = max(2, round(long_side * min(w, h) / max(w, h) / 2) * 2)
    long_side -= long_side % 2
    return (long_side, short) if w >= h else (short, long_side)


def read_aspect(value: Any, name: str, invalid: Callable[[str], Exception]) -> str:
    """A request's aspect ratio field ``name`` (``"16:9"``, spaces dropped); a malformed or
    too elongated one raises ``invalid(message)``, the emulator's 400."""
    if not isinstance(value, str):
        raise invalid(f"{name} must look like 16:9, not {value!r}")
    try:
        aspect_size(value)
    except InvalidRequest as exc:
        raise invalid(exc.message) from None
    return value.replace(" ", "")


def read_zoom(raw: Any, name: str, invalid: Callable[[str], Exception]) -> float:
    """A request's outpaint zoom field ``name`` (a number from 1 to 2, not a bool); anything
    else raises ``invalid(message)``, the emulator's 400."""
    try:
        zoom = float(raw)
    except (TypeError, ValueError):
        zoom = math.nan
    if isinstance(raw, bool) or not 1 <= zoom <= 2:
        raise invalid(f"{name} must be a number from 1 to 2")
    return zoom
