"""Noise and array helpers of the procedural art: value noise, fractal noise (one octave sum
for every kind), dunes, blends."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from ._tables import F32

__all__ = [
    "dunes_profile", "fbm1", "fbm2", "mix", "moving_average", "octave_sum", "shifted",
    "smooth_noise",
]


def smooth_noise(
    rng: np.random.Generator, cells: tuple[int, int], size: tuple[int, int]
) -> np.ndarray:
    """Smooth value noise in [0, 1]: a ``cells`` (rows, cols) random grid resized bicubically."""
    low = rng.random(cells, dtype=F32)
    img = Image.fromarray(low).resize(size, Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=F32)


def octave_sum(
    octave: Callable[[int], np.ndarray],
    octaves: int,
    *,
    persistence: float = 0.5,
    ridged: float = 0.0,
    dtype: type = F32,
) -> np.ndarray:
    """Fractal noise: ``octave(k)`` for each octave ``k`` (whose features are usually ``2**k``
    times finer), weighted ``persistence**k`` (default 0.5) and divided by the sum of the
    weights, summed in ``dtype`` (default float32). ``ridged`` (default 0) blends each octave
    that far toward ridges (``1 - 2|v|``)."""
    total: np.ndarray | None = None
    amp, norm = 1.0, 0.0
    for k in range(octaves):
        v = octave(k)
        if ridged:
            v = (1 - ridged) * v + ridged * (1 - 2 * np.abs(v))
        if total is None:
            total = np.zeros(np.shape(v), dtype)
        total += amp * v
        norm += amp
        amp *= persistence
    assert total is not None, "octave_sum needs at least one octave"
    return total / norm


def fbm2(
    rng: np.random.Generator, size: tuple[int, int], base: tuple[int, int], octaves: int = 4
) -> np.ndarray:
    rows, cols = base
    return octave_sum(lambda k: smooth_noise(rng, (rows << k, cols << k), size), octaves)


def fbm1(
    rng: np.random.Generator,
    n: int,
    cells: int,
    octaves: int,
    ridged: float = 0.0,
) -> np.ndarray:
    """1-D fractal noise in about [-1, 1] with ``cells`` features across ``n`` samples, each
    octave half as strong as the one before; ``ridged`` as :func:`octave_sum` (default 0)."""
    x = np.arange(n, dtype=F32) / max(n - 1, 1)

    def octave(k: int) -> np.ndarray:
        knots = rng.uniform(-1, 1, (cells << k) + 2).astype(F32)
        pos = x * (cells << k)
        i = pos.astype(np.int32)
        t = pos - i
        t = t * t * (3 - 2 * t)
        return knots[i] * (1 - t) + knots[i + 1] * t

    return octave_sum(octave, octaves, ridged=ridged)


def shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` sampled ``(dy, dx)`` pixels away (``out[y, x] = a[y + dy, x + dx]``), edges held."""
    h, w = a.shape
    ys = np.clip(np.arange(h) + dy, 0, h - 1)
    xs = np.clip(np.arange(w) + dx, 0, w - 1)
    return a[ys[:, None], xs[None, :]]


def mix(a: np.ndarray, b: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    return a + (b - a) * t


def moving_average(values: np.ndarray, width: int) -> np.ndarray:
    """Moving average along the last axis (edges padded), ``width`` samples wide."""
    width = max(1, int(width)) | 1
    if width == 1:
        return values
    pad = width // 2
    padded = np.pad(values, [(0, 0)] * (values.ndim - 1) + [(pad, pad)], mode="edge")
    csum = np.cumsum(padded, axis=-1, dtype=np.float64)
    csum = np.concatenate([np.zeros((*values.shape[:-1], 1)), csum], axis=-1)
    return ((csum[..., width:] - csum[..., :-width]) / width).astype(F32)


def dunes_profile(rng: np.random.Generator, n: int, cells: float) -> np.ndarray:
    """A dune profile in [-1, 1]: long windward slopes, short steep slip faces."""
    x = np.arange(n, dtype=F32) / max(n - 1, 1)
    u = x * cells + 0.35 * fbm1(rng, n, 2, 2) + rng.random()
    t = u - np.floor(u)
    crest = 0.72
    up = (t / crest) ** 1.4
    down = ((1 - t) / (1 - crest)) ** 0.7
    height = np.where(t < crest, up, down)
    scale = 0.6 + 0.4 * (fbm1(rng, n, 2, 2) + 1) / 2
    return (height * scale) * 2 - 1
