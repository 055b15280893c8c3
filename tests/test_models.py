"""The Job model: records, waiting, actions, display."""

from __future__ import annotations

import asyncio
import threading

import pytest

from jupyter_imagine import _display
from jupyter_imagine.errors import (
    ActionNotAvailable,
    ConfigurationError,
    InvalidRequest,
    JobCancelled,
    JobFailed,
    JobTimeout,
    ModeratedPrompt,
)
from jupyter_imagine.models import GRID_ACTIONS, Image, Job, Status, WaitInterrupted, check_timeout


def make_job(**kw):
    base = {"provider": "apiframe", "kind": "imagine", "prompt": "a lighthouse at dusk"}
    return Job(**{**base, **kw})


def test_status_values_and_finality():
    assert [s.value for s in Status] == ["queued", "running", "succeeded", "failed", "cancelled"]
    assert {s for s in Status if s.final} == {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED}


def test_grid_actions_in_midjourney_order():
    assert GRID_ACTIONS == ("U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4")


def test_record_round_trip_keeps_every_field():
    job = make_job(
        params={"aspect_ratio": "3:2"},
        images=[Image(url="http://x/1.png", path="/tmp/1.png", width=2, height=3, index=1)],
        grid=Image(url="http://x/g.png", role="grid"),
        actions=GRID_ACTIONS,
        status=Status.SUCCEEDED,
        extras={"seed": "42"},
    )
    rebuilt = Job.from_record(job.to_record())
    assert rebuilt.to_record() == job.to_record()
    assert rebuilt.images[0].width == 2 and rebuilt.grid.role == "grid"
    assert rebuilt.created_at.tzinfo is not None
    assert rebuilt.done


def test_apply_notifies_observers_and_resolves_waiters():
    job = make_job()
    seen = []
    job.observe(lambda j, changed: seen.append(set(changed)))
    done = {"status": Status.SUCCEEDED, "progress": 100.0}
    threading.Timer(0.05, lambda: job._apply(done)).start()
    assert job.wait(timeout=5) is job
    assert seen == [{"status", "progress"}]


def test_apply_sets_the_status_last_and_as_a_status():
    """Another thread reading ``job.done`` (no lock) and seeing it final sees the images too,
    and never a status that is still text."""

    class Watched(Job):
        def __setattr__(self, name, value):
            if name == "status" and hasattr(self, "images"):
                seen.append((value, list(self.images)))
            super().__setattr__(name, value)

    seen: list[tuple[object, list]] = []
    job = Watched(provider="apiframe", kind="imagine", prompt="a kite")
    seen.clear()
    image = Image(url="http://x/1.png", index=1)
    job._apply({"status": "succeeded", "progress": 100.0, "images": [image]})
    assert seen == [(Status.SUCCEEDED, [image])]


def test_apply_rejects_unknown_field():
    with pytest.raises(AttributeError):
        make_job()._apply({"nope": 1})


def test_wait_timeout_leaves_job_running():
    job = make_job()
    with pytest.raises(JobTimeout, match="still queued after waiting 0.01 s"):
        job.wait(timeout=0.01)
    assert job.status is Status.QUEUED


def test_wait_raises_typed_failures():
    failed = make_job(status=Status.FAILED, error="Banned prompt: 'gore'",
                      error_type="ModeratedPrompt")
    with pytest.raises(JobFailed, match="Banned prompt") as info:
        failed.wait()
    assert isinstance(info.value.__cause__, ModeratedPrompt)
    assert info.value.job is failed
    timed_out = make_job(status=Status.FAILED, error="deadline", error_type="JobTimeout")
    with pytest.raises(JobTimeout):
        timed_out.wait()
    with pytest.raises(JobCancelled):
        make_job(status=Status.CANCELLED).wait()


def interrupting(job, monkeypatch):
    """Make ``job.wait()`` meet a Ctrl-C while it blocks (as ``future.result()`` does)."""

    class Interrupted:
        def done(self):
            return False

        def result(self, timeout=None):
            raise KeyboardInterrupt

    monkeypatch.setattr(job, "_done", Interrupted())


