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

The pools share one SSL context (each made its own: tens of milliseconds apiece when the engine
starts) and talk to the network through :class:`_Backend`, httpcore's anyio backend with two of
its per-call costs cut: a read takes up to :data:`READ_BYTES` (httpcore asks for 64 KiB, so a
256 KiB chunk from the socket went through four reads, each a trip around the event loop), and
the "is the idle socket readable" check of the pool's scan looks at the socket directly instead of
building anyio's whole attribute table (with a ``getpeername`` system call) every time.
"""

from __future__ import annotations

import asyncio
import math
import select
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

import httpcore
import httpx

__all__ = ["POOL_SIZE", "READ_BYTES", "BoundedTransport", "ReleasingStream", "pooled"]

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
    idle (httpx's default expiry, 5 s): at most ``max_connections`` requests in flight. The
    pools share one SSL context (httpx's default: certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``)
    and one :class:`_Backend`."""
    size = max(1, min(pool_size, max_connections))
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    context = httpx.create_ssl_context()
    backend = _Backend()
    pools = [_transport(limits, context, backend)
             for _ in range(math.ceil(max_connections / size))]
    return BoundedTransport(pools, max_connections)


def _transport(
    limits: httpx.Limits, context: ssl.SSLContext, backend: httpcore.AsyncNetworkBackend
) -> httpx.AsyncHTTPTransport:
    """An httpx transport whose httpcore pool uses ``backend`` (httpx has no argument for it:
    the pool it made is replaced by the same pool with the backend)."""
    transport = httpx.AsyncHTTPTransport(verify=context, limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend,
    )
    return transport


#: Bytes one read may return (asyncio's socket transports receive at most 256 KiB at a time).
READ_BYTES = 256 * 1024


class _Backend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend, its streams wrapped in :class:`_Stream`."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address,
            socket_options=socket_options))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Stream(httpcore.AsyncNetworkStream):
    """An anyio network stream whose reads take up to :data:`READ_BYTES` and whose
    ``is_readable`` polls the socket it keeps (see the module docstring)."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max(max_bytes, READ_BYTES), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


def _readable(sock: socket.socket | None) -> bool:
    """Whether ``sock`` has something to read or is closed (an idle keep-alive connection the
    server closed), as httpcore checks it; ``True`` for no socket."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    if not hasattr(select, "poll"):  # Windows
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


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
