"""The sandbox's outer middleware: request counting, body-size limit, control guard, faults.

Every request passes here before any emulator sees it. Control routes (``/_sandbox/*``) are
not counted and never faulted, but they are refused (403) when the app was built with a
control token that the request does not carry in ``x-sandbox-token``, or with control
disabled. A request whose body is larger than the limit gets a 413 in the provider's error
shape. Faults (see :mod:`._faults`) answer, hold or drop matching requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._control import CONTROL_PREFIX
from ._faults import Fault, InjectedConnectError, InjectedDisconnect
from ._state import SandboxState

__all__ = ["DEFAULT_MAX_BODY", "ControlPolicy", "SandboxMiddleware"]

#: The default request-body limit in bytes (32 MiB: uploads are images and masks).
DEFAULT_MAX_BODY = 32 * 1024 * 1024

#: Answers an error for a path: ``(path, status, retry_after, body) -> Response``.
ErrorResponder = Callable[[str, int, "float | None", Any], Response]


@dataclass(frozen=True)
class ControlPolicy:
    """Who may use the ``/_sandbox/*`` routes.

    Attributes:
        enabled: ``False`` refuses every control request (default ``True``).
        token: when set, a control request must carry it in ``x-sandbox-token``
            (default ``None``: no token needed).
    """

    enabled: bool = True
    token: str | None = None

    def allows(self, scope: Scope) -> bool:
        if not self.enabled:
            return False
        if self.token is None:
            return True
        given = dict(scope["headers"]).get(b"x-sandbox-token", b"")
        return hmac.compare_digest(given, self.token.encode())


class _TooLarge(BaseException):
    """A streamed body went past the limit (a ``BaseException``, so that the emulators'
    crash handlers, which catch ``Exception``, let it through to the middleware)."""


class _InjectedDropFilter(logging.Filter):
    """Keeps uvicorn from logging a traceback for each injected drop."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, (InjectedConnectError, InjectedDisconnect))


_uvicorn_logger = logging.getLogger("uvicorn.error")
if not any(isinstance(f, _InjectedDropFilter) for f in _uvicorn_logger.filters):
    _uvicorn_logger.addFilter(_InjectedDropFilter())


class SandboxMiddleware:
    """Counts requests, limits bodies, guards control routes and applies faults.

    Args:
        app: the sandbox's routes.
        state: the sandbox state (request counter, faults).
        error: how to answer an error for a path (the provider's own shape).
        max_body: the largest request body accepted, in bytes (default 32 MiB).
        control: who may use the control routes (default: anyone).
    """

    def __init__(
        self,
        app: ASGIApp,
        state: SandboxState,
        error: ErrorResponder,
        max_body: int = DEFAULT_MAX_BODY,
        control: ControlPolicy | None = None,
    ) -> None:
        self.app = app
        self.state = state
        self.error = error
        self.max_body = max_body
        self.control = control or ControlPolicy()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
            if not self.control.allows(scope):
                refused = JSONResponse({"error": "sandbox control routes are disabled or need "
                                                 "the x-sandbox-token header"}, status_code=403)
                await refused(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        self.state.requests[(method, path)] += 1
        if self._declared_length(scope) > self.max_body:
            await self._too_large(path)(scope, receive, send)
            return
        limited = self._limited(receive)
        fault = self.state.faults.take(method, path)
        try:
            if fault is None:
                await self.app(scope, limited, send)
            else:
                await self._apply(fault, scope, limited, send)
        except _TooLarge:
            await self._too_large(path)(scope, receive, send)

    # ------------------------------------------------------------------ body limit
    def _declared_length(self, scope: Scope) -> int:
        value = dict(scope["headers"]).get(b"content-length", b"0")
        try:
            return int(value)
        except ValueError:
            return 0

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge
            return message

        return limited

    def _too_large(self, path: str) -> Response:
        limit = f"the request body is larger than {self.max_body} bytes"
        shaped = self.error(path, 413, None, None)
        if not shaped.body or shaped.body in (b"{}", b"null"):
            return JSONResponse({"error": limit}, status_code=413, headers={"connection": "close"})
        headers = {k: v for k, v in shaped.headers.items() if k != "content-length"}
        body = bytes(shaped.body).replace(b"injected fault (413)", limit.encode())
        return Response(body, status_code=413, headers={**headers, "connection": "close"})

    # ------------------------------------------------------------------ faults
    async def _apply(self, fault: Fault, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if fault.kind == "status":
            assert fault.status is not None
            response = self.error(path, fault.status, fault.retry_after, fault.body)
            await response(scope, receive, send)
            return
        if fault.kind == "drop_before":
            await _drop(send, InjectedConnectError("injected drop: connection closed before "
                                                   f"{scope['method']} {path} was processed"))
        messages: list[Message] = []

        async def capture(message: Message) -> None:
            messages.append(message)

        await self.app(scope, receive, capture)
        if fault.kind == "drop_after":
            await _drop(send, InjectedDisconnect("injected drop: server disconnected without "
                                                 "sending a response"))
        await _hold(fault.hold, receive)
        for message in messages:
            await send(message)


async def _drop(send: Send, exc: Exception) -> None:
    """Start a response, then raise ``exc``: uvicorn closes the socket, ASGITransport re-raises."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"1")]})
    raise exc


async def _hold(seconds: float, receive: Receive) -> None:
    """Wait ``seconds``, or less if the client disconnects first (served only)."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({watcher}, timeout=seconds)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher
