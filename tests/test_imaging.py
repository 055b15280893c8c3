"""jupyter_imagine.imaging: masks, PNG text, thumbnails, sizes."""

from __future__ import annotations

import base64
import io
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from jupyter_imagine import imaging
from jupyter_imagine.errors import InvalidMask, InvalidRequest


def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def _chunk_types(data: bytes) -> list[bytes]:
    types, pos = [], 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        types.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return types


def _idat(data: bytes) -> bytes:
    out, pos = b"", 8
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4 : pos + 8] == b"IDAT":
            out += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return out



def _picture(seed: int, size: tuple[int, int]) -> Image.Image:
    """A deterministic noisy RGB picture (compresses like a photo, not like a flat colour)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")




SIZE = (40, 30)


def _check_mask(png: bytes, white: np.ndarray) -> None:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "L" and image.size == SIZE
    values = np.asarray(image)
    assert set(np.unique(values)) <= {0, 255}
    assert np.array_equal(values == 255, white)


def _region() -> np.ndarray:
    white = np.zeros((SIZE[1], SIZE[0]), bool)
    white[5:20, 10:30] = True
    return white


def test_load_mask_from_pil_images():
    white = _region()
    grey = Image.fromarray(np.where(white, 200, 30).astype(np.uint8))
    _check_mask(imaging.load_mask(grey, SIZE), white)
    _check_mask(imaging.load_mask(grey.convert("RGB"), SIZE), white)
    _check_mask(
        imaging.load_mask(
            grey.point(lambda v: 255 * (v > 127)).convert("1", dither=Image.Dither.NONE), SIZE
        ),
        white,
    )
    _check_mask(imaging.load_mask(grey.convert("P"), SIZE), white)
    # a drawer's export: white strokes on a transparent background
    rgba = np.zeros((SIZE[1], SIZE[0], 4), np.uint8)
    rgba[white] = (255, 255, 255, 255)
    rgba[~white] = (255, 255, 255, 0)
    _check_mask(imaging.load_mask(Image.fromarray(rgba, "RGBA"), SIZE), white)


def test_load_mask_from_numpy_arrays():
    white = _region()
    _check_mask(imaging.load_mask(white, SIZE), white)
    _check_mask(imaging.load_mask(white.astype(np.uint8) * 255, SIZE), white)
    _check_mask(imaging.load_mask(white.astype(np.uint8), SIZE), white)  # 0/1 integers
    _check_mask(imaging.load_mask(white.astype(np.int64), SIZE), white)
    _check_mask(imaging.load_mask(white.astype(np.float32), SIZE), white)  # 0.0–1.0
    _check_mask(imaging.load_mask(white.astype(np.float64) * 255, SIZE), white)  # 0–255 floats
    rgb = np.repeat((white * 255).astype(np.uint8)[..., None], 3, axis=2)
    _check_mask(imaging.load_mask(rgb, SIZE), white)
    rgba = np.concatenate([rgb, np.full((*white.shape, 1), 255, np.uint8)], axis=2)
    _check_mask(imaging.load_mask(rgba, SIZE), white)
    _check_mask(imaging.load_mask(white[..., None], SIZE), white)


def test_load_mask_from_bytes_paths_and_data_uris(tmp_path):
    white = _region()
    image = Image.fromarray((white * 255).astype(np.uint8))
    png = _png(image)
    _check_mask(imaging.load_mask(png, SIZE), white)
    _check_mask(imaging.load_mask(bytearray(png), SIZE), white)
    _check_mask(imaging.load_mask(_png(image, "WEBP"), SIZE), white)
    _check_mask(imaging.load_mask(_png(image.convert("RGB"), "JPEG"), SIZE), white)
    path = tmp_path / "mask.png"
    path.write_bytes(png)
    _check_mask(imaging.load_mask(path, SIZE), white)
    _check_mask(imaging.load_mask(str(path), SIZE), white)
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    _check_mask(imaging.load_mask(uri, SIZE), white)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (42, "mask must be a PIL image, a numpy array, PNG bytes or a path, not int"),
        (None, "not NoneType"),
        ([[0, 1]], "not list"),
        (b"definitely not an image", "not an image"),
        (np.zeros((3, 4, 5)), "2-D"),
        (np.array(["a", "b"]).reshape(1, 2), "numbers or booleans"),
    ],
)
def test_load_mask_rejects_what_is_not_an_image(obj, message):
    with pytest.raises(InvalidMask, match=message) as info:
        imaging.load_mask(obj, SIZE)
    assert "\n" not in str(info.value)


def test_load_mask_file_errors(tmp_path):
    with pytest.raises(InvalidMask, match="does not exist"):
        imaging.load_mask(tmp_path / "missing.png", SIZE)
    junk = tmp_path / "junk.png"
    junk.write_text("hello")
    with pytest.raises(InvalidMask, match="not an image"):
        imaging.load_mask(junk, SIZE)


def test_load_mask_size_and_empty_errors():
    with pytest.raises(InvalidMask) as info:
        imaging.load_mask(np.ones((512, 512), bool), (1024, 1024))
    assert str(info.value) == (
        "mask is 512×512 but the image is 1024×1024; draw the mask at the image's size"
    )
    with pytest.raises(InvalidMask, match="the mask is empty: paint the region to redraw"):
        imaging.load_mask(np.zeros((SIZE[1], SIZE[0]), bool), SIZE)


# ----------------------------------------------------------------------------- decode_mask
def test_decode_mask_accepts_base64_with_or_without_prefix_and_raw_bytes():
    image = Image.new("L", (16, 8), 0)
    image.paste(255, (0, 0, 8, 8))
    png, webp = _png(image), _png(image, "WEBP")
    b64 = base64.b64encode(png).decode()
    for data in (
        b64,
        "data:image/png;base64," + b64,
        "data:image/webp;base64," + base64.b64encode(webp).decode(),
        b64.rstrip("="),
        png,
        b64.encode(),
    ):
        out = imaging.decode_mask(data)
        assert out.mode == "L" and out.size == (16, 8)
        assert np.asarray(out)[4, 2] > 127 and np.asarray(out)[4, 12] < 128


@pytest.mark.parametrize(
    "garbage",
    ["", "!!!not base64!!!", base64.b64encode(b"plain text").decode(), b"\x00\x01binary", 12],
)
def test_decode_mask_rejects_garbage(garbage):
    with pytest.raises(InvalidMask):
        imaging.decode_mask(garbage)


# ----------------------------------------------------------------------------- PNG text
def test_to_png_and_read_png_text_round_trip():
    text = {"prompt": "a lighthouse at dusk --ar 3:2", "emoji": "🔄 Vary (Region) — ünïcode"}
    data = imaging.to_png(Image.new("RGB", (4, 4), "red"), text)
    assert data.startswith(b"\x89PNG")
    assert imaging.read_png_text(data) == text
    assert Image.open(io.BytesIO(data)).getpixel((1, 1)) == (255, 0, 0)
    assert imaging.read_png_text(imaging.to_png(Image.new("L", (2, 2)))) == {}


def test_to_jpeg_keeps_text_as_comments_in_its_first_bytes():
    text = {"jupyter_imagine.view": "k3y" * 10, "emoji": "🔄 Vary (Region) — ünïcode"}
    data = imaging.to_jpeg(_picture(5, (64, 48)), text)
    im = Image.open(io.BytesIO(data))
    assert im.format == "JPEG" and im.size == (64, 48) and data.startswith(b"\xff\xd8\xff\xe0")
    assert imaging.read_image_text(data) == text
    assert b"k3y" * 10 in data[:200]  # where the live view looks for its key
    png = imaging.to_png(Image.new("RGB", (4, 4)), {"a": "b"})
    assert imaging.read_image_text(png) == {"a": "b"}
    assert imaging.read_image_text(imaging.to_jpeg(Image.new("L", (4, 4)))) == {}
    assert imaging.read_image_text(b"garbage") == {}
    with pytest.raises(ValueError, match="too long"):
        imaging.to_jpeg(Image.new("RGB", (4, 4)), {"big": "x" * 70_000})


def test_png_with_text_keeps_the_pixels_and_replaces_keys():
    image = _picture(3, (64, 48))
    data = imaging.to_png(image, {"prompt": "old", "keep": "me"})
    out = imaging.png_with_text(data, {"prompt": "new ✓", "job": "123"})
    assert _idat(out) == _idat(data)  # pixels not re-encoded
    assert imaging.read_png_text(out) == {"prompt": "new ✓", "keep": "me", "job": "123"}
    assert _chunk_types(out)[-1] == b"IEND"
    assert Image.open(io.BytesIO(out)).tobytes() == image.tobytes()


def test_png_text_with_non_png_data():
    jpeg = _png(Image.new("RGB", (4, 4)), "JPEG")
    assert imaging.png_with_text(jpeg, {"a": "b"}) == jpeg
    assert imaging.png_with_text(b"garbage", {"a": "b"}) == b"garbage"
    assert imaging.read_png_text(jpeg) == {}


def test_read_png_text_reads_compressed_chunks():
    info = PngImagePlugin.PngInfo()
    info.add_text("ztxt", "squeezed " * 20, zip=True)
    info.add_itxt("itxt", "ïtxt zipped", zip=True)
    buf = io.BytesIO()
    Image.new("L", (2, 2)).save(buf, "PNG", pnginfo=info)
    assert imaging.read_png_text(buf.getvalue()) == {
        "ztxt": "squeezed " * 20,
        "itxt": "ïtxt zipped",
    }
    assert zlib  # (the module is used by the implementation for zTXt)


# ----------------------------------------------------------------------------- thumbnails, sizes
def test_thumbnail_png_keeps_aspect():
    data = imaging.to_png(_picture(1, (1000, 400)))
    thumb = imaging.thumbnail_png(data, 256)
    image = Image.open(io.BytesIO(thumb))
    assert image.format == "PNG" and image.size == (256, 102)
    assert imaging.thumbnail_png(data).startswith(b"\x89PNG")
    assert max(imaging.image_size(imaging.thumbnail_png(data))) == 512


def test_thumbnail_png_small_png_unchanged_and_jpeg_converted():
    small = imaging.to_png(Image.new("RGB", (100, 50)))
    assert imaging.thumbnail_png(small, 512) == small
    jpeg = _png(Image.new("RGB", (800, 600), "blue"), "JPEG")
    thumb = imaging.thumbnail_png(jpeg, 400)
    assert thumb.startswith(b"\x89PNG") and imaging.image_size(thumb) == (400, 300)
    with pytest.raises(InvalidRequest):
        imaging.thumbnail_png(b"nope")


def test_image_size():
    assert imaging.image_size(_png(Image.new("RGB", (33, 21)))) == (33, 21)
    assert imaging.image_size(_png(Image.new("RGB", (33, 21)), "JPEG")) == (33, 21)
    with pytest.raises(InvalidRequest):
        imaging.image_size(b"not an image")


# ------------------------------------------------------------------ decompression bombs
@pytest.mark.parametrize("side", [40, 100])  # 1 600 px: Pillow's warning; 10 000: its error
def test_a_decompression_bomb_mask_is_an_invalid_mask(side, monkeypatch, tmp_path):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    bomb = _png(Image.new("L", (side, side), 255))
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    data_uri = "data:image/png;base64," + base64.b64encode(bomb).decode()
    for mask in (bomb, path, str(path), data_uri):
        with pytest.raises(InvalidMask, match="decompression bomb"):
            imaging.load_mask(mask, (side, side))
    with pytest.raises(InvalidMask, match="decompression bomb"):
        imaging.decode_mask(bomb)
    with pytest.raises(InvalidMask, match="decompression bomb"):
        imaging.decode_mask(base64.b64encode(bomb).decode())


def test_a_decompression_bomb_image_is_an_invalid_request(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    bomb = _png(Image.new("RGB", (100, 100), "white"))
    for fn in (imaging.thumbnail_png, imaging.image_size):
        with pytest.raises(InvalidRequest, match="decompression bomb"):
            fn(bomb)
    small = _png(Image.new("RGB", (20, 20), "white"))
    assert imaging.image_size(small) == (20, 20)


def test_image_format_reads_the_magic_bytes():
    from io import BytesIO

    from PIL import Image as PILImage

    from jupyter_imagine.imaging import image_format

    for fmt, name in (("PNG", "png"), ("JPEG", "jpeg"), ("GIF", "gif"), ("WEBP", "webp")):
        buf = BytesIO()
        PILImage.new("RGB", (4, 4), "red").save(buf, format=fmt)
        assert image_format(buf.getvalue()) == name
    assert image_format(b"") is None
    assert image_format(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None  # RIFF, but audio
    assert image_format(b"xxxxxxxxWEBP") is None  # WEBP only after RIFF
    assert image_format(b"<html>") is None
