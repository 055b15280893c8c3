"""The remote pull (``_pull``): remote history merged into the store without duplicates.

Jobs run against the sandbox (in-process, or served over real HTTP on loopback for pagination).
"""

from __future__ import annotations

import asyncio
import time
import warnings
from datetime import datetime, timezone
from typing import ClassVar

import httpx
import pandas as pd
import pytest

import jupyter_imagine as ji
from jupyter_imagine import _pull, api
from jupyter_imagine.engine import Engine
from jupyter_imagine.models import Status
from jupyter_imagine.providers import PROVIDERS, Provider, RemoteJob, Update
from jupyter_imagine.sandbox import create_app
from jupyter_imagine.store import Store

FAST = {"sandbox_speed": 1000.0, "backoff_base": 0.01, "backoff_cap": 0.2}

#: The dtype of every column, whatever the provider (str: pandas' default text dtype).
TEXT = str(pd.Series(["x"]).dtype)
EXPECTED_DTYPES = {
    "provider": "category", "id": TEXT, "remote_id": TEXT, "parent_id": TEXT,
    "root_id": TEXT, "kind": "category", "action": TEXT, "status": "category",
    "prompt": TEXT, "negative_prompt": TEXT, "params": "object",
    "created_at": "datetime64[ns, UTC]", "started_at": "datetime64[ns, UTC]",
    "completed_at": "datetime64[ns, UTC]", "queue_s": "float64", "run_s": "float64",
    "total_s": "float64", "n_images": "int64", "missing_images": "int64", "width": "Int64",
    "height": "Int64", "image_urls": "object", "image_paths": "object", "cost": "float64",
    "cost_unit": "category", "cost_source": "category", "error": TEXT, "sandbox": "bool",
}
#: A prompt and parameters that make one good job per provider (a fresh provider gets a default).
JOB_OF = {
    "apiframe": ("a lighthouse at dusk", {"aspect_ratio": "3:2"}),
    "thenextleg": ("a lighthouse at dusk --ar 3:2", {}),
    "blockade": ("a lighthouse on a cliff", {"negative_text": "fog"}),
    "neuroflash": ("a lighthouse at dusk", {"num_images": 2}),
    "banatie": ("a lighthouse at dusk", {"aspect_ratio": "16:9"}),
}


def no_empty_strings(df: pd.DataFrame) -> None:
    for name in df.columns:
        assert not (df[name].astype(object) == "").any(), f"empty string in {name}"


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


# ------------------------------------------------------------------------------ the report

@pytest.mark.parametrize(("report", "text"), [
    (_pull.PullReport("apiframe", state="done"), "apiframe: nothing to pull"),
    (_pull.PullReport("neuroflash", state="done", pages=1), "neuroflash: nothing to pull"),
    (_pull.PullReport("blockade", state="done", pages=1, listed=3, new=3),
     "blockade: 1 page · 3 listed · 3 new"),
    (_pull.PullReport("banatie", state="done", pages=2, listed=150, new=12, updated=138,
                      refreshed=2),
     "banatie: 2 pages · 150 listed · 12 new · 138 updated · 2 refreshed"),
    (_pull.PullReport("neuroflash", state="failed", error="NetworkError: refused"),
     "neuroflash: failed — NetworkError: refused"),
    (_pull.PullReport("blockade", state="failed", pages=1, listed=100, new=100,
                      error="ServerError: 502"),
     "blockade: failed — ServerError: 502 (kept: 100 listed · 100 new)"),
    (_pull.PullReport("blockade", state="listing", pages=1, total_pages=3, listed=100),
     "blockade: listing · page 2 of 3 · 100 listed"),
    (_pull.PullReport("apiframe", state="refreshing"), "apiframe: refreshing"),
])
def test_report_labels_say_what_happened_without_empty_counts(report, text):
    assert report.label() == text
    assert "None" not in text and "1 pages" not in text


def test_a_fresh_sandbox_has_nothing_to_pull_and_no_sample_rows(engine, capfd):
    report = _pull.sync(engine, ["neuroflash", "apiframe"], progress=True)
    assert report["new"].sum() == 0 and report["listed"].sum() == 0
    assert engine.store.records() == []  # the seeded "a harbour at dawn" is not the user's
    err = capfd.readouterr().err  # outside a notebook: a text bar on stderr
    assert "remote history of 2 providers: 100%" in err and "2/2" in err
    assert "/s" not in err and "ETA" not in err  # no rate for providers of different sizes
    assert "\n  neuroflash: nothing to pull\n" in err
    assert "\n  apiframe: nothing to pull\n" in err


# ------------------------------------------------------------------------------ one schema

