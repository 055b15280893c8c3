"""One copy of each widget's code per kernel, not one per view.

anywidget keeps a widget's ``_esm`` and ``_css`` in the model's synced state, so a notebook saved
with widget state stores them once per view (~22 KB each for the job view). Here every view of a
kind gets the same tiny ``_esm`` (``js/_loader.js``) and a reference, ``_code``, to one
:class:`WidgetCode` model per kind and kernel that carries the real ESM and CSS. The loader
fetches that model through the widget manager (``model.widget_manager.get_model``, which works
live and in a notebook restored from saved widget state without a kernel), imports its ESM once
per page and renders with it.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import anywidget
import ipywidgets
import traitlets as t

from ._assets import read_asset, widget_esm

__all__ = ["LOADER", "SharedCodeWidget", "WidgetCode", "shared_code"]

#: The ``_esm`` of every widget that loads its code from a :class:`WidgetCode`: ``_loader.js``
#: without its comment lines and blank lines (it is stored once per view).
LOADER = "".join(line for line in widget_esm("_loader.js").splitlines(keepends=True)
                 if line.strip() and not line.lstrip().startswith(("//", "/**", "* ", "*/")))
_CSS = "widgets.css"


class WidgetCode(ipywidgets.Widget):
    """A model with no view that carries the ESM and CSS of one widget kind.

    Attributes:
        name: the widget's ESM file (``job_view.js`` …).
        esm: its text as anywidget would get it (:func:`~._assets.widget_esm`).
        css: the widgets' shared CSS.
        digest: a hash of ``esm``: the browser imports each digest once.
    """

    name = t.Unicode("").tag(sync=True)
    esm = t.Unicode("").tag(sync=True)
    css = t.Unicode("").tag(sync=True)
    digest = t.Unicode("").tag(sync=True)


_lock = threading.Lock()
_codes: dict[str, WidgetCode] = {}


def shared_code(name: str) -> WidgetCode:
    """The :class:`WidgetCode` of ESM file ``name``: made on first use in this process, and
    again if it was closed (e.g. by ``ipywidgets.Widget.close_all()``)."""
    with _lock:
        code = _codes.get(name)
        if code is None or code.comm is None:
            esm = widget_esm(name)
            code = WidgetCode(name=name, esm=esm, css=read_asset(_CSS),
                              digest=hashlib.sha256(esm.encode()).hexdigest()[:16])
            _codes[name] = code
        return code


class SharedCodeWidget(anywidget.AnyWidget):
    """An anywidget whose code lives in a shared :class:`WidgetCode` (set ``_code_name`` to its
    ESM file). Subclasses set no ``_esm`` or ``_css`` of their own."""

    _esm = LOADER
    #: The widget's ESM file in ``js/``; every subclass sets it.
    _code_name = ""
    _code = t.Instance(WidgetCode).tag(sync=True, **ipywidgets.widget_serialization)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(_code=shared_code(self._code_name), **kwargs)
