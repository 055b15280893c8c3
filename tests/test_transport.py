"""The engine's bounded HTTP transport (``jupyter_imagine._transport``)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from jupyter_imagine._transport import BoundedTransport, pooled


class _Body(httpx.AsyncByteStream):
    """A body that is read from the network, as a real transport's is (not pre-loaded)."""

    async def __aiter__(self):
        yield b"x" * 10


class _Counting(httpx.AsyncBaseTransport):
    """Answers every request after a short pause, counting how many are inside at once."""

    def __init__(self) -> None:
        self.inside = 0
        self.most = 0
        self.closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/boom":
            raise httpx.ConnectError("refused", request=request)
        self.inside += 1
        self.most = max(self.most, self.inside)
        await asyncio.sleep(0.01)
        self.inside -= 1
        return httpx.Response(200, stream=_Body())

    async def aclose(self) -> None:
        self.closed = True


def test_at_most_limit_requests_inside_and_every_slot_comes_back():
    inner = _Counting()

    async def main() -> list[bytes]:
        transport = BoundedTransport(inner, 3)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            bodies = await asyncio.gather(*(client.get("/") for _ in range(20)))
            # all slots were released when the bodies closed: 3 more fit at once
            await asyncio.wait_for(asyncio.gather(*(client.get("/") for _ in range(3))), 1)
        return [r.content for r in bodies]

    assert asyncio.run(main()) == [b"x" * 10] * 20
    assert inner.most <= 3 and inner.closed


def test_a_failed_request_frees_its_slot():
    inner = _Counting()

    async def main() -> None:
        async with httpx.AsyncClient(transport=BoundedTransport(inner, 1),
                                     base_url="http://x") as client:
            with pytest.raises(httpx.ConnectError):
                await client.get("/boom")
            response = await asyncio.wait_for(client.get("/"), 1)  # would hang without the slot
            assert response.status_code == 200

    asyncio.run(main())


def test_a_streamed_body_holds_its_slot_until_closed():
    inner = _Counting()

    async def main() -> None:
        async with httpx.AsyncClient(transport=BoundedTransport(inner, 1),
                                     base_url="http://x") as client:
            async with client.stream("GET", "/") as response:
                waiting = asyncio.ensure_future(client.get("/"))
                await asyncio.sleep(0.05)
                assert not waiting.done()  # the only slot is still held by the open body
                await response.aread()
            assert (await asyncio.wait_for(waiting, 1)).status_code == 200

    asyncio.run(main())


def test_an_in_process_request_held_by_a_timeout_fault_raises_read_timeout():
    from jupyter_imagine.sandbox import create_app

    app = create_app(speed=0)
    app.state.sandbox.faults.add("/apiframe/imagine", kind="timeout", delay=5)
    transport = BoundedTransport(httpx.ASGITransport(app=app), limit=2)

    async def main() -> float:
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox.test",
                                     timeout=0.2) as client:
            started = asyncio.get_running_loop().time()
            with pytest.raises(httpx.ReadTimeout):
                await client.post("/apiframe/imagine", json={"prompt": "a boat"},
                                  headers={"Authorization": "test-key"})
            late = asyncio.get_running_loop().time() - started
            ok = await client.post("/apiframe/imagine", json={"prompt": "a boat"},
                                   headers={"Authorization": "test-key"})
            assert ok.status_code == 200  # the slot came back; the fault took one request
            return late

    assert asyncio.run(main()) < 2
    assert len(app.state.sandbox.tasks) == 2  # the held request did reach the provider


def test_requests_go_to_the_least_busy_of_several_transports():
    inners = [_Counting() for _ in range(3)]

    async def main() -> None:
        transport = BoundedTransport(inners, 6)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            await asyncio.gather(*(client.get("/") for _ in range(30)))

    asyncio.run(main())
    assert [inner.most for inner in inners] == [2, 2, 2]  # 6 in flight, spread evenly
    assert all(inner.closed for inner in inners)


async def _keep_alive_server(accepted: list[int]) -> asyncio.Server:
    """A real HTTP/1.1 server on loopback that keeps connections open and counts them."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        while await reader.readuntil(b"\r\n\r\n"):
            await asyncio.sleep(0.005)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await serve(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(guarded, "127.0.0.1", 0)


def test_pooled_reuses_its_connections_over_real_http():
    accepted: list[int] = []

    async def main() -> list[int]:
        server = await _keep_alive_server(accepted)
        port = server.sockets[0].getsockname()[1]
        async with httpx.AsyncClient(transport=pooled(8, pool_size=4),
                                     base_url=f"http://127.0.0.1:{port}") as client:
            codes = [r.status_code for r in await asyncio.gather(
                *(client.get("/") for _ in range(200)))]
        server.close()
        return codes

    assert asyncio.run(main()) == [200] * 200
    assert 1 <= len(accepted) <= 8  # 200 requests over at most 8 connections, all reused


def test_pooled_reads_large_bodies_and_drops_connections_the_server_closed():
    """Bodies bigger than one read arrive whole; an idle connection the server closed is seen
    as such (its socket reads as readable) and a new one is opened, with no error."""
    body = bytes(range(256)) * 8192  # 2 MiB: many reads
    accepted: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()  # no "Connection: close": the client must notice by itself

    async def main() -> list[bytes]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        got = []
        async with httpx.AsyncClient(transport=pooled(1),
                                     base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(3):
                got.append((await client.get("/")).content)
                await asyncio.sleep(0.05)  # the close reaches the idle connection
        server.close()
        return got

    assert asyncio.run(main()) == [body] * 3
    assert len(accepted) == 3
