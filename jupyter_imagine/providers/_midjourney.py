"""Action-argument rules the two Midjourney proxies (APIFRAME, TheNextLeg) share: a button takes
no stray arguments, and Vary (Region) needs a mask sized to the image it redraws (a new prompt's
rule is every provider's: :func:`._base.new_prompt`)."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from ..errors import InvalidMask, InvalidRequest
from ..models import Job

__all__ = ["no_extra", "vary_region_mask"]


def no_extra(label: str, kwargs: Mapping[str, Any]) -> None:
    """Refuse any argument left in ``kwargs`` (``None`` values count as not given)."""
    extra = {k for k, v in kwargs.items() if v is not None}
    if extra:
        raise InvalidRequest(f"{label} takes no {', '.join(sorted(extra))} argument")


def vary_region_mask(
    label: str, job: Job, kwargs: MutableMapping[str, Any], *, grid: bool = False
) -> bytes:
    """Pop ``mask`` from ``kwargs`` (nothing else may be left) and load it at the size of the
    job's first image; with ``grid=True`` (default False) the grid stands in when the job has
    no image yet."""
    mask = kwargs.pop("mask", None)
    no_extra(label, kwargs)
    if mask is None:
        raise InvalidMask(
            "Vary (Region) needs a mask: a PIL image, numpy array, PNG bytes or path "
            "with the region to redraw in white"
        )
    from ..imaging import image_size, load_mask

    image = job.images[0] if job.images else (job.grid if grid else None)
    if image is None:
        raise InvalidRequest(f"job {job.id} has no image to draw a mask on yet")
    if image.width and image.height:
        return load_mask(mask, (image.width, image.height))
    return load_mask(mask, image_size(image.read_bytes()))
