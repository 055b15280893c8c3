"""Image work: procedural scenes, grids, upscales, variations, inpainting, masks and PNG text.

Everything here is pure and deterministic: the same arguments give the same pixels. The
sandbox draws its "generated" images with :func:`render`, :func:`upscale`, :func:`vary` and
:func:`inpaint`; the rest of the package uses the grid, mask, thumbnail and PNG-text helpers.

:func:`render` paints a landscape — gradient sky with clouds, a sun or a moon, stars at night,
layered mountains with lit and shaded faces and mist in the valleys, and, depending on the
prompt, water with a rippled reflection, pine trees, dunes, a city skyline or a lighthouse.
Words in the prompt pick the time of day (``dusk``/``sunset``, ``dawn``, ``night``, …) and the
scene (``forest``, ``snow``, ``desert``, ``ocean``/``sea``/``lighthouse``, ``city``/``neon``,
``alien`` …); what the prompt leaves open is picked from a hash of the prompt, and the seed
moves everything around (ridges, sun, trees, buildings, clouds).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, PngImagePlugin, UnidentifiedImageError

from ._secrets import get_logger
from .errors import InvalidMask, InvalidRequest

__all__ = [
    "SKIES",
    "TERRAIN",
    "Sky",
    "aspect_size",
    "decode_mask",
    "hash32",
    "image_size",
    "inpaint",
    "load_mask",
    "make_grid",
    "png_with_text",
    "prompt_words",
    "read_png_text",
    "render",
    "scene_plan",
    "split_grid",
    "thumbnail_png",
    "to_png",
    "upscale",
    "vary",
]

logger = get_logger(__name__)

#: The most elongated aspect ratio accepted, either way (4:1 and 1:4).
MAX_RATIO = 4.0
_RATIO = re.compile(r"^\s*(\d{1,5})\s*:\s*(\d{1,5})\s*$")


# ----------------------------------------------------------------------------------- sizes
def aspect_size(aspect_ratio: str = "1:1", long_side: int = 512) -> tuple[int, int]:
    """The ``(width, height)`` of one grid cell for ``aspect_ratio``.

    Args:
        aspect_ratio: ``"W:H"`` with positive integers, between 1:4 and 4:1 (default ``"1:1"``).
        long_side: pixels of the longer side (default 512).

    The shorter side is rounded to the nearest multiple of 2 (``"3:2"`` → ``(512, 342)``,
    ``"16:9"`` → ``(512, 288)``), so a 2× upscale and a 2×2 grid keep whole pixels.

    Raises:
        InvalidRequest: a malformed ratio, or one beyond 1:4 … 4:1.
    """
    match = _RATIO.match(aspect_ratio) if isinstance(aspect_ratio, str) else None
    if match is None or int(match[1]) == 0 or int(match[2]) == 0:
        raise InvalidRequest(f"aspect ratio must look like 16:9, not {aspect_ratio!r}")
    w, h = int(match[1]), int(match[2])
    if max(w / h, h / w) > MAX_RATIO:
        raise InvalidRequest(f"aspect ratio {w}:{h} is out of range; use one between 1:4 and 4:1")
    long_side = int(long_side)
    if long_side < 2:
        raise InvalidRequest(f"long_side must be at least 2 pixels, not {long_side}")
    short = max(2, round(long_side * min(w, h) / max(w, h) / 2) * 2)
    long_side -= long_side % 2
    return (long_side, short) if w >= h else (short, long_side)


# ----------------------------------------------------------------------------- the scene
_F = np.float32


def _rgb(*values: float) -> np.ndarray:
    return np.array(values, dtype=_F)


@dataclass(frozen=True)
class Sky:
    zenith: np.ndarray
    middle: np.ndarray
    horizon: np.ndarray
    body: np.ndarray  # sun or moon colour
    glow: np.ndarray
    haze: np.ndarray  # what distant terrain fades into
    cloud: np.ndarray
    light: np.ndarray  # tint x brightness applied to terrain
    kind: str  # "sun" or "moon"
    body_height: tuple[float, float]  # range of the body's height above the horizon (0..1)
    body_size: float  # radius as a fraction of the short side
    glow_strength: float
    stars: bool


SKIES: dict[str, Sky] = {
    "day": Sky(
        _rgb(34, 88, 172),
        _rgb(86, 150, 218),
        _rgb(204, 226, 240),
        _rgb(255, 252, 236),
        _rgb(255, 246, 214),
        _rgb(168, 196, 220),
        _rgb(255, 255, 255),
        _rgb(1.0, 1.0, 0.98),
        "sun",
        (0.45, 0.8),
        0.035,
        0.35,
        False,
    ),
    "dusk": Sky(
        _rgb(28, 26, 78),
        _rgb(142, 62, 118),
        _rgb(255, 150, 76),
        _rgb(255, 232, 170),
        _rgb(255, 150, 80),
        _rgb(214, 110, 112),
        _rgb(255, 168, 150),
        _rgb(0.55, 0.4, 0.5),
        "sun",
        (0.04, 0.22),
        0.06,
        0.9,
        False,
    ),
    "dawn": Sky(
        _rgb(58, 92, 166),
        _rgb(210, 158, 184),
        _rgb(255, 216, 170),
        _rgb(255, 246, 220),
        _rgb(255, 206, 160),
        _rgb(222, 184, 190),
        _rgb(255, 222, 222),
        _rgb(0.78, 0.7, 0.74),
        "sun",
        (0.08, 0.3),
        0.05,
        0.7,
        False,
    ),
    "night": Sky(
        _rgb(3, 6, 20),
        _rgb(12, 22, 56),
        _rgb(36, 56, 104),
        _rgb(244, 242, 226),
        _rgb(120, 150, 210),
        _rgb(40, 58, 100),
        _rgb(64, 76, 112),
        _rgb(0.3, 0.34, 0.48),
        "moon",
        (0.45, 0.8),
        0.045,
        0.45,
        True,
    ),
    "neon": Sky(
        _rgb(8, 4, 30),
        _rgb(66, 16, 98),
        _rgb(236, 70, 150),
        _rgb(255, 120, 200),
        _rgb(255, 70, 170),
        _rgb(120, 40, 120),
        _rgb(120, 60, 150),
        _rgb(0.3, 0.2, 0.42),
        "moon",
        (0.5, 0.85),
        0.03,
        0.55,
        True,
    ),
    "alien": Sky(
        _rgb(14, 40, 70),
        _rgb(30, 130, 140),
        _rgb(236, 200, 150),
        _rgb(255, 236, 200),
        _rgb(255, 190, 140),
        _rgb(110, 150, 150),
        _rgb(220, 240, 235),
        _rgb(0.7, 0.6, 0.8),
        "sun",
        (0.2, 0.6),
        0.09,
        0.6,
        True,
    ),
}

# (far colour, near colour) of the terrain in neutral light, per scene kind.
TERRAIN: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "mountain": (_rgb(126, 140, 164), _rgb(46, 58, 62)),
    "forest": (_rgb(96, 138, 124), _rgb(16, 56, 36)),
    "snow": (_rgb(226, 234, 246), _rgb(176, 192, 214)),
    "desert": (_rgb(236, 178, 112), _rgb(186, 104, 52)),
    "ocean": (_rgb(104, 122, 136), _rgb(42, 52, 50)),
    "city": (_rgb(92, 100, 132), _rgb(20, 22, 36)),
    "alien": (_rgb(170, 96, 176), _rgb(46, 18, 66)),
}

_WORDS: dict[str, tuple[str, ...]] = {
    # time of day
    "night": (
        "night",
        "midnight",
        "moon",
        "moonlit",
        "moonlight",
        "starry",
        "stars",
        "star",
        "galaxy",
        "nebula",
        "nocturnal",
        "dark",
    ),
    "dusk": ("dusk", "sunset", "evening", "twilight", "sundown", "golden"),
    "dawn": ("dawn", "sunrise", "morning", "daybreak"),
    "day": ("day", "noon", "sunny", "summer", "bright", "clear", "daylight"),
    # scenes
    "snow": (
        "snow",
        "snowy",
        "winter",
        "ice",
        "icy",
        "frozen",
        "arctic",
        "glacier",
        "alpine",
        "frost",
        "blizzard",
    ),
    "desert": ("desert", "dune", "dunes", "sand", "sandy", "sahara", "canyon", "mars", "arid"),
    "ocean": (
        "ocean",
        "sea",
        "lighthouse",
        "beach",
        "coast",
        "coastal",
        "shore",
        "harbor",
        "harbour",
        "bay",
        "island",
        "waves",
        "wave",
        "lake",
        "river",
        "pier",
        "sail",
        "sailboat",
        "boat",
        "reflection",
        "water",
    ),
    "city": (
        "city",
        "neon",
        "cyberpunk",
        "skyline",
        "street",
        "town",
        "metropolis",
        "tokyo",
        "building",
        "buildings",
        "skyscraper",
        "skyscrapers",
        "downtown",
        "urban",
    ),
    "forest": (
        "forest",
        "pine",
        "pines",
        "woods",
        "tree",
        "trees",
        "jungle",
        "grove",
        "taiga",
        "woodland",
        "cabin",
    ),
    "alien": (
        "alien",
        "fantasy",
        "dream",
        "dreamy",
        "magic",
        "magical",
        "planet",
        "cosmic",
        "psychedelic",
        "surreal",
        "otherworldly",
    ),
    "mountain": ("mountain", "mountains", "peak", "peaks", "valley", "hills", "cliff"),
    "lighthouse": ("lighthouse",),
    "neon": ("neon", "cyberpunk", "synthwave", "vaporwave"),
    "aurora": ("aurora", "northern"),
    "autumn": ("autumn", "autumnal", "fall", "october", "maple"),
}
_SCENE_PRIORITY = ("snow", "desert", "alien", "city", "ocean", "forest", "mountain")
_FLAG = re.compile(r"--\w+(?:\s+(?!--)\S+)?")


def prompt_words(prompt: str) -> set[str]:
    return set(re.findall(r"[a-z]+", _FLAG.sub(" ", prompt.lower())))


def hash32(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0xFFFFFFFF


@dataclass
class _Plan:
    time: str
    scene: str
    water: bool
    trees: bool
    snow_fall: bool
    lighthouse: bool
    city: bool
    aurora: bool
    dunes: bool
    clouds: float
    snowcaps: bool
    stars_visible: bool
    flags: set[str] = field(default_factory=set)


def scene_plan(prompt: str, rng: np.random.Generator) -> _Plan:
    words = prompt_words(prompt)
    hits = {name for name, vocab in _WORDS.items() if words.intersection(vocab)}
    phash = hash32(" ".join(sorted(words)))
    scene = next((s for s in _SCENE_PRIORITY if s in hits), None)
    if scene is None:
        scene = ("mountain", "forest", "ocean", "desert", "snow", "mountain", "alien")[phash % 7]
    if "neon" in hits:
        time = "neon"
    elif "night" in hits:
        time = "night"
    elif "dusk" in hits:
        time = "dusk"
    elif "dawn" in hits:
        time = "dawn"
    elif "day" in hits:
        time = "day"
    elif scene == "alien":
        time = "alien"
    else:
        time = ("dusk", "day", "night", "dawn", "dusk", "day")[(phash >> 8) % 6]
    if scene == "city" and time == "night" and "neon" not in hits:
        time = "night"
    water = scene == "ocean" or (
        scene in ("mountain", "forest", "snow", "city", "alien") and rng.random() < 0.45
    )
    trees = (
        "forest" in hits
        or scene == "forest"
        or (scene in ("mountain", "snow") and rng.random() < 0.5)
    )
    return _Plan(
        time=time,
        scene=scene,
        water=water,
        trees=trees,
        snow_fall=scene == "snow" and rng.random() < 0.7,
        lighthouse="lighthouse" in hits,
        city=scene == "city",
        aurora="aurora" in hits or (time == "night" and scene == "snow" and rng.random() < 0.6),
        dunes=scene == "desert",
        clouds=float(rng.uniform(0.2, 0.8)) if time != "neon" else 0.15,
        snowcaps=rng.random() < 0.4,
        stars_visible=time in ("night", "neon") or (time == "alien" and rng.random() < 0.5),
        flags=hits,
    )


def _smooth(rng: np.random.Generator, cells: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Smooth value noise in [0, 1]: a ``cells`` (rows, cols) random grid resized bicubically."""
    low = rng.random(cells, dtype=_F)
    img = Image.fromarray(low).resize(size, Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=_F)


