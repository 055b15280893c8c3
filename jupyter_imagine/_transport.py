"""The engine's HTTP transport for the network: at most ``limit`` requests inside httpx's pool.

httpcore's pool assigns queued requests to connections by scanning all of them on every event,
which turns quadratic when thousands of requests wait (500 jobs × 5 image downloads); queueing
them here, on a semaphore, keeps the pool's own queue short. A request holds its slot until its
response body is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

__all__ = ["BoundedTransport", "ReleasingStream"]


class BoundedTransport(httpx.AsyncBaseTransport):
    """At most ``limit`` requests inside the wrapped transport, each held until its body closes.

    Args:
        inner: the transport that does the work (an ``httpx.AsyncHTTPTransport``).
        limit: requests in flight at once; more wait their turn here, in arrival order.

    An in-process ``httpx.ASGITransport`` ignores httpx's timeouts, so for it the request's
    ``read`` timeout (else ``pool``; none: no limit) is enforced here and a late answer raises
    ``httpx.ReadTimeout``, as the network would.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, limit: int) -> None:
        self._inner = inner
        self._slots = asyncio.Semaphore(limit)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._slots.acquire()
        try:
            response = await self._send(request)
        except BaseException:
            self._slots.release()
            raise
        response.stream = ReleasingStream(response.stream, self._slots)  # type: ignore[arg-type]
        return response

    async def _send(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(self._inner, httpx.ASGITransport):
            return await self._inner.handle_async_request(request)
        limits = request.extensions.get("timeout") or {}
        limit = limits.get("read", limits.get("pool"))
        try:
            return await asyncio.wait_for(self._inner.handle_async_request(request), limit)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no answer within {limit:g} s", request=request) from exc

    async def aclose(self) -> None:
        await self._inner.aclose()


class ReleasingStream(httpx.AsyncByteStream):
    """A response body that frees its transport slot when closed (once)."""

    def __init__(self, inner: httpx.AsyncByteStream, slots: asyncio.Semaphore) -> None:
        self._inner = inner
        self._slots: asyncio.Semaphore | None = slots

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if self._slots is not None:
                self._slots.release()
                self._slots = None
