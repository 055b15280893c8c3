"""500 concurrent sandbox jobs: the engine vs. hand-written httpx asyncio loops (issue 12, goal 2).

Both talk to the same sandbox server (``python -m jupyter_imagine.sandbox``) on loopback and do
the same work per job: submit ``/imagine``, poll until finished, download the grid and the four
images. Two baselines: the plain hand-written client (one ``httpx.AsyncClient``,
``asyncio.gather`` over all jobs, ``POST /fetch`` every poll interval), and the same with a
semaphore capping requests in flight at the pool size — without it httpcore's pool spends its
time scanning its queue of waiting requests, which the engine avoids the same way. The engine
adds what the product needs (the SQLite store written on every change, the image cache with PNG
text chunks, adaptive polling batched through ``/fetch-many``). All run every job at once with
the same first poll interval. Printed: wall time and HTTP requests for each, and the ratios the
issue sets goals for: engine ≤ 1.0× the capped loop and ≤ 0.2× the plain one in wall time, with
no more requests per job than the plain loop.

Run: ``python benchmarks/bench_engine_throughput.py [--jobs 500] [--speed 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

import httpx
from _common import request_count, reset_requests, sandbox_server

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout
from jupyter_imagine.engine import Engine  # imported before any timing, as httpx is
from jupyter_imagine.store import Store


async def baseline(url: str, jobs: int, interval: float, bound: int | None = None) -> None:
    """Submit, poll, download, all jobs at once; ``bound`` caps requests in flight (a
    semaphore, as a careful hand-written client would add), default ``None``: no cap."""
    headers = {"Authorization": "bench-key"}
    slots = asyncio.Semaphore(bound) if bound else None

    async def send(client: httpx.AsyncClient, method: str, path: str, **kw) -> httpx.Response:
        if slots is None:
            return await client.request(method, path, **kw)
        async with slots:
            return await client.request(method, path, **kw)

    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    timeout = httpx.Timeout(60, pool=None)  # as the engine: waiting for a connection is no error
    async with httpx.AsyncClient(base_url=url + "/apiframe", headers=headers, limits=limits,
                                 timeout=timeout) as client:

        async def one(i: int) -> None:
            r = await send(client, "POST", "/imagine", json={"prompt": "a lighthouse at dusk"})
            task_id = r.json()["task_id"]
            while True:
                await asyncio.sleep(interval)
                body = (await send(client, "POST", "/fetch", json={"task_id": task_id})).json()
                if body.get("status") in ("finished", "failed"):
                    break
            for u in [body["original_image_url"], *body["image_urls"]]:
                (await send(client, "GET", u)).raise_for_status()

        await asyncio.gather(*(one(i) for i in range(jobs)))


def engine_run(url: str, jobs: int, speed: float) -> None:
    os.environ["JUPYTER_IMAGINE_SANDBOX_URL"] = url
    with Engine(Store(tempfile.mkdtemp(prefix="ji-bench-")), concurrency={"apiframe": jobs},
                sandbox_speed=speed) as engine:
        started = [engine.imagine("a lighthouse at dusk", provider="apiframe")
                   for _ in range(jobs)]
        for job in started:
            job.wait(600)
        failed = [j for j in started if j.status.value != "succeeded"]
        if failed:
            raise SystemExit(f"{len(failed)} jobs did not succeed: {failed[0].error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--speed", type=float, default=20.0,
                        help="sandbox clock speed (20: an imagine takes 2 s of real time)")
    parser.add_argument("--skip-plain", action="store_true",
                        help="skip the plain loop (~170 s at 500 jobs): for iterating only; its "
                             "ratios are then not printed")
    args = parser.parse_args()
    os.environ.pop("APIFRAME_API_KEY", None)
    interval = 2.0 / args.speed  # APIFRAME's first poll interval, scaled like the engine's
    with sandbox_server(args.speed) as url:
        httpx.post(url + "/apiframe/imagine", json={"prompt": "a lighthouse at dusk"},
                   headers={"Authorization": "warm"})
        base_time, base_requests = 0.0, 0
        if not args.skip_plain:
            reset_requests(url)
            t0 = time.perf_counter()
            asyncio.run(baseline(url, args.jobs, interval))
            base_time, base_requests = time.perf_counter() - t0, request_count(url)
        reset_requests(url)
        t0 = time.perf_counter()
        asyncio.run(baseline(url, args.jobs, interval, bound=100))
        bound_time, bound_requests = time.perf_counter() - t0, request_count(url)
        reset_requests(url)
        t0 = time.perf_counter()
        engine_run(url, args.jobs, args.speed)
        eng_time, eng_requests = time.perf_counter() - t0, request_count(url)
    print(f"{args.jobs} concurrent sandbox jobs (imagine ≈ {40 / args.speed:.1f} s each), "
          "submit + poll + 5 image downloads per job")
    rows = [("plain httpx asyncio loop", base_time, base_requests)] * (not args.skip_plain)
    rows += [("httpx loop, ≤100 in flight", bound_time, bound_requests),
            ("jupyter_imagine engine", eng_time, eng_requests)]
    for name, wall, requests in rows:
        print(f"  {name:28s} wall {wall:7.2f} s   HTTP requests {requests:6d}")
    print(f"  ratio engine / capped loop     wall {eng_time / bound_time:5.2f}   (goal ≤ 1.0)")
    if args.skip_plain:
        return
    print(f"  ratio engine / plain loop      wall {eng_time / base_time:5.2f}   (goal ≤ 0.2)   "
          f"requests per job {eng_requests / args.jobs:.2f} vs {base_requests / args.jobs:.2f} "
          "(goal ≤)")


if __name__ == "__main__":
    main()
