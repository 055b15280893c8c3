"""The team store: the same history on PostgreSQL, for many people and machines (issue 13).

:class:`PostgresStore` is :class:`~jupyter_imagine.store._sqlite.Store` with another connection:
every method, its SQL (``?`` placeholders, upsert, compare-and-set, claims, the frame's
aggregate rows) and its guarantees are shared; what differs is a handful of class attributes and
this plumbing:

* **Driver: psycopg 3** (``pip install jupyter_imagine[postgres]``). It is the maintained
  PostgreSQL driver for Python, binary wheels included, thread-safe connections, server-side
  parameter binding, and ``LISTEN``/``NOTIFY``. ADBC's driver would read Arrow straight from
  the server, but the frame is already a few aggregate rows of texts (see
  :mod:`jupyter_imagine._frame`): the per-row cost it would remove is not paid here, and its
  write path (upserts, ``RETURNING``, transactions) is thinner. The frame's rows are streamed
  (:meth:`_Connection.stream`), so this process parses one part while the server computes the
  next.
* **Placeholders**: :class:`_Connection` turns the store's ``?`` into psycopg's ``%s``.
* **Writers** are serialised like SQLite's ``BEGIN IMMEDIATE``: each write transaction first
  takes one transaction-level advisory lock, so read-then-write steps (the parent's root, the
  batch row, a budget's sum) see no concurrent writer; each holds it for milliseconds.
* **Claims** add ``FOR UPDATE SKIP LOCKED`` to the claimable rows' subquery: two kernels
  claiming at once never both get a row, and neither waits for the other's rows.
* **Schema**: one ``jobs`` table with the same columns and texts as SQLite's, plus an explicit
  ``rowid`` (a ``BIGSERIAL``: the save order SQLite's rowid gives), ``id`` in the ``"C"``
  collation (prefix look-ups are byte ranges), floats as ``DOUBLE PRECISION`` (``REAL`` is 4
  bytes on PostgreSQL: a lease's epoch seconds would lose minutes). The version lives in table
  ``jupyter_imagine_meta``; migrations run under a session advisory lock, so kernels starting
  together migrate once. Versions 1–3 are SQLite's history: PostgreSQL starts at 3, and every
  later version is one step on both backends.
* **Frame order**: PostgreSQL's heap order is not save order, so each part of the frame reads
  its rows ordered by ``rowid`` (:data:`jupyter_imagine._frame.POSTGRESQL`), with parallel plans
  off for the session so the aggregate sees them in that order. JIT compilation is off for the
  session too: it cost the frame's query more than the query itself.

The URL's password never reaches a message, a log or ``repr``: :func:`safe_url` drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import threading
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from .. import _frame
from .._outage import Outage
from .._secrets import get_logger
from ..errors import StorageError
from ._sqlite import (
    JOB_INDEXES,
    RESERVATION_INDEX,
    RESERVATIONS,
    SCHEMA_VERSION,
    UNFINISHED_SQL,
    USER_INDEX,
    V1_COLUMNS,
    V2_COLUMNS,
    V3_COLUMNS,
    V4_COLUMNS,
    V5_COLUMNS,
    Store,
    column_lines,
    cost_values,
    new_salt,
)

__all__ = ["PostgresStore", "safe_url"]

log = get_logger(__name__)

#: Seconds to wait for the server when connecting.
CONNECT_TIMEOUT_S = 10
#: libpq's TCP settings for the team store's connections, unless the URL gives its own: a server
#: gone without a word (a dropped VPN, a laptop's network asleep) is found out in about a minute
#: (an idle connection: 30 s, then 3 probes 10 s apart; unacknowledged data: 60 s) instead of
#: TCP's hours, and the call fails in one line instead of hanging.
KEEPALIVES = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10",
              "keepalives_count": "3", "tcp_user_timeout": "60000"}
#: The advisory lock keys: every write transaction, and schema migration.
_WRITE_LOCK = 0x6A69_7772  # "jiwr"
_MIGRATE_LOCK = 0x6A69_6D67  # "jimg"
#: The channel every write transaction notifies (LISTEN/NOTIFY).
CHANNEL = "jupyter_imagine_jobs"
#: The first version PostgreSQL has (SQLite's v1–v3 in one table).
_BASE_VERSION = 3

#: How PostgreSQL spells SQLite's declarations: ``id`` in the "C" collation (prefix look-ups are
#: byte ranges), floats 8 bytes (``REAL`` is 4 bytes here: a lease's epoch seconds would lose
#: minutes).
_ID = 'TEXT COLLATE "C" PRIMARY KEY NOT NULL'
_TYPES = {"REAL": "DOUBLE PRECISION"}


def _columns(*columns: tuple[str, str]) -> list[tuple[str, str]]:
    """SQLite's ``(name, declaration)`` columns with PostgreSQL's declarations."""
    return [
        (name, _ID if name == "id" else " ".join(_TYPES.get(word, word) for word in decl.split()))
        for name, decl in columns
    ]


#: SQLite's schema 3 table, with an explicit ``rowid`` (the save order SQLite's rowid gives).
_JOBS = (
    "CREATE TABLE jobs ("
    + column_lines(_columns(("rowid", "BIGSERIAL NOT NULL"), *V1_COLUMNS, *V2_COLUMNS,
                            *V3_COLUMNS), indent=4)
    + " record TEXT NOT NULL)"
)


def _add_columns(columns: Iterable[tuple[str, str]]) -> str:
    """The ``ALTER TABLE jobs`` that adds SQLite's ``columns`` (PostgreSQL's declarations)."""
    added = ", ".join(f"ADD COLUMN {name} {decl}" for name, decl in _columns(*columns))
    return f"ALTER TABLE jobs {added}"


def _schema_v3(conn: _Connection) -> None:
    """SQLite's schema 3 in one step: the table, its indexes, and the rowid order index."""
    conn.execute(_JOBS)
    for statement in JOB_INDEXES:
        conn.execute(statement)
    conn.execute(
        f"CREATE INDEX jobs_lease ON jobs (lease_until, owner) WHERE status IN {UNFINISHED_SQL}"
    )
    conn.execute("CREATE INDEX jobs_rowid ON jobs (rowid)")


