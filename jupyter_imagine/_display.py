"""Progress for every long call: one :class:`Progress` object, shown where the user looks.

In a Jupyter kernel it is a styled HTML bar (JupyterLab's ``--jp-*`` theme variables, so it
reads in light and dark themes) inside an ``ipywidgets.HTML``, updated live from any thread, with
a static copy that :meth:`Progress.close` leaves behind for saved notebooks (:class:`LiveText`).
Elsewhere (terminal IPython, scripts, CI logs) it is a ``tqdm`` text bar on stderr. Also
:func:`in_kernel`, the test for "running in a Jupyter kernel" that every display uses.
"""

from __future__ import annotations

import html
import re
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from ._secrets import get_logger

__all__ = [
    "LiveText",
    "Progress",
    "bar_html",
    "duration",
    "in_kernel",
    "plain_text",
    "stderr_is_terminal",
]

logger = get_logger(__name__)

#: Seconds between two redraws of a text bar on a terminal, and on a non-interactive stderr
#: (a CI log keeps every redraw as a line, so there it redraws rarely; the final state is
#: always written).
TERMINAL_INTERVAL = 0.1
LOG_INTERVAL = 30.0


class LiveText:
    """A one-line HTML status shown in the notebook and updated in place, from any thread.

    It starts with ``markup`` (default ``""``). In a Jupyter kernel it is an ``ipywidgets.HTML``
    (trait sets from the engine thread reach
    the browser live, also while a cell blocks), displayed with a ``display_id`` next to a
    static ``text/html`` copy that :meth:`close` (called from the caller's thread) replaces with
    the final state, so a saved notebook shows the outcome where widgets do not render.
    Elsewhere (scripts, plain IPython, tests) it shows nothing and the updates go to the log at
    DEBUG. Updates are throttled to ``min_interval`` seconds (default 0.1) except the last one.
    """

    def __init__(
        self, markup: str = "", *, enabled: bool = True, min_interval: float = 0.1
    ) -> None:
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._last = 0.0
        self._pending: str | None = None
        self._closed = False
        self._current = markup
        self._widget: Any = None
        self._handle: Any = None
        if enabled and in_kernel():
            try:
                import ipywidgets
                from IPython.display import display

                self._widget = ipywidgets.HTML(value=markup)
                self._handle = display(self._bundle(markup), raw=True, display_id=True)
            except Exception:  # no widgets: stay silent rather than break the call
                logger.debug("no progress display", exc_info=True)
                self._widget = None

    @property
    def shown(self) -> bool:
        """``True`` when there is a widget in the notebook."""
        return self._widget is not None

    def _bundle(self, markup: str, *, live: bool = True) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/plain": plain_text(markup) or "…", "text/html": markup}
        if live:
            bundle["application/vnd.jupyter.widget-view+json"] = {
                "version_major": 2, "version_minor": 0, "model_id": self._widget.model_id,
            }
        return bundle

    def set(self, markup: str, *, force: bool = False) -> None:
        """Show ``markup`` (HTML), at most every ``min_interval`` seconds unless ``force``; a
        held-back update is shown when the interval is over (nothing after :meth:`close`)."""
        now = time.monotonic()
        with self._lock:
            if self._closed:
                return
            wait = self.min_interval - (now - self._last)
            if not force and wait > 0:
                if self._pending is None:  # one timer for all the updates held back
                    timer = threading.Timer(wait, self._flush)
                    timer.daemon = True
                    timer.start()
                self._pending = markup
                return
            self._show(markup, now)

    def _flush(self) -> None:
        with self._lock:
            if self._pending is not None and not self._closed:
                self._show(self._pending, time.monotonic())

    def _show(self, markup: str, now: float) -> None:
        """Under the lock: make ``markup`` the current state."""
        self._last = now
        self._pending = None
        self._current = markup
        if self._widget is not None:
            self._widget.value = markup
        else:
            logger.debug("progress: %s", plain_text(markup))

    def close(self, markup: str | None = None) -> None:
        """Show the final state (``markup``, or the last throttled update) in the widget and in
        the static copy; later updates are ignored.

        The output then becomes the static copy alone and the widget is closed: nothing live
        is left to update, and a notebook saved with widget state would otherwise keep a view
        of a model that no longer exists (a broken-widget icon where the outcome should be)."""
        with self._lock:
            final = markup if markup is not None else (self._pending or self._current)
            self._show(final, time.monotonic())
            self._closed = True
        if self._handle is not None:
            try:
                self._handle.update(self._bundle(final, live=False), raw=True)
            except Exception:  # pragma: no cover - a display that went away
                logger.debug("could not update the progress display", exc_info=True)
                return
            self._widget.close()


