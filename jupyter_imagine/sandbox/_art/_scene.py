"""From a prompt to a scene plan: which words it holds, its hash, what the picture shows."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np

from ._tables import SCENE_PRIORITY, WORDS

__all__ = ["Plan", "hash32", "picture_rng", "prompt_words", "scene_plan"]

_FLAG = re.compile(r"--\w+(?:\s+(?!--)\S+)?")


def prompt_words(prompt: str) -> set[str]:
    return set(re.findall(r"[a-z]+", _FLAG.sub(" ", prompt.lower())))


def hash32(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0xFFFFFFFF


def picture_rng(prompt: str, seed: int) -> np.random.Generator:
    """The random stream a fresh picture of ``prompt`` is drawn from: the same for every drawing
    (full or quick), so both read the same plan, time of day first, from it."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, hash32(sorted(prompt_words(prompt)))])


@dataclass
class Plan:
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


def scene_plan(prompt: str, rng: np.random.Generator) -> Plan:
    words = prompt_words(prompt)
    hits = {name for name, vocab in WORDS.items() if words.intersection(vocab)}
    phash = hash32(" ".join(sorted(words)))
    scene = next((s for s in SCENE_PRIORITY if s in hits), None)
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
    return Plan(
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