def _schema_v4(conn: _Connection) -> None:
    """SQLite's schema 4: who created each job, the credentials' fingerprint, the salt."""
    conn.execute(_add_columns(V4_COLUMNS))
    conn.execute(USER_INDEX)
    conn.execute("INSERT INTO jupyter_imagine_meta (key, value) VALUES ('salt', ?)",
                 (new_salt(),))


def _schema_v5(conn: _Connection) -> None:
    """SQLite's schema 5: ``cost``, ``cost_unit``, ``cost_source`` replace ``credits``
    (backfilled from ``record``), and the ``reservations`` table (column order does not matter
    here: PostgreSQL keeps long records out of line)."""
    conn.execute(_add_columns(V5_COLUMNS))
    cursor = conn.execute("SELECT id, record FROM jobs")
    updates = [(*cost_values(record), job_id) for job_id, record in cursor.fetchall()]
    updates = [u for u in updates if u[0] is not None]
    for start in range(0, len(updates), 5000):
        conn.executemany("UPDATE jobs SET cost = ?, cost_unit = ?, cost_source = ? WHERE id = ?",
                         updates[start:start + 5000])
    conn.execute("ALTER TABLE jobs DROP COLUMN credits")
    conn.execute(RESERVATIONS.format(real="DOUBLE PRECISION"))
    conn.execute(RESERVATION_INDEX)


def _schema_v6(conn: _Connection) -> None:
    """SQLite's schema 6 is the change journal its cached history frame reads; the team store
    keeps no frame cache (a sequence's numbers are not in commit order here, so "every change
    after *n*" cannot be asked without serialising every writer), so nothing changes."""


#: Migration to version ``v`` (a key), applied in order from the stored version + 1.
_MIGRATIONS = {_BASE_VERSION: _schema_v3, 4: _schema_v4, 5: _schema_v5, 6: _schema_v6}


