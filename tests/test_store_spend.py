"""The store's spend ledger (issue 14): job costs, reservations against budgets, their atomicity
across threads and processes; on SQLite and PostgreSQL (``backend_store``)."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading
from datetime import datetime, timedelta, timezone

import pytest

from jupyter_imagine.models import Job, Status
from jupyter_imagine.store import Store, open_store

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(backend_store):
    """Each test taking ``store`` runs on SQLite and on PostgreSQL (tests/conftest.py)."""
    return backend_store


def done_job(i: int = 0, *, kind: str = "imagine", batch_id: str | None = None,
             created_at: datetime | None = None, **kw) -> Job:
    """A succeeded APIFRAME job: its cost comes from the price table (imagine 4, upscale 2)."""
    return Job(provider="apiframe", kind=kind, prompt=f"a harbour {i}", status=Status.SUCCEEDED,
               batch_id=batch_id, batch_row=i if batch_id else None,
               created_at=created_at or datetime.now(timezone.utc), **kw)


def cost_row(store, job_id: str) -> tuple:
    return tuple(store._query(
        "SELECT cost, cost_unit, cost_source FROM jobs WHERE id = ?", (job_id,))[0])


def reservation(store, job_id: str) -> tuple:
    return tuple(store._query(
        "SELECT state, amount, cost FROM reservations WHERE job_id = ?", (job_id,))[0])


# ------------------------------------------------------------------ job costs
def test_cost_columns_are_derived_on_save(store):
    imagine, upscale = done_job(1), done_job(2, kind="upscale")
    stated = done_job(3, raw={"cost": 7})
    pending = Job(provider="apiframe", kind="imagine", prompt="x")
    for job in (imagine, upscale, stated, pending):
        store.save(job.to_record())
    assert cost_row(store, imagine.id) == (4.0, "credits", "prices")
    assert cost_row(store, upscale.id) == (2.0, "credits", "prices")
    assert cost_row(store, stated.id) == (7.0, "credits", "provider")
    assert cost_row(store, pending.id) == (None, None, None)  # not known before it is done


def test_spent_sums_one_provider_and_unit_since_a_time(store):
    old = done_job(1, created_at=T0)
    new = done_job(2, created_at=T0 + timedelta(days=2))
    up = done_job(3, kind="upscale", created_at=T0 + timedelta(days=2), batch_id="b")
    other = Job(provider="blockade", kind="skybox", prompt="x", status=Status.SUCCEEDED,
                params={"variant": "Enhanced"})
    for job in (old, new, up, other):
        store.save(job.to_record())
    assert store.spent("apiframe", "credits") == 10.0
    assert store.spent("apiframe", "credits", T0 + timedelta(days=1)) == 6.0
    assert store.spent("apiframe", "credits", batch_id="b") == 2.0
    assert store.spent("apiframe", "fast_seconds") == 0.0
    assert store.spent("blockade", "credits") == 6.0


# ------------------------------------------------------------------ reservations
def test_reserve_refuses_what_would_pass_the_limit(store):
    store.save(done_job(0).to_record())  # 4 spent
    jobs = [Job(provider="apiframe", kind="imagine", prompt=f"p{i}") for i in range(3)]
    for job in jobs:
        store.save(job.to_record())
    assert store.reserve(jobs[0].id, "apiframe", 4, "credits", limit=12, since=None)
    assert store.reserve(jobs[1].id, "apiframe", 4, "credits", limit=12, since=None)  # = 12
    assert not store.reserve(jobs[2].id, "apiframe", 4, "credits", limit=12, since=None)
    assert store.reserved("apiframe", "credits") == 8.0
    assert store.reserve(jobs[1].id, "apiframe", 4, "credits", limit=12, since=None)  # held
    assert store._query("SELECT count(*) FROM reservations")[0][0] == 2
    # another unit, or no limit, is not this budget
    assert store.reserve(jobs[2].id, "apiframe", 1, "fast_seconds", limit=1, since=None)


def test_settle_moves_a_reservation_to_spent_and_release_gives_it_back(store):
    a, b, c = (Job(provider="apiframe", kind="imagine", prompt=f"p{i}") for i in range(3))
    for job in (a, b, c):
        store.save(job.to_record())
        assert store.reserve(job.id, "apiframe", 4, "credits", limit=12, since=None)
    assert store.reserved("apiframe", "credits") == 12.0
    store.save(a.updated({"status": Status.SUCCEEDED}).to_record())  # its cost is recorded
    # counted once: the job's cost replaces its open reservation at once
    assert (store.spent("apiframe", "credits"), store.reserved("apiframe", "credits")) == (4, 8)
    assert store.settle(a.id, 4.0) and not store.settle(a.id, 4.0)
    assert reservation(store, a.id) == ("settled", 4.0, 4.0)
    assert store.release_reservation(b.id) and not store.release_reservation(b.id)
    assert reservation(store, b.id)[0] == "released"
    assert (store.spent("apiframe", "credits"), store.reserved("apiframe", "credits")) == (4, 4)
    d = Job(provider="apiframe", kind="imagine", prompt="d")
    store.save(d.to_record())
    assert store.reserve(d.id, "apiframe", 4, "credits", limit=12, since=None)  # b's share


def test_a_period_counts_only_what_happened_since_it_began(store):
    store.save(done_job(0, created_at=T0).to_record())
    job = Job(provider="apiframe", kind="imagine", prompt="p")
    store.save(job.to_record())
    assert not store.reserve(job.id, "apiframe", 4, "credits", limit=6, since=None)
    assert store.reserve(job.id, "apiframe", 4, "credits", limit=6, since=T0 + timedelta(1))


def test_every_budget_of_one_reservation_is_checked_at_once(store):
    store.save(done_job(0, batch_id="b").to_record())  # batch b spent 4
    jobs = [Job(provider="apiframe", kind="imagine", prompt=f"p{i}", batch_id="b",
                batch_row=i + 1) for i in range(2)]
    for job in jobs:
        store.save(job.to_record())
    # the user's 100 a day allows it; the batch's own 8 allows one more
    assert store.reserve(jobs[0].id, "apiframe", 4, "credits", limit=100, since=None,
                         also=[(8, None, "b")])
    assert not store.reserve(jobs[1].id, "apiframe", 4, "credits", limit=100, since=None,
                             also=[(8, None, "b")])
    assert store.reserve(jobs[1].id, "apiframe", 4, "credits", limit=None, since=None,
                         also=[(12, None, "b")])


def _second_store(store):
    if isinstance(store, Store) and type(store) is Store:
        return Store(store.home)
    return open_store(store._url, home=store.home)


def test_reservations_from_many_connections_never_pass_the_limit(store):
    """Four threads, each with its own connection, reserve 3 credits for 10 jobs each against
    one budget of 40: exactly 13 reservations pass, whatever the interleaving."""
    jobs = [Job(provider="apiframe", kind="imagine", prompt=f"p{i}") for i in range(40)]
    store._bulk_save(j.to_record() for j in jobs)
    passed: list[str] = []
    start = threading.Barrier(4)

    def reserve(part: list[Job]) -> None:
        with _second_store(store) as own:
            start.wait()
            for job in part:
                if own.reserve(job.id, "apiframe", 3, "credits", limit=40, since=None):
                    passed.append(job.id)

    threads = [threading.Thread(target=reserve, args=(jobs[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(passed) == 13 and store.reserved("apiframe", "credits") == 39.0


def _reserver(home: str, ids: list[str], start, out) -> None:
    with Store(home) as store:
        start.wait()
        out.put([i for i in ids if store.reserve(i, "apiframe", 4, "credits", limit=50,
                                                 since=None)])


def test_reservation_is_atomic_across_processes(tmp_path):
    home = tmp_path / "home"
    jobs = [Job(provider="apiframe", kind="imagine", prompt=f"p{i}") for i in range(60)]
    with Store(home) as store:
        store._bulk_save(j.to_record() for j in jobs)
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_reserver, args=(str(home), [j.id for j in jobs[i::3]],
                                                 start, out)) for i in range(3)]
    for proc in procs:
        proc.start()
    start.set()
    passed = [job_id for _ in procs for job_id in out.get(timeout=60)]
    for proc in procs:
        proc.join(30)
    assert len(passed) == len(set(passed)) == 12  # 12 × 4 = 48 ≤ 50 < 52
    with Store(home) as store:
        assert store.reserved("apiframe", "credits") == 48.0


# ------------------------------------------------------------------ migration
def test_migration_from_v3_backfills_the_cost_and_adds_the_ledger(tmp_path):
    from jupyter_imagine.store._sqlite import _schema_v1, _schema_v2, _schema_v3

    path = tmp_path / "history.sqlite"
    conn = sqlite3.connect(path)
    for step in (_schema_v1, _schema_v2, _schema_v3):
        step(conn)
    job = done_job(1, kind="upscale")
    conn.execute(
        "INSERT INTO jobs (id, provider, root_id, status, created_at, credits, record) "
        "VALUES (?, 'apiframe', ?, 'succeeded', '2024-05-01T12:00:00.000000+00:00', 2, ?)",
        (job.id, job.id, json.dumps(job.to_record())),
    )
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    with Store(tmp_path) as store:
        assert cost_row(store, job.id) == (2.0, "credits", "prices")
        assert store.frame()["cost"].tolist() == [2.0]
        assert store.reserve("new", "apiframe", 2, "credits", limit=4, since=None)
    with sqlite3.connect(path) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(jobs)")]
        assert columns[-1] == "record" and "credits" not in columns
        assert columns[-4:-1] == ["cost", "cost_unit", "cost_source"]
        indexes = {r[1] for r in conn.execute("PRAGMA index_list(jobs)")}
        assert {"jobs_lease", "jobs_batch", "jobs_remote", "jobs_created_by"} <= indexes


def test_postgresql_migration_from_v3_backfills_the_cost(pg_url, tmp_path):
    import psycopg

    from jupyter_imagine.store._postgres import _Connection, _schema_v3

    job = done_job(1)
    with psycopg.connect(pg_url, autocommit=True) as raw:
        conn = _Connection(raw)
        _schema_v3(conn)
        conn.execute("CREATE TABLE jupyter_imagine_meta (key TEXT PRIMARY KEY NOT NULL, "
                     "value TEXT NOT NULL)")
        conn.execute("INSERT INTO jupyter_imagine_meta VALUES ('schema_version', '3')")
        conn.execute(
            "INSERT INTO jobs (id, provider, root_id, status, created_at, credits, record) "
            "VALUES (?, 'apiframe', ?, 'succeeded', '2024-05-01T12:00:00.000000+00:00', 4, ?)",
            (job.id, job.id, json.dumps(job.to_record())))
    with open_store(pg_url, home=tmp_path / "home") as store:
        assert cost_row(store, job.id) == (4.0, "credits", "prices")
        assert store.spent("apiframe", "credits") == 4.0
        assert store.reserve("new", "apiframe", 4, "credits", limit=8, since=None)
        columns = {r[0] for r in store._query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'jobs'")}
        assert "credits" not in columns and {"cost", "cost_unit", "cost_source"} <= columns
