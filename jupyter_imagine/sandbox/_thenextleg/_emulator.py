"""The TNL emulator put together, and its app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.routing import Route

from .. import _http as http
from .._state import SandboxState
from ._commands import Commands
from ._queries import Queries
from ._wire import NAME, error_response

if TYPE_CHECKING:
    from ._records import Handler


def build(state: SandboxState) -> Starlette:
    """The TNL app for ``state``, to mount at :data:`PREFIX`."""
    emulator = TheNextLeg(state)
    state.providers[NAME] = emulator
    return http.build_app(
        emulator.routes(), lambda request, status: error_response(status), redirect_slashes=False
    )


class TheNextLeg(Commands, Queries):
    """The TNL emulator: every command and query, and the routes."""

    def routes(self) -> list[Route]:
        table: list[tuple[str, Handler, list[str]]] = [
            ("/v2/imagine", self.imagine, ["POST"]),
            ("/v2/button", self.button, ["GET", "POST"]),
            ("/v2/describe", self.describe, ["GET", "POST"]),
            ("/v2/blend", self.blend, ["POST"]),
            ("/v2/seed", self.seed, ["POST"]),
            ("/v2/info", self.info, ["GET", "POST"]),
            ("/v2/settings", self.settings, ["GET", "POST"]),
            ("/v2/slash-commands", self.slash, ["GET", "POST"]),
            ("/v2/message/{message_id}", self.get_message, ["GET"]),
            ("/getImage", self.get_image, ["POST"]),
        ]
        routes = []
        for path, handler, methods in table:
            wrapped = self.endpoint(handler)
            routes.append(Route(path, wrapped, methods=methods))
            routes.append(Route(path + "/", wrapped, methods=methods))
        routes.append(
            Route("/{family:str}/attachments/{message_id}/{name}", self.image, methods=["GET"])
        )
        routes.append(Route("/{family:str}/{message_id}/{name}", self.image, methods=["GET"]))
        return routes
