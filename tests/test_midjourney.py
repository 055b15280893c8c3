"""providers/_midjourney.py: the action-argument rules APIFRAME and TheNextLeg share."""

from __future__ import annotations

import io

import pytest
from PIL import Image as PILImage

from jupyter_imagine.errors import InvalidMask, InvalidRequest
from jupyter_imagine.models import Image, Job, Status
from jupyter_imagine.providers._midjourney import no_extra, vary_region_mask


def test_no_extra_refuses_what_is_left_and_ignores_none():
    no_extra("U1", {"prompt": None})
    with pytest.raises(InvalidRequest, match="U1 takes no mask, seed argument"):
        no_extra("U1", {"seed": 3, "mask": b"x", "prompt": None})


def _mask(size) -> bytes:
    buf = io.BytesIO()
    PILImage.new("L", size, 255).save(buf, format="PNG")
    return buf.getvalue()


def test_the_mask_is_loaded_at_the_first_images_size():
    job = Job(provider="apiframe", kind="upscale", prompt="p", status=Status.SUCCEEDED,
              images=[Image(url="https://cdn/x.png", width=64, height=48)])
    kwargs = {"mask": _mask((64, 48))}
    png = vary_region_mask("Vary (Region)", job, kwargs)
    assert PILImage.open(io.BytesIO(png)).size == (64, 48) and kwargs == {}


def test_a_missing_mask_a_stray_argument_or_no_image_is_refused():
    job = Job(provider="thenextleg", kind="imagine", prompt="p", status=Status.SUCCEEDED)
    with pytest.raises(InvalidMask, match="needs a mask"):
        vary_region_mask("Vary (Region)", job, {})
    with pytest.raises(InvalidRequest, match="takes no seed argument"):
        vary_region_mask("Vary (Region)", job, {"mask": _mask((8, 8)), "seed": 1})
    with pytest.raises(InvalidRequest, match="has no image to draw a mask on yet"):
        vary_region_mask("Vary (Region)", job, {"mask": _mask((8, 8))}, grid=True)
    gridded = Job(provider="thenextleg", kind="imagine", prompt="p", status=Status.SUCCEEDED,
                  grid=Image(url="https://cdn/grid.png", width=32, height=32))
    png = vary_region_mask("Vary (Region)", gridded, {"mask": _mask((32, 32))}, grid=True)
    assert PILImage.open(io.BytesIO(png)).size == (32, 32)
