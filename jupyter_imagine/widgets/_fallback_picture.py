"""The static picture that stands in for a live view where widgets do not render.

:func:`lineage_picture` draws a job view and every view under it (caption, prompt, pictures,
a progress bar or the error); :func:`gallery_picture` a contact sheet of a gallery. Both are drawn
with PIL's default font on a white card :data:`WIDTH` px wide and carry text (read it with
:func:`~jupyter_imagine.imaging.read_image_text`): the live view's key (:data:`KEY_TEXT`) and,
for a lineage, the jobs drawn (:data:`LINEAGE_TEXT`). Where they are displayed and kept current
is :mod:`._bundle`'s job.

The picture is a JPEG (quality :data:`QUALITY`) with the text as comments: the card is mostly
photographs, where a JPEG is about a third smaller than the 256-colour PNG it replaced and shows no
colour banding; the text stays legible. Every saved notebook keeps one per displayed view.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont, ImageOps

from ..imaging import to_jpeg
from ._labels import SPELLED, kind_label

if TYPE_CHECKING:  # pragma: no cover
    from ._job_view import JobView

__all__ = ["KEY_TEXT", "LINEAGE_TEXT", "QUALITY", "WIDTH", "gallery_picture", "lineage_picture"]

#: The text key that ties a static fallback to its live view.
KEY_TEXT = "jupyter_imagine.view"
#: The text key listing the jobs drawn (depth, id, kind, status, number of images), as JSON.
LINEAGE_TEXT = "jupyter_imagine.lineage"
#: Width of the fallback picture in pixels (default 560).
WIDTH = 560
#: JPEG quality of the fallback picture (default 80).
QUALITY = 80
_PAD = 10
_BG, _FG, _FG2, _LINE = (255, 255, 255), (31, 35, 40), (89, 99, 110), (216, 221, 227)
_ACCENT, _ERROR, _WARN = (25, 118, 210), (211, 47, 47), (245, 124, 0)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the small bitmap font
        return ImageFont.load_default()


def _text(value: str, limit: int = 90) -> str:
    for label, spelled in SPELLED.items():  # the default font has no emoji
        value = value.replace(label, spelled)
    value = "".join(c for c in value if ord(c) < 0x2000 or 0x2190 <= ord(c) < 0x2400)
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _image(data: bytes) -> PILImage.Image:
    return PILImage.open(io.BytesIO(data)).convert("RGB")


def _thumb(data: bytes, width: int) -> PILImage.Image:
    im = _image(data)
    if im.width > width:
        im = im.resize((width, max(1, round(im.height * width / im.width))),
                       PILImage.Resampling.LANCZOS)
    return im


def _pictures(images: list[bytes], layout: str, width: int) -> PILImage.Image | None:
    if not images:
        return None
    if layout == "grid" and len(images) > 1:
        cell = (width - 4) // 2
        tiles = [_thumb(d, cell) for d in images[:4]]
        th = max(t.height for t in tiles)
        rows = (len(tiles) + 1) // 2
        sheet = PILImage.new("RGB", (cell * 2 + 4, th * rows + 4 * (rows - 1)), _BG)
        for i, tile in enumerate(tiles):
            sheet.paste(tile, ((i % 2) * (cell + 4), (i // 2) * (th + 4)))
        return sheet
    return _thumb(images[0], width)


def _row(view: JobView, width: int, font: Any, small: Any) -> PILImage.Image:
    """One job of the lineage: caption, then its pictures, a progress bar or its error."""
    status = view.status
    what = kind_label(view.action, view.kind)
    caption = _text(f"{view.provider_label} {what}" + (" · sandbox" if view.sandbox else "")
                    + f" · {status}")
    prompt = _text(view.prompt)
    pictures = None
    if view.images:
        try:
            # the grid and a panorama fill the row, as in the live view; a single image ≤ 400 px
            pic_width = min(width, 400) if view.arrangement == "single" else width
            pictures = _pictures(list(view.images), view.arrangement, pic_width)
        except OSError:
            pictures = None
    height = 40 + (pictures.height + 6 if pictures else 0) + (16 if status != "succeeded" else 0)
    row = PILImage.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(row)
    draw.text((0, 0), caption, font=font, fill=_ERROR if status == "failed" else _FG)
    draw.text((0, 18), prompt, font=small, fill=_FG2)
    y = 38
    if pictures is not None:
        row.paste(pictures, (0, y))
        y += pictures.height + 6
    if status in ("queued", "running"):
        draw.rounded_rectangle((0, y + 4, width - 1, y + 10), radius=3, fill=(238, 240, 243))
        done = int((width - 1) * max(0.0, min(100.0, view.progress)) / 100)
        if done > 2:
            draw.rounded_rectangle((0, y + 4, done, y + 10), radius=3, fill=_ACCENT)
    elif status in ("failed", "cancelled"):
        line = view.error or ("cancelled" if status == "cancelled" else "failed")
        draw.text((0, y), _text(line, 100), font=small, fill=_ERROR)
    return row


def _sheet(rows: list[tuple[int, PILImage.Image]], key: str,
           text: dict[str, str] | None = None) -> bytes:
    """Stack ``(depth, picture)`` rows on a white card, children indented with a rule."""
    height = sum(im.height for _, im in rows) + _PAD * (len(rows) + 1)
    card = PILImage.new("RGB", (WIDTH, height), _BG)
    draw = ImageDraw.Draw(card)
    draw.rectangle((0, 0, WIDTH - 1, height - 1), outline=_LINE)
    y = _PAD
    for depth, im in rows:
        x = _PAD + 18 * depth
        if depth:
            draw.line((x - 10, y - _PAD // 2, x - 10, y + im.height), fill=_LINE, width=2)
        card.paste(im, (x, y))
        y += im.height + _PAD
    return to_jpeg(card, {KEY_TEXT: key, **(text or {})}, quality=QUALITY)


def lineage_picture(view: JobView, key: str) -> bytes:
    """The static picture (JPEG) of ``view`` and every view under it, with ``key`` inside."""
    font, small = _font(14), _font(12)
    lineage = view.lineage()
    rows = [(depth, _row(v, WIDTH - 2 * _PAD - 18 * depth, font, small)) for depth, v in lineage]
    shown = [{"depth": d, "id": v.job_id, "kind": v.kind, "status": v.status,
              "images": len(v.images)} for d, v in lineage]
    return _sheet(rows, key, {LINEAGE_TEXT: json.dumps(shown)})


def gallery_picture(rows: Sequence[dict[str, Any]], total: int, key: str,
                    tile: Callable[[str], bytes], limit: int = 12) -> bytes:
    """A contact sheet of the first ``limit`` of ``rows`` (default 12; the gallery's newest),
    titled with ``total``; ``tile(job_id)`` gives a tile's thumbnail bytes (``b""``: none).

    Like the live gallery, every tile is a square filled by its picture (centre-cropped), with
    the prompt under it, so the sheet has no holes whatever the aspect ratios.
    """
    font, small = _font(14), _font(12)
    rows = list(rows[:limit])
    cols, gap, caption = 4, 6, 18
    cell = (WIDTH - 2 * _PAD - (cols - 1) * gap) // cols
    head = PILImage.new("RGB", (WIDTH - 2 * _PAD, 18), _BG)
    title = f"jupyter_imagine gallery · {total} jobs"
    ImageDraw.Draw(head).text((0, 0), title, font=font, fill=_FG)
    lines = max(1, (len(rows) + cols - 1) // cols)
    pitch = cell + caption + gap
    grid = PILImage.new("RGB", (WIDTH - 2 * _PAD, lines * pitch - gap), _BG)
    draw = ImageDraw.Draw(grid)
    for i, r in enumerate(rows):
        x, y = (i % cols) * (cell + gap), (i // cols) * pitch
        data = tile(str(r["id"]))
        try:
            picture = ImageOps.fit(_image(data), (cell, cell), PILImage.Resampling.LANCZOS) \
                if data else None
        except OSError:
            picture = None
        if picture is not None:
            grid.paste(picture, (x, y))
        else:
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=(238, 240, 243))
            draw.text((x + 6, y + 6), str(r.get("status") or ""), font=small, fill=_FG2)
        draw.text((x, y + cell + 3), _text(str(r.get("prompt") or ""), 22), font=small, fill=_FG2)
    return _sheet([(0, head), (0, grid)], key)
