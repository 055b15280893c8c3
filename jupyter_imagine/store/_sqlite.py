"""The local history of every job, and the image cache.

Layout of ``<home>`` (``JUPYTER_IMAGINE_HOME``, see :func:`jupyter_imagine._config.home`)::

    history.sqlite            one row per job (WAL mode: also history.sqlite-wal / -shm)
    images/ab/cdef….png       downloaded images, content-addressed by the SHA-256 of their bytes

The image cache is :class:`~jupyter_imagine.store._images.ImageCache` (local folder, plus the
shared store of ``JUPYTER_IMAGINE_IMAGES`` when set): the reads that become jobs
(:meth:`Store.get`, :meth:`Store.current`, :meth:`Store.claim` …) give each image's path as a
file on this machine
(another machine's path mapped by its content address, fetched from the shared store once), and
the frame's ``image_paths`` are mapped onto this machine's cache when images are shared.

The ``jobs`` table keeps the full :meth:`Job.to_record() <jupyter_imagine.models.Job.to_record>`
as JSON in ``record`` (what :meth:`Store.get` returns) and, next to it, plain indexed columns for
what lookups and the history frame need (provider, remote_id, parent_id, root_id, kind, action,
prompt, negative_prompt, params as JSON, status, progress, sandbox, the four timestamps,
n_images, width, height, paths, urls, cost/cost_unit/cost_source, error, error_type, and
batch_id/batch_row), so :meth:`Store.frame` is one SQL query over those columns and never
parses ``record``. The columns that need a provider's rules (negative_prompt, width/height,
cost, which images count as results) are derived on save by
:func:`jupyter_imagine._schema.derive_columns`.
``record`` is the table's last column (see :func:`_schema_v2` for why that matters).

Besides the record's columns, each row has ``version`` (bumped by every write),
``owner`` and ``lease_until`` (which engine drives the unfinished job, until when) and
``missing_images``. State changes are compare-and-set transitions on the version
(:meth:`Store.transition`), and no write leaves a final state (``succeeded``, ``failed``,
``cancelled``) for another: the SQL itself refuses. :meth:`Store.claim` takes unfinished rows
whose lease ran out, atomically (``BEGIN IMMEDIATE`` … ``UPDATE … RETURNING``). Every
``sqlite3``/``OSError`` failure of a public method is a
:class:`~jupyter_imagine.errors.StorageError` saying which path, what is wrong and how to fix it.

The **spend ledger** (section "spend ledger", issue 14): table ``reservations`` holds, per job
sent against a budget, the expected cost reserved before it was sent (open, then settled with
the recorded cost or released). :meth:`Store.reserve` sums the recorded ``cost`` of the
provider's jobs in that unit since the budget's period began plus the open reservations of jobs
with no recorded cost yet, and inserts the reservation only if the budget holds — all in one
``BEGIN IMMEDIATE`` transaction, so kernels sharing one history share its budgets exactly.

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
* **The frame** (:meth:`Store.frame`) is one SQL query over the indexed columns, never over
  ``record``; :mod:`jupyter_imagine._frame` owns its select list and turns the rows into the
  typed DataFrame. A large history is read in parts by rowid range (one statement, one
  snapshot); a worker thread takes the connection (and the lock) while the caller's thread parses
  each part as it comes (:mod:`._read_ahead`), so SQLite computes part *k + 1* on one core while
  Python parses part *k* on the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, timezone
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _frame
from .._schema import (
    STATUS_ORDER,
    derive_columns,
    result_images,
)
from .._secrets import get_logger, redact, scrub
from ..errors import ImagineError, InvalidRequest, StorageError
from ._frame_cache import CHANGES_TABLE, FrameCache, Plan
from ._images import ImageCache
from ._read_ahead import read_ahead

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["FRAME_COLUMNS", "STATUS_ORDER", "Store"]

log = get_logger(__name__)

#: The history frame's columns, in order; its index is the key ``(provider, id)`` (see
#: :mod:`jupyter_imagine._frame`).
FRAME_COLUMNS = _frame.DATA_COLUMNS
_UNFINISHED = ("queued", "running")

DB_NAME = "history.sqlite"
IMAGES_DIR = "images"
#: Milliseconds a statement waits for another process's write lock before failing.
BUSY_TIMEOUT_MS = 10_000
#: Bytes of the database file that reads map into memory (``PRAGMA mmap_size``).
MMAP_BYTES = 1 << 30
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
    "batch_id",
    "batch_row",
    # schema v3
    "missing_images",
    # schema v4
    "created_by",
    "created_on",
    "key_fingerprint",
    # schema v5 (replaces v2's credits)
    "cost",
    "cost_unit",
    "cost_source",
    "record",
)
_FINAL_SQL = "('succeeded', 'failed', 'cancelled')"
UNFINISHED_SQL = "('queued', 'running')"
# Batch membership (the record's batch_id/batch_row, set when the job is created) is never
# cleared by a later save: a record without it (a job stored before it carried it) keeps it.
_STICKY = frozenset({"batch_id", "batch_row"})
# Who created a job (user, host, credentials' fingerprint) is its first writer's: a kernel that
# resumes or updates it later never rewrites it.
_FIRST = frozenset({"created_by", "created_on", "key_fingerprint"})


def _assign(column: str, new: str, old: str) -> str:
    if column in _STICKY:
        return f"{column} = COALESCE({new}, {old})"
    if column in _FIRST:
        return f"{column} = COALESCE({old}, {new})"
    return f"{column} = {new}"


_ASSIGN = ", ".join(_assign(c, f"excluded.{c}", f"jobs.{c}") for c in _COLUMNS if c != "id")
# A new job is inserted at version 1 (owned when the engine gives an owner); a stored one is
# updated and its version bumped, unless that would leave a final state for another one.
_UPSERT = (
    f"INSERT INTO jobs ({', '.join(_COLUMNS)}, version, owner, lease_until) "
    f"VALUES ({', '.join('?' * len(_COLUMNS))}, 1, ?, ?) "
    f"ON CONFLICT(id) DO UPDATE SET {_ASSIGN}, version = jobs.version + 1 "
    f"WHERE jobs.status NOT IN {_FINAL_SQL} OR jobs.status = excluded.status"
)
# A compare-and-set transition: (record values but the id …, id, expected version, new status).
_TRANSITION = (
    "UPDATE jobs SET "
    + ", ".join(_assign(c, "?", c) for c in _COLUMNS if c != "id")
    + ", version = version + 1 WHERE id = ? AND version = ? "
    f"AND (status NOT IN {_FINAL_SQL} OR status = ?) RETURNING version"
)
# Unfinished rows nobody holds (no owner, or a lease that ran out), oldest first; never the
# claimer's own rows (a late heartbeat of a live engine is not a dead owner).
_CLAIMABLE = (
    f"SELECT id FROM jobs WHERE status IN {UNFINISHED_SQL} "
    "AND (owner IS NULL OR lease_until IS NULL OR lease_until < ?) AND owner IS NOT ?"
)
# Descendants stored before their ancestor get re-rooted when it arrives: (new_root, old_root, id).
_REROOT = "UPDATE jobs SET root_id = ? WHERE root_id = ? AND id <> ?"
_NEWEST_FIRST = " ORDER BY created_at DESC, rowid DESC"
_OLDEST_FIRST = " ORDER BY created_at ASC, rowid ASC"
# --------------------------------------------------------------------------------- schema
#: The ``jobs`` columns (but ``record``, always last) each shipped schema adds, as
#: ``(name, SQLite declaration)`` in table order. Frozen: every shipped schema's table, on both
#: backends, is built from these lists, so never edit one; a new schema adds its own.
V1_COLUMNS = tuple(tuple(line.split(None, 1)) for line in """
    id           TEXT PRIMARY KEY NOT NULL
    provider     TEXT NOT NULL
    remote_id    TEXT
    parent_id    TEXT
    root_id      TEXT NOT NULL
    kind         TEXT
    action       TEXT
    prompt       TEXT
    status       TEXT NOT NULL
    progress     REAL
    sandbox      INTEGER NOT NULL DEFAULT 0
    created_at   TEXT NOT NULL
    started_at   TEXT
    completed_at TEXT
    updated_at   TEXT
    n_images     INTEGER NOT NULL DEFAULT 0
    paths        TEXT NOT NULL DEFAULT '[]'
    urls         TEXT NOT NULL DEFAULT '[]'
    error        TEXT
    error_type   TEXT
