"""Tests of jupyter_imagine.store: real SQLite files under tmp_path."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image as PILImage

from jupyter_imagine import _secrets
from jupyter_imagine.errors import ImagineError, InvalidRequest
from jupyter_imagine.models import Image, Job, Status
from jupyter_imagine.store import SCHEMA_VERSION, Store

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(backend_store):
    """Each test taking ``store`` runs on SQLite and on PostgreSQL (tests/conftest.py)."""
    return backend_store


def make_job(i: int = 0, **kw) -> Job:
    defaults = dict(
        provider="apiframe",
        kind="imagine",
        prompt=f"a lighthouse at dusk {i} --ar 3:2",
        params={"aspect_ratio": "3:2", "seed": i},
        created_at=T0 + timedelta(minutes=i),
    )
    defaults.update(kw)
    return Job(**defaults)


def png_bytes(color=(200, 30, 30), size=(8, 6), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def row_count(store: Store) -> int:
    """Rows in the table, read through the store's own connection (either backend)."""
    return store._query("SELECT count(*) FROM jobs")[0][0]


def column(store: Store, name: str, job_id: str):
    return store._query(f"SELECT {name} FROM jobs WHERE id = ?", (job_id,))[0][0]


# ------------------------------------------------------------------------------ basics
def test_layout_and_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_IMAGINE_HOME", str(tmp_path / "envhome"))
    with Store() as s:
        assert s.home == (tmp_path / "envhome").absolute()
        assert s.path == s.home / "history.sqlite"
        assert s.images_dir == s.home / "images"
        assert s.path.is_file() and s.images_dir.is_dir()
        assert "history.sqlite" in repr(s)


def test_wal_mode_pragmas_and_schema_version(tmp_path):
    store = Store(tmp_path / "home")  # SQLite's own settings (tests/test_store_postgres.py: PG's)
    store.save(make_job().to_record())
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
        indexes = {r[1]: r for r in conn.execute("PRAGMA index_list(jobs)")}
    assert Path(f"{store.path}-wal").exists()
    assert {"jobs_status", "jobs_created_at", "jobs_parent_id", "jobs_remote", "jobs_batch",
            "jobs_provider"} <= set(indexes)
    assert indexes["jobs_batch"][2] == 1  # unique
    assert indexes["jobs_remote"][2] == 1  # unique
    with store._lock:
        conn = store._db()
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0


def test_round_trip_of_full_job(store):
    job = make_job(
        1,
        remote_id="r-1",
        status=Status.SUCCEEDED,
        progress=100.0,
        images=[
            Image(url=f"https://cdn.example/{k}.png", path=f"/x/{k}.png", width=512, height=512,
                  index=k)
            for k in range(1, 5)
        ],
        grid=Image(url="https://cdn.example/grid.png", path="/x/grid.png", role="grid"),
        actions=("U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4"),
        extras={"seed": 7, "nested": {"a": [1, 2]}},
        sandbox=True,
        started_at=T0 + timedelta(minutes=1, seconds=2),
        completed_at=T0 + timedelta(minutes=1, seconds=40),
        raw={"status": "finished", "progress": 100, "émoji": "🌅"},
        timeout=600.0,
    )
    record = job.to_record()
    store.save(record)
    got = store.get(job.id)
    assert got == record
    rebuilt = Job.from_record(got)
    assert rebuilt.to_record() == record
    assert rebuilt.status is Status.SUCCEEDED
    assert rebuilt.images[3].path == "/x/4.png"
    assert rebuilt.grid.role == "grid"
    assert rebuilt.actions == job.actions
    assert rebuilt.completed_at == job.completed_at
    assert rebuilt.completed_at.tzinfo is not None
    # the indexed columns say the same thing
    assert column(store, "n_images", job.id) == 4
    assert column(store, "sandbox", job.id) == 1
    assert column(store, "paths", job.id) == '["/x/1.png","/x/2.png","/x/3.png","/x/4.png"]'
    assert column(store, "completed_at", job.id) == "2024-05-01T12:01:40.000000+00:00"


