"""neuroflash's wire constants (ids, limits, models) and its problem-document answers."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

from starlette.responses import JSONResponse, Response

from .. import _http as http
from .._state import retry_headers

NAME = "neuroflash"
PREFIX = "/neuroflash"
#: A prompt with this word fails its generation (422 ``generation-failed``).
FAIL_MESSAGE = "Image generation failed (sandbox:fail)"

#: The service account the package's client uses in the sandbox.
SANDBOX_CLIENT_ID = "jupyter-imagine-sandbox"
SANDBOX_CLIENT_SECRET = "sandbox-secret"
#: The one workspace every sandbox client belongs to.
WORKSPACE_ID = "5b0f6c1e-7a53-4d2b-9e61-0c0ffee5a4d0"
WORKSPACE_NAME = "Sandbox workspace"
#: The user who made the seeded images (not any client: deleting them is 403).
OTHER_USER_ID = "284915730021004417"
SEEDED_PROMPT = "a harbour at dawn"
#: The generation of the seeded images: sample data, which a history pull leaves out.
SEEDED_GENERATION_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "neuroflash-sandbox-seeded-generation"))

TOKEN_TTL = 14399
RATE_LIMIT = 10000
RATE_WINDOW = 60.0
STRICT_LIMIT = 5
MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 20
MAX_UPLOAD_BYTES = 10 * 2**20
MAX_UPSCALE_SIDE = 4096
PROBLEMS = "https://app.neuroflash.com/problems/"

IMAGE_API = "/api/image-service/v1/workspaces/{ws}"
USAGE_API = "/api/usage-service/v1/workspaces/{ws}"
WORKSPACE_API = "/api/workspace-service/v1/workspaces"

MEDIA = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
PIL_FORMAT = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
FORMAT_OF_PIL = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}
DATA_URI = re.compile(r"^data:([\w/+.-]*)((?:;[\w=.+-]+)*);base64,(.*)$", re.IGNORECASE | re.S)
CONTENT_PATH = re.compile(
    re.escape(PREFIX) + r"/api/image-service/v1/workspaces/([^/]+)/images/([^/]+)/content$"
)

_TEN_RATIOS = ["21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16"]

#: The catalogue ``image-models`` serves; ``longSide`` is the sandbox's own and not sent.
MODELS: list[dict[str, Any]] = [
    {
        "id": "nano-banana-2",
        "name": "Nano Banana 2",
        "provider": "fal.ai",
        "description": "Google's fast image model: text-to-image and prompt-driven edits.",
        "capabilities": ["text2image", "image2image"],
        "maxImages": 4,
        "aspectRatios": list(_TEN_RATIOS),
        "outputFormats": ["jpeg", "png", "webp"],
        "allowed": True,
        "order": 1,
        "longSide": 1024,
    },
    {
        "id": "seedream-4",
        "name": "Seedream 4",
        "provider": "ByteDance",
        "description": "Photorealistic text-to-image.",
        "capabilities": ["text2image"],
        "maxImages": 2,
        "aspectRatios": ["1:1", "16:9", "9:16", "4:3", "3:4"],
        "outputFormats": ["jpeg", "png"],
        "allowed": True,
        "order": 2,
        "longSide": 768,
    },
    {
        "id": "clarity-upscaler",
        "name": "Clarity Upscaler",
        "provider": "fal.ai",
        "description": "Detail-preserving 2x and 4x upscaling.",
        "capabilities": ["upscale"],
        "maxImages": 1,
        "aspectRatios": [],
        "outputFormats": ["jpeg", "png", "webp"],
        "upscaleFactors": [2, 4],
        "allowed": True,
        "order": 3,
        "longSide": MAX_UPSCALE_SIDE,
    },
    {
        "id": "gpt-image-1",
        "name": "GPT Image 1",
        "provider": "OpenAI",
        "description": "Not part of the sandbox plan.",
        "capabilities": ["text2image", "image2image"],
        "maxImages": 4,
        "aspectRatios": ["1:1", "3:2", "2:3"],
        "outputFormats": ["jpeg", "png", "webp"],
        "allowed": False,
        "order": 4,
        "longSide": 1024,
    },
]
MODELS_BY_ID = {m["id"]: m for m in MODELS}


def user_id(client_id: str) -> str:
    """The gateway user id (``createdByUserId``) of a sandbox client: 18 stable digits."""
    digest = hashlib.sha256(f"neuroflash-user:{client_id}".encode()).hexdigest()
    return f"{int(digest[:15], 16) % 10**18:018d}"


def derive(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big")


# ------------------------------------------------------------------------------ errors
class ApiError(http.ApiError):
    """An error answered as a problem document (``kind`` names its type, ``errors`` lists
    field errors)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, detail, headers=headers)
        self.kind = kind
        self.errors = errors

    def response(self, instance: str | None = None) -> Response:
        kind = self.kind or ("validation-error" if self.errors else None)
        return problem(
            self.status, self.message, kind=kind, instance=instance, errors=self.errors,
            headers=self.headers,
        )


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Quota Exceeded",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    422: "Unprocessable Content",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def problem(
    status: int,
    detail: str | None = None,
    *,
    kind: str | None = None,
    instance: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem-details answer (RFC 9457). ``kind`` names a ``PROBLEMS`` type, else about:blank."""
    body: dict[str, Any] = {
        "type": PROBLEMS + kind if kind else "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return JSONResponse(
        body, status_code=status, headers=headers or {}, media_type="application/problem+json"
    )


def fault_response(status: int, *, retry_after: float | None = None) -> Response:
    """The answer to an injected fault, as a problem document."""
    kind = "rate-limit" if status == 429 else "quota-exceeded" if status == 402 else None
    return problem(status, f"injected fault ({status})", kind=kind,
                   headers=retry_headers(status, retry_after))