def safe_url(url: str) -> str:
    """``url`` without its password (``postgresql://ann@db/imagine``), for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://…"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = (f"{parts.username}@" if parts.username else "") + host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """The store's SQL with psycopg's placeholders (a literal ``%`` doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Connection:
    """A psycopg connection that takes the store's SQL as the ``sqlite3`` module would:
    ``?`` placeholders, and ``execute``/``executemany`` on the connection itself."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, args: Iterable[Any] = ()) -> psycopg.Cursor[Any]:
        values = tuple(args)
        return self.raw.execute(_pg_sql(sql) if values else sql, values or None)

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> psycopg.Cursor[Any]:
        cursor = self.raw.cursor()
        cursor.executemany(_pg_sql(sql), [tuple(row) for row in rows])
        return cursor

    def stream(self, sql: str, args: Iterable[Any] = ()) -> Iterator[Any]:
        """The rows of ``sql`` as the server sends them (psycopg's single-row mode)."""
        values = tuple(args)
        return self.raw.cursor().stream(_pg_sql(sql) if values else sql, values or None)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self.raw.close()


def storage_error(exc: BaseException, url: str) -> StorageError:
    """The one-line :class:`StorageError` for a failure of the team store at ``url``."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = safe_url(url)
    low = text.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        what, fix = "the server refused the user or password", (
            "check the URL's user and its password (~/.pgpass or PGPASSWORD)")
    elif "does not exist" in low and "database" in low:
        what, fix = "the database does not exist", "create it (createdb) or fix the URL"
    elif isinstance(exc, psycopg.OperationalError):
        what, fix = f"the server cannot be reached ({text})", (
            "check that PostgreSQL runs there and the URL's host and port")
    else:
        what, fix = f"{type(exc).__name__}: {text}", "check the server's log"
    from .._secrets import redact

    return StorageError(redact(f"the team store at {where} cannot be used: {what}; {fix}"),
                        path=where)


class PostgresStore(Store):
    """The history on a PostgreSQL server; images in the local cache under ``home``.

    Args:
        url: ``postgresql://user[:password]@host[:port]/db`` (a libpq URL; the password may
            also come from ``~/.pgpass`` or ``PGPASSWORD``).
        home: the folder of the image cache, default ``None``:
            :func:`jupyter_imagine._config.home`.
        images: the shared image store every machine reads and writes (a folder or an fsspec
            URL), default ``None``: ``JUPYTER_IMAGINE_IMAGES`` if set, else each machine keeps
            its images in its own local folder only.

    Attributes:
        url: the URL without its password (also :attr:`path`, what messages name).
    """

    _DB_ERRORS = (psycopg.Error, OSError)
    _INTEGRITY_ERRORS = (psycopg.errors.UniqueViolation,)
    _DIALECT = _frame.POSTGRESQL
    _LIKE = "ILIKE"
    _CLAIMABLE = (
        f"SELECT id FROM jobs WHERE status IN {UNFINISHED_SQL} "
        "AND (owner IS NULL OR lease_until IS NULL OR lease_until < ?) "
        "AND owner IS DISTINCT FROM ?"
    )
    _CLAIM_LOCK = " FOR UPDATE SKIP LOCKED"
    _META = "jupyter_imagine_meta"

    @staticmethod
    def _cursor(conn: Any, sql: str, args: list[Any]) -> Iterator[Sequence[Any]]:
        """The rows of ``sql`` as the server sends them: it computes the next part of the frame
        while this process parses the last."""
        return conn.stream(sql, args)

    def __init__(
        self, url: str, home: str | os.PathLike[str] | None = None, *, images: str | None = None
    ) -> None:
        if home is None:
            from .._config import home as default_home

            home = default_home()
        self._url = url
        self.url = self.path = safe_url(url)  # type: ignore[assignment]
        self.home = Path(home).expanduser().absolute()
        self._lock = threading.Lock()
        try:
            self._open_images(images)
            conn = self._connect()
        except self._DB_ERRORS as exc:
            raise self._storage_error(exc) from None
        self._conn = conn  # type: ignore[assignment]
        self._frame_cache = None  # no change journal here: see _schema_v6
        self._listener: psycopg.Connection[Any] | None = None
        self._listen_lock = threading.Lock()
        self._live = Outage(log, f"live updates from {self.url}")
        self._init_provenance()

    def __repr__(self) -> str:
        state = "" if self._conn is not None else " closed"
        return f"<PostgresStore {self.url!r}{state}>"

    def _db(self) -> _Connection:  # type: ignore[override]
        """The connection; a new one first when the server ended the last while it sat idle
        (a restart, a failover, an idle-connection timeout: :func:`_ended`), so the next call
        works instead of failing on it. Call with the lock held."""
        conn: _Connection = super()._db()  # type: ignore[assignment]
        if _ended(conn.raw):
            fresh = self._connect()  # the server still down: its OperationalError, one line
            with contextlib.suppress(psycopg.Error):
                conn.close()
            self._conn = fresh  # type: ignore[assignment]
            log.info("the team store at %s had ended the connection; connected again",
                     self.url)
            conn = fresh
        return conn

    def _storage_error(self, exc: BaseException) -> StorageError:
        if isinstance(exc, psycopg.Error):
            return storage_error(exc, self._url)
        return super()._storage_error(exc)

    def _connect(self) -> _Connection:
        raw = psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                              application_name="jupyter_imagine", **_tcp(self._url))
        conn = _Connection(raw)
        try:
            # The frame aggregates rows in the order its subquery sorts them; a parallel plan
            # could interleave workers' rows.
            conn.execute("SET max_parallel_workers_per_gather = 0")
            # The frame's query is a long list of aggregates over text functions that JIT
            # cannot speed up: compiling it took 0.5–0.7 s before the first part of 100,000
            # jobs came (about as long as the whole query without it). Other queries are small.
            conn.execute("SET jit = off")
            _migrate(conn)
        except BaseException:
            raw.close()
            raise
        return conn

    @staticmethod
    def _begin(conn: Any) -> None:
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_WRITE_LOCK,))
        # Delivered at COMMIT only (dropped on ROLLBACK), once per transaction: every kernel
        # following a job wakes (wait_for_change) instead of waiting for its next poll.
        conn.execute(f"NOTIFY {CHANNEL}")

    # ----------------------------------------------------------------- live
    async def wait_for_change(self, timeout: float) -> bool:
        """Wait for a ``NOTIFY`` of any write to the team store, at most ``timeout`` seconds;
        ``True`` if one came. The listening connection is opened on first use; if it fails,
        this sleeps like the SQLite store (the follower polls) and tries again next time."""
        try:
            got = await asyncio.to_thread(self._notified, timeout)
        except psycopg.Error as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            self._live.failed(first_line, "following by polling")
            self._close_listener()
            await asyncio.sleep(timeout)
            return False
        self._live.worked("working again")
        return got

    def _notified(self, timeout: float) -> bool:
        with self._listen_lock:
            if self._listener is None:
                self._listener = psycopg.connect(self._url, autocommit=True,
                                                 connect_timeout=CONNECT_TIMEOUT_S,
                                                 **_tcp(self._url))
                self._listener.execute(f"LISTEN {CHANNEL}")
            got = False
            for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                got = True
            return got

    def _close_listener(self) -> None:
        with self._listen_lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()

    def close(self) -> None:
        """Close the connections (idempotent); the image files stay."""
        self._close_listener()
        super().close()


def _tcp(url: str) -> dict[str, str]:
    """:data:`KEEPALIVES` but those ``url`` sets itself."""
    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        given = {}  # connecting says what is wrong with it
    return {key: value for key, value in KEEPALIVES.items() if key not in given}


def _ended(raw: psycopg.Connection[Any]) -> bool:
    """Whether the server ended ``raw``: it is closed or broken, or it sits idle between two
    calls with something to read. psycopg learns that the server said goodbye only on the
    next statement, which then fails; an idle connection of the store (autocommit, no
    ``LISTEN``: the listener has its own) is sent nothing else but a rare parameter report,
    for which a new connection is a harmless price."""
    if raw.closed or raw.broken:
        return True
    if raw.info.transaction_status != TransactionStatus.IDLE:
        return False  # inside a transaction: never swapped under it
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(raw.fileno(), selectors.EVENT_READ)
            return bool(selector.select(timeout=0))
    except (OSError, ValueError, psycopg.Error):
        return True


def _migrate(conn: _Connection) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION`, once, however many kernels start at once."""
    conn.execute("SELECT pg_advisory_lock(?)", (_MIGRATE_LOCK,))
    try:
        conn.execute("BEGIN")
        try:
            version = _stored_version(conn)
            for target in range(max(version + 1, _BASE_VERSION), SCHEMA_VERSION + 1):
                _MIGRATIONS[target](conn)
            if version < SCHEMA_VERSION:
                conn.execute(
                    "INSERT INTO jupyter_imagine_meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("SELECT pg_advisory_unlock(?)", (_MIGRATE_LOCK,))
    if version > SCHEMA_VERSION:
        log.warning("team store schema version %d is newer than this jupyter_imagine (%d); "
                    "upgrade jupyter_imagine if anything looks wrong", version, SCHEMA_VERSION)


def _stored_version(conn: _Connection) -> int:
    conn.execute("CREATE TABLE IF NOT EXISTS jupyter_imagine_meta "
                 "(key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)")
    row = conn.execute(
        "SELECT value FROM jupyter_imagine_meta WHERE key = ?", ("schema_version",)
    ).fetchone()
    return int(row[0]) if row else 0
