"""Gallery: rows from the history, lazy thumbnails, opening a job, ``%imagine history``."""

from __future__ import annotations

import pandas as pd
import pytest
from _widgets_util import image_of, until

import jupyter_imagine as ji
from jupyter_imagine import api
from jupyter_imagine.widgets import Gallery, JobView, gallery
from jupyter_imagine.widgets._gallery import TILE


@pytest.fixture
def jobs(engine):
    done = [ji.imagine(p).wait(60) for p in ("a lighthouse at dusk", "a red fox in snow")]
    failed = ji.imagine("a gore scene")
    until(lambda: failed.status.value == "failed")
    return [*done, failed]


def test_rows_come_from_the_history_newest_first(jobs):
    g = gallery()
    assert isinstance(g, Gallery) and len(g) == 3 and g.total == 3
    assert [r["id"] for r in g.rows] == [j.id for j in reversed(jobs)]
    row = g.rows[-1]
    assert row["provider"] == "apiframe" and row["kind"] == "imagine"
    assert row["status"] == "succeeded" and row["prompt"] == "a lighthouse at dusk"
    assert row["n_images"] == 4 and row["sandbox"] is True and row["created"].startswith("20")
    store = api.get_engine().store
    assert (row["user"], row["host"]) == (store.user, store.host)  # who made it, where
    assert list(g.frame["id"]) == [r["id"] for r in g.rows]


def test_any_frame_slice_or_list_of_jobs(jobs):
    frame = ji.history()
    failed = gallery(frame[frame["status"] == "failed"])
    assert [r["id"] for r in failed.rows] == [jobs[2].id]
    assert [r["id"] for r in Gallery(jobs[:2]).rows] == [jobs[1].id, jobs[0].id]
    assert ji.gallery(frame.head(1)).total == 1  # the package-level shortcut
    assert [r["id"] for r in gallery(jobs[0]).rows] == [jobs[0].id]  # one job
    with pytest.raises(ji.InvalidRequest, match="'id' column"):
        gallery(pd.DataFrame({"prompt": ["x"]}))


@pytest.mark.parametrize("source, words", [
    ("a cat", "takes a frame from history(), a list of jobs or nothing, not str"),
    (5, "takes a frame from history(), a list of jobs or nothing, not int"),
    (["3f2a9c"], "takes jobs, but one item is a str; jupyter_imagine.job(id) gives the job"),
])
def test_anything_else_is_one_line_naming_what_it_takes(engine, source, words):
    with pytest.raises(ji.InvalidRequest) as info:
        gallery(source)
    assert words in str(info.value)


def test_thumbnails_load_on_request_as_buffers(jobs, monkeypatch):
    g = gallery()
    sent: list[tuple[dict, list]] = []
    monkeypatch.setattr(g, "send", lambda content, buffers=None: sent.append((content, buffers)))
    ids = [jobs[0].id, jobs[2].id, "no-such-job"]
    g._handle_custom_msg({"type": "thumbs", "ids": ids}, [])
    until(lambda: sent, what="the reply")
    (content, buffers), = sent
    assert content == {"type": "thumbs", "ids": ids}
    assert buffers[1:] == [b"", b""]  # failed: no picture; unknown: nothing
    tile = image_of(buffers[0])
    assert max(tile.size) <= TILE and tile.format == "JPEG"


def test_a_click_opens_the_jobs_view_with_its_actions(jobs):
    g = gallery()
    assert g.box.children == (g, g._slot) and g._slot.children == ()
    g._handle_custom_msg({"type": "open", "id": jobs[0].id}, [])
    until(lambda: g.selected == jobs[0].id, what="the view")
    (box,) = g._slot.children
    view = box.children[0]
    assert isinstance(view, JobView) and view.job.id == jobs[0].id
    assert view.actions and view.status == "succeeded"
    g._handle_custom_msg({"type": "open", "id": jobs[1].id}, [])
    until(lambda: g.selected == jobs[1].id)
    assert g._slot.children[0].children[0].job.id == jobs[1].id
    g._handle_custom_msg({"type": "open", "id": "no-such-job"}, [])
    g._handle_custom_msg({"type": "what"}, [])
    until(lambda: g.selected == jobs[1].id)


def test_imagine_history_shows_the_gallery(jobs):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "jupyter_imagine")
    try:
        g = shell.run_line_magic("imagine", "history 2")
        assert isinstance(g, Gallery) and [r["id"] for r in g.rows] == [j.id for j in
                                                                       reversed(jobs[1:])]
        assert "as a gallery" in shell.find_line_magic("imagine").__doc__
    finally:
        shell.run_line_magic("unload_ext", "jupyter_imagine")
