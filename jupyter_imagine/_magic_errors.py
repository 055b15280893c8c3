"""Errors raised through the magics: one line with the fix, no traceback, and their own type.

:func:`install` sets an IPython custom exception handler for
:class:`~jupyter_imagine.errors.ImagineError`: when the error went through ``%imagine`` or
``%%reroll`` it is shown as ``JobFailed: <message>`` (the message already says how to fix it),
yet the exception stays a ``JobFailed`` (``except ji.JobFailed`` works, ``run_cell(...)
.error_in_exec`` holds it). A :class:`~jupyter_imagine.errors.StorageError` (an unusable
history folder: a fact about the machine, not about the code) is one line wherever it was raised,
``ji.history()`` included; any other ``ImagineError`` raised by the user's own Python code keeps
its full traceback. Ctrl-C during a wait (:class:`~jupyter_imagine.models.WaitInterrupted`, from
the magics' ``--wait`` or the user's ``job.wait()``) shows its one line ("stopped waiting; job …
keeps running") and still fails the cell, so "Run All" stops there as after any interrupt. A
handler that was there before keeps its exceptions; :func:`uninstall` puts it back exactly.
"""

from __future__ import annotations

import traceback
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any

from ._secrets import get_logger
from .errors import ImagineError, StorageError
from .models import WaitInterrupted

logger = get_logger(__name__)

__all__ = ["install", "installed", "show_error", "uninstall"]

_PACKAGE = Path(__file__).resolve().parent
# shell → (the custom exceptions and handler it had before install)
_saved: weakref.WeakKeyDictionary[Any, tuple[tuple[type[BaseException], ...], Any]] = (
    weakref.WeakKeyDictionary()
)


def _through_magics(tb: TracebackType | None) -> bool:
    """Whether the traceback passes through the magics (``magics.py`` or a ``_magic_*`` module)."""
    for frame, _ in traceback.walk_tb(tb):
        path = Path(frame.f_code.co_filename)
        ours = path.name == "magics.py" or path.name.startswith("_magic_")
        if ours and path.parent == _PACKAGE:
            return True
    return False


def show_error(
    shell: Any, etype: type[BaseException], value: BaseException, tb: TracebackType | None,
    tb_offset: int | None = None,
) -> None:
    """The custom exception handler (IPython's ``set_custom_exc`` signature)."""
    if isinstance(value, WaitInterrupted):
        shell._showtraceback(etype, value, [str(value)])
        return
    one_line = isinstance(value, StorageError) or (
        isinstance(value, ImagineError) and _through_magics(tb)
    )
    if one_line:
        stb = shell.InteractiveTB.get_exception_only(etype, value)
        shell._showtraceback(etype, value, stb)  # the channel ipykernel sends errors through
        return
    before = _saved.get(shell)
    if before is not None and before[0] and isinstance(value, before[0]):
        before[1](etype, value, tb, tb_offset)
        return
    shell.showtraceback((etype, value, tb), tb_offset=tb_offset)


def installed(shell: Any) -> bool:
    """Whether :func:`install` is in effect on ``shell``."""
    return shell in _saved


def install(shell: Any) -> None:
    """Show the ImagineErrors raised through the magics as one line (idempotent)."""
    if installed(shell):
        return
    _saved[shell] = (tuple(shell.custom_exceptions), shell.CustomTB)
    shell.set_custom_exc((*shell.custom_exceptions, ImagineError, WaitInterrupted), show_error)


def uninstall(shell: Any) -> None:
    """Restore the custom exception handler ``shell`` had before :func:`install`."""
    before = _saved.pop(shell, None)
    if before is not None:
        shell.custom_exceptions, shell.CustomTB = before
