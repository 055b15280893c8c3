"""The local history of every job, and the image cache.

Layout of ``<home>`` (``JUPYTER_IMAGINE_HOME``, see :func:`jupyter_imagine._config.home`)::

    history.sqlite            one row per job (WAL mode: also history.sqlite-wal / -shm)
    images/ab/cdef….png       downloaded images, content-addressed by the SHA-256 of their bytes

The ``jobs`` table keeps the full :meth:`Job.to_record() <jupyter_imagine.models.Job.to_record>`
as JSON in ``record`` (what :meth:`Store.get` returns) and, next to it, plain indexed columns for
what lookups and the history frame need (provider, remote_id, parent_id, root_id, kind, action,
prompt, negative_prompt, params as JSON, status, progress, sandbox, the four timestamps,
n_images, width, height, paths, urls, credits, error, error_type, and batch_id/batch_row), so
:meth:`Store.frame` is one SQL query over those columns and never parses ``record``. The
columns that need a provider's rules (negative_prompt, width/height, credits, which images
count as results) are derived on save by :func:`jupyter_imagine._schema.derive_columns`.
``record`` is the table's last column (see :func:`_schema_v2` for why that matters).

Choices worth knowing:

* **One connection, one lock.** The store is used from the engine's background thread and from
  the notebook's main thread (and possibly a kernel subshell thread). It opens one connection with
  ``check_same_thread=False`` and serialises every use of it with a :class:`threading.Lock`. SQLite
  only ever has one writer anyway, each statement here takes milliseconds, and one connection
  means: no ``SQLITE_BUSY`` between our own threads, no connection leaked by a thread that ends
  (subshell threads come and go), and :meth:`Store.close` really closes everything. A second
  *process* (another kernel on the same home) is handled by WAL plus ``busy_timeout``.
* **Durability.** ``journal_mode=WAL`` and ``synchronous=NORMAL``: every :meth:`Store.save` is
  one ``BEGIN IMMEDIATE`` … ``COMMIT`` transaction, and once it returns the row survives the
  process crashing (the WAL frame is in the OS). Only an OS crash or power loss in the next
  moments could roll back the last transactions, never corrupt the file — the usual trade for
  application history.
* **Timestamps** are kept in the columns as fixed-width ISO-8601 UTC text
  (``2024-05-01T12:00:00.000000+00:00``), so text order is time order and parsing them into the
  frame is a single vectorised call.
* **Secrets.** The whole record goes through :func:`jupyter_imagine._secrets.scrub` (params,
  extras, raw, error, prompt, image URLs … every string is redacted and secret-named fields are
  masked) and the serialised JSON goes through :func:`~jupyter_imagine._secrets.redact` once more,
  which also catches a secret used as a dict key. Nothing unscrubbed is ever bound to a statement.
* **root_id** is computed on save from the parent's row (a job without parent is its own root).
  If a child is stored before its parent (imports), it gets its parent's id as root for now, and
  saving the parent later re-roots its descendants, so lineage does not depend on save order.
* Uniqueness of (provider, remote_id) is one partial unique index declared as
  ``(remote_id, provider)``: the same constraint, and it also serves lookups by remote id alone.
* Empty strings are stored as NULL in the indexed columns (the record keeps them as given), so the
  frame shows real NA and never ``""``.
* **The frame** of 100,000 jobs has 25 typed columns and a (provider, id) MultiIndex. Schema 1's
  14-column frame took ~0.35 s (2-core container); this one takes ~1.4x that CPU time measured
  side by side (≈0.45-0.5 s; ``benchmarks/bench_history_frame.py``). Most of it is ``sqlite3``
  turning values into Python objects, ~10-15 ms per result column, so: the table is read in
  storage order and re-sorted with numpy only if needed (following the created_at index costs
  one table lookup per row); the small numbers travel packed in one integer and the three
  timestamps in one text (see :data:`_FRAME_SOURCE`); each JSON column is parsed by one
  ``json.loads`` call; timestamps are parsed by numpy from bytes; the key index reuses the
  provider codes and the id strings; the DataFrame is assembled without copies; and the cyclic
  GC is paused meanwhile (it otherwise walks the fresh objects again and again and doubles the
  time).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import re
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._schema import (
    HISTORY_COLUMNS,
    KNOWN_PROVIDERS,
    derive_columns,
    result_images,
)
from ._secrets import get_logger, redact, scrub
from .errors import ImagineError, InvalidRequest

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

__all__ = ["FRAME_COLUMNS", "STATUS_ORDER", "Store"]

log = get_logger(__name__)

#: The history frame's columns, in order (see :mod:`jupyter_imagine._schema`).
FRAME_COLUMNS = HISTORY_COLUMNS
#: The categories of the frame's ``status`` column, in this order.
STATUS_ORDER = ("queued", "running", "succeeded", "failed", "cancelled")
_UNFINISHED = ("queued", "running")

DB_NAME = "history.sqlite"
IMAGES_DIR = "images"
#: Milliseconds a statement waits for another process's write lock before failing.
BUSY_TIMEOUT_MS = 10_000
#: Shortest local-id prefix :meth:`Store.get` accepts.
MIN_PREFIX = 6

# Indexed columns, in the order of the INSERT (``record`` last).
_COLUMNS = (
    "id",
    "provider",
    "remote_id",
    "parent_id",
    "root_id",
    "kind",
    "action",
    "prompt",
    "status",
    "progress",
    "sandbox",
    "created_at",
    "started_at",
    "completed_at",
    "updated_at",
    "n_images",
    "paths",
    "urls",
    "error",
    "error_type",
    # schema v2
    "negative_prompt",
    "params",
    "width",
    "height",
    "credits",
    "batch_id",
    "batch_row",
    "record",
)
# Batch membership (the record's batch_id/batch_row, set when the job is created) is never
# cleared by a later save: a record without it (a job stored before it carried it) keeps it.
_STICKY = frozenset({"batch_id", "batch_row"})
_UPSERT = (
    f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(
        f"{c} = COALESCE(excluded.{c}, {c})" if c in _STICKY else f"{c} = excluded.{c}"
        for c in _COLUMNS
        if c != "id"
    )
)
# Descendants stored before their ancestor get re-rooted when it arrives: (new_root, old_root, id).
_REROOT = "UPDATE jobs SET root_id = ? WHERE root_id = ? AND id <> ?"
# What the frame reads, in this order: every value comes straight from the indexed columns, in
# the form that is cheapest to turn into pandas columns (see _build_frame). sqlite3 spends
# ~10-15 ms per result column per 100,000 rows whatever it holds, so columns travel together
# where that measured faster: the small numbers packed in one integer (status, known-provider
# code, sandbox, n_images, width, height; a NULL size is 0, sizes being positive) and the three
# timestamps in one fixed-width text (numpy splits and parses them; "+00:00" is dropped, a NULL
# is a sentinel date). A provider outside KNOWN_PROVIDERS (rare) comes as "provider<US>id" in
# the id column. (One JSON text for params, urls and paths measured slower than three columns,
# and packing the kind as a code gained nothing.)
_STATUS_BITS, _PROVIDER_BITS, _SANDBOX_BITS, _COUNT_BITS, _SIZE_BITS = 3, 4, 1, 12, 20
_OTHER_PROVIDER = (1 << _PROVIDER_BITS) - 1
_UNIT_SEPARATOR = "\x1f"
_STAMP_WIDTH = 26  # "YYYY-MM-DDTHH:MM:SS.ffffff"
_NO_STAMP = "0001-01-01T00:00:00.000000"  # stands for NULL (no job is that old)


def _codes(column: str, names: Sequence[str], *, other: str) -> str:
    whens = " ".join(f"WHEN '{name}' THEN {code}" for code, name in enumerate(names))
    return f"CASE {column} {whens} ELSE {other} END"


def _pack() -> str:
    parts, shift = [], 0
    for expr, bits in (
        (_codes("status", STATUS_ORDER, other="0"), _STATUS_BITS),
        (_codes("provider", KNOWN_PROVIDERS, other=str(_OTHER_PROVIDER)), _PROVIDER_BITS),
        ("sandbox", _SANDBOX_BITS),
        (f"min(n_images, {(1 << _COUNT_BITS) - 1})", _COUNT_BITS),
        (f"IFNULL(min(width, {(1 << _SIZE_BITS) - 1}), 0)", _SIZE_BITS),
        (f"IFNULL(min(height, {(1 << _SIZE_BITS) - 1}), 0)", _SIZE_BITS),
    ):
        parts.append(f"(({expr}) << {shift})" if shift else f"({expr})")
        shift += bits
    return " | ".join(parts)


def _stamp(column: str) -> str:
    return f"IFNULL(substr({column}, 1, {_STAMP_WIDTH}), '{_NO_STAMP}')"


# The record's count of images not in the cache, read from the record until the schema has a
# ``missing_images`` column; Store.frame() reads that column where the table has it.
_MISSING_FROM_RECORD = "IFNULL(json_extract(record, '$.missing_images'), 0)"
_KNOWN_SQL = ", ".join(f"'{name}'" for name in KNOWN_PROVIDERS)
_FRAME_SOURCE: tuple[tuple[str, str], ...] = (
    (
        "id",
        f"CASE WHEN provider IN ({_KNOWN_SQL}) THEN id "
        f"ELSE provider || char({ord(_UNIT_SEPARATOR)}) || id END",
    ),
    ("remote_id", "remote_id"),
    ("parent_id", "parent_id"),
    ("root_id", "root_id"),
    ("kind", "kind"),
    ("action", "action"),
    ("prompt", "prompt"),
    ("negative_prompt", "negative_prompt"),
    ("params", "params"),
    ("urls", "urls"),
    ("paths", "paths"),
    ("credits", "credits"),
    ("times", " || ".join(_stamp(c) for c in ("created_at", "started_at", "completed_at"))),
    ("error", "error"),
    ("packed", _pack()),
    ("missing_images", _MISSING_FROM_RECORD),
)
_FRAME_NAMES = tuple(name for name, _ in _FRAME_SOURCE)
_FRAME_SELECT = ", ".join(sql for _, sql in _FRAME_SOURCE)
# With include_raw: the payload as JSON text, extracted by SQLite (no Python parse of records).
_RAW_SELECT = "json_extract(record, '$.raw')"
_NEWEST_FIRST = " ORDER BY created_at DESC, rowid DESC"
_OLDEST_FIRST = " ORDER BY created_at ASC, rowid ASC"


# --------------------------------------------------------------------------------- schema
def _schema_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE jobs (
            id           TEXT PRIMARY KEY NOT NULL,
            provider     TEXT NOT NULL,
            remote_id    TEXT,
            parent_id    TEXT,
            root_id      TEXT NOT NULL,
            kind         TEXT,
            action       TEXT,
            prompt       TEXT,
            status       TEXT NOT NULL,
            progress     REAL,
            sandbox      INTEGER NOT NULL DEFAULT 0,
            created_at   TEXT NOT NULL,
            started_at   TEXT,
            completed_at TEXT,
            updated_at   TEXT,
            n_images     INTEGER NOT NULL DEFAULT 0,
            paths        TEXT NOT NULL DEFAULT '[]',
            urls         TEXT NOT NULL DEFAULT '[]',
            error        TEXT,
            error_type   TEXT,
            record       TEXT NOT NULL
        )
        """
    )
    conn.execute(
        "CREATE UNIQUE INDEX jobs_remote ON jobs (remote_id, provider) "
        "WHERE remote_id IS NOT NULL"
    )
    conn.execute("CREATE INDEX jobs_status ON jobs (status)")
    conn.execute("CREATE INDEX jobs_created_at ON jobs (created_at)")
    conn.execute("CREATE INDEX jobs_parent_id ON jobs (parent_id)")
    conn.execute("CREATE INDEX jobs_root_id ON jobs (root_id)")


