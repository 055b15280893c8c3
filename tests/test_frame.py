"""Tests of jupyter_imagine._frame: the history frame built from real SQLite stores."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from jupyter_imagine import _secrets
from jupyter_imagine.errors import InvalidRequest
from jupyter_imagine.models import Image, Job, Status
from jupyter_imagine.store import FRAME_COLUMNS, STATUS_ORDER

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
SECRET = "sk-test-SECRET-frame-654321"


@pytest.fixture
def store(backend_store):
    """Each test taking ``store`` runs on SQLite and on PostgreSQL (tests/conftest.py)."""
    return backend_store


def ids(frame: pd.DataFrame) -> list[str]:
    """The job ids of ``frame``'s rows, in order."""
    return frame.index.get_level_values("id").tolist()


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


def test_frame_columns_dtypes_and_na(store):
    root = make_job(0, status=Status.SUCCEEDED, progress=100.0, completed_at=T0 + timedelta(
        minutes=1), started_at=T0 + timedelta(seconds=3),
        images=[Image(url="https://x/1.png", path="/p/1.png", width=640, height=427),
                Image(url="https://x/2.png"), Image(url="https://x/t.jpg", role="thumbnail")],
        sandbox=True, remote_id="task-1")
    child = make_job(1, kind="upscale", parent_id=root.id, status=Status.FAILED, action="U1",
                     error="the prompt was refused", provider="banatie",
                     params={"negative_prompt": "blurry", "seed": 3})
    blank = make_job(2, prompt="", error="", status=Status.RUNNING, progress=12.5, params={})
    for job in (root, child, blank):
        store.save(job.to_record())
    df = store.frame().reset_index()  # the key as columns, for the column checks below
    indexed = store.frame()
    assert list(indexed.columns) == list(FRAME_COLUMNS)
    assert "provider" not in indexed.columns and "id" not in indexed.columns
    assert isinstance(indexed.index, pd.MultiIndex) and indexed.index.is_unique
    assert list(indexed.index.names) == ["provider", "id"]
    assert list(indexed.index) == [(j.provider, j.id) for j in (blank, child, root)]
    assert indexed.loc[("banatie", child.id), "kind"] == "upscale"
    assert indexed.groupby("provider", observed=True).size().to_dict() == {
        "apiframe": 2, "banatie": 1}
    assert list(df.columns) == ["provider", "id", *FRAME_COLUMNS]  # reset_index(): clean names
    assert df["id"].tolist() == [blank.id, child.id, root.id]  # newest first
    for name in ("provider", "status", "kind"):
        assert isinstance(df[name].dtype, pd.CategoricalDtype), name
    assert list(df["status"].cat.categories) == list(STATUS_ORDER)
    assert df["status"].tolist() == ["running", "failed", "succeeded"]
    assert {"apiframe", "banatie", "blockade", "neuroflash", "thenextleg"} <= set(
        df["provider"].cat.categories)
    assert str(df["id"].dtype) == str(df["prompt"].dtype)  # the id is text like the others
    for name in ("created_at", "started_at", "completed_at"):
        assert str(df[name].dtype) == "datetime64[ns, UTC]", name
    assert df["created_at"].iloc[2] == pd.Timestamp(T0)
    assert df["completed_at"].iloc[2] == pd.Timestamp(T0 + timedelta(minutes=1))
    assert df["completed_at"].isna().tolist() == [True, True, False]
    assert df["queue_s"].iloc[2] == 3.0 and df["run_s"].iloc[2] == 57.0
    assert df["total_s"].iloc[2] == 60.0 and df["total_s"].isna().tolist() == [True, True, False]
    for name in ("queue_s", "run_s", "total_s", "cost"):
        assert df[name].dtype == "float64", name
    assert df["n_images"].dtype == "int64"
    assert df["n_images"].tolist() == [0, 0, 2]  # the thumbnail is not a result image
    assert str(df["width"].dtype) == "Int64" and str(df["height"].dtype) == "Int64"
    assert df["width"].isna().tolist() == [True, True, False]
    assert (df["width"].iloc[2], df["height"].iloc[2]) == (640, 427)
    assert df["sandbox"].dtype == bool and df["sandbox"].tolist() == [False, False, True]
    assert df["image_paths"].tolist() == [[], [], ["/p/1.png"]]
    assert df["image_urls"].tolist() == [[], [], ["https://x/1.png", "https://x/2.png"]]
    assert all(type(p) is list for p in df["image_paths"])
    assert df["params"].tolist() == [{}, {"negative_prompt": "blurry", "seed": 3},
                                      {"aspect_ratio": "3:2", "seed": 0}]
    assert df["negative_prompt"].iloc[1] == "blurry"
    assert df["negative_prompt"].isna().tolist() == [True, False, True]
    assert df["cost"].tolist()[2] == 4.0  # APIFRAME imagine, succeeded
    assert df["cost"].isna().tolist() == [True, True, False]
    for name in ("cost_unit", "cost_source"):
        assert isinstance(df[name].dtype, pd.CategoricalDtype), name
    assert df["cost_unit"].tolist()[2] == "credits" and df["cost_source"].tolist()[2] == "prices"
    assert df["cost_unit"].isna().tolist() == [True, True, False]
    for name in ("provider", "status", "kind", "cost_unit", "cost_source", "user", "host"):
        assert df[name].cat.categories.dtype == df["prompt"].dtype, name  # labels are text
    assert df["remote_id"].isna().tolist() == [True, True, False]
    assert df["action"].tolist()[1] == "U1"
    assert df["parent_id"].isna().tolist() == [True, False, True]
    assert df["parent_id"].iloc[1] == root.id
    assert df["root_id"].tolist() == [blank.id, root.id, root.id]
    assert df["error"].isna().tolist() == [True, False, True]  # "" became NA
    assert df["prompt"].isna().tolist() == [True, False, False]
    for name in df.columns:
        assert not (df[name].astype(object) == "").any(), f"empty string in {name}"


