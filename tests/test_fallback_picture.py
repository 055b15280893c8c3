"""The static pictures: a lineage's rows and a gallery's contact sheet, tight and readable."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image as PILImage

from jupyter_imagine.imaging import read_image_text
from jupyter_imagine.widgets._fallback_picture import (
    KEY_TEXT,
    LINEAGE_TEXT,
    WIDTH,
    gallery_picture,
    lineage_picture,
)


def _png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (width, height), colour).save(buf, format="PNG")
    return buf.getvalue()


def test_the_gallery_sheet_has_square_tiles_and_no_holes():
    """Pictures of any aspect ratio fill square tiles (centre-cropped): no blank bands."""
    colours = [(200, 30, 30), (30, 160, 30), (30, 30, 200), (200, 160, 30), (120, 30, 160)]
    sizes = [(300, 200), (200, 200), (320, 180), (200, 300), (256, 128)]
    pairs = enumerate(zip(sizes, colours, strict=True))
    tiles = {f"j{i}": _png(*size, colour) for i, (size, colour) in pairs}
    rows = [{"id": key, "prompt": f"prompt {key}"} for key in tiles]
    sheet = gallery_picture(rows, 9, "k3y", tiles.__getitem__)
    assert read_image_text(sheet)[KEY_TEXT] == "k3y"
    im = PILImage.open(io.BytesIO(sheet)).convert("RGB")
    assert im.width == WIDTH and im.height < 2 * WIDTH // 4 + 100  # two rows of tiles, little else
    pixels = np.asarray(im, dtype=int)
    cell = (WIDTH - 2 * 10 - 3 * 6) // 4
    for i, colour in enumerate(colours):
        x, y = 10 + (i % 4) * (cell + 6), 10 + 18 + 10 + (i // 4) * (cell + 18 + 6)
        block = pixels[y + 2 : y + cell - 2, x + 2 : x + cell - 2]
        assert (np.abs(block - colour).sum(axis=2) < 40).mean() > 0.98, (i, colour)


def test_a_missing_picture_shows_the_status_in_its_tile():
    sheet = gallery_picture([{"id": "a", "prompt": "a gore scene", "status": "failed"}], 1, "k",
                            lambda _id: b"")
    assert PILImage.open(io.BytesIO(sheet)).height < WIDTH // 4 + 80


def test_a_lineage_lists_what_it_drew(engine):
    import jupyter_imagine as ji
    from jupyter_imagine.widgets import JobView

    job = ji.imagine("a lighthouse", aspect_ratio="3:2").wait(60)
    picture = lineage_picture(JobView(job), "k")
    chunks = read_image_text(picture)
    assert chunks[KEY_TEXT] == "k"
    assert [(r["kind"], r["status"], r["images"]) for r in json.loads(chunks[LINEAGE_TEXT])] == [
        ("imagine", "succeeded", 4)]
    im = PILImage.open(io.BytesIO(picture))
    assert im.format == "JPEG"  # a third smaller than a 256-colour PNG of the same card
    # the 2×2 grid fills the card's width, as in the live view: ~2 × 3:2 rows of ~270 px cells
    assert im.width == WIDTH and im.height > 2 * (WIDTH - 24) / 2 / 1.5