def _v2_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A v1 row (rowid, kept columns …, record) with the columns schema 2 adds, before
    ``record``."""
    rec = json.loads(row[-1])
    derived = derive_columns(rec)
    images = result_images(rec)
    params = rec.get("params")
    return (
        *row[:-1],
        len(images),
        _dumps([img["path"] for img in images if img.get("path")]),
        _dumps([img["url"] for img in images if img.get("url")]),
        _text(derived["negative_prompt"]),
        _dumps(params if isinstance(params, Mapping) else {}),
        derived["width"],
        derived["height"],
        derived["credits"],
        row[-1],
    )


def _schema_v2(conn: sqlite3.Connection) -> None:
    """The unified history (issue 6): negative_prompt, params (JSON), width, height, credits,
    and batch membership (batch_id, batch_row), backfilled from ``record``; n_images, paths and
    urls are recomputed to count result images only (not thumbnails or depth maps).

    The table is rebuilt rather than extended with ``ALTER TABLE ADD COLUMN``: added columns
    land *after* ``record``, and reading them would make SQLite walk every row's record (often
    on overflow pages) — the frame of 100,000 jobs got ~60 % slower that way. ``record`` stays
    the last column; later migrations should rebuild the same way. Rowids are kept (the frame
    reads in storage order).
    """
    conn.execute(
        """
        CREATE TABLE jobs_v2 (
            id              TEXT PRIMARY KEY NOT NULL,
            provider        TEXT NOT NULL,
            remote_id       TEXT,
            parent_id       TEXT,
            root_id         TEXT NOT NULL,
            kind            TEXT,
            action          TEXT,
            prompt          TEXT,
            status          TEXT NOT NULL,
            progress        REAL,
            sandbox         INTEGER NOT NULL DEFAULT 0,
            created_at      TEXT NOT NULL,
            started_at      TEXT,
            completed_at    TEXT,
            updated_at      TEXT,
            n_images        INTEGER NOT NULL DEFAULT 0,
            paths           TEXT NOT NULL DEFAULT '[]',
            urls            TEXT NOT NULL DEFAULT '[]',
            error           TEXT,
            error_type      TEXT,
            negative_prompt TEXT,
            params          TEXT NOT NULL DEFAULT '{}',
            width           INTEGER,
            height          INTEGER,
            credits         REAL,
            batch_id        TEXT,
            batch_row       INTEGER,
            record          TEXT NOT NULL
        )
        """
    )
    kept = (
        "id", "provider", "remote_id", "parent_id", "root_id", "kind", "action", "prompt",
        "status", "progress", "sandbox", "created_at", "started_at", "completed_at",
        "updated_at", "error", "error_type",
    )
    added = ("n_images", "paths", "urls", "negative_prompt", "params", "width", "height",
             "credits")
    insert = (
        f"INSERT INTO jobs_v2 (rowid, {', '.join(kept)}, {', '.join(added)}, record) "
        f"VALUES ({', '.join('?' * (len(kept) + len(added) + 2))})"
    )
    cursor = conn.execute(f"SELECT rowid, {', '.join(kept)}, record FROM jobs ORDER BY rowid")
    while True:
        chunk = cursor.fetchmany(5000)
        if not chunk:
            break
        conn.executemany(insert, [_v2_row(row) for row in chunk])
    conn.execute("DROP TABLE jobs")
    conn.execute("ALTER TABLE jobs_v2 RENAME TO jobs")
    conn.execute(
        "CREATE UNIQUE INDEX jobs_remote ON jobs (remote_id, provider) "
        "WHERE remote_id IS NOT NULL"
    )
    conn.execute("CREATE INDEX jobs_status ON jobs (status)")
    conn.execute("CREATE INDEX jobs_created_at ON jobs (created_at)")
    conn.execute("CREATE INDEX jobs_parent_id ON jobs (parent_id)")
    conn.execute("CREATE INDEX jobs_root_id ON jobs (root_id)")
    conn.execute("CREATE INDEX jobs_provider ON jobs (provider, created_at)")
    conn.execute(
        "CREATE UNIQUE INDEX jobs_batch ON jobs (batch_id, batch_row) WHERE batch_id IS NOT NULL"
    )


#: Migration ``i`` brings the schema from ``user_version`` i to i + 1. Later issues append
#: functions here (rebuild the table so ``record`` stays last, see :func:`_schema_v2`, plus a
#: backfill); never edit a shipped one.
_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_schema_v1, _schema_v2)
SCHEMA_VERSION = len(_MIGRATIONS)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION`, one transaction per step."""
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version >= SCHEMA_VERSION:
                conn.execute("COMMIT")
                if version > SCHEMA_VERSION:
                    log.warning(
                        "history schema version %d is newer than this jupyter_imagine (%d); "
                        "upgrade jupyter_imagine if anything looks wrong",
                        version,
                        SCHEMA_VERSION,
                    )
                return
            _MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


