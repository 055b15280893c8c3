"""How long does ``%imagine`` hold the cell? Median over 200 calls (goal ≤ 20 ms).

Printed beside two baselines measured the same way:
- a hand-written submit: one ``httpx.Client.post`` to the sandbox's ``/apiframe/imagine`` on
  loopback (what a ``requests`` loop holds the cell for before it even starts polling);
- a no-op line magic (IPython's own overhead).

Run: ``python benchmarks/bench_magic_latency.py [--calls 200]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import httpx
from _common import sandbox_server, summary
from IPython.core.interactiveshell import InteractiveShell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    os.environ["JUPYTER_IMAGINE_HOME"] = tempfile.mkdtemp(prefix="ji-bench-")
    os.environ.pop("APIFRAME_API_KEY", None)
    os.environ["JUPYTER_IMAGINE_SANDBOX_SPEED"] = "20"

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jupyter_imagine")
    shell.register_magic_function(lambda line: None, "line", "noop")

    def timed(fn) -> list[float]:
        out = []
        for i in range(args.calls):
            t0 = time.perf_counter()
            fn(i)
            out.append(time.perf_counter() - t0)
        return out

    timed(lambda i: shell.run_line_magic("imagine", f"warm-up tower {i}"))  # imports, first job
    magic = timed(lambda i: shell.run_line_magic("imagine", f"a lighthouse at dusk number {i}"))
    noop = timed(lambda i: shell.run_line_magic("noop", "x"))
    with sandbox_server(speed=20) as url, httpx.Client() as client:
        headers = {"Authorization": "bench-key"}
        client.post(url + "/apiframe/imagine", json={"prompt": "warm"}, headers=headers)
        raw = timed(lambda i: client.post(url + "/apiframe/imagine",
                                          json={"prompt": f"tower {i}"}, headers=headers))

    from jupyter_imagine.api import get_engine

    get_engine().close()
    print(f"cell hold time over {args.calls} calls (goal for %imagine: median ≤ 20 ms)")
    print(f"  %imagine (returns a Job)         {summary(magic)}")
    print(f"  httpx POST /imagine on loopback  {summary(raw)}")
    print(f"  no-op line magic                 {summary(noop)}")


if __name__ == "__main__":
    main()