@pytest.fixture
def shared_app():
    """One sandbox shared by two engines: 'this kernel' and 'another machine'."""
    return create_app(speed=1000)


def other_engine(tmp_path, app, name: str) -> Engine:
    return Engine(Store(tmp_path / name), sandbox_app=app, **FAST).start()


def test_pull_brings_in_jobs_started_elsewhere_and_twice_adds_nothing(tmp_path, shared_app):
    elsewhere = other_engine(tmp_path, shared_app, "elsewhere")
    try:
        sky = elsewhere.imagine("a stormy sea", provider="blockade").wait(60)
        remix = sky.act("Remix", prompt="a calm sea").wait(60)
        gen = elsewhere.imagine("a banana", provider="banatie").wait(60)
        nf = elsewhere.imagine("a kiwi", provider="neuroflash", num_images=2).wait(60)
    finally:
        elsewhere.close()
    here = other_engine(tmp_path, shared_app, "here")
    try:
        report = _pull.sync(here, ["blockade", "banatie", "neuroflash", "apiframe"],
                               progress=False)
        by = report.set_index("provider")
        assert by.loc["blockade", "new"] == 2 and by.loc["banatie", "new"] == 1
        assert by.loc["neuroflash", "new"] == 1  # the sandbox's seeded sample is left out
        assert report["error"].isna().all() and (report["pages"][:3] >= 1).all()
        first = here.store.frame()
        rows = first.reset_index().set_index("remote_id")
        assert rows.loc[remix.remote_id, "parent_id"] == rows.loc[sky.remote_id, "id"]
        assert rows.loc[remix.remote_id, "root_id"] == rows.loc[sky.remote_id, "id"]
        assert rows.loc[remix.remote_id, "kind"] == "remix"
        assert rows.loc[gen.remote_id, "prompt"] == "a banana"
        assert rows.loc[nf.remote_id, "n_images"] == 2
        for remote in (sky, remix, gen, nf):
            row = rows.loc[remote.remote_id]
            assert row["status"] == "succeeded"
            assert all(p and p.startswith(str(here.store.images_dir)) for p in row["image_paths"])
            assert row["created_at"] <= row["completed_at"]
        assert here.get(rows.loc[sky.remote_id, "id"]).actions  # a normal job: it has buttons
        again = _pull.sync(here, ["blockade", "banatie", "neuroflash", "apiframe"],
                              progress=False)
        assert again["new"].sum() == 0 and again["updated"].sum() == report["new"].sum()
        second = here.store.frame()
        pd.testing.assert_frame_equal(first.drop(columns=[]), second)
    finally:
        here.close()


def test_pull_refreshes_stored_unfinished_apiframe_jobs_with_fetch_many(tmp_path):
    app = create_app(speed=1000)
    state = app.state.sandbox
    state.clock.speed = 0  # the sandbox stands still: only the pull can tell what happened
    first = Engine(Store(tmp_path / "home"), sandbox_app=app, **FAST).start()
    jobs = [first.imagine(f"tower {i}", provider="apiframe") for i in range(3)]
    wait_for(lambda: all(j.submit_state == "sent" for j in jobs))
    first.close()
    second = Engine(Store(tmp_path / "home"), sandbox_app=app,
                    **{**FAST, "sandbox_speed": 0.01}).start()  # polls 200 s apart
    def fetch_many() -> int:
        return sum(n for (m, p), n in state.requests.items() if p.endswith("/fetch-many"))

    try:
        wait_for(lambda: fetch_many() > 0)  # the resumed jobs' first poll (they are queued)
        time.sleep(0.2)
        before = fetch_many()
        state.clock.advance(120)  # long enough to finish every task
        report = _pull.sync(second, ["apiframe"], progress=False)
        after = fetch_many()
        assert report.loc[0, "refreshed"] == 3 and report.loc[0, "error"] is None
        assert after > before
        for job in jobs:
            assert second.store.get(job.id)["status"] == "succeeded"
            assert len(second.get(job.id).images) == 4
    finally:
        second.close()


@pytest.fixture
def live_engine(tmp_path, live_sandbox, monkeypatch):
    """An engine whose providers all talk to the sandbox served over real HTTP on loopback."""
    monkeypatch.setenv("JUPYTER_IMAGINE_SANDBOX_URL", live_sandbox.url)
    eng = Engine(Store(tmp_path / "live"), **FAST).start()
    old = api._set_engine(eng)
    try:
        yield eng
    finally:
        eng.close()
        api._set_engine(old)


def seed_skyboxes(url: str, count: int) -> list[str]:
    headers = {"x-api-key": "sandbox-key"}
    with httpx.Client(base_url=url + "/blockade/api/v1", headers=headers, timeout=30) as client:
        style = client.get("/skybox/styles").json()[0]["id"]
        return [
            str(client.post("/skybox", json={"prompt": f"world number {i}",
                                             "skybox_style_id": style}).json()["id"])
            for i in range(count)
        ]


