"""JobView: state mirrored from the job, click messages, full-size requests, threads."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import traitlets
from _widgets_util import image_of, until

import jupyter_imagine as ji
from jupyter_imagine.models import GRID_ACTIONS, VARY_REGION
from jupyter_imagine.widgets import JobView, MaskDrawer, _images

ENGINE_THREAD = "jupyter-imagine-engine"


def click(view: JobView, label: str) -> None:
    """What the comm does with the browser's message for a click on ``label``."""
    view._handle_custom_msg({"type": "act", "label": label}, [])


def children_of(engine, job) -> list[dict]:
    return [r for r in engine.store.records() if r["parent_id"] == job.id]


@pytest.fixture
def done(engine):
    return ji.imagine("a lighthouse at dusk", aspect_ratio="3:2").wait(60)


def test_the_view_follows_the_job_to_its_grid(engine):
    job = ji.imagine("a lighthouse at dusk", aspect_ratio="3:2")
    view = JobView(job)
    pushed: list[tuple[dict, list]] = []
    view.send = lambda content, buffers=None: pushed.append((content, buffers))  # type: ignore
    assert view.job is job and view.box.children == (view,)
    assert (view.provider, view.provider_label, view.sandbox) == ("apiframe", "APIFRAME", True)
    assert view.prompt == "a lighthouse at dusk" and view.job_id == job.id
    job.wait(60)
    until(lambda: view.status == "succeeded" and len(view.images) == 4, what="the grid")
    assert view.progress == 100 and view.actions == list(GRID_ACTIONS)
    assert view.arrangement == "grid" and view.sizes == [[512, 342]] * 4
    assert view.elapsed > 0 and view.error == "" and view.queue_position is None
    for data in view.images:  # thumbnails, never the full image
        thumb = image_of(data)
        assert thumb.format == "JPEG" and max(thumb.size) <= _images.THUMB
    # not in the synced state (a notebook saved with widget state would keep them): a revision
    assert view.images_rev >= 1 and "images" not in view.get_state()
    # sent to the open views as they came, unasked
    assert pushed[-1] == ({"type": "images", "rev": view.images_rev}, view.images)
    assert not any(isinstance(v, bytes) and v for v in view.get_state().values())


def test_the_thumbnails_are_published_after_what_describes_them(engine):
    """Another thread never sees the images without their sizes and arrangement, nor
    "succeeded" without the images (the order the traits are set in)."""
    job = ji.imagine("a lighthouse at dusk", aspect_ratio="3:2")
    view = JobView(job)
    seen: list[tuple[str, Any, int]] = []
    view.observe(lambda change: seen.append((change["name"], change["new"], len(view.images))),
                 names=["arrangement", "sizes", "images_rev", "status"])
    job.wait(60)
    until(lambda: view.status == "succeeded", what="the grid")
    counts = {(name, new if name == "status" else ""): count for name, new, count in seen}
    assert counts[("arrangement", "")] == counts[("sizes", "")] == 0, seen
    assert counts[("images_rev", "")] == counts[("status", "succeeded")] == 4, seen


def test_thumbnails_are_sent_on_request_with_their_revision(done, monkeypatch):
    view = JobView(done)
    sent: list[tuple[dict, list]] = []
    monkeypatch.setattr(view, "send", lambda content, buffers=None: sent.append((content,
                                                                                 buffers)))
    view._handle_custom_msg({"type": "images"}, [])
    until(lambda: sent, what="the reply")
    assert sent == [({"type": "images", "rev": view.images_rev}, view.images)]
    assert view.images_rev == 1 and len(sent[0][1]) == 4
    assert sum(map(len, sent[0][1])) > 10 * len(str(view.get_state()))


def test_a_view_of_a_finished_job_has_its_images_at_once(done):
    view = JobView(done)
    assert view.status == "succeeded" and len(view.images) == 4 and view.arrangement == "grid"


def test_a_click_message_starts_exactly_one_child_job(engine, done):
    view = JobView(done)
    click(view, "U2")
    click(view, "U2")  # a double click, or a message sent twice
    until(lambda: view.children_views, what="the child's view")
    (child,) = view.children_views
    assert child.job.kind == "upscale" and child.job.action == "U2"
    assert view.box.children == (view, child.box) and child.box.children == (child,)
    child.job.wait(60)
    until(lambda: view.action_state.get("U2") == "succeeded" and child.images)
    assert len(children_of(engine, done)) == 1
    assert child.arrangement == "single" and child.sizes == [[1024, 684]]
    assert child.actions and VARY_REGION in child.actions
    click(view, "U2")  # done: the button works again
    until(lambda: len(view.children_views) == 2)
    assert len(children_of(engine, done)) == 2


def test_a_childs_view_is_listed_only_once_it_is_in_the_box(done):
    view = JobView(done)
    listed: list[int] = []
    view.box.observe(lambda _: listed.append(len(view.children_views)), names="children")
    click(view, "U1")
    until(lambda: view.children_views, what="the child's view")
    assert listed == [0] and view.box.children == (view, view.children_views[0].box)