def test_frame_of_empty_history_has_the_same_dtypes(store):
    store.save(make_job().to_record())
    full = store.frame()
    empty = store.frame(provider="nobody")
    assert len(empty) == 0 and list(empty.columns) == list(FRAME_COLUMNS)
    assert isinstance(empty.index, pd.MultiIndex) and list(empty.index.names) == ["provider", "id"]
    assert (empty.dtypes.astype(str) == full.dtypes.astype(str)).all()
    assert (empty.reset_index().dtypes.astype(str) == full.reset_index().dtypes.astype(str)).all()
    assert str(empty["created_at"].dtype) == "datetime64[ns, UTC]"
    assert list(empty["status"].cat.categories) == list(STATUS_ORDER)
    assert list(empty.reset_index()["provider"].cat.categories) == list(
        full.reset_index()["provider"].cat.categories)


def test_frame_order_matches_records_whatever_the_save_order(store):
    jobs = [make_job(i % 7, remote_id=f"r{i}") for i in range(30)]  # many created_at ties
    random.Random(7).shuffle(jobs)
    for job in jobs:
        store.save(job.to_record())
    expected = [r["id"] for r in store.records()]
    assert ids(store.frame()) == expected
    assert ids(store.frame(limit=5)) == expected[:5]
    assert ids(store.frame(status="queued")) == expected
    assert ids(store.frame(limit=len(jobs) + 1)) == expected
    created = store.frame()["created_at"]
    assert created.is_monotonic_decreasing


def test_frame_filters(store):
    for i in range(6):
        store.save(make_job(i, provider=["apiframe", "blockade"][i % 2],
                            status=[Status.SUCCEEDED, Status.FAILED, Status.QUEUED][i % 3])
                   .to_record())
    assert set(store.frame(provider="blockade").index.get_level_values("provider")) == {"blockade"}
    assert len(store.frame(status=["failed", "queued"])) == 4
    assert len(store.frame(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4))) == 2
    assert len(store.frame(limit=3)) == 3


def test_frame_query_finds_text_in_prompts(store):
    prompts = ["A Lighthouse at dusk", "a forest", "100% pure_light", "lighthouse, night"]
    for i, prompt in enumerate(prompts):
        store.save(make_job(i, prompt=prompt).to_record())
    assert sorted(store.frame(query="lighthouse")["prompt"]) == [prompts[0], prompts[3]]
    assert store.frame(query="100%")["prompt"].tolist() == [prompts[2]]
    assert store.frame(query="e_l")["prompt"].tolist() == [prompts[2]]  # _ is not a wildcard
    assert store.frame(query="%").shape[0] == 1
    assert store.frame(query="nothing like it").empty
    with pytest.raises(InvalidRequest, match="query"):
        store.frame(query=3)


def test_frame_include_raw_is_scrubbed(store):
    _secrets.register(SECRET)
    store.save(make_job(0, raw={"status": "finished", "echo": SECRET, "n": 1}).to_record())
    store.save(make_job(1).to_record())
    plain = store.frame()
    assert "raw" not in plain.columns
    df = store.frame(include_raw=True)
    assert list(df.columns) == [*FRAME_COLUMNS, "raw"]
    assert df["raw"].tolist() == [{}, {"status": "finished", "echo": "***", "n": 1}]
    assert SECRET not in repr(df.to_dict())


