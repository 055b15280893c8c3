"""Blockade styles in the picture: the words a style adds and the finish it applies."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from ._common import DEPTH_FAR, DEPTH_NEAR, F32, wrap_filter
from ._noise import loop2

# ------------------------------------------------------------------------------- styles
_STYLE_WORDS = (
    ("cyberpunk", "neon city night"),
    ("sci-fi", "alien planet"),
    ("scifi", "alien planet"),
    ("fantasy", "fantasy mountains"),
    ("dream", "dreamy"),
    ("winter", "snow"),
    ("desert", "desert"),
    ("ocean", "ocean"),
    ("interior", ""),
)


def style_words(style: str | None) -> str:
    """Words a style's name adds to the prompt when planning the scene (default none)."""
    name = (style or "").lower()
    return " ".join(words for key, words in _STYLE_WORDS if key in name and words)


def treatment(style: str | None) -> str:
    name = (style or "").lower()
    for key, treatment in (
        ("anime", "cel"),
        ("cartoon", "cel"),
        ("watercolor", "watercolor"),
        ("painting", "paint"),
        ("oil", "paint"),
        ("sketch", "sketch"),
    ):
        if key in name:
            return treatment
    return "photo"


# ------------------------------------------------------------------------------ finishes
def finish(image: Image.Image, distance: np.ndarray, treatment: str, seed: int) -> Image.Image:
    if treatment == "photo":
        return image
    if treatment == "cel":  # flat shading bands that keep each hue, and ink lines
        soft = wrap_filter(image, ImageFilter.ModeFilter(5), 4)
        arr = np.asarray(soft, F32)
        luma = arr @ np.array([0.299, 0.587, 0.114], F32) + 1.0
        levels = 6.0
        banded = (np.floor(luma / 256 * levels) + 0.5) / levels * 256
        arr = arr * (banded / luma)[..., None]
        depth = np.log(np.maximum(np.minimum(distance, DEPTH_FAR), DEPTH_NEAR))
        edge = np.abs(depth - np.roll(depth, 1, axis=1)) + np.abs(
            depth - np.concatenate([depth[:1], depth[:-1]], axis=0)
        )
        line = np.clip((edge - 0.35) * 2.5, 0, 1)[..., None] * 0.75
        arr = arr * (1 - line) + 20 * line
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if treatment == "paint":
        soft = wrap_filter(image, ImageFilter.ModeFilter(7), 6)
        soft = wrap_filter(soft, ImageFilter.SMOOTH_MORE, 3)
        rng = np.random.default_rng([seed, 0xB2])
        strokes = loop2(rng, image.width, image.height, 96, 160, 2)
        arr = np.asarray(soft, F32) * (0.95 + 0.1 * strokes)[..., None]
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if treatment == "watercolor":
        washed = wrap_filter(image, ImageFilter.GaussianBlur(3), 12)
        edges = np.asarray(wrap_filter(image.convert("L"), ImageFilter.FIND_EDGES, 2), F32)
        rng = np.random.default_rng([seed, 0xB3])
        paper = loop2(rng, image.width, image.height, 512, 128, 2)
        arr = np.asarray(washed, F32)
        arr = arr * 0.8 + 255 * 0.2  # lighter washes
        arr *= (1 - np.clip(edges / 255 * 1.5, 0, 0.35))[..., None]
        arr *= (0.94 + 0.08 * paper)[..., None]
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if treatment == "sketch":
        gray = image.convert("L")
        edges = np.asarray(wrap_filter(gray, ImageFilter.FIND_EDGES, 2), F32)
        arr = 250 - np.clip(edges * 2.2, 0, 200)
        base = np.asarray(gray, F32) * 0.25 + 190
        out = np.minimum(arr, base)
        return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "L").convert("RGB")
    return image
