"""The skybox's ground painter."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .._structures import pine_tiers
from .._tables import GROUND, TERRAIN
from ._common import F32, draw_wrapped, mix, rgb_array, wrap_filter, wrap_resize
from ._layout import SceneCore
from ._noise import box_wrap, loop2, plane_fbm


class LandPainter(SceneCore):
    """The panorama's ground: rings of ridges, snow, trees, a city, water and snowfall."""

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
            return plane_fbm(
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
        a, b = GROUND.get(plan.scene, (TERRAIN[plan.scene][1], TERRAIN[plan.scene][1]))
        col = mix(a, b, np.clip((patches - 0.35) * 2.5, 0, 1)[..., None])
        light = sky.light * 0.75 + 0.25
        col = col * light * (0.65 + 0.7 * tex[..., None])
        col += sky.horizon * 0.06 + sky.zenith * 0.04  # skylight
        col *= (1 + np.clip(relief, -1, 1) * (0.28 + 0.2 * sky.glow_strength))[..., None]
        dphi = np.cos(phi - self.sun_phi)
        col *= (1 + 0.1 * dphi * sky.glow_strength)[..., None]
        haze = 1 - np.exp(-reach / 60.0)
        col = mix(col, sky.haze * 0.8 + sky.horizon * 0.2, (haze**1.1)[..., None])
        col *= (0.8 + 0.2 * np.clip(1 - alpha / (np.pi / 2), 0, 1))[..., None]
        full = np.stack(
            [wrap_resize(col[..., c].astype(F32), (w, h - half)) for c in range(3)], axis=-1
        )
        img[half:] = full

    def terrain(self, img: np.ndarray, distance: np.ndarray) -> np.ndarray:
        """Paint the rings of ridges far to near; returns the mask of covered pixels."""
        plan, sky = self.plan, self.sky
        w, h, half = self.w, self.h, self.half
        n = self.n_layers
        far, near = TERRAIN[plan.scene]
        covered = np.zeros((h, w), bool)
        rows = np.arange(h, dtype=F32)[:, None]
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
            slope = box_wrap(slope, max(3, w // 200)) * (w / (2 * np.pi))
            facing = np.tanh(-slope * tangent * 3.0)
            rng = np.random.default_rng(self.geo.layer_seeds[k % 5] + 11)
            streaks = loop2(rng, w, y1 - y0, 90 + 40 * k, 3, 3)
            tex = loop2(rng, w, y1 - y0, 40 + 24 * k, max(2, (y1 - y0) // 16), 4)
            # gullies run down and away from the crest: sample the streaks sideways with depth
            lean = np.sign(slope)[None, :] * below * 1.2
            cols = (np.arange(w)[None, :] + lean).astype(np.intp) % w
            gullies = np.take_along_axis(streaks, cols, axis=1)
            fade = np.exp(-below / (span * 0.6))
            shade = 1 + strength * facing[None, :] * fade + 0.1 * front[None, :]
            shade = shade * (0.9 + 0.2 * gullies) * (0.88 + 0.24 * tex)
            colour = mix(far, near, depth**0.85)
            if plan.scene == "snow":  # rock under the snow
                colour = mix(rgb_array(120, 128, 146), rgb_array(70, 74, 86), depth)
            col = colour * sky.light * shade[..., None]
            col += np.maximum(1 - shade, 0)[..., None] * sky.zenith * 0.35
            if snowy and k < n - 1:
                col = self.snow(col, elev, below, depth, (tex, gullies, slope), shade)
            if tree_mask is not None:
                tree_col = self.tree_colour(tex, facing, strength)
                col = np.where(tree_mask[..., None], tree_col, col)
                if "autumn" in plan.flags or plan.scene == "forest":
                    canopy = land & (below < span * 0.8)
                    canopy_col = mix(colour * sky.light * shade[..., None], tree_col, 0.6)
                    col = np.where(canopy[..., None], canopy_col, col)
            # rim light where the ridge meets the glow, haze with distance, mist in the valleys
            rim = np.exp(-below / 1.5) * self.glow_at(elev)[None, :] * 0.75
            col = mix(col, sky.glow, rim[..., None])
            haze = 0.62 * (1 - depth) ** 1.4
            mist = np.clip(below / span, 0, 1) ** 1.6 * 0.55 * (1 - depth * 0.6)
            haze = haze + (1 - haze) * mist
            col = mix(col, sky.haze, haze[..., None])
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
        snow_col = rgb_array(246, 250, 255) * (sky.light * 0.6 + 0.4) * shade[..., None]
        snow_col += np.maximum(1 - shade, 0)[..., None] * rgb_array(60, 80, 130)
        return mix(col, snow_col, cap[..., None] * 0.95)

    def tree_colour(self, tex: np.ndarray, facing: np.ndarray, strength: float) -> np.ndarray:
        """The trees' colour per pixel: by season and scene, textured, lit by their facing."""
        plan, near = self.plan, TERRAIN[self.plan.scene][1]
        tree_col = (
            rgb_array(178, 82, 30) if "autumn" in plan.flags
            else rgb_array(22, 62, 52) if plan.scene == "snow"
            else near * rgb_array(0.6, 0.95, 0.6) + rgb_array(4, 14, 4)
        )
        tree_col = tree_col * self.sky.light * (0.85 + 0.3 * tex[..., None])
        return tree_col * (1 + 0.25 * facing[None, :, None] * strength)

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
                for triangle in pine_tiers(x, base, height, half_w):
                    draw_wrapped(draw, triangle, w)
                trunk = max(0.6, half_w * 0.1)
                draw_wrapped(
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
        heights = np.radians(4 + 26 * rng.random(count) ** 1.8).astype(F32)
        lit_share = (rng.random(count) * 0.45 + 0.2).astype(F32)
        tone = rng.uniform(0.75, 1.15, count).astype(F32)
        top = self.row_of(heights[ids])[None, :]
        rows = np.arange(h, dtype=F32)[:, None]
        y0 = int(max(0, np.floor(top.min())))
        y1 = int(min(h, math.ceil(base_row) + 1))
        band = rows[y0:y1]
        mask = (band >= top) & (band < base_row)
        night = plan.time in ("night", "neon", "dusk")
        near = TERRAIN["city"][1]
        col = near * sky.light * tone[ids][None, :, None] * np.ones((y1 - y0, 1, 1), F32)
        col = mix(col, sky.haze, 0.18)
        # windows: a lattice in (column, elevation) per building, some lit
        left = np.array(edges[:-1], F32)[ids]
        local_x = cols - left
        step_x = max(4, w // 400)
        step_y = max(4, h // 160)
        wx = np.floor(local_x / step_x)
        inside_x = (local_x - wx * step_x >= step_x * 0.35) & (local_x >= step_x)
        inside_x &= (np.array(edges[1:], F32)[ids] - cols) > step_x
        ry = band - top
        wy = np.floor(ry / step_y)
        inside_y = (ry - wy * step_y >= step_y * 0.45) & (ry > step_y) & (band < base_row - 2)
        cell = (wx.astype(np.int64)[None, :] * 73856093) ^ (wy.astype(np.int64) * 19349663) ^ (
            ids.astype(np.int64)[None, :] * 83492791
        )
        table = np.random.default_rng(self.geo.layer_seeds[4]).random(4096, dtype=F32)
        coin = table[cell % 4096]
        windows = inside_x[None, :] & inside_y & mask
        if night:
            palette = (
                np.stack(
                    [rgb_array(255, 80, 200), rgb_array(80, 230, 255), rgb_array(255, 214, 130)]
                )
                if plan.time == "neon"
                else np.stack(
                    [rgb_array(255, 214, 140), rgb_array(255, 236, 190), rgb_array(210, 226, 255)]
                )
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
            return plane_fbm(x, y, octaves, salt + k, pix * freq * 2.5)

        step = 0.02 + 0.05 * greach
        swell = waves_at(greach, 0.25, 4, 0)
        ripple = waves_at(greach, 2.5, 4, 9)
        tilt = (waves_at(greach + step, 0.25, 4, 0) - swell) / step * 0.12
        tilt += (waves_at(greach + step * 0.25, 2.5, 4, 9) - ripple) / (step * 0.25) * 0.03
        tilt = wrap_resize(np.clip(tilt, -3, 3).astype(F32), (w, h - half))
        ripple = wrap_resize(ripple.astype(F32), (w, h - half))
        rows = np.arange(h - half, dtype=F32)[:, None]
        persp = np.clip(alpha / (np.pi / 2), 0, 1) ** 0.5
        lines = h / np.pi  # rows per radian
        src_y = np.clip(half - 1 - rows - tilt * lines * 0.012, 0, half - 1)
        src_x = np.arange(w)[None, :] + (ripple - 0.5) * 6 * persp
        mirror = upper[src_y.astype(np.intp), src_x.astype(np.intp) % w] * 0.9
        incidence = np.clip(alpha + tilt * 0.02, 0.0, np.pi / 2)
        fresnel = 0.03 + 0.97 * (1 - np.sin(incidence)) ** 5
        deep = sky.zenith * 0.4 + sky.horizon * 0.22 + rgb_array(0, 10, 14)
        deep = deep * (0.85 + 0.3 * ripple[..., None])
        water = deep + (mirror - deep) * fresnel[..., None]
        crest = np.clip((ripple - 0.62) * 5, 0, 1) * (0.3 + 0.7 * persp) * 0.18
        water += crest[..., None] * (sky.horizon * 0.6 + sky.glow * 0.4 - water)
        dphi = np.angle(np.exp(1j * (phi - self.sun_phi))).astype(F32)
        width = self.sun_radius * (1.4 + 10 * persp) + 0.01
        path = np.exp(-((dphi / width) ** 2)) * np.exp(-alpha / 0.5)
        spark = np.clip((ripple - 0.5) * 6, 0, 1) * path * (0.35 + 0.65 * sky.glow_strength)
        water += np.minimum(spark, 0.95)[..., None] * (sky.body - water)
        target = img[half:]
        keep = covered[half:]
        np.copyto(target, water.astype(F32), where=~keep[..., None])
        distance[half:] = np.where(keep, distance[half:], reach)

    def snowfall(self, img: np.ndarray) -> None:
        rng = np.random.default_rng(self.geo.layer_seeds[2] + 9)
        h, w = self.h, self.w
        count = int(w * h / 500)
        flakes = np.zeros((h, w), np.uint8)
        flakes[rng.integers(0, h, count), rng.integers(0, w, count)] = rng.integers(90, 256, count)
        soft = wrap_filter(Image.fromarray(flakes), ImageFilter.GaussianBlur(0.9), 4)
        a = np.minimum(np.asarray(soft, F32) / 255 * 3.0, 0.85)
        where = a > 0.01
        img[where] += a[where][:, None] * (rgb_array(250, 252, 255) - img[where])