def test_keys_as_columns_gives_the_flat_layout(store):
    for i in range(3):
        store.save(make_job(i, provider=["apiframe", "banatie"][i % 2]).to_record())
    flat = store.frame(keys_as_columns=True)
    assert list(flat.columns) == ["provider", "id", *FRAME_COLUMNS]
    assert list(flat.index.names) == [None, None]  # so df.groupby("provider") is unambiguous
    assert flat.groupby("provider", observed=True).size().to_dict() == {"apiframe": 2, "banatie": 1}
    assert list(flat.index) == list(store.frame().index)
    pd.testing.assert_frame_equal(flat.reset_index(drop=True), store.frame().reset_index())


def test_a_provider_outside_the_known_five_keeps_its_name(store):
    store.save(make_job(0, provider="plugin").to_record())
    store.save(make_job(1).to_record())
    df = store.frame().reset_index()
    assert df["provider"].tolist() == ["apiframe", "plugin"]
    assert {"apiframe", "plugin", "thenextleg"} <= set(df["provider"].cat.categories)


def test_timestamps_written_by_hand_in_another_form_still_parse(store):
    job = make_job(0, status=Status.SUCCEEDED, completed_at=T0 + timedelta(seconds=90))
    store.save(job.to_record())
    store.save(make_job(1).to_record())
    with store._lock:  # a row edited by hand (or by an older tool): other ISO-8601 forms
        store._conn.execute(
            "UPDATE jobs SET created_at = ?, started_at = ?, completed_at = ? WHERE id = ?",
            ("2024-05-01T14:00:00+02:00", "2024-05-01T14:00:03.000000+02:00",
             "2024-05-01T12:01:30Z", job.id))
    df = store.frame().droplevel("provider")
    assert df.loc[job.id, "created_at"] == pd.Timestamp(T0)
    assert df.loc[job.id, "total_s"] == 90.0
    assert df.loc[job.id, "queue_s"] == 3.0  # same width as ours, but not UTC: not misread
    assert str(df["created_at"].dtype) == "datetime64[ns, UTC]"


def test_the_newest_first_order_survives_out_of_order_saves_and_filters(store):
    jobs = [make_job(i, remote_id=f"r{i}") for i in range(12)]
    for job in [*jobs[6:], *jobs[:6]]:  # the older half saved last
        store.save(job.to_record())
    newest_first = [j.id for j in reversed(jobs)]
    assert ids(store.frame()) == newest_first
    assert ids(store.frame(provider="apiframe")) == newest_first
    assert ids(store.frame(limit=4)) == newest_first[:4]


def test_every_column_of_the_table_is_built_once_in_order():
    from jupyter_imagine import _frame

    names = [c.name for c in _frame.COLUMNS]
    assert len(set(names)) == len(names) and names[:2] == ["provider", "id"]
    assert tuple(n for n in names if n not in ("provider", "id")) == FRAME_COLUMNS
    assert {c.kind for c in _frame.COLUMNS} <= {
        "text", "category", "json", "float", "time", "seconds", "provider", "status", "flag",
        "count", "size"}
    sql, args, in_storage_order = _frame.select()
    assert in_storage_order and "NOT INDEXED" in sql and args == []
    sql, args, in_storage_order = _frame.select(" WHERE status = ?", ["queued"],
                                                order=" ORDER BY rowid DESC LIMIT ?")
    assert not in_storage_order and "ORDER BY rowid DESC" in sql and args == ["queued"]


def test_part_bounds_cover_every_rowid_once():
    from jupyter_imagine import _frame

    assert _frame.part_bounds(None, None) == []  # an empty table: one part
    assert _frame.part_bounds(1, _frame.ROWS_PER_PART) == []
    bounds = _frame.part_bounds(1, 100_000)
    assert len(bounds) + 1 == 100_000 // _frame.ROWS_PER_PART + 1
    assert bounds == sorted(set(bounds)) and 1 <= bounds[0] and bounds[-1] < 100_000
    sizes = [b - a for a, b in zip([0, *bounds], [*bounds, 100_000], strict=True)]
    assert max(sizes) - min(sizes) <= 1  # even parts
    assert len(_frame.part_bounds(1, 10**9)) + 1 == _frame.MOST_PARTS


def test_blocks_are_fixed_rowid_ranges_that_double_only_when_the_table_does():
    from jupyter_imagine import _frame

    size = _frame.ROWS_PER_PART
    assert _frame.block_size(None, None) == size == _frame.block_size(1, 100_000)
    assert [_frame.block_of(r, size) for r in (1, size, size + 1)] == [0, 0, 1]
    assert _frame.block_size(1, size * _frame.MOST_PARTS) == size
    assert _frame.block_size(1, size * _frame.MOST_PARTS + 1) == 2 * size
    huge = _frame.block_size(1, 10**9)
    assert _frame.block_of(10**9, huge) < _frame.MOST_PARTS <= 2 * (_frame.block_of(10**9, huge)
                                                                   + 1)


