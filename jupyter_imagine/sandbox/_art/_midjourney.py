"""The pictures of APIFRAME sandbox tasks: a pure function of each task's record and lineage.

Nothing here is stored but the record; pixels are drawn on first request and kept in the
sandbox's bounded cache. Lineage:

- imagine / reroll: four :func:`~jupyter_imagine.sandbox._art.render` cells at the aspect ratio's
  cell size (:func:`~jupyter_imagine.sandbox._art.aspect_size`), one derived seed per cell.
- upscale-1x ``n``: :func:`~jupyter_imagine.sandbox._art.upscale` ×2 of the parent's cell ``n``
  (a parent cell already at upscale size — an inpaint's — is taken as is).
- variations ``n``: four :func:`~jupyter_imagine.sandbox._art.vary` of the parent's cell ``n``
  (strength 0.35; ``strong`` 0.65 and ``subtle`` 0.15 vary an upscale), at cell size.
- inpaint: four :func:`~jupyter_imagine.sandbox._art.inpaint` of the parent upscale under the mask,
  **each at the upscale's full size** (so only masked pixels differ); its grid is their 2×2.
- upscale-alt: ×2 of an upscale (``creative`` varies it a little first).
- upscale-highres: ×2 or ×4 of the chosen image.
- outpaint / pan: the parent upscale, shrunk into (or pushed to one side of) a larger canvas
  whose new area is a fresh render of the prompt.
- blend: the source images averaged, then varied four ways. faceswap: the swap image blended
  into an ellipse in the middle of the target.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ... import imaging
from ...errors import InvalidMask
from ._edits import inpaint, upscale, vary
from ._landscape import render
from ._sizes import aspect_size

if TYPE_CHECKING:  # pragma: no cover
    from .._apiframe import Task

__all__ = ["binary_mask", "cell_size", "derive", "draw", "upscale_size"]

GRID_KINDS = frozenset({"imagine", "reroll", "variation", "inpaint", "outpaint", "pan", "blend"})
SINGLE_KINDS = frozenset({"upscale", "upscale-alt", "upscale-highres", "faceswap"})
VARY_STRENGTH = {"strong": 0.65, "subtle": 0.15}
PAN_GROW = 0.5  # a pan adds half the image in its direction


def derive(*parts: object) -> int:
    """A 32-bit seed from ``parts`` (stable across runs and machines; bytes hashed as is)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        data = bytes(part) if isinstance(part, (bytes, bytearray)) else repr(part).encode()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return int.from_bytes(h.digest(), "big") & 0xFFFFFFFF


def cell_size(aspect_ratio: str) -> tuple[int, int]:
    """The size of one grid cell at ``aspect_ratio`` (long side 512)."""
    return aspect_size(aspect_ratio)


def upscale_size(aspect_ratio: str) -> tuple[int, int]:
    """The size of an upscale-1x at ``aspect_ratio``: twice the cell."""
    w, h = cell_size(aspect_ratio)
    return 2 * w, 2 * h


def pan_size(parent: tuple[int, int], direction: str) -> tuple[int, int]:
    """The cell size of a pan of a ``parent``-sized upscale (half the upscale, then grown)."""
    w, h = parent[0] // 2, parent[1] // 2
    if direction in ("left", "right"):
        return w + 2 * round(w * PAN_GROW / 2), h
    return w, h + 2 * round(h * PAN_GROW / 2)


