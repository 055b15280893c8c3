"""The art's data tables: skies per time of day, terrain colours per scene, prompt vocabulary.

:data:`SKIES` maps a time of day to its :class:`Sky` palette, :data:`TERRAIN` a scene kind to its
(far, near) colours, :data:`GROUND` to the skybox's ground colours, :data:`WORDS` a flag (time,
scene or feature) to the prompt words that set it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["F32", "GROUND", "SCENE_PRIORITY", "SKIES", "TERRAIN", "WORDS", "Sky", "rgb_array"]

F32 = np.float32


def rgb_array(*values: float) -> np.ndarray:
    """``values`` as a float32 colour array."""
    return np.array(values, dtype=F32)


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
        rgb_array(34, 88, 172),
        rgb_array(86, 150, 218),
        rgb_array(204, 226, 240),
        rgb_array(255, 252, 236),
        rgb_array(255, 246, 214),
        rgb_array(168, 196, 220),
        rgb_array(255, 255, 255),
        rgb_array(1.0, 1.0, 0.98),
        "sun",
        (0.45, 0.8),
        0.035,
        0.35,
        False,
    ),
    "dusk": Sky(
        rgb_array(28, 26, 78),
        rgb_array(142, 62, 118),
        rgb_array(255, 150, 76),
        rgb_array(255, 232, 170),
        rgb_array(255, 150, 80),
        rgb_array(214, 110, 112),
        rgb_array(255, 168, 150),
        rgb_array(0.55, 0.4, 0.5),
        "sun",
        (0.04, 0.22),
        0.06,
        0.9,
        False,
    ),
    "dawn": Sky(
        rgb_array(58, 92, 166),
        rgb_array(210, 158, 184),
        rgb_array(255, 216, 170),
        rgb_array(255, 246, 220),
        rgb_array(255, 206, 160),
        rgb_array(222, 184, 190),
        rgb_array(255, 222, 222),
        rgb_array(0.78, 0.7, 0.74),
        "sun",
        (0.08, 0.3),
        0.05,
        0.7,
        False,
    ),
    "night": Sky(
        rgb_array(3, 6, 20),
        rgb_array(12, 22, 56),
        rgb_array(36, 56, 104),
        rgb_array(244, 242, 226),
        rgb_array(120, 150, 210),
        rgb_array(40, 58, 100),
        rgb_array(64, 76, 112),
        rgb_array(0.3, 0.34, 0.48),
        "moon",
        (0.45, 0.8),
        0.045,
        0.45,
        True,
    ),
    "neon": Sky(
        rgb_array(8, 4, 30),
        rgb_array(66, 16, 98),
        rgb_array(236, 70, 150),
        rgb_array(255, 120, 200),
        rgb_array(255, 70, 170),
        rgb_array(120, 40, 120),
        rgb_array(120, 60, 150),
        rgb_array(0.3, 0.2, 0.42),
        "moon",
        (0.5, 0.85),
        0.03,
        0.55,
        True,
    ),
    "alien": Sky(
        rgb_array(14, 40, 70),
        rgb_array(30, 130, 140),
        rgb_array(236, 200, 150),
        rgb_array(255, 236, 200),
        rgb_array(255, 190, 140),
        rgb_array(110, 150, 150),
        rgb_array(220, 240, 235),
        rgb_array(0.7, 0.6, 0.8),
        "sun",
        (0.2, 0.6),
        0.09,
        0.6,
        True,
    ),
}

# (far colour, near colour) of the terrain in neutral light, per scene kind.
TERRAIN: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "mountain": (rgb_array(126, 140, 164), rgb_array(46, 58, 62)),
    "forest": (rgb_array(96, 138, 124), rgb_array(16, 56, 36)),
    "snow": (rgb_array(226, 234, 246), rgb_array(176, 192, 214)),
    "desert": (rgb_array(236, 178, 112), rgb_array(186, 104, 52)),
    "ocean": (rgb_array(104, 122, 136), rgb_array(42, 52, 50)),
    "city": (rgb_array(92, 100, 132), rgb_array(20, 22, 36)),
    "alien": (rgb_array(170, 96, 176), rgb_array(46, 18, 66)),
}

#: The skybox's two ground colours per scene kind, mixed in patches (neutral light).
GROUND: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "mountain": (rgb_array(92, 104, 70), rgb_array(118, 112, 92)),
    "forest": (rgb_array(46, 84, 38), rgb_array(84, 104, 50)),
    "snow": (rgb_array(222, 230, 244), rgb_array(196, 208, 228)),
    "desert": (rgb_array(222, 160, 96), rgb_array(196, 126, 70)),
    "ocean": (rgb_array(190, 170, 130), rgb_array(160, 146, 112)),
    "city": (rgb_array(48, 48, 58), rgb_array(62, 60, 66)),
    "alien": (rgb_array(120, 60, 130), rgb_array(70, 110, 130)),
}

WORDS: dict[str, tuple[str, ...]] = {
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
SCENE_PRIORITY = ("snow", "desert", "alien", "city", "ocean", "forest", "mountain")
