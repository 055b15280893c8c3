"""jupyter_imagine.sandbox._art._landscape: the procedural landscape."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jupyter_imagine.errors import InvalidRequest
from jupyter_imagine.sandbox._art._landscape import render


def _arr(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def _diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(_arr(a) - _arr(b)).mean())


# ----------------------------------------------------------------------------- render
def test_render_size_mode_and_determinism():
    a = render("a lighthouse at dusk", 7, (320, 200))
    b = render("a lighthouse at dusk", 7, (320, 200))
    assert a.size == (320, 200) and a.mode == "RGB"
    assert a.tobytes() == b.tobytes()


def test_render_seed_and_prompt_change_the_picture():
    base = render("a pine forest in snow", 1, (256, 256))
    assert _diff(base, render("a pine forest in snow", 2, (256, 256))) > 5
    assert _diff(base, render("desert dunes", 1, (256, 256))) > 5


def test_render_palette_follows_the_words():
    night = np.mean([_arr(render("a quiet night", s, (128, 128))).mean() for s in range(3)])
    day = np.mean([_arr(render("a sunny day", s, (128, 128))).mean() for s in range(3)])
    assert night < day - 40
    desert = _arr(render("desert dunes at noon", 3, (128, 128)))
    assert desert[..., 0].mean() > desert[..., 2].mean()  # ochre: more red than blue
    snow = np.mean(
        [_arr(render("snowy peaks at noon", s, (128, 128)))[64:].mean() for s in range(4)]
    )
    forest = np.mean(
        [_arr(render("pine forest at noon", s, (128, 128)))[64:].mean() for s in range(4)]
    )
    assert snow > forest + 50  # white ground against green


def test_render_flags_do_not_change_the_picture():
    a = render("a lighthouse at dusk", 3, (128, 128))
    b = render("a lighthouse at dusk --ar 3:2 --seed 99", 3, (128, 128))
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("size", [(1, 1), (3, 300), (300, 3), (47, 47), (48, 48)])
def test_render_tiny_and_thin_sizes(size):
    assert render("neon city at night", 5, size).size == size


def test_render_rejects_empty_size():
    with pytest.raises(InvalidRequest):
        render("x", 1, (0, 10))