def test_timestamps_are_normalised_to_utc_text(store):
    cet = timezone(timedelta(hours=2))
    rec = make_job(created_at=datetime(2024, 5, 1, 14, 0, tzinfo=cet)).to_record()
    store.save(rec)
    assert column(store, "created_at", rec["id"]) == "2024-05-01T12:00:00.000000+00:00"
    assert store.get(rec["id"])["created_at"] == rec["created_at"]  # the record stays as given


def test_save_is_an_upsert(store):
    job = make_job()
    store.save(job.to_record())
    store.save(job.updated({"status": Status.RUNNING, "progress": 40.0,
                            "remote_id": "abc"}).to_record())
    store.save(job.updated({"status": Status.FAILED, "error": "moderated",
                            "error_type": "ModeratedPrompt", "remote_id": "abc"}).to_record())
    assert row_count(store) == 1
    got = store.get(job.id)
    assert got["status"] == "failed" and got["error"] == "moderated"
    assert column(store, "status", job.id) == "failed"
    assert column(store, "error_type", job.id) == "ModeratedPrompt"
    assert store.frame()["status"].tolist() == ["failed"]


def test_save_rejects_bad_records(store):
    with pytest.raises(InvalidRequest, match="id"):
        store.save({"provider": "apiframe"})
    with pytest.raises(InvalidRequest, match="provider"):
        store.save({"id": "x"})
    with pytest.raises(InvalidRequest, match="status must be one of"):
        store.save({**make_job().to_record(), "status": "finished"})
    assert row_count(store) == 0


def test_same_remote_id_twice_for_one_provider_is_refused(store):
    store.save(make_job(1, remote_id="dup").to_record())
    with pytest.raises(InvalidRequest, match="remote id"):
        store.save(make_job(2, remote_id="dup").to_record())
    store.save(make_job(3, remote_id="dup", provider="banatie").to_record())  # other provider
    assert row_count(store) == 2


# ------------------------------------------------------------------------------ lookups
def test_get_by_local_remote_and_prefix(store):
    a = make_job(1, id="abcdef12-0000-4000-8000-000000000001", remote_id="task-9")
    b = make_job(2, id="abcdef34-0000-4000-8000-000000000002", provider="blockade",
                 remote_id="4711")
    for job in (a, b):
        store.save(job.to_record())
    assert store.get(a.id)["id"] == a.id
    assert store.get("task-9")["id"] == a.id
    assert store.get("4711")["id"] == b.id
    assert store.get("abcdef12")["id"] == a.id
    assert store.get("abcdef3")["id"] == b.id
    assert store.get(f"  {a.id}  ")["id"] == a.id
    assert store.get("abcde") is None  # shorter than 6: never a prefix
    assert store.get("zzzzzzzz") is None
    assert store.get("") is None
    assert store.find_remote("apiframe", "task-9")["id"] == a.id
    assert store.find_remote("blockade", "task-9") is None
    assert store.find_remote("blockade", "4711")["id"] == b.id


def test_ambiguous_prefix_raises_with_count(store):
    for k in range(3):
        store.save(make_job(k, id=f"abc123{k}f-0000-4000-8000-00000000000{k}").to_record())
    store.save(make_job(9, id="abc999ff-0000-4000-8000-000000000009").to_record())
    with pytest.raises(InvalidRequest) as info:
        store.get("abc123")
    assert str(info.value) == "job id prefix 'abc123' matches 3 jobs; give more characters"
    assert store.get("abc1231")["id"].startswith("abc1231")


def test_prefix_is_not_a_pattern(store):
    store.save(make_job(id="abc_def%-0000").to_record())
    store.save(make_job(1, id="abcXdefY-0000").to_record())
    assert store.get("abc_def")["id"] == "abc_def%-0000"
    assert store.get("abc_de")["id"] == "abc_def%-0000"


def test_remote_id_shared_by_two_providers_is_ambiguous_in_get(store):
    store.save(make_job(1, remote_id="42").to_record())
    store.save(make_job(2, remote_id="42", provider="banatie").to_record())
    with pytest.raises(InvalidRequest, match="matches 2 jobs"):
        store.get("42")
    assert store.find_remote("banatie", "42")["provider"] == "banatie"


