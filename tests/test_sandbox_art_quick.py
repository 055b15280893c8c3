"""jupyter_imagine.sandbox._art._quick: the quick drawing, and ``set_drawing`` choosing it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jupyter_imagine.sandbox._art import _landscape
from jupyter_imagine.sandbox._art._landscape import render, set_drawing
from jupyter_imagine.sandbox._art._quick import quick_render


def _arr(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


@pytest.fixture
def quick():
    """This process draws quick pictures for the test, full ones again after it."""
    set_drawing("quick")
    try:
        yield
    finally:
        set_drawing("full")


def test_size_mode_and_determinism():
    a = quick_render("a lighthouse at dusk", 7, (320, 200))
    assert a.size == (320, 200) and a.mode == "RGB"
    assert a.tobytes() == quick_render("a lighthouse at dusk", 7, (320, 200)).tobytes()


def test_seed_and_prompt_change_the_picture():
    base = _arr(quick_render("a pine forest", 1, (256, 256)))
    assert np.abs(base - _arr(quick_render("a pine forest", 2, (256, 256)))).mean() > 2
    assert np.abs(base - _arr(quick_render("at night", 1, (256, 256)))).mean() > 10


def test_the_sky_follows_the_time_of_day():
    night = np.mean([_arr(quick_render("a quiet night", s, (96, 96))).mean() for s in range(3)])
    day = np.mean([_arr(quick_render("a sunny day", s, (96, 96))).mean() for s in range(3)])
    assert night < day - 40
    top = _arr(quick_render("a sunny day", 0, (96, 96)))[:8]
    assert top[..., 2].mean() > top[..., 0].mean() + 50  # a blue zenith
    bottom = _arr(quick_render("a sunny day", 0, (96, 96)))[-8:]
    assert bottom.mean() < top.mean()  # land under the sky


@pytest.mark.parametrize("size", [(1, 1), (3, 300), (300, 3), (2048, 1024)])
def test_tiny_thin_and_large_sizes(size):
    assert quick_render("neon city", 5, size).size == size


def test_set_drawing_switches_render_and_back(quick):
    assert render("a harbour", 4, (128, 96)).tobytes() == (
        quick_render("a harbour", 4, (128, 96)).tobytes())
    set_drawing("full")
    assert render("a harbour", 4, (128, 96)).tobytes() != (
        quick_render("a harbour", 4, (128, 96)).tobytes())


def test_set_drawing_refuses_an_unknown_style():
    with pytest.raises(ValueError, match="drawing must be one of full, quick, not 'fast'"):
        set_drawing("fast")
    assert _landscape._drawing["style"] == "full"
