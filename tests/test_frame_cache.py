"""Tests of jupyter_imagine.store._frame_cache: a whole-history frame read again reads only the
blocks that changed, and is always the frame a fresh read gives (real SQLite files; other
writers are other stores, and one is another process)."""

from __future__ import annotations

import gc
import json
import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from jupyter_imagine import _frame
from jupyter_imagine.models import Image, Job, Status
from jupyter_imagine.store import Store
from jupyter_imagine.store._frame_cache import FrameCache

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def make_job(i: int, **kw) -> Job:
    defaults = dict(provider=["apiframe", "banatie", "blockade"][i % 3], kind="imagine",
                    prompt=f"a harbour at night {i}", params={"seed": i},
                    remote_id=f"r{i}", created_at=T0 + timedelta(minutes=i % 11))
    defaults.update(kw)
    return Job(**defaults)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 4 rowids, so a few jobs make several blocks."""
    monkeypatch.setattr(_frame, "ROWS_PER_PART", 4)


@pytest.fixture
def plans(monkeypatch):
    """The blocks each whole read reads, in order."""
    seen: list[list[int]] = []
    plan = FrameCache.plan

    def spy(self, conn):
        found = plan(self, conn)
        seen.append(found.read)
        return found

    monkeypatch.setattr(FrameCache, "plan", spy)
    return seen


def fresh(store: Store, **kw) -> pd.DataFrame:
    """The frame read from scratch (another store, nothing kept)."""
    with Store(store.home) as other:
        other._frame_cache = None
        return other.frame(**kw)


def test_a_repeat_read_reads_only_the_blocks_that_changed(tmp_path, small_blocks, plans):
    store, other = Store(tmp_path), Store(tmp_path)
    jobs = [make_job(i) for i in range(20)]  # rowids 1–20: blocks 0–4
    for job in jobs:
        store.save(job.to_record())
    held = [store.frame()]
    assert plans[-1] == [0, 1, 2, 3, 4]
    held.append(store.frame())
    assert plans[-1] == []  # nothing changed: nothing read
    pd.testing.assert_frame_equal(held[-1], held[0])
    assert held[-1]["params"] is not held[0]["params"]  # a new frame, new arrays

    newest = make_job(20)
    steps = [
        (lambda: other.save(newest.to_record()), [5]),  # rowid 21
        # the newest change changed again: its number must still move up
        (lambda: other.save({**newest.to_record(), "status": "running"}), [5]),
        (lambda: other.save({**jobs[2].to_record(), "status": "failed"}), [0]),  # rowid 3
        (lambda: other.delete(jobs[9].id), [2]),  # rowid 10
        (lambda: other.claim("engine-b", 60, time.time()), []),  # leases are not history
        (lambda: other.renew("engine-b", time.time() + 120), []),
        (lambda: other.release("engine-b"), []),
    ]
    for change, read in steps:
        change()
        held.append(store.frame())
        assert plans[-1] == read
        pd.testing.assert_frame_equal(held[-1], fresh(store))
    assert jobs[9].id not in held[-1].index.get_level_values("id")
    assert held[-1].loc[(jobs[2].provider, jobs[2].id), "status"] == "failed"
    store.close(), other.close()


def test_the_kept_frame_stays_exact_through_random_changes_by_another_store(tmp_path,
                                                                            small_blocks):
    rng = random.Random(12)
    store, other = Store(tmp_path), Store(tmp_path)
    stored: list[Job] = []
    held = []
    for step in range(150):
        action = rng.choice(["new", "new", "update", "delete", "child first", "bulk"])
        if action == "new" or not stored:
            job = make_job(step, status=rng.choice(list(Status)))
            other.save(job.to_record())
            stored.append(job)
        elif action == "update":
            job = rng.choice(stored)
            images = [Image(url=f"https://cdn.example/{step}/{k}.png", width=512, height=512)
                      for k in range(rng.randrange(5))]
            other.save({**job.to_record(), "prompt": f"changed at {step}",
                        "images": [img.to_dict() for img in images]})
        elif action == "delete":
            other.delete(stored.pop(rng.randrange(len(stored))).id)
        elif action == "child first":  # the parent arrives later: the child is re-rooted
            parent = make_job(step)
            child = make_job(step + 1000, parent_id=parent.id, kind="upscale")
            other.save(child.to_record())
            other.save(parent.to_record())
            stored += [child, parent]
        else:
            batch = [make_job(step * 10 + k + 5000) for k in range(rng.randrange(1, 9))]
            other._bulk_save([job.to_record() for job in batch])
            stored += batch
        if step % 5 == 0:
            keys_as_columns = rng.random() < 0.3
            held.append(store.frame(keys_as_columns=keys_as_columns))
            pd.testing.assert_frame_equal(held[-1], fresh(store, keys_as_columns=keys_as_columns))
            assert len(held[-1]) == len(stored)
    store.close(), other.close()


def test_the_parts_are_kept_only_while_the_frame_lives(tmp_path, small_blocks, plans):
    store = Store(tmp_path)
    for i in range(10):
        store.save(make_job(i).to_record())
    frame = store.frame()
    assert store._frame_cache._kept is not None
    del frame
    gc.collect()
    assert store._frame_cache._kept is None  # dropped with the frame: no memory held
    store.frame()
    assert plans == [[0, 1, 2], [0, 1, 2]]  # so the next read reads every block
    store.close()


def test_a_changed_schema_or_block_size_reads_everything_again(tmp_path, small_blocks, plans,
                                                               monkeypatch):
    store = Store(tmp_path)
    for i in range(8):
        store.save(make_job(i).to_record())
    held = [store.frame()]
    with sqlite3.connect(store.path) as conn:
        conn.execute("VACUUM")  # may renumber rowids; it changes the schema version
    held.append(store.frame())
    assert plans[-1] == [0, 1]
    monkeypatch.setattr(_frame, "MOST_PARTS", 2)
    for i in range(8, 12):  # 12 rowids: blocks of 4 would be 3 parts, so blocks of 8
        store.save(make_job(i).to_record())
    held.append(store.frame())
    assert plans[-1] == [0, 1]
    pd.testing.assert_frame_equal(held[-1], fresh(store))
    store.close()


def test_a_journal_that_went_back_reads_everything_again(tmp_path, small_blocks, plans):
    store = Store(tmp_path)
    for i in range(8):
        store.save(make_job(i).to_record())
    held = [store.frame()]
    with sqlite3.connect(store.path) as conn:  # as if an older copy of the file came back
        conn.execute("DELETE FROM job_changes")
        conn.execute("UPDATE jobs SET prompt = 'restored' WHERE rowid = 2")
    held.append(store.frame())
    assert plans[-1] == [0, 1] and "restored" in held[-1]["prompt"].tolist()
    store.close()


def test_the_team_store_reads_the_whole_history_every_time(backend_store, plans):
    backend_store.save(make_job(1).to_record())
    held = [backend_store.frame(), backend_store.frame()]
    assert plans == ([[0], []] if backend_store._frame_cache is not None else [])
    assert isinstance(backend_store, Store) and len(held[-1]) == 1


def test_a_filtered_limited_or_raw_read_keeps_nothing(tmp_path, plans):
    store = Store(tmp_path)
    store.save(make_job(1).to_record())
    held = [store.frame(provider="banatie"), store.frame(limit=1), store.frame(include_raw=True)]
    assert plans == [] and store._frame_cache._kept is None and len(held[1]) == 1
    store.close()


_WRITER = textwrap.dedent("""
    import json, sys
    from datetime import datetime, timedelta, timezone
    from jupyter_imagine.models import Job, Status
    from jupyter_imagine.store import Store

    home, count = sys.argv[1], int(sys.argv[2])
    t0 = datetime(2024, 5, 1, tzinfo=timezone.utc)
    with Store(home) as store:
        for i in range(count):
            job = Job(provider="apiframe", kind="imagine", prompt=f"job {i}",
                      remote_id=f"w{i}", created_at=t0 + timedelta(seconds=i))
            store.save(job.to_record())  # job i queued, one transaction
            store.save({**job.to_record(), "status": "succeeded"})  # then final, another
    print(json.dumps({"written": count}))