def test_pagination_across_many_pages_over_loopback(live_engine, live_sandbox, monkeypatch):
    """Blockade's myRequests, 10 a page: page 0, then the other 12 pages at once (bounded)."""
    ids = seed_skyboxes(live_sandbox.url, 125)
    monkeypatch.setattr(_pull, "BLOCKADE_PAGE_SIZE", 10)
    from jupyter_imagine.providers.blockade import Blockade

    original = Blockade.my_requests
    flight = {"now": 0, "peak": 0, "calls": 0}

    async def counted(self, **filters):
        flight["now"] += 1
        flight["calls"] += 1
        flight["peak"] = max(flight["peak"], flight["now"])
        try:
            await asyncio.sleep(0.01)  # a little latency, so concurrency can show
            return await original(self, **filters)
        finally:
            flight["now"] -= 1

    monkeypatch.setattr(Blockade, "my_requests", counted)
    report = ji.sync_history("blockade", download=False, max_concurrency=4, progress=False)
    row = report.iloc[0]
    assert (row["pages"], row["listed"], row["new"]) == (13, 125, 125)
    assert row["error"] is None
    assert flight["calls"] == 13 and 1 < flight["peak"] <= 4
    df = ji.history(provider="blockade")
    assert len(df) == 125 and sorted(df["remote_id"], key=int) == ids
    assert df["image_paths"].map(len).eq(0).all()  # download=False keeps the URLs only
    # sequential (max_concurrency=1) and again: nothing new, nothing duplicated
    flight.update(peak=0, calls=0)
    again = ji.sync_history("blockade", download=False, max_concurrency=1, progress=False)
    assert again.loc[0, "new"] == 0 and again.loc[0, "updated"] == 125
    assert flight["peak"] == 1 and flight["calls"] == 13
    assert len(ji.history(provider="blockade")) == 125


def test_sequential_listing_over_loopback(live_engine, live_sandbox, monkeypatch):
    """Banatie's generations: offset/hasMore pages walked one after the other."""
    from jupyter_imagine.providers.banatie import Banatie

    monkeypatch.setattr(Banatie, "history_page_size", 2)
    made = [live_engine.imagine(f"fruit {i}", provider="banatie") for i in range(5)]
    for job in made:
        job.wait(60)
    for job in made:
        live_engine.store.delete(job.id)
    report = ji.sync_history("banatie", progress=False)
    assert (report.loc[0, "pages"], report.loc[0, "new"]) == (3, 5)
    df = ji.history(provider="banatie")
    assert sorted(df["remote_id"]) == sorted(j.remote_id for j in made)
    assert df["image_paths"].map(len).eq(1).all()


def test_since_limits_what_a_pull_lists(engine):
    made = [ji.imagine(f"a plum {i}", provider="banatie").wait(60) for i in range(2)]
    for job in made:
        engine.store.delete(job.id)
    later = ji.sync_history("banatie", since="2999-01-01", progress=False)
    assert later.loc[0, "new"] == 0 and later.loc[0, "error"] is None
    assert ji.history(provider="banatie").empty
    everything = ji.sync_history("banatie", since=made[0].created_at.replace(year=2000),
                                 progress=False)
    assert everything.loc[0, "new"] == 2
    with pytest.raises(ji.InvalidRequest, match="ISO-8601"):
        ji.sync_history("banatie", since="last tuesday", progress=False)


# ------------------------------------------------------------------------------ fake provider
class Paged(Provider):
    """A page-numbered provider with no HTTP: ``pages`` says 3, ``has_more`` finds 2 more."""

    name = "paged"
    label = "Paged"
    env_key = "PAGED_API_KEY"
    default_base_url = "https://paged.invalid"
    sandbox_prefix = "/paged"
    status_map: ClassVar[dict[str, Status]] = {"done": Status.SUCCEEDED, "busy": Status.RUNNING}
    max_concurrency = 3
    fail_on: int | None = None
    calls: ClassVar[list[int]] = []
    items = 25  # 5 pages of 5; the first page only knows of 3

    async def remote_page(self, number: int):
        type(self).calls.append(number)
        await asyncio.sleep(0.001 * (7 - number))  # later pages land first
        if number == type(self).fail_on:
            raise ji.InvalidRequest("page refused", provider=self.name)
        jobs = [
            RemoteJob(
                remote_id=f"r{i}", kind="imagine", prompt=f"item {i}",
                update=Update(status=Status.SUCCEEDED if i % 2 else Status.FAILED,
                              error=None if i % 2 else "nope",
                              raw={"completed_at": "2024-05-01T12:00:30Z"}),
                parent_remote_id=f"r{i - 1}" if i % 5 else None,
                created_at=datetime(2024, 5, 1, 12, 0, i % 60, tzinfo=timezone.utc),
            )
            for i in range(number * 5, min(type(self).items, number * 5 + 5))
        ]
        return (jobs, 3, (number + 1) * 5 < type(self).items)


