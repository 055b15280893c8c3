"""TNL's account, settings and slash-command endpoints, message polling and images."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..._secrets import get_logger
from ._core import TheNextLegCore
from ._parsing import apply_setting, media_type_of
from ._wire import (
    DEFAULT_EXPIRE_MINS,
    DURATION,
    IMAGE_PATH,
    SETTINGS_CONTENT,
    SETTINGS_TOGGLES,
    SLASH_REPLIES,
    ApiError,
    error_response,
)

logger = get_logger(__name__)


class Queries(TheNextLegCore):
    """Account info, settings, slash commands, message polling and the images."""

    async def info(self, request: Request, body: dict[str, Any], key: str) -> Response:
        account = self.account(key)
        now = self.now()
        queued = [m for m in self.messages.values() if m.key == key and m.mj_job
                  and m.code is None
                  and m.phase(now, DEFAULT_EXPIRE_MINS * 60)[0] in ("queued", "running")]
        left = account.fast_hours
        pct = 100 * left / account.fast_total if account.fast_total else 0.0
        renews = (datetime.now(timezone.utc) + timedelta(days=17)).strftime("%B %d")
        content = {
            "User ID": account.user_id,
            "Subscription": f"Standard (Active monthly, renews next on {renews})",
            "Job Mode": {"fast": "Fast", "relax": "Relaxed", "turbo": "Turbo"}[account.mode],
            "Visibility Mode": "Stealth" if account.stealth else "Public",
            "Fast Time Remaining": f"{left:.2f}/{account.fast_total:.1f} hours ({pct:.2f}%)",
            "Lifetime Usage": f"{account.images} images ({account.gpu_hours:.2f} hours)",
            "Relaxed Usage": f"{account.relaxed_images} images",
            "Queued Jobs (fast)": str(sum(m.mode != "relax" for m in queued)),
            "Queued Jobs (relax)": str(sum(m.mode == "relax" for m in queued)),
            "Running Jobs": str(len(queued)) if queued else "None",
        }
        message = self.new(request, body, key, type="info", kind="info", prompt="",
                           aspect_ratio="1:1", seed=0, duration=DURATION["info"],
                           content=content)
        return self.accept(message)

    async def settings(self, request: Request, body: dict[str, Any], key: str) -> Response:
        toggle = body.get("settingsToggle")
        if request.method == "POST" and toggle in (None, ""):
            raise ApiError(400, "settingsToggle is required")
        account = self.account(key)
        code = None
        if toggle not in (None, ""):
            if toggle not in SETTINGS_TOGGLES:
                raise ApiError(400, "settingsToggle must be one of the buttons of GET "
                                    "/v2/settings: " + ", ".join(SETTINGS_TOGGLES))
            code = apply_setting(account, str(toggle))
        message = self.new(request, body, key, type="settings", kind="settings", prompt="",
                           aspect_ratio="1:1", seed=0, duration=DURATION["settings"],
                           content=SETTINGS_CONTENT, buttons=list(SETTINGS_TOGGLES))
        if code:
            self.fail(message, code)
        return self.accept(message)

    async def slash(self, request: Request, body: dict[str, Any], key: str) -> Response:
        cmd = body.get("cmd")
        if cmd in (None, ""):
            raise ApiError(400, "cmd is required")
        if cmd not in SLASH_REPLIES:
            raise ApiError(400, "cmd must be one of: relax, fast, private, stealth")
        account = self.account(key)
        code = None
        if cmd == "relax":
            account.mode = "relax"
        elif cmd == "fast":
            if account.fast_hours <= 0:
                code = "NO_FAST_HOURS"
            else:
                account.mode = "fast"
        else:
            account.stealth = True
        message = self.new(request, body, key, type="slash-commands", kind="slash", prompt="",
                           aspect_ratio="1:1", seed=0, duration=DURATION["slash"],
                           content=SLASH_REPLIES[str(cmd)])
        if code:
            self.fail(message, code)
        return self.accept(message)

    async def get_message(self, request: Request, body: dict[str, Any], key: str) -> Response:
        message = self.message(request.path_params["message_id"], key)
        raw = body.get("expireMins")
        expire = DEFAULT_EXPIRE_MINS
        if raw not in (None, ""):
            try:
                expire = float(raw)
            except (TypeError, ValueError):
                expire = math.nan
            if not math.isfinite(expire) or expire <= 0:
                raise ApiError(400, "expireMins must be a positive number of minutes")
        return JSONResponse(self.view(message, self.base_url(request), expire * 60))

    async def get_image(self, request: Request, body: dict[str, Any], key: str) -> Response:
        url = body.get("imgUrl")
        if not isinstance(url, str) or not url.strip():
            raise ApiError(400, "imgUrl is required")
        try:
            parsed = httpx.URL(url.strip())
        except (httpx.InvalidURL, TypeError):
            raise ApiError(400, "imgUrl must be an http(s) URL") from None
        if parsed.scheme not in ("http", "https"):
            raise ApiError(400, "imgUrl must be an http(s) URL")
        if self.internal(url) is None and IMAGE_PATH.search(parsed.path):
            raise ApiError(404, "Image not found")
        data = await self.source(url.strip())
        if data is None:
            raise ApiError(404 if self.internal(url) else 400, "Could not get the image")
        return Response(data, media_type=media_type_of(data))

    async def image(self, request: Request) -> Response:
        """The two CDNs: ``mj-cdn`` refuses direct fetches (403), ``cdn`` serves them."""
        family = request.path_params["family"]
        message = self.messages.get(request.path_params["message_id"])
        name = request.path_params["name"]
        if family not in ("mj-cdn", "cdn"):
            return error_response(404)
        if family == "mj-cdn":
            return Response("Forbidden: this CDN does not allow direct fetches; use /getImage",
                            status_code=403, media_type="text/plain")
        if message is None or not name.endswith(".png") or not self.served(
            message, name[:-4], family
        ):
            return error_response(404, "Image not found")
        try:
            data = await run_in_threadpool(self.png, message, name[:-4])
        except Exception:
            logger.exception("sandbox thenextleg could not draw %s of %s", name, message.id)
            return error_response(500)
        return Response(data, media_type="image/png",
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})