# --------------------------------------------------------------------------------- helpers
def to_utc(value: Any) -> datetime | None:
    """``value`` (datetime, date, ISO text or ``None``) as a tz-aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequest(
                f"{value!r} is not an ISO-8601 date or time; use e.g. '2024-05-01T12:00:00Z'"
            ) from None
    else:
        raise InvalidRequest(f"expected a datetime or ISO-8601 text, not {type(value).__name__}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


#: How timestamps are kept in the columns: fixed-width ISO-8601 UTC.
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f%z"


def _utc_text(value: Any) -> str | None:
    """Fixed-width ISO-8601 UTC text (``…T12:00:00.000000+00:00``), so text order = time order."""
    parsed = to_utc(value)
    return parsed.isoformat(timespec="microseconds") if parsed is not None else None


def _text(value: Any) -> str | None:
    """A column value: ``None`` for missing or empty, else ``str``."""
    if value is None:
        return None
    value = value.value if isinstance(value, Enum) else str(value)
    return value or None


def _json_default(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return repr(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _status(value: Any) -> str:
    text = value.value if isinstance(value, Enum) else str(value)
    if text not in STATUS_ORDER:
        raise InvalidRequest(f"status must be one of {', '.join(STATUS_ORDER)}, not {text!r}")
    return text


def _many(value: Any) -> list[str]:
    """A filter value: one string (or enum) or an iterable of them."""
    if isinstance(value, (str, Enum)):
        return [value.value if isinstance(value, Enum) else value]
    return [v.value if isinstance(v, Enum) else str(v) for v in value]


_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"\xff\xd8\xff", 0, "jpg"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
)
_EXT = re.compile(r"^[a-z0-9]{1,10}$")


def _detect_ext(data: bytes) -> str:
    """``png``, ``jpg``, ``webp`` or ``gif`` from the magic bytes, else ``bin``."""
    for magic, offset, ext in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "bin"


def _clean_ext(ext: str) -> str:
    clean = str(ext).strip().lower().lstrip(".")
    clean = {"jpeg": "jpg", "tif": "tiff"}.get(clean, clean)
    if not _EXT.match(clean):
        raise InvalidRequest(f"file extension must be letters and digits, like 'png', not {ext!r}")
    return clean


def _prepare(record: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The scrubbed record and its JSON text (both secret-free)."""
    if not isinstance(record, Mapping):
        raise InvalidRequest(f"a job record must be a dict, not {type(record).__name__}")
    if not record.get("id"):
        raise InvalidRequest("a job record needs an 'id'")
    if not record.get("provider"):
        raise InvalidRequest(f"job record {record['id']!r} needs a 'provider'")
    clean = scrub(dict(record))
    # Round-trip through JSON so what the columns see is exactly what ``get`` will return, and
    # redact the text once more: that also catches a secret used as a dict key.
    text = redact(_dumps(clean))
    return json.loads(text), text


