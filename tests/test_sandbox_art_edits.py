"""jupyter_imagine.sandbox._art._edits: grids, upscales, variations, inpainting."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from jupyter_imagine.errors import InvalidMask, InvalidRequest
from jupyter_imagine.sandbox._art._edits import inpaint, make_grid, upscale, vary
from jupyter_imagine.sandbox._art._landscape import render


def _arr(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def _diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(_arr(a) - _arr(b)).mean())


# ----------------------------------------------------------------------------- grids
def test_make_grid_places_the_cells_in_u1_to_u4_order():
    cells = [render("a lake", s, (60, 40)) for s in range(4)]
    grid = make_grid(cells)
    assert grid.size == (120, 80)
    assert _arr(grid)[:40, 60:].tolist() == _arr(cells[1]).tolist()  # 2 is top-right
    back = [
        grid.crop(((i % 2) * 60, (i // 2) * 40, (i % 2 + 1) * 60, (i // 2 + 1) * 40))
        for i in range(4)
    ]
    assert [c.tobytes() for c in back] == [c.tobytes() for c in cells]


def test_make_grid_errors():
    cells = [Image.new("RGB", (10, 10))] * 3
    with pytest.raises(InvalidRequest, match="exactly 4"):
        make_grid(cells)
    with pytest.raises(InvalidRequest, match="one size"):
        make_grid([*cells, Image.new("RGB", (10, 12))])


# ----------------------------------------------------------------------------- upscale / vary
def test_upscale_is_the_same_picture_bigger():
    src = render("autumn forest at dawn", 4, (128, 96))
    big = upscale(src)
    assert big.size == (256, 192)
    assert _diff(big.resize(src.size, Image.Resampling.LANCZOS), src) < 3
    assert upscale(src, 3).size == (384, 288)
    assert upscale(src, 1).tobytes() == src.tobytes()
    with pytest.raises(InvalidRequest):
        upscale(src, 0)


def test_vary_resembles_and_strength_scales():
    src = render("a lighthouse at dusk", 1, (256, 256))
    weak = vary(src, 11, 0.1)
    default = vary(src, 11)
    strong = vary(src, 11, 0.8)
    other = render("a lighthouse at dusk", 2, (256, 256))
    assert default.size == src.size and default.mode == "RGB"
    assert 0 < _diff(src, weak) < _diff(src, default) < _diff(src, strong)
    assert _diff(src, default) * 1.5 < _diff(src, other)
    assert vary(src, 11).tobytes() == default.tobytes()
    assert vary(src, 12).tobytes() != default.tobytes()
    assert vary(src, 11, 0).tobytes() == src.tobytes()


# ----------------------------------------------------------------------------- inpaint
def test_inpaint_changes_only_the_masked_pixels():
    src = render("a lighthouse at dusk", 1, (200, 160))
    mask = Image.new("L", src.size, 0)
    ImageDraw.Draw(mask).rectangle([40, 30, 150, 120], fill=255)
    out = inpaint(src, mask, "neon city at night", 5)
    a, b = _arr(src), _arr(out)
    inside = np.asarray(mask) > 127
    assert out.size == src.size
    assert np.array_equal(a[~inside], b[~inside])
    changed = np.abs(a - b).sum(axis=2) > 0
    assert changed[inside].all()  # every masked pixel moves, if only by one level
    assert np.abs(a - b)[inside].max() > 30  # and most move a lot
    assert inpaint(src, mask, "neon city at night", 5).tobytes() == out.tobytes()


def test_inpaint_moves_a_masked_pixel_even_where_old_and_new_agree():
    src = render("snow on snow", 3, (64, 64))  # redrawn from itself: new content == old
    mask = Image.new("L", src.size, 0)
    ImageDraw.Draw(mask).rectangle([0, 0, 63, 31], fill=255)
    a, b = _arr(src), _arr(inpaint(src, mask, "snow on snow", 3))
    assert (np.abs(a - b).sum(axis=2) > 0)[:32].all()
    assert np.abs(a - b)[:32].max() <= 2  # by a level or so, not redrawn
    assert np.array_equal(a[32:], b[32:])


def test_inpaint_threshold_and_errors():
    src = render("x", 1, (64, 64))
    grey = Image.new("L", (64, 64), 127)  # not > 127: nothing to redraw
    assert inpaint(src, grey, "y", 1).tobytes() == src.tobytes()
    with pytest.raises(InvalidMask, match="mask is 32×32 but the image is 64×64"):
        inpaint(src, Image.new("L", (32, 32), 255), "y", 1)


# ----------------------------------------------------------------------------- load_mask
