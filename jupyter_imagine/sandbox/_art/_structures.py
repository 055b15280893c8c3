"""What stands on the terrain: pine silhouettes, a city skyline with lit windows, a lighthouse."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ._scene import Plan
from ._tables import F32, Sky, rgb_array

__all__ = ["paint_city", "paint_lighthouse", "pine_mask", "pine_tiers"]


def pine_tiers(
    x: float, base: float, height: float, half: float
) -> list[list[tuple[float, float]]]:
    """The stacked triangles of a pine ``height`` tall standing at ``(x, base)``, its widest
    tier about ``1.2 * half`` either side (3 tiers, a 4th above 18 px, a 5th above 40 px)."""
    tiers = 3 + int(height > 18) + int(height > 40)
    triangles = []
    for t in range(tiers):
        y_top = base - height + height * (t / tiers) * 0.72
        y_bot = base - height * (1 - (t + 1.35) / (tiers + 1)) * 0.92
        width = half * (0.4 + 0.8 * (t + 1) / tiers)
        triangles.append([(x, y_top), (x - width, y_bot), (x + width, y_bot)])
    return triangles


def pine_mask(
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
            for triangle in pine_tiers(x, base, height, half):
                draw.polygon(triangle, fill=255)
            trunk = max(0.6, half * 0.1)
            draw.rectangle([x - trunk, base - height * 0.2, x + trunk, base + 2], fill=255)
        x += spacing * float(rng.uniform(0.6, 1.5))
    return np.asarray(canvas) > 127


#: Window colours of a neon city and of any other lit city.
_NEON_WINDOWS = np.stack(
    [
        rgb_array(255, 80, 200),
        rgb_array(80, 230, 255),
        rgb_array(255, 214, 130),
        rgb_array(190, 120, 255),
    ]
)
_WARM_WINDOWS = np.stack(
    [rgb_array(255, 214, 140), rgb_array(255, 236, 190), rgb_array(210, 226, 255)]
)


def paint_city(
    rng: np.random.Generator,
    ridges: np.ndarray,
    size: tuple[int, int],
    horizon: int,
    plan: Plan,
    trees: dict[int, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Turn the two nearest layers into skylines; returns (window colours, window alpha)."""
    w, h = size
    n = ridges.shape[0]
    lights = np.zeros((h, w, 3), F32)
    alpha = np.zeros((h, w), F32)
    night = plan.time in ("night", "neon", "dusk")
    palette = _NEON_WINDOWS if plan.time == "neon" else _WARM_WINDOWS
    ground = horizon if plan.water else int(h * 0.9)
    table = rng.random(4096, dtype=F32)  # per-window coin flips and colours
    for tier, k in enumerate((n - 2, n - 1)):
        canvas = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(canvas)
        # which building owns each column: its left edge, right edge, top, lit share, id
        x0s, x1s = np.full(w, -1e9, F32), np.full(w, -1e9, F32)
        tops, shares = np.full(w, 4.0 * h, F32), np.zeros(w, F32)
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
        ys = np.arange(y0, ground, dtype=F32)[:, None]
        cols = np.arange(w, dtype=F32)[None, :]
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
        alpha = np.clip(alpha + np.asarray(blur, F32) / 255 * 0.7, 0, 1)
    return lights, alpha


def paint_lighthouse(
    rng: np.random.Generator,
    img: np.ndarray,
    ridge: np.ndarray,
    horizon: int,
    plan: Plan,
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
        c = np.clip(rgb_array(*rgb) * light * k, 0, 255)
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
        arr = np.asarray(layer.crop(box), F32)
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
            glow = np.asarray(crop, F32)[..., None] / 255 * 0.9
            patch = img[y0:y1, x0:x1]
            patch += glow * (rgb_array(255, 242, 200) - patch)