def test_root_id_over_three_generations(store):
    grand = make_job(0)
    parent = make_job(1, kind="upscale", parent_id=grand.id, action="U2")
    child = make_job(2, kind="variation", parent_id=parent.id, action="Vary (Subtle)")
    other = make_job(3)
    for job in (grand, parent, child, other):
        store.save(job.to_record())
    roots = store.frame().droplevel("provider")["root_id"].to_dict()
    assert roots == {grand.id: grand.id, parent.id: grand.id, child.id: grand.id,
                     other.id: other.id}
    assert [r["id"] for r in store.children(grand.id)] == [parent.id]
    assert [r["id"] for r in store.children(parent.id)] == [child.id]
    assert store.children(child.id) == []


def test_root_id_does_not_depend_on_save_order(store):
    grand = make_job(0)
    parent = make_job(1, parent_id=grand.id)
    child = make_job(2, parent_id=parent.id)
    store.save(child.to_record())  # parent unknown yet: provisional root
    assert column(store, "root_id", child.id) == parent.id
    store.save(parent.to_record())
    store.save(grand.to_record())
    assert {column(store, "root_id", j.id) for j in (grand, parent, child)} == {grand.id}


def test_bulk_save_resolves_lineage_in_any_order(tmp_path):
    jobs = [make_job(0)]
    for i in range(1, 6):
        jobs.append(make_job(i, parent_id=jobs[-1].id))
    with Store(tmp_path) as s:
        s.save(jobs[0].to_record())  # the root is already stored
        assert s._bulk_save([j.to_record() for j in reversed(jobs[1:])]) == 5
        assert set(s.frame()["root_id"]) == {jobs[0].id}
        assert row_count(s) == 6


def test_unfinished_oldest_first(store):
    statuses = [Status.RUNNING, Status.SUCCEEDED, Status.QUEUED, Status.FAILED, Status.CANCELLED,
                Status.RUNNING]
    jobs = [make_job(i, status=s) for i, s in enumerate(statuses)]
    random.Random(1).shuffle(jobs)
    for job in jobs:
        store.save(job.to_record())
    got = store.unfinished()
    assert [r["status"] for r in got] == ["running", "queued", "running"]
    assert [r["created_at"] for r in got] == sorted(r["created_at"] for r in got)


def test_last(store):
    assert store.last() is None
    a = make_job(1, provider="apiframe")
    b = make_job(3, provider="banatie")
    c = make_job(2, provider="apiframe")
    for job in (a, b, c):
        store.save(job.to_record())
    assert store.last()["id"] == b.id
    assert store.last(provider="apiframe")["id"] == c.id
    assert store.last(provider="neuroflash") is None


def test_last_breaks_ties_by_save_order(store):
    a, b = make_job(1), make_job(1)
    store.save(a.to_record())
    store.save(b.to_record())
    assert store.last()["id"] == b.id


def test_records_filters(store):
    providers = ["apiframe", "banatie", "blockade"]
    statuses = list(Status)
    jobs = [make_job(i, provider=providers[i % 3], status=statuses[i % 5]) for i in range(15)]
    for job in jobs:
        store.save(job.to_record())
    everything = store.records()
    assert [r["id"] for r in everything] == [j.id for j in reversed(jobs)]  # newest first
    assert {r["provider"] for r in store.records(provider="banatie")} == {"banatie"}
    assert len(store.records(provider=["banatie", "blockade"])) == 10
    assert {r["status"] for r in store.records(status="failed")} == {"failed"}
    assert len(store.records(status=[Status.QUEUED, "running"])) == 6
    since = store.records(since=T0 + timedelta(minutes=10))
    assert [r["id"] for r in since] == [j.id for j in reversed(jobs[10:])]
    until = store.records(until="2024-05-01T12:03:00Z")  # exclusive
    assert [r["id"] for r in until] == [j.id for j in reversed(jobs[:3])]
    naive = store.records(since=datetime(2024, 5, 1, 12, 5), until=datetime(2024, 5, 1, 12, 7))
    assert [r["id"] for r in naive] == [jobs[6].id, jobs[5].id]
    assert [r["id"] for r in store.records(limit=2)] == [jobs[14].id, jobs[13].id]
    combined = store.records(provider="apiframe", status="succeeded", limit=1)
    assert [r["id"] for r in combined] == [jobs[12].id]
    assert store.records(limit=0) == []
    with pytest.raises(InvalidRequest, match="status must be one of"):
        store.records(status="done")
    with pytest.raises(InvalidRequest, match="limit"):
        store.records(limit=-1)
    with pytest.raises(InvalidRequest, match="ISO-8601"):
        store.records(since="yesterday")


