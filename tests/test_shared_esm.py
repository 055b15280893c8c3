"""One copy of each widget's code per kernel: _shared_esm's WidgetCode and the loader."""

from __future__ import annotations

import hashlib

from jupyter_imagine.widgets._assets import read_asset, widget_esm
from jupyter_imagine.widgets._shared_esm import LOADER, SharedCodeWidget, WidgetCode, shared_code


class _Probe(SharedCodeWidget):
    _code_name = "gallery.js"


def test_every_view_of_a_kind_refers_to_one_code_model_that_carries_esm_and_css():
    first, second = _Probe(), _Probe()
    code = shared_code("gallery.js")
    assert isinstance(code, WidgetCode) and first._code is code and second._code is code
    assert code.esm == widget_esm("gallery.js") and code.css == read_asset("widgets.css")
    assert code.digest == hashlib.sha256(code.esm.encode()).hexdigest()[:16]
    assert shared_code("job_view.js") is not code  # one per kind
    # what a view's model stores: the small loader and a reference, not the code
    state = first.get_state()
    assert state["_esm"] == LOADER and "_css" not in state
    assert state["_code"] == f"IPY_MODEL_{code.model_id}"
    assert len(str(state).encode()) < 4_000
    first.close()
    second.close()


def test_a_closed_code_model_is_made_again_for_the_next_view():
    code = shared_code("mask_drawer.js")
    code.close()  # e.g. ipywidgets.Widget.close_all()
    again = shared_code("mask_drawer.js")
    assert again is not code and again.comm is not None
    assert again.digest == code.digest and shared_code("mask_drawer.js") is again
