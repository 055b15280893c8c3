"""The Banatie emulator put together, and the API and CDN apps."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from .. import _http as http
from .._state import SandboxState
from ._flows import Flows
from ._generations import Generations
from ._images import Images
from ._keys import Keys
from ._live import Live
from ._wire import NAME, error_response


def emulator(state: SandboxState) -> Banatie:
    """The one :class:`Banatie` of ``state`` (made on first use; the API and CDN share it)."""
    found = state.providers.get(NAME)
    if not isinstance(found, Banatie):
        found = state.providers[NAME] = Banatie(state)
    return found


def _http_error(request: Request, status: int) -> Response:
    if status == 404:
        return error_response(404, "NOT_FOUND", f"Route {request.method} {request.url.path} "
                                                "not found")
    return error_response(status)


def build(state: SandboxState) -> Starlette:
    """The Banatie API app for ``state``, to mount at :data:`PREFIX`."""
    return http.build_app(emulator(state).routes(), _http_error)


def build_cdn(state: SandboxState) -> Starlette:
    """The Banatie CDN app for ``state``, to mount at :data:`CDN_PREFIX`."""
    return http.build_app(emulator(state).cdn_routes(), _http_error)


class Banatie(Keys, Generations, Flows, Images, Live):
    """The Banatie emulator: every resource, and the API's routes."""

    # ================================================================= routes
    def routes(self) -> list[Route | Mount]:
        e = self.endpoint
        v1 = "/api/v1"
        return [
            Route("/health", e(self.health, auth="none", counted=False), methods=["GET"]),
            Route("/api/info", e(self.info, auth="optional", counted=False), methods=["GET"]),
            Route("/api/bootstrap/initial-key", e(self.bootstrap, auth="none", counted=False),
                  methods=["POST"]),
            Route("/api/admin/keys", e(self.create_key, auth="master"), methods=["POST"]),
            Route("/api/admin/keys", e(self.list_keys, auth="master"), methods=["GET"]),
            Route("/api/admin/keys/{key_id}", e(self.revoke_key, auth="master"),
                  methods=["DELETE"]),
            Route(f"{v1}/generations", e(self.create_generation), methods=["POST"]),
            Route(f"{v1}/generations", e(self.list_generations), methods=["GET"]),
            Route(f"{v1}/generations/{{gen_id}}", e(self.get_generation), methods=["GET"]),
            Route(f"{v1}/generations/{{gen_id}}", e(self.update_generation), methods=["PUT"]),
            Route(f"{v1}/generations/{{gen_id}}", e(self.remove_generation),
                  methods=["DELETE"]),
            Route(f"{v1}/generations/{{gen_id}}/regenerate", e(self.regenerate_generation),
                  methods=["POST"]),
            Route(f"{v1}/generations/{{gen_id}}/retry", e(self.regenerate_generation),
                  methods=["POST"]),
            Route(f"{v1}/flows", e(self.create_flow), methods=["POST"]),
            Route(f"{v1}/flows", e(self.list_flows), methods=["GET"]),
            Route(f"{v1}/flows/{{flow_id}}", e(self.get_flow), methods=["GET"]),
            Route(f"{v1}/flows/{{flow_id}}", e(self.remove_flow), methods=["DELETE"]),
            Route(f"{v1}/flows/{{flow_id}}/generations", e(self.flow_generations),
                  methods=["GET"]),
            Route(f"{v1}/flows/{{flow_id}}/images", e(self.flow_images), methods=["GET"]),
            Route(f"{v1}/flows/{{flow_id}}/aliases", e(self.set_flow_aliases), methods=["PUT"]),
            Route(f"{v1}/flows/{{flow_id}}/aliases/{{alias}}", e(self.delete_flow_alias),
                  methods=["DELETE"]),
            Route(f"{v1}/flows/{{flow_id}}/regenerate", e(self.regenerate_flow),
                  methods=["POST"]),
            Route(f"{v1}/images/upload", e(self.upload), methods=["POST"]),
            Route(f"{v1}/images", e(self.list_images), methods=["GET"]),
            Route(f"{v1}/images/resolve/{{alias}}", e(self.resolve_alias), methods=["GET"]),
            Route(f"{v1}/images/{{ref}}", e(self.get_image), methods=["GET"]),
            Route(f"{v1}/images/{{ref}}", e(self.update_image), methods=["PUT"]),
            Route(f"{v1}/images/{{image_id}}", e(self.remove_image), methods=["DELETE"]),
            Route(f"{v1}/images/{{image_id}}/alias", e(self.set_image_alias), methods=["PUT"]),
            Route(f"{v1}/live/scopes", e(self.create_scope), methods=["POST"]),
            Route(f"{v1}/live/scopes", e(self.list_scopes), methods=["GET"]),
            Route(f"{v1}/live/scopes/{{slug}}", e(self.get_scope), methods=["GET"]),
            Route(f"{v1}/live/scopes/{{slug}}", e(self.update_scope), methods=["PUT"]),
            Route(f"{v1}/live/scopes/{{slug}}", e(self.delete_scope), methods=["DELETE"]),
            Route(f"{v1}/live/scopes/{{slug}}/regenerate", e(self.regenerate_scope),
                  methods=["POST"]),
            Route(f"{v1}/live", e(self.keyed_live), methods=["GET"]),
            Mount("/cdn", routes=self.cdn_routes()),
        ]