""".strip().splitlines())
V2_COLUMNS = (
    ("negative_prompt", "TEXT"), ("params", "TEXT NOT NULL DEFAULT '{}'"), ("width", "INTEGER"),
    ("height", "INTEGER"), ("credits", "REAL"), ("batch_id", "TEXT"), ("batch_row", "INTEGER"),
)
V3_COLUMNS = (
    ("missing_images", "INTEGER NOT NULL DEFAULT 0"), ("version", "INTEGER NOT NULL DEFAULT 0"),
    ("owner", "TEXT"), ("lease_until", "REAL"),
)
V4_COLUMNS = (("created_by", "TEXT"), ("created_on", "TEXT"), ("key_fingerprint", "TEXT"))
#: Schema 5's columns, which replace v2's ``credits``.
V5_COLUMNS = (("cost", "REAL"), ("cost_unit", "TEXT"), ("cost_source", "TEXT"))


def column_lines(columns: Iterable[tuple[str, str]], indent: int = 12) -> str:
    """``columns`` as lines of a ``CREATE TABLE``, each name padded to 15, each line ending in
    a comma (``indent`` spaces before each; default 12)."""
    return "".join(f"\n{' ' * indent}{name:<15} {declaration}," for name, declaration in columns)


def _inline(columns: Iterable[tuple[str, str]]) -> str:
    """``columns`` as ``name declaration, `` on one line (each followed by a comma)."""
    return "".join(f"{name} {declaration}, " for name, declaration in columns)


def _names(columns: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    return tuple(name for name, _ in columns)


def _schema_v1(conn: sqlite3.Connection) -> None:
    conn.execute(f"CREATE TABLE jobs ({column_lines(V1_COLUMNS)} record TEXT NOT NULL)")
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
        None,  # credits: schema 5 replaces it with cost/cost_unit/cost_source from the record
        row[-1],
    )


#: The columns of schema 2 but ``record`` (each line followed by a comma), in table order.
_V2_LINES = column_lines((*V1_COLUMNS, *V2_COLUMNS)) + "\n"


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
    conn.execute(f"CREATE TABLE jobs_v2 ({_V2_LINES} record TEXT NOT NULL)")
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
    for statement in JOB_INDEXES:
        conn.execute(statement)


JOB_INDEXES = (
    "CREATE UNIQUE INDEX jobs_remote ON jobs (remote_id, provider) WHERE remote_id IS NOT NULL",
    "CREATE INDEX jobs_status ON jobs (status)",
    "CREATE INDEX jobs_created_at ON jobs (created_at)",
    "CREATE INDEX jobs_parent_id ON jobs (parent_id)",
    "CREATE INDEX jobs_root_id ON jobs (root_id)",
    "CREATE INDEX jobs_provider ON jobs (provider, created_at)",
    "CREATE UNIQUE INDEX jobs_batch ON jobs (batch_id, batch_row) WHERE batch_id IS NOT NULL",
)


LEASE_INDEX = (
    f"CREATE INDEX jobs_lease ON jobs (lease_until, owner) WHERE status IN {UNFINISHED_SQL}"
)
USER_INDEX = "CREATE INDEX jobs_created_by ON jobs (created_by, created_at)"
#: The key/value table of this history's settings (its salt).
META_TABLE = "meta"
#: The v2 columns but ``record`` (the table's first columns since schema 2).
_V2_NAMES = _names((*V1_COLUMNS, *V2_COLUMNS))


def new_salt() -> str:
    """A fresh random salt for the credentials' fingerprints (32 hex digits)."""
    return secrets.token_hex(16)


def _schema_v3(conn: sqlite3.Connection) -> None:
    """Ownership (issue 10): ``version`` (bumped by every write, the compare-and-set token),
    ``owner`` and ``lease_until`` (epoch seconds) of the engine driving an unfinished job, and
    ``missing_images`` (result images not downloaded). Rebuilt like :func:`_schema_v2` so
    ``record`` stays last; rowids are kept. A partial index serves the claim of unfinished rows
    by lease.
    """
    conn.execute(f"CREATE TABLE jobs_v3 ({_V2_LINES} {_inline(V3_COLUMNS)}record TEXT NOT NULL)")
    kept = ", ".join((*_V2_NAMES, "record"))
    conn.execute(f"INSERT INTO jobs_v3 (rowid, {kept}) SELECT rowid, {kept} FROM jobs")
    conn.execute("DROP TABLE jobs")
    conn.execute("ALTER TABLE jobs_v3 RENAME TO jobs")
    for statement in JOB_INDEXES:
        conn.execute(statement)
    conn.execute(
        f"CREATE INDEX jobs_lease ON jobs (lease_until, owner) WHERE status IN {UNFINISHED_SQL}"
    )


def _schema_v4(conn: sqlite3.Connection) -> None:
    """Provenance (issue 13): ``created_by`` (user) and ``created_on`` (host) of the kernel
    that created a job, and ``key_fingerprint`` (a salted hash of the provider credentials it
    used, never the key) so only a kernel with the same credentials resumes it; a ``meta``
    table holds this history's random salt. Rebuilt like :func:`_schema_v2`; rows stored
    before stay NULL (unknown), never a guess.
    """
    # missing_images stays where schema 3 put it, before the added columns
    added = _inline((V3_COLUMNS[0], *V4_COLUMNS, *V3_COLUMNS[1:]))
    conn.execute(f"CREATE TABLE jobs_v4 ({_V2_LINES} {added}record TEXT NOT NULL)")
    kept = ", ".join((*_V2_NAMES, *_names(V3_COLUMNS), "record"))
    conn.execute(f"INSERT INTO jobs_v4 (rowid, {kept}) SELECT rowid, {kept} FROM jobs")
    conn.execute("DROP TABLE jobs")
    conn.execute("ALTER TABLE jobs_v4 RENAME TO jobs")
    for statement in (*JOB_INDEXES, LEASE_INDEX, USER_INDEX):
        conn.execute(statement)
    conn.execute(f"CREATE TABLE {META_TABLE} (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)")
    conn.execute(f"INSERT INTO {META_TABLE} (key, value) VALUES ('salt', ?)", (new_salt(),))


