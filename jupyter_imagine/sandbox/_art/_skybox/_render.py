"""Drawing a skybox: :func:`panorama` and its memo."""

from __future__ import annotations

import functools

import numpy as np

from .._scene import hash32, prompt_words, scene_plan
from .._tables import SKIES
from ._common import Geo, smoothstep, unit
from ._derived import Panorama
from ._land_painter import LandPainter
from ._noise import loop1
from ._sky_painter import SkyPainter
from ._styles import finish, style_words, treatment


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
    return cached_panorama(str(prompt), int(seed) & 0xFFFFFFFF, w, h, style or "")


@functools.lru_cache(maxsize=6)
def cached_panorama(prompt: str, seed: int, w: int, h: int, style: str) -> Panorama:
    """:func:`panorama`, memoised: a few recent skyboxes (about 14 MB each at 2048×1024) are
    kept process-wide, so identical requests to several sandboxes draw once. The result is
    shared: callers make new images from it and never change it."""
    words = f"{prompt} {style_words(style)}"
    plan_rng = np.random.default_rng([seed, hash32(sorted(prompt_words(words))), 7])
    plan = scene_plan(words, plan_rng)
    sky = SKIES[plan.time]
    geo_rng = np.random.default_rng([seed, 0xB1])
    n_layers = 4 if plan.water else 5
    geo = Geo(
        sun_phi=float(geo_rng.uniform(0, 2 * np.pi)),
        sun_t=float(geo_rng.random()),
        layer_seeds=[int(s) for s in geo_rng.integers(0, 2**31, 8)],
        cloud_salt=int(geo_rng.integers(0, 256)),
        cloud_offset=(float(geo_rng.uniform(0, 200)), float(geo_rng.uniform(0, 200))),
        presence=np.stack(
            [smoothstep(0.25, 0.7, unit(loop1(geo_rng, w, 3, 2))) for _ in range(n_layers)]
        ),
    )
    scene = _Scene(plan, sky, geo, w, h, n_layers)
    image, distance = scene.render(seed)
    image = finish(image, distance, treatment(style), seed)
    distance.setflags(write=False)
    return Panorama(image, distance)


class _Scene(SkyPainter, LandPainter):
    """One skybox being drawn: the sky, then the ground, far to near."""
