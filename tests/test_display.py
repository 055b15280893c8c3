"""The notebook progress display (``_display``)."""

from __future__ import annotations

from jupyter_imagine import _display


def test_progress_display_in_a_kernel(monkeypatch):
    shown, updates = [], []

    class Handle:
        def update(self, obj, raw=False):
            updates.append(obj)

    def display(obj, raw=False, display_id=False):
        shown.append(obj)
        return Handle()

    monkeypatch.setattr(_display, "in_kernel", lambda: True)
    monkeypatch.setattr("IPython.display.display", display)
    live = _display.LiveText(min_interval=10)
    assert live.shown and len(shown) == 1
    widget_view = shown[0]["application/vnd.jupyter.widget-view+json"]
    assert widget_view["model_id"] == live._widget.model_id
    live.set("<b>1</b>", force=True)
    live.set("<b>2</b>")  # throttled
    assert live._widget.value == "<b>1</b>"
    live.close()
    assert live._widget.value == "<b>2</b>"
    assert updates[-1]["text/html"] == "<b>2</b>" and updates[-1]["text/plain"] == "2"
    assert not _display.LiveText(enabled=False).shown
    monkeypatch.setattr(_display, "in_kernel", lambda: False)
    quiet = _display.LiveText()
    assert not quiet.shown
    quiet.set("x")
    quiet.close()
