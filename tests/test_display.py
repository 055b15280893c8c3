"""The progress display (``_display``): the notebook bar, the text bar on stderr, the numbers."""

from __future__ import annotations

import re
import threading
import time

import pytest

from jupyter_imagine import _display
from jupyter_imagine._display import Progress, bar_html, duration


@pytest.fixture
def kernel(progress_kernel):
    """Pretend to be in a kernel; ``(shown, updates)`` of the displays."""
    return progress_kernel


@pytest.fixture
def terminal(monkeypatch):
    """Outside a kernel, with stderr taken for an interactive terminal."""
    monkeypatch.setattr(_display, "in_kernel", lambda: False)
    monkeypatch.setattr(_display, "stderr_is_terminal", lambda: True)


def test_live_text_in_a_kernel(kernel):
    shown, updates = kernel
    live = _display.LiveText(min_interval=10)
    assert live.shown and len(shown) == 1
    widget_view = shown[0]["application/vnd.jupyter.widget-view+json"]
    assert widget_view["model_id"] == live._widget.model_id
    live.set("<b>1</b>", force=True)
    live.set("<b>2</b>")  # throttled
    assert live._widget.value == "<b>1</b>"
    live.close()
    assert live._widget.value == "<b>2</b>"
    assert updates[-1] == {"text/plain": "2", "text/html": "<b>2</b>"}  # the static copy alone
    assert live._widget.comm is None  # closed: a saved notebook keeps no view of a lost model
    assert not _display.LiveText(enabled=False).shown


def test_live_text_shows_a_held_back_update_once_the_interval_is_over(kernel):
    live = _display.LiveText("<i>0</i>", min_interval=0.05)
    assert kernel[0][0]["text/html"] == "<i>0</i>"  # displayed with its first state
    live.set("<b>1</b>")
    live.set("<b>2</b>")  # held back …
    assert live._widget.value == "<b>1</b>"
    deadline = time.monotonic() + 5
    while live._widget.value != "<b>2</b>" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert live._widget.value == "<b>2</b>"  # … and shown without another update
    live.close("<b>3</b>")
    live.set("<b>4</b>", force=True)  # after close: ignored
    assert live._widget.value == "<b>3</b>"


def test_live_text_shows_nothing_outside_a_kernel(monkeypatch):
    monkeypatch.setattr(_display, "in_kernel", lambda: False)
    quiet = _display.LiveText()
    assert not quiet.shown
    quiet.set("x")
    quiet.close()
    assert not quiet.shown


def test_progress_in_a_notebook_is_one_styled_bar_with_a_static_final_copy(kernel, capfd):
    shown, updates = kernel
    with Progress("batch of 4 prompts", 4) as bar:
        assert bar.in_notebook and len(shown) == 1
        assert set(shown[0]) == {
            "text/plain", "text/html", "application/vnd.jupyter.widget-view+json"
        }
        # updates from another thread (the engine's) reach the widget
        worker = threading.Thread(target=bar.update, args=(3,), kwargs={"failed": 1})
        worker.start()
        worker.join()
    final = updates[-1]
    assert len(shown) == 1  # updated in place, never displayed again
    html = final["text/html"]
    assert bar._live._widget.value == html  # the widget and the saved copy agree
    assert "batch of 4 prompts" in html and 'role="progressbar"' in html
    for var in ("--jp-brand-color1", "--jp-error-color1", "--jp-ui-font-color1",
                "--jp-layout-color3", "--jp-ui-font-family"):
        assert var in html
    assert 'aria-valuenow="75"' in html
    assert "width:50.0%" in html and "width:25.0%" in html  # 2 succeeded, 1 failed of 4
    text = final["text/plain"]
    assert "3/4 jobs" in text and "1 failed" in text and "ETA" not in text
    assert capfd.readouterr().err == ""  # nothing on stderr in a notebook


def test_progress_on_a_terminal_is_a_tqdm_line_on_stderr(terminal, capfd):
    with Progress("batch of 5 prompts", 5) as bar:
        assert bar.shown and not bar.in_notebook
        for n in range(1, 6):
            bar.update(n, failed=1 if n > 3 else 0, status="1 in flight" if n < 5 else "")
    err = capfd.readouterr().err
    last = re.split(r"[\r\n]", err.strip())[-1]
    assert last.startswith("batch of 5 prompts: 100%") and "5/5" in last
    assert "job/s" in last and "1 failed" in last
    assert bar._bar.mininterval == _display.TERMINAL_INTERVAL


