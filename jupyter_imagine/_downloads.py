"""Fetching a job's images into the cache, and knowing whether to try again.

A provider's image URL can fail for a while (5xx, 429, a dropped connection) or for good: a CDN
that answers 403, 404 or 410 says the URL has expired (TheNextLeg's ``/getImage`` fallback for
CDN 403s runs inside its provider's ``download``, before a 403 counts here). :func:`fetch` returns
the image with its cache path, or the same image marked missing — ``"download failed: …,
retrying"`` or ``"expired: …"`` in :attr:`Image.missing <jupyter_imagine.models.Image.missing>`
— and never raises for a provider error. The engine retries the missing ones that are not
expired with :func:`retry_delay` between rounds until they are fetched.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ._secrets import get_logger, scrub
from .errors import ImagineError, NotFound, PermissionDenied
from .imaging import image_size
from .models import Image, Job

__all__ = ["EXPIRED_STATUS", "expired", "fetch", "missing_note", "png_text", "retry_delay"]

logger = get_logger(__name__)

#: HTTP answers of an image URL that mean it is gone for good (expired, revoked, deleted).
EXPIRED_STATUS = frozenset({403, 404, 410})


def expired(exc: ImagineError) -> bool:
    """``True`` when ``exc`` says the image URL will never work again (403, 404, 410)."""
    return isinstance(exc, (PermissionDenied, NotFound)) or exc.status_code in EXPIRED_STATUS


def missing_note(exc: ImagineError) -> str:
    """Why an image is missing, as kept in ``Image.missing``."""
    return f"expired: {exc}" if expired(exc) else f"download failed: {exc}, retrying"


def retry_delay(
    attempt: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """The wait before retry round ``attempt`` (0-based) of the missing images: at least
    ``base``, growing ×2 per round up to ``cap``, with full jitter on top of ``base``."""
    ceiling = min(max(0.0, cap - base), base * (2 ** min(attempt, 64)))
    return base + (rng or random).uniform(0, ceiling)


def png_text(job: Job) -> dict[str, str]:
    """The PNG text chunks every cached image of ``job`` carries: prompt and parameters
    (secrets masked)."""
    parameters = {
        "provider": job.provider,
        "kind": job.kind,
        "id": job.id,
        "remote_id": job.remote_id,
        "parent_id": job.parent_id,
        "action": job.action,
        "params": scrub(job.params),
    }
    return {
        "prompt": job.prompt,
        "parameters": json.dumps(parameters, ensure_ascii=False, default=str),
        "Software": "jupyter_imagine",
    }


async def fetch(
    image: Image,
    download: Callable[[str], Awaitable[bytes]],
    put: Callable[[bytes], Path],
) -> Image:
    """``image`` downloaded into the cache (``path`` and pixel size set, ``missing`` cleared),
    or, when the download failed, ``image`` with ``missing`` saying why.

    Args:
        image: one image of a job; one with a ``path`` or without a ``url`` is returned as is.
        download: the URL's bytes (with the engine's retries).
        put: stores bytes in the cache, returns the file (run off the loop: hashing and writing
            megabytes release the GIL).
    """
    if image.__dict__.get("path") or not image.url:
        return image
    try:
        data = await download(image.url)
    except ImagineError as exc:
        note = missing_note(exc)
        logger.info("image %s missing: %s", image.url, note)
        return Image(**{**image.to_dict(), "missing": note})
    path = await asyncio.to_thread(put, data)
    width, height = image.width, image.height
    try:
        width, height = image_size(data)
    except Exception:  # an unreadable size is no reason to lose the file
        pass
    fields: dict[str, Any] = {**image.to_dict(), "path": str(path), "width": width,
                              "height": height, "missing": None}
    return Image(**fields)
