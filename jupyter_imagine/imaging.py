"""Image work the product needs: masks, PNG text chunks, thumbnails, sizes and PNG encoding.

Everything here is pure and deterministic. :func:`load_mask` turns any mask-like object into
the black/white PNG the providers send, :func:`decode_mask` reads one off the wire;
:func:`png_with_text` / :func:`read_png_text` carry prompt and parameters inside a PNG;
:func:`thumbnail_png` and :func:`image_size` serve the widgets and the store,
:func:`image_format` tells an image's format from its first bytes; :func:`to_png`
and :func:`to_jpeg` encode (the latter with text as JPEG comments, read back, like a PNG's, by
:func:`read_image_text`). The sandbox's procedural art lives in ``jupyter_imagine.sandbox._art``.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from ._secrets import get_logger
from .errors import InvalidMask, InvalidRequest

__all__ = [
    "as_grayscale",
    "decode_mask",
    "image_format",
    "image_size",
    "load_mask",
    "open_image",
    "png_with_text",
    "read_image_text",
    "read_png_text",
    "thumbnail_png",
    "to_jpeg",
    "to_png",
]

logger = get_logger(__name__)

_F = np.float32


# ------------------------------------------------------------------------------ masks
def as_grayscale(image: Image.Image) -> Image.Image:
    """Grayscale, with any transparency composited over black (transparent = keep)."""
    if image.mode == "L":
        return image
    if image.mode in ("1", "I", "I;16", "F"):
        return image.convert("L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = np.asarray(image.convert("RGBA"), _F)
        lum = rgba[..., 0] * 0.299 + rgba[..., 1] * 0.587 + rgba[..., 2] * 0.114
        return Image.fromarray(np.clip(lum * rgba[..., 3] / 255 + 0.5, 0, 255).astype(np.uint8))
    return image.convert("L")


_BOMBS = (Image.DecompressionBombError, Image.DecompressionBombWarning)


def open_image(
    data: bytes, what: str, error: type[InvalidRequest] = InvalidRequest
) -> Image.Image:
    """Image ``data`` opened lazily (header read), refused when it has more pixels than
    Pillow's ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb, however Pillow's warnings are
    filtered).

    Raises:
        InvalidRequest: (or ``error``) too many pixels; ``UnidentifiedImageError``/``OSError``
            pass through for the caller to word.
    """
    limit = Image.MAX_IMAGE_PIXELS
    try:
        im = Image.open(io.BytesIO(data))
    except _BOMBS as exc:
        raise error(f"{what} has more than the {limit or 0:,} pixels accepted "
                    "(a decompression bomb?)") from exc
    if limit and im.width * im.height > limit:
        raise error(f"{what} is {im.width}×{im.height}, more than the {limit:,} pixels accepted "
                    "(a decompression bomb?)")
    return im


def _open_bytes(data: bytes, what: str) -> Image.Image:
    try:
        im = open_image(data, what, InvalidMask)
        im.load()
    except InvalidMask:
        raise
    except _BOMBS as exc:  # pragma: no cover - open_image already refused it
        raise InvalidMask(f"{what} has too many pixels (a decompression bomb?)") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidMask(f"{what} is not an image (PNG, WebP or JPEG expected)") from exc
    return im


def _array_to_l(arr: np.ndarray) -> Image.Image:
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or a.size == 0:
        raise InvalidMask(
            f"a mask array must be 2-D (h, w) or 3-D (h, w, 3|4), not shape {tuple(a.shape)}"
        )
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        top = float(np.nanmax(a)) if a.size else 0.0
        a = np.nan_to_num(a) * (255.0 if top <= 1.0 else 1.0)
        a = np.clip(a, 0, 255).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        if a.max() <= 1 and a.min() >= 0 and a.ndim == 2:
            a = a * 255  # 0/1 integer arrays are booleans
        a = np.clip(a, 0, 255).astype(np.uint8)
    else:
        raise InvalidMask(f"a mask array must hold numbers or booleans, not {a.dtype}")
    if a.ndim == 2:
        return Image.fromarray(a)
    return as_grayscale(
        Image.fromarray(np.ascontiguousarray(a), "RGB" if a.shape[2] == 3 else "RGBA")
    )


def _mask_image(mask: object) -> Image.Image:
    if isinstance(mask, Image.Image):
        return as_grayscale(mask)
    if isinstance(mask, np.ndarray):
        return _array_to_l(mask)
    if isinstance(mask, (bytes, bytearray, memoryview)):
        return as_grayscale(_open_bytes(bytes(mask), "the mask data"))
    if isinstance(mask, str) and mask.startswith("data:"):
        return decode_mask(mask)
    if isinstance(mask, (str, Path)):
        path = Path(mask).expanduser()
        if not path.is_file():
            raise InvalidMask(f"mask file {str(mask)!r} does not exist")
        return as_grayscale(_open_bytes(path.read_bytes(), f"mask file {str(mask)!r}"))
    raise InvalidMask(
        f"mask must be a PIL image, a numpy array, PNG bytes or a path, not {type(mask).__name__}"
    )


def load_mask(mask: object, size: tuple[int, int]) -> bytes:
    """A black/white 8-bit grayscale PNG of exactly ``size`` from any mask-like object.

    White (255) marks the region to redraw, black (0) what to keep; nothing else appears.

    Args:
        mask: a PIL image (transparency counts as black), a numpy array — 2-D bool, uint8
            (> 127 is white), float (> 0.5 is white; values above 1 are read as 0–255), integer
            arrays holding only 0 and 1 are booleans, or 3-D RGB/RGBA —, PNG/WebP/JPEG bytes,
            a ``data:image/...;base64,`` string, or a path (``str`` or ``pathlib.Path``).
        size: ``(width, height)`` of the image the mask is for.

    Raises:
        InvalidMask: not an image, a missing file, the wrong size, an all-black mask, or more
            pixels than Pillow's ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb).
    """
    im = _mask_image(mask)
    size = (int(size[0]), int(size[1]))
    if im.size != size:
        raise InvalidMask(
            f"mask is {im.width}×{im.height} but the image is {size[0]}×{size[1]}; "
            "draw the mask at the image's size"
        )
    binary = (np.asarray(im) > 127).astype(np.uint8) * 255
    if not binary.any():
        raise InvalidMask("the mask is empty: paint the region to redraw in white")
    return to_png(Image.fromarray(binary, "L"))


_DATA_URI = re.compile(r"^\s*data:[\w/+.-]*(?:;[\w=.-]+)*;base64,", re.IGNORECASE)


def decode_mask(data: str | bytes) -> Image.Image:
    """A mask sent over HTTP as an ``"L"`` image (values kept; > 127 means redraw).

    Args:
        data: base64 text, with or without a ``data:image/...;base64,`` prefix, of a PNG or
            WebP (JPEG also works); or the raw image bytes (or base64 as bytes).

    Raises:
        InvalidMask: the data is not base64 of an image, nor an image.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        try:
            return as_grayscale(_open_bytes(raw, "the mask data"))
        except InvalidMask as exc:
            if isinstance(exc.__cause__, _BOMBS) or "decompression bomb" in str(exc):
                raise
            try:
                data = raw.decode("ascii")
            except UnicodeDecodeError:
                raise InvalidMask("the mask data is not an image") from None
    if not isinstance(data, str):
        raise InvalidMask(f"a mask must be base64 text or bytes, not {type(data).__name__}")
    text = _DATA_URI.sub("", data, count=1)
    text = "".join(text.split())
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:
            raw = base64.urlsafe_b64decode(text)
        except (binascii.Error, ValueError):
            raise InvalidMask("the mask is not valid base64") from None
    if not raw:
        raise InvalidMask("the mask is empty data")
    return as_grayscale(_open_bytes(raw, "the mask data"))


