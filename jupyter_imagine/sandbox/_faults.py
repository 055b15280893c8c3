"""Fault injection: make matching requests fail, time out or lose their connection.

Tests, benchmarks and the soak use it to exercise retries, back-off and the "may have reached
the provider" paths::

    state.faults.add("/apiframe/fetch", status=429, count=2, retry_after=1)
    state.faults.add("/apiframe/imagine", kind="drop_after")
    state.faults.add("/*/imagine*", kind="timeout", delay=30, rate=0.05, count=None)

Over HTTP: ``POST /_sandbox/faults`` with the same fields as a JSON object, ``GET`` lists the
pending faults, ``DELETE`` clears them. The fields:

- ``path`` (required): a glob matched against the whole request path (:func:`fnmatch.fnmatchcase`:
  ``*`` is any run of characters, ``/`` included; ``?`` one character; ``[0-9]`` a class). It must
  start with ``/`` or ``*``. Globs, not regular expressions: matching is linear in the path, so a
  pattern can never backtrack catastrophically (the old ``path_regex`` field is refused).
- ``kind`` (default ``"status"``):

  - ``"status"``: answer ``status`` with the provider's own error body (or ``body``) and, for a
    429 or when given, a ``Retry-After`` of ``retry_after`` seconds; the request is not processed.
  - ``"timeout"``: process the request, then hold the answer ``delay`` seconds (default 30)
    before sending it (served, the hold ends early when the client hangs up). The request has
    reached the provider; the client's timeout fires first.
  - ``"drop_before"``: close the connection without processing the request.
  - ``"drop_after"``: process the request, then close the connection before answering.

- ``status``: the HTTP status of a ``"status"`` fault (required for that kind).
- ``count``: how many more matching requests the fault takes (default 1; ``null``: unlimited).
- ``seconds``: how long the fault lasts from when it is added, whatever is left of its count
  (default ``null``: until its count is used up). ``count: null, seconds: 2`` is a window —
  e.g. a 429 storm that every request meets for two seconds, however few requests come.
- ``rate``: the probability (0–1] that a matching request is taken (default ``null``: always);
  drawn from the injector's seeded RNG, so a run is reproducible.
- ``method``: only requests with this method (default ``null``: any).
- ``retry_after``, ``body``, ``delay``: as above.

What a client sees of a drop: in-process (``httpx.ASGITransport``) the app raises
:class:`InjectedConnectError` (an ``httpx.ConnectError``) for ``drop_before`` and
:class:`InjectedDisconnect` (an ``httpx.RemoteProtocolError``) for ``drop_after``, which the
transport passes to the caller as the same exception classes the network would give. Served by
uvicorn, the sandbox starts a response and then raises, which makes uvicorn close the socket:
the client sees ``httpx.RemoteProtocolError`` for both (a server cannot refuse a connection it
has already accepted).
"""

from __future__ import annotations

import fnmatch
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "KINDS",
    "Fault",
    "FaultInjector",
    "InjectedConnectError",
    "InjectedDisconnect",
]

#: The fault kinds.
KINDS = ("status", "timeout", "drop_before", "drop_after")

#: The longest ``path`` glob accepted.
MAX_PATTERN = 512

#: How long a ``"timeout"`` fault holds its answer when no ``delay`` is given (seconds).
DEFAULT_DELAY = 30.0


class InjectedConnectError(httpx.ConnectError):
    """An injected ``drop_before``: the connection closed before the request was processed."""


class InjectedDisconnect(httpx.RemoteProtocolError):
    """An injected ``drop_after``: the request was processed, then the connection closed."""


def _check_path(path: str) -> str:
    path = str(path)
    if not path.startswith(("/", "*")):
        raise ValueError(f"path {path!r} must be a glob starting with '/' or '*'")
    if len(path) > MAX_PATTERN:
        raise ValueError(f"path is longer than {MAX_PATTERN} characters")
    return path


