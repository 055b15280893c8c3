"""The procedural landscape: :func:`render` lays out terrain, sky, water and structures.

:func:`render` paints a landscape — gradient sky with clouds, a sun or a moon, stars at night,
layered mountains with lit and shaded faces and mist in the valleys, and, depending on the
prompt, water with a rippled reflection, pine trees, dunes, a city skyline or a lighthouse.
Words in the prompt pick the time of day (``dusk``/``sunset``, ``dawn``, ``night``, …) and the
scene (``forest``, ``snow``, ``desert``, ``ocean``/``sea``/``lighthouse``, ``city``/``neon``,
``alien`` …); what the prompt leaves open is picked from a hash of the prompt, and the seed
moves everything around (ridges, sun, trees, buildings, clouds). Pure and deterministic.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from ...errors import InvalidRequest
from ._noise import dunes_profile, fbm1, fbm2, mix, moving_average, smooth_noise
from ._quick import quick_render
from ._scene import Plan, picture_rng, scene_plan
from ._sky import paint_sky, paint_water, without_body
from ._structures import paint_city, paint_lighthouse, pine_mask
from ._tables import F32, SKIES, TERRAIN, Sky, rgb_array

__all__ = ["DRAWINGS", "render", "set_drawing"]

_MIN_SIDE = 48
#: The ways this process can draw fresh pictures: ``full`` (the landscape, the default) and
#: ``quick`` (:func:`._quick.quick_render`, for load tests); see :func:`set_drawing`.
DRAWINGS = ("full", "quick")
_drawing = {"style": "full"}


def set_drawing(style: str) -> None:
    """Draw every later fresh picture of this process ``style`` (one of :data:`DRAWINGS`).

    The served sandbox's ``--drawing`` sets it; its process serves nothing else. Default
    ``full``.

    Raises:
        ValueError: ``style`` is not one of :data:`DRAWINGS`.
    """
    if style not in DRAWINGS:
        raise ValueError(f"drawing must be one of {', '.join(DRAWINGS)}, not {style!r}")
    _drawing["style"] = style


@dataclass
class _Layout:
    """Where things are: the plan, its sky, the terrain layers and the sun's (or moon's) disk."""

    plan: Plan
    sky: Sky
    w: int
    h: int
    horizon: int
    ridges: np.ndarray  # (layers, w) y of each layer's ridge line, far to near
    colours: np.ndarray  # (layers, 3)
    body_x: float
    body_y: float
    radius: float
    tree_masks: dict[int, np.ndarray]
    lights: tuple[np.ndarray, np.ndarray] | None  # the city's window colours and alpha

    @property
    def short(self) -> int:
        return min(self.w, self.h)


@dataclass
class _Band:
    """The rows ``t0:t1`` that hold land: layer index, depth below the ridge, shading."""

    t0: int
    t1: int
    band: np.ndarray  # layer per pixel (-1: sky)
    lk: np.ndarray  # layer per pixel, sky as layer 0
    depth_px: np.ndarray
    depth_s: np.ndarray  # depth below a smoothed ridge
    cols: np.ndarray


def render(prompt: str, seed: int, size: tuple[int, int]) -> Image.Image:
    """A procedural landscape for ``prompt``: deterministic in ``(prompt, seed, size)``.

    Args:
        prompt: words choose the time of day and the scene (see the module docstring);
            ``--flags`` are ignored.
        seed: moves the composition (any int; taken modulo 2**32).
        size: ``(width, height)`` in pixels.

    Returns:
        An RGB image of exactly ``size``.
    """
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise InvalidRequest(f"image size must be positive, not {w}×{h}")
    if _drawing["style"] == "quick":
        return quick_render(prompt, seed, (w, h))
    if w < _MIN_SIDE or h < _MIN_SIDE:  # too small to draw: draw bigger, then shrink
        big = render(prompt, seed, (max(w, _MIN_SIDE), max(h, _MIN_SIDE)))
        return big.resize((w, h), Image.Resampling.LANCZOS)
    rng = picture_rng(prompt, seed)
    lay = _lay_out(rng, scene_plan(prompt, rng), w, h)
    plan, sky, horizon = lay.plan, lay.sky, lay.horizon
    layer = _layer_map(lay)
    land = layer >= 0
    open_rows = np.nonzero(~land.all(axis=1))[0]
    sky_rows = horizon if plan.water else (int(open_rows[-1]) + 1 if len(open_rows) else 0)
    land_rows = np.nonzero(land.any(axis=1))[0]

    img = np.empty((h, w, 3), F32)
    if sky_rows:
        img[:sky_rows] = paint_sky(
            rng, plan, sky, w, sky_rows, horizon, lay.body_x, lay.body_y, lay.radius
        )
    if len(land_rows):  # terrain colours, only on the rows that hold land
        _paint_terrain(rng, lay, img, layer, (int(land_rows[0]), int(land_rows[-1]) + 1))
    if plan.water and horizon < h:
        mirror = without_body(img, horizon, lay.body_y, lay.radius)
        paint_water(rng, img, mirror, land, sky, horizon, lay.body_x, lay.radius)
    if plan.lighthouse:
        paint_lighthouse(rng, img, lay.ridges[-1], horizon, plan, sky)
    if plan.snow_fall:
        _snowfall(rng, img, lay.short)
    # finish: vignette and dither
    img *= _vignette(w, h)
    img += rng.random((h, w, 1), dtype=F32) * 3.0 - 1.5
    np.clip(img, 0, 255, out=img)
    return Image.fromarray(img.astype(np.uint8), "RGB")


def _lay_out(rng: np.random.Generator, plan: Plan, w: int, h: int) -> _Layout:
    """The terrain geometry, the sun's place, the trees and the city's lights."""
    sky = SKIES[plan.time]
    horizon = int(h * (rng.uniform(0.55, 0.66) if plan.water else rng.uniform(0.72, 0.82)))
    ridges, colours = _ridges(rng, plan, w, h, horizon)
    n_layers = len(ridges)
    skyline = float(ridges[0].mean())
    body_x = w * rng.uniform(0.2, 0.8)
    lo, hi = sky.body_height
    body_y = skyline - skyline * rng.uniform(lo, hi)
    radius = min(w, h) * sky.body_size * rng.uniform(0.85, 1.15)
    tree_masks: dict[int, np.ndarray] = {}
    if plan.trees:
        first = max(0, n_layers - 3)
        for k in range(first, n_layers):
            tree_masks[k] = pine_mask(rng, ridges[k], (w, h), k - first)
    lights = paint_city(rng, ridges, (w, h), horizon, plan, tree_masks) if plan.city else None
    return _Layout(
        plan, sky, w, h, horizon, ridges, colours, body_x, body_y, radius, tree_masks, lights
    )


def _layer_map(lay: _Layout) -> np.ndarray:
    """(h, w) index of the terrain layer each pixel shows, -1 for sky (and water)."""
    plan, ridges, n_layers = lay.plan, lay.ridges, len(lay.ridges)
    rows = np.arange(lay.h, dtype=np.intp)[:, None]
    layer = np.full((lay.h, lay.w), -1, np.int8)
    for k in range(n_layers):
        mask = rows >= np.ceil(ridges[k]).astype(np.intp)[None, :]
        if k in lay.tree_masks:
            mask |= lay.tree_masks[k]
        if plan.water and not (plan.lighthouse and k == n_layers - 1):
            mask[lay.horizon :] = False
        layer[mask] = k
    return layer


def _paint_terrain(
    rng: np.random.Generator,
    lay: _Layout,
    img: np.ndarray,
    layer: np.ndarray,
    rows: tuple[int, int],
) -> None:
    """Colour the land of rows ``rows[0]:rows[1]`` of ``img`` in place."""
    plan, sky, ridges, w, h = lay.plan, lay.sky, lay.ridges, lay.w, lay.h
    t0, t1 = rows
    band = layer[t0:t1]
    cols = np.arange(w, dtype=np.intp)
    lk = np.maximum(band, 0).astype(np.intp)
    yb = np.arange(t0, t1, dtype=F32)[:, None]
    depth_px = np.maximum(yb - ridges[lk, cols], 0)
    soft = moving_average(ridges, w // 24)
    depth_s = np.maximum(yb - soft[lk, cols], 0)
    b = _Band(t0, t1, band, lk, depth_px, depth_s, cols)
    shade = _face_shade(lay, b)
    col = lay.colours[lk] * sky.light
    col = col * shade[..., None] + np.maximum(1 - shade, 0)[..., None] * (sky.zenith * 0.5)
    texture = fbm2(rng, (w, t1 - t0), (max(2, (t1 - t0) * 8 // h), 4), octaves=3)
    rough = np.where(plan.lighthouse & (lk == len(ridges) - 1), 0.4, 0.12).astype(F32)
    col *= (1 + rough * (texture - 0.5))[..., None]
    if plan.scene == "snow" or (plan.scene == "mountain" and plan.snowcaps):
        col = _snowcaps(rng, lay, b, col, shade)
    if lay.tree_masks:
        _tree_colours(lay, b, col, texture)
    col = _rim_and_haze(lay, b, col)
    if lay.lights is not None:
        col = mix(col, lay.lights[0][t0:t1], lay.lights[1][t0:t1, :, None])
    img[t0:t1] = np.where((band >= 0)[..., None], col, img[t0:t1])


def _face_shade(lay: _Layout, b: _Band) -> np.ndarray:
    """Lit and shaded faces: the slope of the ridge, sampled along a diagonal so the boundary
    between faces runs down and away from each peak."""
    plan, ridges, w = lay.plan, lay.ridges, lay.w
    towards = 1 if lay.body_x > w / 2 else -1
    if plan.dunes:
        slope = moving_average(np.gradient(ridges, axis=1), w // 64)
    else:  # broad facets from the big shapes only
        slope = np.gradient(moving_average(moving_average(ridges, w // 12), w // 12), axis=1) * 1.6
    shift = (b.depth_s * (0.9 if plan.dunes else 0.6) * -towards).astype(np.intp)
    face = np.tanh(-slope * towards * 1.4)[b.lk, np.clip(b.cols + shift, 0, w - 1)]
    fade = np.exp(-b.depth_s / (lay.h * (0.12 if plan.dunes else 0.14)))
    strength = 0.32 if plan.time in ("day", "alien", "dawn") else 0.22
    return 1 + strength * face * fade


def _snowcaps(
    rng: np.random.Generator, lay: _Layout, b: _Band, col: np.ndarray, shade: np.ndarray
) -> np.ndarray:
    """``col`` with snow on the ridges (on the peaks only unless the scene is snow)."""
    ridges, h, sky = lay.ridges, lay.h, lay.sky
    cap_depth = h * (0.04 + 0.05 * smooth_noise(rng, (1, 6), (lay.w, 1))[0])
    cap = np.clip((cap_depth[b.cols] - b.depth_px) / 3, 0, 1) * (b.lk < len(ridges) - 1)
    if lay.plan.scene != "snow":  # only the peaks
        peaks = np.clip((ridges.mean(axis=1, keepdims=True) - ridges) / (h * 0.03), 0, 1)
        cap *= peaks[b.lk, b.cols]
    snow_col = rgb_array(246, 250, 255) * (sky.light * 0.6 + 0.4) * shade[..., None]
    snow_col += np.maximum(1 - shade, 0)[..., None] * rgb_array(54, 72, 120)
    return mix(col, snow_col, (cap * 0.9)[..., None])


def _tree_colours(lay: _Layout, b: _Band, col: np.ndarray, texture: np.ndarray) -> None:
    """Paint the pines' pixels of ``col`` in place, darker and greener (or red in autumn)."""
    plan, colours, tree_masks = lay.plan, lay.colours, lay.tree_masks
    if "autumn" in plan.flags:
        tree_col = rgb_array(168, 74, 30)
    elif plan.scene == "snow":
        tree_col = rgb_array(24, 64, 56)
    else:
        tree_col = colours[-1] * rgb_array(0.5, 0.75, 0.6)
    first = len(lay.ridges) - len(tree_masks)
    for k, tm in tree_masks.items():
        sel = tm[b.t0 : b.t1] & (b.band == k) & (b.depth_px < lay.h * 0.2)
        mix_k = 0.55 + 0.45 * (k - first) / max(len(tree_masks) - 1, 1)
        tone = (0.95 + 0.1 * texture[sel])[:, None]
        col[sel] = mix(colours[k], tree_col, mix_k) * lay.sky.light * tone


