"""Ownership in jupyter_imagine.store: versions, compare-and-set transitions, leases and claims
(issue 10), on real SQLite files, with threads and processes where it matters."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jupyter_imagine.models import Job, Status
from jupyter_imagine.store import SCHEMA_VERSION, Store

FINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def store(backend_store):
    """Each test taking ``store`` runs on SQLite and on PostgreSQL (tests/conftest.py)."""
    return backend_store


def new_job(i: int = 0, **kw) -> Job:
    return Job(provider="apiframe", kind="imagine", prompt=f"a harbour {i}", **kw)


def stored(store: Store, job_id: str) -> tuple[str, int, str | None, float | None]:
    return tuple(store._query(  # the store's own connection: either backend
        "SELECT status, version, owner, lease_until FROM jobs WHERE id = ?", (job_id,)
    )[0])


# ------------------------------------------------------------------ versions and CAS
def test_a_new_row_starts_at_version_1_owned_as_given(store):
    job = new_job()
    assert store.save(job.to_record(), owner="k1", lease_until=123.0) == 1
    assert stored(store, job.id) == ("queued", 1, "k1", 123.0)
    assert store.get(job.id) == job.to_record()  # the record itself carries no lease
    current = store.current(job.id)
    assert (current["version"], current["owner"], current["lease_until"]) == (1, "k1", 123.0)


def test_transition_is_a_compare_and_set(store):
    job = new_job()
    store.save(job.to_record())
    running = job.updated({"status": Status.RUNNING, "progress": 10.0}).to_record()
    assert store.transition(job.id, 1, running) == 2
    assert store.transition(job.id, 1, running) is None  # stale: someone wrote version 2
    assert store.transition(job.id, 2, {**running, "progress": 50.0}) == 3
    assert store.get(job.id)["progress"] == 50.0
    assert store.transition("no-such-job", 1, running) is None


def test_a_final_row_keeps_its_status_but_may_be_filled_in(store):
    job = new_job()
    store.save(job.to_record())
    done = job.updated({"status": Status.SUCCEEDED, "progress": 100.0}).to_record()
    assert store.transition(job.id, 1, done) == 2
    back = job.updated({"status": Status.RUNNING}).to_record()
    assert store.transition(job.id, 2, back) is None
    assert store.transition(job.id, 2, {**done, "status": "failed"}) is None
    late = {**done, "missing_images": 0, "error": None, "extras": {"late": True}}
    assert store.transition(job.id, 2, late) == 3  # same final status: allowed
    assert stored(store, job.id)[:2] == ("succeeded", 3)


def test_save_never_overwrites_a_final_row_with_another_status(store):
    job = new_job(remote_id="r-1")
    store.save(job.updated({"status": Status.FAILED, "error": "x"}).to_record())
    assert store.save(job.updated({"status": Status.RUNNING}).to_record()) is None
    assert store.save(job.updated({"status": Status.SUCCEEDED}).to_record()) is None
    assert store.get(job.id)["status"] == "failed"
    assert store.save(job.updated({"status": Status.FAILED, "error": "y"}).to_record()) == 2


def test_missing_images_column_reads_the_record_key(store):
    job = new_job()
    store.save({**job.to_record(), "missing_images": 2})
    assert store._query("SELECT missing_images FROM jobs")[0][0] == 2


STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.integers(0, 1), st.sampled_from(STATUSES),
                                st.booleans()), min_size=1, max_size=25))
def test_no_interleaving_of_two_writers_leaves_a_final_state(tmp_path_factory, steps):
    """Two writers, each with its own idea of the version (refreshed when refused, or
    sometimes not at all), transition at random: once final, the row stays that status."""
    with Store(tmp_path_factory.mktemp("cas")) as store:
        job = new_job()
        store.save(job.to_record())
        known = [1, 1]
        first_final: str | None = None
        seen = []
        for writer, status, refresh in steps:
            got = store.transition(job.id, known[writer],
                                   job.updated({"status": Status(status)}).to_record())
            if got is not None:
                known[writer] = got
            elif refresh:
                known[writer] = store.current(job.id)["version"]
            now = store.current(job.id)["status"]
            seen.append(now)
            if first_final is None and now in FINAL:
                first_final = now
            if first_final is not None:
                assert now == first_final, seen


# ------------------------------------------------------------------ leases and claims
def test_claim_takes_unowned_and_expired_rows_never_live_or_own_ones(store):
    now = time.time()
    free, expired, live, mine, done = (new_job(i) for i in range(5))
    store.save(free.to_record())
    store.save(expired.to_record(), owner="dead", lease_until=now - 1)
    store.save(live.to_record(), owner="alive", lease_until=now + 30)
    store.save(mine.to_record(), owner="me", lease_until=now - 1)  # a late heartbeat of mine
    store.save(done.updated({"status": Status.SUCCEEDED}).to_record(), owner="dead",
               lease_until=0)
    got = store.claim("me", 10.0, now)
    assert {r["id"] for r in got} == {free.id, expired.id}
    assert all(r["owner"] == "me" and r["lease_until"] == now + 10 and r["version"] == 2
               for r in got)
    # another engine may take the expired row of "me", never the live one
    assert [r["id"] for r in store.claim("other", 10.0, now)] == [mine.id]
    assert stored(store, live.id)[2] == "alive"


def test_an_owner_takes_back_its_own_released_job_only_when_it_asks(store):
    now = time.time()
    mine, held = new_job(1), new_job(2)
    store.save(mine.to_record(), owner="me", lease_until=now + 30)
    store.save(held.to_record(), owner="other", lease_until=now + 30)
    assert store.claim("me", 10.0, now, own=True) == []  # a live lease, mine or not
    store.release("me", [mine.id])
    assert store.claim("me", 10.0, now) == []
    got = store.claim("me", 10.0, now, own=True)
    assert [(r["id"], r["owner"], r["version"]) for r in got] == [(mine.id, "me", 2)]
    assert stored(store, held.id)[2] == "other"


def test_a_claim_refuses_the_former_owners_next_transition(store):
    now = time.time()
    job = new_job()
    store.save(job.to_record(), owner="a", lease_until=now - 1)
    [rec] = store.claim("b", 10.0, now)
    late = job.updated({"status": Status.RUNNING}).to_record()
    assert store.transition(job.id, 1, late) is None  # a's version is gone
    assert store.transition(job.id, rec["version"], late) == rec["version"] + 1


def test_renew_extends_and_release_ends_a_lease(store):
    now = time.time()
    a, b = new_job(1), new_job(2)
    store.save(a.to_record(), owner="k", lease_until=now + 1)
    store.save(b.to_record(), owner="k", lease_until=now + 1)
    assert store.renew("k", now + 100) == 2
    assert stored(store, a.id)[1:] == (1, "k", now + 100)  # no version bump
    assert store.claim("other", 10.0, now + 50) == []
    assert store.release("k", [a.id]) == 1
    assert store.renew("k", now + 200) == 1  # a released lease stays released
    assert [r["id"] for r in store.claim("other", 10.0, now + 50)] == [a.id]
    assert store.claim("other", 10.0, now + 300, job_id=b.id)[0]["id"] == b.id


def _claimer(home: str, owner: str, start, out) -> None:
    with Store(home) as store:
        start.wait()
        got = []
        for _ in range(40):
            got += [r["id"] for r in store.claim(owner, 60.0, time.time(), limit=3)]
        out.put((owner, got))


def test_claim_is_atomic_across_processes(tmp_path):
    home = tmp_path / "home"
    with Store(home) as store:
        jobs = [new_job(i) for i in range(120)]
        store._bulk_save(j.to_record() for j in jobs)
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(str(home), f"p{i}", start, out))
             for i in range(3)]
    for proc in procs:
        proc.start()
    start.set()
    results = dict(out.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(30)
    claimed = [job_id for ids in results.values() for job_id in ids]
    assert sorted(claimed) == sorted(j.id for j in jobs)  # each row exactly once
    with Store(home) as store:
        owners = {r["id"]: r["owner"] for r in map(store.current, claimed)}
    assert all(owners[i] == owner for owner, ids in results.items() for i in ids)


# ------------------------------------------------------------------ migration
def _open_store(home: str, start, out) -> None:
    start.wait()
    try:
        with Store(home) as store:
            store.save(new_job().to_record())
        out.put("ok")
    except Exception as exc:  # reported to the parent
        out.put(f"{type(exc).__name__}: {exc}")


def test_two_processes_opening_one_fresh_home_at_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    for attempt in range(2):
        home = tmp_path / f"home{attempt}"
        start, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_open_store, args=(str(home), start, out)) for _ in range(3)]
        for proc in procs:
            proc.start()
        time.sleep(0.5)  # let them all import and wait at the start line
        start.set()
        assert [out.get(timeout=60) for _ in procs] == ["ok"] * 3
        for proc in procs:
            proc.join(30)
        with sqlite3.connect(home / "history.sqlite") as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 3


def test_migration_to_v3_keeps_rows_and_adds_the_lease_columns(tmp_path):
    from jupyter_imagine.store._sqlite import _schema_v1, _schema_v2

    path = tmp_path / "history.sqlite"
    conn = sqlite3.connect(path)
    _schema_v1(conn)
    _schema_v2(conn)
    job = new_job(status=Status.RUNNING)
    import json

    conn.execute(
        "INSERT INTO jobs (id, provider, root_id, status, created_at, record) "
        "VALUES (?, 'apiframe', ?, 'running', '2024-05-01T12:00:00.000000+00:00', ?)",
        (job.id, job.id, json.dumps(job.to_record())),
    )
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    with Store(tmp_path) as store:
        assert stored(store, job.id) == ("running", 0, None, None)
        assert [r["id"] for r in store.claim("k", 5.0, time.time())] == [job.id]
    with sqlite3.connect(path) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(jobs)")]
        assert columns[-1] == "record"  # later schemas add columns before it
        assert {"missing_images", "version", "owner", "lease_until"} <= set(columns)
        assert "jobs_lease" in {r[1] for r in conn.execute("PRAGMA index_list(jobs)")}


def test_claim_takes_only_jobs_made_with_credentials_it_has(store):
    mine, theirs, old = new_job(0), new_job(1), new_job(2)
    store.fingerprint("apiframe", "their key")
    store.save(theirs.to_record(), owner="dead", lease_until=1.0)
    store.fingerprint("apiframe", "my key")
    store.save(mine.to_record(), owner="dead", lease_until=1.0)
    store._fingerprints.clear()  # a kernel with no apiframe credentials
    store.save(old.to_record(), owner="dead", lease_until=1.0)  # unknown credentials
    assert [r["id"] for r in store.claim("k1", 5.0, time.time())] == [old.id]
    store.fingerprint("apiframe", "my key")
    assert [r["id"] for r in store.claim("k2", 5.0, time.time())] == [mine.id]
    assert store.claim("k3", 5.0, time.time()) == []  # theirs waits for their kernel
    store.fingerprint("apiframe", "their key")
    assert [r["id"] for r in store.claim("k4", 5.0, time.time())] == [theirs.id]