#: The spend ledger: one row per job whose expected cost was reserved against a budget before it
#: was sent (``state`` open → settled with the recorded ``cost``, or released when it failed).
RESERVATIONS = """
CREATE TABLE reservations (
    job_id     TEXT PRIMARY KEY NOT NULL,
    provider   TEXT NOT NULL,
    unit       TEXT NOT NULL,
    amount     {real} NOT NULL,
    created_at TEXT NOT NULL,
    state      TEXT NOT NULL DEFAULT 'open',
    cost       {real}
)
"""
RESERVATION_INDEX = (
    "CREATE INDEX reservations_open ON reservations (provider, unit, created_at) "
    "WHERE state = 'open'"
)
#: Schema 5's job columns (before ``record``).
COST_COLUMNS = _names(V5_COLUMNS)


def cost_values(record_text: str) -> tuple[Any, Any, Any]:
    """``(cost, cost_unit, cost_source)`` of a stored record (schema 5's backfill)."""
    derived = derive_columns(json.loads(record_text))
    return derived["cost"], _text(derived["cost_unit"]), _text(derived["cost_source"])


def _schema_v5(conn: sqlite3.Connection) -> None:
    """Spend (issue 14): ``cost`` REAL, ``cost_unit`` and ``cost_source`` TEXT replace
    ``credits``, backfilled from ``record`` (:func:`~jupyter_imagine._schema.derive_columns`),
    and the ``reservations`` table.

    Rebuilt like :func:`_schema_v2` so ``record`` stays last; the new table is the stored one's
    own ``CREATE`` text with ``credits`` out and the new columns in before ``record``, and its
    indexes are the stored ones, so this step keeps whatever columns and indexes the steps
    before it made. Rowids are kept.
    """
    (create,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").fetchone()
    indexes = [sql for (sql,) in conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs' "
        "AND sql IS NOT NULL")]
    create = re.sub(r"^CREATE TABLE\s+(\"?)jobs\1", "CREATE TABLE jobs_v5", create.strip())
    create = re.sub(r"\bcredits\s+REAL\s*,\s*", "", create)
    create, found = re.subn(r"\brecord\s+TEXT\s+NOT\s+NULL",
                            f"{_inline(V5_COLUMNS)}record TEXT NOT NULL",
                            create)
    assert found == 1, create
    conn.execute(create)
    kept = [row[1] for row in conn.execute("PRAGMA table_info(jobs)")
            if row[1] not in ("credits", "record")]
    names = ", ".join(kept)
    insert = (f"INSERT INTO jobs_v5 (rowid, {names}, {', '.join(COST_COLUMNS)}, record) "
              f"VALUES ({', '.join('?' * (len(kept) + 5))})")
    cursor = conn.execute(f"SELECT rowid, {names}, record FROM jobs ORDER BY rowid")
    while chunk := cursor.fetchmany(5000):
        conn.executemany(insert, [(*row[:-1], *cost_values(row[-1]), row[-1]) for row in chunk])
    conn.execute("DROP TABLE jobs")
    conn.execute("ALTER TABLE jobs_v5 RENAME TO jobs")
    for statement in indexes:
        conn.execute(statement)
    conn.execute(RESERVATIONS.format(real="REAL"))
    conn.execute(RESERVATION_INDEX)


# Schema 6's change journal, CHANGES_TABLE: the last change of each job row (by rowid), numbered
# in commit order (one writer at a time: SQLite's write lock), so a reader that has seen every
# change up to number n learns what changed since with seq > n (see _frame_cache).
#: The job columns whose update is a change (all but the lease and version: a claim, renewal or
#: release changes nothing the history shows). Frozen, like the column lists above: every save
#: writes them all, so a later schema's new column is seen with them.
V6_CHANGE_COLUMNS = tuple(
    name for name in (*_names(V1_COLUMNS), *_names(V2_COLUMNS), *_names(V3_COLUMNS),
                      *_names(V4_COLUMNS), *_names(V5_COLUMNS), "record")
    if name not in ("credits", "version", "owner", "lease_until")
)
# The row's number moves up, or a new row gets the next: never a delete and an insert, which would
# give the newest row's number again (the maximum is gone), nor INSERT OR REPLACE (a trigger's
# conflict clause gives way to the outer statement's, and a save's UPSERT would make it fail).
_NOTE_CHANGE = (
    f"UPDATE {CHANGES_TABLE} SET seq = (SELECT MAX(seq) FROM {CHANGES_TABLE}) + 1 "
    "WHERE job_rowid = {row}.rowid; "
    f"INSERT INTO {CHANGES_TABLE} (job_rowid, seq) "
    f"SELECT {{row}}.rowid, IFNULL((SELECT MAX(seq) FROM {CHANGES_TABLE}), 0) + 1 "
    f"WHERE NOT EXISTS (SELECT 1 FROM {CHANGES_TABLE} WHERE job_rowid = {{row}}.rowid)"
)


def _schema_v6(conn: sqlite3.Connection) -> None:
    """The history frame's change journal (issue 12): table :data:`CHANGES_TABLE` (``job_rowid``,
    ``seq``), written by three triggers on ``jobs``: a row inserted, one of
    :data:`V6_CHANGE_COLUMNS` updated, a row deleted. Triggers, so every writer (any kernel, any
    version, a hand-made ``DELETE``) keeps it. A later migration that rebuilds ``jobs`` must
    create them again (``DROP TABLE jobs`` drops them)."""
    conn.execute(f"CREATE TABLE {CHANGES_TABLE} "
                 "(job_rowid INTEGER PRIMARY KEY NOT NULL, seq INTEGER NOT NULL)")
    conn.execute(f"CREATE INDEX {CHANGES_TABLE}_seq ON {CHANGES_TABLE} (seq)")
    columns = ", ".join(V6_CHANGE_COLUMNS)
    for name, event, row in (("jobs_inserted", "INSERT", "NEW"),
                             ("jobs_updated", f"UPDATE OF {columns}", "NEW"),
                             ("jobs_deleted", "DELETE", "OLD")):
        conn.execute(f"CREATE TRIGGER {name} AFTER {event} ON jobs "
                     f"BEGIN {_NOTE_CHANGE.format(row=row)}; END")


