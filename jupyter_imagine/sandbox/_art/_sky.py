"""The sky (gradient, glow, aurora, stars, clouds, sun or moon) and the water that mirrors it."""

from __future__ import annotations

import numpy as np

from ._noise import fbm1, fbm2, mix, shifted, smooth_noise
from ._scene import Plan
from ._tables import F32, Sky, rgb_array

__all__ = ["paint_sky", "paint_water", "without_body"]


def _sky_gradient(sky: Sky, h: int, horizon: int) -> np.ndarray:
    """(h, 1, 3) gradient: zenith → middle → horizon at ``horizon``, slightly darker below."""
    y = np.arange(h, dtype=F32)[:, None] / max(horizon, 1)
    y = np.clip(y, 0, 1.2)
    upper = mix(sky.zenith, sky.middle, np.clip(y / 0.6, 0, 1) ** 1.3)
    lower = mix(sky.middle, sky.horizon, np.clip((y - 0.6) / 0.4, 0, 1) ** 0.9)
    col = np.where(y < 0.6, upper, lower)
    return col[:, None, :].astype(F32)


def paint_sky(
    rng: np.random.Generator,
    plan: Plan,
    sky: Sky,
    w: int,
    rows: int,
    horizon: int,
    body_x: float,
    body_y: float,
    radius: float,
) -> np.ndarray:
    """The top ``rows`` rows of the picture: gradient, glow, aurora, stars, clouds, sun/moon."""
    h = rows
    short = min(w, max(horizon, 1) * 1.4)
    ys = np.arange(h, dtype=F32)[:, None]
    xs = np.arange(w, dtype=F32)[None, :]
    img = np.broadcast_to(_sky_gradient(sky, h, horizon), (h, w, 3)).copy()
    dist = np.sqrt((xs - body_x) ** 2 + ((ys - body_y) * 1.2) ** 2)
    glow = np.exp(-((dist / (short * 0.5)) ** 2)) * sky.glow_strength
    glow += np.exp(-((dist / (short * 0.1)) ** 2)) * min(1.0, sky.glow_strength * 1.2)
    if sky.kind == "sun":
        glow += np.exp(-((dist / (radius * 2.2)) ** 2)) * 0.6
    np.clip(glow, 0, 1, out=glow)
    img += glow[..., None] * (sky.glow - img) * 0.85

    if plan.aurora:
        band = fbm1(rng, w, 3, 3)
        centre = horizon * (0.32 + 0.14 * band)[None, :]
        thick = horizon * 0.24
        curtain = np.clip(1 - np.abs(ys - centre) / thick, 0, 1) ** 1.6
        streaks = 0.55 + 0.45 * np.sin(xs * (37.0 / w) * np.pi + band[None, :] * 5) ** 2
        alpha = (curtain * streaks)[..., None] * 0.6
        up = np.clip((centre - ys) / thick, 0, 1)[..., None]
        img += alpha * (mix(rgb_array(70, 255, 170), rgb_array(150, 90, 255), up) - img)

    if plan.stars_visible:
        _stars(rng, img, glow, horizon)

    if plan.clouds > 0:
        noise = fbm2(rng, (w, h), (max(2, 6 * h // max(horizon, 1)), 2), octaves=5)
        centre_y = rng.uniform(0.2, 0.5)
        band = np.clip(1 - np.abs(ys / max(horizon, 1) - centre_y) / 0.42, 0, 1) ** 0.8
        thresh = 0.62 - plan.clouds * 0.16
        dens = np.clip((noise - thresh) / 0.1, 0, 1) * band
        step = max(3, int(short) // 40)
        sx_dir = int(np.sign(body_x - w / 2)) * step
        sy_dir = step // 2 if body_y > horizon * 0.5 else -step // 2
        toward = shifted(noise, sy_dir, sx_dir)
        lit = np.clip((toward - noise) * 5 + 0.5, 0, 1)
        near_body = np.clip(1 - dist / (short * 0.8), 0, 1)
        ccol = sky.cloud * (0.72 + 0.28 * lit)[..., None] + img * 0.15
        ccol = mix(ccol, sky.glow, (near_body * lit * sky.glow_strength * 0.6)[..., None])
        img += (dens * 0.9)[..., None] * (ccol - img)

    _sun_or_moon(rng, img, sky, dist, (body_x, body_y), radius)
    return img


def _stars(rng: np.random.Generator, img: np.ndarray, glow: np.ndarray, horizon: int) -> None:
    """Stars above ``horizon`` (a few bigger ones), fading into the glow; ``img`` in place."""
    h, w = img.shape[:2]
    count = int(w * horizon / 650)
    sx = rng.integers(0, w, count)
    sy = (rng.random(count) ** 1.5 * horizon * 0.97).astype(np.intp)
    bright = rng.uniform(0.25, 1.0, count).astype(F32) ** 2
    big = rng.random(count) < 0.05
    keep = sy < h
    starmap = np.zeros((h, w), F32)
    starmap[sy[keep], sx[keep]] = bright[keep]
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        sel = big & keep
        yy, xx = np.clip(sy[sel] + dy, 0, h - 1), np.clip(sx[sel] + dx, 0, w - 1)
        starmap[yy, xx] = np.maximum(starmap[yy, xx], bright[sel] * 0.4)
    starmap *= np.clip(1 - glow * 1.6, 0, 1)
    img += starmap[..., None] * (rgb_array(250, 248, 255) - img)


def _sun_or_moon(
    rng: np.random.Generator,
    img: np.ndarray,
    sky: Sky,
    dist: np.ndarray,
    body: tuple[float, float],
    radius: float,
) -> None:
    """The sun or the (maybe crescent, cratered) moon on a small patch of ``img``, in place."""
    h, w = img.shape[:2]
    body_x, body_y = body
    ys = np.arange(h, dtype=F32)[:, None]
    xs = np.arange(w, dtype=F32)[None, :]
    pad = int(radius) + 3
    x0, x1 = max(0, int(body_x) - pad), min(w, int(body_x) + pad + 1)
    y0, y1 = max(0, int(body_y) - pad), min(h, int(body_y) + pad + 1)
    if x0 < x1 and y0 < y1:
        d = dist[y0:y1, x0:x1]
        disk = np.clip(radius + 0.8 - d, 0, 1)
        if sky.kind == "moon":
            if rng.random() < 0.45:
                off = radius * rng.uniform(0.35, 0.6)
                px, py = xs[:, x0:x1], ys[y0:y1]
                d2 = np.sqrt((px - body_x - off) ** 2 + ((py - body_y + off * 0.3) * 1.2) ** 2)
                disk = disk * np.clip(d2 - radius + 0.8, 0, 1)
            crater = smooth_noise(rng, (5, 5), (x1 - x0, y1 - y0))
            face = sky.body * (0.84 + 0.16 * crater)[..., None]
        else:
            face = sky.body
        patch = img[y0:y1, x0:x1]
        patch += disk[..., None] * (face - patch)


def without_body(img: np.ndarray, horizon: int, body_y: float, radius: float) -> np.ndarray:
    """The rows above ``horizon`` with the sun/moon disk blended back into the glow around it.

    Water reflects this: a mirrored disk reads as a ghost, the glitter path stands in for it.
    """
    src = img[:horizon]
    pad = int(radius) + 4
    y0, y1 = max(0, int(body_y) - pad), min(horizon, int(body_y) + pad + 1)
    if y0 >= y1:
        return src
    src = src.copy()
    above, below = max(0, y0 - 1), min(horizon - 1, y1)
    t = np.linspace(0, 1, y1 - y0, dtype=F32)[:, None, None]
    src[y0:y1] = src[above][None] * (1 - t) + src[below][None] * t
    return src


def paint_water(
    rng: np.random.Generator,
    img: np.ndarray,
    mirror: np.ndarray,
    land: np.ndarray,
    sky: Sky,
    horizon: int,
    body_x: float,
    radius: float,
) -> None:
    """Fill the rows below ``horizon`` (except land) with a rippled reflection, in place."""
    h, w = land.shape
    rows = h - horizon
    xs = np.arange(w, dtype=F32)[None, :]
    dy = np.arange(rows, dtype=F32)[:, None]
    persp = (dy + 1) / rows
    waves = fbm2(rng, (w, rows), (max(4, rows // 6), 3), octaves=3)
    wobble = (waves - 0.5) * (1.5 + 16 * persp)
    src_y = np.clip(horizon - 1 - dy + wobble, 0, horizon - 1).astype(np.intp)
    src_x = np.clip(xs + (waves - 0.5) * 6 * persp, 0, w - 1).astype(np.intp)
    water = mirror[src_y, src_x] * 0.9
    deep = sky.zenith * 0.55 + sky.horizon * 0.25
    water += (0.12 + 0.38 * persp)[..., None] * (deep - water)
    crest = np.clip((waves - 0.6) * 6, 0, 1) * (0.2 + 0.8 * persp) * 0.25
    water += crest[..., None] * (sky.horizon * 0.6 + sky.glow * 0.4 - water)
    path = np.exp(-(((xs - body_x) / (radius * (1.2 + 9 * persp))) ** 2))
    spark = np.clip((waves - 0.52) * 5, 0, 1) * path * (0.35 + 0.65 * sky.glow_strength)
    water += np.minimum(spark, 0.95)[..., None] * (sky.body - water)
    water[:1] *= 0.92
    np.copyto(img[horizon:], water, where=~land[horizon:, :, None])
