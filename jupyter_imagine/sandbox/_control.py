"""The sandbox's control routes under ``/_sandbox``: faults, request counts, webhooks, clock.

``/_sandbox/faults`` injects error answers, timeouts and drops (GET lists, POST adds, DELETE
clears; the fields are documented in :mod:`._faults`);
``/_sandbox/requests`` counts requests per method and path; ``/_sandbox/webhook-sink`` records
what is POSTed to it (webhooks pointed at the sandbox itself); ``/_sandbox/clock`` reads, sets
the speed of, or advances the simulated clock; ``/_sandbox/balance`` lists (GET), sets
(``{"provider", "amount"}``) or tops up (``{"provider", "add"}``) the providers' accounts.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import ConfigurationError
from . import _accounts
from ._state import SandboxState

__all__ = ["CONTROL_PREFIX", "Control"]

CONTROL_PREFIX = "/_sandbox"


class Control:
    """The control endpoints of one sandbox ``state``."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        """The control routes, under :data:`CONTROL_PREFIX`."""
        return [
            Route(CONTROL_PREFIX + "/faults", self.faults, methods=["GET", "POST", "DELETE"]),
            Route(CONTROL_PREFIX + "/requests", self.requests, methods=["GET", "DELETE"]),
            Route(
                CONTROL_PREFIX + "/webhook-sink",
                self.webhook_sink,
                methods=["GET", "POST", "DELETE"],
            ),
            Route(
                CONTROL_PREFIX + "/webhook-sink/{rest:path}", self.webhook_sink, methods=["POST"]
            ),
            Route(CONTROL_PREFIX + "/clock", self.clock, methods=["GET", "POST"]),
            Route(CONTROL_PREFIX + "/balance", self.balance, methods=["GET", "POST"]),
        ]

    async def faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.faults.clear()
            return JSONResponse({"faults": []})
        if request.method == "POST":
            try:
                spec = json.loads(await request.body() or b"{}")
                if not isinstance(spec, dict):
                    raise ValueError("the body must be a JSON object")
                if "path_regex" in spec:
                    raise ValueError("path_regex was replaced by path, a glob (see _faults)")
                fault = self.state.faults.add(spec.pop("path"), **spec)
            except KeyError as exc:
                return JSONResponse({"error": f"{exc.args[0]} is required"}, status_code=400)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            return JSONResponse(fault.to_dict(), status_code=201)
        return JSONResponse({"faults": [f.to_dict() for f in self.state.faults.pending()]})

    async def requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.requests.clear()
        counts = {f"{m} {p}": n for (m, p), n in sorted(self.state.requests.items())}
        return JSONResponse({"total": sum(counts.values()), "requests": counts})

    async def webhook_sink(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.webhooks.clear()
            return JSONResponse({"webhooks": []})
        if request.method == "GET":
            return JSONResponse({"webhooks": self.state.webhooks})
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.state.webhooks.append(
            {
                "path": request.url.path,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": body,
                "received_at": self.state.clock.now(),
            }
        )
        return JSONResponse({"ok": True})

    async def clock(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                spec = json.loads(await request.body() or b"{}")
                if "speed" in spec:
                    self.state.clock.speed = spec["speed"]
                if "advance" in spec:
                    self.state.clock.advance(spec["advance"])
            except (ValueError, TypeError, AttributeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"now": self.state.clock.now(), "speed": self.state.clock.speed})

    async def balance(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                spec = json.loads(await request.body() or b"{}")
                if not isinstance(spec, dict) or ("amount" in spec) == ("add" in spec):
                    raise ValueError('give {"provider", "amount"} to set or {"provider", "add"} '
                                     "to top up")
                provider = str(spec.get("provider"))
                add = "add" in spec
                amount = _accounts.check_amount(provider, spec["add" if add else "amount"])
            except (ValueError, ConfigurationError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            _accounts.write(self.state, provider, amount, add=add)
            return JSONResponse(_accounts.read(self.state, provider))
        names = [n for n in _accounts.ACCOUNTS if n in self.state.providers]
        return JSONResponse({"balances": [_accounts.read(self.state, n) for n in names]})
