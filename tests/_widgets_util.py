"""Shared helpers for the widget, engine and download tests (not a test module)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import numpy as np
from PIL import Image as PILImage


def until(predicate: Callable[[], object], timeout: float = 60.0, what: str = "") -> None:
    """Wait until ``predicate()`` is true (the engine thread writes the widgets' traits, a job's
    state, the store); the timeout is an upper bound for a loaded machine (two test workers
    beside JupyterLab)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.005)


def png_mask(width: int, height: int, box: tuple[int, int, int, int] | None = None) -> bytes:
    """A black/white PNG mask, white inside ``box`` (x0, y0, x1, y1)."""
    mask = np.zeros((height, width), np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        mask[y0:y1, x0:x1] = 255
    buf = io.BytesIO()
    PILImage.fromarray(mask, "L").save(buf, "PNG")
    return buf.getvalue()


def image_of(data: bytes) -> PILImage.Image:
    return PILImage.open(io.BytesIO(data))
