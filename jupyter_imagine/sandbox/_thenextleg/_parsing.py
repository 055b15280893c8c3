"""Reading TNL requests and prompts: the token, flags, aspect ratios, buttons, replies."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageFilter
from starlette.requests import Request

from ...errors import InvalidRequest
from .. import _art
from .. import _http as http
from ._wire import (
    CODE_WORD,
    CODES,
    FAIL_AFTER,
    FLAG,
    KNOWN_FLAGS,
    NOTE_CODES,
    PANS,
    VARY_REGION,
    VERSION_FLAG,
    ApiError,
)

if TYPE_CHECKING:
    from ._records import Account, Message


# ------------------------------------------------------------------------------ parsing
def read_token(request: Request) -> str | None:
    if request.headers.get("authorization", "").strip():
        return http.bearer_key(request)  # the scheme is required
    return http.first_key(request.query_params.get("authToken"))


def invalid(message: str) -> ApiError:
    return ApiError(400, message)


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return value is True or value == 1


def iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def read_aspect(value: Any) -> str:
    return _art.read_aspect(value, "ar", invalid)


def read_flags(prompt: str) -> tuple[str, str | None]:
    """``(aspect ratio, INVALID_PARAMETER or None)`` from the ``--flags`` of ``prompt``."""
    ratio, code = "1:1", None
    for name, value in FLAG.findall(prompt):
        lowered = name.lower()
        if lowered not in KNOWN_FLAGS:
            code = "INVALID_PARAMETER"
        elif lowered in ("ar", "aspect"):
            try:
                _art.aspect_size(value)
                ratio = value.replace(" ", "")
            except InvalidRequest:
                code = "INVALID_PARAMETER"
    return ratio, code


def read_mode(prompt: str, default: str) -> str:
    """``relax``, ``turbo`` or ``fast`` from a ``--relax``/``--turbo``/``--fast`` flag, else
    ``default`` (the account's mode)."""
    match = re.search(r"(?:^|\s)--(relax|turbo|fast)\b", prompt)
    return match[1] if match else default


def read_version(prompt: str, default: str) -> str:
    match = VERSION_FLAG.search(prompt)
    return match[1] if match else default


def apply_magic_words(message: Message, prompt: str) -> None:
    """Apply the sandbox's magic words of ``prompt`` to ``message``."""
    lowered = prompt.lower()
    match = CODE_WORD.search(prompt)
    if match and match[1] in CODES:
        if match[1] in NOTE_CODES:
            message.note = match[1]
        else:
            message.code = match[1]
            message.fail_at = message.created + FAIL_AFTER
    elif "sandbox:fail" in lowered:
        message.code = "FAILED_TO_PROCESS_YOUR_COMMAND"
        message.fail_at = message.created + message.duration / 2
    elif "sandbox:hang" in lowered:
        message.hang = True


def upscale_buttons(parent: Message) -> list[str]:
    try:
        v6 = float(parent.version) >= 6
    except ValueError:
        v6 = False
    upscales = ["Upscale (Subtle)", "Upscale (Creative)"] if v6 else ["Upscale (2x)",
                                                                    "Upscale (4x)"]
    w, h = _art.aspect_size(parent.aspect_ratio)
    square = [] if w == h else ["Make Square"]
    return [
        "Vary (Strong)",
        "Vary (Subtle)",
        VARY_REGION,
        *upscales,
        "Zoom Out 2x",
        "Zoom Out 1.5x",
        "Custom Zoom",
        *square,
        *PANS,
    ]


def read_zoom(raw: Any) -> float:
    return 2.0 if raw in (None, "") else _art.read_zoom(raw, "zoom", invalid)


def ratio_of(width: int, height: int) -> str:
    """The simple ratio nearest ``width:height`` (512×341 → ``3:2``)."""
    near = Fraction(width, height).limit_denominator(20)
    return f"{near.numerator}:{near.denominator}"


def apply_setting(account: Account, toggle: str) -> str | None:
    """Apply one settings toggle; a content code when it cannot be applied."""
    if toggle.startswith(("MJ version ", "Niji version ")):
        account.version = toggle.rsplit(" ", 1)[1]
    elif toggle == "Public mode":
        account.stealth = False
    elif toggle == "Stealth mode":
        account.stealth = True
    elif toggle in ("Fast mode", "Turbo mode"):
        if account.fast_hours <= 0:
            return "NO_FAST_HOURS"
        account.mode = "fast" if toggle == "Fast mode" else "turbo"
    elif toggle == "Relax mode":
        account.mode = "relax"
    elif toggle == "Reset Settings":
        account.mode, account.stealth, account.version = "fast", False, "5.2"
        account.settings.clear()
    else:
        account.settings ^= {toggle}
    return None


def media_type_of(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    return "application/octet-stream"


def preview_of(grid: Image.Image, progress: int) -> Image.Image:
    """A progress preview: the result at a quarter size, blurred less as ``progress`` grows."""
    small = grid.resize((max(1, grid.width // 4), max(1, grid.height // 4)),
                        Image.Resampling.BILINEAR)
    radius = max(0.5, (100 - progress) / 100 * 10)
    return small.filter(ImageFilter.GaussianBlur(radius))


_STYLES = (
    "cinematic lighting",
    "soft pastel palette",
    "highly detailed matte painting",
    "in the style of a travel poster",
    "wide angle, atmospheric perspective",
    "oil on canvas",
    "volumetric fog",
    "muted earth tones",
    "vibrant colors, crisp focus",
    "dreamy, ethereal mood",
)
_SUBJECTS = ("a mountain valley at dusk", "a quiet shoreline", "rolling hills under clouds",
             "a misty forest", "a desert at golden hour", "a city skyline at night")


def descriptions(hint: str, seed: int, ratio: str) -> list[str]:
    """Four describe answers (no "1️⃣" markers): the source prompt's words, restyled."""
    rng = np.random.default_rng(seed)
    base = re.sub(r"\s--\S+(\s+(?!--)\S+)?", "", hint).strip()
    out = []
    for i in range(4):
        subject = base or _SUBJECTS[int(rng.integers(len(_SUBJECTS)))]
        picks = rng.choice(len(_STYLES), size=2 + i % 2, replace=False)
        out.append(f"{subject}, {', '.join(_STYLES[int(p)] for p in picks)} --ar {ratio}")
    return out
