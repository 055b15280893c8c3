"""The APIFRAME emulator put together, and its app."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from .. import _http as http
from .._state import SandboxState
from ._jobs import Jobs
from ._tools import Tools
from ._wire import NAME, error_response


def build(state: SandboxState) -> Starlette:
    """The APIFRAME app for ``state``, to mount at :data:`PREFIX`."""
    emulator = Apiframe(state)
    state.providers[NAME] = emulator
    return http.build_app(emulator.routes(), lambda request, status: error_response(status))


class Apiframe(Jobs, Tools):
    """The APIFRAME emulator: every endpoint, and the routes."""

    def routes(self) -> list[Route]:
        post = {
            "/imagine": self.imagine,
            "/reroll": self.reroll,
            "/upscale-1x": self.upscale_1x,
            "/upscale-alt": self.upscale_alt,
            "/upscale-highres": self.upscale_highres,
            "/variations": self.variations,
            "/inpaint": self.inpaint,
            "/outpaint": self.outpaint,
            "/pan": self.pan,
            "/describe": self.describe,
            "/blend": self.blend,
            "/seed": self.seed,
            "/faceswap": self.faceswap,
            "/fetch": self.fetch,
            "/fetch-many": self.fetch_many,
        }
        routes = [Route(path, self.endpoint(fn), methods=["POST"]) for path, fn in post.items()]
        routes.append(Route("/account", self.endpoint(self.account, method="GET"), methods=["GET"]))
        routes.append(Route("/cdn/{task_id}/{name}", self.cdn, methods=["GET"]))
        return routes