""")


def test_frames_read_while_another_process_writes_are_whole_and_end_exact(tmp_path,
                                                                         small_blocks):
    """A writer process saves job i queued, then marks it succeeded, for i = 0, 1, …: every
    frame read meanwhile (each reusing the last one's parts) holds jobs 0 … m - 1, each once,
    all succeeded but the newest; the last equals a fresh read."""
    store = Store(tmp_path)
    count = 300
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(count)],
                              stdout=subprocess.PIPE, text=True)
    held: list[pd.DataFrame] = []
    midway = 0  # reads that saw some of the jobs, not all
    try:
        while writer.poll() is None or not held:
            frame = store.frame()
            held = [frame]  # the last frame lives, so the next read reuses its parts
            midway += 0 < len(frame) < count
            prompts = frame["prompt"].tolist()[::-1]  # oldest first
            assert prompts == [f"job {i}" for i in range(len(prompts))]
            done = frame["status"].tolist()[::-1]
            assert all(status == "succeeded" for status in done[:-1]), done
    finally:
        out, _ = writer.communicate(timeout=120)
    assert writer.returncode == 0 and json.loads(out) == {"written": count}
    print(f"{midway} reads while the writer wrote")
    final = store.frame()
    assert len(final) == count and (final["status"] == "succeeded").all()
    pd.testing.assert_frame_equal(final, fresh(store))
    store.close()


def test_a_write_between_the_plan_and_the_blocks_is_not_half_seen(tmp_path, small_blocks,
                                                                  monkeypatch):
    """The plan and the blocks come from one snapshot: another store commits a change to two
    blocks, one to be read and one to be reused, right after the plan; the frame shows neither
    (a torn frame would show one), and the next read shows both."""
    store, other = Store(tmp_path), Store(tmp_path)
    jobs = [make_job(i) for i in range(8)]  # blocks 0 and 1
    for job in jobs:
        store.save(job.to_record())
    held = [store.frame()]
    other.save({**jobs[5].to_record(), "prompt": "changed first"})  # block 1 is read next
    plan = FrameCache.plan

    def plan_then_write(self, conn):
        found = plan(self, conn)
        other._bulk_save([{**jobs[k].to_record(), "prompt": "late"} for k in (0, 6)])
        return found

    monkeypatch.setattr(FrameCache, "plan", plan_then_write)
    held.append(store.frame())
    monkeypatch.setattr(FrameCache, "plan", plan)
    assert "late" not in held[-1]["prompt"].tolist()
    assert "changed first" in held[-1]["prompt"].tolist()
    held.append(store.frame())
    assert held[-1]["prompt"].tolist().count("late") == 2
    pd.testing.assert_frame_equal(held[-1], fresh(store))
    store.close(), other.close()
