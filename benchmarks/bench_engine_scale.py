"""How the engine's wall time and memory grow from 100 to 2,000 concurrent sandbox jobs (issue 12,
goal 5), beside the capped hand-written httpx loop of ``bench_engine_throughput.py``.

One sandbox server on loopback for every size (warmed up first, so its drawing is not counted).
Each size runs twice in a fresh process: the capped loop (≤ 100 requests in flight), then the
engine (store, image cache and all). Printed per size: wall time, milliseconds per job, the
process's peak resident memory, and the engine/loop ratio.

Run: ``python benchmarks/bench_engine_scale.py [--sizes 100,250,500,1000,2000] [--speed 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time

from _common import sandbox_server

HERE = os.path.dirname(os.path.abspath(__file__))


def one(kind: str, jobs: int, url: str, speed: float) -> dict[str, float]:
    """Run ``jobs`` jobs with ``kind`` (``loop`` or ``engine``) in this process."""
    sys.path[:0] = [HERE, os.path.dirname(HERE)]  # this checkout's package
    from bench_engine_throughput import baseline, engine_run

    t0 = time.perf_counter()
    if kind == "loop":
        asyncio.run(baseline(url, jobs, 2.0 / speed, bound=100))
    else:
        engine_run(url, jobs, speed)
    wall = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall": wall, "peak_mib": peak_mib}


def measure(kind: str, jobs: int, url: str, speed: float) -> dict[str, float]:
    """:func:`one` in a fresh interpreter, so each figure's memory is its own."""
    out = subprocess.run(
        [sys.executable, __file__, "--one", kind, str(jobs), url, "--speed", str(speed)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,250,500,1000,2000")
    parser.add_argument("--speed", type=float, default=20.0)
    parser.add_argument("--one", nargs=3, metavar=("KIND", "JOBS", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, jobs, url = args.one
        print(json.dumps(one(kind, int(jobs), url, args.speed)))
        return
    os.environ.pop("APIFRAME_API_KEY", None)
    sizes = [int(s) for s in args.sizes.split(",")]
    with sandbox_server(args.speed) as url:
        measure("loop", 5, url, args.speed)  # the server draws its pictures once
        print(f"concurrent sandbox jobs (imagine ≈ {40 / args.speed:.1f} s each), submit + poll + "
              "5 image downloads per job; each figure a fresh process")
        print(f"  {'jobs':>5}  {'capped loop':>22}  {'engine':>22}  {'ratio':>5}  "
              f"{'engine peak RSS':>15}")
        for jobs in sizes:
            loop = measure("loop", jobs, url, args.speed)
            engine = measure("engine", jobs, url, args.speed)
            print(f"  {jobs:5d}  {loop['wall']:7.2f} s {loop['wall'] / jobs * 1000:6.1f} ms/job  "
                  f"{engine['wall']:7.2f} s {engine['wall'] / jobs * 1000:6.1f} ms/job  "
                  f"{engine['wall'] / loop['wall']:5.2f}  {engine['peak_mib']:11.0f} MiB",
                  flush=True)


if __name__ == "__main__":
    main()
