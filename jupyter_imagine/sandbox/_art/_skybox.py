"""The pictures of the Blockade Labs sandbox: seamless 360° equirectangular skyboxes.

A skybox is a 2:1 panorama: column ``x`` is longitude ``φ = 2π (x + ½) / W``, row ``y`` is
elevation ``θ = π (½ − (y + ½) / H)`` (zenith at the top, nadir at the bottom, the horizon in the
middle). Everything that varies with longitude is a function of ``φ`` with period ``2π`` — ridge
profiles are periodic noise, clouds and the ground are textured through their *projection* on a
plane (``d·cos φ, d·sin φ``), stars are directions on the sphere — so the left and right edges meet
without a seam. Filters that look at neighbours pad the picture with its own wrapped columns.

The scene follows :func:`~._landscape.render`'s vocabulary: words of the prompt (and of
the style's name) pick the time of day (sky palette, sun or moon) and the scene (mountains, forest,
snow, desert, ocean, city, alien). Around the viewer: a sky with glow, sun/moon, stars, aurora
and perspective clouds on a cloud plane; four or five rings of ridges at growing distances with
lit and shaded faces, snow caps, haze and pines; a city ring with lit windows; and below the
horizon either ground with a projected texture or water that mirrors the sky with Fresnel
reflectance, ripples and a glitter path under the sun.

The geometry (ridges, sun azimuth, tree and building positions, cloud field) depends on the seed
only and the look on the prompt, so a remix — same seed, new prompt — keeps the composition.

:func:`panorama` also returns the **depth map** (distance to what each pixel sees, near = white,
log scale), exact by construction. :func:`cube_map` re-projects a panorama onto six cube faces.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# The scene vocabulary and palettes are shared with the flat renderer so that "a lighthouse at
# dusk" means the same sky for every provider.
from ._scene import hash32, prompt_words, scene_plan
from ._tables import SKIES, TERRAIN, Sky

__all__ = [
    "CUBE_FACES",
    "Panorama",
    "blend_init",
    "cube_map",
    "depth_to_image",
    "panorama",
    "style_words",
    "video_frames",
]

_F = np.float32
#: Cube-map face order in the strip: OpenGL/Unity order (right, left, up, down, front, back).
CUBE_FACES = ("+x", "-x", "+y", "-y", "+z", "-z")
#: Distances (in camera heights) the depth map spans: nearer is white, this far and beyond black.
DEPTH_FAR = 40000.0
_DEPTH_NEAR = 0.6


@dataclass(frozen=True)
class Panorama:
    """A rendered skybox: the RGB panorama and its depth (distance in camera heights)."""

    image: Image.Image
    distance: np.ndarray  # (H, W) float32

    def depth(self, size: tuple[int, int] | None = None) -> Image.Image:
        """The depth map as a grayscale image (near white, far black), at ``size`` (default:
        the panorama's)."""
        return depth_to_image(self.distance, size)


# ------------------------------------------------------------------------------- noise
def _catmull(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, t: np.ndarray):
    t2 = t * t
    return 0.5 * (
        2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (3 * (p1 - p2) + p3 - p0)
        * t2 * t
    )


def _loop1(
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
    total = np.zeros(n, np.float64)
    amp, norm = 1.0, 0.0
    for _ in range(octaves):
        knots = rng.uniform(-1, 1, cells)
        pos = t * cells
        i = np.floor(pos).astype(np.intp)
        f = pos - i
        v = _catmull(
            knots[(i - 1) % cells], knots[i % cells], knots[(i + 1) % cells],
            knots[(i + 2) % cells], f,
        )
        if ridged:
            v = (1 - ridged) * v + ridged * (1 - 2 * np.abs(v))
        total += amp * v
        norm += amp
        amp *= persistence
        cells *= 2
    return (total / norm).astype(_F)


def _loop2(
    rng: np.random.Generator, w: int, h: int, cells: int, rows: int, octaves: int = 4,
    persistence: float = 0.5,
) -> np.ndarray:
    """(h, w) smooth noise in about [0, 1], periodic along x (``cells`` features per turn)."""
    x = (np.arange(w, dtype=np.float64) + 0.5) / w
    y = (np.arange(h, dtype=np.float64) + 0.5) / h
    total = np.zeros((h, w), _F)
    amp, norm = 1.0, 0.0
    for _ in range(octaves):
        grid = rng.random((rows + 3, cells))
        pos = x * cells
        i = np.floor(pos).astype(np.intp)
        f = pos - i
        along = _catmull(
            grid[:, (i - 1) % cells], grid[:, i % cells], grid[:, (i + 1) % cells],
            grid[:, (i + 2) % cells], f[None, :],
        )  # (rows + 3, w)
        pos = y * rows + 1
        j = np.floor(pos).astype(np.intp)
        g = (pos - j)[:, None]
        v = _catmull(along[j - 1], along[j], along[j + 1], along[j + 2], g)
        total += amp * v.astype(_F)
        norm += amp
        amp *= persistence
        cells *= 2
        rows *= 2
    return np.clip(total / norm, 0, 1)


_PERM = np.random.default_rng(0x5B0C).permutation(256).astype(np.intp)
_PERM = np.concatenate([_PERM, _PERM])
_VALUES = np.random.default_rng(0xB10C).random(256).astype(_F)


def _lattice(u: np.ndarray, v: np.ndarray, salt: int) -> np.ndarray:
    """Value noise in [0, 1] at arbitrary points (quintic interpolation of a hashed lattice)."""
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = (u - iu).astype(_F), (v - iv).astype(_F)
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


def _plane_fbm(
    u: np.ndarray, v: np.ndarray, octaves: int, salt: int, footprint: np.ndarray | None = None
) -> np.ndarray:
    """Fractal value noise in [0, 1] at plane points; octaves finer than ``footprint`` (the
    size of one pixel in plane units) fade to their mean, so far-away texture does not alias."""
    total = np.zeros(u.shape, _F)
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


# ------------------------------------------------------------------------------ helpers
def _rgb(*values: float) -> np.ndarray:
    return np.array(values, dtype=_F)


def _mix(a, b, t):
    return a + (b - a) * t


def _unit(values: np.ndarray) -> np.ndarray:
    """``values`` rescaled to span exactly [0, 1]."""
    lo, hi = float(values.min()), float(values.max())
    return ((values - lo) / max(hi - lo, 1e-9)).astype(_F)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0, 1)
    return t * t * (3 - 2 * t)


def _wrap_resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D float array to ``size`` (w, h) bilinearly, wrapping around in x."""
    h, w = arr.shape
    tw, th = size
    x = (np.arange(tw, dtype=np.float64) + 0.5) * w / tw - 0.5
    y = np.clip((np.arange(th, dtype=np.float64) + 0.5) * h / th - 0.5, 0, h - 1)
    x0 = np.floor(x).astype(np.intp)
    fx = (x - x0).astype(_F)[None, :]
    y0 = np.minimum(np.floor(y).astype(np.intp), h - 2) if h > 1 else np.zeros(th, np.intp)
    fy = (y - y0).astype(_F)[:, None] if h > 1 else np.zeros((th, 1), _F)
    y1 = np.minimum(y0 + 1, h - 1)
    xa, xb = x0 % w, (x0 + 1) % w
    top = arr[y0][:, xa] * (1 - fx) + arr[y0][:, xb] * fx
    bottom = arr[y1][:, xa] * (1 - fx) + arr[y1][:, xb] * fx
    return (top * (1 - fy) + bottom * fy).astype(_F)


def _wrap_filter(image: Image.Image, flt: ImageFilter.Filter, pad: int) -> Image.Image:
    """Apply a neighbourhood filter as if the picture wrapped around left to right."""
    w, h = image.size
    wide = Image.new(image.mode, (w + 2 * pad, h))
    wide.paste(image, (pad, 0))
    wide.paste(image.crop((w - pad, 0, w, h)), (0, 0))
    wide.paste(image.crop((0, 0, pad, h)), (w + pad, 0))
    return wide.filter(flt).crop((pad, 0, pad + w, h))


def _draw_wrapped(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], w: int) -> None:
    """Draw a filled polygon, repeated one turn left or right where it crosses an edge."""
    xs = [p[0] for p in points]
    draw.polygon(points, fill=255)
    if min(xs) < 0:
        draw.polygon([(x + w, y) for x, y in points], fill=255)
    if max(xs) >= w:
        draw.polygon([(x - w, y) for x, y in points], fill=255)


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


def _treatment(style: str | None) -> str:
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


# ------------------------------------------------------------------------------ the scene
#: Two ground colours per scene, mixed in patches (neutral light).
_GROUND: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "mountain": (_rgb(92, 104, 70), _rgb(118, 112, 92)),
    "forest": (_rgb(46, 84, 38), _rgb(84, 104, 50)),
    "snow": (_rgb(222, 230, 244), _rgb(196, 208, 228)),
    "desert": (_rgb(222, 160, 96), _rgb(196, 126, 70)),
    "ocean": (_rgb(190, 170, 130), _rgb(160, 146, 112)),
    "city": (_rgb(48, 48, 58), _rgb(62, 60, 66)),
    "alien": (_rgb(120, 60, 130), _rgb(70, 110, 130)),
}

@dataclass
class _Geo:
    """What the seed decides: where things are."""

    sun_phi: float
    sun_t: float  # 0..1 within the palette's body height range
    layer_seeds: list[int]
    cloud_salt: int
    cloud_offset: tuple[float, float]
    presence: np.ndarray  # (layers, W) 0..1: where each ring of ridges rises


def panorama(
    prompt: str,
    seed: int,
    size: tuple[int, int] = (2048, 1024),
    *,
    style: str | None = None,
) -> Panorama:
    """A seamless 360° skybox for ``prompt``: deterministic in ``(prompt, seed, size, style)``.

    Args:
        prompt: words choose the time of day and the scene (see the module docstring).
        seed: places everything (any int; taken modulo 2**32). The same seed with another prompt
            keeps the composition.
        size: ``(width, height)``, default ``(2048, 1024)``; the width must be twice the height.
        style: a Blockade style name (default none): adds scene words and a finish
            (anime → cel shading, painting → painterly, watercolor → washes).

    Returns:
        A :class:`Panorama` (RGB image and distances).
    """
    w, h = int(size[0]), int(size[1])
    if w != 2 * h or h < 16:
        raise ValueError(f"a skybox is 2:1 and at least 32×16, not {w}×{h}")
    return _panorama(str(prompt), int(seed) & 0xFFFFFFFF, w, h, style or "")


@functools.lru_cache(maxsize=6)
def _panorama(prompt: str, seed: int, w: int, h: int, style: str) -> Panorama:
    """:func:`panorama`, memoised: a few recent skyboxes (about 14 MB each at 2048×1024) are
    kept process-wide, so identical requests to several sandboxes draw once. The result is
    shared: callers make new images from it and never change it."""
    words = f"{prompt} {style_words(style)}"
    plan_rng = np.random.default_rng([seed, hash32(sorted(prompt_words(words))), 7])
    plan = scene_plan(words, plan_rng)
    sky = SKIES[plan.time]
    geo_rng = np.random.default_rng([seed, 0xB1])
    n_layers = 4 if plan.water else 5
    geo = _Geo(
        sun_phi=float(geo_rng.uniform(0, 2 * np.pi)),
        sun_t=float(geo_rng.random()),
        layer_seeds=[int(s) for s in geo_rng.integers(0, 2**31, 8)],
        cloud_salt=int(geo_rng.integers(0, 256)),
        cloud_offset=(float(geo_rng.uniform(0, 200)), float(geo_rng.uniform(0, 200))),
        presence=np.stack(
            [_smoothstep(0.25, 0.7, _unit(_loop1(geo_rng, w, 3, 2))) for _ in range(n_layers)]
        ),
    )
    scene = _Scene(plan, sky, geo, w, h, n_layers)
    image, distance = scene.render(seed)
    image = _finish(image, distance, _treatment(style), seed)
    distance.setflags(write=False)
    return Panorama(image, distance)


class _Scene:
    def __init__(self, plan, sky: Sky, geo: _Geo, w: int, h: int, n_layers: int) -> None:
        self.plan, self.sky, self.geo = plan, sky, geo
        self.w, self.h, self.half = w, h, h // 2
        self.n_layers = n_layers
        self.phi = ((np.arange(w, dtype=np.float64) + 0.5) / w * 2 * np.pi).astype(_F)
        self.theta = ((0.5 - (np.arange(h, dtype=np.float64) + 0.5) / h) * np.pi).astype(_F)
        lo, hi = sky.body_height
        elevation = (lo + (hi - lo) * geo.sun_t) * 40.0
        if plan.water:
            elevation = max(elevation, 2.2)
        self.sun_theta = math.radians(elevation)
        self.sun_phi = geo.sun_phi
        self.sun_radius = math.radians(sky.body_size * 48)

    # --------------------------------------------------------------------------- geometry
    def angular_distance(self, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
        """Great-circle distance (radians) from each (θ, φ) to the sun or moon."""
        st, ct = math.sin(self.sun_theta), math.cos(self.sun_theta)
        cosd = np.sin(theta) * st + np.cos(theta) * ct * np.cos(phi - self.sun_phi)
        return np.arccos(np.clip(cosd, -1, 1)).astype(_F)

    def row_of(self, elevation: np.ndarray | float) -> np.ndarray | float:
        """Pixel row (float, top edge 0) of an elevation angle in radians."""
        return (0.5 - elevation / np.pi) * self.h

    # --------------------------------------------------------------------------- render
    def render(self, seed: int) -> tuple[Image.Image, np.ndarray]:
        w, h, half = self.w, self.h, self.half
        img = np.empty((h, w, 3), _F)
        distance = np.full((h, w), np.inf, _F)
        img[:half] = self.sky_rows()
        plain_sky = img[:half].copy()  # without the sun disk: what water reflects
        self.body(img)
        self.ground(img, distance)
        covered = self.terrain(img, distance)
        if self.plan.city:
            self.city(img, distance, covered)
        if self.plan.water:
            upper = np.where(covered[:half, :, None], img[:half], plain_sky)
            self.water(img, distance, upper, covered)
        if self.plan.snow_fall:
            self.snowfall(img)
        rng = np.random.default_rng([seed, 0xD17])
        img += rng.random((h, w, 1), dtype=_F) * 2.0 - 1.0
        np.clip(img, 0, 255, out=img)
        return Image.fromarray(img.astype(np.uint8), "RGB"), distance

    # ----------------------------------------------------------------------------- sky
    def sky_rows(self) -> np.ndarray:
        sky, plan = self.sky, self.plan
        half, w = self.half, self.w
        theta = self.theta[:half][:, None]
        phi = self.phi[None, :]
        e = np.clip(theta / (np.pi / 2), 0, 1)
        upper = _mix(sky.middle, sky.zenith, (_smoothstep(0.18, 1.0, e) ** 0.8)[..., None])
        col = _mix(upper, sky.horizon, (np.clip(1 - e / 0.22, 0, 1) ** 1.6)[..., None])
        img = np.broadcast_to(col, (half, w, 3)).astype(_F).copy()
        dist = self.angular_distance(theta, phi)
        # glow: a wide halo, a bright core, and a warm band along the horizon under the sun
        glow = np.exp(-((dist / 0.75) ** 2)) * sky.glow_strength * 0.8
        glow += np.exp(-((dist / 0.16) ** 2)) * min(1.0, sky.glow_strength * 1.1)
        dphi = np.angle(np.exp(1j * (phi - self.sun_phi))).astype(_F)
        band = np.exp(-((dphi / 1.3) ** 2)) * np.clip(1 - e / 0.3, 0, 1) ** 2
        glow += band * sky.glow_strength * 0.7
        if sky.kind == "sun":
            glow += np.exp(-((dist / (self.sun_radius * 2.5)) ** 2)) * 0.6
        np.clip(glow, 0, 1, out=glow)
        img += glow[..., None] * (sky.glow - img) * 0.85
        self.glow = glow
        if plan.stars_visible:
            self.stars(img, glow)
        dens = self.clouds(img, dist) if plan.clouds > 0 else np.zeros(glow.shape, _F)
        if plan.aurora:
            self.aurora(img, theta, phi, dens)
        return img

    def aurora(self, img: np.ndarray, theta: np.ndarray, phi: np.ndarray, clouds: np.ndarray
               ) -> None:
        rng = np.random.default_rng(self.geo.layer_seeds[6])
        w = self.w
        wave = (_unit(_loop1(rng, w, 4, 3)) - 0.5)[None, :]
        presence = _smoothstep(0.25, 0.65, _unit(_loop1(rng, w, 2, 2)))[None, :]
        lower = np.radians(16) + np.radians(14) * wave  # the bright lower edge
        height = np.radians(18) * (0.7 + 0.6 * _unit(_loop1(rng, w, 5, 2)))[None, :]
        above = theta - lower
        curtain = np.where(
            above < 0, np.exp(-((above / np.radians(1.5)) ** 2)), np.exp(-above / height)
        )
        rays = 0.35 + 0.65 * _unit(_loop1(rng, w, 90, 3, persistence=0.7))[None, :] ** 1.5
        alpha = curtain * rays * presence * 0.75 * (1 - 0.6 * clouds)
        alpha = np.clip(alpha, 0, 0.85)[..., None]
        up = np.clip(above / (height * 1.6), 0, 1)[..., None]
        img += alpha * (_mix(_rgb(80, 255, 160), _rgb(170, 80, 255), up) - img)

    def stars(self, img: np.ndarray, glow: np.ndarray) -> None:
        rng = np.random.default_rng(self.geo.layer_seeds[5])
        half, w = self.half, self.w
        count = int(w * half / 260)
        z = rng.random(count) ** 0.8  # sin(elevation), a little denser overhead
        theta = np.arcsin(z)
        phi = rng.uniform(0, 2 * np.pi, count)
        bright = rng.uniform(0.2, 1.0, count).astype(_F) ** 2.2
        xs = phi / (2 * np.pi) * w
        ys = np.clip(self.row_of(theta), 0, half - 1).astype(np.intp)
        stretch = np.minimum(1 / np.maximum(np.cos(theta), 1e-3), 12)
        starmap = np.zeros((half, w), _F)
        for step in range(12):
            sel = stretch > step
            if not sel.any():
                break
            xx = (xs[sel] + step - stretch[sel] / 2).astype(np.intp) % w
            np.maximum.at(starmap, (ys[sel], xx), bright[sel])
        starmap *= np.clip(1 - glow * 1.6, 0, 1)
        starmap *= _smoothstep(0.02, 0.25, self.theta[:half])[:, None]
        img += starmap[..., None] * (_rgb(250, 248, 255) - img)

    def clouds(self, img: np.ndarray, dist: np.ndarray) -> np.ndarray:
        """Clouds on a plane above the viewer, textured in plane coordinates (seamless)."""
        sky, plan, geo = self.sky, self.plan, self.geo
        half, w = self.half, self.w
        cw, ch = w // 2, half // 2
        theta = ((0.5 - (np.arange(ch) + 0.5) / (2 * ch)) * np.pi)[:, None]
        theta = np.maximum(theta, np.radians(0.6))
        phi = ((np.arange(cw) + 0.5) / cw * 2 * np.pi)[None, :]
        reach = 1 / np.tan(theta)  # distance to the cloud plane's point, in plane heights
        reach = np.minimum(reach, 30.0)
        scale = 0.55
        u = reach * np.cos(phi) * scale + geo.cloud_offset[0]
        v = reach * np.sin(phi) * scale + geo.cloud_offset[1]
        footprint = scale * (np.pi / ch) / np.sin(theta) ** 2 * np.ones_like(phi)
        footprint = np.maximum(footprint, reach * scale * (2 * np.pi / cw))
        noise = _plane_fbm(u, v, 6, geo.cloud_salt, footprint)
        sx, sy = math.cos(self.sun_phi) * 0.06, math.sin(self.sun_phi) * 0.06
        toward = _plane_fbm(u + sx, v + sy, 4, geo.cloud_salt, footprint)
        cover = plan.clouds * (0.45 if plan.aurora else 1.0)
        thresh = 0.6 - cover * 0.16
        dens = np.clip((noise - thresh) / 0.12, 0, 1)
        dens *= _smoothstep(np.radians(1.0), np.radians(6.0), theta)  # haze at the horizon
        lit = np.clip((noise - toward) * 9 + 0.55, 0, 1)
        dens = _wrap_resize(dens.astype(_F), (w, half))
        lit = _wrap_resize(lit.astype(_F), (w, half))
        near_sun = np.clip(1 - dist / 1.2, 0, 1)
        ccol = sky.cloud * (0.62 + 0.38 * lit)[..., None] + img * 0.18
        ccol = _mix(ccol, sky.glow, (near_sun * (0.3 + 0.7 * lit) * sky.glow_strength * 0.7)
                    [..., None])
        img += (dens * 0.92)[..., None] * (ccol - img)
        return dens

    def body(self, img: np.ndarray) -> None:
        """The sun or the moon disk (drawn before the terrain, which may hide it)."""
        sky, half, w = self.sky, self.half, self.w
        r = self.sun_radius
        row = self.row_of(self.sun_theta)
        pad_rows = int(r / np.pi * self.h) + 3
        y0, y1 = max(0, int(row) - pad_rows), min(half, int(row) + pad_rows + 1)
        spread = int(r / math.cos(self.sun_theta) / (2 * np.pi) * w) + 3
        cx = int(self.sun_phi / (2 * np.pi) * w)
        cols = np.arange(cx - spread, cx + spread + 1) % w
        theta = self.theta[y0:y1][:, None]
        phi = self.phi[cols][None, :]
        d = self.angular_distance(theta, phi)
        px = r / (np.pi / self.h)  # radius in pixels (rows)
        disk = np.clip((r - d) / r * px + 0.8, 0, 1)
        face = np.broadcast_to(sky.body, (*d.shape, 3)).copy()
        if sky.kind == "moon":
            rng = np.random.default_rng(self.geo.layer_seeds[7])
            crater = _loop2(rng, d.shape[1], d.shape[0], 4, 4, 3)
            face = face * (0.8 + 0.2 * crater)[..., None]
            if rng.random() < 0.5:  # a crescent: a shadow disk slightly off the moon
                off = r * rng.uniform(0.35, 0.6)
                st = math.sin(self.sun_theta + off * 0.3)
                ct = math.cos(self.sun_theta + off * 0.3)
                cosd = np.sin(theta) * st + np.cos(theta) * ct * np.cos(
                    phi - self.sun_phi - off / max(math.cos(self.sun_theta), 0.2)
                )
                d2 = np.arccos(np.clip(cosd, -1, 1))
                disk = disk * np.clip((d2 - r) / r * px + 0.8, 0.12, 1)
        patch = img[y0:y1][:, cols]
        patch += disk[..., None] * (face - patch)
        img[y0:y1, cols] = patch

    # ---------------------------------------------------------------------------- ground
    def ground(self, img: np.ndarray, distance: np.ndarray) -> None:
        """Everything below the horizon: textured ground seen through its plane projection.

        The texture is drawn at half resolution (it is smooth) and lit like a relief: the noise
        is sampled again a little towards the sun, and slopes facing it are brighter.
        """
        plan, sky = self.plan, self.sky
        half, w, h = self.half, self.w, self.h
        alpha_full = -self.theta[half:][:, None]  # depression angle
        distance[half:] = np.broadcast_to(1 / np.tan(alpha_full), (h - half, w))
        if plan.water:
            return  # painted by water()
        gw, gh = w // 2, (h - half) // 2
        alpha = ((np.arange(gh) + 0.5) / gh * (np.pi / 2))[:, None]
        phi = ((np.arange(gw) + 0.5) / gw * 2 * np.pi)[None, :]
        reach = 1 / np.tan(alpha)
        pix = (np.pi / (2 * gh)) / np.sin(alpha) ** 2 * np.ones_like(phi)  # plane units / pixel
        pix = np.maximum(pix, reach * (2 * np.pi / gw))
        x, y = reach * np.cos(phi), reach * np.sin(phi)
        salt = self.geo.cloud_salt + 101
        sun = (math.cos(self.sun_phi), math.sin(self.sun_phi))

        def field(freq: float, octaves: int, k: int, shift: float = 0.0) -> np.ndarray:
            return _plane_fbm(
                (x + sun[0] * shift) * freq, (y + sun[1] * shift) * freq, octaves, salt + k,
                pix * freq,
            )

        patches = field(0.05, 3, 11)
        medium = field(0.6, 5, 0)
        fine = field(4.0, 3, 5)
        if plan.dunes:  # wind ripples across the sand, bent by the dunes
            warp = field(0.3, 2, 7)
            keep = np.clip(1.5 - pix * 3.0 * 4.0, 0, 1)
            phase = (x * 0.8 + y * 0.6) * 4.0 * 2 * np.pi + warp * 14
            ripple = np.sin(phase) * keep
            lean = np.cos(phase) * keep  # the ripple's slope along the wind
            relief = lean * (sun[0] * 0.8 + sun[1] * 0.6) * 0.35
            relief += (medium - field(0.6, 5, 0, 0.08)) * 10
            tex = 0.5 + 0.06 * ripple + 0.9 * (medium - 0.5)
        else:
            relief = (medium - field(0.6, 5, 0, 0.08)) * 12
            relief += (fine - field(4.0, 3, 5, 0.012)) * 6
            tex = 0.5 + 1.1 * (medium - 0.5) + 0.6 * (fine - 0.5)
        a, b = _GROUND.get(plan.scene, (TERRAIN[plan.scene][1], TERRAIN[plan.scene][1]))
        col = _mix(a, b, np.clip((patches - 0.35) * 2.5, 0, 1)[..., None])
        light = sky.light * 0.75 + 0.25
        col = col * light * (0.65 + 0.7 * tex[..., None])
        col += sky.horizon * 0.06 + sky.zenith * 0.04  # skylight
        col *= (1 + np.clip(relief, -1, 1) * (0.28 + 0.2 * sky.glow_strength))[..., None]
        dphi = np.cos(phi - self.sun_phi)
        col *= (1 + 0.1 * dphi * sky.glow_strength)[..., None]
        haze = 1 - np.exp(-reach / 60.0)
        col = _mix(col, sky.haze * 0.8 + sky.horizon * 0.2, (haze**1.1)[..., None])
        col *= (0.8 + 0.2 * np.clip(1 - alpha / (np.pi / 2), 0, 1))[..., None]
        full = np.stack(
            [_wrap_resize(col[..., c].astype(_F), (w, h - half)) for c in range(3)], axis=-1
        )
        img[half:] = full

    # ---------------------------------------------------------------------------- terrain
    def ring_distance(self, k: int) -> float:
        """How far ring ``k`` (0 = farthest) stands, in camera heights."""
        depth = k / max(self.n_layers - 1, 1)
        if self.plan.water:
            return 3000.0 * (0.12**depth)
        return 2400.0 * (0.025**depth)

    def ridge_elevation(self, k: int) -> np.ndarray:
        """Elevation (radians) of ring ``k``'s ridge line, per column (periodic)."""
        plan, w = self.plan, self.w
        rng = np.random.default_rng(self.geo.layer_seeds[k % 5])
        depth = k / max(self.n_layers - 1, 1)
        if plan.water:
            base, amp, sharp = 0.2 + 0.6 * depth, 16.0 - 8.0 * depth, 1.4
        elif plan.scene == "desert":
            base, amp, sharp = 0.2 + 0.5 * depth, 6.0 - 2.0 * depth, 1.0
        elif plan.scene in ("forest", "city"):
            base, amp, sharp = 0.8 + 1.2 * depth, 22.0 - 15.0 * depth, 1.25
        else:
            base, amp, sharp = 0.8 + 1.2 * depth, 34.0 - 26.0 * depth, 1.3
        if plan.dunes:
            cycles = int(rng.integers(5, 9)) + 3 * k
            t = np.arange(w, dtype=_F) / w * cycles + 1.6 * _loop1(rng, w, 3, 3)
            frac = t - np.floor(t)
            crest = float(rng.uniform(0.62, 0.78))
            up = (frac / crest) ** 1.4
            down = ((1 - frac) / (1 - crest)) ** 0.7
            profile = np.where(frac < crest, up, down)
            profile = profile * (0.25 + 0.75 * _unit(_loop1(rng, w, 4, 2))) * 2 - 1
        else:
            cells = int(rng.integers(4, 7)) + 3 * k
            profile = _loop1(rng, w, cells, 8, ridged=0.7 - 0.4 * depth, persistence=0.52)
        shape = _unit(profile) ** sharp
        presence = self.geo.presence[k]
        if k == 0 and not plan.water:
            presence = 0.55 + 0.45 * presence  # a range all around, higher in places
        elevation = base + amp * shape * (0.3 + 0.7 * presence)
        elevation = _mix(-2.0, elevation, np.clip(presence * 2.2, 0, 1))
        return np.radians(elevation).astype(_F)

    def terrain(self, img: np.ndarray, distance: np.ndarray) -> np.ndarray:
        """Paint the rings of ridges far to near; returns the mask of covered pixels."""
        plan, sky = self.plan, self.sky
        w, h, half = self.w, self.h, self.half
        n = self.n_layers
        far, near = TERRAIN[plan.scene]
        covered = np.zeros((h, w), bool)
        rows = np.arange(h, dtype=_F)[:, None]
        trees_from = n - 2 if plan.trees else n
        n_paint = n - 1 if plan.city else n  # the nearest ring of a city is its buildings
        snowy = plan.scene == "snow" or (plan.scene == "mountain" and plan.snowcaps)
        strength = 0.42 if plan.time in ("day", "alien", "dawn") else 0.3
        tangent = np.sin(self.sun_phi - self.phi)  # the sun lies along increasing φ
        front = -np.cos(self.sun_phi - self.phi)  # the sun behind the viewer lights the fronts
        for k in range(n_paint):
            depth = k / max(n - 1, 1)
            ring = self.ring_distance(k)
            elev = self.ridge_elevation(k)
            top = self.row_of(elev)[None, :]
            base_row = half if plan.water else self.row_of(-math.atan(1 / ring))
            tree_room = h * 0.06 if k >= trees_from else 0
            y0 = int(max(0, np.floor(top.min() - tree_room)))
            y1 = int(min(h, math.ceil(base_row) + 1))
            if y0 >= y1:
                continue
            band_rows = rows[y0:y1]
            land = (band_rows >= top) & (band_rows < base_row)
            tree_mask = None
            if k >= trees_from:
                tree_mask = self.trees(elev, k - trees_from, y0, y1) & ~land
                tree_mask &= band_rows < base_row
            mask = land if tree_mask is None else land | tree_mask
            if not mask.any():
                continue
            below = np.clip(band_rows - top, 0, None)
            span = max(1.0, float(base_row - top.min()))
            # lit and shaded faces: the ridge's slope against the sun's azimuth, strongest
            # near the crest, plus rocky gullies running down the faces
            slope = np.gradient(np.concatenate([elev[-8:], elev, elev[:8]]))[8:-8]
            slope = _box_wrap(slope, max(3, w // 200)) * (w / (2 * np.pi))
            facing = np.tanh(-slope * tangent * 3.0)
            rng = np.random.default_rng(self.geo.layer_seeds[k % 5] + 11)
            streaks = _loop2(rng, w, y1 - y0, 90 + 40 * k, 3, 3)
            tex = _loop2(rng, w, y1 - y0, 40 + 24 * k, max(2, (y1 - y0) // 16), 4)
            # gullies run down and away from the crest: sample the streaks sideways with depth
            lean = np.sign(slope)[None, :] * below * 1.2
            cols = (np.arange(w)[None, :] + lean).astype(np.intp) % w
            gullies = np.take_along_axis(streaks, cols, axis=1)
            fade = np.exp(-below / (span * 0.6))
            shade = 1 + strength * facing[None, :] * fade + 0.1 * front[None, :]
            shade = shade * (0.9 + 0.2 * gullies) * (0.88 + 0.24 * tex)
            colour = _mix(far, near, depth**0.85)
            if plan.scene == "snow":  # rock under the snow
                colour = _mix(_rgb(120, 128, 146), _rgb(70, 74, 86), depth)
            col = colour * sky.light * shade[..., None]
            col += np.maximum(1 - shade, 0)[..., None] * sky.zenith * 0.35
            if snowy and k < n - 1:
                col = self.snow(col, elev, below, depth, (tex, gullies, slope), shade)
            if tree_mask is not None:
                tree_col = self.tree_colour(tex, facing, strength)
                col = np.where(tree_mask[..., None], tree_col, col)
                if "autumn" in plan.flags or plan.scene == "forest":
                    canopy = land & (below < span * 0.8)
                    canopy_col = _mix(colour * sky.light * shade[..., None], tree_col, 0.6)
                    col = np.where(canopy[..., None], canopy_col, col)
            # rim light where the ridge meets the glow, haze with distance, mist in the valleys
            rim = np.exp(-below / 1.5) * self.glow_at(elev)[None, :] * 0.75
            col = _mix(col, sky.glow, rim[..., None])
            haze = 0.62 * (1 - depth) ** 1.4
            mist = np.clip(below / span, 0, 1) ** 1.6 * 0.55 * (1 - depth * 0.6)
            haze = haze + (1 - haze) * mist
            col = _mix(col, sky.haze, haze[..., None])
            region = img[y0:y1]
            region[mask] = col[mask]
            dist_band = distance[y0:y1]
            dist_band[mask] = ring * (1 - 0.3 * np.clip(below / span, 0, 1))[mask]
            covered[y0:y1] |= mask
        return covered

    def snow(
        self,
        col: np.ndarray,
        elev: np.ndarray,
        below: np.ndarray,
        depth: float,
        texture: tuple[np.ndarray, np.ndarray, np.ndarray],
        shade: np.ndarray,
    ) -> np.ndarray:
        """``col`` with snow above a wavy line under the crest.

        ``texture`` is the band's (tex, gullies, slope).
        """
        plan, sky = self.plan, self.sky
        tex, gullies, slope = texture
        line = np.radians(3.5 + 4 * depth) + np.radians(3) * (tex - 0.5)
        above = elev[None, :] - below * (np.pi / self.h) - line
        cap = np.clip(above / np.radians(1.2), 0, 1)
        cap *= np.clip((gullies - 0.25) * 3, 0, 1)
        if plan.scene == "snow":  # snow everywhere but on the steepest faces
            steep = np.clip(np.abs(slope) * 1.2 - 0.2, 0, 1)[None, :]
            cover = np.clip((gullies - 0.3 * steep - 0.2) * 4, 0, 1)
            cap = np.maximum(cap, cover)
        snow_col = _rgb(246, 250, 255) * (sky.light * 0.6 + 0.4) * shade[..., None]
        snow_col += np.maximum(1 - shade, 0)[..., None] * _rgb(60, 80, 130)
        return _mix(col, snow_col, cap[..., None] * 0.95)

    def tree_colour(self, tex: np.ndarray, facing: np.ndarray, strength: float) -> np.ndarray:
        """The trees' colour per pixel: by season and scene, textured, lit by their facing."""
        plan, near = self.plan, TERRAIN[self.plan.scene][1]
        tree_col = (
            _rgb(178, 82, 30) if "autumn" in plan.flags
            else _rgb(22, 62, 52) if plan.scene == "snow"
            else near * _rgb(0.6, 0.95, 0.6) + _rgb(4, 14, 4)
        )
        tree_col = tree_col * self.sky.light * (0.85 + 0.3 * tex[..., None])
        return tree_col * (1 + 0.25 * facing[None, :, None] * strength)

    def glow_at(self, elev: np.ndarray) -> np.ndarray:
        d = self.angular_distance(elev, self.phi)
        return (np.exp(-((d / 0.75) ** 2)) * self.sky.glow_strength).astype(_F)

    def trees(self, elev: np.ndarray, tier: int, y0: int, y1: int) -> np.ndarray:
        """Pine silhouettes standing on a ridge (mask of rows ``y0:y1``), wrapped around."""
        w, h = self.w, self.h
        rng = np.random.default_rng(self.geo.layer_seeds[3] + 17 * tier)
        canvas = Image.new("L", (w, y1 - y0), 0)
        draw = ImageDraw.Draw(canvas)
        scale = h * (0.022, 0.045)[min(tier, 1)]
        spacing = max(2.0, scale * 0.34)
        x = float(rng.uniform(0, spacing))
        top_rows = self.row_of(elev)
        while x < w:
            xi = int(x) % w
            base = float(top_rows[xi]) + scale * 0.15 - y0
            if rng.random() < 0.8 and base < (y1 - y0):
                height = scale * float(rng.uniform(0.55, 1.3))
                half_w = height * 0.2
                tiers = 3 + int(height > 18) + int(height > 40)
                for t in range(tiers):
                    y_top = base - height + height * (t / tiers) * 0.72
                    y_bot = base - height * (1 - (t + 1.35) / (tiers + 1)) * 0.92
                    width = half_w * (0.4 + 0.8 * (t + 1) / tiers)
                    _draw_wrapped(draw, [(x, y_top), (x - width, y_bot), (x + width, y_bot)], w)
                trunk = max(0.6, half_w * 0.1)
                _draw_wrapped(
                    draw,
                    [(x - trunk, base - height * 0.2), (x + trunk, base - height * 0.2),
                     (x + trunk, base + 2), (x - trunk, base + 2)],
                    w,
                )
            x += spacing * float(rng.uniform(0.6, 1.6))
        return np.asarray(canvas) > 127

    # ------------------------------------------------------------------------------ city
    def city(self, img: np.ndarray, distance: np.ndarray, covered: np.ndarray) -> None:
        """A ring of buildings around the viewer, windows lit after dark."""
        plan, sky = self.plan, self.sky
        w, h, half = self.w, self.h, self.half
        rng = np.random.default_rng(self.geo.layer_seeds[4] + 5)
        ring = 60.0
        base_row = half if plan.water else self.row_of(-math.atan(1 / ring))
        # building spans around the circle, ending exactly where they began
        edges = [0.0]
        while edges[-1] < w:
            edges.append(edges[-1] + float(rng.uniform(0.012, 0.035) * w))
        edges[-1] = float(w)
        if len(edges) > 2 and edges[-1] - edges[-2] < 0.006 * w:
            edges.pop(-2)
        start = float(rng.uniform(0, w))
        cols = (np.arange(w) - start) % w
        ids = np.searchsorted(np.array(edges[1:]), cols, side="right")
        count = len(edges) - 1
        heights = np.radians(4 + 26 * rng.random(count) ** 1.8).astype(_F)
        lit_share = (rng.random(count) * 0.45 + 0.2).astype(_F)
        tone = rng.uniform(0.75, 1.15, count).astype(_F)
        top = self.row_of(heights[ids])[None, :]
        rows = np.arange(h, dtype=_F)[:, None]
        y0 = int(max(0, np.floor(top.min())))
        y1 = int(min(h, math.ceil(base_row) + 1))
        band = rows[y0:y1]
        mask = (band >= top) & (band < base_row)
        night = plan.time in ("night", "neon", "dusk")
        near = TERRAIN["city"][1]
        col = near * sky.light * tone[ids][None, :, None] * np.ones((y1 - y0, 1, 1), _F)
        col = _mix(col, sky.haze, 0.18)
        # windows: a lattice in (column, elevation) per building, some lit
        left = np.array(edges[:-1], _F)[ids]
        local_x = cols - left
        step_x = max(4, w // 400)
        step_y = max(4, h // 160)
        wx = np.floor(local_x / step_x)
        inside_x = (local_x - wx * step_x >= step_x * 0.35) & (local_x >= step_x)
        inside_x &= (np.array(edges[1:], _F)[ids] - cols) > step_x
        ry = band - top
        wy = np.floor(ry / step_y)
        inside_y = (ry - wy * step_y >= step_y * 0.45) & (ry > step_y) & (band < base_row - 2)
        cell = (wx.astype(np.int64)[None, :] * 73856093) ^ (wy.astype(np.int64) * 19349663) ^ (
            ids.astype(np.int64)[None, :] * 83492791
        )
        table = np.random.default_rng(self.geo.layer_seeds[4]).random(4096, dtype=_F)
        coin = table[cell % 4096]
        windows = inside_x[None, :] & inside_y & mask
        if night:
            palette = (
                np.stack([_rgb(255, 80, 200), _rgb(80, 230, 255), _rgb(255, 214, 130)])
                if plan.time == "neon"
                else np.stack([_rgb(255, 214, 140), _rgb(255, 236, 190), _rgb(210, 226, 255)])
            )
            lit = windows & (coin < lit_share[ids][None, :])
            col = np.where(lit[..., None], palette[(cell // 7 % len(palette)).astype(np.intp)], col)
        else:
            col = np.where(windows[..., None], col * 0.72 + sky.horizon * 0.12, col)
        region = img[y0:y1]
        region[mask] = col[mask]
        distance[y0:y1][mask] = ring
        covered[y0:y1] |= mask

    # ----------------------------------------------------------------------------- water
    def water(self, img: np.ndarray, distance: np.ndarray, upper: np.ndarray,
              covered: np.ndarray) -> None:
        """Below the horizon: the mirrored upper half, rippled, with Fresnel reflectance."""
        sky = self.sky
        half, w, h = self.half, self.w, self.h
        alpha = -self.theta[half:][:, None]
        reach = 1 / np.tan(alpha)
        phi = self.phi[None, :]
        # wave fields at half resolution (smooth), in plane coordinates: long swells and
        # ripples; their slope along the line of sight tilts what each pixel reflects
        gw, gh = w // 2, (h - half) // 2
        ga = ((np.arange(gh) + 0.5) / gh * (np.pi / 2))[:, None]
        gphi = ((np.arange(gw) + 0.5) / gw * 2 * np.pi)[None, :]
        greach = 1 / np.tan(ga)
        pix = (np.pi / (2 * gh)) / np.sin(ga) ** 2 * np.ones_like(gphi)
        pix = np.maximum(pix, greach * (2 * np.pi / gw))
        salt = self.geo.cloud_salt + 303

        def waves_at(r: np.ndarray, freq: float, octaves: int, k: int) -> np.ndarray:
            x, y = r * np.cos(gphi) * freq, r * np.sin(gphi) * freq * 2.5
            return _plane_fbm(x, y, octaves, salt + k, pix * freq * 2.5)

        step = 0.02 + 0.05 * greach
        swell = waves_at(greach, 0.25, 4, 0)
        ripple = waves_at(greach, 2.5, 4, 9)
        tilt = (waves_at(greach + step, 0.25, 4, 0) - swell) / step * 0.12
        tilt += (waves_at(greach + step * 0.25, 2.5, 4, 9) - ripple) / (step * 0.25) * 0.03
        tilt = _wrap_resize(np.clip(tilt, -3, 3).astype(_F), (w, h - half))
        ripple = _wrap_resize(ripple.astype(_F), (w, h - half))
        rows = np.arange(h - half, dtype=_F)[:, None]
        persp = np.clip(alpha / (np.pi / 2), 0, 1) ** 0.5
        lines = h / np.pi  # rows per radian
        src_y = np.clip(half - 1 - rows - tilt * lines * 0.012, 0, half - 1)
        src_x = np.arange(w)[None, :] + (ripple - 0.5) * 6 * persp
        mirror = upper[src_y.astype(np.intp), src_x.astype(np.intp) % w] * 0.9
        incidence = np.clip(alpha + tilt * 0.02, 0.0, np.pi / 2)
        fresnel = 0.03 + 0.97 * (1 - np.sin(incidence)) ** 5
        deep = sky.zenith * 0.4 + sky.horizon * 0.22 + _rgb(0, 10, 14)
        deep = deep * (0.85 + 0.3 * ripple[..., None])
        water = deep + (mirror - deep) * fresnel[..., None]
        crest = np.clip((ripple - 0.62) * 5, 0, 1) * (0.3 + 0.7 * persp) * 0.18
        water += crest[..., None] * (sky.horizon * 0.6 + sky.glow * 0.4 - water)
        dphi = np.angle(np.exp(1j * (phi - self.sun_phi))).astype(_F)
        width = self.sun_radius * (1.4 + 10 * persp) + 0.01
        path = np.exp(-((dphi / width) ** 2)) * np.exp(-alpha / 0.5)
        spark = np.clip((ripple - 0.5) * 6, 0, 1) * path * (0.35 + 0.65 * sky.glow_strength)
        water += np.minimum(spark, 0.95)[..., None] * (sky.body - water)
        target = img[half:]
        keep = covered[half:]
        np.copyto(target, water.astype(_F), where=~keep[..., None])
        distance[half:] = np.where(keep, distance[half:], reach)

    def snowfall(self, img: np.ndarray) -> None:
        rng = np.random.default_rng(self.geo.layer_seeds[2] + 9)
        h, w = self.h, self.w
        count = int(w * h / 500)
        flakes = np.zeros((h, w), np.uint8)
        flakes[rng.integers(0, h, count), rng.integers(0, w, count)] = rng.integers(90, 256, count)
        soft = _wrap_filter(Image.fromarray(flakes), ImageFilter.GaussianBlur(0.9), 4)
        a = np.minimum(np.asarray(soft, _F) / 255 * 3.0, 0.85)
        where = a > 0.01
        img[where] += a[where][:, None] * (_rgb(250, 252, 255) - img[where])


def _box_wrap(values: np.ndarray, width: int) -> np.ndarray:
    """Moving average of a periodic 1-D array."""
    width = max(1, int(width)) | 1
    pad = width // 2
    padded = np.concatenate([values[-pad:], values, values[:pad]]) if pad else values
    csum = np.concatenate([[0.0], np.cumsum(padded, dtype=np.float64)])
    return ((csum[width:] - csum[:-width]) / width).astype(_F)


# ------------------------------------------------------------------------------ finishes
def _finish(image: Image.Image, distance: np.ndarray, treatment: str, seed: int) -> Image.Image:
    if treatment == "photo":
        return image
    if treatment == "cel":  # flat shading bands that keep each hue, and ink lines
        soft = _wrap_filter(image, ImageFilter.ModeFilter(5), 4)
        arr = np.asarray(soft, _F)
        luma = arr @ np.array([0.299, 0.587, 0.114], _F) + 1.0
        levels = 6.0
        banded = (np.floor(luma / 256 * levels) + 0.5) / levels * 256
        arr = arr * (banded / luma)[..., None]
        depth = np.log(np.maximum(np.minimum(distance, DEPTH_FAR), _DEPTH_NEAR))
        edge = np.abs(depth - np.roll(depth, 1, axis=1)) + np.abs(
            depth - np.concatenate([depth[:1], depth[:-1]], axis=0)
        )
        line = np.clip((edge - 0.35) * 2.5, 0, 1)[..., None] * 0.75
        arr = arr * (1 - line) + 20 * line
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if treatment == "paint":
        soft = _wrap_filter(image, ImageFilter.ModeFilter(7), 6)
        soft = _wrap_filter(soft, ImageFilter.SMOOTH_MORE, 3)
        rng = np.random.default_rng([seed, 0xB2])
        strokes = _loop2(rng, image.width, image.height, 96, 160, 2)
        arr = np.asarray(soft, _F) * (0.95 + 0.1 * strokes)[..., None]
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if treatment == "watercolor":
        washed = _wrap_filter(image, ImageFilter.GaussianBlur(3), 12)
        edges = np.asarray(_wrap_filter(image.convert("L"), ImageFilter.FIND_EDGES, 2), _F)
        rng = np.random.default_rng([seed, 0xB3])
        paper = _loop2(rng, image.width, image.height, 512, 128, 2)
        arr = np.asarray(washed, _F)
        arr = arr * 0.8 + 255 * 0.2  # lighter washes
        arr *= (1 - np.clip(edges / 255 * 1.5, 0, 0.35))[..., None]
        arr *= (0.94 + 0.08 * paper)[..., None]
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if treatment == "sketch":
        gray = image.convert("L")
        edges = np.asarray(_wrap_filter(gray, ImageFilter.FIND_EDGES, 2), _F)
        arr = 250 - np.clip(edges * 2.2, 0, 200)
        base = np.asarray(gray, _F) * 0.25 + 190
        out = np.minimum(arr, base)
        return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "L").convert("RGB")
    return image


# ------------------------------------------------------------------------------ derived images
def depth_to_image(distance: np.ndarray, size: tuple[int, int] | None = None) -> Image.Image:
    """Distances (camera heights) as a grayscale depth map, near white, log scale, far black."""
    d = np.clip(distance, _DEPTH_NEAR, DEPTH_FAR)
    value = 1 - np.log(d / _DEPTH_NEAR) / math.log(DEPTH_FAR / _DEPTH_NEAR)
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
    pano = np.asarray(image.convert("RGB"), _F)
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
    mask = Image.fromarray((np.asarray(lines, _F) * weight).astype(np.uint8), "L")
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
