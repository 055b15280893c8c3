"""The neuroflash emulator put together, and its app."""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import _http as http
from .._state import SandboxState
from ._images import Images
from ._records import Quota
from ._tasks import Tasks
from ._wire import NAME, WORKSPACE_API, problem


def emulator(state: SandboxState) -> Neuroflash:
    """The neuroflash emulator of ``state`` (made on first call; both mounts share it)."""
    existing = state.providers.get(NAME)
    if not isinstance(existing, Neuroflash):
        existing = state.providers[NAME] = Neuroflash(state)
    return existing


def build(state: SandboxState) -> Starlette:
    """The neuroflash app for ``state``, to mount at :data:`PREFIX`."""
    return http.build_app(
        emulator(state).routes(), lambda request, status: problem(status, instance=request.url.path)
    )


class Neuroflash(Images, Tasks):
    """The neuroflash emulator: images, tasks, the sandbox controls, and the routes."""

    # ----------------------------------------------------------------- sandbox control
    async def settings(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                spec = json.loads(await request.body() or b"{}")
                if not isinstance(spec, dict):
                    raise ValueError("the body must be a JSON object")
                for key in ("token_ttl", "rate_window"):
                    if key in spec:
                        setattr(self, key, float(spec[key]))
                for key in ("rate_limit", "strict_limit"):
                    if key in spec:
                        setattr(self, key, int(spec[key]))
                if "strict_rate_limit" in spec:
                    self.strict_rate_limit = bool(spec["strict_rate_limit"])
                if "long_side" in spec:
                    self.long_side = None if spec["long_side"] is None else int(spec["long_side"])
                for name, value in (spec.get("quota") or {}).items():
                    if name not in Quota.__dataclass_fields__ or name == "usageTypeKey":
                        raise ValueError(f"unknown quota field {name!r}")
                    setattr(self.quotas["images"], name, type(getattr(self.quotas["images"],
                                                                      name))(value))
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(
            {
                "token_ttl": self.token_ttl,
                "rate_limit": self.rate_limit,
                "rate_window": self.rate_window,
                "strict_rate_limit": self.strict_rate_limit,
                "strict_limit": self.strict_limit,
                "long_side": self.long_side,
                "quota": self.quotas["images"].to_wire(),
            }
        )

    async def revoke(self, request: Request) -> Response:
        self.revoke_tokens()
        return JSONResponse({"revoked": True})

    def routes(self) -> list[Route]:
        img = "/api/image-service/v1/workspaces/{ws}"
        e = self.endpoint
        return [
            Route(WORKSPACE_API, e(self.workspaces), methods=["GET"]),
            Route("/api/usage-service/v1/workspaces/{ws}/quotas", e(self.quotas_),
                  methods=["GET"]),
            Route(img + "/image-models", e(self.models), methods=["GET"]),
            Route(img + "/images", e(self.list_images), methods=["GET"]),
            Route(img + "/images", e(self.upload, json_body=True), methods=["POST"]),
            Route(img + "/images/{image_id}", e(self.get_image), methods=["GET"]),
            Route(img + "/images/{image_id}", e(self.delete_image), methods=["DELETE"]),
            Route(img + "/images/{image_id}/content", e(self.content), methods=["GET"]),
            Route(img + "/image-generation-tasks", e(self.generate, json_body=True),
                  methods=["POST"]),
            Route(img + "/image-edit-tasks", e(self.edit, json_body=True), methods=["POST"]),
            Route(img + "/image-upscale-tasks", e(self.upscale, json_body=True),
                  methods=["POST"]),
            Route("/_sandbox/settings", self.settings, methods=["GET", "POST"]),
            Route("/_sandbox/revoke", self.revoke, methods=["POST"]),
        ]