def _optional_float(name: str, value: Any, *, low: float = 0.0) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not number >= low or number == float("inf"):
        raise ValueError(f"{name} must be a finite number >= {low:g}, not {value!r}")
    return number


@dataclass
class Fault:
    """One injected failure.

    Attributes:
        path: a glob matched against the whole request path, e.g. ``"/apiframe/fetch*"``.
        status: the HTTP status of a ``"status"`` fault (default ``None``; required for it).
        count: how many more matching requests it takes (default 1; ``None``: unlimited).
        method: only requests with this method (default ``None``: any).
        retry_after: seconds for a ``Retry-After`` header (default ``None``: none, except that a
            429 always carries one, 1 s when not given).
        body: the JSON body to answer (default ``None``: the provider's own error body).
        kind: one of :data:`KINDS` (default ``"status"``).
        rate: the probability that a matching request is taken (default ``None``: always).
        delay: how long a ``"timeout"`` fault holds its answer (default ``None``: 30 s).
        seconds: how long it lasts from now, whatever is left of its count (default ``None``:
            until the count is used up).
    """

    path: str
    status: int | None = None
    count: int | None = 1
    method: str | None = None
    retry_after: float | None = None
    body: Any = None
    kind: str = "status"
    rate: float | None = None
    delay: float | None = None
    seconds: float | None = None
    _expires: float | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.path = _check_path(self.path)
        self.seconds = _optional_float("seconds", self.seconds)
        if self.seconds is not None:
            self._expires = time.monotonic() + self.seconds
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.status is not None:
            self.status = int(self.status)
            if not 100 <= self.status <= 599:
                raise ValueError(f"status must be an HTTP status (100–599), not {self.status}")
        elif self.kind == "status":
            raise ValueError("status is required for a status fault")
        if self.count is not None:
            self.count = int(self.count)
            if self.count < 1:
                raise ValueError(f"count must be at least 1 (or None), not {self.count}")
        if self.method is not None:
            self.method = str(self.method).upper()
        self.retry_after = _optional_float("retry_after", self.retry_after)
        self.delay = _optional_float("delay", self.delay)
        self.rate = _optional_float("rate", self.rate)
        if self.rate is not None and not 0 < self.rate <= 1:
            raise ValueError(f"rate must be in (0, 1], not {self.rate}")

    def expired(self, now: float) -> bool:
        """``True`` once a fault with ``seconds`` has outlived them (``now``: monotonic)."""
        return self._expires is not None and now >= self._expires

    @property
    def hold(self) -> float:
        """How long a ``"timeout"`` fault holds its answer, in seconds."""
        return DEFAULT_DELAY if self.delay is None else self.delay

    def matches(self, method: str, path: str) -> bool:
        """``True`` if a request ``method path`` is one this fault answers."""
        return (self.method is None or self.method == method.upper()) and fnmatch.fnmatchcase(
            path, self.path
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "status": self.status,
            "count": self.count,
            "rate": self.rate,
            "method": self.method,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "seconds": self.seconds,
            "body": self.body,
        }


class FaultInjector:
    """The pending faults, checked in the order they were added.

    Args:
        seed: seeds the RNG that decides ``rate`` faults (default 0).
    """

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._rng = random.Random(seed)

    def add(self, path: str, **fields: Any) -> Fault:
        """Add a fault for requests whose path matches the glob ``path``.

        See :class:`Fault` for the keyword arguments (``status``, ``kind``, ``count``, ``rate``,
        ``method``, ``retry_after``, ``body``, ``delay``, ``seconds``). Returns the fault.
        """
        fault = Fault(path, **fields)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first fault that takes this request, with one use consumed; ``None`` if none."""
        with self._lock:
            now = time.monotonic()
            self._faults = [f for f in self._faults if not f.expired(now)]
            for fault in self._faults:
                if not fault.matches(method, path):
                    continue
                if fault.rate is not None and self._rng.random() >= fault.rate:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        """A snapshot of the pending faults (expired ones left out)."""
        now = time.monotonic()
        with self._lock:
            return [f for f in self._faults if not f.expired(now)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)