def _rim_and_haze(lay: _Layout, b: _Band, col: np.ndarray) -> np.ndarray:
    """``col`` with rim light under the sun's glow, haze with distance and mist in the valleys."""
    sky, ridges, h, n_layers = lay.sky, lay.ridges, lay.h, len(lay.ridges)
    xs = b.cols.astype(F32)[None, :]
    rdist = np.sqrt((xs - lay.body_x) ** 2 + ((ridges - lay.body_y) * 1.2) ** 2)
    rglow = np.exp(-((rdist / (lay.short * 0.5)) ** 2)) * sky.glow_strength
    rim = np.exp(-b.depth_px / 1.2) * rglow[b.lk, b.cols] * 0.7
    col = mix(col, sky.glow, rim[..., None])
    rel = (b.lk / max(n_layers - 1, 1)).astype(F32)
    haze = 0.78 * (1 - rel) ** 1.5
    mist = np.minimum(b.depth_s / (h * 0.13), 1) ** 1.3 * (0.5 * (1 - rel * 0.8))
    if lay.plan.lighthouse:
        foot = np.minimum(b.depth_s / (h * 0.5), 1) * 0.3
        mist = np.where(b.lk == n_layers - 1, foot, mist)
    haze = haze + (1 - haze) * mist
    return mix(col, sky.haze, haze[..., None])