def test_delete(store):
    a, b = make_job(1), make_job(2)
    store.save(a.to_record())
    store.save(b.to_record())
    assert store.delete(a.id) is True
    assert store.delete(a.id) is False
    assert store.get(a.id) is None
    assert [r["id"] for r in store.records()] == [b.id]


def test_cost_follows_the_provider_rules(store):
    cases = [
        (dict(provider="apiframe", kind="imagine", status=Status.SUCCEEDED), 4.0),
        (dict(provider="apiframe", kind="upscale", status=Status.SUCCEEDED), 2.0),
        (dict(provider="apiframe", kind="upscale", status=Status.SUCCEEDED,
              params={"type": "4x"}), 2.0),
        (dict(provider="apiframe", kind="upscale", status=Status.SUCCEEDED,
              params={"type": "creative"}), 4.0),
        (dict(provider="apiframe", kind="variation", status=Status.SUCCEEDED,
              params={"process_mode": "turbo"}), None),
        (dict(provider="apiframe", kind="imagine", status=Status.FAILED), None),
        (dict(provider="blockade", kind="skybox", status=Status.SUCCEEDED,
              params={"variant": "Enhanced"}), 6.0),
        (dict(provider="blockade", kind="skybox", status=Status.SUCCEEDED), None),
        (dict(provider="banatie", kind="generation", status=Status.SUCCEEDED,
              raw={"cost": "1.5"}), 1.5),
        (dict(provider="neuroflash", kind="imagine", status=Status.SUCCEEDED), 1.0),
    ]
    jobs = []
    for i, (kw, _) in enumerate(cases):
        job = make_job(i, **{**kw, "params": kw.get("params", {})})
        store.save(job.to_record())
        jobs.append(job)
    frame = store.frame().droplevel("provider")
    got = frame["cost"]
    for job, (_, expected) in zip(jobs, cases, strict=True):
        value = got[job.id]
        assert (pd.isna(value) if expected is None else value == expected), (job.kind, value)
    # each in the provider's own unit: neuroflash counts images of its quota
    assert frame.loc[jobs[-1].id, ["cost_unit", "cost_source"]].tolist() == ["images", "prices"]
    assert frame.loc[jobs[-2].id, "cost_source"] == "provider"  # the payload said so


def test_migration_from_schema_1_backfills_the_new_columns(tmp_path):
    """A history written by the first release opens, migrates once and shows the new columns."""
    old = make_job(1, status=Status.SUCCEEDED, params={"negative_text": "fog", "seed": 1},
                   images=[Image(url="https://x/a.png", path="/p/a.png", width=20, height=10),
                           Image(url="https://x/d.png", role="depth")],
                   remote_id="old-1")
    rec = old.to_record()
    path = tmp_path / "history.sqlite"
    conn = sqlite3.connect(path)
    from jupyter_imagine.store._sqlite import _schema_v1

    _schema_v1(conn)
    conn.execute(
        "INSERT INTO jobs (id, provider, remote_id, root_id, kind, prompt, status, created_at, "
        "n_images, paths, urls, record) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (old.id, "apiframe", "old-1", old.id, "imagine", old.prompt, "succeeded",
         "2024-05-01T12:01:00.000000+00:00", 2, '["/p/a.png"]',
         '["https://x/a.png","https://x/d.png"]', json.dumps(rec)),
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Store(tmp_path) as s:
        df = s.frame()
        assert df["negative_prompt"].tolist() == ["fog"]
        assert df["params"].tolist() == [{"negative_text": "fog", "seed": 1}]
        assert (df["width"].iloc[0], df["height"].iloc[0]) == (20, 10)
        assert df["cost"].tolist() == [4.0] and df["cost_source"].tolist() == ["prices"]
        assert df["n_images"].tolist() == [1] and df["image_urls"].tolist() == [["https://x/a.png"]]
        assert s.get("old-1")["id"] == old.id
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with Store(tmp_path) as s:  # opening again does not migrate again
        assert len(s.frame()) == 1


