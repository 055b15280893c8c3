"""The quick drawing: a cheap stand-in for :func:`._landscape.render` in load tests.

A sandbox served with ``--drawing quick`` draws every fresh picture here: the prompt's sky
gradient (its time of day, as the full renderer reads it), one ridge of land and the sun or the
moon. A 512×512 picture takes about 7 ms of CPU, against 70–150 ms for the full landscape. Sizes,
formats and the edits made from it (grids, upscales, variations, inpaints) stay the same; only
the pictures are plainer. It is meant for runs where the sandbox's drawing, not the client, would
use the CPU: many kernels against one served sandbox, soaks, throughput benchmarks. Blockade's
panoramas keep their own renderer. Pure and deterministic in ``(prompt, seed, size)``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ._scene import picture_rng, scene_plan
from ._tables import F32, SKIES, Sky

__all__ = ["quick_render"]


def quick_render(prompt: str, seed: int, size: tuple[int, int]) -> Image.Image:
    """A plain picture for ``prompt``: deterministic in ``(prompt, seed, size)``.

    Args:
        prompt: words choose the time of day, as for the full renderer.
        seed: moves the horizon, the ridge and the sun (any int; taken modulo 2**32).
        size: ``(width, height)`` in pixels, both at least 1.

    Returns:
        An RGB image of exactly ``size``.
    """
    w, h = int(size[0]), int(size[1])
    rng = picture_rng(prompt, seed)
    sky = SKIES[scene_plan(prompt, rng).time]
    horizon = h * rng.uniform(0.55, 0.75)
    rows = np.arange(h, dtype=F32)
    t = np.clip(rows / max(horizon, 1.0), 0, 1)[:, None]  # one colour per row: sky, then land
    air = np.where(t < 0.5, sky.zenith + (sky.middle - sky.zenith) * (2 * t),
                   sky.middle + (sky.horizon - sky.middle) * (2 * t - 1))
    depth = np.clip((rows - horizon) / max(h - horizon, 1.0), 0, 1)[:, None]
    ground = sky.haze * sky.light * (0.55 - 0.35 * depth)
    x = np.arange(w, dtype=F32) / max(w, 1)
    phase, waves = rng.uniform(0, 2 * np.pi, 2), rng.uniform(1.5, 4.0, 2)
    ridge = horizon + h * (0.06 * np.sin(2 * np.pi * waves[0] * x + phase[0])
                           + 0.03 * np.sin(2 * np.pi * waves[1] * x + phase[1]))
    land = rows[:, None] >= ridge[None, :]
    img = np.where(land[..., None], _bytes(ground)[:, None], _bytes(air)[:, None])
    _body(img, land, sky, (w * rng.uniform(0.2, 0.8), horizon * rng.uniform(0.35, 0.7)),
          min(w, h) * sky.body_size)
    return Image.fromarray(img, "RGB")


def _bytes(colours: np.ndarray) -> np.ndarray:
    return np.clip(colours, 0, 255).astype(np.uint8)


def _body(img: np.ndarray, land: np.ndarray, sky: Sky, centre: tuple[float, float],
          radius: float) -> None:
    """The sun or the moon: a disk of ``sky.body`` over the sky of ``img`` (in place)."""
    h, w = land.shape
    cx, cy = centre
    x0, x1 = max(0, int(cx - radius)), min(w, int(cx + radius) + 1)
    y0, y1 = max(0, int(cy - radius)), min(h, int(cy + radius) + 1)
    ys, xs = np.ogrid[y0:y1, x0:x1]
    disk = ((xs - cx) ** 2 + (ys - cy) ** 2 <= radius ** 2) & ~land[y0:y1, x0:x1]
    img[y0:y1, x0:x1][disk] = _bytes(sky.body)
