"""The pictures a widget shows: which images of a job, their thumbnails, full-size bytes.

Synced widget state only ever holds thumbnails (long side :data:`THUMB` px for grid cells,
:data:`SINGLE` for a single image, :data:`PANORAMA` for a 2:1 panorama); full-size images are
sent only when the browser asks for one, as they are. Thumbnails are JPEG (quality
:data:`QUALITY`; a third the size of a PNG of a generated picture) unless the image has
transparency, and are cached per file: the image cache is content-addressed, so a path never
changes its bytes.
"""

from __future__ import annotations

import base64
import io
from functools import lru_cache

from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from .. import imaging
from ..errors import InvalidRequest
from ..models import Image, Job
from . import _runtime

__all__ = ["PANORAMA", "SINGLE", "THUMB", "full_image", "layout", "preview_thumbnail", "shown",
           "shrink", "thumbnail", "thumbnails"]

#: Long side, in pixels, of a grid cell's thumbnail (default 384: sharp at 2× at ~190 css px).
THUMB = 384
#: Long side of a single image's thumbnail (default 512).
SINGLE = 512
#: Long side of a panorama's thumbnail (default 1024).
PANORAMA = 1024
#: JPEG quality of thumbnails (default 85).
QUALITY = 85


def shrink(data: bytes, size: int) -> bytes:
    """A thumbnail of image ``data`` with long side ≤ ``size``: JPEG, or PNG if it has alpha.

    Raises:
        InvalidRequest: ``data`` is not an image.
    """
    try:
        im = PILImage.open(io.BytesIO(data))
        if "A" in im.getbands() or "transparency" in im.info:
            return imaging.thumbnail_png(data, size)
        im.draft("RGB", (size, size))
        im = im.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidRequest("cannot make a thumbnail: the data is not an image") from exc
    im.thumbnail((size, size), PILImage.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=QUALITY)
    return buf.getvalue()


def shown(job: Job) -> list[Image]:
    """The downloaded result images a view shows, in order (grid cells 1–4, or the image)."""
    images = [im for im in job.images if im.role == "image" and im.path]
    if images:
        return sorted(images, key=lambda im: im.index or 0)
    if job.grid is not None and job.grid.path:
        return [job.grid]
    return []


def layout(job: Job, images: list[Image]) -> str:
    """``grid`` (several images), ``panorama`` (skybox or ≥ 1.9:1) or ``single``; ``""`` if none."""
    if not images:
        return ""
    if len(images) > 1:
        return "grid"
    im = images[0]
    wide = bool(im.width and im.height and im.width >= 1.9 * im.height)
    return "panorama" if job.kind == "skybox" or wide else "single"


@lru_cache(maxsize=512)
def thumbnail(path: str, size: int) -> bytes:
    """A PNG thumbnail (long side ≤ ``size``) of the image file at ``path``, cached."""
    with open(path, "rb") as fh:
        return shrink(fh.read(), size)


def thumbnails(job: Job) -> tuple[list[bytes], list[list[int]], str]:
    """``(thumbnail PNGs, [[width, height] of each full image], layout)`` of ``job``'s result."""
    images = shown(job)
    kind = layout(job, images)
    size = {"grid": THUMB, "panorama": PANORAMA}.get(kind, SINGLE)
    thumbs, sizes = [], []
    for im in images:
        try:
            thumbs.append(thumbnail(str(im.path), size))
        except (OSError, InvalidRequest):
            continue
        if im.width and im.height:
            sizes.append([int(im.width), int(im.height)])
        else:
            sizes.append(list(imaging.image_size(thumbs[-1])))
    return thumbs, sizes, kind if thumbs else ""


def full_image(job: Job, index: int) -> bytes:
    """The full-size bytes of the ``index``-th shown image (0-based).

    Raises:
        IndexError: no such image.
    """
    images = shown(job)
    if not 0 <= index < len(images):
        raise IndexError(f"job {job.id} has no image {index + 1}")
    return images[index].read_bytes()


def preview_thumbnail(job: Job, url: str) -> bytes:
    """A thumbnail of the provider's preview image at ``url`` (``data:`` or fetched through the
    job's provider on the engine); runs on a worker thread, never on the engine's."""
    if url.startswith("data:"):
        data = base64.b64decode(url.split(",", 1)[1])
    else:
        data = _runtime.engine().call(job.provider, "download", url, timeout=30)
    return shrink(data, THUMB)
