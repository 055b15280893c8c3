"""Displaying a job: the widget view plus a static PNG fallback kept current."""

from __future__ import annotations

import base64
import json
import os
import threading
import warnings
from pathlib import Path

import pytest
from _widgets_util import image_of, until

import jupyter_imagine as ji
from jupyter_imagine import _display
from jupyter_imagine.imaging import read_image_text
from jupyter_imagine.models import Job
from jupyter_imagine.widgets import JobView, _fallback_picture

WIDGET = "application/vnd.jupyter.widget-view+json"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def kernel(monkeypatch):
    """Pretend to be in a kernel; record display()/update_display() calls and their thread."""
    import IPython.display

    calls: list[dict] = []

    def record(kind):
        def call(obj, *, raw=False, display_id=None, **_):
            calls.append({"kind": kind, "data": obj, "raw": raw, "id": display_id,
                          "thread": threading.current_thread().name})
        return call

    monkeypatch.setattr(_display, "in_kernel", lambda: True)
    monkeypatch.setattr(IPython.display, "display", record("display"))
    monkeypatch.setattr(IPython.display, "update_display", record("update"))
    return calls


def lineage(call: dict) -> list[tuple[str, str, int]]:
    png = base64.b64decode(call["data"]["image/jpeg"])
    rows = json.loads(read_image_text(png)["jupyter_imagine.lineage"])
    return [(r["kind"], r["status"], r["images"]) for r in rows]


def test_the_package_installs_the_display_hook():
    assert Job._display_hook is not None
    assert Job._display_hook.__module__ == "jupyter_imagine"


def test_outside_a_kernel_a_job_shows_its_static_form(engine):
    job = ji.imagine("a lighthouse").wait(60)
    bundle = job._repr_mimebundle_()
    assert WIDGET not in bundle and "succeeded" in bundle["text/plain"]
    assert image_of(bundle["image/png"]).format == "PNG"


def test_in_a_kernel_the_fallback_comes_first_then_the_live_view(engine, kernel):
    job = ji.imagine("a lighthouse at dusk", aspect_ratio="3:2")
    bundle = job._repr_mimebundle_()
    shown = kernel[0]
    assert shown["kind"] == "display" and shown["raw"] and shown["id"]
    assert all(c["kind"] == "update" for c in kernel[1:])
    assert set(shown["data"]) == {"image/jpeg", "text/plain"}
    png = base64.b64decode(shown["data"]["image/jpeg"])
    assert read_image_text(png)["jupyter_imagine.view"] == shown["id"]
    assert set(bundle) == {WIDGET, "text/plain"}  # no picture in the widget's own bundle
    assert "live view" in bundle["text/plain"]
    from ipywidgets import Widget

    with warnings.catch_warnings():  # Widget.widgets is deprecated, and the only registry
        warnings.simplefilter("ignore", DeprecationWarning)
        box = Widget.widgets[bundle[WIDGET]["model_id"]]
    view = box.children[0]
    assert isinstance(view, JobView) and view.job is job and view.fallback_key == shown["id"]

    # the job finishes, a click adds a child: the same output is updated, from the engine
    def mine() -> list[dict]:
        return [c for c in kernel if c["kind"] == "update" and c["id"] == shown["id"]]

    job.wait(60)
    until(lambda: any(lineage(c) == [("imagine", "succeeded", 4)] for c in mine()),
          what="the finished grid in the fallback")
    view._handle_custom_msg({"type": "act", "label": "U2"}, [])
    final = [("imagine", "succeeded", 4), ("upscale", "succeeded", 1)]
    until(lambda: lineage(mine()[-1]) == final, what="the child in the fallback")
    assert {c["thread"] for c in mine()} == {"jupyter-imagine-engine"}
    picture = base64.b64decode(mine()[-1]["data"]["image/jpeg"])
    assert image_of(picture).width == _fallback_picture.WIDTH
    assert "succeeded" in mine()[-1]["data"]["text/plain"]


def test_a_failed_job_and_its_fallback(engine, kernel):
    job = ji.imagine("a gore scene")
    job._repr_mimebundle_()
    key = next(c["id"] for c in kernel if c["kind"] == "display")
    mine = lambda: [c for c in kernel if c["id"] == key]  # noqa: E731
    until(lambda: job.status.value == "failed")
    until(lambda: lineage(mine()[-1]) == [("imagine", "failed", 0)], what="the failed fallback")
    assert "Banned prompt" in mine()[-1]["data"]["text/plain"]


def test_displaying_a_view_or_a_gallery_also_leaves_a_picture(engine, kernel):
    job = ji.imagine("a lighthouse").wait(60)
    view = JobView(job)
    bundle = view._repr_mimebundle_()
    assert WIDGET in bundle and kernel[-1]["kind"] == "display"
    until(lambda: view.fallback_key == kernel[-1]["id"], what="the key")
    g = ji.gallery()
    bundle = g._repr_mimebundle_()
    assert WIDGET in bundle and kernel[-1]["kind"] == "display"
    sheet = base64.b64decode(kernel[-1]["data"]["image/jpeg"])
    assert read_image_text(sheet)["jupyter_imagine.view"] == kernel[-1]["id"]
    until(lambda: g.fallback_key == kernel[-1]["id"])


def test_a_broken_widget_never_breaks_displaying_a_job(engine, kernel, monkeypatch):
    from jupyter_imagine.widgets import _job_view

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(_job_view.JobView, "__init__", broken)
    bundle = ji.imagine("a lighthouse")._repr_mimebundle_()
    assert WIDGET not in bundle and "text/plain" in bundle


@pytest.mark.slow
def test_the_quickstart_runs_headless_and_every_job_output_keeps_a_picture(tmp_path, monkeypatch):
    """nbclient runs notebooks/quickstart.ipynb in a real kernel (this checkout), top to bottom;
    the fallbacks end up final, updated from the engine thread after their cells ended."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [
        str(REPO), os.environ.get("PYTHONPATH", "")])))
    nb = nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = 0
    for cell in nb.cells:
        outputs = cell.get("outputs", [])
        if any(WIDGET in o.get("data", {}) for o in outputs):
            fallback = outputs[-2]
            assert fallback["output_type"] == "display_data"
            chunks = read_image_text(base64.b64decode(fallback["data"]["image/jpeg"]))
            assert chunks["jupyter_imagine.view"]
            if "gallery" not in "".join(cell.source):
                rows = json.loads(chunks["jupyter_imagine.lineage"])
                assert [r["status"] for r in rows] == ["succeeded"], cell.source
            shown += 1
    assert shown == 6  # job (once: `await job;` shows nothing), up, var, reroll, region, gallery
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert "succeeded" in text and "outside 0 px" in text, text