@pytest.fixture
def paged(monkeypatch):
    monkeypatch.setitem(PROVIDERS, "paged", Paged)
    monkeypatch.setattr(Paged, "calls", [])
    monkeypatch.setattr(Paged, "fail_on", None)
    return Paged


def test_numbered_pages_concurrent_then_has_more(engine, paged):
    report = ji.sync_history("paged", progress=False)
    assert (report.loc[0, "pages"], report.loc[0, "new"]) == (5, 25)
    assert paged.calls[:1] == [0] and sorted(paged.calls) == [0, 1, 2, 3, 4]
    df = ji.history(provider="paged").reset_index().set_index("remote_id")
    assert df.loc["r3", "parent_id"] == df.loc["r2", "id"]  # linked within and across pages
    assert df.loc["r4", "root_id"] == df.loc["r0", "id"]
    assert df.loc["r0", "status"] == "failed" and df.loc["r0", "error"] == "nope"
    assert df.loc["r1", "completed_at"] == pd.Timestamp("2024-05-01T12:00:30Z")
    assert str(df["provider"].dtype) == "category" and "paged" in df["provider"].cat.categories
    again = ji.sync_history("paged", progress=False)
    assert again.loc[0, "new"] == 0 and len(ji.history(provider="paged")) == 25


def test_a_pull_that_fails_half_way_keeps_what_it_got_and_says_who(engine, paged):
    paged.fail_on = 3
    with pytest.warns(RuntimeWarning, match="paged .*page refused"):
        report = ji.sync_history(["paged", "apiframe"], progress=False)
    by = report.set_index("provider")
    assert "page refused" in by.loc["paged", "error"]
    assert by.loc["paged", "new"] == 15  # pages 0-2 merged before page 3 failed
    assert pd.isna(by.loc["apiframe", "error"])
    assert len(ji.history(provider="paged")) == 15
    paged.fail_on = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ji.sync_history("paged", progress=False).loc[0, "new"] == 10
    assert len(ji.history(provider="paged")) == 25


def test_history_remote_true_pulls_first(engine, paged):
    df = ji.history(provider="paged", remote=True)
    assert len(df) == 25 and df.attrs["sync"][0]["new"] == 25
    assert df.groupby("status", observed=True).size().sum() == 25  # attrs do not get in the way


def test_remote_times_rules():
    created = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)

    def remote(raw, status=Status.SUCCEEDED, **kw):
        return RemoteJob(remote_id="x", kind="imagine", prompt="p", created_at=created,
                         update=Update(status=status, raw=raw), **kw)

    blockade = remote({"processing_at": "2024-05-01T12:00:06Z",
                       "completed_at": "2024-05-01T12:00:30Z"})
    assert _pull.remote_times(blockade) == (
        datetime(2024, 5, 1, 12, 0, 6, tzinfo=timezone.utc),
        datetime(2024, 5, 1, 12, 0, 30, tzinfo=timezone.utc),
    )
    banatie = remote({"processingTimeMs": 4000, "updatedAt": "2024-05-01T12:00:10Z"})
    assert _pull.remote_times(banatie)[0] == datetime(2024, 5, 1, 12, 0, 6,
                                                          tzinfo=timezone.utc)
    assert _pull.remote_times(remote({}), synchronous=True) == (created, created)
    assert _pull.remote_times(remote({})) == (None, None)
    early = remote({"started_at": "2024-05-01T11:00:00Z"}, status=Status.RUNNING)
    assert _pull.remote_times(early)[0] == created  # never before creation


def test_ctrl_c_cancels_the_pull_in_one_line(engine, monkeypatch):
    from jupyter_imagine.models import WaitInterrupted

    cancelled = []

    class Interrupted:
        def result(self, timeout=None):
            raise KeyboardInterrupt

        def cancel(self):
            cancelled.append(True)

    def run(coroutine):
        coroutine.close()  # never started
        return Interrupted()

    monkeypatch.setattr(engine, "run", run)
    with pytest.raises(KeyboardInterrupt) as info:
        _pull.sync(engine, ["apiframe"], progress=False)
    assert isinstance(info.value, WaitInterrupted) and cancelled == [True]
    assert str(info.value).startswith("stopped the remote history pull; what it fetched is kept")
    assert info.value.__suppress_context__