def test_the_change_journal_numbers_every_change_of_a_job_but_not_its_lease(tmp_path):
    """Schema 6: each job row's last change (insert, update, delete) numbered in commit order;
    a claim, renewal or release is not a change."""
    store = Store(tmp_path)
    a, b = make_job(1, remote_id="a"), make_job(2, remote_id="b")

    def journal() -> list[tuple[int, int]]:
        return store._query("SELECT job_rowid, seq FROM job_changes ORDER BY seq")

    store.save(a.to_record()), store.save(b.to_record())
    assert journal() == [(1, 1), (2, 2)]
    store.save({**b.to_record(), "prompt": "again"})  # the newest change changes again
    assert journal() == [(1, 1), (2, 3)]
    store.claim("engine", 60, time.time()), store.renew("engine", time.time() + 90)
    store.release("engine")
    assert journal() == [(1, 1), (2, 3)]
    store.delete(a.id)
    assert journal() == [(2, 3), (1, 4)]
    store.close()


# ------------------------------------------------------------------------------ batches
def test_batch_membership_is_stored_with_the_job_and_sticks(store):
    a = make_job(1)
    a.batch_id, a.batch_row = "b-1", 0
    b = make_job(2)
    store.save(a.to_record())
    store.save(b.to_record())  # a job without a batch is not in one
    later = a.updated({"status": Status.SUCCEEDED}).to_record()
    store.save({**later, "batch_id": None, "batch_row": None})  # a record without it keeps it
    assert store.batch_rows("b-1") == {0: a.id}
    assert column(store, "batch_id", b.id) is None
    assert column(store, "batch_row", a.id) == 0
    store.save(make_job(3).to_record())
    assert store.batch_rows("b-1") == {0: a.id}
    assert store.batch_rows("other") == {}
    taken = make_job(4)
    taken.batch_id, taken.batch_row = "b-1", 0
    with pytest.raises(InvalidRequest, match="batch row"):
        store.save(taken.to_record())


# ------------------------------------------------------------------------------ secrets
SECRET = "sk-test-SECRET-123456"


def test_secrets_never_reach_the_database(tmp_path):
    _secrets.register(SECRET)
    job = make_job(
        params={"api_key": SECRET, "style": f"raw --key {SECRET}", "headers": {"x": SECRET}},
        extras={"client_secret": "other-value", "note": f"used {SECRET}"},
        raw={"api_key": SECRET, "Authorization": f"Bearer {SECRET}", "echo": [SECRET],
             SECRET: "as a key"},
        status=Status.FAILED,
        error=f"401 invalid key {SECRET}",
        prompt=f"a prompt that pasted {SECRET} by mistake",
        images=[Image(url=f"https://cdn.example/1.png?key={SECRET}")],
        preview_url=f"https://cdn.example/p.png?token={SECRET}",
    )
    s = Store(tmp_path)
    s.save(job.to_record())
    s._bulk_save([make_job(1, raw={"k": SECRET}).to_record()])
    files = [p for p in tmp_path.iterdir() if p.name.startswith("history.sqlite")]
    assert any(p.name.endswith("-wal") for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path.name
    got = s.get(job.id)
    assert SECRET not in repr(got)
    assert got["params"]["api_key"] == "***"
    assert got["raw"]["Authorization"] == "***"
    assert got["error"] == "401 invalid key ***"
    assert got["extras"]["client_secret"] == "***"
    assert SECRET not in repr(s.frame().to_dict())
    s.close()
    for path in tmp_path.iterdir():
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path.name


# ------------------------------------------------------------------------------ images
def test_put_image_is_content_addressed_and_written_once(store):
    data = png_bytes()
    digest = hashlib.sha256(data).hexdigest()
    path = store.put_image(data)
    assert path == store.images_dir / digest[:2] / f"{digest[2:]}.png"
    assert path.read_bytes() == data
    stat = path.stat()
    again = store.put_image(data, text={"prompt": "something else"})
    assert again == path
    assert path.read_bytes() == data and path.stat().st_mtime_ns == stat.st_mtime_ns
    other = store.put_image(png_bytes(color=(0, 0, 255)))
    assert other != path
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]


