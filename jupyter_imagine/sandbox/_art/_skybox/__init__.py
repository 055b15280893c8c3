"""The pictures of the Blockade Labs sandbox: seamless 360° equirectangular skyboxes.

A skybox is a 2:1 panorama: column ``x`` is longitude ``φ = 2π (x + ½) / W``, row ``y`` is
elevation ``θ = π (½ − (y + ½) / H)`` (zenith at the top, nadir at the bottom, the horizon in the
middle). Everything that varies with longitude is a function of ``φ`` with period ``2π`` — ridge
profiles are periodic noise, clouds and the ground are textured through their *projection* on a
plane (``d·cos φ, d·sin φ``), stars are directions on the sphere — so the left and right edges meet
without a seam. Filters that look at neighbours pad the picture with its own wrapped columns.

The scene follows the flat renderer's (``_art._landscape``) vocabulary: words of the prompt (and of
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

from ._common import CUBE_FACES
from ._derived import Panorama, blend_init, control_overlay, cube_map, depth_to_image, video_frames
from ._render import cached_panorama, panorama
from ._styles import style_words

__all__ = [
    "CUBE_FACES",
    "Panorama",
    "blend_init",
    "cached_panorama",
    "control_overlay",
    "cube_map",
    "depth_to_image",
    "panorama",
    "style_words",
    "video_frames",
]
