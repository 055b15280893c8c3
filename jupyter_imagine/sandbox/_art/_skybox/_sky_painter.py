"""The skybox's sky painter."""

from __future__ import annotations

import math

import numpy as np

from ._common import F32, mix, rgb_array, smoothstep, unit, wrap_resize
from ._layout import SceneCore
from ._noise import loop1, loop2, plane_fbm


class SkyPainter(SceneCore):
    """The panorama's sky: gradient and glow, aurora, stars, clouds, the sun or the moon."""

    # ----------------------------------------------------------------------------- sky
    def sky_rows(self) -> np.ndarray:
        sky, plan = self.sky, self.plan
        half, w = self.half, self.w
        theta = self.theta[:half][:, None]
        phi = self.phi[None, :]
        e = np.clip(theta / (np.pi / 2), 0, 1)
        upper = mix(sky.middle, sky.zenith, (smoothstep(0.18, 1.0, e) ** 0.8)[..., None])
        col = mix(upper, sky.horizon, (np.clip(1 - e / 0.22, 0, 1) ** 1.6)[..., None])
        img = np.broadcast_to(col, (half, w, 3)).astype(F32).copy()
        dist = self.angular_distance(theta, phi)
        # glow: a wide halo, a bright core, and a warm band along the horizon under the sun
        glow = np.exp(-((dist / 0.75) ** 2)) * sky.glow_strength * 0.8
        glow += np.exp(-((dist / 0.16) ** 2)) * min(1.0, sky.glow_strength * 1.1)
        dphi = np.angle(np.exp(1j * (phi - self.sun_phi))).astype(F32)
        band = np.exp(-((dphi / 1.3) ** 2)) * np.clip(1 - e / 0.3, 0, 1) ** 2
        glow += band * sky.glow_strength * 0.7
        if sky.kind == "sun":
            glow += np.exp(-((dist / (self.sun_radius * 2.5)) ** 2)) * 0.6
        np.clip(glow, 0, 1, out=glow)
        img += glow[..., None] * (sky.glow - img) * 0.85
        self.glow = glow
        if plan.stars_visible:
            self.stars(img, glow)
        dens = self.clouds(img, dist) if plan.clouds > 0 else np.zeros(glow.shape, F32)
        if plan.aurora:
            self.aurora(img, theta, phi, dens)
        return img

    def aurora(self, img: np.ndarray, theta: np.ndarray, phi: np.ndarray, clouds: np.ndarray
               ) -> None:
        rng = np.random.default_rng(self.geo.layer_seeds[6])
        w = self.w
        wave = (unit(loop1(rng, w, 4, 3)) - 0.5)[None, :]
        presence = smoothstep(0.25, 0.65, unit(loop1(rng, w, 2, 2)))[None, :]
        lower = np.radians(16) + np.radians(14) * wave  # the bright lower edge
        height = np.radians(18) * (0.7 + 0.6 * unit(loop1(rng, w, 5, 2)))[None, :]
        above = theta - lower
        curtain = np.where(
            above < 0, np.exp(-((above / np.radians(1.5)) ** 2)), np.exp(-above / height)
        )
        rays = 0.35 + 0.65 * unit(loop1(rng, w, 90, 3, persistence=0.7))[None, :] ** 1.5
        alpha = curtain * rays * presence * 0.75 * (1 - 0.6 * clouds)
        alpha = np.clip(alpha, 0, 0.85)[..., None]
        up = np.clip(above / (height * 1.6), 0, 1)[..., None]
        img += alpha * (mix(rgb_array(80, 255, 160), rgb_array(170, 80, 255), up) - img)

    def stars(self, img: np.ndarray, glow: np.ndarray) -> None:
        rng = np.random.default_rng(self.geo.layer_seeds[5])
        half, w = self.half, self.w
        count = int(w * half / 260)
        z = rng.random(count) ** 0.8  # sin(elevation), a little denser overhead
        theta = np.arcsin(z)
        phi = rng.uniform(0, 2 * np.pi, count)
        bright = rng.uniform(0.2, 1.0, count).astype(F32) ** 2.2
        xs = phi / (2 * np.pi) * w
        ys = np.clip(self.row_of(theta), 0, half - 1).astype(np.intp)
        stretch = np.minimum(1 / np.maximum(np.cos(theta), 1e-3), 12)
        starmap = np.zeros((half, w), F32)
        for step in range(12):
            sel = stretch > step
            if not sel.any():
                break
            xx = (xs[sel] + step - stretch[sel] / 2).astype(np.intp) % w
            np.maximum.at(starmap, (ys[sel], xx), bright[sel])
        starmap *= np.clip(1 - glow * 1.6, 0, 1)
        starmap *= smoothstep(0.02, 0.25, self.theta[:half])[:, None]
        img += starmap[..., None] * (rgb_array(250, 248, 255) - img)

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
        noise = plane_fbm(u, v, 6, geo.cloud_salt, footprint)
        sx, sy = math.cos(self.sun_phi) * 0.06, math.sin(self.sun_phi) * 0.06
        toward = plane_fbm(u + sx, v + sy, 4, geo.cloud_salt, footprint)
        cover = plan.clouds * (0.45 if plan.aurora else 1.0)
        thresh = 0.6 - cover * 0.16
        dens = np.clip((noise - thresh) / 0.12, 0, 1)
        dens *= smoothstep(np.radians(1.0), np.radians(6.0), theta)  # haze at the horizon
        lit = np.clip((noise - toward) * 9 + 0.55, 0, 1)
        dens = wrap_resize(dens.astype(F32), (w, half))
        lit = wrap_resize(lit.astype(F32), (w, half))
        near_sun = np.clip(1 - dist / 1.2, 0, 1)
        ccol = sky.cloud * (0.62 + 0.38 * lit)[..., None] + img * 0.18
        ccol = mix(ccol, sky.glow, (near_sun * (0.3 + 0.7 * lit) * sky.glow_strength * 0.7)
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
            crater = loop2(rng, d.shape[1], d.shape[0], 4, 4, 3)
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