def test_ctrl_c_during_wait_is_one_line_and_the_job_keeps_running(monkeypatch):
    job = make_job(id="3f2a1b2c-0000-4000-8000-000000000000", status=Status.RUNNING)
    interrupting(job, monkeypatch)
    with pytest.raises(KeyboardInterrupt) as info:  # a script still stops
        job.wait()
    exc = info.value
    assert isinstance(exc, WaitInterrupted) and exc.job is job
    assert str(exc) == (
        "stopped waiting; job 3f2a1b2c keeps running — ji.job('3f2a1b2c') to follow it"
    )
    assert exc.__cause__ is None and exc.__suppress_context__  # no futures traceback chained
    assert job.status is Status.RUNNING  # nothing was cancelled


def test_wait_on_a_terminal_shows_one_updating_line(monkeypatch, capfd):
    monkeypatch.setattr(_display, "in_kernel", lambda: False)
    monkeypatch.setattr(_display, "stderr_is_terminal", lambda: True)
    job = make_job(id="3f2a1b2c-0000-4000-8000-000000000000", status=Status.RUNNING)

    def finish():
        job._apply({"progress": 60.0})
        job._apply({"status": Status.SUCCEEDED, "progress": 100.0})

    threading.Timer(0.05, finish).start()
    job.wait(5)
    err = capfd.readouterr().err
    assert "\n" not in err.strip()  # one line, redrawn in place with \r
    last = err.strip().split("\r")[-1]
    assert last.startswith("apiframe imagine 3f2a1b2c: 100%") and "succeeded" in last
    assert job._observers == []  # the display stopped observing
    job.wait()  # already final: shows nothing
    assert capfd.readouterr().err == ""


def test_ctrl_c_on_a_terminal_ends_the_line_with_stopped_waiting(monkeypatch, capfd):
    monkeypatch.setattr(_display, "in_kernel", lambda: False)
    monkeypatch.setattr(_display, "stderr_is_terminal", lambda: True)
    job = make_job(status=Status.RUNNING, progress=30.0)
    interrupting(job, monkeypatch)
    with pytest.raises(WaitInterrupted):
        job.wait()
    last = capfd.readouterr().err.strip().split("\r")[-1]
    assert " 30%" in last and "stopped waiting" in last


def test_wait_redraws_while_nothing_changes_and_still_times_out(monkeypatch, capfd):
    from jupyter_imagine import models

    monkeypatch.setattr(_display, "in_kernel", lambda: False)
    monkeypatch.setattr(_display, "stderr_is_terminal", lambda: True)
    monkeypatch.setattr(models._WaitDisplay, "TICK", 0.02)
    monkeypatch.setattr(_display, "TERMINAL_INTERVAL", 0)
    ticks = []
    original = models._WaitDisplay.changed
    monkeypatch.setattr(models._WaitDisplay, "changed",
                        lambda self, job, fields=frozenset(): ticks.append(1) or original(
                            self, job, fields))
    job = make_job(status=Status.RUNNING, progress=10.0)
    with pytest.raises(JobTimeout):
        job.wait(0.2)
    assert len(ticks) >= 4  # the line was redrawn while the job stood still
    last = capfd.readouterr().err.strip().split("\r")[-1]
    assert " 10%" in last and "still running: stopped waiting" in last
    assert job.status is Status.RUNNING


def test_wait_in_a_script_log_prints_nothing(monkeypatch, capfd):
    monkeypatch.setattr(_display, "in_kernel", lambda: False)
    monkeypatch.setattr(_display, "stderr_is_terminal", lambda: False)
    job = make_job()
    threading.Timer(0.05, lambda: job._apply({"status": Status.SUCCEEDED})).start()
    job.wait(5)
    assert capfd.readouterr().err == ""


def test_wait_in_a_notebook_shows_a_live_bar_left_as_the_outcome(progress_kernel):
    shown, updates = progress_kernel
    job = make_job(status=Status.QUEUED)
    threading.Timer(0.05, lambda: job._apply({"status": Status.SUCCEEDED})).start()
    job.wait(5)
    assert len(shown) == 1 and "application/vnd.jupyter.widget-view+json" in shown[0]
    final = updates[-1]["text/plain"]
    assert final.startswith(f"apiframe imagine {job.id[:8]}") and "100%" in final
    assert "succeeded" in final