def _fbm2(
    rng: np.random.Generator, size: tuple[int, int], base: tuple[int, int], octaves: int = 4
) -> np.ndarray:
    w, h = size
    total = np.zeros((h, w), _F)
    amp, norm = 1.0, 0.0
    rows, cols = base
    for _ in range(octaves):
        total += amp * _smooth(rng, (rows, cols), size)
        norm += amp
        amp *= 0.5
        rows, cols = rows * 2, cols * 2
    return total / norm


def _fbm1(
    rng: np.random.Generator,
    n: int,
    cells: int,
    octaves: int,
    ridged: float = 0.0,
    persistence: float = 0.5,
) -> np.ndarray:
    """1-D fractal noise in about [-1, 1] with ``cells`` features across ``n`` samples."""
    x = np.arange(n, dtype=_F) / max(n - 1, 1)
    total = np.zeros(n, _F)
    amp, norm = 1.0, 0.0
    for _ in range(octaves):
        knots = rng.uniform(-1, 1, cells + 2).astype(_F)
        pos = x * cells
        i = pos.astype(np.int32)
        t = pos - i
        t = t * t * (3 - 2 * t)
        v = knots[i] * (1 - t) + knots[i + 1] * t
        if ridged:
            v = (1 - ridged) * v + ridged * (1 - 2 * np.abs(v))
        total += amp * v
        norm += amp
        amp *= persistence
        cells *= 2
    return total / norm