def _snowfall(rng: np.random.Generator, img: np.ndarray, short: int) -> None:
    """Falling snowflakes over ``img``, in place."""
    h, w = img.shape[:2]
    count = int(w * h / 450)
    flakes = np.zeros((h, w), np.uint8)
    flakes[rng.integers(0, h, count), rng.integers(0, w, count)] = rng.integers(90, 256, count)
    blur = Image.fromarray(flakes).filter(ImageFilter.GaussianBlur(0.7 * max(1, short / 512)))
    alpha = np.asarray(blur, F32)
    where = np.nonzero(alpha > 2)
    a = np.minimum(alpha[where] / 255 * 3.2, 0.9)[:, None]
    img[where] += a * (rgb_array(250, 252, 255) - img[where])


@functools.lru_cache(maxsize=16)
def _vignette(w: int, h: int) -> np.ndarray:
    vx = (np.arange(w, dtype=F32)[None, :] / w - 0.5) * 2
    vy = (np.arange(h, dtype=F32)[:, None] / h - 0.45) * 2
    out = (1 - 0.2 * np.clip(vx * vx * 0.55 + vy * vy * 0.45, 0, 1.5))[..., None]
    out.setflags(write=False)
    return out


def _ridges(
    rng: np.random.Generator, plan: Plan, w: int, h: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ridge line (y per column) and colour of each terrain layer, far to near."""
    far, near = TERRAIN[plan.scene]
    n_layers = 4 if plan.water else 5
    top = horizon - h * (0.16 if plan.water else 0.36)
    ridges = np.empty((n_layers, w), F32)
    colours = np.empty((n_layers, 3), F32)
    for k in range(n_layers):
        depth = k / max(n_layers - 1, 1)  # 0 far … 1 near
        if plan.water:
            base = top + (horizon - top) * (0.3 + 0.7 * depth)
            amp = h * (0.13 - 0.07 * depth)
        else:
            base = top + (horizon - top) * (0.2 + 0.8 * depth) ** 1.2
            amp = h * (0.2 - 0.1 * depth)
        if plan.dunes:
            profile = dunes_profile(rng, w, rng.uniform(1.2, 2.6) + k * 0.8)
            amp *= 0.5
        else:
            cells = int(rng.integers(2, 4)) + k
            profile = fbm1(rng, w, cells, 6, ridged=0.55 - 0.35 * depth)
        ridges[k] = base - amp * (profile + 1) * 0.5
        colours[k] = mix(far, near, depth**0.85)
    if plan.water:
        np.minimum(ridges, horizon - 1, out=ridges)
    if plan.lighthouse:
        left = rng.random() < 0.5
        edge = w * rng.uniform(0.36, 0.48)
        pos = np.arange(w, dtype=F32) if left else (w - 1 - np.arange(w, dtype=F32))
        t = np.clip(pos / edge, 0, 1)
        crest = horizon - h * rng.uniform(0.13, 0.18)
        cliff = crest + (h - crest) * np.clip((t - 0.7) / 0.3, 0, 1) ** 1.6 * 1.05
        rough = fbm1(rng, w, 9, 4) * h * 0.012
        ridges[-1] = np.where(t < 1, cliff + rough + t * h * 0.03, h + 1)
        colours[-1] = colours[-1] * 1.5 + 10
    return ridges, colours
