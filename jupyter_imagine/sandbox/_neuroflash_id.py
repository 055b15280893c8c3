"""neuroflash's OAuth2 token endpoint (Zitadel, ``https://id.neuroflash.com``) emulated at
``{root}/neuroflash-id``.

``POST /oauth/v2/token``, form-encoded (``application/x-www-form-urlencoded``):
``grant_type=client_credentials``, ``client_id``, ``client_secret`` (or the pair as HTTP Basic
auth), optional ``scope`` → ``200 {"access_token", "token_type": "Bearer", "expires_in",
"scope"}`` with ``Cache-Control: no-store``.

Errors are OAuth 2.0's (RFC 6749 §5.2): ``{"error": …, "error_description": …}``

- bad or missing client credentials → 401 ``invalid_client`` (with ``WWW-Authenticate: Basic``);
- a missing ``grant_type`` or a body that is not form-encoded → 400 ``invalid_request``;
- another grant → 400 ``unsupported_grant_type``;
- any other method → 405 ``invalid_request``.

Which credentials pass, how long tokens live (``token_ttl`` on the sandbox clock) and the other
knobs are the shared emulator's: see :mod:`._neuroflash`.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qs, unquote_plus

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._secrets import get_logger
from ._neuroflash import emulator
from ._state import SandboxState, retry_headers

__all__ = ["NAME", "PREFIX", "build", "fault_response", "oauth_error"]

logger = get_logger(__name__)

NAME = "neuroflash-id"
PREFIX = "/neuroflash-id"
TOKEN_PATH = "/oauth/v2/token"

_DESCRIPTIONS = {
    "invalid_client": "client authentication failed",
    "invalid_request": "the request is malformed",
    "unsupported_grant_type": "only the client_credentials grant is supported",
    "server_error": "the server encountered an unexpected error",
    "temporarily_unavailable": "the server is temporarily unavailable",
    "slow_down": "too many requests",
}


def oauth_error(
    status: int,
    error: str,
    description: str | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An OAuth 2.0 error answer."""
    body = {"error": error, "error_description": description or _DESCRIPTIONS.get(error, error)}
    extra = {"Cache-Control": "no-store", **(headers or {})}
    return JSONResponse(body, status_code=status, headers=extra)


def fault_response(status: int, *, retry_after: float | None = None) -> Response:
    """The answer to an injected fault, as an OAuth error."""
    error = {
        401: "invalid_client",
        429: "slow_down",
        503: "temporarily_unavailable",
    }.get(status, "server_error" if status >= 500 else "invalid_request")
    return oauth_error(status, error, f"injected fault ({status})",
                       headers=retry_headers(status, retry_after))


def _basic(request: Request) -> tuple[str | None, str | None]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None, None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None, None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None, None
    return unquote_plus(client_id), unquote_plus(secret)


def build(state: SandboxState) -> Starlette:
    """The token endpoint's app for ``state``, to mount at :data:`PREFIX`."""
    emu = emulator(state)

    async def token(request: Request) -> Response:
        if request.method != "POST":
            return oauth_error(405, "invalid_request", "use POST", headers={"Allow": "POST"})
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            return oauth_error(
                400, "invalid_request", "the body must be application/x-www-form-urlencoded"
            )
        raw = (await request.body()).decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        grant = form.get("grant_type")
        if not grant:
            return oauth_error(400, "invalid_request", "grant_type is required")
        if grant != "client_credentials":
            return oauth_error(400, "unsupported_grant_type")
        client_id, secret = _basic(request)
        if client_id is None:
            client_id, secret = form.get("client_id"), form.get("client_secret")
        if not emu.check_client(client_id, secret):
            return oauth_error(
                401, "invalid_client", headers={"WWW-Authenticate": 'Basic realm="neuroflash"'}
            )
        assert client_id is not None
        access, ttl = emu.issue_token(client_id)
        body = {"access_token": access, "token_type": "Bearer", "expires_in": ttl}
        if form.get("scope"):
            body["scope"] = form["scope"]
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return oauth_error(status, "invalid_request" if status < 500 else "server_error",
                           "not found" if status == 404 else None)

    return Starlette(
        routes=[Route(TOKEN_PATH, token, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])],
        exception_handlers={HTTPException: http_error},
    )
