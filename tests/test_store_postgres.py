"""Tests of jupyter_imagine.store._postgres on a real PostgreSQL server (tests/_postgres.py).

The store's contract (save, transitions, claims, frame …) runs on both backends in
tests/test_store.py, test_store_leases.py and test_frame.py; here is what only PostgreSQL has:
its schema bookkeeping, migrations started by several processes at once, row-locked claims
across processes, and its one-line errors.
"""

from __future__ import annotations

import builtins
import multiprocessing
import os
import time

import psycopg
import pytest

from jupyter_imagine.errors import ConfigurationError, StorageError
from jupyter_imagine.models import Job, Status
from jupyter_imagine.store import SCHEMA_VERSION, open_store
from jupyter_imagine.store._postgres import PostgresStore, safe_url


def _tables(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        ).fetchall()
    out: dict[str, list[str]] = {}
    for table, column in rows:
        out.setdefault(table, []).append(column)
    return out


def test_schema_version_meta_and_indexes(pg_url, tmp_path):
    with PostgresStore(pg_url, home=tmp_path) as store:
        store.save(Job(provider="apiframe", kind="imagine", prompt="p").to_record())
    tables = _tables(pg_url)
    assert {"jobs", "jupyter_imagine_meta"} <= set(tables)
    assert {"created_by", "created_on", "key_fingerprint", "version", "owner",
            "lease_until", "record"} <= set(tables["jobs"])
    with psycopg.connect(pg_url) as conn:
        meta = dict(conn.execute("SELECT key, value FROM jupyter_imagine_meta").fetchall())
        indexes = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'jobs'").fetchall()}
    assert meta["schema_version"] == str(SCHEMA_VERSION) and len(meta["salt"]) == 32
    assert {"jobs_remote", "jobs_status", "jobs_lease", "jobs_batch", "jobs_created_by",
            "jobs_rowid"} <= indexes


def _at_once(target, argses: list[tuple]) -> list:
    """Run ``target(*args, start, out)`` in one spawned process per ``args``, released together
    by ``start``; what each put on ``out``."""
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, start, out)) for args in argses]
    for proc in procs:
        proc.start()
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    return results


def _open(url: str, home: str, start, out) -> None:
    start.wait()
    try:
        with PostgresStore(url, home=home) as store:
            store.save(Job(provider="apiframe", kind="imagine", prompt="x").to_record())
        out.put("ok")
    except BaseException as exc:  # reported to the test, not lost in the child
        out.put(f"{type(exc).__name__}: {exc}")


def test_the_session_reads_the_frame_in_order_without_jit(pg_url, tmp_path):
    with PostgresStore(pg_url, home=tmp_path) as store:
        settings = {name: store._query(f"SHOW {name}")[0][0]
                    for name in ("max_parallel_workers_per_gather", "jit")}
    assert settings == {"max_parallel_workers_per_gather": "0", "jit": "off"}


def test_processes_starting_on_one_fresh_database_migrate_it_once(pg_url, tmp_path):
    results = _at_once(_open, [(pg_url, str(tmp_path / f"m{i}")) for i in range(4)])
    assert results == ["ok"] * 4
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 4
        salts = conn.execute("SELECT value FROM jupyter_imagine_meta WHERE key = 'salt'")
        assert len(salts.fetchall()) == 1


def _claimer(url: str, home: str, owner: str, start, out) -> None:
    with PostgresStore(url, home=home) as store:
        start.wait()
        got: list[str] = []
        for _ in range(10):
            got += [r["id"] for r in store.claim(owner, 60.0, time.time(), limit=7)]
        out.put(got)


def test_claims_across_processes_never_share_a_row(pg_url, tmp_path):
    with PostgresStore(pg_url, home=tmp_path) as store:
        store._bulk_save(Job(provider="apiframe", kind="imagine", prompt=f"p{i}",
                             status=Status.RUNNING).to_record() for i in range(200))
    claimed = _at_once(_claimer, [(pg_url, str(tmp_path / f"c{i}"), f"k{i}") for i in range(4)])
    every = [job_id for got in claimed for job_id in got]
    assert len(every) == len(set(every)) == 200  # each row once, all of them taken