def _row(rec: dict[str, Any], text: str, root_id: str) -> tuple[Any, ...]:
    images = result_images(rec)
    progress = rec.get("progress")
    derived = derive_columns(rec)
    params = rec.get("params")
    return (
        str(rec["id"]),
        str(rec["provider"]),
        _text(rec.get("remote_id")),
        _text(rec.get("parent_id")),
        root_id,
        _text(rec.get("kind")),
        _text(rec.get("action")),
        _text(rec.get("prompt")),
        _status(rec.get("status") or "queued"),
        float(progress) if progress is not None else None,
        1 if rec.get("sandbox") else 0,
        _utc_text(rec.get("created_at")) or _utc_text(datetime.now(timezone.utc)),
        _utc_text(rec.get("started_at")),
        _utc_text(rec.get("completed_at")),
        _utc_text(rec.get("updated_at")),
        len(images),
        _dumps([img["path"] for img in images if img.get("path")]),
        _dumps([img["url"] for img in images if img.get("url")]),
        _text(rec.get("error")),
        _text(rec.get("error_type")),
        _text(derived["negative_prompt"]),
        _dumps(params if isinstance(params, Mapping) else {}),
        derived["width"],
        derived["height"],
        derived["credits"],
        _text(rec.get("batch_id")),
        int(rec["batch_row"]) if rec.get("batch_row") is not None else None,
        text,
    )


