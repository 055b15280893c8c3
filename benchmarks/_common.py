"""Helpers shared by the benchmark scripts: a sandbox server on loopback, request counts, stats."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def sandbox_server(speed: float) -> Iterator[str]:
    """``python -m jupyter_imagine.sandbox`` in a subprocess, with balances no benchmark runs
    out of; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_imagine.sandbox", "--host", "127.0.0.1",
         "--port", str(port), "--speed", str(speed)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "JUPYTER_IMAGINE_SANDBOX_BALANCE": str(10**9)},  # never runs out
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("sandbox server did not start")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def request_count(url: str, prefix: str = "/apiframe") -> int:
    """Requests the sandbox received under ``prefix`` (from ``GET /_sandbox/requests``)."""
    data = httpx.get(url + "/_sandbox/requests", timeout=10).json()
    return sum(
        count for key, count in data["requests"].items() if key.split(" ", 1)[1].startswith(prefix)
    )


def reset_requests(url: str) -> None:
    httpx.delete(url + "/_sandbox/requests", timeout=10)


def summary(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"median {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   max {ms[-1]:7.2f} ms"
