"""The HTTP scaffolding every emulation shares: its error, body parsing, keys and app building.

Each emulation answers errors in its own provider's shape, so :class:`ApiError` carries only
the status, the message and extra headers; a subclass per provider adds that provider's fields
and says, in :meth:`ApiError.response`, how its body looks. :func:`json_body` parses a JSON
object body with the provider's own wording for what is wrong; :func:`bearer_key` and
:func:`first_key` read API keys; :func:`build_app` makes the Starlette app whose routing
errors (404, 405) also come in the provider's shape.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from .._secrets import get_logger

__all__ = ["ApiError", "bearer_key", "build_app", "first_key", "guarded", "json_body"]

logger = get_logger(__name__)


class ApiError(Exception):
    """An error an emulation answers with ``status``, in its provider's shape.

    Args:
        status: the HTTP status.
        message: the provider's error text (default: the status as text).
        headers: extra response headers (default none), e.g. ``WWW-Authenticate``.

    Subclasses add the provider's own fields and implement :meth:`response`.
    """

    def __init__(
        self, status: int, message: str | None = None, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message or str(status))
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """The answer in the provider's shape (each emulation's subclass says how)."""
        raise NotImplementedError


async def json_body(
    request: Request,
    invalid: Callable[[str], Exception],
    *,
    missing: str | None = None,
    not_json: str = "Invalid JSON body",
    not_object: str = "Request body must be a JSON object",
) -> dict[str, Any]:
    """The request's body as a JSON object.

    Args:
        request: the request.
        invalid: makes the provider's 400 error from a message.
        missing: the message for an empty body; ``None`` (default) reads it as ``{}``.
        not_json: the message for a body that is not JSON (default ``"Invalid JSON body"``).
        not_object: the message for JSON that is not an object.
    """
    raw = await request.body()
    if not raw.strip():
        if missing is not None:
            raise invalid(missing)
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise invalid(not_json) from None
    if not isinstance(body, dict):
        raise invalid(not_object)
    return body


def bearer_key(request: Request, *, bare: bool = False) -> str | None:
    """The key of ``Authorization: Bearer <key>`` (``None`` if there is none).

    With ``bare`` (default off) a header without the scheme, ``Authorization: <key>``, is the
    key itself; a lone ``Bearer`` is never a key.
    """
    value = request.headers.get("authorization", "").strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip() or None
    return (value or None) if bare else None


def first_key(*values: object) -> str | None:
    """The first of ``values`` that is a non-blank string, stripped (``None`` if none is)."""
    for value in values:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


async def guarded(
    request: Request,
    call: Callable[[], Awaitable[Response]],
    crash: Callable[[], Response],
    name: str,
) -> Response:
    """``await call()``, answering an :class:`ApiError` in its shape and a crash with ``crash()``.

    A crash (any other exception) is logged with the emulation's ``name`` and the path.
    """
    try:
        return await call()
    except ApiError as exc:
        return exc.response()
    except Exception:
        logger.exception("sandbox %s %s %s failed", name, request.method, request.url.path)
        return crash()


def build_app(
    routes: Sequence[BaseRoute],
    http_error: Callable[[Request, int], Response],
    *,
    redirect_slashes: bool = True,
) -> Starlette:
    """A Starlette app of ``routes`` whose routing errors answer ``http_error(request, status)``.

    ``redirect_slashes`` (default on) is Starlette's: off, ``/path/`` does not redirect.
    """

    async def on_http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return http_error(request, status)

    app = Starlette(routes=list(routes), exception_handlers={HTTPException: on_http_error})
    app.router.redirect_slashes = redirect_slashes
    return app