def test_an_unreachable_server_is_one_line_without_the_password(tmp_path, monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    url = f"postgresql://ann:hunter2-secret@127.0.0.1:{port}/team"
    with pytest.raises(StorageError) as info:
        open_store(url, home=tmp_path)  # as configure(store=) and migrate --to open it
    message = str(info.value)
    assert "\n" not in message and "hunter2-secret" not in message
    assert f"postgresql://ann@127.0.0.1:{port}/team" in message
    assert "the server cannot be reached (" in message
    assert message.endswith("); check that PostgreSQL runs there and the URL's host and port")
    monkeypatch.setenv("JUPYTER_IMAGINE_STORE", url)
    with pytest.raises(StorageError) as info:
        open_store(home=tmp_path)  # from the environment: unsetting it is the way out
    assert str(info.value) == message + (", or unset JUPYTER_IMAGINE_STORE for the personal "
                                         "SQLite history")


def _end_store_connections(url: str) -> int:
    """End every jupyter_imagine connection to ``url``'s database, as a server restart, a
    failover or an idle-connection timeout does; how many."""
    with psycopg.connect(url, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'jupyter_imagine'"
        ).fetchone()[0]
    time.sleep(0.2)  # the goodbye reaches the idle connection's socket
    return ended


def test_a_connection_the_server_ended_is_opened_again_on_the_next_call(pg_url, tmp_path):
    first, second = (Job(provider="banatie", kind="generation", prompt=p) for p in "ab")
    with PostgresStore(pg_url, home=tmp_path) as store:
        store.save(first.to_record())
        assert _end_store_connections(pg_url) == 1
        store.save(second.to_record())  # no "the connection is closed" from here on
        assert {r["id"] for r in store.records()} == {first.id, second.id}
        assert _end_store_connections(pg_url) == 1
        assert len(store.frame()) == 2


def _tcp_options(fd: int) -> tuple[int, int, int, int, int]:
    import socket

    sock = socket.socket(fileno=os.dup(fd))
    try:
        return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT))
    finally:
        sock.close()


def test_a_server_gone_without_a_word_is_found_out_in_about_a_minute(pg_url, tmp_path):
    import asyncio

    with PostgresStore(pg_url, home=tmp_path) as store:
        assert _tcp_options(store._conn.raw.fileno()) == (1, 30, 10, 3, 60_000)
        asyncio.run(store.wait_for_change(0.01))  # opens the listening connection
        assert _tcp_options(store._listener.fileno()) == (1, 30, 10, 3, 60_000)
    with PostgresStore(f"{pg_url}?keepalives_idle=5", home=tmp_path) as store:
        assert _tcp_options(store._conn.raw.fileno())[:2] == (1, 5)  # the URL's own wins


def test_a_missing_database_says_so(pg_server, tmp_path):
    url = pg_server.url.rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(StorageError, match="the database does not exist; create it"):
        open_store(url, home=tmp_path)


def test_safe_url_drops_the_password_only():
    assert safe_url("postgresql://ann:pw@db.example:5433/imagine?sslmode=require") == \
        "postgresql://ann@db.example:5433/imagine"
    assert safe_url("postgresql://db/imagine") == "postgresql://db/imagine"


def test_without_psycopg_the_message_names_the_extra(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_psycopg(name, *args, **kwargs):
        if name.endswith("_postgres") or name.startswith("psycopg"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    with pytest.raises(ConfigurationError, match=r"pip install 'jupyter_imagine\[postgres\]'"):
        open_store("postgresql://db/imagine", home=tmp_path)


def test_the_environment_selects_the_team_store(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_IMAGINE_STORE", pg_url)
    with open_store(home=tmp_path) as store:
        assert isinstance(store, PostgresStore) and repr(store).startswith("<PostgresStore")
    monkeypatch.setenv("JUPYTER_IMAGINE_STORE", "mysql://db/imagine")
    with pytest.raises(ConfigurationError, match="must be a postgresql://"):
        open_store(home=tmp_path)


@pytest.mark.parametrize("url, words", [
    ("postgresql+psycopg://ann:pw-secret@db/imagine", "drop '+psycopg' (SQLAlchemy's"),
    ("PostgreSQL://ann:pw-secret@db/imagine", "write the scheme in lower case"),
    ("mysql://ann:pw-secret@db/imagine", "a store given as a mysql:// URL is not supported"),
    ("file:///tmp/pw-secret/history", "a folder path opens a personal SQLite history"),
])
def test_another_kind_of_url_is_refused_not_made_a_folder(url, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError) as info:
        open_store(url, home=tmp_path / "home")
    message = str(info.value)
    assert words in message and "pw-secret" not in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []  # no SQLite history in a folder named like the URL


def test_a_write_wakes_a_follower_at_once(pg_url, tmp_path):
    import asyncio
    import threading

    with PostgresStore(pg_url, home=tmp_path / "a") as writer, \
            PostgresStore(pg_url, home=tmp_path / "b") as follower:
        assert asyncio.run(follower.wait_for_change(0.2)) is False  # opens LISTEN; nothing yet
        job = Job(provider="apiframe", kind="imagine", prompt="p", status=Status.RUNNING)
        threading.Timer(0.3, lambda: writer.save(job.to_record())).start()
        t0 = time.monotonic()
        assert asyncio.run(follower.wait_for_change(20.0)) is True
        assert time.monotonic() - t0 < 10  # woken by the NOTIFY, not by the 20 s timeout
        assert asyncio.run(follower.wait_for_change(0.2)) is False  # one write, one wake-up
    assert follower._listener is None  # closed with the store
