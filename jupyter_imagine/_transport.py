"""The engine's HTTP transport for the network: at most ``limit`` requests inside httpx, spread
over small connection pools.

httpcore's pool does its bookkeeping by scanning all its connections and queued requests on every
event: each idle connection is asked whether its socket is readable (a system call), so one pool
of 32 kept-alive connections spends most of a busy engine's time in that scan, and keeping fewer
alive opens a new connection for nearly every request instead. :func:`pooled` therefore makes
several pools of a few connections each, all kept alive, and :class:`BoundedTransport` sends each
request to the least busy one: every scan stays short and connections are reused. Requests beyond
``limit`` wait on a semaphore here, not in a pool's queue. A request holds its slot until its
response body is closed.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Sequence

import httpx

__all__ = ["POOL_SIZE", "BoundedTransport", "ReleasingStream", "pooled"]

#: Connections per pool made by :func:`pooled` (default 2: measured best of 1, 2 and 4 for
#: 500 sandbox jobs, bench_engine_throughput.py).
POOL_SIZE = 2


class BoundedTransport(httpx.AsyncBaseTransport):
    """At most ``limit`` requests inside the wrapped transports, each held until its body closes.

    Args:
        inner: the transport that does the work (an ``httpx.AsyncHTTPTransport``), or several:
            each request goes to the one with the fewest requests inside.
        limit: requests in flight at once; more wait their turn here, in arrival order.

    An in-process ``httpx.ASGITransport`` ignores httpx's timeouts, so for it the request's
    ``read`` timeout (else ``pool``; none: no limit) is enforced here and a late answer raises
    ``httpx.ReadTimeout``, as the network would.
    """

    def __init__(
        self, inner: httpx.AsyncBaseTransport | Sequence[httpx.AsyncBaseTransport], limit: int
    ) -> None:
        self._inner = list(inner) if isinstance(inner, Sequence) else [inner]
        self._busy = [0] * len(self._inner)
        self._slots = asyncio.Semaphore(limit)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._slots.acquire()
        shard = self._busy.index(min(self._busy))
        self._busy[shard] += 1

        def release() -> None:
            self._busy[shard] -= 1
            self._slots.release()

        try:
            response = await self._send(self._inner[shard], request)
        except BaseException:
            release()
            raise
        response.stream = ReleasingStream(response.stream, release)  # type: ignore[arg-type]
        return response

    @staticmethod
    async def _send(inner: httpx.AsyncBaseTransport, request: httpx.Request) -> httpx.Response:
        if not isinstance(inner, httpx.ASGITransport):
            return await inner.handle_async_request(request)
        limits = request.extensions.get("timeout") or {}
        limit = limits.get("read", limits.get("pool"))
        try:
            return await asyncio.wait_for(inner.handle_async_request(request), limit)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"no answer within {limit:g} s", request=request) from exc

    async def aclose(self) -> None:
        for inner in self._inner:
            await inner.aclose()


def pooled(max_connections: int, pool_size: int = POOL_SIZE) -> BoundedTransport:
    """A :class:`BoundedTransport` over ``ceil(max_connections / pool_size)`` network pools of
    ``pool_size`` connections (default :data:`POOL_SIZE`), every connection kept alive while
    idle (httpx's default expiry, 5 s): at most ``max_connections`` requests in flight."""
    size = max(1, min(pool_size, max_connections))
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    pools = [httpx.AsyncHTTPTransport(limits=limits)
             for _ in range(math.ceil(max_connections / size))]
    return BoundedTransport(pools, max_connections)


class ReleasingStream(httpx.AsyncByteStream):
    """A response body that calls ``release`` (frees its transport slot) when closed, once."""

    def __init__(self, inner: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            if self._release is not None:
                self._release()
                self._release = None