def test_await_job_from_another_loop():
    job = make_job()

    async def main():
        asyncio.get_running_loop().call_later(0.02, job._apply, {"status": Status.SUCCEEDED})
        return await job

    assert asyncio.run(main()) is job


def test_act_refuses_labels_not_offered():
    job = make_job(status=Status.SUCCEEDED, actions=GRID_ACTIONS)
    with pytest.raises(ActionNotAvailable, match="'U5'.*offers: U1"):
        job.act("U5")
    with pytest.raises(ActionNotAvailable, match="none until it has succeeded"):
        make_job().act("U1")
    with pytest.raises(InvalidRequest, match="index must be 1, 2, 3 or 4"):
        job.upscale(5)


def test_require_action_passes_an_offered_label_and_refuses_others():
    job = make_job(status=Status.SUCCEEDED, actions=GRID_ACTIONS)
    assert job.require_action("U1") == "U1"  # offered: no engine needed to check
    assert job.require_action(" u1 ") == "U1" and job.require_action("v4") == "V4"  # as typed
    with pytest.raises(ActionNotAvailable, match="'U5'.*offers: U1"):
        job.require_action("U5")
    with pytest.raises(ActionNotAvailable, match="none until it has succeeded"):
        make_job().require_action("U1")


def test_act_needs_an_engine():
    job = make_job(status=Status.SUCCEEDED, actions=GRID_ACTIONS)
    with pytest.raises(InvalidRequest, match="not attached to an engine"):
        job.upscale(1)


def test_repr_and_plain_display_mention_sandbox():
    job = make_job(sandbox=True)
    assert "sandbox" in repr(job)
    bundle = job._repr_mimebundle_()
    assert "[sandbox]" in bundle["text/plain"]
    assert "image/png" not in bundle  # nothing to show yet


def test_display_includes_png_thumbnail_once_finished(tmp_path):
    from PIL import Image as PILImage

    path = tmp_path / "grid.png"
    PILImage.new("RGB", (1024, 512), "navy").save(path)
    job = make_job(status=Status.SUCCEEDED, grid=Image(path=str(path), role="grid"))
    png = job._repr_mimebundle_()["image/png"]
    assert png.startswith(b"\x89PNG")
    import io

    assert max(PILImage.open(io.BytesIO(png)).size) <= 512


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 0, "x", False])
def test_wait_refuses_a_timeout_that_is_not_positive_seconds(bad):
    job = Job(provider="apiframe", kind="imagine", prompt="p")
    with pytest.raises(ConfigurationError, match="timeout must be a positive number of seconds"):
        job.wait(timeout=bad)
    assert check_timeout(2) == 2.0 and check_timeout(None) is None


# ------------------------------------------------------------------ Cost and Balance
def test_cost_keeps_a_float_amount_and_refuses_bad_figures():
    from jupyter_imagine.models import Cost

    cost = Cost(4, "credits", "prices")
    assert cost.amount == 4.0 and isinstance(cost.amount, float) and cost.usd is None
    assert Cost(0, "requests", "provider").amount == 0.0
    for amount in (-1, float("nan"), float("inf"), True, "4"):
        with pytest.raises(InvalidRequest, match="finite amount"):
            Cost(amount, "credits", "prices")
    with pytest.raises(InvalidRequest, match="unit"):
        Cost(1, "", "prices")
    with pytest.raises(InvalidRequest, match="provider, prices"):
        Cost(1, "credits", "guess")


def test_balance_times_are_utc_and_amounts_floats():
    from datetime import datetime, timezone

    from jupyter_imagine.models import Balance

    naive = datetime(2026, 1, 2, 3, 4, 5)
    balance = Balance("neuroflash", {"images": 40, "images_today": 10}, naive,
                      limits={"images_today": 100}, resets_at="2026-01-03T00:00:00Z")
    assert balance.read_at == naive.replace(tzinfo=timezone.utc)
    assert balance.resets_at == datetime(2026, 1, 3, tzinfo=timezone.utc)
    assert balance.amounts == {"images": 40.0, "images_today": 10.0}
    assert all(isinstance(v, float) for v in [*balance.amounts.values(), *balance.limits.values()])
    assert balance.plan is None and Balance("x", {}, naive).limits == {}