class Progress:
    """Progress of one long call: count done of total, rate, ETA, failures, a status word.

    Use it as a context manager (or call :meth:`close`); :meth:`update` may be called from any
    thread (the engine's). Where it shows:

    * in a Jupyter kernel: a styled HTML bar (:func:`bar_html`) that stays as a static copy in
      the saved notebook;
    * elsewhere: a ``tqdm`` bar on stderr, redrawn at most every :data:`TERMINAL_INTERVAL`
      seconds on a terminal and every :data:`LOG_INTERVAL` seconds on a non-interactive stderr
      (a CI log); ``only_on_terminal=True`` (default ``False``) shows nothing there at all.

    Args:
        label: what is being done, for a person ("batch of 40 prompts").
        total: how many there are (default ``None``: unknown, no bar, no ETA).
        unit: what is counted (default ``"job"``; ``"%"`` counts percent and shows no rate).
        enabled: ``False`` shows nothing anywhere (default ``True``).
        only_on_terminal: outside a kernel, show only when stderr is a terminal.
        initial: how many were done before this call (default 0; not counted in the rate).
        rate: show the rate and the ETA (default ``True``; off where the counted things differ
            too much in size for either to mean anything, such as providers of a pull).
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "job",
        enabled: bool = True,
        only_on_terminal: bool = False,
        initial: float = 0,
        rate: bool = True,
    ) -> None:
        self.label = label
        self.show_rate = rate and unit != "%"
        self.total = total
        self.unit = unit
        self.done = self.initial = float(initial)
        self.failed = 0
        self.status = ""
        self.lines: list[str] = []
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._closed = False
        self._live: LiveText | None = None
        self._bar: Any = None
        if not enabled:
            return
        if in_kernel():
            self._live = LiveText(self.html())
        elif stderr_is_terminal() or not only_on_terminal:
            self._bar = _text_bar(label, total, unit, initial, self.show_rate)
        self.started = time.monotonic()  # after the set-up (importing tqdm takes a moment)

    @property
    def in_notebook(self) -> bool:
        """``True`` when the progress is a bar in the notebook."""
        return self._live is not None and self._live.shown

    @property
    def shown(self) -> bool:
        """``True`` when the progress is shown somewhere (notebook or stderr)."""
        return bool(self._live is not None and self._live.shown) or self._bar is not None

    def update(
        self,
        done: float | None = None,
        *,
        total: int | None = None,
        failed: int | None = None,
        status: str | None = None,
        lines: Sequence[str] | None = None,
    ) -> None:
        """Set what changed (``None`` keeps a value) and redraw (throttled)."""
        with self._lock:
            if self._closed:
                return
            self._set(done, total, failed, status, lines)
            self._draw(final=False)

    def close(self, status: str | None = None, *, lines: Sequence[str] | None = None) -> None:
        """Draw the final state (with ``status`` / ``lines`` if given) and stop updating."""
        with self._lock:
            if self._closed:
                return
            self._set(None, None, None, status, lines)
            self._closed = True
            self._draw(final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, etype: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if etype is KeyboardInterrupt:
            self.close("interrupted")
        elif etype is not None:
            self.close(f"stopped: {type(exc).__name__}")
        else:
            self.close()

    # ------------------------------------------------------------------ numbers
    def _set(self, done: float | None, total: int | None, failed: int | None,
             status: str | None, lines: Sequence[str] | None) -> None:
        if done is not None:
            self.done = float(done)
        if total is not None:
            self.total = total
        if failed is not None:
            self.failed = failed
        if status is not None:
            self.status = status
        if lines is not None:
            self.lines = list(lines)

    @property
    def elapsed(self) -> float:
        """Seconds since the progress started."""
        return time.monotonic() - self.started

    def summary(self, *, final: bool = False) -> str:
        """Counts, rate, ETA (not once final), failures and status, as one line of text."""
        parts = [_count(self.done, self.total, self.unit)]
        fresh = self.done - self.initial
        rate = fresh / self.elapsed if self.elapsed > 0 and fresh > 0 else 0.0
        if self.show_rate and rate:
            parts.append(_rate(rate, self.unit))
        if self.show_rate and not final and rate and self.total and self.done < self.total:
            parts.append(f"ETA {duration((self.total - self.done) / rate)}")
        parts.append(duration(self.elapsed))
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.status:
            parts.append(self.status)
        return " · ".join(parts)

    def html(self, *, final: bool = False) -> str:
        """The notebook markup for the current state."""
        fraction = min(1.0, self.done / self.total) if self.total else None
        failed = self.failed / self.total if self.total else 0.0
        return bar_html(self.label, self.summary(final=final), fraction,
                        min(failed, fraction or 0.0), self.lines)

    # ------------------------------------------------------------------ drawing
    def _draw(self, *, final: bool) -> None:
        if self._live is not None:
            if final:
                self._live.close(self.html(final=True))
            else:
                self._live.set(self.html())
        if self._bar is not None:
            _draw_text(self._bar, self, final)


# The terminal bar is plain ``tqdm.tqdm`` on stderr, not ``tqdm.auto``: in a kernel we draw our
# own HTML (tqdm.auto's notebook bar is an unstyled ipywidgets progress bar that ignores the
# theme and leaves no static copy), so tqdm only ever draws text, and ``auto`` would add nothing.
def _text_bar(label: str, total: int | None, unit: str, initial: float, rate: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # a broken install: stay silent rather than break the call
        logger.debug("no text progress: tqdm is not installed")
        return None

    interval = TERMINAL_INTERVAL if stderr_is_terminal() else LOG_INTERVAL
    percent = unit == "%"
    return tqdm(
        total=total,
        initial=initial,
        desc=label,
        unit=unit if not percent else "",
        file=sys.stderr,
        mininterval=interval,
        maxinterval=max(interval, 10.0),
        dynamic_ncols=True,
        leave=True,
        bar_format=(
            "{desc}: {percentage:3.0f}%|{bar}| [{elapsed}{postfix}]" if percent
            else None if rate else "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
        ),
    )


def _draw_text(bar: Any, progress: Progress, final: bool) -> None:
    """Move ``bar`` to ``progress``'s state; once final, redraw, close, print the lines."""
    postfix = " · ".join(
        p for p in (f"{progress.failed} failed" if progress.failed else "", progress.status) if p
    )
    if progress.total is not None and bar.total != progress.total:
        bar.total = progress.total
    if postfix != getattr(bar, "postfix", None):
        bar.set_postfix_str(postfix, refresh=False)
    done = progress.done if progress.unit == "%" else int(progress.done)
    bar.update(max(0, done - bar.n))  # redraws (elapsed too) no more often than mininterval
    if final:
        bar.close()  # draws the final state
        for line in progress.lines:
            bar.write(f"  {line}", file=sys.stderr)


