"""APIFRAME's wire constants (durations, credits) and its error answer."""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import JSONResponse, Response

from .. import _http as http
from .._state import retry_headers

NAME = "apiframe"
PREFIX = "/apiframe"

EMAIL = "sandbox@jupyter-imagine.local"
START_CREDITS = 10000
FAIL_MESSAGE = "Midjourney could not complete the job (sandbox:fail)"
HANG_PERCENT = 50

DURATION = {
    "imagine": 40.0,
    "reroll": 40.0,
    "variation": 40.0,
    "inpaint": 40.0,
    "outpaint": 40.0,
    "pan": 40.0,
    "blend": 40.0,
    "upscale": 8.0,
    "upscale-alt": 16.0,
    "upscale-highres": 16.0,
    "describe": 10.0,
    "faceswap": 10.0,
    "seed": 6.0,
}
CREDITS = {
    "imagine": 4,
    "reroll": 4,
    "variation": 4,
    "inpaint": 4,
    "outpaint": 4,
    "pan": 4,
    "blend": 4,
    "upscale-alt": 4,
    "upscale": 2,
    "describe": 2,
    "seed": 2,
    "faceswap": 2,
    "upscale-highres-2x": 1,
    "upscale-highres-4x": 2,
}
IMAGE_NAMES = ("grid.png", "1.png", "2.png", "3.png", "4.png")
MAX_HIGHRES_SIDE = 2048
PNG_LEVEL = 1  # fast zlib: the sandbox's images travel over loopback or in-process

SEED_FLAG = re.compile(r"(?:^|\s)--seed\s+(\d+)")
AR_FLAG = re.compile(r"(?:^|\s)--(?:ar|aspect)\s+(\S+)")
CDN_PATH = re.compile(re.escape(PREFIX) + r"/cdn/([0-9a-fA-F-]{36})/(grid|image|[1-4])\.png$")


# ------------------------------------------------------------------------------ errors
class ApiError(http.ApiError):
    """An error answered in APIFRAME's shape."""

    def response(self) -> Response:
        return error_response(self.status, self.message)


_DEFAULT_MSG = {
    400: "Invalid request",
    402: "Not enough credits",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    422: "Invalid request",
    429: "Too many requests",
}


def error_response(
    status: int, msg: str | None = None, *, retry_after: float | None = None
) -> JSONResponse:
    """APIFRAME's error answer: ``{}`` for 401 and 5xx, ``{"errors": [{"msg"}]}`` otherwise."""
    if status == 401 or status >= 500:
        body: Any = {}
    else:
        body = {"errors": [{"msg": msg or _DEFAULT_MSG.get(status, "Request failed")}]}
    return JSONResponse(body, status_code=status, headers=retry_headers(status, retry_after))


def fault_response(status: int, *, retry_after: float | None = None) -> Response:
    """The answer to an injected fault, in APIFRAME's error shape."""
    return error_response(status, retry_after=retry_after)
