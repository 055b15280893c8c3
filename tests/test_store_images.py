"""Tests of jupyter_imagine.store._images: the image cache on a local folder and on a shared
fsspec store (fsspec's real local file system on a temporary "shared" folder), read by several
"machines" (stores with different homes)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from PIL import Image as PILImage

from jupyter_imagine.engine import Engine
from jupyter_imagine.errors import ConfigurationError
from jupyter_imagine.models import Image, Job, Status
from jupyter_imagine.store import Store, open_store
from jupyter_imagine.store._images import ImageCache, address_of

FAST = {"sandbox_speed": 1000.0, "backoff_base": 0.01, "backoff_cap": 0.2}

LOGGER = "jupyter_imagine.store._images"


def png_bytes(color=(200, 30, 30), size=(8, 6)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(params=["file-url", "plain-path"])
def shared(request, tmp_path) -> tuple[str, Path]:
    """The shared store as ``JUPYTER_IMAGINE_IMAGES`` would give it, and its folder."""
    folder = tmp_path / "shared"
    url = folder.as_uri() if request.param == "file-url" else str(folder)
    return url, folder


@pytest.fixture(params=["sqlite", "postgresql"])
def two_machines(request, tmp_path, shared):
    """Two stores with different homes (two machines) and one shared image store: on
    PostgreSQL one team history; on SQLite machine B's history is a copy of A's records (what a
    migration or a copied file gives). Yields ``(a, b, copy)``: ``copy(job_id)`` makes A's row
    visible to B."""
    url, _ = shared
    if request.param == "sqlite":
        a, b = Store(tmp_path / "a", images=url), Store(tmp_path / "b", images=url)

        def copy(job_id: str) -> None:
            b.save(next(r for r in a.records() if r["id"] == job_id))
    else:
        pg = request.getfixturevalue("pg_url")
        a = open_store(pg, home=tmp_path / "a", images=url)
        b = open_store(pg, home=tmp_path / "b", images=url)

        def copy(job_id: str) -> None:
            pass
    with a, b:
        yield a, b, copy


def elsewhere(store) -> None:
    """Make ``store``'s local image files unreachable, as on another machine (both "machines"
    of a test share one file system)."""
    shutil.rmtree(store.images_dir)


def shared_file(folder: Path, local: Path) -> Path:
    return folder / address_of(local)


def job_with(path: Path | None, url: str = "https://cdn.example/x.png", **kw) -> Job:
    image = Image(url=url, path=str(path) if path else None, width=8, height=6, index=1)
    return Job(provider="apiframe", kind="imagine", prompt="a lighthouse", status=Status.SUCCEEDED,
               images=[image], **kw)


# --------------------------------------------------------------------------- two machines
def test_one_machine_downloads_the_other_reads_through(two_machines, shared):
    a, b, copy = two_machines
    _, folder = shared
    path = a.put_image(png_bytes(), text={"prompt": "a lighthouse"})
    assert path.parent.parent == a.images_dir
    on_shared = shared_file(folder, path)
    content = path.read_bytes()
    assert on_shared.read_bytes() == content  # the same file, text chunks and all
    job = job_with(path)
    a.save(job.to_record())
    copy(job.id)
    elsewhere(a)

    got = Path(b.get(job.id)["images"][0]["path"])
    assert got.parent.parent == b.images_dir and got.name == path.name
    assert got.read_bytes() == content
    assert Job.from_record(b.current(job.id)).images[0].path == str(got)

    shutil.rmtree(folder)  # B's next reads are local: they never need the shared store again
    assert b.get(job.id)["images"][0]["path"] == str(got)
    assert b.find_remote("apiframe", "nope") is None
    assert [r["images"][0]["path"] for r in b.missing_images()] == []
    assert b.last()["images"][0]["path"] == str(got)


def test_a_mask_in_the_params_is_read_through_too(two_machines):
    a, b, copy = two_machines
    mask = a.put_file(png_bytes(color=(255, 255, 255)), ext="png")
    content = mask.read_bytes()
    job = Job(provider="apiframe", kind="vary_region", prompt="a red cabin",
              params={"mask_path": str(mask), "index": 1})
    a.save(job.to_record())
    copy(job.id)
    elsewhere(a)
    got = Path(b.claim("engine-b", 30, time.time())[0]["params"]["mask_path"])
    assert got.parent.parent == b.images_dir and got.read_bytes() == content


def test_a_path_found_nowhere_counts_as_missing_and_its_url_is_tried_again(two_machines):
    a, b, copy = two_machines
    elsewhere = Path("/elsewhere/images/ab") / ("c" * 62 + ".png")  # never uploaded
    job = job_with(elsewhere)
    a.save(job.to_record())
    copy(job.id)
    image = Job.from_record(b.get(job.id)).images[0]
    assert image.path is None and image.retrying and "shared store" in image.missing
    no_url = job_with(elsewhere, url=None, id="job-without-url")
    a.save(no_url.to_record())
    copy(no_url.id)
    stale = Job.from_record(b.get(no_url.id)).images[0]
    assert stale.path is None and stale.missing.startswith("expired") and not stale.retrying


def test_the_frame_shows_this_machines_paths_without_fetching(two_machines, shared):
    a, b, copy = two_machines
    _, folder = shared
    path = a.put_image(png_bytes(color=(1, 2, 3)))
    job = job_with(path)
    a.save(job.to_record())
    copy(job.id)
    own = job_with(b.put_image(png_bytes(color=(4, 5, 6))), id="bs-own-job")
    b.save(own.to_record())
    elsewhere(a)
    frame = b.frame(keys_as_columns=True).set_index("id")
    assert frame.loc[job.id, "image_paths"] == [str(b.images_dir / address_of(path))]
    assert frame.loc[own.id, "image_paths"] == [own.images[0].path]
    assert not (b.images_dir / address_of(path)).exists()  # mapped, not fetched
    assert b.frame(limit=1, include_raw=True)["image_paths"].iloc[0] == [own.images[0].path]
    assert a.frame().loc[("apiframe", job.id), "image_paths"] == [str(path)]
    assert shared_file(folder, path).exists()


def test_without_a_shared_store_paths_are_kept_and_nothing_is_shared(tmp_path):
    with Store(tmp_path / "home") as store:
        assert store.image_cache.shared is None
        path = store.put_image(png_bytes())
        gone = tmp_path / "old-home" / "images" / "ab" / ("d" * 62 + ".png")
        job = job_with(gone)
        store.save(job.to_record())
        assert store.get(job.id)["images"][0]["path"] == str(gone)  # unchanged behaviour
        moved = job_with(tmp_path / "old-home" / "images" / address_of(path), id="moved")
        store.save(moved.to_record())
        assert store.get("moved")["images"][0]["path"] == str(path)  # same content, found here
        frame = store.frame(keys_as_columns=True).set_index("id")
        assert frame.loc["moved", "image_paths"] == [moved.images[0].path]  # shown as stored
    assert not (tmp_path / "shared").exists()


def test_the_environment_variable_selects_the_shared_store(tmp_path, monkeypatch, shared):
    url, folder = shared
    monkeypatch.setenv("JUPYTER_IMAGINE_IMAGES", url)
    with Store(tmp_path / "home") as store:
        path = store.put_image(png_bytes())
    assert shared_file(folder, path).read_bytes() == path.read_bytes()


# --------------------------------------------------------------------------- concurrency
def test_concurrent_writers_in_threads_leave_one_intact_file(tmp_path, shared):
    url, folder = shared
    data = png_bytes(size=(300, 200)) + bytes(range(256)) * 4000  # ~1 MB: writes overlap
    caches = [ImageCache(tmp_path / f"machine-{i}", url) for i in range(8)]
    start = threading.Barrier(len(caches))
    paths: list[Path] = []

    def put(cache: ImageCache) -> None:
        start.wait()
        paths.append(cache.put(data, "png"))

    threads = [threading.Thread(target=put, args=(c,)) for c in caches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(paths) == 8 and {p.name for p in paths} == {paths[0].name}
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert files == [shared_file(folder, paths[0])]  # no temporary file left behind
    assert files[0].read_bytes() == data


def test_concurrent_writers_in_processes_leave_one_intact_file(tmp_path):
    folder = tmp_path / "shared"
    url = folder.as_uri()
    data_file = tmp_path / "data.bin"
    data_file.write_bytes(png_bytes(size=(400, 300)) + bytes(range(256)) * 8000)
    at = time.time() + 3.0
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from jupyter_imagine.store._images import ImageCache
        cache = ImageCache(Path(sys.argv[1]), {url!r})
        data = Path({str(data_file)!r}).read_bytes()
        while time.time() < {at!r}:
            time.sleep(0.001)
        print(cache.put(data, "png").name)
    """)
    root = str(Path(__file__).resolve().parents[1])
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"machine-{i}")],
                         stdout=subprocess.PIPE, text=True, cwd=root,
                         env={**_env(), "PYTHONPATH": root})
        for i in range(4)
    ]
    names = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs) and len(names) == 1
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].name == names.pop()
    assert files[0].read_bytes() == data_file.read_bytes()


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