def test_an_action_that_cannot_start_shows_one_line(engine, done):
    view = JobView(done)
    click(view, "Zoom Out 2x")
    until(lambda: view.notice, what="the notice")
    assert view.notice.startswith("Zoom Out 2x: ") and "does not offer" in view.notice
    assert "\n" not in view.notice
    assert children_of(engine, done) == [] and view.children_views == ()


def test_vary_region_opens_the_mask_drawer_beneath(done):
    up = done.upscale(1).wait(60)
    view = JobView(up)
    click(view, VARY_REGION)
    until(lambda: len(view.box.children) == 2, what="the drawer")
    drawer = view.box.children[1]
    assert isinstance(drawer, MaskDrawer) and drawer.job is up
    assert view.action_state == {VARY_REGION: "drawing"}
    click(view, VARY_REGION)  # while it is open, a second click opens nothing more
    drawer._handle_custom_msg({"type": "cancel"}, [])
    until(lambda: view.box.children == (view,), what="the drawer to close")
    assert view.action_state == {}


def test_full_size_images_are_sent_only_on_request(done, monkeypatch):
    view = JobView(done)
    sent: list[tuple[dict, list]] = []
    monkeypatch.setattr(view, "send", lambda content, buffers=None: sent.append((content,
                                                                                 buffers)))
    view._handle_custom_msg({"type": "full", "index": 2}, [])
    until(lambda: sent, what="the reply")
    (content, buffers), = sent
    assert content == {"type": "full", "index": 2}
    assert buffers == [done.images[2].read_bytes()]
    assert image_of(buffers[0]).size == (512, 342)
    view._handle_custom_msg({"type": "full", "index": 9}, [])  # no such image: no reply
    view._handle_custom_msg({"type": "full", "index": "1"}, [])
    view._handle_custom_msg({"type": "nonsense"}, [])
    click(view, "V1")
    until(lambda: view.children_views)
    assert len(sent) == 1


def test_cancel_message(engine):
    job = ji.imagine("a lighthouse sandbox:hang")
    view = JobView(job)
    until(lambda: view.status == "running", what="running")
    view._handle_custom_msg({"type": "cancel"}, [])
    until(lambda: view.status == "cancelled", what="cancelled")
    assert view.actions == []


def test_a_failed_job_shows_the_providers_words(engine):
    job = ji.imagine("a gore scene")
    view = JobView(job)
    until(lambda: view.status == "failed", what="the failure")
    assert view.error_type == "ModeratedPrompt" and "Banned prompt" in view.error
    assert view.images == [] and view.actions == [] and view.images_rev == 0
    sent: list[tuple[dict, list]] = []
    view.send = lambda content, buffers=None: sent.append((content, buffers))  # type: ignore
    view._handle_custom_msg({"type": "images"}, [])  # a view asks on render: no pictures
    until(lambda: sent, what="the reply")
    assert sent == [({"type": "images", "rev": 0}, [])]


def test_the_providers_preview_shows_while_running(engine, done):
    job = ji.imagine("a lighthouse sandbox:hang")
    view = JobView(job)
    until(lambda: job.status.value == "running")
    # a provider that sends previews: the update carries a URL the provider can download
    engine.defer(engine._change, job, preview_url=done.images[0].url).result(5)
    until(lambda: view.preview, what="the preview")
    assert image_of(view.preview).format == "JPEG"
    assert max(image_of(view.preview).size) <= _images.THUMB
    job.cancel()
    until(lambda: view.status == "cancelled" and view.preview == b"", what="preview cleared")


def test_only_the_engine_thread_writes_traits_after_construction(engine, done):
    view = JobView(done)
    writers: list[str] = []
    view.observe(lambda change: writers.append(threading.current_thread().name),
                 names=traitlets.All)
    lineage: list[str] = []
    view.on_lineage_change = lambda: lineage.append(threading.current_thread().name)
    click(view, "U3")
    until(lambda: view.children_views and view.children_views[0].images, what="the child")
    until(lambda: lineage)
    assert writers and set(writers) == {ENGINE_THREAD}
    assert set(lineage) == {ENGINE_THREAD}


def test_lineage_lists_the_views_depth_first(done):
    view = JobView(done)
    click(view, "U1")
    until(lambda: view.children_views and view.children_views[0].actions, what="the upscale")
    assert [(d, v.kind) for d, v in view.lineage()] == [(0, "imagine"), (1, "upscale")]
    view.close()


def test_the_view_shows_the_expected_then_the_recorded_cost(engine):
    job = ji.imagine("a harbour")
    view = JobView(job)
    assert view.cost in ("≈ 4 credits", "4 credits")  # it may be done already
    job.wait(60)
    until(lambda: view.cost == "4 credits", what="the recorded cost")
    refused = ji.imagine("a pier", budget=1)  # over its budget: never sent, costs nothing
    refused.future.result(10)
    assert refused.error_type == "BudgetExceeded" and JobView(refused).cost == ""
