"""The sandbox app: one Starlette app that mounts each emulated provider under its prefix.

Adding a provider is one module and one line: write ``_<name>.py`` exposing

- ``NAME`` (``"thenextleg"``) and ``PREFIX`` (``"/thenextleg"``),
- ``build(state: SandboxState) -> ASGIApp`` — the provider's own app, mounted at ``PREFIX``
  and keeping the real paths below it,
- ``fault_response(status, *, retry_after) -> Response`` — how that provider answers an
  injected fault (its own error shape),

and add the module to :data:`PROVIDERS`.

Besides the providers the app serves:

- ``GET /`` — a JSON index of the mounted providers; ``GET /healthz`` — ``{"ok": true}``.
- ``POST /_sandbox/faults`` (JSON: ``path``, ``kind``, ``status``, ``count``, ``rate``,
  ``method``, ``retry_after``, ``delay``, ``body``; see :mod:`._faults`), ``GET`` to list,
  ``DELETE`` to clear.
- ``GET /_sandbox/requests`` — requests received per ``"METHOD /path"`` and their ``total``;
  ``DELETE`` resets the counter. The ``/_sandbox/...`` routes are not counted.
- ``POST /_sandbox/webhook-sink[/anything]`` — records the body and headers of webhooks
  (``state.webhooks``); ``GET`` lists them, ``DELETE`` clears. Webhook URLs on the sandbox's own
  address are delivered in-process, so this works without a socket too.
- ``GET /_sandbox/clock`` — ``{"now", "speed"}``; ``POST`` ``{"advance": seconds}`` and/or
  ``{"speed": s}`` moves or re-speeds the clock (for tests against a server in another process).
- ``GET /_sandbox/balance`` — every account's ``{"provider", "amount", "unit"}``; ``POST``
  ``{"provider": "apiframe", "amount": 500}`` sets one, ``{"provider": …, "add": 100}`` tops it
  up (see :mod:`._accounts`; ``JUPYTER_IMAGINE_SANDBOX_BALANCE`` sets the start).

Request bodies over ``max_body`` get a 413; the control routes can be disabled or put behind a
token (:class:`~._middleware.ControlPolicy`), which ``__main__`` does for non-loopback binds.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from .._secrets import get_logger
from . import (
    _accounts,
    _apiframe,
    _banatie,
    _banatie_cdn,
    _blockade,
    _neuroflash,
    _neuroflash_id,
    _thenextleg,
)
from ._clock import SimClock
from ._control import CONTROL_PREFIX, Control
from ._faults import FaultInjector
from ._middleware import DEFAULT_MAX_BODY, ControlPolicy, SandboxMiddleware
from ._persist import PersistMiddleware, SandboxPersistence
from ._state import SandboxState, retry_headers

__all__ = ["PROVIDERS", "create_app"]

logger = get_logger(__name__)

#: The emulated providers, each mounted at its ``PREFIX``.
PROVIDERS: tuple[ModuleType, ...] = (
    _apiframe,
    _neuroflash,
    _neuroflash_id,
    _banatie,
    _banatie_cdn,
    _thenextleg,
    _blockade,
)


def _fault_response(path: str, status: int, retry_after: float | None, body: Any) -> Response:
    """An injected fault: ``body`` as given, else the error shape of the provider under ``path``."""
    if body is not None:
        return JSONResponse(body, status_code=status, headers=retry_headers(status, retry_after))
    for provider in PROVIDERS:
        if path == provider.PREFIX or path.startswith(provider.PREFIX + "/"):
            return provider.fault_response(status, retry_after=retry_after)
    return JSONResponse({"error": f"injected fault ({status})"}, status_code=status,
                        headers=retry_headers(status, retry_after))


def create_app(
    *,
    speed: float = 1.0,
    seed: int = 0,
    max_body: int = DEFAULT_MAX_BODY,
    control: ControlPolicy | None = None,
    state_dir: str | os.PathLike[str] | None = None,
) -> Starlette:
    """The sandbox: every emulated provider under its prefix, plus the control routes.

    Args:
        speed: simulated seconds per real second for job progress (default 1.0; 0 freezes
            the clock so only ``app.state.sandbox.clock.advance()`` moves it).
        seed: mixed into every image seed and the fault RNG (default 0).
        max_body: the largest request body accepted, in bytes; larger ones get a 413
            (default 32 MiB).
        control: who may use the ``/_sandbox/*`` routes (default ``None``: anyone).
        state_dir: a directory to keep the emulators' records and the clock's anchor in, so a
            new app on the same directory answers for the old one's tasks (default ``None``:
            in memory only; see :mod:`._persist`).

    Returns:
        A Starlette app; ``app.state.sandbox`` is its :class:`SandboxState`.
    """
    store = SandboxPersistence(state_dir) if state_dir is not None else None
    clock = store.clock(speed) if store is not None else SimClock(speed)
    state = SandboxState(clock=clock, seed=int(seed), faults=FaultInjector(int(seed)))
    mounts = [Mount(p.PREFIX, app=p.build(state), name=p.NAME) for p in PROVIDERS]
    _accounts.start_balance(state)
    if store is not None:  # a restart keeps the saved balance unless the setting changed
        store.restore(state)
        state.persistence = store
        _accounts.restart_balance(state, store)
    _accounts.register(state)

    async def index(request: Request) -> Response:
        root = str(request.base_url).rstrip("/")
        return JSONResponse(
            {
                "name": "jupyter_imagine sandbox",
                "providers": [
                    {"name": p.NAME, "prefix": p.PREFIX, "url": root + p.PREFIX} for p in PROVIDERS
                ],
                "clock": {"now": state.clock.now(), "speed": state.clock.speed},
                "control": root + CONTROL_PREFIX,
            }
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await state.aclose()
        if store is not None:
            store.close()

    control_routes = Control(state).routes()
    app = Starlette(
        routes=[Route("/", index), Route("/healthz", healthz), *control_routes, *mounts],
        lifespan=lifespan,
    )
    if store is not None:  # inside the fault middleware: saved before a fault holds the answer
        app.add_middleware(PersistMiddleware, state=state, store=store)
    app.add_middleware(
        SandboxMiddleware, state=state, error=_fault_response, max_body=max_body, control=control
    )
    app.state.sandbox = state
    state.app = app
    return app
