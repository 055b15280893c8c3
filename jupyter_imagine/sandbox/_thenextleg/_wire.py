"""TNL's wire constants (codes, buttons, settings) and its error answer."""

from __future__ import annotations

import re

from starlette.responses import JSONResponse, Response

from .. import _http as http
from .._state import retry_headers

NAME = "thenextleg"
PREFIX = "/thenextleg"

DEFAULT_EXPIRE_MINS = 12.0
DEFAULT_QUEUE_LIMIT = 50
FAST_HOURS = 15.0
FAIL_AFTER = 1.0
QUEUED_FOR = 2.0
PROGRESS_STEPS = (0, 15, 31, 46, 62, 78, 93)
HANG_PROGRESS = 46
PNG_LEVEL = 1
DURATION = {
    "grid": 40.0,
    "upscale": 8.0,
    "upscale-highres": 16.0,
    "upscale-alt": 16.0,
    "describe": 10.0,
    "seed": 3.0,
    "info": 2.0,
    "settings": 2.0,
    "slash": 2.0,
}
#: GPU minutes a job costs in fast mode (turbo: twice).
GPU_MINUTES = {"grid": 1.0, "upscale": 0.0, "upscale-highres": 2.0, "upscale-alt": 2.0,
               "describe": 0.5}

#: Content codes of the seed page (what ``sandbox:code=`` accepts).
CODES = frozenset(
    {
        "ALREADY_REQUESTED_UPSCALE",
        "BOT_TOOK_TOO_LONG_TO_PROCESS_YOUR_COMMAND",
        "APPEAL_ACCEPTED",
        "APPEAL_REJECTED",
        "BANNED_PROMPT",
        "BLOCKED",
        "BUTTON_NOT_FOUND",
        "FAILED_TO_PROCESS_YOUR_COMMAND",
        "FAILED_TO_REQUEST",
        "IMAGE_BLOCKED",
        "INTERNAL_ERROR",
        "INVALID_LINK",
        "INVALID_PARAMETER",
        "JOB_ACTION_RESTRICTED",
        "JOB_QUEUED",
        "MODERATION_OUTAGE",
        "NO_FAST_HOURS",
        "PLEASE_SUBSCRIBE_TO_MJ_IN_YOUR_DASHBOARD",
        "QUEUE_FULL",
    }
)
#: Codes that do not end a message: shown while it is queued.
NOTE_CODES = frozenset({"JOB_QUEUED", "APPEAL_ACCEPTED"})

GRID_BUTTONS = ("U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4")
VARY_REGION = "🖌️ Vary (Region)"
PANS = {"⬅️": "left", "➡️": "right", "⬆️": "up", "⬇️": "down"}
ZOOMS = {"Zoom Out 2x": 2.0, "Zoom Out 1.5x": 1.5}
HIGHRES = {"Upscale (2x)": "2x", "Upscale (4x)": "4x"}
ALT_UPSCALES = {"Upscale (Subtle)": "subtle", "Upscale (Creative)": "creative"}
VARY_UPSCALE = {"Vary (Strong)": "strong", "Vary (Subtle)": "subtle"}
SETTINGS_TOGGLES = (
    "MJ version 6",
    "MJ version 5.2",
    "MJ version 5.1",
    "MJ version 5",
    "Niji version 6",
    "Niji version 5",
    "RAW Mode",
    "Stylize low",
    "Stylize med",
    "Stylize high",
    "Stylize very high",
    "Public mode",
    "Stealth mode",
    "Remix mode",
    "High Variation Mode",
    "Low Variation Mode",
    "Turbo mode",
    "Fast mode",
    "Relax mode",
    "Reset Settings",
)
SLASH_REPLIES = {
    "relax": "Done! Your jobs now do not cost fast-hours, but will take longer to run.",
    "fast": "Done! Your jobs now use fast-hours.",
    "private": "Stealth mode turned on",
    "stealth": "Stealth mode turned on",
}
SETTINGS_CONTENT = "Adjust your settings here."
KNOWN_FLAGS = frozenset(
    """ar aspect v version niji seed sameseed stylize s chaos c q quality no style tile relax fast
    turbo iw sref cref cw sw sv weird w stop repeat r raw p personalize video hd test testp
    creative draft exp oref ow profile zoom""".split()
)

FLAG = re.compile(r"(?:^|\s)--([A-Za-z][\w-]*)(?:\s+(?!--)(\S+))?")
SEED_FLAG = re.compile(r"(?:^|\s)--seed\s+(\d+)")
VERSION_FLAG = re.compile(r"(?:^|\s)--(?:v|version)\s+(\d+(?:\.\d+)?)")
CODE_WORD = re.compile(r"sandbox:code=([A-Z_]+)")
LEADING_URL = re.compile(r"^\s*(https?://\S+)\s*")
IMAGE_PATH = re.compile(
    re.escape(PREFIX)
    + r"/(?:mj-cdn/attachments|cdn)/([A-Za-z0-9]{20})/(grid|image|[1-4]|progress-\d{1,3})\.png$"
)
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


# ------------------------------------------------------------------------------ errors
class ApiError(http.ApiError):
    """An error answered in TNL's shape, ``{"success": false, "msg": …}``."""

    def response(self) -> Response:
        return error_response(self.status, self.message)


_DEFAULT_MSG = {
    400: "Bad request",
    401: "Unauthorized: send Authorization: Bearer <your-token> or ?authToken=",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
}


def error_response(status: int, msg: str | None = None, *, retry_after: float | None = None
                   ) -> JSONResponse:
    """TNL's error answer ``{"success": false, "msg": …}`` (a 429 always has ``Retry-After``)."""
    body = {"success": False, "msg": msg or _DEFAULT_MSG.get(status, "Request failed")}
    return JSONResponse(body, status_code=status, headers=retry_headers(status, retry_after))


def fault_response(status: int, *, retry_after: float | None = None) -> Response:
    """The answer to an injected fault, in TNL's error shape."""
    return error_response(status, retry_after=retry_after)