def test_a_log_is_not_spammed_and_gets_the_final_state(monkeypatch, capfd):
    monkeypatch.setattr(_display, "in_kernel", lambda: False)
    monkeypatch.setattr(_display, "stderr_is_terminal", lambda: False)
    bar = Progress("export of 200 jobs", 200)
    assert bar._bar.mininterval == _display.LOG_INTERVAL
    for n in range(1, 201):
        bar.update(n)
    bar.close(lines=["apiframe: nothing to pull"])
    err = capfd.readouterr().err
    assert err.count("export of 200 jobs") <= 3  # the first draw, the last, not every update
    assert "200/200" in err and "\n  apiframe: nothing to pull\n" in err


def test_only_on_terminal_stays_quiet_in_a_log(monkeypatch, capfd):
    monkeypatch.setattr(_display, "in_kernel", lambda: False)
    monkeypatch.setattr(_display, "stderr_is_terminal", lambda: False)
    bar = Progress("apiframe imagine 3f2a1b2c", 100, unit="%", only_on_terminal=True)
    bar.update(50, status="running")
    bar.close("succeeded")
    assert not bar.shown and capfd.readouterr().err == ""


def test_percent_bar_shows_status_and_elapsed_not_a_rate(terminal, capfd):
    bar = Progress("apiframe imagine 3f2a1b2c", 100, unit="%", only_on_terminal=True)
    bar.update(45, status="running")
    bar.close("succeeded")
    last = re.split(r"[\r\n]", capfd.readouterr().err.strip())[-1]
    assert re.match(r"apiframe imagine 3f2a1b2c:  45%\|.*\| \[00:0\d, succeeded\]$", last), last
    assert "/s" not in last


def test_disabled_progress_shows_nothing(kernel, capfd):
    shown, _ = kernel
    bar = Progress("x", 3, enabled=False)
    bar.update(1)
    bar.close()
    assert not bar.shown and not shown and capfd.readouterr().err == ""


def test_summary_counts_rate_eta_failures_and_status(monkeypatch):
    monkeypatch.setattr(_display, "in_kernel", lambda: False)
    now = [100.0]
    monkeypatch.setattr(_display.time, "monotonic", lambda: now[-1])
    bar = Progress("batch of 40 prompts", 40, enabled=False, initial=10)
    now.append(110.0)
    bar.update(30, failed=2, status="4 in flight")
    # 20 done in 10 s this call (the 10 done before do not count): 2/s, 10 left → 5 s
    assert bar.summary() == "30/40 jobs · 2.0 jobs/s · ETA 5.0 s · 10 s · 2 failed · 4 in flight"
    assert "ETA" not in bar.summary(final=True)


def test_summary_without_a_total_or_a_rate(monkeypatch):
    monkeypatch.setattr(_display, "in_kernel", lambda: False)
    bar = Progress("remote history", None, unit="page", enabled=False)
    assert bar.summary().startswith("0 pages · ")
    bar.update(1)
    assert bar.summary().startswith("1 page · ")
    assert 'aria-valuenow' not in bar.html()  # unknown total: no value, an empty track


def test_bar_html_escapes_and_clamps():
    html = bar_html("<script>", "a & b", 1.0, 0.25, ["x < y"])
    assert "<script>" not in html and "&lt;script&gt;" in html and "a &amp; b" in html
    assert "x &lt; y" in html
    assert "width:75.0%" in html and "width:25.0%" in html


@pytest.mark.parametrize(("seconds", "text"), [
    (0.42, "0.4 s"), (12.4, "12 s"), (185, "3 min 05 s"), (3720, "1 h 02 min"),
])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_no_rate_where_it_would_mean_nothing(terminal, capfd):
    bar = Progress("remote history of 2 providers", 2, unit="provider", rate=False)
    bar.update(1)
    assert "/s" not in bar.summary() and "ETA" not in bar.summary()
    bar.close()
    last = capfd.readouterr().err.strip().split("\r")[-1]
    assert last.startswith("remote history of 2 providers:  50%") and "1/2" in last
    assert "/s" not in last
