"""Banatie's wire constants and its answers: the success envelope and the error envelope."""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.responses import JSONResponse, Response

from .. import _http as http
from .._state import retry_headers

NAME = "banatie"
PREFIX = "/banatie"
CDN_PREFIX = "/banatie-cdn"

ORG_SLUG = "sandbox"
PROJECT_SLUG = "notebook"
ORG_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "jupyter-imagine:banatie:org"))
PROJECT_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "jupyter-imagine:banatie:project"))
VERSION = "1.0.0-sandbox"

STATUSES = ("pending", "processing", "success", "failed")
TEMPLATES = ("general", "photorealistic", "illustration", "minimalist", "sticker", "product",
             "comic")
TECHNICAL_ALIASES = ("@last", "@first", "@upload")
ALIAS_RE = re.compile(r"^@[A-Za-z0-9_-]{1,100}$")
PROMPT_ALIAS_RE = re.compile(r"(?<![\w@.])@[A-Za-z0-9_-]{1,100}")
SCOPE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
MAX_REFERENCES = 3
MAX_UPLOAD_BYTES = 5 * 2**20
UPLOAD_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
DEFAULT_LIMIT, MAX_LIMIT = 20, 100

REAL_API_LIMIT = 100
REAL_LIVE_LIMIT = 10
DEFAULT_API_LIMIT = 10_000
DEFAULT_LIVE_LIMIT = 1_000
RATE_WINDOW = 3600.0
DEFAULT_SCOPE_LIMIT = 30
PROJECT_KEY_DAYS = 90
CACHE_CONTROL = "public, max-age=31536000"

FAIL_MESSAGE = "Image generation failed (sandbox:fail)"

ENHANCE = {
    "general": "highly detailed, balanced composition, soft natural light",
    "photorealistic": "photorealistic, 85mm lens, shallow depth of field, natural light",
    "illustration": "digital illustration, clean lines, rich colours",
    "minimalist": "minimalist composition, negative space, muted palette",
    "sticker": "die-cut sticker style, bold outline, flat colours",
    "product": "studio product shot, seamless background, softbox lighting",
    "comic": "comic book style, ink outlines, halftone shading",
}

_DEFAULT_CODE = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALIAS_CONFLICT",
    429: "RATE_LIMIT_EXCEEDED",
}
_DEFAULT_MESSAGE = {
    400: "Invalid request",
    401: "Missing or invalid API key",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    429: "Too many requests",
}


# ------------------------------------------------------------------------------ answers
class ApiError(http.ApiError):
    """An error answered in Banatie's envelope (``code`` is Banatie's error code)."""

    message: str

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, message, headers=headers)
        self.code = code

    def response(self, headers: dict[str, str] | None = None) -> Response:
        """The envelope, with ``headers`` (default none) under this error's own."""
        return error_response(
            self.status, self.code, self.message, headers={**(headers or {}), **self.headers}
        )


def error_response(
    status: int,
    code: str | None = None,
    message: str | None = None,
    *,
    retry_after: float | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """``{"success": false, "error": {"message", "code"}}``; a 429 always has ``Retry-After``."""
    if code is None:
        code = _DEFAULT_CODE.get(status, "INTERNAL_ERROR" if status >= 500 else "ERROR")
    if message is None:
        message = _DEFAULT_MESSAGE.get(status, "Internal server error")
    out = dict(headers or {})
    if "Retry-After" not in out:
        out.update(retry_headers(status, retry_after, whole_seconds=True))
    body = {"success": False, "error": {"message": message, "code": code}}
    return JSONResponse(body, status_code=status, headers=out)


def fault_response(status: int, *, retry_after: float | None = None) -> Response:
    """The answer to an injected fault, in Banatie's error envelope."""
    return error_response(status, retry_after=retry_after)


def ok(data: Any, status: int = 200, pagination: dict[str, Any] | None = None) -> JSONResponse:
    """Banatie's success envelope."""
    body: dict[str, Any] = {"success": True, "data": data}
    if pagination is not None:
        body["pagination"] = pagination
    return JSONResponse(body, status_code=status)


def bad_request(message: str, code: str = "VALIDATION_ERROR") -> ApiError:
    return ApiError(400, code, message)


def not_found(what: str, code: str) -> ApiError:
    return ApiError(404, code, f"{what} not found")
