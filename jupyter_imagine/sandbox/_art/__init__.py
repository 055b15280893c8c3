"""The sandbox's procedural art: deterministic pictures from a prompt and a seed.

``_landscape.render`` paints the scene (or ``_quick`` a plain one, for load tests: see
``set_drawing``); ``_edits`` derives grids, upscales, variations and inpaints from it; ``_tables``
holds the palettes and the prompt vocabulary; ``_scene`` turns a prompt into a plan; ``_noise``,
``_sky`` and ``_structures`` are the painters. The provider-specific image work (APIFRAME's
tasks, Blockade's panoramas, Banatie's references) builds on these.
"""

from __future__ import annotations

from ._edits import inpaint, make_grid, upscale, vary
from ._landscape import DRAWINGS, render, set_drawing
from ._sizes import MAX_RATIO, aspect_size, read_aspect, read_zoom

__all__ = [
    "DRAWINGS",
    "MAX_RATIO",
    "aspect_size",
    "inpaint",
    "make_grid",
    "read_aspect",
    "read_zoom",
    "render",
    "set_drawing",
    "upscale",
    "vary",
]
