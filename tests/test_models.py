"""The Job model: records, waiting, actions, display."""

from __future__ import annotations

import asyncio
import threading

import pytest

from jupyter_imagine.errors import (
    ConfigurationError,
    ActionNotAvailable,
    InvalidRequest,
    JobCancelled,
    JobFailed,
    JobTimeout,
    ModeratedPrompt,
)
from jupyter_imagine.models import GRID_ACTIONS, Image, Job, Status, check_timeout


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
