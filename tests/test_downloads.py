"""Images into the cache, and retrying the missing ones (``jupyter_imagine._downloads`` and the
engine's background retries)."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest
from _widgets_util import until

from jupyter_imagine._downloads import expired, fetch_many, missing_note, retry_delay
from jupyter_imagine.engine import Engine
from jupyter_imagine.errors import NotFound, PermissionDenied, ProviderError, ServiceUnavailable
from jupyter_imagine.models import Image, Job, Status
from jupyter_imagine.sandbox import create_app
from jupyter_imagine.store import Store

FAST = {"sandbox_speed": 1000.0, "backoff_base": 0.01, "backoff_cap": 0.02, "retry_for": 0.05}
CDN = "/apiframe/cdn/*"




# ------------------------------------------------------------------ the rules
def test_403_404_410_mean_expired_anything_else_retrying():
    assert expired(PermissionDenied("403")) and expired(NotFound("404"))
    assert expired(ProviderError("gone", status_code=410))
    assert not expired(ServiceUnavailable("503", status_code=503))
    assert missing_note(NotFound("cdn answered 404")) == "expired: cdn answered 404"
    assert missing_note(ServiceUnavailable("x")) == "download failed: x, retrying"


def test_retry_delay_is_capped_exponential_with_jitter():
    rng = random.Random(11)
    for attempt in range(40):
        ceiling = min(9.0, 1.0 * 2**attempt)
        draws = [retry_delay(attempt, 1.0, 10.0, rng) for _ in range(50)]
        assert all(1.0 <= d <= 1.0 + ceiling for d in draws)
    assert max(retry_delay(30, 1.0, 10.0, rng) for _ in range(50)) > 9.0


def test_fetch_marks_a_failed_image_missing_and_clears_it_once_fetched(tmp_path):
    image = Image(url="https://cdn/x.png", role="image", index=1)

    async def broken(url: str) -> bytes:
        raise ServiceUnavailable("cdn answered 502")

    async def gone(url: str) -> bytes:
        raise NotFound("cdn answered 404")

    from PIL import Image as PILImage

    from jupyter_imagine.imaging import to_png

    async def fine(url: str) -> bytes:
        return to_png(PILImage.new("RGB", (8, 6)))

    def put(data: bytes) -> Path:
        path = tmp_path / "x.png"
        path.write_bytes(data)
        return path

    (missing,) = asyncio.run(fetch_many([image], broken, put))
    assert missing.path is None and missing.retrying
    assert missing.missing == "download failed: cdn answered 502, retrying"
    assert asyncio.run(fetch_many([image], gone, put))[0].missing == "expired: cdn answered 404"
    (got,) = asyncio.run(fetch_many([missing], fine, put))
    assert got.missing is None and got.path == str(tmp_path / "x.png")
    assert (got.width, got.height, got.index) == (8, 6, 1)


# ------------------------------------------------------------------ over the engine
def test_a_failed_download_is_retried_in_the_background_and_the_job_stays_succeeded(tmp_path):
    app = create_app(speed=1000.0)
    state = app.state.sandbox
    state.faults.add(CDN, status=503, count=60)
    with Engine(Store(tmp_path), sandbox_app=app, **FAST) as eng:
        job = eng.imagine("a lighthouse", provider="apiframe").wait(30)
        assert job.status is Status.SUCCEEDED
        until(lambda: job.missing_images == 0, 20)
        assert all(i.path and Path(i.path).is_file() for i in job.images)
        record = eng.store.get(job.id)
        assert record["status"] == "succeeded" and record["missing_images"] == 0
        assert all(i["missing"] is None for i in record["images"])
        assert job.error is None
    assert not state.faults.pending()


def test_an_expired_image_is_said_so_and_not_retried(tmp_path):
    app = create_app(speed=1000.0)
    state = app.state.sandbox
    state.faults.add(CDN + "/2.png", status=404, count=1000)
    with Engine(Store(tmp_path), sandbox_app=app, **FAST) as eng:
        job = eng.imagine("a lighthouse", provider="apiframe").wait(30)
        assert job.status is Status.SUCCEEDED and job.missing_images == 1
        second = job.images[1]
        assert second.path is None and second.missing.startswith("expired: ")
        time.sleep(0.3)
        hits = sum(n for (m, p), n in state.requests.items() if p.endswith("/2.png"))
        assert hits == 1  # a 404 is not retried
        record = eng.store.get(job.id)
        assert record["missing_images"] == 1 and record["images"][1]["missing"].startswith("exp")
        assert "could not be downloaded: expired" in job.error
        frame = eng.store.frame()
        assert frame["missing_images"].tolist() == [1] and frame["status"].tolist() == ["succeeded"]


def test_missing_images_are_fetched_after_a_restart(tmp_path):
    app = create_app(speed=1000.0)
    state = app.state.sandbox
    state.faults.add(CDN, status=503, count=100_000)
    slow = {**FAST, "backoff_base": 30.0}  # no background round within this session
    with Engine(Store(tmp_path), sandbox_app=app, **slow) as eng:
        job = eng.imagine("a lighthouse", provider="apiframe").wait(30)
        assert job.missing_images == 5  # four images and the grid
        assert "download failed" in eng.store.get(job.id)["images"][0]["missing"]
    state.faults.clear()
    with Engine(Store(tmp_path), sandbox_app=app, **FAST) as eng:
        again = eng.get(job.id)
        until(lambda: again.missing_images == 0, 20)
        assert eng.store.get(job.id)["missing_images"] == 0
        assert again.grid is not None and Path(again.grid.path).is_file()


def test_image_open_fetches_a_missing_image_now(tmp_path):
    app = create_app(speed=1000.0)
    state = app.state.sandbox
    state.faults.add(CDN, status=503, count=100_000)
    slow = {**FAST, "backoff_base": 30.0}
    with Engine(Store(tmp_path), sandbox_app=app, **slow) as eng:
        job = eng.imagine("a lighthouse", provider="apiframe").wait(30)
        image = job.images[0]
        assert image.path is None and image.retrying
        state.faults.clear()
        with image.open() as pil:  # fetched on demand, not in 30 s
            assert pil.size[0] > 0
        assert job.images[0].path and job.missing_images == 0


def test_reading_path_of_a_missing_image_retries_it_in_the_background(tmp_path, live_sandbox,
                                                                     monkeypatch):
    monkeypatch.setenv("JUPYTER_IMAGINE_SANDBOX_URL", live_sandbox.url)
    state = live_sandbox.state
    state.faults.add(CDN, status=502, count=100_000)
    slow = {**FAST, "backoff_base": 30.0}
    with Engine(Store(tmp_path), **slow) as eng:
        job = eng.imagine("a lighthouse", provider="apiframe").wait(30)
        assert job.missing_images == 5
        until(lambda: job.id in eng._refetching and eng._refetching[job.id] is not None, 20)
        state.faults.clear()
        assert job.images[2].path is None  # the current value; the retry starts now
        until(lambda: job.missing_images == 0, 10)
        assert all(Path(i.path).is_file() for i in job.images)


def test_job_record_counts_missing_images():
    job = Job(provider="apiframe", kind="imagine", prompt="p", status=Status.SUCCEEDED,
              images=[Image(url="u1", missing="download failed: x, retrying"),
                      Image(url="u2", path="/p")],
              grid=Image(url="g", missing="expired: 404", role="grid"))
    record = job.to_record()
    assert record["missing_images"] == 2
    assert Job.from_record(record).images[0].missing == "download failed: x, retrying"
    with pytest.raises(Exception, match="not downloaded .download failed"):
        job.images[0].read_bytes()


def test_fetch_many_keeps_the_order_and_stores_every_fetched_image_in_one_hand_off(tmp_path):
    from PIL import Image as PILImage

    from jupyter_imagine.imaging import to_png

    images = [Image(url=f"https://cdn/{n}.png", role="image", index=n) for n in range(4)]
    images.append(Image(url=None, role="image", index=4))  # nothing to download: as is
    stored: list[tuple[int, bytes]] = []

    async def download(url: str) -> bytes:
        n = int(url.rsplit("/", 1)[1].split(".")[0])
        if n == 2:
            raise ServiceUnavailable("cdn answered 502")
        await asyncio.sleep(0.01 * (3 - n))  # finish in reverse order
        return to_png(PILImage.new("RGB", (8 + n, 6)))

    def put(data: bytes) -> Path:
        import threading

        stored.append((threading.get_ident(), data))
        path = tmp_path / f"{len(stored)}.png"
        path.write_bytes(data)
        return path

    got = asyncio.run(fetch_many(images, download, put))
    assert [i.index for i in got] == [0, 1, 2, 3, 4]
    assert [i.width for i in got[:4]] == [8, 9, None, 11]
    assert got[2].path is None and got[2].missing == "download failed: cdn answered 502, retrying"
    kept = [got[0], got[1], got[3]]
    assert [Path(i.path).read_bytes() for i in kept] == [data for _, data in stored]
    assert got[4] == images[4]
    assert len({thread for thread, _ in stored}) == 1  # one call off the loop for all of them