def _fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    image = image.convert("RGB")
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def draw(
    task: Task, cells_of: Callable[[str], Sequence[Image.Image]], world_seed: int
) -> list[Image.Image]:
    """The images of ``task``: four cells for a grid task, one image otherwise.

    Args:
        task: the task record.
        cells_of: the images of another task by id (the parent's, cached).
        world_seed: the sandbox's seed, mixed into every cell seed.
    """
    kind = task.kind
    seeds = [derive(world_seed, task.seed, i) for i in range(4)]
    if kind in ("imagine", "reroll"):
        size = cell_size(task.aspect_ratio)
        return [render(task.prompt, s, size) for s in seeds]
    if kind == "upscale":
        src = cells_of(task.parent_id)[task.index - 1]
        target = upscale_size(task.aspect_ratio)
        if src.size == target:
            return [src.copy()]
        if (src.width * 2, src.height * 2) == target:
            return [upscale(src, 2)]
        return [_fit(src, target)]
    if kind == "variation":
        parent = cells_of(task.parent_id)
        if task.variant in VARY_STRENGTH:
            src, strength = parent[0], VARY_STRENGTH[task.variant]
        else:
            src, strength = parent[task.index - 1], 0.35
        src = _fit(src, cell_size(task.aspect_ratio))
        return [vary(src, s, strength) for s in seeds]
    if kind == "inpaint":
        src = cells_of(task.parent_id)[0]
        mask = Image.open(io.BytesIO(task.mask or b""))
        return [inpaint(src, mask, task.prompt, s) for s in seeds]
    if kind == "upscale-alt":
        src = cells_of(task.parent_id)[0]
        if task.variant == "creative":
            src = vary(src, seeds[0], 0.12)
        return [upscale(src, 2)]
    if kind == "upscale-highres":
        if task.sources:
            src = _open(task.sources[0])
        else:
            parent = cells_of(task.parent_id)
            src = parent[(task.index or 1) - 1] if len(parent) == 4 else parent[0]
        return [upscale(src, 4 if task.variant == "4x" else 2)]
    if kind == "outpaint":
        src = cells_of(task.parent_id)[0]
        size = cell_size(task.aspect_ratio)
        return [_zoom_out(src, size, float(task.variant or 2), task.prompt, s) for s in seeds]
    if kind == "pan":
        src = cells_of(task.parent_id)[0]
        return [_pan(src, task.variant or "left", task.prompt, s) for s in seeds]
    if kind == "blend":
        size = cell_size(task.aspect_ratio)
        sources = [np.asarray(_fit(_open(b), size), np.float32) for b in task.sources]
        mean = Image.fromarray(np.clip(np.mean(sources, axis=0), 0, 255).astype(np.uint8))
        return [vary(mean, s, 0.3) for s in seeds]
    if kind == "faceswap":
        target, swap = _open(task.sources[0]), _open(task.sources[1])
        return [_faceswap(target, swap)]
    raise ValueError(f"no images for a {kind} task")


def _feathered_paste(canvas: Image.Image, image: Image.Image, box: tuple[int, int]) -> None:
    """Paste ``image`` at ``box`` with its edges blended into ``canvas``."""
    w, h = image.size
    edge = max(2, min(w, h) // 24)
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).rectangle([edge, edge, w - 1 - edge, h - 1 - edge], fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(edge / 2))
    canvas.paste(image, box, mask)


def _zoom_out(
    src: Image.Image, size: tuple[int, int], zoom: float, prompt: str, seed: int
) -> Image.Image:
    canvas = render(prompt, seed, size)
    scale = min(size[0] / src.width, size[1] / src.height) / max(zoom, 1.0)
    inner = (max(1, round(src.width * scale)), max(1, round(src.height * scale)))
    small = src.resize(inner, Image.Resampling.LANCZOS)
    _feathered_paste(canvas, small, ((size[0] - inner[0]) // 2, (size[1] - inner[1]) // 2))
    return canvas


def _pan(src: Image.Image, direction: str, prompt: str, seed: int) -> Image.Image:
    size = pan_size(src.size, direction)
    half = src.resize((src.width // 2, src.height // 2), Image.Resampling.LANCZOS)
    canvas = render(prompt, seed, size)
    x = size[0] - half.width if direction == "left" else 0
    y = size[1] - half.height if direction == "up" else 0
    _feathered_paste(canvas, half, (x, y))
    canvas.paste(half.crop((2, 2, half.width - 2, half.height - 2)), (x + 2, y + 2))
    return canvas


def _faceswap(target: Image.Image, swap: Image.Image) -> Image.Image:
    w, h = target.size
    box = (w // 4, h // 5, 3 * w // 4, 4 * h // 5)
    face = swap.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.LANCZOS)
    mask = Image.new("L", face.size, 0)
    ImageDraw.Draw(mask).ellipse([0, 0, face.width - 1, face.height - 1], fill=200)
    mask = mask.filter(ImageFilter.GaussianBlur(max(2, face.width // 16)))
    out = target.copy()
    out.paste(face, box[:2], mask)
    return out


def binary_mask(raw: str, want: tuple[int, int]) -> np.ndarray:
    """The 0/255 pixels of a mask sent as base64 (or a data URI), which must be ``want`` in size.

    Raises:
        ValueError: with the message both Midjourney APIs answer (not an image, wrong size,
            nothing painted).
    """
    try:
        mask = imaging.decode_mask(raw)
    except InvalidMask:
        raise ValueError("Invalid mask image") from None
    if mask.size != want:
        raise ValueError(
            f"Mask size {mask.width}x{mask.height} does not match the image size "
            f"{want[0]}x{want[1]}"
        )
    binary = (np.asarray(mask) > 127).astype(np.uint8) * 255
    if not binary.any():
        raise ValueError("Mask is empty: paint the area to redraw in white")
    return binary
