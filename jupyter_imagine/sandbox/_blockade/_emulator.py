"""The Blockade Labs emulator put together, and its app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import _http as http
from .._state import SandboxState
from ._exports import Exports
from ._skyboxes import Skyboxes
from ._wire import API, NAME, error_response

if TYPE_CHECKING:
    from ._records import Handler


def build(state: SandboxState) -> Starlette:
    """The Blockade Labs app for ``state``, to mount at :data:`PREFIX`."""
    emulator = Blockade(state)
    state.providers[NAME] = emulator
    return http.build_app(emulator.routes(), lambda request, status: error_response(status))


class Blockade(Skyboxes, Exports):
    """The Blockade Labs emulator: skyboxes, exports, the CDN, and the routes."""

    def routes(self) -> list[Route]:
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/skybox/styles", self.styles),
            ("GET", "/skybox/families", self.families),
            ("POST", "/skybox", self.skybox),
            ("GET", "/skybox/export", self.export_types),
            ("POST", "/skybox/export", self.create_export),
            ("GET", "/skybox/export/{id}", self.get_export),
            ("DELETE", "/skybox/export/{id}", self.cancel_export),
            ("GET", "/generators", self.generators),
            ("POST", "/imagine/requests", self.imagine_request),
            ("DELETE", "/imagine/requests/pending", self.cancel_pending),
            ("GET", "/imagine/requests/obfuscated-id/{obfuscated_id}", self.get_obfuscated),
            ("GET", "/imagine/requests/{id}", self.get_request),
            ("DELETE", "/imagine/requests/{id}", self.cancel),
            ("GET", "/imagine/myRequests", self.my_requests),
            ("DELETE", "/imagine/deleteImagine/{id}", self.delete),
        ]
        by_path: dict[str, dict[str, Handler]] = {}
        for method, path, handler in table:
            by_path.setdefault(path, {})[method] = handler
        routes = []
        for path, handlers in by_path.items():
            wrapped = {m: self.endpoint(h) for m, h in handlers.items()}

            async def dispatch(request: Request, wrapped=wrapped) -> Response:
                return await wrapped[request.method](request)

            routes.append(Route(API + path, dispatch, methods=list(handlers)))
        routes.append(Route("/cdn/{rest:path}", self.cdn, methods=["GET"]))
        return routes
