"""One skybox being drawn: its plan, its geometry (angles, rows, rings, ridges), render order."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from .._tables import Sky
from ._common import F32, mix, unit
from ._noise import loop1

if TYPE_CHECKING:
    from ._common import Geo


class SceneCore:
    def __init__(self, plan, sky: Sky, geo: Geo, w: int, h: int, n_layers: int) -> None:
        self.plan, self.sky, self.geo = plan, sky, geo
        self.w, self.h, self.half = w, h, h // 2
        self.n_layers = n_layers
        self.phi = ((np.arange(w, dtype=np.float64) + 0.5) / w * 2 * np.pi).astype(F32)
        self.theta = ((0.5 - (np.arange(h, dtype=np.float64) + 0.5) / h) * np.pi).astype(F32)
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
        return np.arccos(np.clip(cosd, -1, 1)).astype(F32)

    def row_of(self, elevation: np.ndarray | float) -> np.ndarray | float:
        """Pixel row (float, top edge 0) of an elevation angle in radians."""
        return (0.5 - elevation / np.pi) * self.h

    # --------------------------------------------------------------------------- render
    def render(self, seed: int) -> tuple[Image.Image, np.ndarray]:
        w, h, half = self.w, self.h, self.half
        img = np.empty((h, w, 3), F32)
        distance = np.full((h, w), np.inf, F32)
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
        img += rng.random((h, w, 1), dtype=F32) * 2.0 - 1.0
        np.clip(img, 0, 255, out=img)
        return Image.fromarray(img.astype(np.uint8), "RGB"), distance

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
            t = np.arange(w, dtype=F32) / w * cycles + 1.6 * loop1(rng, w, 3, 3)
            frac = t - np.floor(t)
            crest = float(rng.uniform(0.62, 0.78))
            up = (frac / crest) ** 1.4
            down = ((1 - frac) / (1 - crest)) ** 0.7
            profile = np.where(frac < crest, up, down)
            profile = profile * (0.25 + 0.75 * unit(loop1(rng, w, 4, 2))) * 2 - 1
        else:
            cells = int(rng.integers(4, 7)) + 3 * k
            profile = loop1(rng, w, cells, 8, ridged=0.7 - 0.4 * depth, persistence=0.52)
        shape = unit(profile) ** sharp
        presence = self.geo.presence[k]
        if k == 0 and not plan.water:
            presence = 0.55 + 0.45 * presence  # a range all around, higher in places
        elevation = base + amp * shape * (0.3 + 0.7 * presence)
        elevation = mix(-2.0, elevation, np.clip(presence * 2.2, 0, 1))
        return np.radians(elevation).astype(F32)

    def glow_at(self, elev: np.ndarray) -> np.ndarray:
        d = self.angular_distance(elev, self.phi)
        return (np.exp(-((d / 0.75) ** 2)) * self.sky.glow_strength).astype(F32)