def test_named_blocks_assemble_into_the_frame_of_the_whole_table(store, small_parts):
    from jupyter_imagine import _frame

    jobs = [make_job(i, remote_id=f"r{i}") for i in range(10)]  # rowids 1–10: blocks 0–3
    for job in jobs:
        store.save(job.to_record())
    store.delete(jobs[4].id)  # block 1 loses a row
    store.delete(jobs[6].id), store.delete(jobs[7].id)  # rowids 7–9: block 2 is left with one
    sql, args = _frame.select_blocks([3, 0, 2, 1, 5], 3, dialect=store._DIALECT)
    parts = dict(_frame.parse_row(row) for row in store._query(sql, args))
    assert sorted(parts) == [0, 1, 2, 3, 5] and [len(parts[k]) for k in sorted(parts)] == [
        3, 2, 1, 1, 0]  # block 5 is past the last rowid: an empty part
    frame = _frame.assemble(parts, ordered=False, storage_order=True)
    pd.testing.assert_frame_equal(frame, store.frame(status=list(STATUS_ORDER)))
    again = _frame.assemble(parts, ordered=False, storage_order=True)
    pd.testing.assert_frame_equal(again, frame)  # the parts are not used up
    assert again["params"].iloc[0] is frame["params"].iloc[0]  # values shared, arrays new:
    again.loc[again.index[0], "prompt"] = "edited"
    assert frame["prompt"].iloc[0] == jobs[9].prompt


def test_a_read_in_parts_repeats_the_filter_for_each_part():
    from jupyter_imagine import _frame

    sql, args, in_storage_order = _frame.select(" WHERE status = ? AND cost > ?", ["queued", 1],
                                                bounds=[10, 20])
    assert in_storage_order and sql.count(" UNION ALL ") == 2
    assert args == ["queued", 1, 10, "queued", 1, 10, 20, "queued", 1, 20]
    assert sql.count("(status = ? AND cost > ?) AND rowid") == 3
    sql, args, _ = _frame.select(bounds=[10], dialect=_frame.POSTGRESQL)
    assert sql.count("ORDER BY rowid") == 2 and args == [10, 10]  # heap order is not save order


@pytest.fixture
def small_parts(monkeypatch):
    """Parts of 3 rowids, so a handful of jobs is read in several parts."""
    from jupyter_imagine import _frame

    monkeypatch.setattr(_frame, "ROWS_PER_PART", 3)


def test_a_frame_read_in_parts_is_the_frame_read_at_once(store, small_parts, monkeypatch):
    from jupyter_imagine import _frame

    jobs = [make_job(i % 9, remote_id=f"r{i}", provider=["apiframe", "banatie"][i % 2],
                     status=[Status.SUCCEEDED, Status.QUEUED][i % 2], raw={"n": i})
            for i in range(40)]
    random.Random(3).shuffle(jobs)
    for job in jobs:
        store.save(job.to_record())
    for job in jobs[5:25:2]:  # gaps in the rowids: some parts are empty or short
        store.delete(job.id)
    calls = [dict(), dict(provider="banatie"), dict(include_raw=True, keys_as_columns=True),
             dict(status="queued", include_raw=True)]
    parted = [store.frame(**kw) for kw in calls]
    monkeypatch.setattr(_frame, "MOST_PARTS", 1)
    for kw, frame in zip(calls, parted, strict=True):
        pd.testing.assert_frame_equal(frame, store.frame(**kw))
    assert len(parted[0]) == 30 and ids(parted[0]) == [r["id"] for r in store.records()]


def test_rows_saved_after_the_bounds_were_taken_are_read(store):
    from jupyter_imagine import _frame

    for i in range(10):
        store.save(make_job(i).to_record())
    sql, args, storage_order = _frame.select(bounds=[2, 4], dialect=store._DIALECT)
    rows = store._query(sql, args)
    assert [row[-1] for row in rows] == [0, 1, 2]
    frame = _frame.build(rows, ordered=False, storage_order=storage_order)
    assert ids(frame) == [r["id"] for r in store.records()]


def test_parts_are_joined_in_their_order_whatever_order_they_arrive_in(store):
    from jupyter_imagine import _frame

    for i in range(10):
        store.save(make_job(i).to_record())
    sql, args, storage_order = _frame.select(bounds=[3, 6], dialect=store._DIALECT)
    rows = store._query(sql, args)
    frame = _frame.build(list(reversed(rows)), ordered=False, storage_order=storage_order)
    pd.testing.assert_frame_equal(frame, store.frame())
    assert _frame.build([], ordered=False).empty  # no rows at all: the empty frame
