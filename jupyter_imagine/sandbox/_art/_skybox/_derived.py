"""A drawn skybox and the images derived from it: depth map, cube faces, init blend, control
overlay, video frames."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ._common import CUBE_FACES, DEPTH_FAR, DEPTH_NEAR, F32


@dataclass(frozen=True)
class Panorama:
    """A rendered skybox: the RGB panorama and its depth (distance in camera heights)."""

    image: Image.Image
    distance: np.ndarray  # (H, W) float32

    def depth(self, size: tuple[int, int] | None = None) -> Image.Image:
        """The depth map as a grayscale image (near white, far black), at ``size`` (default:
        the panorama's)."""
        return depth_to_image(self.distance, size)


# ------------------------------------------------------------------------------ derived images
def depth_to_image(distance: np.ndarray, size: tuple[int, int] | None = None) -> Image.Image:
    """Distances (camera heights) as a grayscale depth map, near white, log scale, far black."""
    d = np.clip(distance, DEPTH_NEAR, DEPTH_FAR)
    value = 1 - np.log(d / DEPTH_NEAR) / math.log(DEPTH_FAR / DEPTH_NEAR)
    image = Image.fromarray((np.clip(value, 0, 1) * 255).astype(np.uint8), "L")
    if size is not None and image.size != tuple(size):
        image = image.resize(tuple(size), Image.Resampling.BILINEAR)
    return image


def _sample(pano: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Bilinear samples of an equirectangular array at (longitude, latitude), wrapping in x."""
    h, w = pano.shape[:2]
    x = (lon / (2 * np.pi) + 0.5) * w - 0.5
    y = np.clip((0.5 - lat / np.pi) * h - 0.5, 0, h - 1.001)
    x0 = np.floor(x).astype(np.intp)
    y0 = np.floor(y).astype(np.intp)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    xa, xb = x0 % w, (x0 + 1) % w
    y1 = np.minimum(y0 + 1, h - 1)
    top = pano[y0, xa] * (1 - fx) + pano[y0, xb] * fx
    bottom = pano[y1, xa] * (1 - fx) + pano[y1, xb] * fx
    return top * (1 - fy) + bottom * fy


def cube_map(image: Image.Image, face: int | None = None) -> Image.Image:
    """The six cube faces of an equirectangular ``image`` as one horizontal strip.

    Faces left to right: +X (right), −X (left), +Y (up), −Y (down), +Z (front), −Z (back) — the
    OpenGL / Unity order; the panorama's centre column looks at +Z. ``face`` is the side in
    pixels (default: a quarter of the panorama's width), so the strip is ``6·face × face``.
    """
    pano = np.asarray(image.convert("RGB"), F32)
    face = int(face or image.width // 4)
    c = (np.arange(face, dtype=np.float64) + 0.5) / face * 2 - 1
    a, b = np.meshgrid(c, c)  # a: left→right, b: top→bottom
    one = np.ones_like(a)
    directions = {
        "+x": (one, -b, -a),
        "-x": (-one, -b, a),
        "+y": (a, one, b),
        "-y": (a, -one, -b),
        "+z": (a, -b, one),
        "-z": (-a, -b, -one),
    }
    strip = Image.new("RGB", (6 * face, face))
    for i, name in enumerate(CUBE_FACES):
        dx, dy, dz = directions[name]
        lon = np.arctan2(dx, dz)
        lat = np.arctan2(dy, np.hypot(dx, dz))
        pixels = _sample(pano, lon, lat)
        strip.paste(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB"),
                    (i * face, 0))
    return strip


def blend_init(image: Image.Image, init: Image.Image, strength: float) -> Image.Image:
    """``image`` with an init image (fitted to 2:1) showing through at ``strength`` (0–0.97)."""
    fitted = init.convert("RGB").resize(image.size, Image.Resampling.LANCZOS)
    return Image.blend(image.convert("RGB"), fitted, float(np.clip(strength, 0, 0.97)))


def control_overlay(image: Image.Image, control: Image.Image, weight: float = 0.35) -> Image.Image:
    """``image`` shaped by a control sketch (white lines on black): the lines show as light."""
    lines = control.convert("L").resize(image.size, Image.Resampling.BILINEAR)
    mask = Image.fromarray((np.asarray(lines, F32) * weight).astype(np.uint8), "L")
    bright = Image.new("RGB", image.size, (245, 240, 225))
    return Image.composite(bright, image.convert("RGB"), mask)


def video_frames(image: Image.Image, size: tuple[int, int], frames: int = 12) -> list[Image.Image]:
    """A slow pan once around ``image``: ``frames`` views of ``size`` (a stand-in for video)."""
    w, h = image.size
    fw, fh = size
    view_w = min(w, round(h * fw / fh))
    pano = image.convert("RGB")
    wide = Image.new("RGB", (w + view_w, h))
    wide.paste(pano, (0, 0))
    wide.paste(pano.crop((0, 0, view_w, h)), (w, 0))
    out = []
    for i in range(frames):
        x = round(i * w / frames)
        out.append(wide.crop((x, 0, x + view_w, h)).resize(size, Image.Resampling.BILINEAR))
    return out