def _shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` sampled ``(dy, dx)`` pixels away (``out[y, x] = a[y + dy, x + dx]``), edges held."""
    h, w = a.shape
    ys = np.clip(np.arange(h) + dy, 0, h - 1)
    xs = np.clip(np.arange(w) + dx, 0, w - 1)
    return a[ys[:, None], xs[None, :]]


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    return a + (b - a) * t


def _sky_gradient(sky: Sky, h: int, horizon: int) -> np.ndarray:
    """(h, 1, 3) gradient: zenith → middle → horizon at ``horizon``, slightly darker below."""
    y = np.arange(h, dtype=_F)[:, None] / max(horizon, 1)
    y = np.clip(y, 0, 1.2)
    upper = _mix(sky.zenith, sky.middle, np.clip(y / 0.6, 0, 1) ** 1.3)
    lower = _mix(sky.middle, sky.horizon, np.clip((y - 0.6) / 0.4, 0, 1) ** 0.9)
    col = np.where(y < 0.6, upper, lower)
    return col[:, None, :].astype(_F)


def _box(values: np.ndarray, width: int) -> np.ndarray:
    """Moving average along the last axis (edges padded), ``width`` samples wide."""
    width = max(1, int(width)) | 1
    if width == 1:
        return values
    pad = width // 2
    padded = np.pad(values, [(0, 0)] * (values.ndim - 1) + [(pad, pad)], mode="edge")
    csum = np.cumsum(padded, axis=-1, dtype=np.float64)
    csum = np.concatenate([np.zeros((*values.shape[:-1], 1)), csum], axis=-1)
    return ((csum[..., width:] - csum[..., :-width]) / width).astype(_F)


def _dunes(rng: np.random.Generator, n: int, cells: float) -> np.ndarray:
    """A dune profile in [-1, 1]: long windward slopes, short steep slip faces."""
    x = np.arange(n, dtype=_F) / max(n - 1, 1)
    u = x * cells + 0.35 * _fbm1(rng, n, 2, 2) + rng.random()
    t = u - np.floor(u)
    crest = 0.72
    up = (t / crest) ** 1.4
    down = ((1 - t) / (1 - crest)) ** 0.7
    height = np.where(t < crest, up, down)
    scale = 0.6 + 0.4 * (_fbm1(rng, n, 2, 2) + 1) / 2
    return (height * scale) * 2 - 1


_MIN_SIDE = 48


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
    if w < _MIN_SIDE or h < _MIN_SIDE:  # too small to draw: draw bigger, then shrink
        big = render(prompt, seed, (max(w, _MIN_SIDE), max(h, _MIN_SIDE)))
        return big.resize((w, h), Image.Resampling.LANCZOS)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, hash32(sorted(prompt_words(prompt)))])
    plan = scene_plan(prompt, rng)
    sky = SKIES[plan.time]
    short = min(w, h)
    cols = np.arange(w, dtype=np.intp)
    xs = cols.astype(_F)[None, :]
    horizon = int(h * (rng.uniform(0.55, 0.66) if plan.water else rng.uniform(0.72, 0.82)))

    # --- terrain geometry ------------------------------------------------------------------
    ridges, colours = _ridges(rng, plan, w, h, horizon)
    n_layers = len(ridges)
    skyline = float(ridges[0].mean())
    body_x = w * rng.uniform(0.2, 0.8)
    lo, hi = sky.body_height
    body_y = skyline - skyline * rng.uniform(lo, hi)
    radius = short * sky.body_size * rng.uniform(0.85, 1.15)
    tree_masks: dict[int, np.ndarray] = {}
    if plan.trees:
        first = max(0, n_layers - 3)
        for k in range(first, n_layers):
            tree_masks[k] = _pine_mask(rng, ridges[k], (w, h), k - first)
    lights = _city(rng, ridges, (w, h), horizon, plan, tree_masks) if plan.city else None
    rows = np.arange(h, dtype=np.intp)[:, None]
    layer = np.full((h, w), -1, np.int8)
    for k in range(n_layers):
        mask = rows >= np.ceil(ridges[k]).astype(np.intp)[None, :]
        if k in tree_masks:
            mask |= tree_masks[k]
        if plan.water and not (plan.lighthouse and k == n_layers - 1):
            mask[horizon:] = False
        layer[mask] = k
    land = layer >= 0
    open_rows = np.nonzero(~land.all(axis=1))[0]
    sky_rows = horizon if plan.water else (int(open_rows[-1]) + 1 if len(open_rows) else 0)
    land_rows = np.nonzero(land.any(axis=1))[0]

    img = np.empty((h, w, 3), _F)
    if sky_rows:
        img[:sky_rows] = _paint_sky(rng, plan, sky, w, sky_rows, horizon, body_x, body_y, radius)

    # --- terrain colours (only on the rows that hold land) --------------------------------
    if len(land_rows):
        t0, t1 = int(land_rows[0]), int(land_rows[-1]) + 1
        band = layer[t0:t1]
        lk = np.maximum(band, 0).astype(np.intp)
        yb = np.arange(t0, t1, dtype=_F)[:, None]
        depth_px = np.maximum(yb - ridges[lk, cols], 0)
        soft = _box(ridges, w // 24)
        depth_s = np.maximum(yb - soft[lk, cols], 0)
        # lit and shaded faces: the slope of the ridge, sampled along a diagonal so the
        # boundary between faces runs down and away from each peak
        towards = 1 if body_x > w / 2 else -1
        if plan.dunes:
            slope = _box(np.gradient(ridges, axis=1), w // 64)
        else:  # broad facets from the big shapes only
            slope = np.gradient(_box(_box(ridges, w // 12), w // 12), axis=1) * 1.6
        shift = (depth_s * (0.9 if plan.dunes else 0.6) * -towards).astype(np.intp)
        face = np.tanh(-slope * towards * 1.4)[lk, np.clip(cols + shift, 0, w - 1)]
        fade = np.exp(-depth_s / (h * (0.12 if plan.dunes else 0.14)))
        strength = 0.32 if plan.time in ("day", "alien", "dawn") else 0.22
        shade = 1 + strength * face * fade
        col = colours[lk] * sky.light
        col = col * shade[..., None] + np.maximum(1 - shade, 0)[..., None] * (sky.zenith * 0.5)
        texture = _fbm2(rng, (w, t1 - t0), (max(2, (t1 - t0) * 8 // h), 4), octaves=3)
        rough = np.where(plan.lighthouse & (lk == n_layers - 1), 0.4, 0.12).astype(_F)
        col *= (1 + rough * (texture - 0.5))[..., None]
        snowy = plan.scene == "snow" or (plan.scene == "mountain" and plan.snowcaps)
        if snowy:
            cap_depth = h * (0.04 + 0.05 * _smooth(rng, (1, 6), (w, 1))[0])
            cap = np.clip((cap_depth[cols] - depth_px) / 3, 0, 1) * (lk < n_layers - 1)
            if plan.scene != "snow":  # only the peaks
                peaks = np.clip((ridges.mean(axis=1, keepdims=True) - ridges) / (h * 0.03), 0, 1)
                cap *= peaks[lk, cols]
            snow_col = _rgb(246, 250, 255) * (sky.light * 0.6 + 0.4) * shade[..., None]
            snow_col += np.maximum(1 - shade, 0)[..., None] * _rgb(54, 72, 120)
            col = _mix(col, snow_col, (cap * 0.9)[..., None])
        if tree_masks:
            if "autumn" in plan.flags:
                tree_col = _rgb(168, 74, 30)
            elif plan.scene == "snow":
                tree_col = _rgb(24, 64, 56)
            else:
                tree_col = colours[-1] * _rgb(0.5, 0.75, 0.6)
            first = n_layers - len(tree_masks)
            for k, tm in tree_masks.items():
                sel = tm[t0:t1] & (band == k) & (depth_px < h * 0.2)
                mix_k = 0.55 + 0.45 * (k - first) / max(len(tree_masks) - 1, 1)
                tone = (0.95 + 0.1 * texture[sel])[:, None]
                col[sel] = _mix(colours[k], tree_col, mix_k) * sky.light * tone
        # rim light on ridges under the sun's glow
        rdist = np.sqrt((xs - body_x) ** 2 + ((ridges - body_y) * 1.2) ** 2)
        rglow = np.exp(-((rdist / (short * 0.5)) ** 2)) * sky.glow_strength
        rim = np.exp(-depth_px / 1.2) * rglow[lk, cols] * 0.7
        col = _mix(col, sky.glow, rim[..., None])
        # haze with distance, mist in the valleys
        rel = (lk / max(n_layers - 1, 1)).astype(_F)
        haze = 0.78 * (1 - rel) ** 1.5
        mist = np.minimum(depth_s / (h * 0.13), 1) ** 1.3 * (0.5 * (1 - rel * 0.8))
        if plan.lighthouse:
            foot = np.minimum(depth_s / (h * 0.5), 1) * 0.3
            mist = np.where(lk == n_layers - 1, foot, mist)
        haze = haze + (1 - haze) * mist
        col = _mix(col, sky.haze, haze[..., None])
        if lights is not None:
            col = _mix(col, lights[0][t0:t1], lights[1][t0:t1, :, None])
        img[t0:t1] = np.where((band >= 0)[..., None], col, img[t0:t1])

    # --- water ---------------------------------------------------------------------------
    if plan.water and horizon < h:
        mirror = _without_body(img, horizon, body_y, radius)
        _paint_water(rng, img, mirror, land, sky, horizon, body_x, radius)
    if plan.lighthouse:
        _lighthouse(rng, img, ridges[-1], horizon, plan, sky)
    if plan.snow_fall:
        count = int(w * h / 450)
        flakes = np.zeros((h, w), np.uint8)
        flakes[rng.integers(0, h, count), rng.integers(0, w, count)] = rng.integers(90, 256, count)
        blur = Image.fromarray(flakes).filter(ImageFilter.GaussianBlur(0.7 * max(1, short / 512)))
        alpha = np.asarray(blur, _F)
        where = np.nonzero(alpha > 2)
        a = np.minimum(alpha[where] / 255 * 3.2, 0.9)[:, None]
        img[where] += a * (_rgb(250, 252, 255) - img[where])

    # --- finish: vignette and dither -----------------------------------------------------
    img *= _vignette(w, h)
    img += rng.random((h, w, 1), dtype=_F) * 3.0 - 1.5
    np.clip(img, 0, 255, out=img)
    return Image.fromarray(img.astype(np.uint8), "RGB")


@functools.lru_cache(maxsize=16)
def _vignette(w: int, h: int) -> np.ndarray:
    vx = (np.arange(w, dtype=_F)[None, :] / w - 0.5) * 2
    vy = (np.arange(h, dtype=_F)[:, None] / h - 0.45) * 2
    out = (1 - 0.2 * np.clip(vx * vx * 0.55 + vy * vy * 0.45, 0, 1.5))[..., None]
    out.setflags(write=False)
    return out


def _ridges(
    rng: np.random.Generator, plan: _Plan, w: int, h: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ridge line (y per column) and colour of each terrain layer, far to near."""
    far, near = TERRAIN[plan.scene]
    n_layers = 4 if plan.water else 5
    top = horizon - h * (0.16 if plan.water else 0.36)
    ridges = np.empty((n_layers, w), _F)
    colours = np.empty((n_layers, 3), _F)
    for k in range(n_layers):
        depth = k / max(n_layers - 1, 1)  # 0 far … 1 near
        if plan.water:
            base = top + (horizon - top) * (0.3 + 0.7 * depth)
            amp = h * (0.13 - 0.07 * depth)
        else:
            base = top + (horizon - top) * (0.2 + 0.8 * depth) ** 1.2
            amp = h * (0.2 - 0.1 * depth)
        if plan.dunes:
            profile = _dunes(rng, w, rng.uniform(1.2, 2.6) + k * 0.8)
            amp *= 0.5
        else:
            cells = int(rng.integers(2, 4)) + k
            profile = _fbm1(rng, w, cells, 6, ridged=0.55 - 0.35 * depth)
        ridges[k] = base - amp * (profile + 1) * 0.5
        colours[k] = _mix(far, near, depth**0.85)
    if plan.water:
        np.minimum(ridges, horizon - 1, out=ridges)
    if plan.lighthouse:
        left = rng.random() < 0.5
        edge = w * rng.uniform(0.36, 0.48)
        pos = np.arange(w, dtype=_F) if left else (w - 1 - np.arange(w, dtype=_F))
        t = np.clip(pos / edge, 0, 1)
        crest = horizon - h * rng.uniform(0.13, 0.18)
        cliff = crest + (h - crest) * np.clip((t - 0.7) / 0.3, 0, 1) ** 1.6 * 1.05
        rough = _fbm1(rng, w, 9, 4) * h * 0.012
        ridges[-1] = np.where(t < 1, cliff + rough + t * h * 0.03, h + 1)
        colours[-1] = colours[-1] * 1.5 + 10
    return ridges, colours


def _paint_sky(
    rng: np.random.Generator,
    plan: _Plan,
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
    ys = np.arange(h, dtype=_F)[:, None]
    xs = np.arange(w, dtype=_F)[None, :]
    img = np.broadcast_to(_sky_gradient(sky, h, horizon), (h, w, 3)).copy()
    dist = np.sqrt((xs - body_x) ** 2 + ((ys - body_y) * 1.2) ** 2)
    glow = np.exp(-((dist / (short * 0.5)) ** 2)) * sky.glow_strength
    glow += np.exp(-((dist / (short * 0.1)) ** 2)) * min(1.0, sky.glow_strength * 1.2)
    if sky.kind == "sun":
        glow += np.exp(-((dist / (radius * 2.2)) ** 2)) * 0.6
    np.clip(glow, 0, 1, out=glow)
    img += glow[..., None] * (sky.glow - img) * 0.85

    if plan.aurora:
        band = _fbm1(rng, w, 3, 3)
        centre = horizon * (0.32 + 0.14 * band)[None, :]
        thick = horizon * 0.24
        curtain = np.clip(1 - np.abs(ys - centre) / thick, 0, 1) ** 1.6
        streaks = 0.55 + 0.45 * np.sin(xs * (37.0 / w) * np.pi + band[None, :] * 5) ** 2
        alpha = (curtain * streaks)[..., None] * 0.6
        up = np.clip((centre - ys) / thick, 0, 1)[..., None]
        img += alpha * (_mix(_rgb(70, 255, 170), _rgb(150, 90, 255), up) - img)

    if plan.stars_visible:
        count = int(w * horizon / 650)
        sx = rng.integers(0, w, count)
        sy = (rng.random(count) ** 1.5 * horizon * 0.97).astype(np.intp)
        bright = rng.uniform(0.25, 1.0, count).astype(_F) ** 2
        big = rng.random(count) < 0.05
        keep = sy < h
        starmap = np.zeros((h, w), _F)
        starmap[sy[keep], sx[keep]] = bright[keep]
        for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
            sel = big & keep
            yy, xx = np.clip(sy[sel] + dy, 0, h - 1), np.clip(sx[sel] + dx, 0, w - 1)
            starmap[yy, xx] = np.maximum(starmap[yy, xx], bright[sel] * 0.4)
        starmap *= np.clip(1 - glow * 1.6, 0, 1)
        img += starmap[..., None] * (_rgb(250, 248, 255) - img)

    if plan.clouds > 0:
        noise = _fbm2(rng, (w, h), (max(2, 6 * h // max(horizon, 1)), 2), octaves=5)
        centre_y = rng.uniform(0.2, 0.5)
        band = np.clip(1 - np.abs(ys / max(horizon, 1) - centre_y) / 0.42, 0, 1) ** 0.8
        thresh = 0.62 - plan.clouds * 0.16
        dens = np.clip((noise - thresh) / 0.1, 0, 1) * band
        step = max(3, int(short) // 40)
        sx_dir = int(np.sign(body_x - w / 2)) * step
        sy_dir = step // 2 if body_y > horizon * 0.5 else -step // 2
        toward = _shifted(noise, sy_dir, sx_dir)
        lit = np.clip((toward - noise) * 5 + 0.5, 0, 1)
        near_body = np.clip(1 - dist / (short * 0.8), 0, 1)
        ccol = sky.cloud * (0.72 + 0.28 * lit)[..., None] + img * 0.15
        ccol = _mix(ccol, sky.glow, (near_body * lit * sky.glow_strength * 0.6)[..., None])
        img += (dens * 0.9)[..., None] * (ccol - img)

    # the sun or the moon, on a small patch around it
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
            crater = _smooth(rng, (5, 5), (x1 - x0, y1 - y0))
            face = sky.body * (0.84 + 0.16 * crater)[..., None]
        else:
            face = sky.body
        patch = img[y0:y1, x0:x1]
        patch += disk[..., None] * (face - patch)
    return img


def _without_body(img: np.ndarray, horizon: int, body_y: float, radius: float) -> np.ndarray:
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
    t = np.linspace(0, 1, y1 - y0, dtype=_F)[:, None, None]
    src[y0:y1] = src[above][None] * (1 - t) + src[below][None] * t
    return src


def _paint_water(
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
    xs = np.arange(w, dtype=_F)[None, :]
    dy = np.arange(rows, dtype=_F)[:, None]
    persp = (dy + 1) / rows
    waves = _fbm2(rng, (w, rows), (max(4, rows // 6), 3), octaves=3)
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


def _pine_mask(
    rng: np.random.Generator, ridge: np.ndarray, size: tuple[int, int], tier: int
) -> np.ndarray:
    """Boolean (h, w) mask of pine silhouettes standing on ``ridge``; bigger for nearer tiers."""
    w, h = size
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    scale = h * (0.04, 0.07, 0.13)[min(tier, 2)]
    spacing = max(2.0, scale * (0.3, 0.3, 0.42)[min(tier, 2)])
    x = float(rng.uniform(0, spacing))
    while x < w:
        xi = int(min(max(x, 0), w - 1))
        base = float(ridge[xi]) + scale * 0.12
        if base < h - 1 and rng.random() < 0.82:
            height = scale * float(rng.uniform(0.55, 1.25))
            half = height * 0.21
            tiers = 3 + int(height > 18) + int(height > 40)
            for t in range(tiers):
                y_top = base - height + height * (t / tiers) * 0.72
                y_bot = base - height * (1 - (t + 1.35) / (tiers + 1)) * 0.92
                width = half * (0.4 + 0.8 * (t + 1) / tiers)
                draw.polygon([(x, y_top), (x - width, y_bot), (x + width, y_bot)], fill=255)
            trunk = max(0.6, half * 0.1)
            draw.rectangle([x - trunk, base - height * 0.2, x + trunk, base + 2], fill=255)
        x += spacing * float(rng.uniform(0.6, 1.5))
    return np.asarray(canvas) > 127


def _city(
    rng: np.random.Generator,
    ridges: np.ndarray,
    size: tuple[int, int],
    horizon: int,
    plan: _Plan,
    trees: dict[int, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Turn the two nearest layers into skylines; returns (window colours, window alpha)."""
    w, h = size
    n = ridges.shape[0]
    lights = np.zeros((h, w, 3), _F)
    alpha = np.zeros((h, w), _F)
    night = plan.time in ("night", "neon", "dusk")
    palette = np.stack(
        [_rgb(255, 80, 200), _rgb(80, 230, 255), _rgb(255, 214, 130), _rgb(190, 120, 255)]
        if plan.time == "neon"
        else [_rgb(255, 214, 140), _rgb(255, 236, 190), _rgb(210, 226, 255)]
    )
    ground = horizon if plan.water else int(h * 0.9)
    table = rng.random(4096, dtype=_F)  # per-window coin flips and colours
    for tier, k in enumerate((n - 2, n - 1)):
        canvas = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(canvas)
        # which building owns each column: its left edge, right edge, top, lit share, id
        x0s, x1s = np.full(w, -1e9, _F), np.full(w, -1e9, _F)
        tops, shares = np.full(w, 4.0 * h, _F), np.zeros(w, _F)
        ids = np.zeros(w, np.int64)
        x = float(rng.uniform(-20, 0))
        tall = h * (0.3 if tier == 0 else 0.42)
        step_x, step_y = max(3, w // (110 - 25 * tier)), max(4, h // (80 - 20 * tier))
        number = 0
        while x < w:
            bw = float(rng.uniform(0.04, 0.1) * w * (0.7 + 0.5 * tier))
            bh = float(tall * rng.uniform(0.25, 1.0) ** 1.3)
            top = ground - bh
            draw.rectangle([x, top, x + bw, h if not plan.water else ground], fill=255)
            if rng.random() < 0.25:
                draw.rectangle([x + bw * 0.45, top - bh * 0.12, x + bw * 0.55, top], fill=255)
            span = slice(max(0, int(np.ceil(x))), max(0, min(w, int(x + bw) + 1)))
            x0s[span], x1s[span], tops[span] = x, x + bw, top
            shares[span] = rng.random() * 0.45 + 0.2
            number += 1
            ids[span] = number
            x += bw + float(rng.uniform(-0.3, 0.3) * bw)
        building = np.asarray(canvas) > 127
        trees[k] = building
        ridges[k] = h + 1
        if not night:
            continue
        y0 = int(max(0, np.floor(tops.min())))
        if y0 >= ground:
            continue
        ys = np.arange(y0, ground, dtype=_F)[:, None]
        cols = np.arange(w, dtype=_F)[None, :]
        rx = cols - x0s - step_x * 0.6
        ry = ys - tops - step_y * 0.7
        cx, cy = np.floor(rx / step_x), np.floor(ry / step_y)
        inside = (
            (rx >= 0)
            & (rx - cx * step_x <= step_x * 0.4)
            & (x0s + step_x * 0.6 + cx * step_x < x1s - step_x * 0.4)
            & (ry >= 0)
            & (ry - cy * step_y <= step_y * 0.35)
            & (ys < ground - 2)
        )
        cell = (
            (cx.astype(np.int64) * 73856093) ^ (cy.astype(np.int64) * 19349663) ^ (ids * 83492791)
        )
        coin = table[cell % len(table)]
        lit = inside & (coin < shares) & building[y0:ground]
        colour = palette[(cell // 7 % len(palette)).astype(np.intp)]
        band = lights[y0:ground]
        band[lit] = colour[lit]
        alpha[y0:ground] = np.maximum(alpha[y0:ground], lit * (0.75 + 0.25 * tier))
    if plan.time == "neon":
        blur = Image.fromarray((alpha * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(3))
        alpha = np.clip(alpha + np.asarray(blur, _F) / 255 * 0.7, 0, 1)
    return lights, alpha


def _lighthouse(
    rng: np.random.Generator,
    img: np.ndarray,
    ridge: np.ndarray,
    horizon: int,
    plan: _Plan,
    sky: Sky,
) -> None:
    """Paint a striped lighthouse (and its beam when dark) on the headland ``ridge``, in place."""
    h, w = img.shape[:2]
    land = np.nonzero(ridge < h)[0]
    if len(land) == 0:
        return
    left = land[0] == 0
    span = land[-1] - land[0]
    x = float(land[0] + span * 0.42) if left else float(land[-1] - span * 0.42)
    base = float(ridge[int(x)]) + 3
    height = h * rng.uniform(0.2, 0.26)
    top = base - height
    bw, tw = height * 0.11, height * 0.07
    light = sky.light * 0.75 + 0.25

    def tone(rgb: tuple[int, int, int], k: float = 1.0) -> tuple[int, int, int, int]:
        c = np.clip(_rgb(*rgb) * light * k, 0, 255)
        return (int(c[0]), int(c[1]), int(c[2]), 255)

    layer = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    lit_side = 1 if sky.kind == "moon" else (-1 if left else 1)
    bands = 5
    tower_top = base - height * 0.8
    for i in range(bands):
        y0 = base - (base - tower_top) * i / bands
        y1 = base - (base - tower_top) * (i + 1) / bands
        hw0 = bw + (tw - bw) * i / bands
        hw1 = bw + (tw - bw) * (i + 1) / bands
        rgb = (196, 44, 44) if i % 2 else (240, 236, 226)
        for side, k in ((lit_side, 1.0), (-lit_side, 0.68)):
            draw.polygon(
                [(x, y0), (x + side * hw0, y0), (x + side * hw1, y1), (x, y1)], fill=tone(rgb, k)
            )
    lamp_top = base - height * 0.92
    dark = tone((44, 44, 52))
    draw.rectangle([x - tw * 1.4, tower_top - 1, x + tw * 1.4, tower_top + 2], fill=dark)
    lit = plan.time in ("dusk", "night", "neon", "dawn")
    lamp = (255, 240, 180, 255) if lit else tone((200, 214, 214))
    draw.rectangle([x - tw * 0.85, lamp_top, x + tw * 0.85, tower_top - 1], fill=lamp)
    draw.polygon(
        [(x - tw * 1.1, lamp_top), (x + tw * 1.1, lamp_top), (x, top)], fill=tone((196, 44, 44))
    )
    box = layer.getbbox()
    if box:
        x0, y0, x1, y1 = box
        arr = np.asarray(layer.crop(box), _F)
        a = arr[..., 3:] / 255
        patch = img[y0:y1, x0:x1]
        patch += a * (arr[..., :3] - patch)
    if lit:
        cy = (tower_top + lamp_top) / 2
        beam = Image.new("L", (w, h), 0)
        bdraw = ImageDraw.Draw(beam)
        direction = 1 if left else -1
        spread = h * rng.uniform(0.04, 0.07)
        reach = x + direction * w * 1.2
        bdraw.polygon(
            [(x, cy - 1), (reach, cy - spread * 1.8), (reach, cy + spread * 0.5)], fill=150
        )
        bdraw.ellipse([x - tw * 2.5, cy - tw * 2.5, x + tw * 2.5, cy + tw * 2.5], fill=200)
        blur = max(2.0, h / 80)
        box = beam.getbbox()
        if box:
            m = int(blur * 3) + 1
            x0, y0 = max(0, box[0] - m), max(0, box[1] - m)
            x1, y1 = min(w, box[2] + m), min(h, box[3] + m)
            crop = beam.crop((x0, y0, x1, y1)).filter(ImageFilter.GaussianBlur(blur))
            glow = np.asarray(crop, _F)[..., None] / 255 * 0.9
            patch = img[y0:y1, x0:x1]
            patch += glow * (_rgb(255, 242, 200) - patch)


# ------------------------------------------------------------------------------ grids
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


def split_grid(grid: Image.Image) -> list[Image.Image]:
    """The four cells of a 2×2 ``grid`` (inverse of :func:`make_grid`), in U1–U4 order."""
    w, h = grid.width // 2, grid.height // 2
    return [
        grid.crop(((i % 2) * w, (i // 2) * h, (i % 2 + 1) * w, (i // 2 + 1) * h)) for i in range(4)
    ]


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
    arr = np.asarray(src, _F)
    if strength == 0:
        return src.copy()
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5A17])
    # warp: a smooth displacement field
    amp = strength * 0.05 * min(w, h)
    cells = (3 + int(rng.integers(0, 3)), 3 + int(rng.integers(0, 3)))
    dx = (_smooth(rng, cells, (w, h)) - 0.5) * 2 * amp
    dy = (_smooth(rng, cells, (w, h)) - 0.5) * 2 * amp * 0.6
    ys, xs = np.mgrid[0:h, 0:w].astype(_F)
    out = _remap(arr, xs + dx, ys + dy)
    # colour: a global hue turn plus smooth per-channel gains
    angle = float(rng.uniform(-1, 1)) * strength * 0.6
    cos, sin = np.cos(angle), np.sin(angle)
    yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], _F)
    rot = np.array([[1, 0, 0], [0, cos, -sin], [0, sin, cos]], _F)
    out = out @ (np.linalg.inv(yiq) @ rot @ yiq).T.astype(_F)
    for c in range(3):
        gain = 1 + (_smooth(rng, (4, 4), (w, h)) - 0.5) * strength * 0.7
        out[..., c] *= gain
    # details: sharpen some regions, soften others
    blurred = np.asarray(src.filter(ImageFilter.GaussianBlur(max(1.0, min(w, h) / 200))), _F)
    blurred = _remap(blurred, xs + dx, ys + dy) @ (np.linalg.inv(yiq) @ rot @ yiq).T.astype(_F)
    detail = (_smooth(rng, (6, 6), (w, h)) - 0.5)[..., None] * 4 * strength
    out = out + (out - blurred) * detail
    out += (rng.random((h, w, 1), dtype=_F) - 0.5) * 6 * strength
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
    hard = np.asarray(_as_l(mask)) > 127
    if not hard.any():
        return src.copy()
    arr = np.asarray(src, _F)
    fresh = np.asarray(render(prompt, seed, src.size), _F)
    sel_old, sel_new = arr[hard], fresh[hard]
    matched = (fresh - sel_new.mean(0)) / (sel_new.std(0) + 1.0) * (sel_old.std(0) + 1.0)
    matched += sel_old.mean(0)
    new = _mix(fresh, matched, 0.45)
    # feather: weight 0 at the mask's edge rising to 1 a little way inside
    radius = max(2.0, min(src.size) / 40)
    soft = Image.fromarray(hard.astype(np.uint8) * 255).filter(ImageFilter.GaussianBlur(radius))
    weight = np.clip((np.asarray(soft, _F) / 255 - 0.5) * 2.5, 0, 1) ** 0.8
    weight = np.maximum(weight, 0.02)  # every masked pixel moves at least a little
    weight = (weight * hard)[..., None]
    out = np.clip(_mix(arr, new, weight), 0, 255).astype(np.uint8)
    result = np.asarray(src).copy()
    result[hard] = out[hard]
    return Image.fromarray(result, "RGB")


# ------------------------------------------------------------------------------ masks
def _as_l(image: Image.Image) -> Image.Image:
    """Grayscale, with any transparency composited over black (transparent = keep)."""
    if image.mode == "L":
        return image
    if image.mode in ("1", "I", "I;16", "F"):
        return image.convert("L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = np.asarray(image.convert("RGBA"), _F)
        lum = rgba[..., 0] * 0.299 + rgba[..., 1] * 0.587 + rgba[..., 2] * 0.114
        return Image.fromarray(np.clip(lum * rgba[..., 3] / 255 + 0.5, 0, 255).astype(np.uint8))
    return image.convert("L")


def _open_bytes(data: bytes, what: str) -> Image.Image:
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidMask(f"{what} is not an image (PNG, WebP or JPEG expected)") from exc
    return im


def _array_to_l(arr: np.ndarray) -> Image.Image:
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.size == 0:
        raise InvalidMask(
            f"a mask array must be 2-D (h, w) or 3-D (h, w, 3|4), not shape {tuple(a.shape)}"
        )
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        top = float(np.nanmax(a)) if a.size else 0.0
        a = np.nan_to_num(a) * (255.0 if top <= 1.0 else 1.0)
        a = np.clip(a, 0, 255).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        if a.max() <= 1 and a.min() >= 0 and a.ndim == 2:
            a = a * 255  # 0/1 integer arrays are booleans
        a = np.clip(a, 0, 255).astype(np.uint8)
    else:
        raise InvalidMask(f"a mask array must hold numbers or booleans, not {a.dtype}")
    if a.ndim == 2:
        return Image.fromarray(a)
    return _as_l(Image.fromarray(np.ascontiguousarray(a), "RGB" if a.shape[2] == 3 else "RGBA"))


def _mask_image(mask: object) -> Image.Image:
    if isinstance(mask, Image.Image):
        return _as_l(mask)
    if isinstance(mask, np.ndarray):
        return _array_to_l(mask)
    if isinstance(mask, (bytes, bytearray, memoryview)):
        return _as_l(_open_bytes(bytes(mask), "the mask data"))
    if isinstance(mask, str) and mask.startswith("data:"):
        return decode_mask(mask)
    if isinstance(mask, (str, Path)):
        path = Path(mask).expanduser()
        if not path.is_file():
            raise InvalidMask(f"mask file {str(mask)!r} does not exist")
        return _as_l(_open_bytes(path.read_bytes(), f"mask file {str(mask)!r}"))
    raise InvalidMask(
        f"mask must be a PIL image, a numpy array, PNG bytes or a path, not {type(mask).__name__}"
    )


def load_mask(mask: object, size: tuple[int, int]) -> bytes:
    """A black/white 8-bit grayscale PNG of exactly ``size`` from any mask-like object.

    White (255) marks the region to redraw, black (0) what to keep; nothing else appears.

    Args:
        mask: a PIL image (transparency counts as black), a numpy array — 2-D bool, uint8
            (> 127 is white), float (> 0.5 is white; values above 1 are read as 0–255), integer
            arrays holding only 0 and 1 are booleans, or 3-D RGB/RGBA —, PNG/WebP/JPEG bytes,
            a ``data:image/...;base64,`` string, or a path (``str`` or ``pathlib.Path``).
        size: ``(width, height)`` of the image the mask is for.

    Raises:
        InvalidMask: not an image, a missing file, the wrong size, or an all-black mask.
    """
    im = _mask_image(mask)
    size = (int(size[0]), int(size[1]))
    if im.size != size:
        raise InvalidMask(
            f"mask is {im.width}×{im.height} but the image is {size[0]}×{size[1]}; "
            "draw the mask at the image's size"
        )
    binary = (np.asarray(im) > 127).astype(np.uint8) * 255
    if not binary.any():
        raise InvalidMask("the mask is empty: paint the region to redraw in white")
    return to_png(Image.fromarray(binary, "L"))


_DATA_URI = re.compile(r"^\s*data:[\w/+.-]*(?:;[\w=.-]+)*;base64,", re.IGNORECASE)


def decode_mask(data: str | bytes) -> Image.Image:
    """A mask sent over HTTP as an ``"L"`` image (values kept; > 127 means redraw).

    Args:
        data: base64 text, with or without a ``data:image/...;base64,`` prefix, of a PNG or
            WebP (JPEG also works); or the raw image bytes (or base64 as bytes).

    Raises:
        InvalidMask: the data is not base64 of an image, nor an image.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        try:
            return _as_l(_open_bytes(raw, "the mask data"))
        except InvalidMask:
            try:
                data = raw.decode("ascii")
            except UnicodeDecodeError:
                raise InvalidMask("the mask data is not an image") from None
    if not isinstance(data, str):
        raise InvalidMask(f"a mask must be base64 text or bytes, not {type(data).__name__}")
    text = _DATA_URI.sub("", data, count=1)
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:
            raw = base64.urlsafe_b64decode(text)
        except (binascii.Error, ValueError):
            raise InvalidMask("the mask is not valid base64") from None
    if not raw:
        raise InvalidMask("the mask is empty data")
    return _as_l(_open_bytes(raw, "the mask data"))


# -------------------------------------------------------------------------- PNG bytes
_PNG_SIG = b"\x89PNG\r\n\x1a\n"


def to_png(
    image: Image.Image, text: Mapping[str, str] | None = None, *, compress_level: int = 6
) -> bytes:
    """``image`` as PNG bytes, with ``text`` (default none) as tEXt/iTXt chunks.

    Values that are not Latin-1 go into iTXt (UTF-8), the rest into tEXt. ``compress_level``
    is zlib's 0–9 (default 6; 1 is about four times faster and a quarter bigger).
    """
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_text(str(key), str(value))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info, compress_level=compress_level)
    return buf.getvalue()


def _chunks(data: bytes):
    """Yield ``(type, payload, start, end)`` for each chunk of PNG ``data``."""
    pos = len(_PNG_SIG)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return
        yield ctype, data[pos + 8 : pos + 8 + length], pos, end
        pos = end


def _text_keyword(chunk_type: bytes, payload: bytes) -> str | None:
    if chunk_type not in (b"tEXt", b"zTXt", b"iTXt"):
        return None
    return payload.split(b"\0", 1)[0].decode("latin-1")


def _text_chunk(key: str, value: str) -> bytes:
    keyword = key.encode("latin-1", "replace")[:79] or b"?"
    try:
        ctype, payload = b"tEXt", keyword + b"\0" + value.encode("latin-1")
    except UnicodeEncodeError:
        ctype, payload = b"iTXt", keyword + b"\0\0\0\0\0" + value.encode("utf-8")
    crc = zlib.crc32(ctype + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def png_with_text(data: bytes, text: Mapping[str, str]) -> bytes:
    """PNG ``data`` with ``text`` chunks added before IEND, pixels untouched.

    A chunk already carrying one of the keys is replaced. Data that is not a PNG is returned
    unchanged.
    """
    if not data.startswith(_PNG_SIG) or not text:
        return data
    keys = {str(k) for k in text}
    out = [_PNG_SIG]
    ended = False
    for ctype, payload, start, end in _chunks(data):
        if _text_keyword(ctype, payload) in keys:
            continue
        if ctype == b"IEND":
            out.extend(_text_chunk(str(k), str(v)) for k, v in text.items())
            ended = True
        out.append(data[start:end])
    if not ended:
        logger.debug("png_with_text: no IEND chunk; data returned unchanged")
        return data
    return b"".join(out)


def read_png_text(data: bytes) -> dict[str, str]:
    """The tEXt, zTXt and iTXt chunks of PNG ``data`` as a dict (empty for other data)."""
    if not data.startswith(_PNG_SIG):
        return {}
    found: dict[str, str] = {}
    for ctype, payload, _, _ in _chunks(data):
        try:
            if ctype == b"tEXt":
                key, _, value = payload.partition(b"\0")
                found[key.decode("latin-1")] = value.decode("latin-1")
            elif ctype == b"zTXt":
                key, _, rest = payload.partition(b"\0")
                found[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
            elif ctype == b"iTXt":
                key, _, rest = payload.partition(b"\0")
                compressed, _method = rest[0], rest[1]
                _lang, _, rest = rest[2:].partition(b"\0")
                _tkey, _, value = rest.partition(b"\0")
                if compressed:
                    value = zlib.decompress(value)
                found[key.decode("latin-1")] = value.decode("utf-8")
        except (zlib.error, UnicodeDecodeError, IndexError):
            logger.debug("read_png_text: skipped a malformed %s chunk", ctype)
    return found


def thumbnail_png(data: bytes, size: int = 512) -> bytes:
    """A PNG thumbnail of image ``data`` whose long side is at most ``size`` (default 512).

    The aspect ratio is kept; a PNG that is already small enough is returned as is.

    Raises:
        InvalidRequest: ``data`` is not an image.
    """
    try:
        im = Image.open(io.BytesIO(data))
        if im.format == "PNG" and max(im.size) <= size:
            return data
        im.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidRequest("cannot make a thumbnail: the data is not an image") from exc
    if im.mode not in ("RGB", "RGBA", "L", "LA"):
        im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    return to_png(im)


def image_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of image ``data`` (reads the header only).

    Raises:
        InvalidRequest: ``data`` is not an image.
    """
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidRequest("the data is not an image") from exc
