"""MaskDrawer: its state, the submit message (size check, one child, closing into its view)."""

from __future__ import annotations

import numpy as np
import pytest
from _widgets_util import image_of, png_mask, until

import jupyter_imagine as ji
from jupyter_imagine.models import VARY_REGION
from jupyter_imagine.widgets import JobView, MaskDrawer
from jupyter_imagine.widgets._mask_drawer import DISPLAY


@pytest.fixture
def up(engine):
    """A finished upscale (1024×684): what Vary (Region) works on."""
    return ji.imagine("a lighthouse at dusk", aspect_ratio="3:2").wait(60).upscale(2).wait(60)


def submit(drawer: MaskDrawer, mask: bytes, prompt: str = "northern lights") -> None:
    """What the comm does with the drawer's Submit message (the PNG travels as a buffer)."""
    drawer._handle_custom_msg({"type": "submit", "prompt": prompt}, [memoryview(mask)])


def vary_regions(engine) -> list[dict]:
    return [r for r in engine.store.records() if r["kind"] == "vary_region"]


def test_the_drawer_paints_at_the_images_own_size(up):
    drawer = MaskDrawer(up)
    assert (drawer.width, drawer.height) == (1024, 684)
    assert drawer.prompt == up.prompt and drawer.title == VARY_REGION
    assert drawer.status == "drawing" and drawer.error == ""
    shown = image_of(drawer.image)
    assert max(shown.size) == DISPLAY and shown.format == "JPEG"  # a display copy, not the file
    assert MaskDrawer(up, prompt="northern lights").prompt == "northern lights"


def test_a_mask_of_the_wrong_size_is_refused_with_a_message(engine, up):
    drawer = MaskDrawer(up)
    submit(drawer, png_mask(10, 10, (2, 2, 5, 5)))
    until(lambda: drawer.error, what="the refusal")
    assert drawer.error == ("mask is 10×10 but the image is 1024×684; draw the mask at the "
                            "image's size")
    assert drawer.status == "drawing" and drawer.child is None
    assert vary_regions(engine) == []
    submit(drawer, png_mask(1024, 684))  # all black
    until(lambda: "empty" in drawer.error, what="the second refusal")
    submit(drawer, b"not a png")
    until(lambda: "mask data" in drawer.error or "image" in drawer.error)
    assert vary_regions(engine) == []


def test_submit_starts_the_child_and_the_drawer_closes_into_its_view(engine, up):
    view = JobView(up)
    view._handle_custom_msg({"type": "act", "label": VARY_REGION}, [])
    until(lambda: len(view.box.children) == 2, what="the drawer")
    drawer = view.box.children[1]
    box = (200, 60, 520, 300)
    submit(drawer, png_mask(1024, 684, box))
    submit(drawer, png_mask(1024, 684, box))  # sent twice: still one job
    until(lambda: view.children_views, what="the child's view")
    (child,) = view.children_views
    assert drawer.status == "submitted" and drawer.child is child.job
    assert view.box.children == (view, child.box)  # the drawer's place, now the child's view
    job = child.job.wait(60)
    assert job.kind == "vary_region" and job.prompt == "northern lights"
    assert job.parent_id == up.id and job.action == VARY_REGION
    assert len(vary_regions(engine)) == 1
    before = np.asarray(up.images[0].open().convert("RGB"), dtype=int)
    after = np.asarray(job.images[0].open().convert("RGB"), dtype=int)
    changed = np.abs(after - before).sum(axis=2) > 0
    x0, y0, x1, y1 = box
    inside = np.zeros(changed.shape, bool)
    inside[y0:y1, x0:x1] = True
    assert changed[~inside].sum() == 0 and changed[inside].mean() > 0.9
    until(lambda: view.action_state.get(VARY_REGION) == "succeeded")


def test_an_empty_prompt_keeps_the_jobs_prompt(engine, up):
    drawer = MaskDrawer(up)
    submit(drawer, png_mask(1024, 684, (0, 0, 100, 100)), prompt="   ")
    until(lambda: drawer.child is not None)
    assert drawer.child.prompt == up.prompt


def test_standing_alone_it_turns_into_the_childs_view(up):
    drawer = MaskDrawer(up)
    assert drawer.box.children == (drawer,)
    submit(drawer, png_mask(1024, 684, (0, 0, 300, 200)))
    until(lambda: drawer.box.children != (drawer,), what="the child's view")
    (box,) = drawer.box.children
    assert isinstance(box.children[0], JobView) and box.children[0].job is drawer.child


def test_cancel_closes_it_and_a_later_submit_does_nothing(engine, up):
    drawer = MaskDrawer(up)
    drawer._handle_custom_msg({"type": "cancel"}, [])
    until(lambda: drawer.status == "cancelled")
    assert drawer.box.children == ()
    submit(drawer, png_mask(1024, 684, (0, 0, 300, 200)))
    drawer._handle_custom_msg({"type": "nonsense"}, [])
    view = JobView(up)  # a round trip through the engine thread: the submit was handled
    until(lambda: view.status == "succeeded")
    engine.defer(lambda: None).result(5)
    assert drawer.child is None and vary_regions(engine) == []


def test_only_a_job_offering_the_action_can_be_masked(engine):
    grid = ji.imagine("a lighthouse").wait(60)
    with pytest.raises(ji.ActionNotAvailable, match="does not offer 'Vary \\(Region\\)'"):
        MaskDrawer(grid)
    running = ji.imagine("a lighthouse sandbox:hang")
    with pytest.raises(ji.ActionNotAvailable, match="none until it has succeeded"):
        MaskDrawer(running)
    running.cancel()


def test_vary_region_without_a_mask_opens_a_drawer_in_a_notebook(up, monkeypatch):
    from jupyter_imagine import _display
    from jupyter_imagine.models import Job
    from jupyter_imagine.widgets._job_view import drawer_for

    assert Job._mask_drawer_hook is not None  # installed by the package for Job.vary_region
    assert drawer_for(up) is None  # not in a kernel: vary_region() goes on and asks for a mask
    monkeypatch.setattr(_display, "in_kernel", lambda: True)
    drawer = Job._mask_drawer_hook(up, "northern lights")
    assert isinstance(drawer, MaskDrawer) and drawer.prompt == "northern lights"
    assert drawer_for(ji.job(up.parent_id)) is None  # a grid offers no Vary (Region)