@pytest.mark.parametrize(
    ("fmt", "ext"), [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp"), ("GIF", "gif")]
)
def test_put_image_detects_the_format(store, fmt, ext):
    path = store.put_image(png_bytes(fmt=fmt))
    assert path.suffix == f".{ext}"
    assert PILImage.open(path).format == fmt


def test_put_image_unknown_bytes_and_explicit_ext(store):
    assert store.put_image(b"not an image at all").suffix == ".bin"
    assert store.put_image(b"jpeg-ish", ext=".JPEG").suffix == ".jpg"
    with pytest.raises(InvalidRequest, match="extension"):
        store.put_image(b"x", ext="../../evil")


def test_put_image_adds_png_text_chunks(store):
    pytest.importorskip("jupyter_imagine.imaging")
    _secrets.register(SECRET)
    data = png_bytes()
    text = {"prompt": "a lighthouse at dusk --ar 3:2", "parameters": '{"seed": 7}',
            "leak": f"key={SECRET}"}
    path = store.put_image(data, text=text)
    digest = hashlib.sha256(data).hexdigest()  # the address is the bytes as given
    assert path.name == f"{digest[2:]}.png" and path.parent.name == digest[:2]
    stored = path.read_bytes()
    assert stored != data
    assert SECRET.encode() not in stored
    with PILImage.open(path) as img:
        assert img.text["prompt"] == text["prompt"]
        assert img.text["parameters"] == text["parameters"]
        assert img.text["leak"] == "key=***"
        assert img.size == (8, 6)
    assert store.put_image(data, text=text) == path  # the same download maps to the same file


def test_put_image_ignores_text_for_jpeg(store):
    data = png_bytes(fmt="JPEG")
    path = store.put_image(data, text={"prompt": "x"})
    assert path.read_bytes() == data


def test_put_file(store):
    mask = png_bytes(color=(255, 255, 255))
    path = store.put_file(mask, ext="png")
    digest = hashlib.sha256(mask).hexdigest()
    assert path == store.images_dir / digest[:2] / f"{digest[2:]}.png"
    assert path.read_bytes() == mask
    assert store.put_file(mask, ext="png") == path
    assert store.put_file(b"raw", ext="bin").suffix == ".bin"


# ------------------------------------------------------------------------------ threads, reopen
def test_concurrent_saves_from_four_threads(store):
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(50):
                job = make_job(i, provider=f"p{n}", remote_id=f"{n}-{i}")
                store.save(job.to_record())
                store.save(job.updated({"status": Status.RUNNING}).to_record())
                if i % 10 == 0:
                    store.frame(limit=5)
                    store.unfinished()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert row_count(store) == 200
    assert len(store.frame()) == 200
    assert len(store.unfinished()) == 200


def test_reopening_sees_the_data(tmp_path):
    job = make_job(remote_id="keep")
    with Store(tmp_path) as s:
        s.save(job.to_record())
    with Store(tmp_path) as s:
        assert s.get("keep")["id"] == job.id
        assert len(s.frame()) == 1
        s.save(make_job(1).to_record())
    with Store(str(tmp_path)) as s:
        assert len(s.records()) == 2


def test_a_crash_right_after_save_keeps_the_row(tmp_path):
    script = (
        "import os, sys\n"
        "from jupyter_imagine.store import Store\n"
        "s = Store(sys.argv[1])\n"
        "s.save({'id': 'crash-1', 'provider': 'apiframe', 'kind': 'imagine', 'prompt': 'p',\n"
        "        'status': 'running', 'created_at': '2024-05-01T12:00:00+00:00'})\n"
        "os._exit(0)\n"  # no close, no checkpoint, no atexit
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, env=env,
                   timeout=60)
    with Store(tmp_path) as s:
        assert s.get("crash-1")["status"] == "running"


def test_closed_store(tmp_path):
    s = Store(tmp_path)
    s.close()
    s.close()  # idempotent
    assert "closed" in repr(s)
    with pytest.raises(ImagineError, match="closed"):
        s.get("anything")
    with Store(tmp_path) as s2:
        pass
    with pytest.raises(ImagineError, match="closed"):
        s2.save(make_job().to_record())


# ------------------------------------------------------------------------------ storage faults
def _storage_error(home) -> str:
    from jupyter_imagine.errors import StorageError

    with pytest.raises(StorageError) as info:
        with Store(home) as s:
            s.frame()
    message = str(info.value)
    assert "\n" not in message and info.value.__cause__ is None
    return message


def test_a_file_where_the_home_should_be_is_a_storage_error(tmp_path):
    (tmp_path / "home").write_text("not a folder")
    message = _storage_error(tmp_path / "home")
    assert "a file is in the way where a folder should be" in message
    assert str(tmp_path / "home") in message and "JUPYTER_IMAGINE_HOME" in message


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "header"])
def test_corrupt_and_truncated_databases_are_storage_errors(tmp_path, damage):
    home = tmp_path / "home"
    with Store(home) as s:
        s._bulk_save(make_job(i, prompt="x" * 3000).to_record() for i in range(300))
    path = home / "history.sqlite"
    data = path.read_bytes()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.write_bytes({"corrupt": b"this is not sqlite " * 500, "truncated": data[: len(data) // 3],
                      "header": data[:60]}[damage])
    message = _storage_error(home)
    assert f"the history at {path} cannot be used" in message
    assert "not a valid SQLite database (corrupt or truncated)" in message
    assert f"move {path} aside" in message


@contextlib.contextmanager
def write_locked(path: Path):
    """Another program holding the history's write lock (as an open edit in a database
    browser does) until the block ends."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA journal_mode = WAL")
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.fixture
def short_busy_timeout(monkeypatch):
    from jupyter_imagine.store import _sqlite

    monkeypatch.setattr(_sqlite, "BUSY_TIMEOUT_MS", 300)


def test_a_history_another_program_is_writing_still_opens_and_reads(tmp_path,
                                                                      short_busy_timeout):
    job = make_job(1)
    with Store(tmp_path) as s:
        s.save(job.to_record())
    with write_locked(tmp_path / "history.sqlite"), Store(tmp_path) as s:
        assert [r["id"] for r in s.records()] == [job.id]
        assert len(s.frame()) == 1


def test_a_write_lock_held_past_the_busy_timeout_is_one_storage_error(tmp_path, monkeypatch,
                                                                        short_busy_timeout):
    from jupyter_imagine.errors import StorageError

    path = tmp_path / "history.sqlite"
    opens = []
    real_open = Store._open
    monkeypatch.setattr(Store, "_open", lambda self: opens.append(1) or real_open(self))
    with write_locked(path):  # a fresh file: opening it must migrate, which needs the lock
        with pytest.raises(StorageError) as info:
            Store(tmp_path)
    assert "held it locked for more than 0.3 s" in str(info.value)
    assert "close the other kernel or program" in str(info.value)
    assert len(opens) == 1  # waited once, not once per retry
    with Store(tmp_path) as s:  # released: it opens, and saving works again
        saved = make_job(2)
        s.save(saved.to_record())
        with write_locked(path), pytest.raises(StorageError, match="held it locked"):
            s.save(make_job(3).to_record())
        assert [r["id"] for r in s.records()] == [saved.id]


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (needs root: skipped elsewhere); unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> None:
    # Unbuffered: a buffered file's close would flush into the full disk outside the suppress.
    with open(folder / "filler", "wb", buffering=0) as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()


def test_a_full_disk_is_a_storage_error_and_leaves_nothing_half_written(small_disk):
    from jupyter_imagine.errors import StorageError

    with Store(small_disk / "home") as s:
        s.save(make_job(0).to_record())
        fill(small_disk)
        with pytest.raises(StorageError, match="the disk is full; free some space"):
            for i in range(1, 400):
                s.save(make_job(i, prompt="x" * 5000).to_record())
        with pytest.raises(StorageError, match="the disk is full"):
            s.put_image(png_bytes(size=(300, 300)) + os.urandom(400_000))
        stored = len(s.frame())
    (small_disk / "filler").unlink()
    with Store(small_disk / "home") as s:
        assert len(s.frame()) == stored  # every save either whole or not at all


def test_a_read_only_home_is_a_storage_error(small_disk):
    with Store(small_disk / "home") as s:
        s.save(make_job().to_record())
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    message = _storage_error(small_disk / "home")
    assert "read-only" in message and "make it writable" in message


# ------------------------------------------------------------------------- provenance
def test_each_job_records_who_created_it_and_history_filters_on_it(store, monkeypatch):
    first = make_job(1)
    store.save(first.to_record())
    assert column(store, "created_by", first.id) == store.user
    assert column(store, "created_on", first.id) == store.host
    monkeypatch.setenv("JUPYTER_IMAGINE_USER", "bea")
    monkeypatch.setenv("JUPYTER_IMAGINE_HOST", "studio-2")
    store._init_provenance()  # what a store opened by bea's kernel has
    assert (store.user, store.host) == ("bea", "studio-2")
    theirs = make_job(2)
    store.save(theirs.to_record())
    df = store.frame()
    assert df.loc[("apiframe", theirs.id), "user"] == "bea"
    assert df.loc[("apiframe", theirs.id), "host"] == "studio-2"
    assert isinstance(df["user"].dtype, pd.CategoricalDtype)
    assert store.frame(user="bea").index.get_level_values("id").tolist() == [theirs.id]
    assert len(store.frame(user=["bea", "nobody"])) == 1
    assert first.id not in store.frame(user="bea").index.get_level_values("id")


def test_the_creator_is_kept_when_another_kernel_writes_the_job(store, monkeypatch):
    job = make_job(status=Status.RUNNING)
    version = store.save(job.to_record())
    created_by = store.user
    monkeypatch.setenv("JUPYTER_IMAGINE_USER", "someone-else")
    store._init_provenance()
    job.status = Status.SUCCEEDED
    assert store.transition(job.id, version, job.to_record()) is not None
    store.save(job.to_record())
    assert column(store, "created_by", job.id) == created_by


def test_a_fingerprint_is_salted_per_history_and_never_the_key(store, tmp_path):
    secret = "sk-live-7f3a9c"
    one = store.fingerprint("apiframe", secret)
    assert one == store.fingerprint("apiframe", secret) and len(one) == 32
    assert secret not in one and one != hashlib.sha256(secret.encode()).hexdigest()[:32]
    assert store.fingerprint("banatie", secret) != one  # per provider
    with Store(tmp_path / "other") as other:  # another history has another salt
        assert other.fingerprint("apiframe", secret) != one
    job = make_job()
    store.save(job.to_record())
    assert column(store, "key_fingerprint", job.id) == one
    assert secret not in json.dumps(store.get(job.id))


def test_migration_to_v4_keeps_rows_with_an_unknown_creator(tmp_path):
    from jupyter_imagine.store._sqlite import _schema_v1, _schema_v2, _schema_v3

    path = tmp_path / "history.sqlite"
    conn = sqlite3.connect(path)
    for step in (_schema_v1, _schema_v2, _schema_v3):
        step(conn)
    job = make_job()
    conn.execute(
        "INSERT INTO jobs (id, provider, root_id, status, created_at, record) "
        "VALUES (?, 'apiframe', ?, 'succeeded', '2024-05-01T12:00:00.000000+00:00', ?)",
        (job.id, job.id, json.dumps(job.to_record())),
    )
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()
    with Store(tmp_path) as store:
        assert column(store, "created_by", job.id) is None  # unknown, not a guess
        assert store.frame()["user"].isna().all()
        salt = store._query("SELECT value FROM meta WHERE key = 'salt'")[0][0]
        assert len(salt) == 32
