"""Fetching a job's images into the cache, and knowing whether to try again.

A provider's image URL can fail for a while (5xx, 429, a dropped connection) or for good: a CDN
that answers 403, 404 or 410 says the URL has expired (TheNextLeg's ``/getImage`` fallback for
CDN 403s runs inside its provider's ``download``, before a 403 counts here). :func:`fetch_many`
returns each image with its cache path, or the same image marked missing — ``"download failed: …,
retrying"`` or ``"expired: …"`` in :attr:`Image.missing <jupyter_imagine.models.Image.missing>`
— and never raises for a provider error. The engine retries the missing ones that are not
expired with :func:`retry_delay` between rounds until they are fetched.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from ._secrets import get_logger, scrub
from .errors import ImagineError, NotFound, PermissionDenied
from .imaging import image_size
from .models import Image, Job

__all__ = [
    "EXPIRED_STATUS", "expired", "fetch_many", "missing_note", "png_text", "retry_delay",
]

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


async def fetch_many(
    images: Sequence[Image],
    download: Callable[[str], Awaitable[bytes]],
    put: Callable[[bytes], Path],
) -> list[Image]:
    """``images`` (in their order) each downloaded into the cache (``path`` and pixel size set,
    ``missing`` cleared) or, when its download failed, with ``missing`` saying why; never
    raises for a provider error.

    The downloads run at once; the bytes are then stored in one call off the loop (one thread
    hand-off per job, not per image: hashing, writing and reading the pixel size of megabytes
    mostly release the GIL, the hand-offs do not).

    Args:
        images: a job's images; one with a ``path`` or without a ``url`` is returned as is.
        download: a URL's bytes (with the engine's retries).
        put: stores bytes in the cache, returns the file.
    """
    got = await asyncio.gather(*(_download(image, download) for image in images))
    fetched = [(i, data) for i, data in enumerate(got) if isinstance(data, bytes)]
    if fetched:
        stored = await asyncio.to_thread(_store_all, [data for _, data in fetched], put)
        for (i, _), (path, size) in zip(fetched, stored, strict=True):
            width, height = size or (images[i].width, images[i].height)
            got[i] = Image(**{**images[i].to_dict(), "path": str(path), "width": width,
                              "height": height, "missing": None})
    return [image if isinstance(image, Image) else images[i] for i, image in enumerate(got)]


async def _download(image: Image, download: Callable[[str], Awaitable[bytes]]) -> Image | bytes:
    """The bytes of ``image``; ``image`` itself when it needs no download, or marked missing
    when the download failed."""
    if image.__dict__.get("path") or not image.url:
        return image
    try:
        return await download(image.url)
    except ImagineError as exc:
        note = missing_note(exc)
        logger.info("image %s missing: %s", image.url, note)
        return Image(**{**image.to_dict(), "missing": note})


def _store_all(
    blobs: Sequence[bytes], put: Callable[[bytes], Path]
) -> list[tuple[Path, tuple[int, int] | None]]:
    """Each of ``blobs`` stored with ``put``, with its pixel size (``None``: unreadable, which
    is no reason to lose the file)."""
    done = []
    for data in blobs:
        path = put(data)
        try:
            size: tuple[int, int] | None = image_size(data)
        except Exception:
            size = None
        done.append((path, size))
    return done
