"""Reading APIFRAME requests: prompts, aspect ratios, indexes, modes, webhooks."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _art
from ._wire import IMAGE_NAMES, MAX_HIGHRES_SIDE, ApiError

if TYPE_CHECKING:
    from ._records import Task


# ------------------------------------------------------------------------------ parsing
def invalid(message: str) -> ApiError:
    return ApiError(400, message)


def read_prompt(body: dict[str, Any], *, required: bool = False) -> str:
    prompt = body.get("prompt")
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        if required:
            raise ApiError(400, "prompt is required")
        return ""
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt must be a string")
    return prompt.strip()


def read_aspect(value: Any) -> str:
    return _art.read_aspect(value, "aspect ratio", invalid)


def read_choice(body: dict[str, Any], key: str, choices: tuple[str, ...], words: str) -> str:
    """``body[key]``, required and one of ``choices`` (``words`` lists them in the 400)."""
    value = body.get(key)
    if value in (None, ""):
        raise ApiError(400, f"{key} is required")
    if value not in choices:
        raise ApiError(400, f"{key} must be {words}")
    return str(value)


def read_index(body: dict[str, Any]) -> int:
    raw = body.get("index")
    if raw is None or raw == "":
        raise ApiError(400, "index is required")
    if isinstance(raw, bool):
        raise ApiError(400, "index must be 1, 2, 3 or 4")
    if isinstance(raw, int) and 1 <= raw <= 4:
        return raw
    if isinstance(raw, str) and raw.strip() in ("1", "2", "3", "4"):
        return int(raw.strip())
    raise ApiError(400, "index must be 1, 2, 3 or 4")


def read_process_mode(body: dict[str, Any], default: str) -> str:
    mode = body.get("process_mode")
    if mode in (None, ""):
        return default
    if mode not in ("fast", "turbo"):
        raise ApiError(400, "process_mode must be fast or turbo")
    return str(mode)


def read_webhook(body: dict[str, Any]) -> tuple[str | None, str | None]:
    url, secret = body.get("webhook_url"), body.get("webhook_secret")
    if url in (None, ""):
        url = None
    elif not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
        raise ApiError(400, "webhook_url must be an http(s) URL")
    if secret in (None, ""):
        secret = None
    elif not isinstance(secret, str):
        raise ApiError(400, "webhook_secret must be a string")
    return url, secret


def check_highres(size: tuple[int, int]) -> None:
    if max(size) > MAX_HIGHRES_SIDE:
        raise ApiError(400, f"Image must be at most {MAX_HIGHRES_SIDE}x{MAX_HIGHRES_SIDE}")


def has_image(task: Task, name: str) -> bool:
    if task.kind in ("describe", "seed"):
        return False
    return name in IMAGE_NAMES if task.grid else name == "image.png"


def ratio_of(width: int, height: int) -> str:
    g = math.gcd(width, height) or 1
    w, h = width // g, height // g
    if max(w / h, h / w) > _art.MAX_RATIO or max(w, h) > 99:
        if width >= height:
            w, h = round(width / height * 10), 10
        else:
            w, h = 10, round(height / width * 10)
    return f"{w}:{h}"


_STYLES = (
    "digital painting",
    "soft volumetric light",
    "muted pastel palette",
    "cinematic wide shot",
    "matte painting",
    "watercolor texture",
    "high detail",
    "minimalist composition",
    "dramatic sky",
    "atmospheric haze",
    "golden hour glow",
    "vector illustration",
)
_SUBJECTS = (
    "a quiet landscape",
    "layered mountains",
    "a still lake",
    "distant hills",
    "a calm horizon",
    "rolling dunes",
    "a misty valley",
    "a coastline",
)


def descriptions(hint: str, seed: int, ratio: str) -> list[str]:
    """Four describe answers: the hint prompt's words (if known) dressed in styles."""
    rng = np.random.default_rng(seed)
    base = re.sub(r"\s--\S+(\s+(?!--)\S+)?", "", hint).strip()
    out = []
    for i, mark in enumerate(("1️⃣", "2️⃣", "3️⃣", "4️⃣")):
        subject = base or _SUBJECTS[int(rng.integers(len(_SUBJECTS)))]
        styles = rng.choice(len(_STYLES), size=2 + i % 2, replace=False)
        extra = ", ".join(_STYLES[int(s)] for s in styles)
        out.append(f"{mark} {subject}, {extra} --ar {ratio}")
    return out