# -------------------------------------------------------------------------- PNG bytes
_PNG_SIG = b"\x89PNG\r\n\x1a\n"


def to_png(
    image: Image.Image, text: Mapping[str, str] | None = None, *, compress_level: int = 6
) -> bytes:
    """``image`` as PNG bytes, with ``text`` (default none) as tEXt/iTXt chunks.

    Values that are not Latin-1 go into iTXt (UTF-8), the rest into tEXt. ``compress_level``
    is zlib's 0–9 (default 6; 1 is about four times faster and a quarter bigger).
    """
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_text(str(key), str(value))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info, compress_level=compress_level)
    return buf.getvalue()


def _chunks(data: bytes):
    """Yield ``(type, payload, start, end)`` for each chunk of PNG ``data``."""
    pos = len(_PNG_SIG)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return
        yield ctype, data[pos + 8 : pos + 8 + length], pos, end
        pos = end


def _text_keyword(chunk_type: bytes, payload: bytes) -> str | None:
    if chunk_type not in (b"tEXt", b"zTXt", b"iTXt"):
        return None
    return payload.split(b"\0", 1)[0].decode("latin-1")


def _text_chunk(key: str, value: str) -> bytes:
    keyword = key.encode("latin-1", "replace")[:79] or b"?"
    try:
        ctype, payload = b"tEXt", keyword + b"\0" + value.encode("latin-1")
    except UnicodeEncodeError:
        ctype, payload = b"iTXt", keyword + b"\0\0\0\0\0" + value.encode("utf-8")
    crc = zlib.crc32(ctype + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def png_with_text(data: bytes, text: Mapping[str, str]) -> bytes:
    """PNG ``data`` with ``text`` chunks added before IEND, pixels untouched.

    A chunk already carrying one of the keys is replaced. Data that is not a PNG is returned
    unchanged.
    """
    if not data.startswith(_PNG_SIG) or not text:
        return data
    keys = {str(k) for k in text}
    out = [_PNG_SIG]
    ended = False
    for ctype, payload, start, end in _chunks(data):
        if _text_keyword(ctype, payload) in keys:
            continue
        if ctype == b"IEND":
            out.extend(_text_chunk(str(k), str(v)) for k, v in text.items())
            ended = True
        out.append(data[start:end])
    if not ended:
        logger.debug("png_with_text: no IEND chunk; data returned unchanged")
        return data
    return b"".join(out)


def read_png_text(data: bytes) -> dict[str, str]:
    """The tEXt, zTXt and iTXt chunks of PNG ``data`` as a dict (empty for other data)."""
    if not data.startswith(_PNG_SIG):
        return {}
    found: dict[str, str] = {}
    for ctype, payload, _, _ in _chunks(data):
        try:
            if ctype == b"tEXt":
                key, _, value = payload.partition(b"\0")
                found[key.decode("latin-1")] = value.decode("latin-1")
            elif ctype == b"zTXt":
                key, _, rest = payload.partition(b"\0")
                found[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
            elif ctype == b"iTXt":
                key, _, rest = payload.partition(b"\0")
                compressed, _method = rest[0], rest[1]
                _lang, _, rest = rest[2:].partition(b"\0")
                _tkey, _, value = rest.partition(b"\0")
                if compressed:
                    value = zlib.decompress(value)
                found[key.decode("latin-1")] = value.decode("utf-8")
        except (zlib.error, UnicodeDecodeError, IndexError):
            logger.debug("read_png_text: skipped a malformed %s chunk", ctype)
    return found


_JPEG_SOI, _JPEG_COM = b"\xff\xd8", 0xFE


def to_jpeg(
    image: Image.Image, text: Mapping[str, str] | None = None, *, quality: int = 80
) -> bytes:
    """``image`` as baseline JPEG bytes (``quality`` default 80, 4:2:0), with each ``text`` item
    as a comment segment ``key\\0value`` (UTF-8) right after the JFIF header, so it sits in
    the first bytes of the file.

    Raises:
        ValueError: one item is longer than a segment can hold (65,533 bytes).
    """
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
    data = buf.getvalue()
    segments = []
    for key, value in (text or {}).items():
        payload = f"{key}\0{value}".encode()
        if len(payload) > 65533:
            raise ValueError(f"JPEG comment {key!r} is too long ({len(payload)} bytes)")
        segments.append(struct.pack(">BBH", 0xFF, _JPEG_COM, len(payload) + 2) + payload)
    at = 2  # after the start marker and the JFIF header, which readers expect first
    if data[2:4] == b"\xff\xe0":
        at += 2 + struct.unpack(">H", data[4:6])[0]
    return data[:at] + b"".join(segments) + data[at:]


def _read_jpeg_text(data: bytes) -> dict[str, str]:
    found: dict[str, str] = {}
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: no more header segments
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker == _JPEG_COM:
            key, sep, value = data[pos + 4 : pos + 2 + length].partition(b"\0")
            if sep:
                try:
                    found[key.decode()] = value.decode()
                except UnicodeDecodeError:
                    logger.debug("read_image_text: skipped a comment that is not UTF-8")
        pos += 2 + length
    return found


def read_image_text(data: bytes) -> dict[str, str]:
    """The text stored in image ``data``: a PNG's text chunks (:func:`read_png_text`) or a
    JPEG's ``key\\0value`` comments (:func:`to_jpeg`); empty for anything else."""
    if data.startswith(_JPEG_SOI):
        return _read_jpeg_text(data)
    return read_png_text(data)


def thumbnail_png(data: bytes, size: int = 512) -> bytes:
    """A PNG thumbnail of image ``data`` whose long side is at most ``size`` (default 512).

    The aspect ratio is kept; a PNG that is already small enough is returned as is.

    Raises:
        InvalidRequest: ``data`` is not an image, or has too many pixels.
    """
    try:
        im = open_image(data, "the image")
        if im.format == "PNG" and max(im.size) <= size:
            return data
        im.load()
    except (UnidentifiedImageError, OSError, *_BOMBS) as exc:
        raise InvalidRequest("cannot make a thumbnail: the data is not an image") from exc
    if im.mode not in ("RGB", "RGBA", "L", "LA"):
        im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    return to_png(im)


#: Magic bytes → format: (what, at offset, format).
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (_PNG_SIG, 0, "png"),
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"WEBP", 8, "webp"),  # after b"RIFF" and the length
)


def image_format(data: bytes) -> str | None:
    """``"png"``, ``"jpeg"``, ``"gif"`` or ``"webp"`` from the magic bytes of ``data``, else
    ``None``. Reads nothing past byte 12 (no decoding; see :func:`image_size` for that)."""
    for magic, offset, name in _MAGIC:
        if data[offset : offset + len(magic)] == magic and (offset == 0 or data[:4] == b"RIFF"):
            return name
    return None


def image_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of image ``data`` (reads the header only).

    Raises:
        InvalidRequest: ``data`` is not an image, or has too many pixels.
    """
    try:
        with open_image(data, "the image") as im:
            return im.size
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidRequest("the data is not an image") from exc
