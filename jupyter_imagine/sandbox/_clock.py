"""The sandbox's simulated clock.

Jobs in the sandbox have no timers: their status is computed from how much *simulated* time has
passed since they were submitted. Simulated time runs ``speed`` times faster than real time
(``speed=0`` freezes it) and tests jump it forward with :meth:`SimClock.advance`.
"""

from __future__ import annotations

import math
import threading
import time

__all__ = ["SimClock"]


class SimClock:
    """Simulated seconds since the clock was made.

    ``now() = start + real monotonic seconds elapsed × speed + seconds added by advance()``.

    Args:
        speed: how many simulated seconds pass per real second (default 1.0; 0 freezes the
            clock so only :meth:`advance` moves it).
        start: the simulated time the clock starts at (default 0.0; a sandbox restored from
            disk starts where its previous run's clock has got to by now).
    """

    def __init__(self, speed: float = 1.0, start: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._speed = self._check(speed)
        self._start = time.monotonic()
        self._offset = float(start)

    @staticmethod
    def _check(speed: float) -> float:
        speed = float(speed)
        if not math.isfinite(speed) or speed < 0:
            raise ValueError(f"clock speed must be a finite number >= 0, not {speed!r}")
        return speed

    @property
    def speed(self) -> float:
        """Simulated seconds per real second; setting it keeps :meth:`now` continuous."""
        return self._speed

    @speed.setter
    def speed(self, value: float) -> None:
        value = self._check(value)
        with self._lock:
            real = time.monotonic()
            self._offset += (real - self._start) * self._speed
            self._start = real
            self._speed = value

    def now(self) -> float:
        """Simulated seconds since the clock was made (never decreases)."""
        with self._lock:
            return (time.monotonic() - self._start) * self._speed + self._offset

    def advance(self, seconds: float) -> float:
        """Move simulated time forward by ``seconds`` (>= 0); returns the new :meth:`now`."""
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(
                f"can only advance by a finite number of seconds >= 0, not {seconds!r}"
            )
        with self._lock:
            self._offset += seconds
        return self.now()

    def real_seconds_until(self, when: float) -> float | None:
        """Real seconds until simulated time reaches ``when`` (0 if past; ``None`` if frozen)."""
        remaining = when - self.now()
        if remaining <= 0:
            return 0.0
        if self._speed == 0:
            return None
        return remaining / self._speed

    def __repr__(self) -> str:
        return f"SimClock(speed={self._speed:g}, now={self.now():.3f})"
