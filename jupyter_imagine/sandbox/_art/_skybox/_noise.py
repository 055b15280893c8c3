"""Seamless noise for panoramas: periodic 1-D and 2-D fractal noise that wraps around 360°."""

from __future__ import annotations

import numpy as np

from .._noise import octave_sum
from ._common import F32


# ------------------------------------------------------------------------------- noise
def _catmull(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, t: np.ndarray):
    t2 = t * t
    return 0.5 * (
        2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (3 * (p1 - p2) + p3 - p0)
        * t2 * t
    )


def loop1(
    rng: np.random.Generator,
    n: int,
    cells: int,
    octaves: int,
    *,
    ridged: float = 0.0,
    persistence: float = 0.5,
) -> np.ndarray:
    """1-D fractal noise in about [-1, 1] over ``n`` samples, periodic: sample ``n`` is sample 0."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / n

    def octave(k: int) -> np.ndarray:
        m = cells << k
        knots = rng.uniform(-1, 1, m)
        pos = t * m
        i = np.floor(pos).astype(np.intp)
        return _catmull(
            knots[(i - 1) % m], knots[i % m], knots[(i + 1) % m], knots[(i + 2) % m], pos - i
        )

    total = octave_sum(octave, octaves, persistence=persistence, ridged=ridged, dtype=np.float64)
    return total.astype(F32)


def loop2(
    rng: np.random.Generator, w: int, h: int, cells: int, rows: int, octaves: int = 4,
    persistence: float = 0.5,
) -> np.ndarray:
    """(h, w) smooth noise in about [0, 1], periodic along x (``cells`` features per turn)."""
    x = (np.arange(w, dtype=np.float64) + 0.5) / w
    y = (np.arange(h, dtype=np.float64) + 0.5) / h

    def octave(k: int) -> np.ndarray:
        m, r = cells << k, rows << k
        grid = rng.random((r + 3, m))
        pos = x * m
        i = np.floor(pos).astype(np.intp)
        along = _catmull(
            grid[:, (i - 1) % m], grid[:, i % m], grid[:, (i + 1) % m], grid[:, (i + 2) % m],
            (pos - i)[None, :],
        )  # (r + 3, w)
        pos = y * r + 1
        j = np.floor(pos).astype(np.intp)
        g = (pos - j)[:, None]
        return _catmull(along[j - 1], along[j], along[j + 1], along[j + 2], g).astype(F32)

    return np.clip(octave_sum(octave, octaves, persistence=persistence), 0, 1)


_PERM = np.random.default_rng(0x5B0C).permutation(256).astype(np.intp)
_PERM = np.concatenate([_PERM, _PERM])
_VALUES = np.random.default_rng(0xB10C).random(256).astype(F32)


def _lattice(u: np.ndarray, v: np.ndarray, salt: int) -> np.ndarray:
    """Value noise in [0, 1] at arbitrary points (quintic interpolation of a hashed lattice)."""
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = (u - iu).astype(F32), (v - iv).astype(F32)
    a = (iu.astype(np.int64) + salt) & 255
    b = iv.astype(np.int64) & 255
    pa, pa1 = _PERM[a], _PERM[a + 1]
    v00 = _VALUES[_PERM[pa + b] & 255]
    v10 = _VALUES[_PERM[pa1 + b] & 255]
    v01 = _VALUES[_PERM[pa + b + 1] & 255]
    v11 = _VALUES[_PERM[pa1 + b + 1] & 255]
    su = fu * fu * fu * (fu * (fu * 6 - 15) + 10)
    sv = fv * fv * fv * (fv * (fv * 6 - 15) + 10)
    top = v00 + (v10 - v00) * su
    bottom = v01 + (v11 - v01) * su
    return top + (bottom - top) * sv


def plane_fbm(
    u: np.ndarray, v: np.ndarray, octaves: int, salt: int, footprint: np.ndarray | None = None
) -> np.ndarray:
    """Fractal value noise in [0, 1] at plane points; octaves finer than ``footprint`` (the
    size of one pixel in plane units) fade to their mean, so far-away texture does not alias."""
    total = np.zeros(u.shape, F32)
    amp, norm, freq = 1.0, 0.0, 1.0
    for k in range(octaves):
        n = _lattice(u * freq, v * freq, salt + 37 * k)
        if footprint is not None:
            keep = np.clip(1.6 - footprint * freq * 2.0, 0, 1)
            n = 0.5 + (n - 0.5) * keep
        total += amp * n
        norm += amp
        amp *= 0.5
        freq *= 2.03
    return total / norm


def box_wrap(values: np.ndarray, width: int) -> np.ndarray:
    """Moving average of a periodic 1-D array."""
    width = max(1, int(width)) | 1
    pad = width // 2
    padded = np.concatenate([values[-pad:], values, values[:pad]]) if pad else values
    csum = np.concatenate([[0.0], np.cumsum(padded, dtype=np.float64)])
    return ((csum[width:] - csum[:-width]) / width).astype(F32)
