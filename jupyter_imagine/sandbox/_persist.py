"""Keep a sandbox's tasks on disk, so jobs survive a restart of the process that serves them.

``create_app(state_dir=...)`` uses :class:`SandboxPersistence`: one SQLite file,
``<state_dir>/sandbox.sqlite3``, with one row per emulated provider holding that emulator's
records (its instance attributes, and its entries in ``state.tasks``) pickled together, so
records that refer to each other (a message listed by id and by button) stay one object. Images
are not kept: they are re-drawn deterministically from the records; uploaded bytes (masks, init
images) are part of the records. :class:`PersistMiddleware` writes a provider's row when it
changed, before the answer that created or changed a record leaves the app, and reads rows
other processes wrote (two kernels on one home) before each request, adding the records it
does not have. The simulated clock is anchored to wall time: a sandbox started again on the
same directory resumes its clock where the previous run's would be now.

Attributes an emulator lists in its ``TRANSIENT`` class attribute (locks, windows counted on
the monotonic clock) and attributes that cannot be pickled are not kept. The file is written
and read only by the sandbox, in the user's own home; pickle is used because the records hold
bytes, sets, datetimes and nested dataclasses. A directory that cannot be used is logged once
and the sandbox runs in memory, as without ``state_dir``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._secrets import get_logger
from ._clock import SimClock
from ._state import SandboxState

__all__ = ["FILE_NAME", "PersistMiddleware", "SandboxPersistence"]

logger = get_logger(__name__)

#: The file inside ``state_dir``.
FILE_NAME = "sandbox.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS providers (
    name TEXT PRIMARY KEY, stamp INTEGER NOT NULL, writer TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _package(obj: Any) -> str:
    return type(obj).__module__.rpartition(".")[0]


def snapshot(state: SandboxState, name: str) -> dict[str, Any]:
    """What of provider ``name`` is kept: ``{"attrs": {...}, "tasks": {...}}``."""
    emulator = state.providers[name]
    skip = set(getattr(emulator, "TRANSIENT", ())) | {"state"}
    attrs = {
        attr: value
        for attr, value in vars(emulator).items()
        if attr not in skip and value is not state and value is not state.tasks
    }
    package = _package(emulator)
    tasks = {k: v for k, v in list(state.tasks.items()) if _package(v) == package}
    return {"attrs": attrs, "tasks": tasks}


def _dump(snap: dict[str, Any], name: str) -> bytes:
    """Pickle ``snap``, leaving out (once per attribute, logged) what cannot be pickled."""
    try:
        return pickle.dumps(snap, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        attrs = {}
        for attr, value in snap["attrs"].items():
            try:
                pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except (pickle.PicklingError, TypeError, AttributeError):
                logger.debug("sandbox persistence: %s.%s cannot be kept", name, attr)
                continue
            attrs[attr] = value
        return pickle.dumps({"attrs": attrs, "tasks": snap["tasks"]},
                            protocol=pickle.HIGHEST_PROTOCOL)


def _merge(state: SandboxState, name: str, snap: dict[str, Any], *, replace: bool) -> None:
    """Put ``snap`` into provider ``name``: all of it (``replace``), else what is missing."""
    emulator = state.providers.get(name)
    if emulator is None:
        return
    for attr, value in snap["attrs"].items():
        mine = getattr(emulator, attr, None)
        if replace or mine is None:
            setattr(emulator, attr, value)
        elif isinstance(mine, dict) and isinstance(value, dict):
            for key, item in value.items():
                mine.setdefault(key, item)
        elif isinstance(mine, set) and isinstance(value, set):
            mine |= value
        elif type(mine) is int and type(value) is int:  # id counters: never hand out one twice
            setattr(emulator, attr, max(mine, value))
    for key, task in snap["tasks"].items():
        if replace:
            state.tasks[key] = task
        else:
            state.tasks.setdefault(key, task)


class SandboxPersistence:
    """The on-disk state of one sandbox (see the module docstring).

    Args:
        directory: where the file lives (made if missing).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.writer = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}  # provider → stamp of the row as we last knew it
        self._digests: dict[str, bytes] = {}
        self._version: int | None = None
        self._db: sqlite3.Connection | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.directory / FILE_NAME, timeout=10,
                                       check_same_thread=False, isolation_level=None)
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            self._disable(exc)

    @property
    def enabled(self) -> bool:
        """``False`` once the directory proved unusable (the sandbox then runs in memory)."""
        return self._db is not None

    def _disable(self, exc: BaseException) -> None:
        logger.warning("sandbox state in %s cannot be kept (%s); running in memory",
                       self.directory, exc)
        if self._db is not None:
            self._db.close()
        self._db = None

    # ------------------------------------------------------------------ clock
    def clock(self, speed: float) -> SimClock:
        """A clock at ``speed`` that goes on from the saved one, counting the time since at the
        saved speed (a new clock at 0 if nothing was saved)."""
        row = self._query("SELECT value FROM meta WHERE name = 'clock'")
        if not row:
            return SimClock(speed)
        saved = json.loads(row[0][0])
        gap = max(0.0, time.time() - float(saved["wall"])) * float(saved["speed"])
        return SimClock(speed, start=float(saved["now"]) + gap)

    def _write_clock(self, clock: SimClock) -> None:
        value = json.dumps({"wall": time.time(), "now": clock.now(), "speed": clock.speed})
        assert self._db is not None
        self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('clock', ?)", (value,))

    # ------------------------------------------------------------------ meta
    def read_meta(self, name: str) -> str | None:
        """The saved value of setting ``name`` (``None``: never saved)."""
        row = self._query("SELECT value FROM meta WHERE name = ?", (name,))
        return row[0][0] if row else None

    def write_meta(self, name: str, value: str) -> None:
        """Save setting ``name`` (a no-op when the directory is unusable)."""
        if self._db is None:
            return
        try:
            with self._lock:
                self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                                 (name, value))
        except sqlite3.Error as exc:
            self._disable(exc)

    # ------------------------------------------------------------------ rows
    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self._db is None:
            return []
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            self._disable(exc)
            return []

    def restore(self, state: SandboxState) -> int:
        """Load every saved provider into ``state``; how many providers were restored."""
        restored = 0
        for name, stamp, data in self._query("SELECT name, stamp, data FROM providers"):
            if self._load(state, name, stamp, data, replace=True):
                restored += 1
        return restored

    def _load(self, state: SandboxState, name: str, stamp: int, data: bytes, *,
              replace: bool) -> bool:
        try:
            snap = pickle.loads(data)
        except Exception as exc:  # an old or damaged row must not stop the sandbox
            logger.warning("sandbox state of %s in %s is unreadable (%s); skipped",
                           name, self.directory, exc)
            return False
        _merge(state, name, snap, replace=replace)
        self._seen[name] = stamp
        return True

    def refresh(self, state: SandboxState) -> None:
        """Add the records other processes saved since we last looked."""
        version = self._query("PRAGMA data_version")
        if not version or version[0][0] == self._version:
            return
        self._version = version[0][0]
        rows = self._query("SELECT name, stamp, data FROM providers WHERE writer != ?",
                           (self.writer,))
        for name, stamp, data in rows:
            if self._seen.get(name) != stamp:
                self._load(state, name, stamp, data, replace=False)

    def save(self, state: SandboxState) -> None:
        """Write each provider whose records changed, and the clock's anchor."""
        if self._db is None:
            return
        try:
            with self._lock:
                self._save_locked(state)
        except sqlite3.Error as exc:
            self._disable(exc)

    def _save_locked(self, state: SandboxState) -> None:
        assert self._db is not None
        changed = {}
        for name in list(state.providers):
            data = _dump(snapshot(state, name), name)
            digest = hashlib.blake2b(data, digest_size=16).digest()
            if self._digests.get(name) != digest:
                changed[name] = (data, digest)
        if not changed and "clock" in self._digests:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for name, (data, digest) in changed.items():
                data = self._merge_theirs(state, name) or data
                stamp = self._db.execute(
                    "SELECT coalesce(max(stamp), 0) + 1 FROM providers").fetchone()[0]
                self._db.execute(
                    "INSERT OR REPLACE INTO providers (name, stamp, writer, data) "
                    "VALUES (?, ?, ?, ?)", (name, stamp, self.writer, data))
                self._seen[name] = stamp
                self._digests[name] = digest
            self._write_clock(state.clock)
            self._digests["clock"] = b""
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _merge_theirs(self, state: SandboxState, name: str) -> bytes | None:
        """If another process wrote ``name`` since we last read it, merge theirs in first and
        return the new pickle (else ``None``)."""
        assert self._db is not None
        row = self._db.execute("SELECT stamp, writer, data FROM providers WHERE name = ?",
                               (name,)).fetchone()
        if row is None or row[1] == self.writer or self._seen.get(name) == row[0]:
            return None
        try:
            _merge(state, name, pickle.loads(row[2]), replace=False)
        except Exception as exc:
            logger.warning("sandbox state of %s in %s is unreadable (%s); replaced",
                           name, self.directory, exc)
        return _dump(snapshot(state, name), name)

    def close(self) -> None:
        """Close the file (saving first is the caller's business)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class PersistMiddleware:
    """Reads other processes' records before each request and saves changes before the answer
    starts (and after the app returns, for requests that end without one)."""

    def __init__(self, app: ASGIApp, *, state: SandboxState, store: SandboxPersistence) -> None:
        self.app = app
        self.state = state
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.store.enabled:
            await self.app(scope, receive, send)
            return
        self.store.refresh(self.state)
        saved = False

        async def send_saved(message: Message) -> None:
            nonlocal saved
            if message["type"] == "http.response.start" and not saved:
                self.store.save(self.state)
                saved = True
            await send(message)

        try:
            await self.app(scope, receive, send_saved)
        finally:
            if not saved:
                self.store.save(self.state)
