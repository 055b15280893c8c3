"""What the skybox painters share: sizes, colour helpers, wrap-around filters, the ground plan
(the ground colours are a data table: :data:`~.._tables.GROUND`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

F32 = np.float32
#: Cube-map face order in the strip: OpenGL/Unity order (right, left, up, down, front, back).
CUBE_FACES = ("+x", "-x", "+y", "-y", "+z", "-z")
#: Distances (in camera heights) the depth map spans: nearer is white, this far and beyond black.
DEPTH_FAR = 40000.0
DEPTH_NEAR = 0.6


# ------------------------------------------------------------------------------ helpers
def rgb_array(*values: float) -> np.ndarray:
    return np.array(values, dtype=F32)


def mix(a, b, t):
    return a + (b - a) * t


def unit(values: np.ndarray) -> np.ndarray:
    """``values`` rescaled to span exactly [0, 1]."""
    lo, hi = float(values.min()), float(values.max())
    return ((values - lo) / max(hi - lo, 1e-9)).astype(F32)


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0, 1)
    return t * t * (3 - 2 * t)


def wrap_resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D float array to ``size`` (w, h) bilinearly, wrapping around in x."""
    h, w = arr.shape
    tw, th = size
    x = (np.arange(tw, dtype=np.float64) + 0.5) * w / tw - 0.5
    y = np.clip((np.arange(th, dtype=np.float64) + 0.5) * h / th - 0.5, 0, h - 1)
    x0 = np.floor(x).astype(np.intp)
    fx = (x - x0).astype(F32)[None, :]
    y0 = np.minimum(np.floor(y).astype(np.intp), h - 2) if h > 1 else np.zeros(th, np.intp)
    fy = (y - y0).astype(F32)[:, None] if h > 1 else np.zeros((th, 1), F32)
    y1 = np.minimum(y0 + 1, h - 1)
    xa, xb = x0 % w, (x0 + 1) % w
    top = arr[y0][:, xa] * (1 - fx) + arr[y0][:, xb] * fx
    bottom = arr[y1][:, xa] * (1 - fx) + arr[y1][:, xb] * fx
    return (top * (1 - fy) + bottom * fy).astype(F32)


def wrap_filter(image: Image.Image, flt: ImageFilter.Filter, pad: int) -> Image.Image:
    """Apply a neighbourhood filter as if the picture wrapped around left to right."""
    w, h = image.size
    wide = Image.new(image.mode, (w + 2 * pad, h))
    wide.paste(image, (pad, 0))
    wide.paste(image.crop((w - pad, 0, w, h)), (0, 0))
    wide.paste(image.crop((0, 0, pad, h)), (w + pad, 0))
    return wide.filter(flt).crop((pad, 0, pad + w, h))


def draw_wrapped(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], w: int) -> None:
    """Draw a filled polygon, repeated one turn left or right where it crosses an edge."""
    xs = [p[0] for p in points]
    draw.polygon(points, fill=255)
    if min(xs) < 0:
        draw.polygon([(x + w, y) for x, y in points], fill=255)
    if max(xs) >= w:
        draw.polygon([(x - w, y) for x, y in points], fill=255)


# ------------------------------------------------------------------------------ the scene
@dataclass
class Geo:
    """What the seed decides: where things are."""

    sun_phi: float
    sun_t: float  # 0..1 within the palette's body height range
    layer_seeds: list[int]
    cloud_salt: int
    cloud_offset: tuple[float, float]
    presence: np.ndarray  # (layers, W) 0..1: where each ring of ridges rises
