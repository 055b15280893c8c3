"""A 5,000-item remote history pull (Blockade ``myRequests``): sequential vs concurrent pages.

A sandbox server runs in a subprocess (``python -m jupyter_imagine.sandbox``) on loopback and is
seeded with 5,000 skybox requests. Then ``jupyter_imagine.sync_history("blockade")`` pulls them
into a fresh store each time — 50 pages of 100 — once with ``max_concurrency=1`` (page after
page, as a cursor API must be walked) and once with the provider's limit (page 0 first, then the
other 49 at once, at most 8 in flight). Images are not downloaded (``download=False``): the
figure is listing + merging into the store. Loopback has no latency, so the same runs are
repeated with a simulated round trip (``--rtt``, default 80 ms) added to every request, closer to
a real service. Printed: wall time, pages, jobs merged, and the speed-up.

Run: ``python benchmarks/bench_remote_pull.py [--items 5000] [--rtt 0.08] [--concurrency 8]
[--repeat 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

import httpx
from _common import sandbox_server

SANDBOX_KEY = "sandbox-key"  # the key every provider uses against a sandbox URL


class Latency(httpx.AsyncBaseTransport):
    """Adds ``rtt`` seconds before each request reaches the real transport."""

    def __init__(self, rtt: float) -> None:
        self.rtt = rtt
        self.inner = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.rtt:
            await asyncio.sleep(self.rtt)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def seed(url: str, items: int) -> None:
    headers = {"x-api-key": SANDBOX_KEY}
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url + "/blockade/api/v1", headers=headers,
                                 limits=limits, timeout=60) as client:
        style = (await client.get("/skybox/styles")).json()[0]["id"]
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                r = await client.post("/skybox", json={"prompt": f"world number {i}",
                                                       "skybox_style_id": style})
                r.raise_for_status()

        await asyncio.gather(*(one(i) for i in range(items)))


def pull(url: str, concurrency: int, rtt: float) -> tuple[float, int, int]:
    os.environ["JUPYTER_IMAGINE_SANDBOX_URL"] = url
    from jupyter_imagine import _pull
    from jupyter_imagine.engine import Engine
    from jupyter_imagine.store import Store

    with tempfile.TemporaryDirectory(prefix="ji-pull-") as home:
        engine = Engine(Store(home))
        engine._clients["net"] = httpx.AsyncClient(transport=Latency(rtt), timeout=60)
        with engine:
            t0 = time.perf_counter()
            report = _pull.sync(engine, ["blockade"], download=False,
                                   max_concurrency=concurrency, progress=False)
            wall = time.perf_counter() - t0
            row = report.iloc[0]
            if row["error"] is not None:
                raise SystemExit(f"the pull failed: {row['error']}")
            merged = len(engine.store.frame(provider="blockade"))
        return wall, int(row["pages"]), merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--rtt", type=float, default=0.08,
                        help="simulated round trip per request in seconds (default 0.08)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="pages in flight for the concurrent run (Blockade's limit: 8)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of each configuration; the best is printed (default 2)")
    args = parser.parse_args()
    for name in ("BLOCKADE_API_KEY", "BLOCKADE_BASE_URL"):
        os.environ.pop(name, None)
    with sandbox_server(speed=1000) as url:
        t0 = time.perf_counter()
        asyncio.run(seed(url, args.items))
        print(f"seeded {args.items:,} Blockade requests in {time.perf_counter() - t0:.1f} s; "
              "pulling them into a fresh store each run (download=False)")
        for rtt in (0.0, args.rtt):
            seq, pages, n_seq = min(pull(url, 1, rtt) for _ in range(args.repeat))
            conc, _, n_conc = min(pull(url, args.concurrency, rtt) for _ in range(args.repeat))
            where = "loopback" if not rtt else f"loopback + {rtt * 1000:.0f} ms RTT"
            print(f"  {where:24s} sequential {seq:6.2f} s   concurrent ({args.concurrency} in "
                  f"flight) {conc:6.2f} s   speed-up {seq / conc:4.2f}x   "
                  f"{pages} pages, {n_seq:,} / {n_conc:,} jobs")


if __name__ == "__main__":
    main()
