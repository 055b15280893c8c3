"""Fault injection: make the next matching requests fail, without processing them.

Tests and benchmarks use it to exercise retries and back-off::

    state.faults.add(r"/apiframe/fetch$", status=429, count=2, retry_after=1)

The next two ``/apiframe/fetch`` requests get a 429 with the provider's own error body and a
``Retry-After`` header; the third goes through. Over HTTP: ``POST /_sandbox/faults`` with the same
fields as JSON, ``DELETE /_sandbox/faults`` to clear them, ``GET /_sandbox/faults`` to list them.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Fault", "FaultInjector"]


@dataclass
class Fault:
    """One injected failure.

    Attributes:
        path_regex: searched (``re.search``) in the request path, e.g. ``"/apiframe/imagine$"``.
        status: the HTTP status to answer.
        count: how many more matching requests fail (default 1).
        method: only requests with this method (default ``None``: any).
        retry_after: seconds for a ``Retry-After`` header (default ``None``: none, except that a
            429 always carries one, 1 s when not given).
        body: the JSON body to answer (default ``None``: the provider's own error body).
    """

    path_regex: str
    status: int
    count: int = 1
    method: str | None = None
    retry_after: float | None = None
    body: Any = None
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            self._pattern = re.compile(self.path_regex)
        except re.error as exc:
            raise ValueError(
                f"path_regex {self.path_regex!r} is not a regular expression: {exc}"
            ) from None
        self.status = int(self.status)
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status (100–599), not {self.status}")
        self.count = int(self.count)
        if self.count < 1:
            raise ValueError(f"count must be at least 1, not {self.count}")
        if self.method is not None:
            self.method = str(self.method).upper()
        if self.retry_after is not None:
            self.retry_after = float(self.retry_after)
            if self.retry_after < 0:
                raise ValueError(f"retry_after must be >= 0, not {self.retry_after}")

    def matches(self, method: str, path: str) -> bool:
        """``True`` if a request ``method path`` is one this fault answers."""
        return (self.method is None or self.method == method.upper()) and bool(
            self._pattern.search(path)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path_regex": self.path_regex,
            "status": self.status,
            "count": self.count,
            "method": self.method,
            "retry_after": self.retry_after,
            "body": self.body,
        }


class FaultInjector:
    """The pending faults, checked in the order they were added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        path_regex: str,
        *,
        status: int,
        count: int = 1,
        method: str | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> Fault:
        """Make the next ``count`` requests whose path matches ``path_regex`` answer ``status``.

        See :class:`Fault` for the arguments. Returns the fault.
        """
        fault = Fault(path_regex, status, count, method, retry_after, body)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first fault matching this request, with one use consumed; ``None`` if none."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
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
        """A snapshot of the pending faults."""
        with self._lock:
            return list(self._faults)

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)