# --------------------------------------------------------------------------------- store
class Store:
    """The history database and image cache under one folder.

    Args:
        home: the folder (created if missing). Default ``None``:
            :func:`jupyter_imagine._config.home` (``JUPYTER_IMAGINE_HOME`` or
            ``<jupyter data dir>/jupyter_imagine``).

    Attributes:
        home: the folder, absolute.
        path: the SQLite file, ``home / "history.sqlite"``.
        images_dir: the image cache, ``home / "images"``.

    Thread-safe: one connection shared by all threads behind a lock (see the module docstring).
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        if home is None:
            from ._config import home as default_home

            home = default_home()
        self.home = Path(home).expanduser().absolute()
        self.path = self.home / DB_NAME
        self.images_dir = self.home / IMAGES_DIR
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # autocommit; every write is an explicit BEGIN IMMEDIATE
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning(
                    "the history at %s could not use WAL mode (journal_mode=%s); a second "
                    "kernel may see 'database is locked'",
                    self.path,
                    mode,
                )
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = OFF")
            _migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    # ----------------------------------------------------------------- plumbing
    def __repr__(self) -> str:
        state = "" if self._conn is not None else " closed"
        return f"<Store {str(self.path)!r}{state}>"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database (idempotent). The image files stay."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def _db(self) -> sqlite3.Connection:
        """The connection; call with the lock held."""
        if self._conn is None:
            raise ImagineError(f"the history store at {self.path} is closed; open a new Store")
        return self._conn

    @contextlib.contextmanager
    def _write(self):
        """Lock, ``BEGIN IMMEDIATE``, yield the connection, ``COMMIT`` (or ``ROLLBACK``)."""
        with self._lock:
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db().execute(sql, tuple(args)).fetchall()

    def _records(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return [json.loads(row[0]) for row in self._query(sql, args)]

    def _one(self, sql: str, args: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = self._query(sql, args)
        return json.loads(rows[0][0]) if rows else None

    # ----------------------------------------------------------------- writing
    @staticmethod
    def _root_of(conn: sqlite3.Connection, rec: Mapping[str, Any]) -> str:
        parent = _text(rec.get("parent_id"))
        if parent is None:
            return str(rec["id"])
        row = conn.execute("SELECT root_id FROM jobs WHERE id = ?", (parent,)).fetchone()
        return row[0] if row else parent

    @staticmethod
    def _execute_upserts(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        try:
            conn.executemany(_UPSERT, rows)
        except sqlite3.IntegrityError as exc:
            if "batch_id" in str(exc):
                raise InvalidRequest(
                    "another stored job already holds this batch row; resume the batch instead"
                ) from None
            if "remote_id" not in str(exc):
                raise
            raise InvalidRequest(
                "another stored job already has the same provider and remote id; "
                "each provider job can be stored under one local id only"
            ) from None
        reroot = [(row[4], row[0], row[0]) for row in rows if row[4] != row[0]]
        if reroot:
            conn.executemany(_REROOT, reroot)

    def save(self, record: Mapping[str, Any]) -> None:
        """Insert or replace the job ``record`` (a :meth:`Job.to_record` dict), by its ``id``.

        Secrets are scrubbed first; ``root_id`` is computed from the parent's row. One
        transaction: once this returns, the row survives a crash of the process.

        Raises:
            InvalidRequest: no ``id``/``provider``, an unknown status, a bad timestamp, or another
                local job already holds this (provider, remote_id).
        """
        rec, text = _prepare(record)
        with self._write() as conn:
            row = _row(rec, text, self._root_of(conn, rec))
            self._execute_upserts(conn, [row])

    def batch_rows(self, batch_id: str) -> dict[int, str]:
        """``{row: local job id}`` of the jobs stored for batch ``batch_id`` (empty if none)."""
        return {
            int(row): job_id
            for row, job_id in self._query(
                "SELECT batch_row, id FROM jobs WHERE batch_id = ?", (str(batch_id),)
            )
        }

    def _bulk_save(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Save many records in one transaction with ``executemany`` (benchmarks, imports).

        Parents may come before or after their children in ``records``. Returns the count.
        """
        prepared = [_prepare(r) for r in records]
        parents = {rec["id"]: _text(rec.get("parent_id")) for rec, _ in prepared}
        with self._write() as conn:
            roots: dict[str, str] = {}

            def root(job_id: str) -> str:
                chain = []
                current = job_id
                while current not in roots:
                    parent = parents.get(current, "")
                    if parent == "":  # not in this batch: its stored row knows its root
                        found = conn.execute(
                            "SELECT root_id FROM jobs WHERE id = ?", (current,)
                        ).fetchone()
                        roots[current] = found[0] if found else current
                        break
                    if parent is None or parent in chain or parent == current:
                        roots[current] = current
                        break
                    chain.append(current)
                    current = parent
                for job in reversed(chain):
                    roots[job] = roots[current]
                return roots[job_id]

            rows = [_row(rec, text, root(rec["id"])) for rec, text in prepared]
            self._execute_upserts(conn, rows)
        return len(rows)

    def delete(self, job_id: str) -> bool:
        """Remove the job with local id ``job_id``; ``True`` if there was one.

        Its children keep their ``parent_id``; image files stay in the cache (another job may
        share them).
        """
        with self._write() as conn:
            return conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount > 0

    # ----------------------------------------------------------------- reading
    def get(self, key: str) -> dict[str, Any] | None:
        """The record of a job, or ``None`` if no job matches ``key``.

        ``key`` is tried as a local id, then as a remote id (any provider), then as a prefix of a
        local id (at least 6 characters).

        Raises:
            InvalidRequest: the prefix, or the remote id, matches more than one job.
        """
        key = str(key).strip()
        if not key:
            return None
        found = self._one("SELECT record FROM jobs WHERE id = ?", (key,))
        if found is not None:
            return found
        rows = self._query(
            "SELECT record, provider FROM jobs WHERE remote_id = ?" + _NEWEST_FIRST, (key,)
        )
        if len(rows) > 1:
            providers = ", ".join(sorted({row[1] for row in rows}))
            raise InvalidRequest(
                f"remote id {key!r} matches {len(rows)} jobs ({providers}); "
                "give the local id instead"
            )
        if rows:
            return json.loads(rows[0][0])
        if len(key) < MIN_PREFIX:
            return None
        # A range over the primary key index (LIKE would scan and treat _ and % specially).
        bounds = (key, key + "\U0010ffff")
        rows = self._query("SELECT record FROM jobs WHERE id >= ? AND id < ? LIMIT 2", bounds)
        if len(rows) > 1:
            (count,) = self._query("SELECT count(*) FROM jobs WHERE id >= ? AND id < ?", bounds)[0]
            raise InvalidRequest(
                f"job id prefix {key!r} matches {count} jobs; give more characters"
            )
        return json.loads(rows[0][0]) if rows else None

    def find_remote(self, provider: str, remote_id: str) -> dict[str, Any] | None:
        """The record of ``provider``'s job ``remote_id``, else ``None``."""
        return self._one(
            "SELECT record FROM jobs WHERE remote_id = ? AND provider = ?",
            (str(remote_id), str(provider)),
        )

    def find_remotes(self, provider: str, remote_ids: Iterable[str]) -> dict[str, str]:
        """``{remote_id: local id}`` of ``provider``'s stored jobs among ``remote_ids`` (one
        query per 500 ids; records are not read)."""
        ids = [str(r) for r in remote_ids]
        found: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            found.update(self._query(
                f"SELECT remote_id, id FROM jobs WHERE provider = ? AND remote_id IN ({marks})",
                (str(provider), *chunk),
            ))
        return found

    def unfinished(self) -> list[dict[str, Any]]:
        """Records of the jobs still queued or running, oldest first (what the engine resumes)."""
        return self._records(
            "SELECT record FROM jobs WHERE status IN (?, ?)" + _OLDEST_FIRST, _UNFINISHED
        )

    def _has_column(self, name: str) -> bool:
        """``True`` when the jobs table has column ``name`` (checked once per store)."""
        known: dict[str, bool] = self.__dict__.setdefault("_columns_seen", {})
        if name not in known:
            rows = self._query("SELECT name FROM pragma_table_info('jobs')", ())
            known[name] = any(row[0] == name for row in rows)
        return known[name]

    def missing_images(self) -> list[dict[str, Any]]:
        """Records of the succeeded jobs with images still to download (record key
        ``missing_images`` > 0), oldest first (what the engine retries in the background)."""
        return self._records(
            "SELECT record FROM jobs WHERE status = 'succeeded' AND "
            "COALESCE(json_extract(record, '$.missing_images'), 0) > 0" + _OLDEST_FIRST, ()
        )

    def last(self, *, provider: str | None = None) -> dict[str, Any] | None:
        """The most recently created job's record (of ``provider`` if given, default any)."""
        where, args = self._where(provider=provider)
        return self._one(f"SELECT record FROM jobs{where}{_NEWEST_FIRST} LIMIT 1", args)

    def children(self, job_id: str) -> list[dict[str, Any]]:
        """Records of the jobs started from ``job_id``, oldest first."""
        return self._records(
            "SELECT record FROM jobs WHERE parent_id = ?" + _OLDEST_FIRST, (job_id,)
        )

    @staticmethod
    def _where(
        *,
        provider: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        since: Any = None,
        until: Any = None,
        query: str | None = None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if query is not None:
            if not isinstance(query, str):
                raise InvalidRequest(f"query must be text to find in prompts, not {query!r}")
            escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("prompt LIKE ? ESCAPE '\\'")  # case-insensitive for ASCII
            args.append(f"%{escaped}%")
        if provider is not None:
            names = _many(provider)
            clauses.append(f"provider IN ({', '.join('?' * len(names))})")
            args += names
        if status is not None:
            states = [_status(s) for s in _many(status)]
            clauses.append(f"status IN ({', '.join('?' * len(states))})")
            args += states
        if since is not None:
            clauses.append("created_at >= ?")
            args.append(_utc_text(since))
        if until is not None:
            clauses.append("created_at < ?")
            args.append(_utc_text(until))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), args

    def _select(self, columns: str, limit: int | None, **filters: Any) -> tuple[str, list[Any]]:
        where, args = self._where(**filters)
        sql = f"SELECT {columns} FROM jobs{where}{_NEWEST_FIRST}"
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise InvalidRequest(f"limit must be a whole number ≥ 0, not {limit!r}")
            sql += " LIMIT ?"
            args.append(limit)
        return sql, args

    def records(
        self,
        *,
        provider: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Job records, newest first.

        Args:
            provider: only this provider (or these), default all.
            status: only this status (or these), default all.
            since: only jobs created at or after this time (datetime or ISO text; naive = UTC).
            until: only jobs created before this time (exclusive).
            limit: at most this many (the newest), default all.
        """
        sql, args = self._select(
            "record", limit, provider=provider, status=status, since=since, until=until
        )
        return self._records(sql, args)

    def frame(
        self,
        *,
        provider: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        query: str | None = None,
        limit: int | None = None,
        include_raw: bool = False,
    ) -> pd.DataFrame:
        """The history as a DataFrame: one row per job, newest first.

        Columns: :data:`FRAME_COLUMNS` (documented on :func:`jupyter_imagine.history`), plus
        ``raw`` (each job's last provider payload as a dict, secrets stripped) when
        ``include_raw`` is true (default ``False``). The index is the key ``(provider, id)``, a
        two-level MultiIndex with unnamed levels: unique and stable. Missing values are NA,
        never ``""``.

        Filters as in :meth:`records`, plus ``query``: only jobs whose prompt contains this
        text (case-insensitive for ASCII letters; default ``None``: all).

        One SQL query over the indexed columns; ``record`` is never parsed (``include_raw``
        lets SQLite extract just the payload).
        """
        select = _FRAME_SELECT + (", " + _RAW_SELECT if include_raw else "")
        if self._has_column("missing_images"):
            select = select.replace(_MISSING_FROM_RECORD, "IFNULL(missing_images, 0)")
        filters = dict(provider=provider, status=status, since=since, until=until, query=query)
        if limit is None:
            # Without a limit, read the table in storage order (newest saved first) and let
            # _build_frame re-sort by created_at only if needed: following the created_at index
            # means one table lookup per row, ~2x the SQLite time.
            where, args = self._where(**filters)
            sql = f"SELECT {select} FROM jobs{where} ORDER BY rowid DESC"
        else:
            sql, args = self._select(select, limit, **filters)
        with _gc_paused():
            return _build_frame(
                self._query(sql, args), ordered=limit is not None, include_raw=include_raw
            )

    # ----------------------------------------------------------------- images
    def put_image(
        self,
        data: bytes,
        *,
        ext: str | None = None,
        text: Mapping[str, str] | None = None,
    ) -> Path:
        """Store downloaded image bytes once in the content-addressed cache and return the path.

        Args:
            data: the bytes exactly as downloaded; their SHA-256 is the address, so the same
                download always maps to the same file.
            ext: file extension, default ``None``: detected from the magic bytes (``png``,
                ``jpg``, ``webp``, ``gif``, else ``bin``).
            text: PNG text chunks to add (prompt, parameters …), default none. Secrets are
                redacted. Ignored for other formats.

        If the file already exists it is returned untouched. Writes go to a temporary file in
        the same folder and are moved into place with :func:`os.replace` (atomic).
        """
        data = bytes(data)
        ext = _detect_ext(data) if ext is None else _clean_ext(ext)
        path = self._address(data, ext)
        if path.exists():
            return path
        payload = data
        if text and ext == "png":
            from .imaging import png_with_text

            chunks = {redact(str(k)): redact(str(v)) for k, v in text.items() if v is not None}
            payload = png_with_text(data, chunks)
        self._write_file(path, payload)
        return path

    def put_file(self, data: bytes, *, ext: str) -> Path:
        """Store ``data`` (a mask, say) in the content-addressed cache as ``….<ext>``; see
        :meth:`put_image`."""
        data = bytes(data)
        path = self._address(data, _clean_ext(ext))
        if not path.exists():
            self._write_file(path, data)
        return path

    def _address(self, data: bytes, ext: str) -> Path:
        digest = hashlib.sha256(data).hexdigest()
        return self.images_dir / digest[:2] / f"{digest[2:]}.{ext}"

    @staticmethod
    def _write_file(path: Path, payload: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


# --------------------------------------------------------------------------------- frame
@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while a large result becomes a frame.

    A 100,000-row history is ~1.5 million fresh Python objects; left on, the collector walks
    them repeatedly and more than doubles the time. Nothing built here forms cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _build_frame(
    rows: list[tuple[Any, ...]], *, ordered: bool, include_raw: bool = False
) -> pd.DataFrame:
    """The frame from rows of :data:`_FRAME_SELECT` (plus the raw payload if ``include_raw``).

    ``ordered=False``: rows come newest-*saved* first (table order); they are re-sorted newest
    first by ``created_at`` (ties: last saved first) unless they already are.
    """
    import numpy as np
    import pandas as pd

    names = _FRAME_NAMES + (("raw",) if include_raw else ())
    n = len(rows)
    columns = list(zip(*rows, strict=True)) if n else [() for _ in names]
    col = dict(zip(names, columns, strict=True))
    # pandas' default for text in this version/configuration: "str" (NaN for missing) on
    # pandas 3, object (None for missing) before.
    text_dtype = pd.Series(["x"]).dtype

    def objects(values: Any) -> np.ndarray:  # fromiter never looks inside lists and dicts
        return np.fromiter(values, dtype=object, count=n)

    def text(values: Any) -> pd.Series:  # ~2x faster from an object array than from a tuple
        return pd.Series(values if isinstance(values, np.ndarray) else objects(values),
                         dtype=text_dtype)

    fields = _unpack(np.fromiter(col["packed"], dtype=np.int64, count=n))
    ids = objects(col["id"])
    provider = _providers(ids, fields["provider"])
    status = pd.Categorical.from_codes(fields["status"].astype(np.int8),
                                       categories=list(STATUS_ORDER))

    # params, urls and paths: one JSON parse per column, not one per row.
    params, urls, paths = (json.loads("[" + ",".join(col[c]) + "]")
                           for c in ("params", "urls", "paths"))
    credits = np.array(col["credits"], dtype=np.float64)  # None becomes NaN

    # The three timestamps: one fixed-width text per row, split and parsed by numpy.
    created, started, completed = _stamps(col["times"], n)

    id_column = text(ids)
    data = {
        "provider": provider,
        "id": id_column,
        "remote_id": text(col["remote_id"]),
        "parent_id": text(col["parent_id"]),
        "root_id": text(col["root_id"]),
        "kind": pd.Categorical(objects(col["kind"])),
        "action": text(col["action"]),
        "status": status,
        "prompt": text(col["prompt"]),
        "negative_prompt": text(col["negative_prompt"]),
        "params": pd.Series(objects(params)),
        "created_at": created,
        "started_at": started,
        "completed_at": completed,
        "queue_s": _seconds(started, created),
        "run_s": _seconds(completed, started),
        "total_s": _seconds(completed, created),
        "n_images": pd.Series(fields["n_images"]),
        "missing_images": pd.Series(np.fromiter(col["missing_images"], dtype=np.int64, count=n)),
        "width": _pixels(fields["width"]),
        "height": _pixels(fields["height"]),
        "image_urls": pd.Series(objects(urls)),
        "image_paths": pd.Series(objects(paths)),
        "credits": pd.Series(credits),
        "error": text(col["error"]),
        "sandbox": pd.Series(fields["sandbox"].astype(bool)),
    }
    if include_raw:
        raw = json.loads("[" + ",".join(v or "null" for v in col["raw"]) + "]")
        data["raw"] = pd.Series([scrub(r) if r is not None else {} for r in raw], dtype=object)
    # Fresh arrays, nothing shared: no copy needed.
    frame = pd.DataFrame(
        data, columns=[*FRAME_COLUMNS, *(["raw"] if include_raw else [])], copy=False
    )
    return _keyed(frame, provider, id_column, created, ordered=ordered)


def _seconds(end: pd.Series, start: pd.Series) -> pd.Series:
    return (end - start).dt.total_seconds()


def _pixels(values: np.ndarray) -> pd.Series:
    """An Int64 column of sizes (0 stands for NA)."""
    import pandas as pd

    return pd.Series(pd.arrays.IntegerArray(values, values == 0))


def _unpack(packed: np.ndarray) -> dict[str, np.ndarray]:
    """The small numbers of the ``packed`` column (see :func:`_pack`), by name."""
    fields: dict[str, np.ndarray] = {}
    shift = 0
    for name, bits in (("status", _STATUS_BITS), ("provider", _PROVIDER_BITS),
                       ("sandbox", _SANDBOX_BITS), ("n_images", _COUNT_BITS),
                       ("width", _SIZE_BITS), ("height", _SIZE_BITS)):
        fields[name] = (packed >> shift) & ((1 << bits) - 1)
        shift += bits
    return fields


def _providers(ids: np.ndarray, codes: np.ndarray) -> pd.Categorical:
    """The provider column: known providers by code; any other one is in its id, which is
    cut back to the bare id in place."""
    import numpy as np
    import pandas as pd

    other = codes == _OTHER_PROVIDER
    if not other.any():
        return pd.Categorical.from_codes(codes.astype(np.int16), categories=list(KNOWN_PROVIDERS))
    # rare: a provider outside KNOWN_PROVIDERS (a test double, a plug-in)
    split = [str(v).split(_UNIT_SEPARATOR, 1) for v in ids[other]]
    ids[other] = [pair[1] for pair in split]
    lookup = [*KNOWN_PROVIDERS, *[""] * ((1 << _PROVIDER_BITS) - len(KNOWN_PROVIDERS))]
    values = np.array(lookup, dtype=object)[codes]
    values[other] = [pair[0] for pair in split]
    return pd.Categorical(values, categories=sorted(set(KNOWN_PROVIDERS).union(values)))


def _keyed(frame: pd.DataFrame, provider: pd.Categorical, id_column: pd.Series,
           created: pd.Series, *, ordered: bool) -> pd.DataFrame:
    """``frame`` with its (provider, id) index, newest first (see :func:`_build_frame`)."""
    import numpy as np
    import pandas as pd

    n = len(frame)
    # The key (provider, id), built from the provider codes and the id column without a new
    # string. The levels are unnamed: a level named like a column makes pandas refuse
    # df.groupby("provider") as ambiguous.
    frame.index = pd.MultiIndex(
        levels=[pd.Index(provider.categories), pd.Index(id_column)],
        codes=[provider.codes, np.arange(n)],
        verify_integrity=False,
    )
    if not ordered and n > 1:
        stamps = created.to_numpy(dtype="datetime64[ns]").view("int64")
        if (np.diff(stamps) > 0).any():
            # Primary key: created_at descending; ties keep table order (last saved first).
            order = np.lexsort((np.arange(n), -stamps))
            frame = frame.take(order)
    return frame


def _stamps(values: Sequence[str], n: int) -> tuple[pd.Series, pd.Series, pd.Series]:
    """created_at, started_at, completed_at from the rows' combined fixed-width texts."""
    import numpy as np
    import pandas as pd

    width = _STAMP_WIDTH
    try:
        # As bytes: numpy parses ASCII ~6x faster than its unicode strings.
        table = np.array(values, dtype=f"S{3 * width}").view(f"S{width}").reshape(n, 3)
        parsed = [table[:, k].astype("datetime64[us]") for k in range(3)]
        if any(len(v) != 3 * width for v in values[:1]):  # not what _utc_text writes
            raise ValueError(values[0])
    except ValueError:  # rows written by hand in another format: let pandas cope, row by row
        parts = [[v[k * width : (k + 1) * width] for v in values] for k in range(3)]
        parsed = [
            pd.to_datetime(pd.Series(p, dtype=object), format="ISO8601", utc=True)
            .dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
            for p in parts
        ]
    missing = np.datetime64(_NO_STAMP, "us")
    out = []
    for stamps in parsed:
        stamps[stamps == missing] = np.datetime64("NaT")
        out.append(pd.Series(stamps.astype("datetime64[ns]")).dt.tz_localize("UTC"))
    return out[0], out[1], out[2]
