"""Edits of a drawn picture: the 2×2 grid, upscales, variations and inpainting.

Pure and deterministic: the same arguments give the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageFilter

from ...errors import InvalidMask, InvalidRequest
from ...imaging import as_grayscale
from ._landscape import render
from ._noise import mix, smooth_noise
from ._tables import F32

__all__ = ["inpaint", "make_grid", "upscale", "vary"]


def make_grid(images: Sequence[Image.Image]) -> Image.Image:
    """Four same-size images as a 2×2 grid, no gap: exactly twice the cell size.

    Order: 1 top-left, 2 top-right, 3 bottom-left, 4 bottom-right (Midjourney's U1–U4).

    Raises:
        InvalidRequest: not exactly four images, or not all the same size.
    """
    if len(images) != 4:
        raise InvalidRequest(f"a grid needs exactly 4 images, not {len(images)}")
    w, h = images[0].size
    if any(im.size != (w, h) for im in images):
        sizes = ", ".join(f"{im.width}×{im.height}" for im in images)
        raise InvalidRequest(f"grid images must share one size, not {sizes}")
    grid = Image.new("RGB", (2 * w, 2 * h))
    for i, im in enumerate(images):
        grid.paste(im.convert("RGB"), ((i % 2) * w, (i // 2) * h))
    return grid


# ------------------------------------------------------------------ upscale, vary, inpaint
def upscale(image: Image.Image, factor: int = 2) -> Image.Image:
    """``image`` at ``factor``× its size (default 2): Lanczos resampling and a light sharpen."""
    factor = int(factor)
    if factor < 1:
        raise InvalidRequest(f"upscale factor must be 1 or more, not {factor}")
    if factor == 1:
        return image.convert("RGB").copy()
    big = image.convert("RGB").resize(
        (image.width * factor, image.height * factor), Image.Resampling.LANCZOS
    )
    return big.filter(ImageFilter.UnsharpMask(radius=1.5 * factor, percent=45, threshold=2))


def _remap(arr: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """Bilinear sampling of ``arr`` (h, w, c) at float coordinates."""
    h, w = arr.shape[:2]
    map_x = np.clip(map_x, 0, w - 1.001)
    map_y = np.clip(map_y, 0, h - 1.001)
    x0 = map_x.astype(np.intp)
    y0 = map_y.astype(np.intp)
    fx = (map_x - x0)[..., None]
    fy = (map_y - y0)[..., None]
    top = arr[y0, x0] * (1 - fx) + arr[y0, x0 + 1] * fx
    bottom = arr[y0 + 1, x0] * (1 - fx) + arr[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def vary(image: Image.Image, seed: int, strength: float = 0.35) -> Image.Image:
    """A variation of ``image``: same composition, perturbed shapes, colours and details.

    Args:
        image: the source.
        seed: picks the perturbation (any int).
        strength: 0 (identical) … 1 (strongly changed); default 0.35 (Midjourney's V buttons).
    """
    strength = float(np.clip(strength, 0.0, 1.0))
    src = image.convert("RGB")
    w, h = src.size
    arr = np.asarray(src, F32)
    if strength == 0:
        return src.copy()
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5A17])
    # warp: a smooth displacement field
    amp = strength * 0.05 * min(w, h)
    cells = (3 + int(rng.integers(0, 3)), 3 + int(rng.integers(0, 3)))
    dx = (smooth_noise(rng, cells, (w, h)) - 0.5) * 2 * amp
    dy = (smooth_noise(rng, cells, (w, h)) - 0.5) * 2 * amp * 0.6
    ys, xs = np.mgrid[0:h, 0:w].astype(F32)
    out = _remap(arr, xs + dx, ys + dy)
    # colour: a global hue turn plus smooth per-channel gains
    angle = float(rng.uniform(-1, 1)) * strength * 0.6
    cos, sin = np.cos(angle), np.sin(angle)
    yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], F32)
    rot = np.array([[1, 0, 0], [0, cos, -sin], [0, sin, cos]], F32)
    out = out @ (np.linalg.inv(yiq) @ rot @ yiq).T.astype(F32)
    for c in range(3):
        gain = 1 + (smooth_noise(rng, (4, 4), (w, h)) - 0.5) * strength * 0.7
        out[..., c] *= gain
    # details: sharpen some regions, soften others
    blurred = np.asarray(src.filter(ImageFilter.GaussianBlur(max(1.0, min(w, h) / 200))), F32)
    blurred = _remap(blurred, xs + dx, ys + dy) @ (np.linalg.inv(yiq) @ rot @ yiq).T.astype(F32)
    detail = (smooth_noise(rng, (6, 6), (w, h)) - 0.5)[..., None] * 4 * strength
    out = out + (out - blurred) * detail
    out += (rng.random((h, w, 1), dtype=F32) - 0.5) * 6 * strength
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")


def inpaint(image: Image.Image, mask: Image.Image, prompt: str, seed: int) -> Image.Image:
    """Redraw the white part of ``mask`` (values > 127) from ``prompt``; keep every other pixel.

    The new content is a :func:`render` of ``prompt`` whose colours are pulled towards the
    original's under the mask, feathered inwards from the mask's edge so it blends in. Outside
    the mask the result is bit-identical to ``image``.

    Raises:
        InvalidMask: ``mask`` is not ``image``'s size.
    """
    src = image.convert("RGB")
    if mask.size != src.size:
        raise InvalidMask(
            f"mask is {mask.width}×{mask.height} but the image is {src.width}×{src.height}; "
            "draw the mask at the image's size"
        )
    hard = np.asarray(as_grayscale(mask)) > 127
    if not hard.any():
        return src.copy()
    arr = np.asarray(src, F32)
    fresh = np.asarray(render(prompt, seed, src.size), F32)
    sel_old, sel_new = arr[hard], fresh[hard]
    matched = (fresh - sel_new.mean(0)) / (sel_new.std(0) + 1.0) * (sel_old.std(0) + 1.0)
    matched += sel_old.mean(0)
    new = mix(fresh, matched, 0.45)
    # feather: weight 0 at the mask's edge rising to 1 a little way inside
    radius = max(2.0, min(src.size) / 40)
    soft = Image.fromarray(hard.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(radius))
    weight = np.clip((np.asarray(soft, F32) / 255 - 0.5) * 2.5, 0, 1) ** 0.8
    weight = np.maximum(weight, 0.02)  # every masked pixel moves at least a little
    weight = (weight * hard)[..., None]
    out = np.clip(mix(arr, new, weight), 0, 255).astype(np.uint8)
    result = np.asarray(src).copy()
    result[hard] = _nudged(out[hard], result[hard], new[hard])
    return Image.fromarray(result, "RGB")


def _nudged(out: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``out`` with every pixel that rounded back to ``old`` moved one level towards ``new``.

    A light weight near the mask's edge can round to the old value; a redrawn pixel must differ.
    """
    still = (out == old).all(axis=-1)
    if still.any():
        base = old[still].astype(np.int16)
        step = np.where(new[still] >= base, 1, -1)
        step = np.where((base + step > 255) | (base + step < 0), -step, step)
        out = out.copy()
        out[still] = (base + step).astype(np.uint8)
    return out
