"""The sandbox's state on disk (``sandbox/_persist.py``): a new app on the same ``state_dir``
answers for the old one's tasks, its clock goes on in wall time, images come out identical."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from jupyter_imagine.engine import Engine
from jupyter_imagine.models import Status
from jupyter_imagine.sandbox import create_app
from jupyter_imagine.sandbox._persist import FILE_NAME, SandboxPersistence
from jupyter_imagine.store import Store

FAST = {"sandbox_speed": 1000.0, "backoff_base": 0.01, "backoff_cap": 0.2}
PROMPTS = {
    "apiframe": "a lighthouse in fog",
    "thenextleg": "a windmill at dawn",
    "blockade": "a skybox of a desert canyon",
    "neuroflash": "a bowl of cherries",
    "banatie": "a paper boat",
}

SUBMIT_PATHS = ("/apiframe/imagine", "/v2/imagine", "/api/v1/skybox", "/image-generation-tasks",
                "/api/v1/generations")


def _submitted(jobs) -> bool:
    return all(j.submit_state == "sent" or j.status.final for j in jobs)


def _start_frozen(store_home, state_dir):
    """Jobs on every provider, submitted on a frozen sandbox clock, their engine closed."""
    app = create_app(speed=0, state_dir=state_dir)
    app.state.sandbox.providers["banatie"].synchronous = False  # a lifecycle to resume
    first = Engine(Store(store_home), sandbox_app=app, **FAST).start()
    jobs = [first.imagine(prompt, provider=name) for name, prompt in PROMPTS.items()]
    deadline = time.monotonic() + 20
    while not _submitted(jobs) and time.monotonic() < deadline:
        time.sleep(0.01)
    first.close()
    assert _submitted(jobs)
    # neuroflash has no lifecycle to freeze: its submit answers with the images, so its job may
    # finish here if the engine's downloads beat close() (seen under load). The others must not.
    done = [(j.provider, j.kind) for j in jobs
            if j.status is Status.SUCCEEDED and j.provider != "neuroflash"]
    assert not done, f"finished on a frozen clock: {done}"  # nothing left to resume otherwise
    return app, [j.id for j in jobs]


def _bytes(app, url: str, token: str | None = None) -> bytes:
    """``url``'s bytes as ``app`` serves them (only the path is used), with a bearer ``token``."""
    path = httpx.URL(url).raw_path.decode()
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def get() -> bytes:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://sandbox.test") as client:
            response = await client.get(path, headers=headers)
            response.raise_for_status()
            return response.content

    return asyncio.run(get())


def test_every_provider_resumes_on_a_new_app_with_identical_images(tmp_path):
    home, state_dir = tmp_path / "home", tmp_path / "sandbox"
    old_app, ids = _start_frozen(home, state_dir)
    assert (state_dir / FILE_NAME).is_file()

    new_app = create_app(speed=0, state_dir=state_dir)  # the restarted kernel's sandbox
    assert new_app.state.sandbox.tasks.keys() == old_app.state.sandbox.tasks.keys()
    for app in (old_app, new_app):
        app.state.sandbox.clock.advance(3600)
    with Engine(Store(home), sandbox_app=new_app, **FAST) as second:
        jobs = [second.get(job_id) for job_id in ids]
        for job in jobs:
            job.wait(30)
    submits = [p for (m, p) in new_app.state.sandbox.requests if m == "POST"
               and p.endswith(SUBMIT_PATHS)]
    token = next(reversed(new_app.state.sandbox.providers["neuroflash"].tokens))
    for job in jobs:
        assert job.status is Status.SUCCEEDED, (job.provider, job.error)
        assert job.images
        for image in job.images:
            assert Path(image.path).is_file()
            served = _bytes(new_app, image.url, token)
            # the old app reads the new token from the shared directory before it answers
            assert served == _bytes(old_app, image.url, token), job.provider  # as if uninterrupted
    assert submits == []  # nothing was submitted again


def test_children_of_restored_tasks_and_new_ids_after_a_restart(tmp_path):
    state_dir = tmp_path / "sandbox"
    home = tmp_path / "home"
    with Engine(Store(home), sandbox_app=create_app(speed=1000, state_dir=state_dir),
                **FAST) as first:
        parent = first.imagine("a pine forest in snow", provider="blockade").wait(30)
        grid = first.imagine("a harbour", provider="apiframe").wait(30)
    with Engine(Store(home), sandbox_app=create_app(speed=1000, state_dir=state_dir),
                **FAST) as second:
        up = second.get(grid.id).upscale(2).wait(30)  # the parent exists only on disk
        again = second.imagine("another forest", provider="blockade").wait(30)
    assert up.status is Status.SUCCEEDED and len(up.images) == 1
    assert again.remote_id != parent.remote_id  # the id counter was restored too


def test_clock_is_anchored_to_wall_time(tmp_path):
    app = create_app(speed=10, state_dir=tmp_path)
    app.state.sandbox.clock.advance(100)
    _bytes(app, "/healthz")  # any request saves the anchor
    time.sleep(0.3)
    again = create_app(speed=10, state_dir=tmp_path).state.sandbox.clock.now()
    assert again == pytest.approx(100 + 0.3 * 10, abs=1.5)


def test_without_state_dir_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = create_app(speed=10)
    _bytes(app, "/healthz")
    assert app.state.sandbox.clock.now() < 5 and list(tmp_path.iterdir()) == []


def test_an_unusable_directory_runs_in_memory(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SandboxPersistence(blocker / "sandbox")
    assert not store.enabled and "running in memory" in caplog.text
    app = create_app(speed=10, state_dir=blocker / "sandbox")
    assert _bytes(app, "/healthz") == b'{"ok":true}'


def test_records_other_processes_saved_are_added(tmp_path):
    """Two sandboxes on one directory (two kernels on one home) see each other's tasks."""
    one = create_app(speed=1000, state_dir=tmp_path)
    two = create_app(speed=1000, state_dir=tmp_path)
    with Engine(Store(tmp_path / "a"), sandbox_app=one, **FAST) as eng:
        job = eng.imagine("a mill", provider="apiframe").wait(30)
    _bytes(two, "/healthz")
    assert job.remote_id in two.state.sandbox.tasks
    with Engine(Store(tmp_path / "b"), sandbox_app=two, **FAST) as eng:
        eng.imagine("a bridge", provider="apiframe").wait(30)
    _bytes(one, "/healthz")
    assert len(one.state.sandbox.tasks) == len(two.state.sandbox.tasks) == 2