#: Migration ``i`` brings the schema from ``user_version`` i to i + 1. Later issues append
#: functions here (rebuild the table so ``record`` stays last, see :func:`_schema_v2`, plus a
#: backfill); never edit a shipped one.
_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _schema_v1, _schema_v2, _schema_v3, _schema_v4, _schema_v5, _schema_v6,
)
SCHEMA_VERSION = len(_MIGRATIONS)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` in one ``BEGIN IMMEDIATE`` transaction.

    A history already at (or past) this version is not locked at all, so a kernel opens and
    reads it while another program holds a long write transaction (WAL readers never wait).
    Otherwise the version is read again inside the transaction, so two kernels opening one
    fresh home at once migrate it once: the second waits for the first's write lock, then
    finds nothing to do.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version < SCHEMA_VERSION:
        version = _migrate_locked(conn)
    if version > SCHEMA_VERSION:
        log.warning(
            "history schema version %d is newer than this jupyter_imagine (%d); "
            "upgrade jupyter_imagine if anything looks wrong",
            version,
            SCHEMA_VERSION,
        )


def _migrate_locked(conn: sqlite3.Connection) -> int:
    """The migrations still due, in one ``BEGIN IMMEDIATE`` transaction; the version found."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for step in range(version, SCHEMA_VERSION):
            _MIGRATIONS[step](conn)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return int(version)


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


#: Who writes a job when its record does not say: (created_by, created_on, key_fingerprint).
Stamp = tuple[str | None, str | None, str | None]
_NO_STAMP: Stamp = (None, None, None)


def _row(rec: dict[str, Any], text: str, root_id: str, stamp: Stamp = _NO_STAMP
         ) -> tuple[Any, ...]:
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
        _text(rec.get("batch_id")),
        int(rec["batch_row"]) if rec.get("batch_row") is not None else None,
        _missing(rec.get("missing_images")),
        _text(rec.get("created_by")) or stamp[0],
        _text(rec.get("created_on")) or stamp[1],
        _text(rec.get("key_fingerprint")) or stamp[2],
        derived["cost"],
        _text(derived["cost_unit"]),
        _text(derived["cost_source"]),
        text,
    )


_STATUS_AT = _COLUMNS.index("status")


def _with_lease(row: Sequence[Any]) -> dict[str, Any]:
    """A record (row[0], JSON) with the row's version, owner and lease_until added."""
    rec = json.loads(row[0])
    rec.update(version=row[1], owner=row[2], lease_until=row[3])
    return rec


def _missing(value: Any) -> int:
    """The ``missing_images`` column from the record key of that name (a count or a list of
    the missing images), default 0."""
    if isinstance(value, (list, tuple, dict)):
        return len(value)
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


# ------------------------------------------------------------------------ storage errors
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def storage_error(exc: BaseException, path: Path) -> StorageError:
    """The :class:`StorageError` for an ``sqlite3`` or ``OSError`` failure on the history at
    ``path`` (or on the file the ``OSError`` names): what is wrong and how to fix it."""
    where = Path(getattr(exc, "filename", None) or path)
    text = str(exc).lower()
    code = getattr(exc, "errno", None)
    home = "set JUPYTER_IMAGINE_HOME to another folder"
    if code in _FULL or "full" in text:
        what, fix = "the disk is full", f"free some space on that disk, or {home}"
    elif isinstance(exc, (NotADirectoryError, FileExistsError)) or code == errno.ENOTDIR:
        what, fix = ("a file is in the way where a folder should be",
                     f"move that file away, or {home}")
    elif code in _READ_ONLY or "readonly" in text or "read-only" in text or (
        "unable to open" in text and _read_only(where)
    ):
        what, fix = "it is read-only for this user", f"make it writable, or {home}"
    elif "locked" in text or "busy" in text:
        what = f"another process has held it locked for more than {BUSY_TIMEOUT_MS / 1000:g} s"
        fix = "close the other kernel or program using this history, then try again"
    elif "not a database" in text or "malformed" in text or "corrupt" in text:
        what = "it is not a valid SQLite database (corrupt or truncated)"
        fix = f"move {where} aside (a new empty history is then created) or restore a backup"
    elif "unable to open" in text:
        what = "it cannot be opened"
        fix = f"check that the folder exists and is writable, or {home}"
    else:
        what, fix = f"{type(exc).__name__}: {exc}", f"check the file and its folder, or {home}"
    return StorageError(f"the history at {where} cannot be used: {what}; {fix}",
                        path=str(where))


def _read_only(path: Path) -> bool:
    """Whether the folder of ``path`` exists but cannot be written (mode or mount)."""
    folder = path if path.is_dir() else path.parent
    return folder.is_dir() and not os.access(folder, os.W_OK)


F = TypeVar("F", bound=Callable[..., Any])


def _guarded(method: F) -> F:
    """Map ``sqlite3.Error`` and ``OSError`` raised by a public :class:`Store` method to
    :class:`StorageError` (the store's boundary, like the providers' transport errors)."""

    @functools.wraps(method)
    def guarded(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except self._DB_ERRORS as exc:
            raise self._storage_error(exc) from None

    return guarded  # type: ignore[return-value]


# --------------------------------------------------------------------------------- store
class Store:
    """The history database and image cache under one folder.

    Args:
        home: the folder (created if missing). Default ``None``:
            :func:`jupyter_imagine._config.home` (``JUPYTER_IMAGINE_HOME`` or
            ``<jupyter data dir>/jupyter_imagine``).
        images: the shared image store (a folder or an fsspec URL, see
            :func:`jupyter_imagine._config.images_url`), default ``None``:
            ``JUPYTER_IMAGINE_IMAGES`` if set, else the local folder only.

    Attributes:
        home: the folder, absolute.
        path: the SQLite file, ``home / "history.sqlite"``.
        images_dir: the local image cache, ``home / "images"``.
        image_cache: the :class:`~jupyter_imagine.store._images.ImageCache` over it (and over
            the shared image store, if any).

    Thread-safe: one connection shared by all threads behind a lock (see the module docstring).
    Use as a context manager, or call :meth:`close`.

    The SQL is written once, for both backends: ``?`` placeholders and the few spellings that
    differ are class attributes here, which :class:`~jupyter_imagine.store._postgres.PostgresStore`
    overrides.
    """

    #: What a database failure raises (mapped to :class:`StorageError` by every public method).
    _DB_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
    #: What a broken uniqueness rule raises.
    _INTEGRITY_ERRORS: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)
    #: The frame query's templates.
    _DIALECT: _frame.Dialect = _frame.SQLITE
    #: The case-insensitive (for ASCII) substring match of ``history(query=…)``.
    _LIKE = "LIKE"
    #: The claimable rows' subquery (see :data:`_CLAIMABLE`) and what ends it (row locks).
    _CLAIMABLE = _CLAIMABLE
    _CLAIM_LOCK = ""
    #: The key/value table holding the salt.
    _META = META_TABLE

    def __init__(
        self, home: str | os.PathLike[str] | None = None, *, images: str | None = None
    ) -> None:
        if home is None:
            from .._config import home as default_home

            home = default_home()
        self.home = Path(home).expanduser().absolute()
        self.path = self.home / DB_NAME
        self._lock = threading.Lock()
        try:
            self._open_images(images)
            conn = self._open_retrying()
        except (sqlite3.Error, OSError) as exc:
            raise storage_error(exc, self.path) from None
        self._conn: sqlite3.Connection | None = conn
        #: The parts whole-history frames keep, so the next read reads only the changed blocks
        #: (:mod:`._frame_cache`; needs schema 6's change journal); ``None``: read whole each time.
        self._frame_cache: FrameCache | None = FrameCache()
        self._init_provenance()

    def _init_provenance(self) -> None:
        """Who this process writes jobs as (:func:`~jupyter_imagine._config.identity`), and no
        credentials' fingerprints yet (:meth:`fingerprint` registers them)."""
        from .._config import identity

        self.user, self.host = identity()
        self._fingerprints: dict[str, str] = {}
        self._salt: bytes | None = None

    def _open_retrying(self, attempts: int = 6) -> sqlite3.Connection:
        """:meth:`_open`, tried again when SQLite answers "locked" at once.

        Kernels opening one fresh home together race to switch it to WAL and migrate it; SQLite
        answers such a lock upgrade with ``SQLITE_BUSY`` without waiting (waiting could
        deadlock), so the busy timeout does not cover it. A short back-off does. A "locked"
        that came after the busy timeout was waited out is not tried again: another program
        holds the write lock, and the caller hears so once, not after ``attempts`` timeouts.
        """
        for attempt in range(attempts):
            started = time.monotonic()
            try:
                return self._open()
            except sqlite3.OperationalError as exc:
                waited = time.monotonic() - started >= BUSY_TIMEOUT_MS / 2000
                if attempt == attempts - 1 or waited or "locked" not in str(exc).lower():
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _open(self) -> sqlite3.Connection:
        """Connect, set the pragmas (WAL, busy timeout) and migrate the schema."""
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
            # Reads map the file instead of copying every page through SQLite's small page
            # cache: the frame's full-table scan is ~3x cheaper that way.
            conn.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
            conn.execute("PRAGMA foreign_keys = OFF")
            _migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    # ----------------------------------------------------------------- plumbing
    def __repr__(self) -> str:
        state = "" if self._conn is not None else " closed"
        return f"<Store {str(self.path)!r}{state}>"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @_guarded
    def close(self) -> None:
        """Close the database (idempotent). The image files stay."""
        with self._lock:
            conn, self._conn = self._conn, None
            if self._frame_cache is not None:
                self._frame_cache.clear()
            if conn is not None:
                conn.close()

    def _db(self) -> sqlite3.Connection:
        """The connection; call with the lock held."""
        if self._conn is None:
            raise ImagineError(f"the history store at {self.path} is closed; open a new Store")
        return self._conn

    def _storage_error(self, exc: BaseException) -> StorageError:
        return storage_error(exc, self.path)

    @staticmethod
    def _begin(conn: Any) -> None:
        """Start a write transaction that excludes every other writer (``BEGIN IMMEDIATE``)."""
        conn.execute("BEGIN IMMEDIATE")

    @contextlib.contextmanager
    def _write(self):
        """Lock, begin (:meth:`_begin`), yield the connection, ``COMMIT`` (or ``ROLLBACK``)."""
        with self._lock:
            conn = self._db()
            self._begin(conn)
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

    def _records(
        self, sql: str, args: Iterable[Any] = (), *, local: bool = True
    ) -> list[dict[str, Any]]:
        """The records of ``sql``'s rows, with this machine's image paths unless ``local`` is
        false (default true: :meth:`_local`)."""
        records = [json.loads(row[0]) for row in self._query(sql, args)]
        return [self._local(rec) for rec in records] if local else records

    def _one(self, sql: str, args: Iterable[Any] = ()) -> dict[str, Any] | None:
        rows = self._query(sql, args)
        return self._local(json.loads(rows[0][0])) if rows else None

    # ----------------------------------------------------------------- writing
    @staticmethod
    def _root_of(conn: sqlite3.Connection, rec: Mapping[str, Any]) -> str:
        parent = _text(rec.get("parent_id"))
        if parent is None:
            return str(rec["id"])
        row = conn.execute("SELECT root_id FROM jobs WHERE id = ?", (parent,)).fetchone()
        return row[0] if row else parent

    @contextlib.contextmanager
    def _integrity(self):
        """Turn a broken uniqueness rule into the :class:`InvalidRequest` that explains it
        (SQLite names the columns, PostgreSQL the index)."""
        try:
            yield
        except self._INTEGRITY_ERRORS as exc:
            text = str(exc)
            if "batch_id" in text or "jobs_batch" in text:
                raise InvalidRequest(
                    "another stored job already holds this batch row; resume the batch instead"
                ) from None
            if "remote_id" not in text and "jobs_remote" not in text:
                raise
            raise InvalidRequest(
                "another stored job already has the same provider and remote id; "
                "each provider job can be stored under one local id only"
            ) from None

    @staticmethod
    def _reroot(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
        reroot = [(row[4], row[0], row[0]) for row in rows if row[4] != row[0]]
        if reroot:
            conn.executemany(_REROOT, reroot)

    @_guarded
    def save(
        self,
        record: Mapping[str, Any],
        *,
        owner: str | None = None,
        lease_until: float | None = None,
    ) -> int | None:
        """Insert the job ``record`` (a :meth:`Job.to_record` dict), or update it by its ``id``.

        A new row gets version 1 and, when ``owner`` is given (default ``None``: unowned),
        that owner's lease until ``lease_until`` (epoch seconds). An update bumps the version
        and keeps owner and lease; it never leaves a final state for another one (a pull of an
        older status does not overwrite a finished local row). State changes of a job the
        engine drives go through :meth:`transition` instead.

        Secrets are scrubbed first; ``root_id`` is computed from the parent's row. One
        transaction: once this returns, the row survives a crash of the process.

        Returns the stored version, or ``None`` when the update was refused (final row).

        Raises:
            InvalidRequest: no ``id``/``provider``, an unknown status, a bad timestamp, or another
                local job already holds this (provider, remote_id).
            StorageError: the history cannot be written.
        """
        rec, text = _prepare(record)
        with self._write() as conn, self._integrity():
            row = _row(rec, text, self._root_of(conn, rec), self._stamp(rec))
            found = conn.execute(_UPSERT + " RETURNING version", (*row, owner, lease_until))
            stored = found.fetchone()
            self._reroot(conn, [row])
        return stored[0] if stored else None

    @_guarded
    def transition(
        self, job_id: str, expected_version: int, record: Mapping[str, Any]
    ) -> int | None:
        """Compare-and-set: store ``record`` as job ``job_id``'s new state if its row is still
        at ``expected_version``; returns the new version.

        Returns ``None`` when the row moved on (another writer stored a newer version, another
        engine claimed it, it was deleted) or when the record would leave a final state: a
        final row may only be rewritten with the same final status (late images). One
        transaction; owner and lease stay.
        """
        rec, text = _prepare({**record, "id": job_id})
        with self._write() as conn, self._integrity():
            row = _row(rec, text, self._root_of(conn, rec), self._stamp(rec))
            found = conn.execute(
                _TRANSITION, (*row[1:], row[0], int(expected_version), row[_STATUS_AT])
            ).fetchone()
            if found is None:
                return None
            self._reroot(conn, [row])
        return found[0]

    async def wait_for_change(self, timeout: float) -> bool:
        """Wait until another writer may have changed a job, at most ``timeout`` seconds;
        ``True`` if told of a change. SQLite tells nobody: this sleeps ``timeout`` and returns
        ``False`` (the follower then polls the versions). The team store wakes at once."""
        await asyncio.sleep(timeout)
        return False

    # ------------------------------------------------------------- provenance
    @_guarded
    def fingerprint(self, provider: str, credentials: str) -> str:
        """Register and return the fingerprint of ``provider``'s ``credentials`` (the key,
        base URL … as one text): an HMAC-SHA256 under this history's random salt, so the
        store can tell whose credentials a job used without holding them. Jobs this store
        saves for ``provider`` from now on carry it, and :meth:`claim` takes only jobs whose
        fingerprint is one registered here (or unknown)."""
        if self._salt is None:
            row = self._query(f"SELECT value FROM {self._META} WHERE key = ?", ("salt",))
            self._salt = str(row[0][0]).encode() if row else b""
        digest = hmac.new(self._salt, f"{provider}\0{credentials}".encode(), hashlib.sha256)
        found = self._fingerprints[str(provider)] = digest.hexdigest()[:32]
        return found

    def _stamp(self, rec: Mapping[str, Any]) -> Stamp:
        """(created_by, created_on, key_fingerprint) for a job this process writes."""
        return self.user, self.host, self._fingerprints.get(str(rec.get("provider")))

    def _credentials_sql(self) -> tuple[str, list[str]]:
        """The claim's condition on the credentials' fingerprint, and its arguments."""
        known = sorted(set(self._fingerprints.values()))
        if not known:
            return " AND key_fingerprint IS NULL", []
        marks = ", ".join("?" * len(known))
        return f" AND (key_fingerprint IS NULL OR key_fingerprint IN ({marks}))", known

    # ----------------------------------------------------------------- leases
    @_guarded
    def claim(
        self,
        owner: str,
        lease_s: float,
        now: float,
        limit: int | None = None,
        *,
        job_id: str | None = None,
        own: bool = False,
    ) -> list[dict[str, Any]]:
        """Take, atomically, the unfinished jobs nobody holds: no owner, or a lease that ended
        before ``now`` (epoch seconds); never ``owner``'s own unless ``own``. They become
        ``owner``'s until ``now + lease_s`` and their version is bumped (a late former owner's
        next :meth:`transition` is refused).

        Args:
            limit: at most this many, the oldest first (default ``None``: all).
            job_id: only this job (default ``None``: any).
            own: also ``owner``'s own jobs whose lease ended (:meth:`release`), default
                ``False``: an engine takes other engines' jobs over, its own it drives already.

        Only jobs made with credentials this store has a :meth:`fingerprint` of (or with
        unknown ones: jobs stored before fingerprints) are taken: a teammate's job waits for a
        kernel with the teammate's key.

        Returns their records, oldest first, each with its new ``version``, ``owner`` and
        ``lease_until``. Two engines claiming at once never both get a row.
        """
        credentials, known = self._credentials_sql()
        # The claimable rows are those whose owner is not this one: "" is nobody's name.
        sql, args = self._CLAIMABLE + credentials, [now, "" if own else owner, *known]
        if job_id is not None:
            sql, args = sql + " AND id = ?", [*args, str(job_id)]
        sql += " ORDER BY created_at"
        if limit is not None:
            sql, args = sql + " LIMIT ?", [*args, int(limit)]
        sql += self._CLAIM_LOCK
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE jobs SET owner = ?, lease_until = ?, version = version + 1 "
                f"WHERE id IN ({sql}) RETURNING record, version, owner, lease_until, created_at",
                (owner, now + lease_s, *args),
            ).fetchall()
        rows.sort(key=lambda row: row[4])
        return [self._local(_with_lease(row)) for row in rows]

    @_guarded
    def renew(self, owner: str, until: float) -> int:
        """Extend ``owner``'s leases on its unfinished jobs to ``until`` (epoch seconds), in
        one statement; a released lease (0) stays released. Returns how many. The version is
        not bumped (the owner's next transition still matches)."""
        with self._write() as conn:
            return conn.execute(
                "UPDATE jobs SET lease_until = ? WHERE owner = ? AND lease_until > 0 "
                f"AND status IN {UNFINISHED_SQL}",
                (until, owner),
            ).rowcount

    @_guarded
    def release(self, owner: str, job_ids: Iterable[str] | None = None) -> int:
        """End ``owner``'s leases (``lease_until = 0``) on its unfinished jobs (only
        ``job_ids`` if given, default all), so another engine may claim them at once."""
        sql = (f"UPDATE jobs SET lease_until = 0 WHERE owner = ? "
               f"AND status IN {UNFINISHED_SQL}")
        args: list[Any] = [owner]
        if job_ids is not None:
            ids = [str(i) for i in job_ids]
            sql += f" AND id IN ({', '.join('?' * len(ids))})"
            args += ids
        with self._write() as conn:
            return conn.execute(sql, args).rowcount

    @_guarded
    def current(self, job_id: str) -> dict[str, Any] | None:
        """The record of local job ``job_id`` with its ``version``, ``owner`` and
        ``lease_until``, else ``None`` (what the engine needs to drive or follow it)."""
        rows = self._query(
            "SELECT record, version, owner, lease_until FROM jobs WHERE id = ?", (str(job_id),)
        )
        return self._local(_with_lease(rows[0])) if rows else None

    @_guarded
    def versions(self, job_ids: Iterable[str]) -> dict[str, int]:
        """``{id: version}`` of the stored jobs among ``job_ids`` (records are not read)."""
        ids = [str(i) for i in job_ids]
        found: dict[str, int] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            found.update(self._query(
                f"SELECT id, version FROM jobs WHERE id IN ({', '.join('?' * len(chunk))})",
                chunk,
            ))
        return found

    @_guarded
    def batch_rows(self, batch_id: str) -> dict[int, str]:
        """``{row: local job id}`` of the jobs stored for batch ``batch_id`` (empty if none)."""
        return {
            int(row): job_id
            for row, job_id in self._query(
                "SELECT batch_row, id FROM jobs WHERE batch_id = ?", (str(batch_id),)
            )
        }

    @_guarded
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

            rows = [_row(rec, text, root(rec["id"]), self._stamp(rec)) for rec, text in prepared]
            with self._integrity():
                conn.executemany(_UPSERT, [(*row, None, None) for row in rows])
            self._reroot(conn, rows)
        return len(rows)

    @_guarded
    def delete(self, job_id: str) -> bool:
        """Remove the job with local id ``job_id``; ``True`` if there was one.

        Its children keep their ``parent_id``; image files stay in the cache (another job may
        share them).
        """
        with self._write() as conn:
            return conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount > 0

    # ----------------------------------------------------------------- reading
    @_guarded
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
            return self._local(json.loads(rows[0][0]))
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
        return self._local(json.loads(rows[0][0])) if rows else None

    @_guarded
    def find_remote(self, provider: str, remote_id: str) -> dict[str, Any] | None:
        """The record of ``provider``'s job ``remote_id``, else ``None``."""
        return self._one(
            "SELECT record FROM jobs WHERE remote_id = ? AND provider = ?",
            (str(remote_id), str(provider)),
        )

    @_guarded
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

    @_guarded
    def unfinished(self) -> list[dict[str, Any]]:
        """Records of the jobs still queued or running, oldest first (what the engine resumes)."""
        return self._records(
            "SELECT record FROM jobs WHERE status IN (?, ?)" + _OLDEST_FIRST, _UNFINISHED
        )

    @_guarded
    def missing_images(self) -> list[dict[str, Any]]:
        """Records of the succeeded jobs with images still to download (record key
        ``missing_images`` > 0), oldest first (what the engine retries in the background)."""
        return self._records(
            "SELECT record FROM jobs WHERE status = 'succeeded' AND missing_images > 0"
            + _OLDEST_FIRST,
            (),
        )

    @_guarded
    def last(self, *, provider: str | None = None) -> dict[str, Any] | None:
        """The most recently created job's record (of ``provider`` if given, default any)."""
        where, args = self._where(provider=provider)
        return self._one(f"SELECT record FROM jobs{where}{_NEWEST_FIRST} LIMIT 1", args)

    @_guarded
    def children(self, job_id: str) -> list[dict[str, Any]]:
        """Records of the jobs started from ``job_id``, oldest first."""
        return self._records(
            "SELECT record FROM jobs WHERE parent_id = ?" + _OLDEST_FIRST, (job_id,)
        )

    @classmethod
    def _where(
        cls,
        *,
        provider: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        since: Any = None,
        until: Any = None,
        query: str | None = None,
        user: str | Iterable[str] | None = None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if query is not None:
            if not isinstance(query, str):
                raise InvalidRequest(f"query must be text to find in prompts, not {query!r}")
            escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append(f"prompt {cls._LIKE} ? ESCAPE '\\'")  # case-insensitive for ASCII
            args.append(f"%{escaped}%")
        if provider is not None:
            names = _many(provider)
            clauses.append(f"provider IN ({', '.join('?' * len(names))})")
            args += names
        if status is not None:
            states = [_status(s) for s in _many(status)]
            clauses.append(f"status IN ({', '.join('?' * len(states))})")
            args += states
        if user is not None:
            users = _many(user)
            clauses.append(f"created_by IN ({', '.join('?' * len(users))})")
            args += users
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

    @_guarded
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

        Image paths are as stored (possibly another machine's: this is the export a migration
        copies); the reads that become jobs (:meth:`get`, :meth:`current`, :meth:`claim` …)
        give this machine's files instead.
        """
        sql, args = self._select(
            "record", limit, provider=provider, status=status, since=since, until=until
        )
        return self._records(sql, args, local=False)

    @_guarded
    def frame(
        self,
        *,
        provider: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        query: str | None = None,
        user: str | Iterable[str] | None = None,
        limit: int | None = None,
        include_raw: bool = False,
        keys_as_columns: bool = False,
    ) -> pd.DataFrame:
        """The history as a DataFrame: one row per job, newest first.

        Columns: :data:`FRAME_COLUMNS` (documented on :func:`jupyter_imagine.history`), plus
        ``raw`` (each job's last provider payload as a dict, secrets stripped) when
        ``include_raw`` is true (default ``False``). The index is the key ``(provider, id)``, a
        two-level MultiIndex named ``provider`` and ``id``: unique and stable. With
        ``keys_as_columns=True`` (default ``False``) they are also the first two columns and the
        index levels are unnamed. Missing values are NA, never ``""``.

        Filters as in :meth:`records`, plus ``query``: only jobs whose prompt contains this
        text (case-insensitive for ASCII letters; default ``None``: all), and ``user``: only
        jobs created by this user (or these; default ``None``: everyone's).

        One SQL query over the indexed columns (see :mod:`jupyter_imagine._frame`); ``record``
        is never parsed (``include_raw`` lets SQLite extract just the payload). The whole
        history (no filter, no limit, no ``include_raw``) is read again only where it changed
        while the frame last returned is alive (:mod:`._frame_cache`).
        """
        where, args = self._where(
            provider=provider, status=status, since=since, until=until, query=query, user=user
        )
        if self._frame_cache is not None and not where and limit is None and not include_raw:
            return self._whole_frame(self._frame_cache, keys_as_columns)
        order, bounds = "", []
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise InvalidRequest(f"limit must be a whole number ≥ 0, not {limit!r}")
            order = _NEWEST_FIRST + " LIMIT ?"
            args.append(limit)
        else:
            bounds = _frame.part_bounds(*self._query("SELECT min(rowid), max(rowid) FROM jobs")[0])
        sql, args, storage_order = _frame.select(
            where, args, order=order, bounds=bounds, include_raw=include_raw, dialect=self._DIALECT
        )
        with _frame.gc_paused():
            return _frame.build(
                (self._paths_here(row, include_raw) for row in self._frame_rows(sql, args, bounds)),
                ordered=limit is not None, storage_order=storage_order,
                include_raw=include_raw, keys_as_columns=keys_as_columns,
            )

    def _whole_frame(self, cache: FrameCache, keys_as_columns: bool) -> pd.DataFrame:
        """The whole history's frame from the parts ``cache`` kept and the blocks that changed
        since, read ahead in one read transaction."""
        plans: list[Plan] = []

        def rows() -> Iterator[Sequence[Any]]:
            with self._lock:
                conn = self._db()
                conn.execute("BEGIN")  # one snapshot for the plan and the blocks
                try:
                    plans.append(cache.plan(conn))
                    if plans[0].read:
                        sql, args = _frame.select_blocks(plans[0].read, plans[0].size)
                        yield from self._cursor(conn, sql, args)
                finally:
                    if conn.in_transaction:
                        conn.execute("COMMIT")

        with _frame.gc_paused():
            read = dict(_frame.parse_row(self._paths_here(row, False)) for row in read_ahead(rows))
            parts = {**plans[0].reuse, **read}
            frame = _frame.assemble(parts, ordered=False, storage_order=True,
                                    keys_as_columns=keys_as_columns)
        cache.keep(frame, plans[0], parts)
        return frame

    def _frame_rows(self, sql: str, args: list[Any], bounds: list[int]) -> Iterable[Sequence[Any]]:
        """The frame query's rows: read ahead in a worker thread when there are several parts
        (``bounds``), so the next part is computed while the last is parsed."""
        if not bounds:
            return self._query(sql, args)

        def rows() -> Iterator[Sequence[Any]]:
            with self._lock:
                yield from self._cursor(self._db(), sql, args)

        return read_ahead(rows)

    @staticmethod
    def _cursor(conn: Any, sql: str, args: list[Any]) -> Iterator[Sequence[Any]]:
        """The rows of ``sql`` as the database computes them (sqlite3 steps per row)."""
        return iter(conn.execute(sql, tuple(args)))

    def _paths_here(self, row: Sequence[Any], include_raw: bool) -> Sequence[Any]:
        """The frame query's ``row`` with ``image_paths`` as this machine's paths when the
        images are shared: every content address mapped onto the local cache in the JSON
        text, before it is parsed (:meth:`ImageCache.here_json`: no file is checked or
        fetched). Without a shared store the paths are shown as stored."""
        if self.image_cache.shared is None or row is None:
            return row
        at = _frame.aggregate_at("image_paths", include_raw=include_raw)
        if not row[at]:
            return row
        return (*row[:at], self.image_cache.here_json(row[at]), *row[at + 1 :])

    # ----------------------------------------------------------------- spend ledger
    @_guarded
    def reserve(
        self,
        job_id: str,
        provider: str,
        amount: float,
        unit: str,
        *,
        limit: float | None,
        since: datetime | str | None,
        also: Iterable[tuple[float, datetime | str | None, str | None]] = (),
    ) -> bool:
        """Reserve ``amount`` ``unit`` of ``provider`` for job ``job_id`` unless that passes a
        budget; ``True`` when reserved (again: a job already holding a reservation keeps it).

        A budget is passed when what ``provider`` spent in ``unit`` since ``since`` (the
        ``cost`` of the jobs created since then, :meth:`spent`) plus the open reservations since
        then (:meth:`reserved`) plus ``amount`` is more than ``limit``. ``limit=None`` (default
        none given) checks nothing; ``also`` adds more budgets, each ``(limit, since,
        batch_id)``: a ``batch_id`` counts only that batch's jobs. All of it is one write
        transaction (``BEGIN IMMEDIATE`` here, the advisory write lock on PostgreSQL), so
        kernels sharing a store share its budgets exactly: two reservations never both pass.
        """
        budgets = [(limit, since, None)] if limit is not None else []
        budgets += list(also)
        with self._write() as conn:
            held = conn.execute("SELECT state FROM reservations WHERE job_id = ?",
                                (str(job_id),)).fetchone()
            if held is not None and held[0] == "open":
                return True
            for cap, start, batch_id in budgets:
                used = self._spent(conn, provider, unit, start, batch_id) + self._reserved(
                    conn, provider, unit, start, batch_id)
                if used + float(amount) > float(cap) + 1e-9:
                    return False
            conn.execute(
                "INSERT INTO reservations (job_id, provider, unit, amount, created_at, state) "
                "VALUES (?, ?, ?, ?, ?, 'open') ON CONFLICT (job_id) DO UPDATE SET "
                "amount = excluded.amount, unit = excluded.unit, state = 'open', cost = NULL, "
                "created_at = excluded.created_at",
                (str(job_id), str(provider), str(unit), float(amount),
                 _utc_text(datetime.now(timezone.utc))),
            )
        return True

    @_guarded
    def settle(self, job_id: str, cost: float | None) -> bool:
        """Close job ``job_id``'s open reservation with its recorded ``cost`` (the job's
        ``cost`` column counts from now on); ``True`` if one was open."""
        with self._write() as conn:
            return conn.execute(
                "UPDATE reservations SET state = 'settled', cost = ? "
                "WHERE job_id = ? AND state = 'open'", (cost, str(job_id))).rowcount > 0

    @_guarded
    def release_reservation(self, job_id: str) -> bool:
        """Give job ``job_id``'s open reservation back (it failed or was never sent); ``True``
        if one was open."""
        with self._write() as conn:
            return conn.execute(
                "UPDATE reservations SET state = 'released' WHERE job_id = ? AND state = 'open'",
                (str(job_id),)).rowcount > 0

    @_guarded
    def spent(self, provider: str, unit: str, since: datetime | str | None = None, *,
              batch_id: str | None = None) -> float:
        """The recorded ``cost`` in ``unit`` of ``provider``'s jobs created since ``since``
        (default ``None``: ever; only batch ``batch_id``'s jobs if given)."""
        with self._lock:
            return self._spent(self._db(), provider, unit, since, batch_id)

    @_guarded
    def reserved(self, provider: str, unit: str, since: datetime | str | None = None, *,
                 batch_id: str | None = None) -> float:
        """The open reservations in ``unit`` of ``provider`` made since ``since`` (default
        ``None``: ever) whose job has no recorded cost yet (only batch ``batch_id``'s)."""
        with self._lock:
            return self._reserved(self._db(), provider, unit, since, batch_id)

    @staticmethod
    def _spent(conn: Any, provider: str, unit: str, since: Any, batch_id: str | None) -> float:
        sql = "SELECT COALESCE(SUM(cost), 0) FROM jobs WHERE provider = ? AND cost_unit = ?"
        args: list[Any] = [str(provider), str(unit)]
        if since is not None:
            sql, args = sql + " AND created_at >= ?", [*args, _utc_text(since)]
        if batch_id is not None:
            sql, args = sql + " AND batch_id = ?", [*args, str(batch_id)]
        return float(conn.execute(sql, args).fetchone()[0])

    @staticmethod
    def _reserved(conn: Any, provider: str, unit: str, since: Any,
                  batch_id: str | None) -> float:
        sql = ("SELECT COALESCE(SUM(r.amount), 0) FROM reservations r "
               "LEFT JOIN jobs j ON j.id = r.job_id WHERE r.state = 'open' AND r.provider = ? "
               "AND r.unit = ? AND j.cost IS NULL")
        args: list[Any] = [str(provider), str(unit)]
        if since is not None:
            sql, args = sql + " AND r.created_at >= ?", [*args, _utc_text(since)]
        if batch_id is not None:
            sql, args = sql + " AND j.batch_id = ?", [*args, str(batch_id)]
        return float(conn.execute(sql, args).fetchone()[0])

    # ----------------------------------------------------------------- images
    def _open_images(self, images: str | None) -> None:
        """Set :attr:`images_dir` and :attr:`image_cache` (shared when ``images`` or
        ``JUPYTER_IMAGINE_IMAGES`` names a shared store) and create the local folder."""
        if images is None:
            from .._config import images_url

            images = images_url()
        self.images_dir = self.home / IMAGES_DIR
        self.image_cache = ImageCache(self.images_dir, images)
        self.images_dir.mkdir(parents=True, exist_ok=True)

    @_guarded
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
        the same folder and are moved into place with :func:`os.replace` (atomic). With a
        shared image store the same file is copied there too, if absent (a failure there is
        logged, not raised: see :mod:`._images`).
        """
        return self.image_cache.put(data, ext, text)

    @_guarded
    def put_file(self, data: bytes, *, ext: str) -> Path:
        """Store ``data`` (a mask, say) in the content-addressed cache as ``….<ext>``; see
        :meth:`put_image`."""
        return self.image_cache.put(data, ext)

    def _local(self, rec: dict[str, Any]) -> dict[str, Any]:
        """``rec`` with its image paths (and its ``params``' ``…_path`` files, such as a mask)
        as files on this machine (:meth:`ImageCache.local`: another machine's path, the local
        cache, or fetched from the shared store). An image found nowhere keeps its path without
        a shared store (unchanged behaviour); with one it counts as missing, so the engine
        downloads it again. A parameter file found nowhere keeps its path."""
        images = [*(rec.get("images") or []), *([rec["grid"]] if rec.get("grid") else [])]
        for image in images:
            path = image.get("path") if isinstance(image, dict) else None
            if not path:
                continue
            found = self.image_cache.local(path)
            if found is not None:
                image["path"] = str(found)
            elif self.image_cache.shared is not None:
                image["path"] = None
                image["missing"] = (
                    "download failed: not in this machine's image cache nor in the shared "
                    "store, retrying" if image.get("url") else
                    "expired: not in this machine's image cache nor in the shared store"
                )
        missing = sum(1 for i in images if isinstance(i, dict) and i.get("missing"))
        if missing:
            rec["missing_images"] = missing
        params = rec.get("params")
        if isinstance(params, dict):  # files a submit reads (a mask): ``mask_path`` …
            for key, value in params.items():
                if key.endswith("_path") and isinstance(value, str) and value:
                    found = self.image_cache.local(value)
                    params[key] = str(found) if found is not None else value
        return rec
