"""Many kernels, one history, with real processes (issue 10, "Tests and proof").

Kernels are ``tests/_kernel_scenario.py`` subprocesses on one ``JUPYTER_IMAGINE_HOME`` against
one served sandbox; one is ``SIGKILL``-ed mid-flight and restarted. The facts come from every
process's own log, a read-only watcher of the SQLite history and the store at the end (see
``tests/_kernels.py``). Each assertion is an exact count; the message carries every figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _kernels import (
    MAY_HAVE_REACHED,
    Plan,
    Sandbox,
    TeamStoreWatcher,
    job_specs,
    run,
    submits_seen,
)


def _mix(apiframe: int, thenextleg: int, blockade: int, neuroflash: int, banatie: int) -> dict:
    return {"apiframe": apiframe, "thenextleg": thenextleg, "blockade": blockade,
            "neuroflash": neuroflash, "banatie": banatie}


def _assert_none(got, report: str, *counts: str) -> None:
    """Every job terminal and each named count 0; the report (every figure) on failure."""
    assert got.terminal == got.total, report
    for name in counts:
        assert getattr(got, name) == 0, f"{name}: {report}"


@pytest.mark.timeout(360)
def test_two_kernels_one_killed_and_restarted(tmp_path):
    """Kernel A and B share a home; A is killed -9 once its jobs are in flight and restarted.

    More jobs than the providers' concurrency limits, so each kernel still holds queued jobs
    (not sent yet) when A's successor starts: those are what a second owner would send twice.
    """
    plan = Plan(
        jobs={"A": job_specs(_mix(8, 4, 1, 2, 2)), "B": job_specs(_mix(14, 4, 1, 2, 2))},
        kill="A",
        deadline=150,
    )
    with Sandbox(speed=40) as sandbox:
        got, info = run(plan, sandbox, tmp_path)
    report = f"{got.report()}\n{info}"
    assert got.total == 40, report
    _assert_none(got, report, "lost", "duplicate_submits", "regressions", "conflicting_finals",
                 "live_taken_over", "waits_not_returned", "crashes")


@pytest.mark.timeout(360)
def test_machines_on_one_team_store_one_killed_and_restarted(tmp_path, pg_url):
    """Issue 13: kernels with their own homes (machines) on one PostgreSQL store; A is killed
    -9 with jobs in flight and restarted; B keeps running."""
    plan = Plan(
        jobs={"A": job_specs(_mix(8, 4, 1, 2, 2)), "B": job_specs(_mix(10, 4, 1, 2, 2))},
        kill="A", deadline=150, team_store=pg_url,
    )
    with Sandbox(speed=40) as sandbox:
        got, info = run(plan, sandbox, tmp_path)
    report = f"{got.report()}\n{info}"
    assert got.total == 36, report
    _assert_none(got, report, "lost", "duplicate_submits", "regressions", "conflicting_finals",
                 "live_taken_over", "missing_images", "crashes")
    home = tmp_path / "home"
    assert {p.name for p in home.iterdir()} == {"A", "B", "shared-images"}  # two machines
    assert not (home / "A" / "history.sqlite").exists()  # the team store only
    shared = {p.relative_to(home / "shared-images") for p in home.glob("shared-images/*/*")}
    assert not [p for p in shared if p.name.startswith(".")], "a temporary file was left"
    every = [Path(*Path(path).parts[-2:]) for row in TeamStoreWatcher(pg_url).rows(("paths",))
             for path in json.loads(row["paths"])]
    assert every and set(every) <= shared, report  # every image in the shared folder, once


def _submit_in_flight(events) -> bool:
    """All 50 jobs created and at least one submit sent but not answered yet (or, failing that
    moment, ten answered: the kill then cuts polls and downloads instead)."""
    if not any(e.get("ev") == "started_all" for e in events):
        return False
    sent, answered = submits_seen(events)
    return sent > answered or answered >= 10


@pytest.mark.timeout(360)
def test_kill_9_with_50_jobs_in_flight(tmp_path):
    """One kernel starts 50 jobs, is killed -9 with them in flight and restarted: every job
    finishes, or fails saying it may have reached the provider; none is submitted twice."""
    plan = Plan(jobs={"K": job_specs(_mix(24, 14, 2, 5, 5))}, kill="K",
                kill_when=_submit_in_flight, deadline=150)
    with Sandbox(speed=40) as sandbox:
        got, info = run(plan, sandbox, tmp_path)
    report = f"{got.report()}\n{info}"
    assert got.total == 50, report
    assert got.terminal == 50, report
    assert got.lost == 0, report
    assert got.succeeded + got.may_have_reached == 50, report
    assert got.duplicate_submits == 0, report
    assert got.regressions == 0, report
    assert got.waits_not_returned == 0, report
    assert got.crashes == 0, report


def test_may_have_reached_reason_matches_todays_wording():
    """The reason the kill test accepts is the one the engine gives today."""
    text = ("it may or may not have reached the service, so it was not sent again — check the "
            "provider's dashboard or start it anew")
    assert MAY_HAVE_REACHED.search(text)
    assert not MAY_HAVE_REACHED.search("the provider is busy; try again later")


# ---------------------------------------------------------------- the counters themselves
def _write(path, events):
    import json

    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def _http(k, rid, t, phase, *, m="POST", path="/apiframe/imagine", tokens=(), words=(), **kw):
    return {"ev": "http", "k": k, "t": t, "rid": rid, "phase": phase, "m": m, "path": path,
            "tokens": list(tokens), "words": list(words), **kw}


def test_facts_count_duplicates_takeovers_regressions_and_missing_images(tmp_path):
    """Synthetic logs of two kernels: each counter sees exactly what was planted."""
    from _kernels import Kernel, StoreWatcher, facts

    image = tmp_path / "present.png"
    image.write_bytes(b"png")
    a, b = (Kernel(n, tmp_path / "home", None, tmp_path, incarnation=1) for n in "AB")
    a.ended_at["A#1"] = 10.0
    b.ended_at["B#1"] = 100.0
    rows = [
        {"id": "j1", "provider": "apiframe", "status": "succeeded", "n_images": 2,
         "image_paths": [str(image), str(tmp_path / "gone.png")], "prompt": "jt0000000001 x",
         "remote_id": "r1"},
        {"id": "j2", "provider": "apiframe", "status": "failed", "n_images": 0,
         "image_paths": [], "prompt": "jt0000000002 x", "remote_id": "r2",
         "error": "it may or may not have reached the service"},
        {"id": "j3", "provider": "apiframe", "status": "running", "n_images": 0,
         "image_paths": [], "prompt": "jt0000000003 x", "remote_id": None},
    ]
    _write(a.log_path, [
        {"ev": "created", "k": "A#1", "t": 1.0, "id": "j1", "token": "jt0000000001",
         "provider": "apiframe"},
        _http("A#1", 1, 2.0, "send", tokens=["jt0000000001"]),
        _http("A#1", 1, 2.1, "answer", code=200, ids=["r1"]),
        # j2 is B's; A polls it while B is alive: a live job taken over
        _http("A#1", 2, 3.0, "send", path="/apiframe/fetch", words=["r2"]),
        {"ev": "obs", "k": "A#1", "src": "store", "t": 4.0, "id": "j2", "status": "failed"},
        {"ev": "obs", "k": "A#1", "src": "store", "t": 5.0, "id": "j2", "status": "running"},
    ])
    _write(b.log_path, [
        {"ev": "created", "k": "B#1", "t": 1.0, "id": "j2", "token": "jt0000000002",
         "provider": "apiframe"},
        {"ev": "created", "k": "B#1", "t": 1.0, "id": "j3", "token": "jt0000000003",
         "provider": "apiframe"},
        # j2 sent twice: answered once, the other never answered (may have reached)
        _http("B#1", 1, 2.0, "send", tokens=["jt0000000002"]),
        _http("B#1", 1, 2.2, "answer", code=201, ids=["r2"]),
        _http("B#1", 2, 6.0, "send", tokens=["jt0000000002"]),
        # j1 is A's; B polls it after A died: resumed, not taken over
        _http("B#1", 3, 20.0, "send", path="/apiframe/fetch", words=["r1"]),
        # j3 refused with a 429 and never sent again: one submit only
        _http("B#1", 4, 2.0, "send", tokens=["jt0000000003"]),
        _http("B#1", 4, 2.1, "answer", code=429),
        {"ev": "obs", "k": "B#1", "src": "job", "t": 7.0, "id": "j2", "status": "succeeded"},
        {"ev": "wait", "k": "B#1", "t": 31.0, "id": "j2", "before": "succeeded",
         "outcome": "returned", "seconds": 3.0},
        {"ev": "wait", "k": "B#1", "t": 31.0, "id": "j3", "before": "running",
         "outcome": "JobTimeout", "seconds": 5.0},
        {"ev": "final", "k": "B#1", "t": 30.0, "rows": rows},
    ])
    (tmp_path / "B#1.stderr").write_text(
        "Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'id'\n")
    got = facts([a, b], StoreWatcher(tmp_path / "home"))
    assert (got.total, got.terminal, got.succeeded, got.failed, got.lost) == (3, 2, 1, 1, 1)
    assert (got.may_have_reached, got.failed_after_accept) == (1, 0)
    assert (got.duplicate_submits, got.extra_submits) == (1, 1)
    assert (got.live_taken_over, got.resumed_after_death) == (1, 1)
    assert (got.regressions, got.conflicting_finals) == (1, 1)
    assert (got.missing_images, got.jobs_missing_images) == (1, 1)
    assert got.waits_not_returned == 1
    assert got.crashes == 1 and any("B#1 crashed: KeyError: 'id'" in n for n in got.notes)