def bar_html(
    label: str,
    summary: str,
    fraction: float | None,
    failed: float = 0.0,
    lines: Sequence[str] = (),
) -> str:
    """The notebook progress bar: ``label`` and ``summary`` over a bar ``fraction`` full (0–1;
    ``None``: unknown, an empty track), the ``failed`` share of it in the error colour, and
    ``lines`` of detail below. Colours and fonts are JupyterLab's theme variables (with light
    fallbacks for other front ends)."""
    esc = html.escape
    done = 0.0 if fraction is None else max(0.0, fraction - failed)
    value = "" if fraction is None else f' aria-valuenow="{round(fraction * 100)}"'
    detail = "".join(
        f'<div style="color:var(--jp-ui-font-color2,#59636e)">{esc(line)}</div>' for line in lines
    )
    return (
        '<div class="jupyter-imagine-progress" role="progressbar" aria-valuemin="0" '
        f'aria-valuemax="100"{value} aria-label="{esc(label)}" style="max-width:42em;'
        "padding:4px 0;font-family:var(--jp-ui-font-family,system-ui,sans-serif);"
        'font-size:var(--jp-ui-font-size1,13px);color:var(--jp-ui-font-color1,#1f2328)">'
        '<div style="display:flex;flex-wrap:wrap;justify-content:space-between;gap:0 1em">'
        f'<span style="font-weight:600">{esc(label)}</span><span style="color:var('
        '--jp-ui-font-color2,#59636e);font-variant-numeric:tabular-nums">'
        f"{esc(summary)}</span></div>"
        '<div style="display:flex;height:6px;margin:4px 0;border-radius:3px;overflow:hidden;'
        "background:var(--jp-layout-color3,#d8dde3)\">"
        f'<div style="width:{done:.1%};background:var(--jp-brand-color1,#1976d2)"></div>'
        f'<div style="width:{failed:.1%};background:var(--jp-error-color1,#d32f2f)"></div>'
        f"</div>{detail}</div>"
    )


def _plural(unit: str, n: float) -> str:
    return unit if n == 1 or unit.endswith("s") or unit == "%" else unit + "s"


def _count(done: float, total: int | None, unit: str) -> str:
    if unit == "%":
        return f"{done:.0f}%"
    shown = f"{done:.0f}"
    if total is None:
        return f"{shown} {_plural(unit, done)}"
    return f"{shown}/{total} {_plural(unit, total)}"


def _rate(per_second: float, unit: str) -> str:
    if per_second >= 1:
        return f"{per_second:.1f} {_plural(unit, 2)}/s"
    return f"{duration(1 / per_second)}/{unit}"


def duration(seconds: float) -> str:
    """``seconds`` for a person: ``"0.4 s"``, ``"12 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def in_kernel() -> bool:
    """``True`` inside a Jupyter kernel (an IPython shell with a ``kernel``), else ``False``."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def stderr_is_terminal() -> bool:
    """``True`` when stderr is an interactive terminal (not a file, a pipe or a CI log)."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def plain_text(markup: str) -> str:
    """``markup`` without its tags and entities, stripped."""
    return html.unescape(re.sub(r"<[^>]+>", " ", markup)).strip()