# --------------------------------------------------------------------------- failures
@pytest.fixture
def unwritable(tmp_path) -> str:
    """A shared store that cannot be reached: its folder would be below a regular file (this
    fails for root too, unlike a read-only mode)."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    return (blocker / "shared").as_uri()


def test_an_unwritable_shared_store_keeps_the_local_copy_and_warns_once(
    tmp_path, unwritable, caplog
):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with Store(tmp_path / "home", images=unwritable) as store:
        first = store.put_image(png_bytes(color=(1, 1, 1)))
        second = store.put_image(png_bytes(color=(2, 2, 2)))
        assert first.is_file() and second.is_file()
        job = job_with(first)
        store.save(job.to_record())
        assert store.get(job.id)["images"][0]["path"] == str(first)  # local read still works
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    assert "could not write image" in warnings[0].getMessage()
    assert "kept it in" in warnings[0].getMessage()


def test_an_unreachable_shared_store_on_read_makes_the_image_missing(tmp_path, caplog):
    shared = tmp_path / "shared"
    with Store(tmp_path / "a", images=str(shared)) as a:
        path = a.put_image(png_bytes())
        job = job_with(path)
        a.save(job.to_record())
        record = a.records()[0]
        elsewhere(a)
    shutil.move(shared, tmp_path / "moved")
    (tmp_path / "shared").write_text("the mount is gone")  # reading below it fails
    caplog.set_level(logging.INFO, logger=LOGGER)
    with Store(tmp_path / "b", images=str(shared)) as b:
        b.save(record)
        image = Job.from_record(b.get(job.id)).images[0]
        assert image.path is None and image.retrying
        assert Job.from_record(b.get(job.id)).images[0].path is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "counts as missing" in warnings[0].getMessage()


def test_a_password_in_the_url_is_never_shown(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    url = "ftp://team:pa55-w0rd-x@127.0.0.1:9/imagine"  # port 9 (discard): refused at once
    cache = ImageCache(tmp_path / "home", url)
    assert "pa55" not in repr(cache) and cache.shared == "ftp://127.0.0.1:9/imagine"
    assert cache.put(png_bytes(), "png").is_file()
    assert "could not write image" in caplog.text and "pa55" not in caplog.text


def test_an_engine_job_succeeds_with_an_unwritable_shared_store(tmp_path, unwritable, caplog):

    caplog.set_level(logging.WARNING, logger=LOGGER)
    with Engine(Store(tmp_path / "home", images=unwritable), **FAST) as engine:
        job = engine.imagine("a lighthouse at dusk", provider="apiframe").wait(30)
        assert job.status is Status.SUCCEEDED and job.images
        assert all(Path(i.path).is_file() for i in job.images)
    assert "could not write image" in caplog.text


def test_two_engines_on_two_machines_share_one_history_and_its_images(
    tmp_path, pg_url, live_sandbox, monkeypatch
):

    monkeypatch.setenv("JUPYTER_IMAGINE_SANDBOX_URL", live_sandbox.url)  # one served sandbox
    shared = tmp_path / "shared"
    a = Engine(open_store(pg_url, home=tmp_path / "a", images=shared.as_uri()), **FAST)
    b = Engine(open_store(pg_url, home=tmp_path / "b", images=shared.as_uri()), **FAST)
    with a, b:
        made = a.imagine("a harbour at dawn", provider="apiframe").wait(30)
        contents = [Path(i.path).read_bytes() for i in made.images]
        elsewhere(a.store)
        seen = b.get(made.id)
        assert seen.status is Status.SUCCEEDED and seen.images
        for content, theirs in zip(contents, seen.images, strict=True):
            assert Path(theirs.path).parent.parent == b.store.images_dir
            assert Path(theirs.path).read_bytes() == content
    names = {p.name for p in shared.rglob("*") if p.is_file()}
    everything = made.images + ([made.grid] if made.grid else [])
    assert names == {Path(i.path).name for i in everything if i.path}


# --------------------------------------------------------------------------- configuration
def test_missing_fsspec_is_one_line_naming_the_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)  # import fsspec → ImportError
    with pytest.raises(ConfigurationError) as caught:
        Store(tmp_path / "home", images="s3://bucket/team")
    message = str(caught.value)
    assert "\n" not in message and "needs fsspec" in message
    assert "pip install 'jupyter_imagine[shared-images]'" in message
    with Store(tmp_path / "home") as store:  # local only needs no fsspec
        assert store.put_image(png_bytes()).is_file()


def test_a_missing_backend_is_one_line_naming_its_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)
    with pytest.raises(ConfigurationError, match=r"backend for s3://: pip install s3fs$"):
        ImageCache(tmp_path, "s3://bucket/team")
    monkeypatch.setitem(sys.modules, "gcsfs", None)
    with pytest.raises(ConfigurationError, match=r"pip install gcsfs$"):
        ImageCache(tmp_path, "gcs://bucket/team")
    with pytest.raises(ConfigurationError, match="knows no protocol 'nosuch'"):
        ImageCache(tmp_path, "nosuch://bucket/team")


def test_address_of():
    name = "e" * 62 + ".png"
    assert address_of(f"/home/x/images/ab/{name}") == f"ab/{name}"
    assert address_of(f"C:\\Users\\x\\images\\ab\\{name}") == f"ab/{name}"
    assert address_of("/tmp/picture.png") is None
    assert address_of(f"/x/AB/{name}") is None


def test_put_writes_the_same_address_as_before(tmp_path):
    data = png_bytes()
    digest = hashlib.sha256(data).hexdigest()
    cache = ImageCache(tmp_path)
    assert cache.put(data) == tmp_path / digest[:2] / f"{digest[2:]}.png"
    assert cache.local(str(tmp_path / "nowhere.png")) is None and cache.local(None) is None


def test_here_json_maps_every_other_folder_and_leaves_the_rest(tmp_path):
    cache = ImageCache(tmp_path / "images")
    names = ["a" * 64 + ".png", "b" * 64 + ".jpg", "c" * 64 + ".webp"]
    mine = [f"{tmp_path}/images/{n[:2]}/{n[2:]}" for n in names]
    stored = [
        [f"/home/ann/ji/images/{names[0][:2]}/{names[0][2:]}", mine[1]],
        [f"/srv/bob/images/{names[1][:2]}/{names[1][2:]}"],
        [f"/{names[2][:2]}/{names[2][2:]}", "/tmp/my picture.png", 'C:/odd "quoted".png'],
        [f"/home/ann/ji/images/{names[2][:2]}/{names[2][2:]}"],
        [],
    ]
    text = ",".join(json.dumps(p, separators=(",", ":")) for p in stored)
    mapped = json.loads("[" + cache.here_json(text) + "]")
    assert mapped == [
        [mine[0], mine[1]],
        [mine[1]],
        [f"/{names[2][:2]}/{names[2][2:]}", "/tmp/my picture.png", 'C:/odd "quoted".png'],
        [mine[2]],
        [],
    ]
    local_only = json.dumps([mine[0]])
    assert cache.here_json(local_only) == local_only


def test_an_image_found_nowhere_is_downloaded_again_by_the_reader(
    tmp_path, pg_url, live_sandbox, monkeypatch
):

    monkeypatch.setenv("JUPYTER_IMAGINE_SANDBOX_URL", live_sandbox.url)
    shared = tmp_path / "shared"
    a = Engine(open_store(pg_url, home=tmp_path / "a", images=str(shared)), **FAST)
    b = Engine(open_store(pg_url, home=tmp_path / "b", images=str(shared)), **FAST)
    with a, b:
        made = a.imagine("a harbour at dawn", provider="apiframe").wait(30)
        elsewhere(a.store)
        shutil.rmtree(shared)  # lost everywhere: only the provider's URLs are left
        seen = b.get(made.id)
        assert seen.images and all(i.path is None and i.retrying for i in seen.images)
        deadline = time.monotonic() + 30
        while any(i.path is None for i in seen.images) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(Path(i.path).parent.parent == b.store.images_dir for i in seen.images)
        assert seen.status is Status.SUCCEEDED and seen.missing_images == 0
    assert {p.name for p in shared.rglob("*.png")} >= {Path(i.path).name for i in seen.images}


def test_an_object_store_gets_one_put_and_reads_through(tmp_path):
    import fsspec

    url = f"memory://ji-test-{tmp_path.name}"  # fsspec's in-memory object store (no rename)
    a, b = ImageCache(tmp_path / "a", url), ImageCache(tmp_path / "b", url)
    path = a.put(png_bytes(), "png", {"prompt": "a lighthouse"})
    memory = fsspec.filesystem("memory")
    stored = memory.find(url)
    assert len(stored) == 1 and stored[0].endswith(address_of(path))  # no temporary object
    got = b.local(str(path).replace(str(tmp_path / "a"), "/another/machine"))
    assert got == tmp_path / "b" / address_of(path) and got.read_bytes() == path.read_bytes()
    memory.rm(url, recursive=True)
    shutil.rmtree(tmp_path / "a")
    assert b.local(str(path)) == got  # B keeps its copy
    assert ImageCache(tmp_path / "c", url).local(str(path)) is None  # gone everywhere else
